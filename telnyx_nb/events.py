"""Live events for ``rx.on(...)`` callbacks: a bounded queue and one worker thread.

The receiver's I/O thread only enqueues (it never runs user code); callbacks run in arrival
order on the worker thread. A full queue drops the event and counts it (``dropped``), so a
slow callback can never hold up ingest or grow memory without bound. A callback that raises
is counted (``errors``) and logged with its traceback (an error of the ``telnyx_nb.events``
logger, never printed into whatever cell runs); the other callbacks still run. Each callback gets
its own copy of the event when several listen, never a dict the store keeps.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from telnyx_nb.defaults import CALLBACK_QUEUE_SIZE

__all__ = ["EventBus", "EventSink", "Callback", "WILDCARD"]

Callback = Callable[[dict[str, Any]], Any]
#: ``on("*", cb)`` listens to every event.
WILDCARD = "*"
_CLOSE = object()

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where the I/O layer sends live events: an :class:`EventBus`, or the capture process's
    forwarder to the notebook. ``active`` is False when nobody listens (no event is built)."""

    active: bool

    def emit(self, event_type: str, build: Callable[[], dict[str, Any]]) -> None: ...


class EventBus:
    """Listeners by event type, and the queue and worker thread that call them."""

    def __init__(self, queue_size: int = CALLBACK_QUEUE_SIZE, name: str = "telnyx_nb-callbacks") -> None:
        if queue_size < 1:
            raise ValueError(f"callback_queue_size must be >= 1, got {queue_size!r}")
        self._listeners: dict[str, tuple[Callback, ...]] = {}
        #: True when anybody listens (the I/O thread builds no event otherwise); a plain
        #: attribute, read once per media frame.
        self.active = False
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._name = name
        self._thread: threading.Thread | None = None
        self._closing = False
        self.dropped = 0
        self.errors = 0

    def on(self, event_type: str, callback: Callback) -> Callable[[], None]:
        """Add a listener; returns the function that removes it. TypeError if not callable."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        listeners = dict(self._listeners)
        listeners[event_type] = (*listeners.get(event_type, ()), callback)
        self._listeners, self.active = listeners, True

        def unsubscribe() -> None:
            listeners = dict(self._listeners)
            remaining = tuple(cb for cb in listeners.get(event_type, ()) if cb is not callback)
            if remaining:
                listeners[event_type] = remaining
            else:
                listeners.pop(event_type, None)
            self._listeners, self.active = listeners, bool(listeners)

        return unsubscribe

    @property
    def types(self) -> list[str]:
        """The event types somebody listens to ("*" included)."""
        return list(self._listeners)

    @property
    def listeners(self) -> int:
        """How many callbacks are registered (each ``on`` not unsubscribed yet)."""
        return sum(len(callbacks) for callbacks in self._listeners.values())

    def emit(self, event_type: str, build: Callable[[], dict[str, Any]]) -> None:
        """Queue ``{"event_type": ..., **build()}`` for the listeners of its type and of "*".

        ``build`` runs only when somebody listens. Called on the I/O thread; never blocks.
        """
        listeners = self._listeners
        callbacks = listeners.get(event_type, ()) + listeners.get(WILDCARD, ())
        if not callbacks:
            return
        try:
            self._queue.put_nowait((callbacks, {"event_type": event_type, **build()}))
        except queue.Full:
            self.dropped += 1

    def start(self) -> None:
        """Start the worker thread (no-op when it runs)."""
        if self._thread is None or not self._thread.is_alive():
            self._closing = False
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()

    def close(self, timeout: float) -> bool:
        """Run what is queued, then end the worker; False when it did not end within ``timeout``.

        Called from a callback (on the worker itself), the worker ends after that callback.
        """
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():   # stop() called from a callback: end after it
            self._closing = True
            self._thread = None
            return True
        try:
            self._queue.put(_CLOSE, timeout=timeout)
        except queue.Full:
            return False
        thread.join(timeout)
        if thread.is_alive():
            return False
        self._thread = None
        return True

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                return
            callbacks, event = item
            for i, callback in enumerate(callbacks):
                self._call(callback, event if i == len(callbacks) - 1 else copy.deepcopy(event))
            if self._closing:
                return

    def _call(self, callback: Callback, event: dict[str, Any]) -> None:
        try:
            callback(event)
        except Exception as exc:  # a user callback must not stop the others
            self.errors += 1
            log.error("callback %r raised %r", callback, exc, exc_info=True)
