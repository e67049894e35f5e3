"""Bidirectional playback queue: the application's audio and marks, played 20 ms at a time.

Telnyx plays ``media`` sent by the application in order, echoes a ``mark`` once the audio
queued before it has finished playing (at once when nothing is queued), and on ``clear``
drops the queued audio and echoes every queued mark (docs/protocol.md, "Media-stream frames
from the application"). Sans-I/O: the stream pushes decoded samples, the media clock pops one
frame per tick.

Audio at another rate than the track's is resampled as one continuous signal
(``wire.codecs.Resampler``, soxr's anti-alias filter): its filter holds the last ~0.1 s back
until more audio comes, so that audio is released by a ``mark`` (the audio before a mark is
complete) or once no audio has come for ``IDLE_FLUSH_TICKS`` ticks and the queue has run dry.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from telnyx_nb.wire import codecs

__all__ = ["Playback", "MAX_QUEUED_S", "IDLE_FLUSH_TICKS"]

#: Queue limit; audio beyond it is refused (the stream answers 100005 rate_limit_reached).
MAX_QUEUED_S = 120.0
#: Ticks (20 ms each) without new audio after which the resampler's held-back tail is played.
IDLE_FLUSH_TICKS = 2


class Playback:
    """FIFO of audio segments (int16 at the track's ``rate``) and mark names; audio is pushed at
    ``source_rate`` (the stream's bidirectional rate) and resampled to ``rate``."""

    __slots__ = ("_items", "_queued", "_frame", "_limit", "_resampler", "_idle")

    def __init__(self, rate: int, frame_samples: int, source_rate: int | None = None) -> None:
        self._items: deque[np.ndarray | str] = deque()
        self._queued = 0
        self._frame = frame_samples
        self._limit = int(MAX_QUEUED_S * rate)
        self._resampler = codecs.Resampler(source_rate or rate, rate)
        self._idle = 0

    @property
    def queued_samples(self) -> int:
        return self._queued

    def push_audio(self, samples: np.ndarray) -> bool:
        """Queue audio (at ``source_rate``); False (nothing queued) when it would exceed MAX_QUEUED_S."""
        resampler = self._resampler
        if self._queued + len(samples) * resampler.target // resampler.rate > self._limit:
            return False
        self._idle = 0
        self._append(resampler.push(samples))
        return True

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._items.append(samples)
            self._queued += len(samples)

    def push_mark(self, name: str) -> list[str]:
        """Queue a mark; returns it at once (to echo) when no audio is queued before it."""
        self._append(self._resampler.flush())
        if not self._items:
            return [name]
        self._items.append(name)
        return []

    def clear(self) -> list[str]:
        """Drop queued audio; return the queued marks in order (all to be echoed)."""
        marks = [item for item in self._items if isinstance(item, str)]
        self._items.clear()
        self._resampler.flush()
        self._queued = 0
        return marks

    def pop_frame(self) -> tuple[np.ndarray | None, list[str]]:
        """Next frame of queued audio (zero-padded) or None, and the marks it completes."""
        self._idle += 1
        if not self._items and self._idle >= IDLE_FLUSH_TICKS:
            self._append(self._resampler.flush())
        if not self._items:
            return None, []
        out = np.zeros(self._frame, dtype=np.int16)
        filled = 0
        marks: list[str] = []
        items = self._items
        while items:
            head = items[0]
            if isinstance(head, str):
                items.popleft()
                marks.append(head)
                continue
            if filled == self._frame:
                break
            take = min(self._frame - filled, len(head))
            out[filled:filled + take] = head[:take]
            filled += take
            self._queued -= take
            if take == len(head):
                items.popleft()
            else:
                items[0] = head[take:]
        return (out if filled else None), marks
