"""``Audio`` (int16 samples, a rate and the UTC time of the first sample, with a WAV writer and a
notebook player), and the assembly of stored payloads into audio on a media timeline.

Audio is placed by **media time**, not by counting frames:

* a media stream's frames by ``chunk``: each chunk's samples follow the previous chunk's, and a
  run of missing chunks is silence as long as the ``timestamp`` field says (when the stream's
  timestamps count milliseconds or samples, checked on its consecutive chunks), else one
  typical frame per missing chunk (:func:`assemble_stream`). A chunk restart adds no silence;
  a timestamp that disagrees with the chunk numbers (it goes backwards, or steps further than
  the chunks it spans can last at MAX_FRAME_S each) is a discontinuity, handled like a
  restart: the gap is sized by the chunk numbers;
* a forked RTP source's packets by RTP timestamp (per SSRC, extended over wraps, in sequence
  order), so packets of any duration (10, 30, 40 ms, a mix, an empty payload) keep the
  timeline and missing media is silence of the right length. Only audio payload types are
  decoded; RFC 4733 telephone events are not audio (the store turns them into ``dtmf`` rows);
  RFC 3389 comfort noise fills its period, up to the next packet, with noise at its level;
  packets of any other payload type are left out and counted in ``Audio.left_out``. A
  timestamp that goes backwards, or jumps further ahead than the sequence numbers allow, is a
  discontinuity handled like a sequence restart: the media goes on right after what came
  before (:func:`assemble_fork`).

A call's streams (or SSRCs) are then joined on one timeline, in arrival order: across SSRCs
whose sequence numbers continue by sequence number, otherwise by the arrival gap rounded to
whole frames, as silence (:func:`join`). Two tracks are aligned by their start times into two
channels (:func:`stack`). Work is vectorised: the only Python loops run once per contiguous
run of payload bytes, per comfort-noise packet and per stream or SSRC.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import wave
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from telnyx_nb import defaults
from telnyx_nb.wire import codecs
from telnyx_nb.wire.media import FRAME_MS
from telnyx_nb.wire.rtp import SEQ_MOD, extend_sequence
from telnyx_nb.wire.telephone_event import (
    CN_PAYLOAD_TYPE,
    COMFORT_NOISE,
    TELEPHONE_EVENT_PAYLOAD_TYPE,
    comfort_noise_level,
    comfort_noise_rms,
    event_clock_rate,
)

__all__ = [
    "Audio", "Timeline", "assemble", "assemble_stream", "assemble_fork", "fork_payload_kinds", "join", "stack",
    "SEQ_CONTINUE_WINDOW", "TS_JUMP_S", "MAX_SILENCE_S", "MAX_FRAME_S", "CN_SEED",
]

#: A new SSRC whose first sequence number is 1..this many after the previous SSRC's last one
#: continues it (the missing numbers are silence); otherwise the arrival gap decides.
SEQ_CONTINUE_WINDOW = 100
#: Within an SSRC, a forward timestamp jump larger than the sequence gap accounts for by more
#: than this many seconds is a discontinuity...
TS_JUMP_S = 10.0
#: ...unless the packet starts a talkspurt (marker bit) or follows comfort noise: silence
#: suppression may then leave a gap of up to this long (also the longest silence inserted
#: between two streams or SSRCs of one call).
MAX_SILENCE_S = 3600.0
#: The longest media one stream chunk may stand for, in seconds (Opus's longest frame; the usual
#: chunk is 20 ms): a gap that spans k chunks is never filled with more silence than k times this.
MAX_FRAME_S = 0.12
#: Comfort noise is reproducible: the same input gives the same samples.
CN_SEED = 3389

if TYPE_CHECKING:
    from IPython.display import HTML

_TS_MOD = 1 << 32
_TS_HALF = 1 << 31


@dataclass(frozen=True, eq=False)
class Audio:
    """16-bit audio as assembled from streams or forks: the sample index is media time.

    ``samples`` is 1-D (mono) or ``(n, 2)`` (``track="both"``: inbound/rx, outbound/tx).
    ``start`` is the UTC time of the first sample (the arrival of the frame or packet that
    carried it; None when unknown). ``left_out`` counts forked packets by payload type that
    were neither audio, telephone events nor comfort noise, and so are not in ``samples``.
    """

    samples: np.ndarray
    rate: int
    start: pd.Timestamp | None = None
    left_out: Mapping[int, int] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        text = f"Audio({len(self.samples)} samples, {self.rate} Hz, {self.duration:.2f} s"
        if self.channels != 1:
            text += f", {self.channels} channels"
        if self.start is not None:
            text += f", from {self.start.isoformat()}"
        if self.left_out:
            text += f", left out {dict(self.left_out)}"
        return text + ")"

    def wav_bytes(self) -> bytes:
        """The audio as a 16-bit PCM WAV file (mono, or 2 interleaved channels), in memory."""
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(self.channels)
            out.setsampwidth(2)
            out.setframerate(self.rate)
            out.writeframes(np.ascontiguousarray(self.samples, dtype="<i2").tobytes())
        return buffer.getvalue()

    def to_wav(self, path: str | PathLike[str]) -> Path:
        """Write a 16-bit PCM WAV file and return its path."""
        path = Path(path)
        path.write_bytes(self.wav_bytes())
        return path

    def clip(self, start_s: float = 0.0, stop_s: float | None = None) -> Audio:
        """The samples from ``start_s`` to ``stop_s`` seconds (media time; ``stop_s`` None: to the
        end), as a new ``Audio`` whose ``start`` is moved by ``start_s``. Raises ``ValueError``
        for a negative or reversed range."""
        if start_s < 0 or (stop_s is not None and stop_s < start_s):
            raise ValueError(f"clip({start_s}, {stop_s}): need 0 <= start_s <= stop_s")
        first = round(start_s * self.rate)
        last = None if stop_s is None else round(stop_s * self.rate)
        start = None if self.start is None else self.start + pd.Timedelta(seconds=first / self.rate)
        return Audio(self.samples[first:last], self.rate, start, self.left_out)

    def player(self, max_s: float | None = defaults.AUDIO_EMBED_MAX_S) -> HTML:
        """A notebook player (``IPython.display.HTML``) embedding at most ``max_s`` seconds
        (None: all of it) as WAV; when audio is left out, a note under the player says how much
        and how to get the rest. Displaying an ``Audio`` shows ``player()``."""
        from IPython.display import HTML
        from IPython.display import Audio as Player

        shown = self if max_s is None or self.duration <= max_s else self.clip(0, max_s)
        html = Player(data=shown.wav_bytes())._repr_html_()
        if len(shown) < len(self):
            html += (f"<div><small>The player holds the first {shown.duration:.1f} s of "
                     f"{self.duration:.1f} s, to keep the notebook small: "
                     f"<code>.player(max_s=None)</code> embeds all of it, "
                     f"<code>.clip(start_s, stop_s)</code> another part, "
                     f"<code>.to_wav(path)</code> saves it.</small></div>")
        return HTML(html)

    def _repr_html_(self) -> str:
        return str(self.player().data)


@dataclass(eq=False)
class Timeline:
    """One stream track or SSRC (or a call's joined ones) on its own media timeline.

    ``fill`` is the codec's digital silence as a sample value; ``frame`` the typical frame in
    samples. ``first_ns``/``last_ns``: arrival of the frame or packet holding the first / last
    media; ``arrived_ns``: the earliest arrival of any of them (the order of joining).
    ``first_seq``/``last_seq``: RTP sequence numbers of the first and last packet in sequence
    order (None for streams).
    """

    samples: np.ndarray
    rate: int
    fill: int
    frame: int
    first_ns: int
    last_ns: int
    arrived_ns: int
    first_seq: int | None = None
    last_seq: int | None = None
    left_out: dict[int, int] = field(default_factory=dict)

    def audio(self) -> Audio:
        return Audio(self.samples, self.rate, pd.Timestamp(self.first_ns, tz="UTC"), dict(self.left_out))


def _first_copies(ext: np.ndarray) -> np.ndarray:
    """Row indexes of the first copy of each number >= 0, in number order (rows are in arrival order)."""
    rows = np.flatnonzero(ext >= 0)
    _, first = np.unique(ext[rows], return_index=True)
    return rows[first]


def _typical_frame(n: np.ndarray, rate: int) -> int:
    """The most common non-empty frame length in samples (20 ms at ``rate`` when there is none)."""
    n = n[n > 0]
    return int(np.bincount(n).argmax()) if len(n) else rate * FRAME_MS // 1000


def _place(out: np.ndarray, pos: np.ndarray, n: np.ndarray, off: np.ndarray, codec_index: np.ndarray,
           table: Sequence[codecs.Codec], payload: bytes) -> None:
    """Decode packet k's first ``n[k]`` samples at ``payload[off[k]:]`` into ``out[pos[k]:]``.

    Packets that follow each other both in ``payload`` and on the timeline (and share a codec)
    form one run. Runs of one codec that do not overlap are joined with the codec's silence
    between them and decoded in one call (:func:`_joined`); otherwise each run is decoded on
    its own and, where runs overlap on the timeline, the later one wins.
    """
    keep = n > 0
    pos, n, off, codec_index = pos[keep], n[keep], off[keep], codec_index[keep]
    if not len(pos):
        return
    width = np.array([c.bytes_per_sample for c in table], dtype=np.int64)[codec_index]
    starts = np.ones(len(pos), dtype=bool)
    starts[1:] = ((pos[1:] != pos[:-1] + n[:-1]) | (off[1:] != off[:-1] + n[:-1] * width[:-1])
                  | (codec_index[1:] != codec_index[:-1]))
    first = np.flatnonzero(starts)
    lengths = np.add.reduceat(n, first)
    run_pos = pos[first]
    if len(table) == 1 and bool(np.all(run_pos[1:] >= run_pos[:-1] + lengths[:-1])):
        _joined(out, run_pos, off[first], lengths, table[0], payload)
        return
    view = memoryview(payload)
    for p, o, c, length in zip(pos[first].tolist(), off[first].tolist(), codec_index[first].tolist(),
                               lengths.tolist(), strict=True):
        codec = table[c]
        samples = codec.decode(view[o:o + length * codec.bytes_per_sample])
        end = min(p + length, len(out))
        out[p:end] = samples[:end - p]


def _joined(out: np.ndarray, pos: np.ndarray, off: np.ndarray, lengths: np.ndarray, codec: codecs.Codec,
            payload: bytes) -> None:
    """:func:`_place` for runs of one codec in timeline order without overlap: their bytes, and the
    codec's silence between them, joined (a C loop) and decoded in one call."""
    view = memoryview(payload)
    silence = codec.silence
    width = codec.bytes_per_sample
    gaps = np.zeros(len(pos), dtype=np.int64)
    gaps[1:] = pos[1:] - pos[:-1] - lengths[:-1]
    pieces: list[bytes | memoryview] = []
    add = pieces.append
    for gap, o, size in zip(gaps.tolist(), off.tolist(), (lengths * width).tolist(), strict=True):
        if gap:
            add(silence * gap)
        add(view[o:o + size])
    samples = codec.decode(b"".join(pieces))
    start = int(pos[0])
    end = min(start + len(samples), len(out))
    out[start:end] = samples[:end - start]


def _fill_value(codec: codecs.Codec) -> int:
    return int(codec.decode(codec.silence)[0])


def assemble(numbers: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, payload: bytes,
             codec: codecs.Codec) -> np.ndarray:
    """Decode one track by frame number: numbers extended as :func:`assemble_stream` does (a wild
    number is discarded, a restart adds no silence), first copy of duplicates, each frame after
    the one before it, a missing number as one typical frame (the most common payload size, at
    most MAX_FRAME_S) of the codec's digital silence. A payload that ends in a partial sample
    (an odd-length L16 chunk) loses that byte, so one bad frame cannot make the whole track
    undecodable.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    if not len(numbers):
        return np.zeros(0, dtype=np.int16)
    extended = extend_sequence(numbers, modulus=None)
    rows = _first_copies(extended)
    n = np.asarray(lengths, dtype=np.int64)[rows] // codec.bytes_per_sample
    frame = min(_typical_frame(n, codec.sample_rate), max(round(MAX_FRAME_S * codec.sample_rate), 1))
    pos = _chunk_positions(extended[rows], n, frame, None)
    out = np.full(int(pos[-1] + n[-1]), _fill_value(codec), dtype=np.int16)
    _place(out, pos, n, np.asarray(offsets, dtype=np.int64)[rows], np.zeros(len(rows), dtype=np.int64), [codec],
           payload)
    return out


def _chunk_positions(chunk: np.ndarray, n: np.ndarray, frame: int, gap_samples: np.ndarray | None) -> np.ndarray:
    """Timeline positions of frames in chunk order: each after the previous one, plus the
    silence before it (``gap_samples``, or one ``frame`` per missing chunk number)."""
    if gap_samples is None:
        gap_samples = (np.diff(chunk) - 1) * frame
    return np.concatenate(([0], np.cumsum(n[:-1] + gap_samples))).astype(np.int64)


def _timestamp_unit(ts: np.ndarray, chunk: np.ndarray, n: np.ndarray, rate: int) -> float | None:
    """Samples per ``timestamp`` tick when the stream's timestamps count milliseconds or samples
    (most pairs of consecutive chunks, the first not empty, step by its duration ±1 tick; the
    others are discontinuities)."""
    pairs = (np.diff(chunk) == 1) & (n[:-1] > 0)
    if not pairs.any():
        return None
    with np.errstate(over="ignore"):
        steps = np.diff(ts)[pairs].astype(np.float64)
    durations = n[:-1][pairs].astype(np.float64)
    for ticks_per_second in (1000, rate):
        per_tick = rate / ticks_per_second
        if 2 * np.count_nonzero(np.abs(steps - durations / per_tick) <= 1) > len(steps):
            return per_tick
    return None


def assemble_stream(chunk: np.ndarray, timestamp: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                    arrival_ns: np.ndarray, payload: bytes, codec: codecs.Codec, rate: int) -> Timeline | None:
    """One stream track (rows in arrival order) on its timeline; None when it has no frame left.

    Chunk numbers are extended as RFC 3550 A.1 does (a wild number is discarded, a confirmed
    restart continues the numbers), the first copy of a duplicate is kept. Each chunk follows
    the previous one; before a chunk, silence for the media time the timestamps say is missing
    (at least one tick, so a partial sample is not padded), or, when the timestamps do not
    count milliseconds or samples or disagree with the chunk numbers there, one typical frame
    per missing chunk number. Either way at most MAX_FRAME_S per chunk the gap spans.
    """
    chunk = np.asarray(chunk, dtype=np.int64)
    extended = extend_sequence(chunk, modulus=None)
    rows = _first_copies(extended)
    if not len(rows):
        return None
    width = codec.bytes_per_sample
    n = np.asarray(lengths, dtype=np.int64)[rows] // width
    numbers = extended[rows]
    frame = _typical_frame(n, rate)
    longest = max(round(MAX_FRAME_S * rate), 1)
    missing = np.diff(numbers) - 1
    gaps = missing * min(frame, longest)
    ts = np.asarray(timestamp, dtype=np.int64)[rows]
    per_tick = _timestamp_unit(ts, numbers, n, rate)
    if per_tick is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            deficit = np.diff(ts).astype(np.float64) * per_tick - n[:-1]
        plausible = (deficit >= 0) & (deficit + n[:-1] <= (missing + 1) * float(longest) + per_tick)
        by_time = np.where(deficit >= per_tick, np.rint(np.where(plausible, deficit, 0)), 0).astype(np.int64)
        gaps = np.where(plausible, by_time, gaps)
    pos = _chunk_positions(numbers, n, frame, gaps)
    out = np.full(int(pos[-1] + n[-1]), _fill_value(codec), dtype=np.int16)
    _place(out, pos, n, np.asarray(offsets, dtype=np.int64)[rows], np.zeros(len(rows), dtype=np.int64), [codec],
           payload)
    arrival = np.asarray(arrival_ns, dtype=np.int64)
    return Timeline(out, rate, _fill_value(codec), frame, int(arrival[rows[0]]), int(arrival[rows[-1]]),
                    int(arrival.min()))


def assemble_fork(seq: np.ndarray, rtp_timestamp: np.ndarray, payload_type: np.ndarray, marker: np.ndarray,
                  offsets: np.ndarray, lengths: np.ndarray, arrival_ns: np.ndarray, payload: bytes,
                  audio: Mapping[int, codecs.Codec], comfort_noise: set[int], events: set[int]) -> Timeline | None:
    """One RTP source (rows in arrival order) on its RTP-timestamp timeline.

    ``audio`` maps the payload types to decode to their codecs (all of one sample rate, the RTP
    clock rate); ``comfort_noise`` and ``events`` are the RFC 3389 and RFC 4733 payload types;
    packets of any other type are counted in ``left_out``. None when no audio packet is left.
    Sequence numbers are extended (RFC 3550 A.1: restarts, strays discarded), the first copy of
    a duplicate is kept, timestamps are extended over their 32-bit wrap in sequence order.
    """
    seq = np.asarray(seq, dtype=np.int64)
    extended = extend_sequence(seq)
    rows = _first_copies(extended)
    pt = np.asarray(payload_type, dtype=np.int64)[rows]
    audio_pts = np.array(sorted(audio), dtype=np.int64)
    is_audio = np.isin(pt, audio_pts)
    is_cn = np.isin(pt, np.array(sorted(comfort_noise), dtype=np.int64)) & ~is_audio
    other = ~(is_audio | is_cn | np.isin(pt, np.array(sorted(events), dtype=np.int64)))
    left_out = {int(k): int(v) for k, v in Counter(pt[other].tolist()).items()}
    if not is_audio.any():
        return None
    line = is_audio | is_cn
    rows_on_line = rows[line]
    is_audio, is_cn = is_audio[line], is_cn[line]
    pt = pt[line]
    table = [audio[int(p)] for p in audio_pts]
    rates = {c.sample_rate for c in table}
    if len(rates) != 1:
        raise ValueError(f"payload types {audio_pts.tolist()} of one SSRC have different sample rates {sorted(rates)}")
    rate = rates.pop()
    codec_index = np.searchsorted(audio_pts, pt)
    codec_index[~is_audio] = 0
    width = np.array([c.bytes_per_sample for c in table], dtype=np.int64)[codec_index]
    n = np.where(is_audio, np.asarray(lengths, dtype=np.int64)[rows_on_line] // width, 0)
    frame = _typical_frame(n[is_audio], rate)
    ext = extended[rows_on_line]

    # Positions: timestamp steps in sequence order; a discontinuity starts a new run that
    # begins right after the previous run's media, plus one frame per missing sequence number.
    ts = np.asarray(rtp_timestamp, dtype=np.int64)[rows_on_line]
    step = (np.diff(ts) + _TS_HALF) % _TS_MOD - _TS_HALF
    gap = np.diff(ext)
    talkspurt = np.asarray(marker, dtype=bool)[rows_on_line][1:] | is_cn[:-1]
    limit = gap * frame + np.where(talkspurt, MAX_SILENCE_S, TS_JUMP_S) * rate
    broken = (step < 0) | (step > limit)
    local = np.concatenate(([0], np.cumsum(np.where(broken, 0, step))))
    run = np.concatenate(([0], np.cumsum(broken)))
    run_first = np.concatenate(([0], np.flatnonzero(broken) + 1))
    local -= local[run_first][run]
    run_end = np.maximum.reduceat(local + n, run_first)
    base = np.concatenate(([0], np.cumsum(run_end[:-1] + (gap[broken] - 1) * frame)))
    pos = base[run] + local

    # Comfort noise fills from its packet to the next one on the timeline.
    cn_at = np.flatnonzero(is_cn[:-1])
    cn_end = pos[cn_at + 1]
    total = int(max((pos + n)[is_audio].max(), cn_end.max() if len(cn_end) else 0))
    fill = _fill_value(table[0])
    out = np.full(total, fill, dtype=np.int16)
    _place(out, pos[is_audio], n[is_audio], np.asarray(offsets, dtype=np.int64)[rows_on_line][is_audio],
           codec_index[is_audio], table, payload)
    if len(cn_at):                  # after the audio, whose placing writes silence between packets
        _comfort_noise(out, pos[cn_at], cn_end, rows_on_line[cn_at], np.asarray(offsets, dtype=np.int64),
                       np.asarray(lengths, dtype=np.int64), payload)
    arrival = np.asarray(arrival_ns, dtype=np.int64)
    seq_first, seq_last = int(seq[rows[0]]), int(seq[rows[-1]])
    return Timeline(out, rate, fill, frame, int(arrival[rows_on_line[0]]), int(arrival[rows_on_line[-1]]),
                    int(arrival.min()), seq_first, seq_last, left_out)


def fork_payload_kinds(encodings: Mapping[int, object], encoding: str | None = None,
                       l16_byteorder: codecs.ByteOrder = "big") -> tuple[dict[int, codecs.Codec], set[int], set[int]]:
    """Sort forked payload types (``{payload type: encoding name or None}``, as the ``rtp``
    table's ``encoding`` column has them) into audio (with its codec), comfort noise and
    telephone events, the arguments of :func:`assemble_fork`.

    Telephone events: an encoding "telephone-event[/rate]", or payload type 101 when unnamed.
    Comfort noise: "CN", or payload type 13 when unnamed. Audio: an encoding ``wire.codecs``
    decodes, or with ``encoding`` every other payload type. The rest is neither.
    """
    override = codecs.get_codec(encoding, l16_byteorder=l16_byteorder) if encoding is not None else None
    audio: dict[int, codecs.Codec] = {}
    noise: set[int] = set()
    events: set[int] = set()
    for pt, name in encodings.items():
        name = name if isinstance(name, str) else None
        if event_clock_rate(name) is not None or (name is None and pt == TELEPHONE_EVENT_PAYLOAD_TYPE):
            events.add(pt)
        elif (name or "").upper() == COMFORT_NOISE or (name is None and pt == CN_PAYLOAD_TYPE):
            noise.add(pt)
        elif override is not None:
            audio[pt] = override
        elif name is not None:
            with contextlib.suppress(codecs.UnsupportedCodecError):
                audio[pt] = codecs.get_codec(name, l16_byteorder=l16_byteorder)
    return audio, noise, events


def _comfort_noise(out: np.ndarray, starts: np.ndarray, ends: np.ndarray, rows: np.ndarray, offsets: np.ndarray,
                   lengths: np.ndarray, payload: bytes) -> None:
    """Gaussian noise at each comfort-noise packet's level (RFC 3389: -dBov) over its period."""
    rng = np.random.default_rng(CN_SEED)
    for start, end, row in zip(starts.tolist(), ends.tolist(), rows.tolist(), strict=True):
        if end <= start:
            continue
        level = comfort_noise_level(payload[offsets[row]:offsets[row] + lengths[row]])
        noise = rng.standard_normal(end - start) * comfort_noise_rms(level)
        out[start:end] = np.clip(np.rint(noise), -32768, 32767).astype(np.int16)


def join(timelines: Sequence[Timeline]) -> Timeline:
    """Several streams or SSRCs of one track on one timeline, in order of first arrival.

    Between two of them: when the next one's first RTP sequence number continues the previous
    one's last (1..SEQ_CONTINUE_WINDOW on), one frame of silence per missing number; otherwise
    silence for the arrival gap (from the last media of one to the first of the next) less one
    frame, rounded to whole frames, at most MAX_SILENCE_S. Raises ValueError when their sample
    rates differ.
    """
    ordered = sorted(timelines, key=lambda t: t.arrived_ns)
    rates = {t.rate for t in ordered}
    if len(rates) != 1:
        raise ValueError(f"the streams have different sample rates {sorted(rates)}")
    first = ordered[0]
    if len(ordered) == 1:
        return first
    parts = [first.samples]
    left_out: Counter[int] = Counter(first.left_out)
    for a, b in itertools.pairwise(ordered):
        frame = max(a.frame, 1)
        step = (b.first_seq - a.last_seq) % SEQ_MOD if a.last_seq is not None and b.first_seq is not None else 0
        if 1 <= step <= SEQ_CONTINUE_WINDOW:
            silence = (step - 1) * frame
        else:
            frames = round((b.first_ns - a.last_ns) / 1e9 * a.rate / frame) - 1
            silence = min(max(frames, 0) * frame, int(MAX_SILENCE_S * a.rate))
        if silence:
            parts.append(np.full(silence, a.fill, dtype=np.int16))
        parts.append(b.samples)
        left_out.update(b.left_out)
    last = ordered[-1]
    return Timeline(np.concatenate(parts), first.rate, first.fill, first.frame, first.first_ns, last.last_ns,
                    first.arrived_ns, first.first_seq, last.last_seq, dict(left_out))


def stack(tracks: Sequence[Timeline | None]) -> Audio:
    """Tracks time-aligned as channels (``samples`` of shape ``(n, len(tracks))``): each starts
    at its first sample's time after the earliest start; a missing track (None) is silence.
    Raises ValueError when the rates differ, LookupError when every track is missing."""
    present = [t for t in tracks if t is not None]
    if not present:
        raise LookupError("no audio on any track")
    rates = {t.rate for t in present}
    if len(rates) != 1:
        raise ValueError(f"the tracks have different sample rates {sorted(rates)}")
    rate = rates.pop()
    start = min(t.first_ns for t in present)
    offsets = [0 if t is None else round((t.first_ns - start) / 1e9 * rate) for t in tracks]
    length = max(o + len(t.samples) for o, t in zip(offsets, tracks, strict=True) if t is not None)
    out = np.zeros((length, len(tracks)), dtype=np.int16)
    left_out: Counter[int] = Counter()
    for channel, (offset, track) in enumerate(zip(offsets, tracks, strict=True)):
        if track is None:
            continue
        out[:offset, channel] = track.fill
        out[offset:offset + len(track.samples), channel] = track.samples
        out[offset + len(track.samples):, channel] = track.fill
        left_out.update(track.left_out)
    return Audio(out, rate, pd.Timestamp(start, tz="UTC"), dict(left_out))
