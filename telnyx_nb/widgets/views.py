"""Live views of one call: its transcript, its counters and a level meter per track.

Each view is fed from receiver callbacks (``feed_*``: called on the receiver's callback thread,
cheap, under a lock) and drawn by its panel's refresh thread (``render()``: sets the widget only
when something changed since the last draw; see ``_refresh``). Feeding and drawing are apart so
that a 50 frames/s track costs the notebook at most 10 redraws a second.
"""

from __future__ import annotations

import html
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import ipywidgets as w
import numpy as np

from telnyx_nb.wire import codecs

__all__ = ["TranscriptView", "CountersView", "LevelMeter", "TRACKS"]

#: Media tracks as Telnyx names them in frames and transcripts.
TRACKS = ("inbound", "outbound")
_TRACK_LABEL = {"inbound": "inbound (far end)", "outbound": "outbound (this side)"}
#: Floor of the level meter, dBFS.
FLOOR_DBFS = -60.0


class TranscriptView(w.HTML):
    """The call's transcript: one line per final result, labelled with its track
    (``inbound`` = the far end, ``outbound`` = the application's side), and below them each
    track's interim result in italics, replaced by its final one when that arrives. When the
    transcription ends before that final (``end_interims()``), the interim stays as a line of
    its own, no longer in italics, marked "(interim, no final)". Shows the last ``max_lines``
    lines, the newest at the bottom of a scrolling box."""

    def __init__(self, max_lines: int = 200) -> None:
        super().__init__(value=self._html([], {}))
        self.add_class("tnb-transcript")
        #: (track, text, is_final): final results, and interims whose transcription ended first
        self._finals: deque[tuple[str, str, bool]] = deque(maxlen=max_lines)
        self._interim: dict[str, str] = {}
        self._lock = threading.Lock()
        self._dirty = False

    def feed(self, transcription_data: Mapping[str, Any]) -> None:
        """One ``call.transcription`` webhook's ``transcription_data``."""
        track = str(transcription_data.get("transcription_track") or "inbound")
        text = str(transcription_data.get("transcript") or "")
        with self._lock:
            if transcription_data.get("is_final", True):
                self._finals.append((track, text, True))
                self._interim.pop(track, None)
            else:
                self._interim[track] = text
            self._dirty = True

    def end_interims(self) -> None:
        """The transcription ended: the interims waiting for a final get none (they stay,
        marked "(interim, no final)")."""
        with self._lock:
            if self._interim:
                self._finals.extend((t, s, False) for t, s in self._interim.items())
                self._interim.clear()
                self._dirty = True

    @property
    def lines(self) -> list[tuple[str, str, bool]]:
        """What the view shows, in order: ``(track, text, is_final)``; the lines above the
        pending interims include interims that got no final (``is_final`` False)."""
        with self._lock:
            return list(self._finals) + [(t, s, False) for t, s in self._interim.items()]

    @property
    def pending(self) -> dict[str, str]:
        """The interim text of each track still waiting for its final result (in italics)."""
        with self._lock:
            return dict(self._interim)

    def render(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            finals, interim, self._dirty = list(self._finals), dict(self._interim), False
        self.value = self._html(finals, interim)

    @staticmethod
    def _html(finals: list[tuple[str, str, bool]], interim: dict[str, str]) -> str:
        def line(track: str, text: str, kind: str) -> str:
            body = {"final": html.escape(text), "interim": f"<i>{html.escape(text)}…</i>",
                    "unfinished": f'{html.escape(text)} <span style="color:gray">(interim, no final)</span>'}[kind]
            return (f'<div class="tnb-line tnb-{html.escape(track)}{"" if kind == "final" else " tnb-" + kind}">'
                    f"<b>{html.escape(_TRACK_LABEL.get(track, track))}</b>: {body}</div>")

        lines = [line(t, s, "final" if final else "unfinished") for t, s, final in finals]
        lines += [line(t, s, "interim") for t, s in interim.items()]
        if not lines:
            lines = ['<div class="tnb-empty" style="color:gray">no transcript yet</div>']
        # column-reverse keeps the box scrolled to its newest (last) line
        return ('<div style="max-height:12em;overflow-y:auto;display:flex;flex-direction:column-reverse">'
                f"<div>{''.join(lines)}</div></div>")


class _Track:
    """Frames of one track, over all the call's streams, and its frames/s."""

    __slots__ = ("frames", "rate", "counted", "counted_at")

    def __init__(self) -> None:
        self.frames = 0
        self.rate = 0.0
        self.counted, self.counted_at = 0, time.monotonic()


class _Chunks:
    """The ``chunk`` numbers of one track of one stream (they start at 1 in each stream)."""

    __slots__ = ("first", "last", "frames")

    def __init__(self, chunk: int) -> None:
        self.first = self.last = chunk
        self.frames = 0

    @property
    def lost(self) -> int:
        """Chunks missing from the range received (RFC 3550 A.1 style, duplicates aside): as
        ``rx.quality()`` counts them, none before the first or after the last one seen."""
        return max(0, self.last - self.first + 1 - self.frames)


class CountersView(w.HTML):
    """Counters of the call, drawn as a table:

    * media stream, per track: frames received since the view opened, frames per second (over
      the last second or more), frames lost (gaps in ``chunk``, counted in each stream apart,
      since chunks restart at 1 in each, and summed: ``rx.quality()``'s ``lost`` for the
      call's streams when the view saw them from their start);
    * forked RTP, per target (``rx``/``tx``): packets and lost packets (from ``rx.quality()``,
      refreshed once a second by the panel while the call has a fork);
    * webhooks of the call; the receiver's event-loop lag p50/p99 in ms (``rx.health()``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.add_class("tnb-counters")
        self._tracks: dict[str, _Track] = {}
        self._chunks: dict[tuple[str, str], _Chunks] = {}
        self._fork: dict[str, tuple[int, int]] = {}
        self._webhooks = 0
        self._lag: tuple[float, float] | None = None
        self._lock = threading.Lock()
        self._dirty = True
        self.render()

    def feed_media(self, track: str, chunk: int | None, stream_id: str = "") -> None:
        """One media frame of ``track`` of stream ``stream_id`` with its ``chunk`` number."""
        with self._lock:
            counts = self._tracks.get(track)
            if counts is None:
                counts = self._tracks[track] = _Track()
            counts.frames += 1
            if chunk is not None:
                chunks = self._chunks.get((stream_id, track))
                if chunks is None:
                    chunks = self._chunks[stream_id, track] = _Chunks(chunk)
                chunks.first, chunks.last = min(chunks.first, chunk), max(chunks.last, chunk)
                chunks.frames += 1
            self._dirty = True

    def _lost(self, track: str) -> int:
        return sum(c.lost for (_, t), c in self._chunks.items() if t == track)

    def set_webhooks(self, n: int) -> None:
        with self._lock:
            self._dirty |= n != self._webhooks
            self._webhooks = n

    def set_fork(self, counts: Mapping[str, tuple[int, int]]) -> None:
        """``{target: (packets, lost)}`` for the call's forked RTP."""
        with self._lock:
            self._fork, self._dirty = dict(counts), True

    def set_lag(self, p50_ms: float, p99_ms: float) -> None:
        with self._lock:
            self._lag, self._dirty = (p50_ms, p99_ms), True

    def counts(self) -> dict[str, Any]:
        """The numbers shown: ``frames``/``frames_per_s``/``lost`` per track, ``rtp`` per target
        as (packets, lost), ``webhooks``, ``loop_lag_ms`` (p50, p99) or None."""
        with self._lock:
            return {"frames": {t: c.frames for t, c in self._tracks.items()},
                    "frames_per_s": {t: c.rate for t, c in self._tracks.items()},
                    "lost": {t: self._lost(t) for t in self._tracks},
                    "rtp": dict(self._fork), "webhooks": self._webhooks, "loop_lag_ms": self._lag}

    def update_rates(self, now: float | None = None) -> None:
        """Recompute frames/s for tracks counted at least a second ago."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for counts in self._tracks.values():
                if now - counts.counted_at >= 1.0:
                    counts.rate = (counts.frames - counts.counted) / (now - counts.counted_at)
                    counts.counted, counts.counted_at = counts.frames, now
                    self._dirty = True

    def render(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
            rows = [(f"stream {_TRACK_LABEL.get(t, t)}", f"{c.frames:,} frames", f"{c.rate:.0f} frames/s",
                     f"{self._lost(t):,} lost") for t, c in sorted(self._tracks.items())]
            rows += [(f"fork {target}", f"{packets:,} RTP packets", "", f"{lost:,} lost")
                     for target, (packets, lost) in sorted(self._fork.items())]
            rows.append(("webhooks", f"{self._webhooks:,}", "", ""))
            if self._lag is not None:
                rows.append(("receiver loop lag", f"p50 {self._lag[0]:.2f} ms", f"p99 {self._lag[1]:.2f} ms", ""))
        cells = "".join("<tr>" + "".join(f'<td style="padding:0 1em 0 0">{html.escape(c)}</td>' for c in row)
                        + "</tr>" for row in rows)
        self.value = f"<table>{cells}</table>"


class LevelMeter(w.HBox):
    """The level of each media-stream track: RMS in dBFS over the frames since the last draw,
    as a bar from −60 dBFS (empty) to 0 dBFS (full) and the number; "—" while no frame of the
    track came since the last draw, or its codec is one this toolkit cannot decode (G722, OPUS,
    AMR-WB). L16 is read big-endian (RFC 2586, as the sandbox sends it)."""

    def __init__(self) -> None:
        self.bars = {t: w.FloatProgress(value=FLOOR_DBFS, min=FLOOR_DBFS, max=0.0, description=t,
                                        layout=w.Layout(width="16em")) for t in TRACKS}
        self.labels = {t: w.Label("—") for t in TRACKS}
        super().__init__([w.HBox([self.bars[t], self.labels[t]]) for t in TRACKS])
        self.add_class("tnb-levels")
        self._codecs: dict[str, codecs.Codec | None] = {}
        self._power: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def knows(self, stream_id: str) -> bool:
        return stream_id in self._codecs

    def set_encoding(self, stream_id: str, encoding: str) -> None:
        """The stream's ``media_format.encoding`` (from its ``start``)."""
        try:
            codec: codecs.Codec | None = codecs.get_codec(encoding)
        except codecs.UnsupportedCodecError:
            codec = None
        self._codecs[stream_id] = codec

    def feed(self, stream_id: str, track: str, payload: bytes) -> None:
        """One media frame's payload (skipped until its stream's encoding is known)."""
        codec = self._codecs.get(stream_id)
        if codec is None:
            return
        samples = codec.decode(payload).astype(np.float64)
        with self._lock:
            total, n = self._power.get(track, (0.0, 0))
            self._power[track] = (total + float(np.dot(samples, samples)), n + len(samples))

    @property
    def levels(self) -> dict[str, float]:
        """The last drawn level per track, dBFS (the bar's value)."""
        return {t: bar.value for t, bar in self.bars.items()}

    def render(self) -> None:
        with self._lock:
            power, self._power = self._power, {}
        for track, bar in self.bars.items():
            total, n = power.get(track, (0.0, 0))
            rms = math.sqrt(total / n) / 32768.0 if n else 0.0
            dbfs = max(FLOOR_DBFS, 20 * math.log10(rms)) if rms > 0 else FLOOR_DBFS
            bar.value = dbfs
            self.labels[track].value = f"{dbfs:.0f} dBFS" if n else "—"
