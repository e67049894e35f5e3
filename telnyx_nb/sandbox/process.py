"""The parent's side of the sandbox's process: spawn it, wait until it is ready, stop it.

``SandboxProcess.start()`` runs ``[sys.executable, "-m", "telnyx_nb.sandbox", "--child"]`` with
``subprocess.Popen`` (never a fork of the threaded notebook process), in a session of its own
(a Ctrl-C in the terminal reaches only the parent, which decides), writes the configuration
line to its stdin and keeps stdin open: that pipe is the child's lifeline, EOF means "stop".

The parent binds the child's two listening sockets (the API's, on the requested host and
port, and the control endpoint's, on 127.0.0.1) and passes them down (``pass_fds``), as
systemd's socket activation does: the ports are known, and a bind error raised, before the
child has imported anything, and a connection made while it boots waits in the listen
backlog. So ``start()`` returns at once and the child's start-up (about a second of imports)
runs alongside the notebook's own work; :meth:`SandboxProcess.wait_ready` is what waits for
its ready line (at most ``start_timeout`` seconds from the spawn). The parent keeps no copy
of the sockets: a child that dies takes them along, and a client is refused, not left hanging.

The child's stderr goes to an anonymous temporary file (nothing to drain, nothing to block: a
notebook busy in a long C call cannot stall the child's logging), whose tail is quoted when the
child fails to start or has died. A thread of the parent follows that file (every
``LOG_POLL_S`` seconds) and passes each of the child's log records to the parent's logger of
the same name and level (``telnyx_nb.sandbox.…``; the child's format is ``child.LOG_FORMAT``),
so its messages — a webhook given up, say — reach the notebook's ``logging``, never a cell's
output; any other line goes to ``telnyx_nb.sandbox`` as a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any, NoReturn

from telnyx_nb.sandbox.control import SandboxProcessError

__all__ = ["SandboxProcess", "STDERR_TAIL_BYTES"]

STDERR_TAIL_BYTES = 4000
#: How often the parent reads what the child has added to its stderr file (seconds).
LOG_POLL_S = 0.25
#: A log line of the child (see ``child.LOG_FORMAT``): level, logger name, message.
_RECORD = re.compile(r"^\S+ \S+ telnyx_nb-sandbox\[\d+\] (?P<level>[A-Z]+) (?P<name>telnyx_nb[\w.]*): (?P<message>.*)$")
#: Connections the API and control sockets queue while the child boots or is busy.
_BACKLOG = 512
#: The directory that holds the ``telnyx_nb`` package the parent runs: the child imports the same.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class SandboxProcess:
    """One child process running the sandbox (see the module docstring)."""

    def __init__(self, config: dict[str, Any], start_timeout: float = 30.0) -> None:
        self._config = config
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._ready_line: queue.Queue[bytes] = queue.Queue(maxsize=1)
        self._deadline = 0.0
        self._ready: dict[str, Any] | None = None
        self._failure: SandboxProcessError | None = None
        self._log: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, host: str, port: int) -> tuple[int, int]:
        """Bind the API socket on ``host:port`` and the control socket on 127.0.0.1, spawn the
        child with them, and return their ports ``(api, control)`` without waiting for it.

        Raises SandboxProcessError when a socket cannot be bound (e.g. the port is in use) or
        the child cannot be spawned.
        """
        if not sys.executable:
            raise SandboxProcessError("cannot start the sandbox's process: sys.executable is unknown "
                                      "(use Sandbox(process=False))")
        sockets: list[socket.socket] = []
        try:
            sockets.append(socket.create_server((host, port), backlog=_BACKLOG))
            sockets.append(socket.create_server(("127.0.0.1", 0), backlog=_BACKLOG))
        except OSError as exc:
            for sock in sockets:
                sock.close()
            raise SandboxProcessError(f"the sandbox cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        api, control = sockets
        try:
            self._spawn({**self._config, "rest_fd": api.fileno(), "control_fd": control.fileno()},
                        (api.fileno(), control.fileno()))
            return api.getsockname()[1], control.getsockname()[1]
        finally:
            api.close()  # the child has its own copies
            control.close()

    def _spawn(self, config: dict[str, Any], fds: tuple[int, ...]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self._stderr = tempfile.TemporaryFile("a+b", prefix="telnyx_nb-sandbox-")  # noqa: SIM115 - kept open
        self._deadline = time.monotonic() + self._start_timeout
        try:
            self._proc = proc = subprocess.Popen(
                [sys.executable, "-m", "telnyx_nb.sandbox", "--child"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._stderr, env=env, close_fds=True, pass_fds=fds,
                start_new_session=True)
        except OSError as exc:
            self._stderr.close()
            raise SandboxProcessError(f"cannot start the sandbox's process: {exc}") from exc
        assert proc.stdin is not None and proc.stdout is not None
        self._finalizer = weakref.finalize(self, _close_quietly, proc.stdin)  # garbage-collected: EOF, child ends
        try:
            proc.stdin.write(json.dumps(config).encode() + b"\n")
            proc.stdin.flush()
        except OSError:
            pass  # it died already: reported by wait_ready with its stderr
        self._log = threading.Thread(target=_follow_log, args=(self._stderr, proc), name="telnyx_nb-sandbox-log",
                                     daemon=True)
        self._log.start()
        stdout, lines = proc.stdout, self._ready_line
        threading.Thread(target=lambda: lines.put(stdout.readline()), name="telnyx_nb-sandbox-ready",
                         daemon=True).start()

    def wait_ready(self) -> dict[str, Any]:
        """The child's ready line, waiting for it until ``start_timeout`` seconds after the spawn.

        Raises SandboxProcessError (with the tail of the child's stderr) when the child exits,
        writes something else, or stays silent past the deadline; the child is then stopped,
        and every later call raises the same error.
        """
        if self._ready is not None:
            return self._ready
        if self._failure is not None:
            raise self._failure
        proc = self._proc
        if proc is None:
            raise RuntimeError("the sandbox's process was not started")
        try:
            line = self._ready_line.get(timeout=max(0.0, self._deadline - time.monotonic()))
        except queue.Empty:
            self._fail(f"did not report ready within {self._start_timeout:g} s")
        if not line:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
            self._fail(f"{self.describe_exit()} during start-up")
        try:
            ready = json.loads(line)
        except ValueError:
            self._fail(f"wrote {line[:200]!r} instead of its ready line")
        _close_quietly(proc.stdout)
        self._ready = ready
        return ready

    def _fail(self, what: str) -> NoReturn:
        note = self._stderr_note()
        self.stop(0.0)
        self._failure = SandboxProcessError(f"the sandbox's process (pid {self.pid}) {what}; start() tries "
                                            f"again{note}")
        raise self._failure

    def wait_exit(self, timeout: float) -> None:
        """Give a dying child up to ``timeout`` seconds to be reaped (so it can be reported)."""
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)

    def describe_exit(self) -> str:
        """``exited with status N`` / ``was killed by signal N (SIGKILL)`` / ``is running``."""
        code = self._proc.poll() if self._proc is not None else None
        if code is None:
            return "is running"
        if code < 0:
            try:
                name = f" ({signal.Signals(-code).name})"
            except ValueError:
                name = ""
            return f"was killed by signal {-code}{name}"
        return f"exited with status {code}"

    def died_error(self) -> SandboxProcessError:
        """The error for a child that is gone (with its exit and its last words)."""
        return SandboxProcessError(f"the sandbox's process (pid {self.pid}) {self.describe_exit()}; its calls are "
                                   f"gone. stop() and start() run a new sandbox.{self._stderr_note()}")

    def stderr_tail(self, n_bytes: int = STDERR_TAIL_BYTES) -> str:
        """The last ``n_bytes`` the child wrote to stderr."""
        handle = self._stderr
        if handle is None or handle.closed:
            return ""
        try:
            size = os.fstat(handle.fileno()).st_size
            start = max(0, size - n_bytes)
            if hasattr(os, "pread"):
                data = os.pread(handle.fileno(), size - start, start)
            else:  # the child appends (O_APPEND), so moving our offset cannot disturb its writes
                handle.seek(start)
                data = handle.read(size - start)
        except (OSError, ValueError):
            return ""
        return data.decode("utf-8", "replace")

    def _stderr_note(self) -> str:
        tail = self.stderr_tail().strip()
        return f"\n--- its stderr (last lines) ---\n{tail}" if tail else " (it wrote nothing to stderr)"

    def stop(self, graceful_s: float) -> None:
        """EOF on its stdin (graceful), then SIGTERM, then SIGKILL; waits until it has exited."""
        proc = self._proc
        if proc is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        _close_quietly(proc.stdin)
        try:
            proc.wait(graceful_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _close_quietly(proc.stdout)

    def close(self) -> None:
        """Forget the child (after :meth:`stop`): its last log records are passed on, its stderr
        file is deleted."""
        if self._log is not None:
            self._log.join(4 * LOG_POLL_S)
        _close_quietly(self._stderr)
        self._proc = None


def _follow_log(handle: IO[bytes], proc: subprocess.Popen[bytes]) -> None:
    """Pass the child's stderr lines to logging until it has exited and all is read (or the
    file is closed): a record's traceback lines go with it, in one message."""
    offset, pending = 0, b""
    record: tuple[str, int, list[str]] | None = None
    while True:
        exited = proc.poll() is not None
        try:
            data = os.pread(handle.fileno(), 1 << 16, offset)
        except (OSError, ValueError):  # closed by close()
            data, exited = b"", True
        offset += len(data)
        *lines, pending = (pending + data).split(b"\n")
        for raw in lines:
            text = raw.decode("utf-8", "replace")
            match = _RECORD.match(text)
            if match is not None or record is None:
                _emit(record)
                level = logging.getLevelName(match["level"]) if match else logging.WARNING
                record = ((match["name"], level if isinstance(level, int) else logging.WARNING, [match["message"]])
                          if match else ("telnyx_nb.sandbox", logging.WARNING, [text]))
            else:
                record[2].append(text)
        if not data:
            _emit(record)
            record = None
            if exited:
                return
            time.sleep(LOG_POLL_S)


def _emit(record: tuple[str, int, list[str]] | None) -> None:
    if record is not None:
        name, level, lines = record
        logging.getLogger(name).log(level, "%s", "\n".join(lines))


def _close_quietly(handle: IO[bytes] | None) -> None:
    if handle is not None:
        with contextlib.suppress(OSError, ValueError):
            handle.close()
