"""The ``telnyx-nb`` command: the headless demo, and the sandbox as a server for other programs."""

from __future__ import annotations

import argparse
import sys

from telnyx_nb import __version__

DESCRIPTION = """\
Telnyx call audio, RTP forks and live transcripts into pandas, with a Telnyx emulator.

  telnyx-nb demo                         one sandbox call, all six actions: tables, quality, plots, a saved session
  telnyx-nb sandbox                      serve the emulator in the foreground, print TELNYX_* exports
  eval "$(telnyx-nb sandbox --detach)"   the same in the background, exported into this shell
"""


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a usage error)."""
    from telnyx_nb.sandbox.shell import add_arguments, run

    parser = argparse.ArgumentParser(prog="telnyx-nb", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"telnyx-nb {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{demo,sandbox}")
    demo = commands.add_parser("demo", help="one sandbox call with all six actions; print the tables, save the session")
    demo.add_argument("--session-dir", help="where to save the session (default: sessions/demo-<time>)")
    sandbox = commands.add_parser("sandbox", help="serve the Telnyx emulator until Ctrl-C; prints TELNYX_* exports")
    add_arguments(sandbox)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("telnyx-nb: choose a command (telnyx-nb --help says more)", file=sys.stderr)
        return 2
    if args.command == "demo":
        from pathlib import Path

        from telnyx_nb.demo import run as run_demo

        target = Path(args.session_dir) if args.session_dir else None
        if target is not None and target.exists() and (not target.is_dir() or any(target.iterdir())):
            what = "is a file" if not target.is_dir() else "exists and is not empty"
            print(f"telnyx-nb: {args.session_dir} {what}; choose another --session-dir", file=sys.stderr)
            return 2
        try:
            run_demo(session_dir=args.session_dir)
        except KeyboardInterrupt:        # the sandbox and capture children are stopped on the way out
            print("\ntelnyx-nb demo: interrupted; nothing saved", file=sys.stderr)
            return 130
        return 0
    return run(args, "telnyx-nb sandbox")


if __name__ == "__main__":
    sys.exit(main())
