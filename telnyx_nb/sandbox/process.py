"""The parent's side of the sandbox's process: spawn it, wait until it is ready, stop it.

``SandboxProcess.start()`` runs ``[sys.executable, "-m", "telnyx_nb.sandbox", "--child"]`` with
``subprocess.Popen`` (never a fork of the threaded notebook process), in a session of its own
(a Ctrl-C in the terminal reaches only the parent, which decides), writes the configuration
line to its stdin and keeps stdin open: that pipe is the child's lifeline, EOF means "stop".
The child's stderr goes to an anonymous temporary file (nothing to drain, nothing to block),
whose tail is quoted when the child fails to start or has died. The ready line is awaited for
at most ``start_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import IO, Any

from telnyx_nb.sandbox.control import SandboxProcessError

__all__ = ["SandboxProcess", "STDERR_TAIL_BYTES"]

STDERR_TAIL_BYTES = 4000
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
        self.ready: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> dict[str, Any]:
        """Spawn the child and return its ready line; SandboxProcessError if it fails."""
        if not sys.executable:
            raise SandboxProcessError("cannot start the sandbox's process: sys.executable is unknown "
                                      "(use Sandbox(process=False))")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self._stderr = tempfile.TemporaryFile("a+b", prefix="telnyx_nb-sandbox-")  # noqa: SIM115 - kept open
        try:
            self._proc = proc = subprocess.Popen(
                [sys.executable, "-m", "telnyx_nb.sandbox", "--child"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._stderr, env=env, close_fds=True, start_new_session=True)
        except OSError as exc:
            self._stderr.close()
            raise SandboxProcessError(f"cannot start the sandbox's process: {exc}") from exc
        assert proc.stdin is not None and proc.stdout is not None
        self._finalizer = weakref.finalize(self, _close_quietly, proc.stdin)  # garbage-collected: EOF, child ends
        try:
            proc.stdin.write(json.dumps(self._config).encode() + b"\n")
            proc.stdin.flush()
        except OSError:
            pass  # it died already: reported below with its stderr
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = proc.stdout
        reader = threading.Thread(target=lambda: lines.put(stdout.readline()), name="telnyx_nb-sandbox-ready",
                                  daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=self._start_timeout)
        except queue.Empty:
            self.stop(0.0)
            raise SandboxProcessError(f"the sandbox's process did not report ready within {self._start_timeout:g} s"
                                      f"{self._stderr_note()}") from None
        if not line:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
            note = self._stderr_note()
            self.stop(0.0)
            raise SandboxProcessError(f"the sandbox's process {self.describe_exit()} during start-up{note}")
        stdout.close()
        try:
            self.ready = json.loads(line)
        except ValueError:
            self.stop(0.0)
            raise SandboxProcessError(f"the sandbox's process wrote {line[:200]!r} instead of its ready line") from None
        return self.ready

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
        """Forget the child (after :meth:`stop`); its stderr file is deleted."""
        _close_quietly(self._stderr)
        self._proc = None


def _close_quietly(handle: IO[bytes] | None) -> None:
    if handle is not None:
        with contextlib.suppress(OSError, ValueError):
            handle.close()
