"""How live widget updates reach the notebook: one refresh thread per widget, at a bounded rate.

Receiver callbacks (``rx.on``) run on the receiver's callback thread, up to a hundred times a
second per call (one per 20 ms media frame). They never touch a widget: they only add to the
view's counters under a lock. A :class:`Refresher` thread wakes every ``interval_s``
(default 0.1 s, so at most 10 updates per second) and calls ``render()``, which draws only what
changed since the last draw, so one media frame or a hundred cost the notebook the same.

Marshalling: setting a widget's trait on this thread makes ipywidgets send a ``comm_msg`` on
the kernel's IOPub channel. ipykernel (≥ 6) queues every IOPub send onto its IOPub thread
(``iostream.BackgroundSocket``), so a send from any thread is safe, and a message from a
thread that is not a cell's gets the last cell's parent header (ipykernel 7's
``Kernel.get_parent`` falls back on the shell context), which is all the front end needs to
route a comm message to its widget. Outside a kernel (tests, scripts) the comm is a no-op.
The kernel's own loop is never used, and no cell waits for a refresh.

``render()`` returns False when there is nothing more to show (the call ended, the receiver
stopped); the thread then ends. ``stop()`` ends it from anywhere (``close()`` of the widget).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Refresher", "REFRESH_INTERVAL_S"]

#: Seconds between two redraws of one widget (10 updates per second at most).
REFRESH_INTERVAL_S = 0.1

log = logging.getLogger("telnyx_nb.widgets")


class Refresher:
    """A daemon thread that calls ``render()`` every ``interval_s`` s until it returns False."""

    def __init__(self, render: Callable[[], bool], name: str, interval_s: float = REFRESH_INTERVAL_S) -> None:
        if not interval_s >= REFRESH_INTERVAL_S:
            raise ValueError(f"interval_s must be >= {REFRESH_INTERVAL_S} s (10 updates per second), "
                             f"got {interval_s!r}")
        self._render = render
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        failed = False
        while not self._stop.wait(self.interval_s):
            try:
                if not self._render():
                    return
            except Exception:      # a drawing bug must not end the thread, nor reach a cell: logged once
                if not failed:
                    log.exception("widget refresh failed (further failures of this widget are not logged)")
                failed = True

    def stop(self, timeout: float = 2.0) -> None:
        """End the thread (after the draw in progress, if any); no-op once it ended."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
