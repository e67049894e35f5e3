"""``serve()``: run a sandbox in the foreground for other programs (``telnyx-nb sandbox``)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TextIO

from telnyx_nb.sandbox.emulator import Sandbox

__all__ = ["serve"]


def serve(host: str = "127.0.0.1", port: int = 0, *, out: TextIO | None = None,
          stop: threading.Event | None = None) -> None:
    """Start a sandbox, print ``export`` lines for the SDK's environment variables, and block
    until Ctrl-C / SIGTERM (or ``stop`` is set, for embedding). The emulator runs on a thread
    of this process (``process=False``): this process is the sandbox's."""
    out = out or sys.stdout
    stop = stop or threading.Event()
    with Sandbox(host, port, process=False) as sb:
        for name, value in sb.env().items():
            print(f"export {name}={value}", file=out)
        print(f"export TELNYX_CONNECTION_ID={sb.connection_id}", file=out)
        print("# sandbox running; Ctrl-C to stop", file=out, flush=True)
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
