"""The ``telnyx-nb`` command: the headless demo, and the sandbox as a server for other programs."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telnyx-nb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="two sandbox calls into a receiver; print the tables, save the session")
    demo.add_argument("--session-dir", help="where to save the session (default: sessions/demo-<time>)")
    sandbox = commands.add_parser("sandbox", help="serve the Telnyx emulator until Ctrl-C; prints TELNYX_* exports")
    sandbox.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=0, help="port (default: an ephemeral one)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from pathlib import Path

        from telnyx_nb.demo import run

        if args.session_dir and Path(args.session_dir).exists() and any(Path(args.session_dir).iterdir()):
            print(f"telnyx-nb: {args.session_dir} exists and is not empty; choose another --session-dir",
                  file=sys.stderr)
            return 2
        run(session_dir=args.session_dir)
    else:
        from telnyx_nb.sandbox import serve

        serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
