"""The life of a live widget: its receiver callbacks, its refresh thread, and ``close()``."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from telnyx_nb.widgets._refresh import REFRESH_INTERVAL_S, Refresher

__all__ = ["LiveBox", "listen"]


class _Hub:
    """One ``rx.on("*")`` callback per receiver for all its widgets, dispatched by call.

    Each ``rx.on`` callback gets its own deep copy of every event (``events.EventBus``), and
    every "*" listener sees every call's media frames: a callback per panel would cost
    O(panels × frames). Here the receiver has one callback while any widget listens, and none
    once the last one is closed; a widget gets its call's events (or all, ``call_control_id``
    None), the same dict for all of them: widgets read events, never change them.
    """

    def __init__(self, rx: Any) -> None:
        self._rx = rx
        self._by_call: dict[str | None, tuple[Callable[[dict[str, Any]], None], ...]] = {}
        self._lock = threading.Lock()
        self._off: Callable[[], None] | None = None

    def listen(self, call_control_id: str | None, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self._lock:
            self._by_call[call_control_id] = (*self._by_call.get(call_control_id, ()), callback)
            if self._off is None:
                self._off = self._rx.on("*", self._dispatch)

        def off() -> None:
            with self._lock:
                left = tuple(cb for cb in self._by_call.get(call_control_id, ()) if cb is not callback)
                if left:
                    self._by_call[call_control_id] = left
                else:
                    self._by_call.pop(call_control_id, None)
                release = self._off if not self._by_call else None
                if release is not None:
                    self._off = None
            if release is not None:
                release()

        return off

    def _dispatch(self, event: dict[str, Any]) -> None:
        by_call = self._by_call
        for callback in by_call.get(event.get("call_control_id"), ()) + by_call.get(None, ()):
            callback(event)


_HUBS: weakref.WeakKeyDictionary[Any, _Hub] = weakref.WeakKeyDictionary()
_HUBS_LOCK = threading.Lock()


def listen(rx: Any, call_control_id: str | None, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
    """Call ``callback(event)`` for each live event of ``rx`` about ``call_control_id`` (every
    call's with None); returns the function that stops it."""
    with _HUBS_LOCK:
        hub = _HUBS.get(rx)
        if hub is None:
            hub = _HUBS[rx] = _Hub(rx)
    return hub.listen(call_control_id, callback)


class LiveBox(w.VBox):
    """A VBox that listens to a receiver (through its :class:`_Hub`) and redraws on a :class:`Refresher`.

    ``_subscribe`` listens, ``_start_refresh`` draws and starts the refresh; the refresh ends when ``_render`` returns
    False, and then the callbacks are released too (a frozen widget costs the receiver nothing).
    ``close()`` releases both and closes the widget with every widget inside it.
    """

    def _subscribe(self, rx: Any, call_control_id: str | None, on_event: Callable[[dict[str, Any]], None]) -> None:
        """Listen to the events of ``rx`` about the call (all with None), through the receiver's
        hub; called before reading its history, so that nothing falls between."""
        self._offs: list[Callable[[], None]] = [listen(rx, call_control_id, on_event)]
        self._offs_lock = threading.Lock()
        self._refresher: Refresher | None = None

    def _start_refresh(self, render: Callable[[], bool], name: str, interval_s: float = REFRESH_INTERVAL_S) -> None:
        """Draw once now, then every ``interval_s`` s on a thread until ``render()`` returns False."""
        def render_or_release() -> bool:
            if render():
                return True
            self._release()
            return False

        if render_or_release():
            self._refresher = Refresher(render_or_release, name, interval_s)

    @property
    def refreshing(self) -> bool:
        """True while the widget redraws itself (False once closed, or its call or receiver ended)."""
        return self._refresher is not None and self._refresher.running

    def _release(self) -> None:
        with self._offs_lock:
            offs, self._offs = self._offs, []
        for off in offs:
            off()

    def close(self) -> None:
        """Stop refreshing, release the receiver callbacks, close the widget and its children."""
        if self._refresher is not None:
            self._refresher.stop()
        self._release()
        _close_tree(self)


def _close_tree(widget: w.Widget) -> None:
    for child in getattr(widget, "children", ()):
        if isinstance(child, LiveBox):
            child.close()           # a panel inside a dashboard: its callbacks and thread too
        else:
            _close_tree(child)
    w.Widget.close(widget)
