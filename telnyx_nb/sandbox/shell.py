"""The sandbox as a server for other programs (``telnyx-nb sandbox``, ``python -m telnyx_nb.sandbox``).

``serve()`` runs one in the foreground and prints ``export`` lines for the SDK's environment
variables; ``--env-file`` also writes them to a file (mode 0600) and ``--detach`` starts the
server in the background and returns once it is listening, so that
``eval "$(telnyx-nb sandbox --detach)"`` sets up the calling shell (stop it with
``kill $TELNYX_SANDBOX_PID``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from telnyx_nb.sandbox.emulator import Sandbox

__all__ = ["serve", "add_arguments", "run"]

#: How long ``--detach`` waits for the background server to listen (seconds).
DETACH_TIMEOUT_S = 30.0


def serve(host: str = "127.0.0.1", port: int = 0, *, out: TextIO | None = None,
          stop: threading.Event | None = None, env_file: str | os.PathLike[str] | None = None) -> None:
    """Start a sandbox, print ``export`` lines for the SDK's environment variables (and write
    them to ``env_file``, mode 0600, replaced atomically, when given), and block until Ctrl-C /
    SIGTERM (or ``stop`` is set, for embedding). The emulator runs on a thread of this process
    (``process=False``): this process is the sandbox's. OSError when ``host:port`` cannot be
    bound."""
    out = out or sys.stdout
    stop = stop or threading.Event()
    with Sandbox(host, port, process=False) as sb:
        exports = "".join(f"export {name}={value}\n" for name, value in
                          {**sb.env(), "TELNYX_CONNECTION_ID": sb.connection_id,
                           "TELNYX_SANDBOX_PID": str(os.getpid())}.items())
        if env_file is not None:
            _write_private(Path(env_file), exports)
        print(exports + "# sandbox running; Ctrl-C to stop", file=out, flush=True)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's options, shared by ``telnyx-nb sandbox`` and ``python -m telnyx_nb.sandbox``."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="port, 0-65535 (default 0: an ephemeral one)")
    parser.add_argument("--env-file", metavar="PATH",
                        help="also write the export lines to PATH (mode 0600), for another shell to source")
    parser.add_argument("--detach", action="store_true",
                        help="serve in the background; print the export lines (with TELNYX_SANDBOX_PID) and "
                             'return, for eval "$(telnyx-nb sandbox --detach)"')


def _port(text: str) -> int:
    port = int(text) if text.strip().isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, got {text!r}")
    return port


def run(args: argparse.Namespace, prog: str) -> int:
    """Run the server as ``args`` say; returns the exit status (1, with one line on stderr,
    when it cannot listen, cannot write ``--env-file``, or the background server does not come up)."""
    if args.env_file and not Path(args.env_file).resolve().parent.is_dir():
        print(f"{prog}: cannot write --env-file {args.env_file}: its directory does not exist", file=sys.stderr)
        return 1
    if args.detach:
        return _detach(args, prog)
    try:
        serve(args.host, args.port, env_file=args.env_file)
    except OSError as exc:
        print(f"{prog}: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _detach(args: argparse.Namespace, prog: str) -> int:
    """Start ``python -m telnyx_nb.sandbox`` in a new session; once it has written its export
    lines to a handshake file of this run (never an older file) and still runs, print them
    (and copy them to ``--env-file``)."""
    with tempfile.TemporaryDirectory(prefix="telnyx_nb-sandbox-") as tmp:
        handshake = Path(tmp) / "env"
        with open(Path(tmp) / "stderr", "w+b") as err:
            child = subprocess.Popen(
                [sys.executable, "-m", "telnyx_nb.sandbox", "--host", args.host, "--port", str(args.port),
                 "--env-file", str(handshake)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            deadline = time.monotonic() + DETACH_TIMEOUT_S
            while not handshake.exists() and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if not handshake.exists() or child.poll() is not None:
                if child.poll() is None:
                    child.kill()
                err.seek(0)
                lines = err.read().decode("utf-8", "replace").strip().splitlines()
                print(f"{prog}: the background sandbox did not start: {lines[-1] if lines else 'no output'}",
                      file=sys.stderr)
                return 1
        exports = handshake.read_text()
    if args.env_file:
        _write_private(Path(args.env_file), exports)
    print(exports + f"# sandbox running in the background; stop it with: kill {child.pid}", flush=True)
    return 0


def _write_private(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(partial, path)
