"""Frames the application sends back into a call on one media WebSocket (bidirectional mode).

Everything queued on one stream goes out in order — a ``mark`` after the audio queued before
it — and audio is paced one frame per ``wire.media.FRAME_MS``, as Telnyx plays it. ``clear()``
cancels what is still queued here and sends ``clear`` so that Telnyx flushes its own queue.
Runs on the receiver's I/O loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from telnyx_nb.errors import StreamNotOpenError
from telnyx_nb.wire import media

__all__ = ["Outbound"]

_CLOSED = "the media stream has closed: Telnyx ended it (hang-up, streaming_stop, or a fork that replaced it)"


class Outbound:
    """The send queue of one media WebSocket (``ws`` has an awaitable ``send_str``)."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._tail: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def _send(self, frame: media.AppFrame) -> None:
        """Write one frame; StreamNotOpenError once the socket is closing or closed (Telnyx ends
        a stream on hang-up, ``streaming_stop``, or a fork replacing it)."""
        if self._ws.closed:
            raise StreamNotOpenError(_CLOSED)
        try:
            await self._ws.send_str(media.dumps(frame))
        except ConnectionResetError as exc:
            raise StreamNotOpenError(_CLOSED) from exc

    async def send(self, frames: Sequence[media.AppFrame], *, paced: bool,
                   on_last: Callable[[int], None] | None = None) -> None:
        """Send ``frames`` after everything queued before; ``paced``: one per FRAME_MS.
        ``on_last(ns)``: called with ``time.time_ns()`` just before the last frame is written."""
        this = asyncio.current_task()
        assert this is not None
        previous, self._tail = self._tail, this
        self._pending.add(this)
        try:
            if previous is not None:
                await asyncio.wait({previous})
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for k, frame in enumerate(frames):
                if on_last is not None and k == len(frames) - 1:
                    on_last(time.time_ns())
                await self._send(frame)
                if paced:
                    await asyncio.sleep(max(0.0, t0 + (k + 1) * media.FRAME_MS / 1000 - loop.time()))
        finally:
            self._pending.discard(this)

    async def clear(self) -> None:
        """Drop the frames still queued here, then send ``clear``."""
        self.cancel()
        await self._send(media.Clear())

    def cancel(self) -> None:
        """Cancel everything queued (the socket is gone, or ``clear``)."""
        for task in list(self._pending):
            task.cancel()
        self._tail = None
