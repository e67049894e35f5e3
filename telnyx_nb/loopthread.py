"""An asyncio event loop on a daemon thread, driven from synchronous code.

The receiver and the sandbox each own one (and so does the tests' independent peer), so that
their I/O never runs on — nor patches — the notebook kernel's loop. uvloop is used when it is
importable (faster, and free of stock asyncio's 256 KiB read-buffer cost per small message),
with a stock asyncio fallback. Errors nobody handled on the loop (a transport a peer reset, a
task nobody awaited) go to the ``telnyx_nb.loopthread`` logger, not to asyncio's, whose
last-resort handler would print them into whatever notebook cell runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "new_event_loop", "LOOP_KINDS"]

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Accepted values of ``loop=``: uvloop when importable, uvloop or fail, stock asyncio.
LOOP_KINDS = ("auto", "uvloop", "asyncio")


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A new loop of ``kind`` (see LOOP_KINDS); ImportError for "uvloop" without uvloop."""
    if kind not in LOOP_KINDS:
        raise ValueError(f"loop must be one of {LOOP_KINDS}, got {kind!r}")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class LoopThread:
    """``start()`` runs a new loop forever on a daemon thread; ``run(coro)`` waits for a result.

    ``stop(timeout)`` stops the loop and joins the thread; a thread that does not end in time is
    reported (a ``RuntimeWarning``, and ``alive`` stays True) instead of being forgotten.
    """

    def __init__(self, name: str, kind: str = "auto") -> None:
        if kind not in LOOP_KINDS:
            raise ValueError(f"loop must be one of {LOOP_KINDS}, got {kind!r}")
        self.name = name
        self.kind = kind
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self.loop is not None and self.loop.is_running()

    @property
    def alive(self) -> bool:
        """True while the thread exists (also after a ``stop()`` that timed out)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def native_id(self) -> int | None:
        """The thread's OS id (for CPU accounting), None when not started."""
        return self._thread.native_id if self._thread is not None else None

    @property
    def loop_name(self) -> str | None:
        """``"uvloop"`` or ``"asyncio"`` (None before start)."""
        return type(self.loop).__module__.split(".")[0] if self.loop is not None else None

    def start(self) -> None:
        """Create the loop and start its thread; returns once the loop runs."""
        if self.running:
            return
        loop = new_event_loop(self.kind)
        loop.set_exception_handler(_log_unhandled)
        started = threading.Event()
        loop.call_soon(started.set)
        self.loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name=self.name, daemon=True)
        self._thread.start()
        started.wait()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop from any thread; RuntimeError when not running."""
        if self.loop is None or not self.loop.is_running():
            coro.close()
            raise RuntimeError(f"{self.name}: the event loop is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and return its result (TimeoutError after ``timeout`` s)."""
        return self.submit(coro).result(timeout)

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Call ``fn(*args)`` on the loop, from any thread."""
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float) -> bool:
        """Stop the loop and join the thread; False (and a warning) when it did not end in time."""
        thread, loop = self._thread, self.loop
        if thread is None or loop is None:
            return True
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            warnings.warn(f"{self.name}: the I/O thread did not end within {timeout} s; it is still running",
                          RuntimeWarning, stacklevel=3)
            return False
        self.loop = self._thread = None
        return True


def _log_unhandled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    log.error("%s", context.get("message", "unhandled error on the I/O loop"), exc_info=context.get("exception"))
