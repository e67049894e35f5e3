"""The sandbox's own process: ``python -m telnyx_nb.sandbox --child``, spawned by ``Sandbox.start()``.

It runs one ``engine.Engine`` (the same emulator as ``telnyx-nb sandbox``) on the main thread's
event loop, plus the ``control`` endpoint the parent drives it through. It imports only what
the emulator needs (aiohttp, numpy, cryptography; not pandas). The exchange with the parent:

1. **stdin, first line** — the configuration as JSON: ``token`` (the control token),
   ``signing_key`` (base64 of the raw Ed25519 private key the webhooks are signed with),
   ``api_key``, ``connection_id``, ``rest_fd`` and ``control_fd`` (listening TCP sockets the
   parent bound and passed down: the API's and the control endpoint's), ``scenario`` (a library name or a
   ``Scenario.to_spec()``), ``codec``, ``webhook_url``, ``ring_s``, ``webhook_attempts``,
   ``webhook_backoff_s``, ``webhook_timeout_s``, ``clock_slots``, ``loop``. Secrets travel only
   this way, never on the command line or in the environment.
2. **stdout, one line** once serving — ``{"ready": true, "pid", "port", "public_key",
   "api_key", "connection_id", "loop"}``; stdout is then pointed at ``/dev/null``,
   so that nothing can block on a pipe the parent no longer reads. Logs go to stderr.
3. **Until stdin reaches EOF** — the parent closed it (``stop()``) or went away (its end of the
   pipe closes with it, however it died) — or SIGTERM/SIGINT arrives; then a graceful shutdown
   (live calls hung up with ``stop`` frames and ``call.hangup`` webhooks, webhooks drained for
   up to 2 s) and exit status 0. A second signal exits at once.

A failure before step 2 prints its traceback on stderr and exits with status 1; the parent
reports it with the tail of stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

__all__ = ["main", "run_child", "LOG_FORMAT"]

#: The child's log lines on stderr, which the parent parses back into records (``process``).
LOG_FORMAT = "%(asctime)s telnyx_nb-sandbox[%(process)d] %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    from telnyx_nb.sandbox.shell import add_arguments, run

    parser = argparse.ArgumentParser(prog="python -m telnyx_nb.sandbox",
                                     description="Serve the Telnyx emulator until Ctrl-C; prints TELNYX_* exports.")
    add_arguments(parser)
    parser.add_argument("--child", action="store_true",
                        help="run as the process of a Sandbox(process=True): configuration on stdin, see child.py")
    args = parser.parse_args(argv)
    if args.child:
        return run_child()
    return run(args, parser.prog)


def run_child() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=LOG_FORMAT)
    config = json.loads(sys.stdin.buffer.readline() or b"null")
    if not isinstance(config, dict):
        print("telnyx_nb sandbox: expected the configuration as one JSON line on stdin", file=sys.stderr)
        return 2
    from telnyx_nb.loopthread import new_event_loop

    loop = new_event_loop(config.get("loop", "auto"))
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(config))
    finally:
        loop.close()
    return 0


async def _serve(config: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from telnyx_nb.sandbox.calls import Route
    from telnyx_nb.sandbox.control import start_control
    from telnyx_nb.sandbox.engine import Engine
    from telnyx_nb.sandbox.scenarios import Scenario, check_codec, get_scenario
    from telnyx_nb.wire import webhooks

    loop = asyncio.get_running_loop()
    signer = webhooks.Signer(Ed25519PrivateKey.from_private_bytes(base64.b64decode(config["signing_key"])))
    scenario = config.get("scenario", "support_call")
    scenario = Scenario.from_spec(scenario) if isinstance(scenario, dict) else get_scenario(scenario)
    engine = Engine(host=config.get("host", "127.0.0.1"), port=int(config.get("port", 0)), api_key=config["api_key"],
                    connection_id=config["connection_id"], signer=signer,
                    default_route=Route(scenario, check_codec(config.get("codec", "PCMU"))).prepare(),
                    webhook_url=config.get("webhook_url"), ring_s=float(config.get("ring_s", 0.2)),
                    webhook_attempts=int(config.get("webhook_attempts", 3)),
                    webhook_backoff_s=float(config.get("webhook_backoff_s", 0.5)),
                    webhook_timeout_s=float(config.get("webhook_timeout_s", 5.0)),
                    clock_slots=int(config.get("clock_slots", 20)))
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            os._exit(1)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on this platform's loop
            loop.add_signal_handler(sig, on_signal)
    port = await engine.start(socket.socket(fileno=int(config["rest_fd"])))
    runner = await start_control(engine, config["token"], socket.socket(fileno=int(config["control_fd"])))
    try:
        threading.Thread(target=_watch_stdin, args=(loop, stop), name="telnyx_nb-sandbox-stdin", daemon=True).start()
        ready = {"ready": True, "pid": os.getpid(), "port": port, "public_key": signer.public_key,
                 "api_key": engine.api_key, "connection_id": engine.connection_id,
                 "loop": type(loop).__module__.split(".")[0]}
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        _detach_stdout()
        await stop.wait()
    finally:
        await runner.cleanup()
        await engine.stop()


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Block on stdin until EOF (the parent closed its end or exited), then stop the loop's work."""
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except (OSError, ValueError):
        pass
    with contextlib.suppress(RuntimeError):  # the loop is already closed
        loop.call_soon_threadsafe(stop.set)


def _detach_stdout() -> None:
    """Point fd 1 at the null device: the parent reads only the ready line."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
