"""Stream-quality analytics over the store's tables: loss, duplicates, reordering, jitter, MOS,
loss bursts, arrival bursts, codec mismatch; a per-call summary; reconciliation with Telnyx.

Reach it as ``tnb.quality`` (the module); ``rx.quality()`` / ``session.quality()`` call
:func:`quality` with the session's tables and payloads.

**Counting** follows RFC 3550 appendix A.1: ``expected`` runs from the first to the last
(extended) sequence number received, ``lost = expected - unique received``, ``duplicates``
are extra copies, ``reordered`` counts packets that arrive after one with a higher number
(a swapped pair counts 1; duplicates are never reordered). A stream track is numbered by its
``chunk``, a forked RTP source by its extended ``seq``.

**Jitter** is RFC 3550 section 6.4.1 (A.8) over the first copies in arrival order, whose
recursion ``J += (|D| - J) / 16`` is exactly ``ewm(alpha=1/16, adjust=False)`` started from 0,
so it runs vectorised. Media time is ``chunk × frame duration`` on a stream (Telnyx does not
document the ``timestamp`` field's unit) and the unwrapped RTP timestamp over the clock rate
on a fork (RFC 4733 telephone events and comfort noise are counted but not timed). A fork's
clock rate is that of the encoding of most of its audio packets: the receiver's decodable codecs,
the dynamic types ``Receiver(payload_types=...)`` names, and RFC 3551's static types
(:data:`STATIC_CLOCK_RATES`: PCMU, PCMA, G722 and G729 all 8000, as RFC 3551 says even of
G722). A payload type of unknown clock (OPUS or AMR-WB on a dynamic type nobody named) gives
``jitter_ms`` and ``mos`` NaN rather than a number computed at a guessed rate; the per-call
worst (``by="call"``) skips those NaN.

**Loss bursts** (``loss_burst_1`` … ``loss_burst_9``, ``loss_burst_10plus``): the lost packets
A.1 counts, grouped into runs of consecutive numbers, counted by run length as VoIPmonitor's ten
loss intervals do (runs of 1, 2, …, 9 and of 10 or more packets). ``sum(k × loss_burst_k)`` is
``lost`` when no run reaches 10. Losses before the first or after the last packet received are
not runs (A.1 cannot see them). :func:`loss_bursts` gives the same counts as a long table.

**Arrival bursts**: a WebSocket stream runs over TCP, which hides loss as delay: a frame held
back by a retransmission arrives together with the ones queued behind it. ``arrival_burst_pct``
is the share (%) of a track's frames (first copies, in arrival order) that arrived less than
``BURST_GAP_MS`` (2 ms) after the previous one, ``arrival_burst_max`` the most frames in one such
burst (1 when none arrived bunched; 0 without frames). A paced 20 ms stream gives 0 % and 1.
Computed on fork rows too (UDP does not bunch; duplicates sent back to back are not counted).

**MOS** is the E-model of :mod:`telnyx_nb.emodel` (ITU-T G.107 simplified for G.711 without
packet-loss concealment, random loss): ``mos(loss_pct, jitter_ms)``, one-way delay
``d = 2 × jitter + 10 ms``; the formula and its parameters are documented there.

**Codec mismatch** (``codec_mismatch``): True when a stream's or fork's declared G.711 law
(``start.media_format.encoding``, or the RTP payload type) does not fit its payload — A-law
bytes labelled PCMU or µ-law bytes labelled PCMA, which decode to loud static. Both laws keep
a sample's sign in bit 7 and code its magnitude as a 7-bit level index that rises with the
magnitude, but µ-law inverts every bit and A-law every other, so reading one law's byte as the
other keeps the sign and turns level index ``m`` into ``m XOR 0x2A``: a bijection that scrambles
the order of levels (segments swap, steps within a segment zigzag). Two views of each block
ask which law's order of levels makes the bytes a smoother signal, and both must agree:

* *turning points*, the turning-point test of randomness: the turning points (a step up followed
  by a step down or the reverse, equal neighbours skipped) among the moves between consecutive
  samples, as a fraction ``t`` of the moves. It does not change under any increasing map, so the
  correct decoding keeps exactly the turning points of the quantised signal at any level (no step
  size or loudness enters); independent samples turn at 2/3 of the moves. The block's
  *smoothness* evidence is ``(2/3 − t_other) − |t_declared − 2/3|``: how much smoother than random
  the other law's decoding is, beyond the declared one's distance from random in either
  direction. Only turning less than random counts for the other law: a scrambled decoding can
  turn *more* than random (a clipped tone's other decoding overshoots at every edge), and a
  bright tone's correct decoding turns about as often as random samples;
* *step size*, in the law's levels (the byte order by decoded value, 256 levels): the log of the
  mean step between consecutive samples as declared minus that as the other law. Scrambling
  turns small steps into large ones (a step across a segment boundary becomes a jump of two
  segments), so the wrong decoding takes larger steps.

1. blocks: each first copy's first 160 bytes (20 ms at 8 kHz), in arrival order;
2. a block is *loud* when both decodings have a standard deviation above ``MISMATCH_RMS``
   (100, about -50 dBFS: digital silence and comfort-noise-level dither are not), and *signal*
   when it is loud and its zero-crossing rate — the same in both decodings, so choosing
   blocks by it favours neither — is below ``MISMATCH_ZCR`` (0.3 per sample: most energy
   under about 1.2 kHz, as voiced speech and tones below that; white noise is about 0.5, and a
   signal sampled a few times per period turns at most samples whatever the order of levels);
3. over the first ``MISMATCH_BLOCKS`` (50: one second) signal blocks, mismatch when the median
   smoothness exceeds ``MISMATCH_MARGIN`` (0.08) and the median step evidence exceeds
   ``log(MISMATCH_STEP_RATIO)`` (1.25: steps a quarter larger as declared); with fewer than
   ``MISMATCH_MIN_BLOCKS`` (10) signal blocks it is False (undecided), and so it is when half of
   them repeat exactly with a period under ``MISMATCH_MIN_PERIOD`` (100) samples: a tone at a
   frequency that divides 8 kHz into few samples (1 kHz: 8) repeats one period's bytes, and a
   permutation of its few levels can tilt that single observation either way;
4. the decision is final after that second of signal, or after ``MISMATCH_GIVE_UP_BLOCKS``
   (3,000: one minute) loud blocks without it (noise: False unless 10 signal blocks decide), or
   after ``MISMATCH_SCAN_BLOCKS`` (15,000: five minutes) blocks of any loudness, so neither a long
   noisy nor a long quiet recording is read to its end: a track is decided on its first second of
   signal when that second comes within its first five minutes (or its first minute of loud
   blocks), else it is False, undecided.

For any bytes the two labels get opposite evidence, so the detector is a choice between a signal
and its scrambled copy; the thresholds were chosen on one set of signals and checked on another
drawn apart (``tests/test_codec_mismatch.py``). Measured: no false alarm on the sandbox's
speech, pure tones of 50–3,900 Hz, DTMF and call-progress tones, sweeps, square waves, white and
low-passed noise, sawtooth, triangle and 11-harmonic tones of 100–400 Hz at peaks 200–20,000,
harmonics at 1/√k of 100–1,000 Hz and sines of 100–1,000 Hz overdriven 1.5–10× and clipped at
700–30,000 (the turning-point view alone, used before, raised 98 false alarms on those 760), tones
with a 2nd to 5th harmonic at exact frequencies (1,704), 300 seeded random signals, and 400 drawn
apart (harmonic series of random decay and phase, chords, speech, sines, pulse trains, 60 % of
them clipped); so a mislabelled track of those is caught (speech within 0.26–0.46 s of its start;
227 of the 400, 111 of the 300, the rest undecided), except where the evidence is weak: tones from
1.2 kHz up, white noise and silence give no signal blocks, square waves no difference, waveforms
of a short exact period are undecided (step 3), and tones of 697 Hz and up near full scale take
their steps across zero between the top segments, which the step view cannot judge: undecided,
False. Known false alarms: tones of 760–1,200 Hz with a 3rd or 5th harmonic of a third of their
level or more (a band-limited square wave) within 2 dB of full scale: at a peak of 27,000, 3 of
46 such tones, 6–10 of 46 with a noise floor of 0.5–2 % (which breaks the exact period of step
3); at full scale 12 of 46, about half with the noise floor; none at 24,000 or below. Speech
under such a tone at 25,000 too. The correct decoding of a wave that loud and bright turns about
as often as random samples, and the other law's, two segments down, steps less. L16 and codecs
other than G.711 are never flagged; without payloads (``quality(frames, rtp)`` alone) the
column is all False. A session remembers each track's scan (keyed by the session and the track's
stream id or SSRC and first arrival), so a live session polled every second scans each block once
and stops once decided.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from telnyx_nb.emodel import mos
from telnyx_nb.labels import category
from telnyx_nb.latency import latency  # timing analytics, re-exported: tnb.quality.latency / talk_time
from telnyx_nb.talk import TalkTime, talk_time
from telnyx_nb.wire import codecs, media
from telnyx_nb.wire.rtp import extend_sequence
from telnyx_nb.wire.telephone_event import is_non_audio

__all__ = ["sequence_stats", "quality", "loss_bursts", "reconcile", "codec_mismatch", "COLUMNS", "CALL_COLUMNS",
           "LOSS_BURST_COLUMNS", "RECONCILE_COLUMNS", "latency", "talk_time", "TalkTime", "TrackPackets",
           "stream_tracks", "fork_sources", "jitter_series"]

#: RTP clock rates (Hz) of RFC 3551's static audio payload types (section 6, table 4; G722's is
#: 8000 there although it samples at 16 kHz). A fork row's own ``clock_rate`` (its encoding's, for
#: the encodings the receiver decodes or was told by ``Receiver(payload_types=...)``) comes first.
STATIC_CLOCK_RATES = {0: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000, 9: 8000, 10: 44100,
                      11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000, 16: 11025, 17: 22050, 18: 8000}
#: Two frames arriving closer than this are bunched (``arrival_burst_*``).
BURST_GAP_MS = 2.0
#: ``loss_burst_1`` … ``loss_burst_9``, ``loss_burst_10plus``: lost runs of 1 … 9 and >= 10 packets.
LOSS_BURST_COLUMNS = [*(f"loss_burst_{k}" for k in range(1, 10)), "loss_burst_10plus"]
#: Columns of quality(), in order: DESIGN.md's, then the extra measures.
COLUMNS = [
    "source", "stream_id", "ssrc", "call_control_id", "track", "direction", "target", "packets", "expected",
    "lost", "loss_pct", "duplicates", "reordered", "max_gap_ms", "jitter_ms", "mos", "codec_mismatch",
    "discarded", *LOSS_BURST_COLUMNS, "arrival_burst_pct", "arrival_burst_max",
]
#: Columns of quality(by="call"), in order.
CALL_COLUMNS = [
    "call_control_id", "streams", "ssrcs", "packets", "expected", "lost", "loss_pct", "duplicates", "reordered",
    "max_gap_ms", "jitter_ms", "mos", "codec_mismatch", "discarded", *LOSS_BURST_COLUMNS, "arrival_burst_pct",
    "arrival_burst_max",
]
_LABELS = ("source", "stream_id", "call_control_id", "track", "direction", "target")
_COUNTS = ("streams", "ssrcs", "packets", "expected", "lost", "duplicates", "reordered", "discarded",
           *LOSS_BURST_COLUMNS, "arrival_burst_max")
_FLOATS = ("loss_pct", "max_gap_ms", "jitter_ms", "mos", "arrival_burst_pct")
_DIRECTION = {"inbound": "inbound", "outbound": "outbound", "rx": "inbound", "tx": "outbound"}

#: (kind, key) -> the payload buffer's bytes: ``Session._payload_view``.
Payload = Callable[[str, int], bytes | memoryview]


# -- counting ------------------------------------------------------------------------------------

def jitter_series(arrival_s: np.ndarray, media_s: np.ndarray) -> np.ndarray:
    """RFC 3550 (6.4.1, A.8) interarrival jitter (seconds) after each packet, packets in
    arrival order: ``J += (|D| - J) / 16`` from J = 0, as ``ewm(alpha=1/16, adjust=False)``;
    all NaN when a media time is NaN (a fork whose RTP clock rate is unknown)."""
    if np.isnan(media_s).any():
        return np.full(len(arrival_s), np.nan)
    if len(arrival_s) < 2:
        return np.zeros(len(arrival_s))
    d = np.abs(np.diff(arrival_s) - np.diff(media_s))
    return pd.Series(np.concatenate(([0.0], d))).ewm(alpha=1 / 16, adjust=False).mean().to_numpy()


#: Weights of the last differences in the RFC 3550 jitter at a packet, oldest first: (15/16)^k / 16.
#: Older ones weigh under 10^-57 and are left out.
_JITTER_WEIGHTS = (15 / 16) ** np.arange(2047, -1, -1.0) / 16


def _jitter(arrival_s: np.ndarray, media_s: np.ndarray) -> float:
    """RFC 3550 interarrival jitter (seconds) at the last packet, packets in arrival order:
    :func:`jitter_series`'s last value, as the sum its recursion unrolls to,
    ``J_N = Σ_k (1/16) (15/16)^(N-k) |D_k|`` over the last 2,048 differences (no pandas call
    and no pass over the track: quality() runs it per track)."""
    if np.isnan(media_s).any():
        return np.nan
    if len(arrival_s) < 2:
        return 0.0
    tail = slice(-len(_JITTER_WEIGHTS) - 1, None)
    d = np.abs(np.diff(arrival_s[tail]) - np.diff(media_s[tail]))
    return float(d @ _JITTER_WEIGHTS[len(_JITTER_WEIGHTS) - len(d):])


def _loss_runs(unique_sorted: np.ndarray) -> np.ndarray:
    """Counts of lost runs of length 1 … 9 and >= 10 between the numbers received."""
    gaps = np.diff(unique_sorted) - 1
    runs = gaps[gaps > 0]
    return np.bincount(np.minimum(runs, 10), minlength=11)[1:]


def _arrival_bursts(arrival_ns: np.ndarray) -> tuple[float, int]:
    """(share in % of arrivals < BURST_GAP_MS after the previous one, largest such burst)."""
    n = len(arrival_ns)
    if n == 0:
        return 0.0, 0
    close = np.diff(arrival_ns) < BURST_GAP_MS * 1e6
    if not close.any():
        return 0.0, 1
    edges = np.flatnonzero(np.diff(np.concatenate(([0], close.view(np.int8), [0]))))
    longest = int((edges[1::2] - edges[::2]).max())       # close pairs in a row: frames - 1
    return 100.0 * int(close.sum()) / n, longest + 1


def sequence_stats(ext: np.ndarray, arrival_ns: np.ndarray, media_s: np.ndarray,
                   timed: np.ndarray | None = None) -> dict[str, Any]:
    """Counts and timing for one stream track or SSRC; arrays in arrival order, ext >= 0.

    ``timed``: the packets whose timing the jitter follows (default all): a fork's audio, not its
    RFC 4733 telephone events, which all carry their event's start time, nor comfort noise.
    Also returns ``first``: the indexes of the first copies, in arrival order."""
    n = len(ext)
    if not n:
        return dict(packets=0, expected=0, lost=0, loss_pct=0.0, duplicates=0, reordered=0,
                    max_gap_ms=0.0, jitter_ms=0.0, **dict.fromkeys(LOSS_BURST_COLUMNS, 0),
                    arrival_burst_pct=0.0, arrival_burst_max=0, first=np.zeros(0, np.int64))
    unique_sorted, first = np.unique(ext, return_index=True)
    first.sort()                            # first copies, in arrival order
    unique = len(first)
    expected = int(ext.max() - ext.min() + 1)
    lost = expected - unique
    firsts = ext[first]
    reordered = int(np.count_nonzero(firsts[1:] < np.maximum.accumulate(firsts)[:-1]))
    arrival_s = (arrival_ns - arrival_ns[0]) / 1e9
    timing = first if timed is None else first[timed[first]]
    gaps = np.diff(arrival_s)
    burst_pct, burst_max = _arrival_bursts(arrival_ns[first])
    return dict(
        packets=n, expected=expected, lost=lost, loss_pct=100.0 * lost / expected,
        duplicates=n - unique, reordered=reordered,
        max_gap_ms=float(gaps.max() * 1e3) if len(gaps) else 0.0,
        jitter_ms=_jitter(arrival_s[timing], media_s[timing]) * 1e3,
        **dict(zip(LOSS_BURST_COLUMNS, _loss_runs(unique_sorted).tolist(), strict=True)),
        arrival_burst_pct=burst_pct, arrival_burst_max=burst_max, first=first,
    )


# -- codec mismatch ------------------------------------------------------------------------------

MISMATCH_BLOCK = 160
MISMATCH_RMS = 100.0
MISMATCH_ZCR = 0.3
MISMATCH_MARGIN = 0.08
MISMATCH_STEP_RATIO = 1.25
MISMATCH_BLOCKS = 50
MISMATCH_MIN_BLOCKS = 10
MISMATCH_MIN_PERIOD = 100
MISMATCH_GIVE_UP_BLOCKS = 3000
MISMATCH_SCAN_BLOCKS = 15_000
#: Turning points among the moves of independent, identically distributed samples.
_RANDOM_TURNS = 2 / 3
_TABLES = {"PCMU": codecs.ulaw_decode(bytes(range(256))).astype(np.float32),
           "PCMA": codecs.alaw_decode(bytes(range(256))).astype(np.float32)}
#: Each byte's place in the order of the law's levels (µ-law's +0 above its -0: both decode to 0).
_LEVELS = {law: np.argsort(np.argsort(table.astype(np.float64) * 2 + (np.arange(256) >> 7), kind="stable"))
           .astype(np.int16) for law, table in _TABLES.items()}
_OTHER = {"PCMU": "PCMA", "PCMA": "PCMU"}
_G711_NAMES = tuple(_OTHER)
#: Scans per payload source (the session whose ``_payload`` reads them), by what identifies a
#: track's data (see _mismatch_of): a live session polled every second scans each block once.
_SCANS: weakref.WeakKeyDictionary[Any, dict[tuple, _Scan]] = weakref.WeakKeyDictionary()
_SCANS_LOCK = threading.Lock()


def _turning_fraction(levels: np.ndarray) -> np.ndarray:
    """Per row, the turning points (a move up then down, or down then up, equal neighbours
    skipped) as a fraction of the moves that have a previous move; 0 for rows of fewer than 2 moves."""
    step = np.sign(np.diff(levels, axis=1))
    moves = step != 0
    latest = np.maximum.accumulate(np.where(moves, np.arange(step.shape[1]), -1), axis=1)[:, :-1]
    previous = np.take_along_axis(step, np.maximum(latest, 0), axis=1)
    turns = np.count_nonzero(moves[:, 1:] & (latest >= 0) & (step[:, 1:] != previous), axis=1)
    return turns / np.maximum(np.count_nonzero(moves, axis=1) - 1, 1)


def _log_step(levels: np.ndarray) -> np.ndarray:
    """Log of each row's mean step between consecutive samples, in levels of the law."""
    return np.log(np.abs(np.diff(levels.astype(np.int32), axis=1)).mean(axis=1))


def _evidence(data: np.ndarray, declared: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The evidence of each signal block among ``data`` (uint8 rows): rows of (smoothness, log
    mean step as declared − as the other law), both > 0 when the other law explains the block
    better (see the module docstring); those signal blocks; and the positions in ``data`` of
    its loud blocks (signal or not), in order."""
    varying = np.flatnonzero(data.min(axis=1) != data.max(axis=1))   # a constant block is silence (or DC)
    x, y = np.take(_TABLES[declared], data[varying]), np.take(_TABLES[_OTHER[declared]], data[varying])
    loud = (x.std(axis=1) > MISMATCH_RMS) & (y.std(axis=1) > MISMATCH_RMS)
    rows, loud_at = data[varying[loud]], varying[loud]
    signal = rows[np.count_nonzero(np.diff(rows >> 7, axis=1), axis=1) < MISMATCH_ZCR * (rows.shape[1] - 1)]
    as_declared, as_other = np.take(_LEVELS[declared], signal), np.take(_LEVELS[_OTHER[declared]], signal)
    smoothness = (_RANDOM_TURNS - _turning_fraction(as_other)) - np.abs(_turning_fraction(as_declared) - _RANDOM_TURNS)
    evidence = np.column_stack((smoothness, _log_step(as_declared) - _log_step(as_other)))
    return evidence, signal, loud_at


def _short_period(blocks: np.ndarray) -> np.ndarray:
    """Per block (uint8 rows), whether it repeats exactly with a period under
    ``MISMATCH_MIN_PERIOD`` samples (a tone at a frequency that divides the sampling rate into
    few samples: 1 kHz is 8)."""
    periodic = np.zeros(len(blocks), dtype=bool)
    if not len(blocks):
        return periodic
    for period in range(1, min(MISMATCH_MIN_PERIOD, blocks.shape[1])):
        periodic |= (blocks[:, period:] == blocks[:, :-period]).all(axis=1)
    return periodic


class _Scan:
    """The codec-mismatch evidence of one track so far: that of its first signal blocks
    (:func:`_evidence`), how many of them repeat with a short exact period
    (:func:`_short_period`), and ``done``, how many of its packets were scanned (for _mismatch_of)."""

    __slots__ = ("declared", "block", "done", "loud", "examined", "evidence", "periodic", "lock")

    def __init__(self, declared: str, block: int = MISMATCH_BLOCK) -> None:
        self.declared, self.block, self.done, self.loud, self.examined = declared, block, 0, 0, 0
        self.evidence, self.periodic = np.zeros((0, 2)), 0
        self.lock = threading.Lock()

    @property
    def final(self) -> bool:
        """One second of signal found, or without it MISMATCH_GIVE_UP_BLOCKS loud blocks or
        MISMATCH_SCAN_BLOCKS blocks of any loudness scanned."""
        return (len(self.evidence) >= MISMATCH_BLOCKS or self.loud >= MISMATCH_GIVE_UP_BLOCKS
                or self.examined >= MISMATCH_SCAN_BLOCKS)

    def feed(self, rows: np.ndarray) -> None:
        """Scan the blocks after those already fed (uint8 rows, media order), in growing slices,
        until the decision is final."""
        start, step = 0, 100
        rows = rows[:MISMATCH_SCAN_BLOCKS - self.examined]
        while start < len(rows) and not self.final:
            evidence, signal, loud_at = _evidence(rows[start:start + step], self.declared)
            self.examined += len(rows[start:start + step])
            room = MISMATCH_GIVE_UP_BLOCKS - self.loud
            if len(loud_at) > room:                        # stop at the last loud block allowed
                cut = loud_at[room - 1]
                evidence, signal, _ = _evidence(rows[start:start + cut + 1], self.declared)
                loud_at = loud_at[:room]
            self.loud += len(loud_at)
            wanted = MISMATCH_BLOCKS - len(self.evidence)
            self.evidence = np.concatenate((self.evidence, evidence[:wanted]))
            self.periodic += int(_short_period(signal[:wanted]).sum())
            start += step
            step = min(step * 4, 20_000)

    @property
    def mismatch(self) -> bool:
        if len(self.evidence) < MISMATCH_MIN_BLOCKS or 2 * self.periodic >= len(self.evidence):
            return False
        smoothness, step = np.median(self.evidence, axis=0)
        return bool(smoothness > MISMATCH_MARGIN and step > np.log(MISMATCH_STEP_RATIO))


def codec_mismatch(payload: bytes | bytearray | memoryview, declared: str,
                   block: int = MISMATCH_BLOCK) -> tuple[bool, int]:
    """Is the G.711 ``payload`` (bytes in media order) encoded with the other law than ``declared``
    ("PCMU"/"PCMA")? Returns (mismatch, signal blocks the decision used: at most MISMATCH_BLOCKS;
    below MISMATCH_MIN_BLOCKS the answer is False, undecided). Consecutive ``block``-byte blocks
    are scanned until one second of signal is found; see the module docstring."""
    if declared not in _G711_NAMES:
        return False, 0
    data = np.frombuffer(payload, dtype=np.uint8)
    scan = _Scan(declared, block)
    scan.feed(data[: len(data) // block * block].reshape(-1, block))
    return scan.mismatch, len(scan.evidence)


def _mismatch_of(identity: tuple, declared: object, keys: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                 payload: Payload | None, kind: str) -> bool:
    """The codec-mismatch decision for one track: first copies of its audio packets in arrival
    order (``keys``/``offsets``/``sizes``), payload bytes from ``payload(kind, key)``. Resumes the
    track's earlier scan (same payload source and identity), reading only the blocks after it."""
    if payload is None or declared not in _G711_NAMES or not len(sizes):
        return False
    identity = (kind, *identity, declared)
    owner = getattr(payload, "__self__", payload)
    with _SCANS_LOCK:
        try:
            scans = _SCANS.setdefault(owner, {})
        except TypeError:                               # not weakly referenceable: no memory
            scans = {}
        scan = scans.get(identity)
        if scan is None:
            block = min(MISMATCH_BLOCK, int(np.bincount(sizes).argmax()))
            scan = scans[identity] = _Scan(str(declared), block)
    with scan.lock:
        if scan.final or scan.block < MISMATCH_BLOCK // 2 or scan.done >= len(sizes):
            return scan.mismatch
        buffers = {key: np.frombuffer(payload(kind, key), dtype=np.uint8) for key in _distinct(keys)}
        step = 500
        while scan.done < len(sizes) and not scan.final:
            lo, hi = scan.done, min(scan.done + step, len(sizes))
            rows, usable, ready = _gather(buffers, keys[lo:hi], offsets[lo:hi], sizes[lo:hi], scan.block)
            prefix = len(rows) if ready.all() else int(np.argmin(ready))    # a file may lag its table
            scan.feed(rows[:prefix][usable[:prefix]])
            scan.done = lo + prefix
            if prefix < len(rows):
                break
            step = min(step * 4, 20_000)
        return scan.mismatch


def _distinct(keys: np.ndarray) -> list[int]:
    """The distinct payload keys among ``keys`` (one, on a stream track: a track's frames share a file)."""
    return [int(keys[0])] if len(keys) and keys.min() == keys.max() else np.unique(keys).tolist()


def _gather(buffers: dict[int, np.ndarray], keys: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
            block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``block`` bytes of each packet as uint8 rows; which packets are that long, and
    which have their bytes in the buffer."""
    rows = np.zeros((len(keys), block), dtype=np.uint8)
    usable = sizes >= block
    ready = np.ones(len(keys), dtype=bool)
    for key in _distinct(keys):
        buffer = buffers[key]
        mine = np.flatnonzero((keys == key) & usable)
        present = offsets[mine] + block <= len(buffer)
        ready[mine[~present]] = False
        take = mine[present]
        rows[take] = buffer[offsets[take, None] + np.arange(block)]
    return rows, usable, ready


# -- rows ------------------------------------------------------------------------------------------

def _row(source: str, stream_id, ssrc, ccid, track: str, stats: dict, discarded: int, mismatch: bool) -> dict:
    stats = dict(stats)
    stats.pop("first", None)
    row = dict(source=source, stream_id=stream_id, ssrc=ssrc, call_control_id=ccid, track=track,
               direction=_DIRECTION[track], target=track if source == "fork" else None,
               discarded=discarded, codec_mismatch=mismatch, **stats)
    row["mos"] = mos(row["loss_pct"], row["jitter_ms"])
    return row


def _ns(times: pd.Series) -> np.ndarray:
    return times.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _label(value: object) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _frame_seconds(frames: _Columns, at: np.ndarray) -> float:
    """Duration of a track's most common frame (rows ``at``) from its size and media format (else 20 ms)."""
    try:
        codec = codecs.get_codec(frames.table["encoding"].iloc[at[0]])
        rate = int(frames.table["sample_rate"].iloc[at[0]])
    except (codecs.UnsupportedCodecError, AttributeError, TypeError, ValueError):
        return media.FRAME_MS / 1000
    size = int(np.bincount(frames.get("n_bytes", np.int64)[at]).argmax())
    return size / codec.bytes_per_sample / rate


@dataclass(frozen=True)
class TrackPackets:
    """One stream track (``key`` = (stream_id, track)) or forked RTP source ((target, ssrc)) of
    ``table``: ``rows``, its rows' positions in arrival order; ``ok`` the rows kept (A.1 discards
    unconfirmed strays, see ``extend_sequence``) and, for those, the extended numbers ``ext``,
    arrival times ``arrival_ns`` (int64 ns), media times ``media_s`` (seconds: chunk × frame
    duration on a stream, the unwrapped RTP timestamp over the clock rate on a fork) and
    ``timed``, the packets jitter follows (a fork's audio, not its telephone events or comfort noise)."""

    key: tuple[Any, Any]
    rows: np.ndarray
    ok: np.ndarray
    ext: np.ndarray
    arrival_ns: np.ndarray
    media_s: np.ndarray
    timed: np.ndarray
    columns: _Columns

    @property
    def table(self) -> pd.DataFrame:
        """The ``frames`` or ``rtp`` table the track's ``rows`` index."""
        return self.columns.table

    def first(self, column: str) -> Any:
        """The value of a label ``column`` in the track's first row (None when missing)."""
        codes, names = self.columns.codes(column)
        code = codes[self.rows[0]]
        return names[code] if code >= 0 else None

    def kept(self, column: str, dtype: Any = None) -> np.ndarray:
        """``column`` (as numpy ``dtype``) on the rows kept, aligned with ``ext``."""
        return self.columns.get(column, dtype)[self.rows[self.ok]]


class _Columns:
    """A table's columns as numpy arrays, each converted once for all its tracks or sources."""

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table
        self._arrays: dict[tuple[str, np.dtype | None], np.ndarray] = {}
        self._codes: dict[str, tuple[np.ndarray, pd.Index]] = {}

    def get(self, column: str, dtype: Any = None) -> np.ndarray:
        key = (column, np.dtype(dtype) if dtype is not None else None)
        if key not in self._arrays:
            self._arrays[key] = self.table[column].to_numpy(dtype)
        return self._arrays[key]

    def codes(self, column: str) -> tuple[np.ndarray, pd.Index]:
        """A label column's codes (-1: missing) and categories (sorted, unless already ``category``)."""
        if column not in self._codes:
            values = pd.Categorical(self.table[column])
            self._codes[column] = (values.codes, values.categories)
        return self._codes[column]


#: Up to this many groups, _groups finds each one's rows by comparison (a pass over the codes
#: per group) rather than by sorting the codes (a stable sort costs several passes).
_SCAN_GROUPS = 4


def _groups(columns: _Columns, by: tuple[str, str]) -> list[tuple[tuple[Any, Any], np.ndarray]]:
    """(key, positions) of each group of the table's rows with both ``by`` values non-null, in
    order of first appearance, positions in table order: ``groupby(by, sort=False, observed=True)``
    without copying a column."""
    (a, keys_a), (b, keys_b) = (columns.codes(col) for col in by)
    width = max(len(keys_b), 1)
    code = np.where((a < 0) | (b < 0), -1, a.astype(np.int64) * width + b)
    seen = np.zeros(len(keys_a) * width + 1, dtype=bool)
    seen[code] = True                                       # -1 marks the extra last slot
    present = np.flatnonzero(seen[:-1])
    if len(present) <= _SCAN_GROUPS:
        spans = [(int(k), np.flatnonzero(code == k)) for k in present]
    else:
        order = np.argsort(code, kind="stable")
        ordered = code[order]
        bounds = [0, *(np.flatnonzero(np.diff(ordered)) + 1).tolist(), len(order)]
        spans = [(int(ordered[s]), order[s:e]) for s, e in itertools.pairwise(bounds) if ordered[s] >= 0]
    spans.sort(key=lambda span: span[1][0])
    return [((keys_a[k // width], keys_b[k % width]), at) for k, at in spans]


def stream_tracks(frames: pd.DataFrame) -> Iterator[TrackPackets]:
    """:class:`TrackPackets` of each stream track of ``frames`` (a ``frames`` table)."""
    columns = _Columns(frames)
    chunk, arrival = columns.get("chunk", np.int64), _ns(frames["received_at"])
    for key, at in _groups(columns, ("stream_id", "track")):
        ext = extend_sequence(chunk[at], modulus=None)
        ok = ext >= 0
        yield TrackPackets(key, at, ok, ext[ok], arrival[at][ok], ext[ok] * _frame_seconds(columns, at),
                           np.ones(int(ok.sum()), dtype=bool), columns)


def fork_sources(rtp: pd.DataFrame) -> Iterator[TrackPackets]:
    """:class:`TrackPackets` of each forked RTP source of ``rtp`` (an ``rtp`` table)."""
    columns = _Columns(rtp)
    seq, ts, arrival = columns.get("seq"), columns.get("rtp_timestamp", np.int64), _ns(rtp["received_at"])
    codes, names = columns.codes("encoding")
    non_audio = np.array([bool(is_non_audio(name)) for name in names] + [False])
    audio_rows = ~non_audio[codes]                          # code -1 (unknown encoding) -> the last: audio
    rates = _clock_rates(rtp)
    for key, at in _groups(columns, ("target", "ssrc")):
        ext = extend_sequence(seq[at])
        ok = ext >= 0
        media_ts = np.concatenate(([0], np.cumsum((np.diff(ts[at]) + (1 << 31)) % (1 << 32) - (1 << 31))))
        audio = audio_rows[at]
        media_s = media_ts / _most_common(rates[at[audio]])
        yield TrackPackets(key, at, ok, ext[ok], arrival[at][ok], media_s[ok], audio[ok], columns)


def _clock_rates(rtp: pd.DataFrame) -> np.ndarray:
    """Each row's RTP clock rate (Hz, float64): its ``clock_rate``, else its static payload
    type's (:data:`STATIC_CLOCK_RATES`) when no encoding was mapped to it; NaN when unknown (a
    dynamic type the receiver cannot name, as OPUS or AMR-WB usually are). A source's clock is
    the rate most of its audio rows run at."""
    static = rtp["payload_type"].map(STATIC_CLOCK_RATES).where(rtp["encoding"].isna())
    rates = rtp["clock_rate"].astype("Float64").fillna(static.astype("Float64"))
    return rates.to_numpy(np.float64, na_value=np.nan)


def _most_common(values: np.ndarray) -> float:
    """The most common of ``values`` (NaN counts as one value; the smallest on a tie); NaN when empty."""
    if not len(values):
        return np.nan
    distinct, counts = np.unique(values, return_counts=True)
    return float(distinct[np.argmax(counts)])


def _stream_rows(frames: pd.DataFrame, payload: Payload | None) -> list[dict]:
    rows = []
    for t in stream_tracks(frames):
        (stream_id, track), ok, arrival = t.key, t.ok, t.arrival_ns
        stats = sequence_stats(t.ext, arrival, t.media_s)
        first = stats["first"]
        mismatch = False
        if payload is not None and len(first) and "_key" in frames:
            mismatch = _mismatch_of((str(stream_id), str(track), int(arrival[0])), _label(t.first("encoding")),
                                    t.kept("_key", np.int64)[first], t.kept("_offset", np.int64)[first],
                                    t.kept("n_bytes", np.int64)[first], payload, "frames")
        rows.append(_row("stream", _label(stream_id), None, _label(t.first("call_control_id")), str(track), stats,
                         int((~ok).sum()), mismatch))
    return rows


def _fork_rows(rtp: pd.DataFrame, payload: Payload | None) -> list[dict]:
    rows = []
    for t in fork_sources(rtp):
        (target, ssrc), ok, arrival = t.key, t.ok, t.arrival_ns
        stats = sequence_stats(t.ext, arrival, t.media_s, t.timed)
        first = stats["first"]
        mismatch = False
        if payload is not None and len(first) and "_key" in rtp:
            codes, names = t.columns.codes("encoding")
            mine = codes[t.rows[t.ok]][first]
            g711 = np.array([name in _G711_NAMES for name in names] + [False])[mine]     # -1: unknown, the last
            if g711.any():
                code = int(np.bincount(mine[g711]).argmax())          # the most common law, PCMA on a tie
                pick = first[mine == code]
                mismatch = _mismatch_of((str(target), int(ssrc), int(arrival[0])), str(names[code]),
                                        t.kept("_key", np.int64)[pick], t.kept("_offset", np.int64)[pick],
                                        t.kept("n_bytes", np.int64)[pick], payload, "rtp")
        rows.append(_row("fork", None, int(ssrc), _label(t.first("call_control_id")), str(target), stats,
                         int((~ok).sum()), mismatch))
    return rows


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its label columns ``category``, counts int64, measures float64,
    ``codec_mismatch`` bool and ``ssrc`` Int64, built in one go (a column set at a time costs
    more than the counting on a short table)."""
    kinds = {**dict.fromkeys(_COUNTS, np.int64), **dict.fromkeys(_FLOATS, np.float64), "codec_mismatch": bool}
    data = {col: (category(df[col]) if col in _LABELS else pd.array(df[col], dtype="Int64") if col == "ssrc"
                  else df[col].to_numpy(kinds[col]) if col in kinds else df[col]) for col in df.columns}
    return pd.DataFrame(data, index=df.index)


def quality(frames: pd.DataFrame, rtp: pd.DataFrame, *, by: str | None = None,
            payload: Payload | None = None) -> pd.DataFrame:
    """One row per WebSocket stream and track, then one per forked RTP (target, SSRC); or, with
    ``by="call"``, one row per call.

    Takes the store's internal ``frames`` and ``rtp`` tables (``Session._table``), rows in
    arrival order as the store keeps them (reordering and jitter are read from that order), and, for
    ``codec_mismatch``, ``payload(kind, key) -> bytes`` (``Session._payload``); ``rx.quality()``
    passes all three. Columns (:data:`COLUMNS`):

    * ``source`` "stream"/"fork"; ``stream_id`` (null on fork rows); ``ssrc`` (nullable Int64, null
      on stream rows); ``call_control_id`` (null for a fork source no call claimed);
    * ``track``: a stream's "inbound"/"outbound", a fork's target "rx"/"tx"; ``direction``
      "inbound"/"outbound" on both (a fork's rx is inbound, tx outbound); ``target`` "rx"/"tx"
      on fork rows, null on stream rows;
    * ``packets``, ``expected``, ``lost``, ``loss_pct``, ``duplicates``, ``reordered`` (RFC 3550
      A.1), ``max_gap_ms`` (largest gap between arrivals), ``jitter_ms`` (RFC 3550; NaN on a fork
      whose payload type's RTP clock rate is unknown), ``mos`` (E-model; NaN with the jitter),
      ``codec_mismatch`` (bool), ``discarded`` (packets or chunks A.1 rejects as unconfirmed
      jumps; in no other count), ``loss_burst_1`` … ``loss_burst_10plus`` (lost runs by
      length), ``arrival_burst_pct`` and ``arrival_burst_max`` (frames arriving bunched).

    Label columns are ``category`` with string categories; counts int64; the rest float64/bool.
    See the module docstring for each measure.

    ``by="call"``: one row per ``call_control_id`` (a null one gathers unclaimed fork sources),
    columns :data:`CALL_COLUMNS`: ``streams`` and ``ssrcs`` (how many stream ids and fork
    sources), the counts summed (``loss_pct`` from the sums: ``100 × lost / expected``), the
    worst of the rest — ``max_gap_ms``, ``jitter_ms``, ``arrival_burst_pct`` and
    ``arrival_burst_max`` the largest, ``mos`` the lowest — and ``codec_mismatch`` if any row has it.
    """
    if by not in (None, "call"):
        raise ValueError(f"by must be None or 'call', got {by!r}")
    df = _typed(pd.DataFrame(_stream_rows(frames, payload) + _fork_rows(rtp, payload), columns=COLUMNS))
    return df if by is None else _by_call(df)


def _by_call(df: pd.DataFrame) -> pd.DataFrame:
    groups = df.groupby("call_control_id", sort=True, observed=True, dropna=False)
    sums = ["packets", "expected", "lost", "duplicates", "reordered", "discarded", *LOSS_BURST_COLUMNS]
    out = groups[sums].sum()
    out["streams"] = groups["stream_id"].nunique()
    out["ssrcs"] = groups["ssrc"].nunique()
    out["loss_pct"] = 100.0 * out["lost"] / out["expected"].where(out["expected"] > 0)
    out["loss_pct"] = out["loss_pct"].fillna(0.0)
    for col in ("max_gap_ms", "jitter_ms", "arrival_burst_pct", "arrival_burst_max"):
        out[col] = groups[col].max()
    out["mos"] = groups["mos"].min()
    out["codec_mismatch"] = groups["codec_mismatch"].any()
    return _typed(out.reset_index()[CALL_COLUMNS])


def _quality_of(rx_or_session: Any) -> pd.DataFrame:
    table = rx_or_session.quality() if hasattr(rx_or_session, "quality") else rx_or_session
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a Receiver, a session or a quality() DataFrame, got {type(rx_or_session).__name__}")
    if missing := [col for col in COLUMNS if col not in table.columns]:
        raise ValueError(f"expected quality()'s table, one row per stream track and fork source; this one lacks "
                         f"{missing[:3]}{' …' if len(missing) > 3 else ''} (a quality(by='call') summary?)")
    return table


# -- companions ------------------------------------------------------------------------------------

def loss_bursts(rx_or_session: Any) -> pd.DataFrame:
    """The lost-run histogram of every quality() row as a long ("tidy") table: one row per
    (quality row, run length) with ``source``, ``stream_id``, ``ssrc``, ``call_control_id``,
    ``track``, ``direction``, ``target``, ``run`` (1 … 10; 10 means 10 or more packets, as
    VoIPmonitor's last loss interval), ``runs`` (how many lost runs of that length) and ``lost``
    (the packets in them; for ``run`` 10 the lower bound 10 × runs). Takes a Receiver, a loaded
    session or a ``quality()`` DataFrame. Same counts as the ``loss_burst_*`` columns, e.g. for
    ``seaborn.barplot(data=tnb.quality.loss_bursts(rx), x="run", y="runs", hue="track")``."""
    table = _quality_of(rx_or_session)
    keys = ["source", "stream_id", "ssrc", "call_control_id", "track", "direction", "target"]
    wide = table[keys + LOSS_BURST_COLUMNS].copy()
    wide.columns = keys + list(range(1, 11))
    long = wide.melt(id_vars=keys, var_name="run", value_name="runs")
    long["run"] = long["run"].astype(np.int64)
    long["runs"] = long["runs"].astype(np.int64)
    long["lost"] = long["run"] * long["runs"]
    order = np.argsort(np.tile(np.arange(len(table)), 10), kind="stable")   # quality row by row
    return long.iloc[order].reset_index(drop=True)


#: Columns of reconcile(), in order.
RECONCILE_COLUMNS = [
    "call_control_id", "direction", "sources", "packets", "lost", "mos", "telnyx_packet_count",
    "telnyx_skip_packet_count", "telnyx_jitter_packet_count", "telnyx_jitter_max_variance", "telnyx_mos",
    "packets_diff", "lost_diff", "mos_diff", "edges", "edges_before", "edges_after", "explanation",
]


def _stat(stats: Mapping | None, direction: str, field: str, kind: type) -> Any:
    """One ``call_quality_stats`` value (Telnyx sends strings); None when absent or malformed."""
    entry = stats.get(direction) if isinstance(stats, Mapping) else None
    value = entry.get(field) if isinstance(entry, Mapping) else None
    try:
        return None if value is None else kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None


def _hangup_stats(events: pd.DataFrame) -> dict[str, Mapping | None]:
    """call_control_id -> the last call.hangup's ``call_quality_stats`` (None when it had none)."""
    out: dict[str, Mapping | None] = {}
    if events.empty:
        return out
    hangups = events[events["event_type"].astype(object) == "call.hangup"]
    for ccid, payload in zip(hangups["call_control_id"].astype(object), hangups["payload"], strict=True):
        if ccid is None or (not isinstance(ccid, str) and pd.isna(ccid)):
            continue
        stats = payload.get("call_quality_stats") if isinstance(payload, Mapping) else None
        out[str(ccid)] = stats if isinstance(stats, Mapping) else None
    return out


def _edges_before(rx_or_session: Any) -> dict[tuple[str, str], int | None]:
    """(call_control_id, direction) -> packets Telnyx sent before the first one we received, as
    far as the numbering shows it: a stream track's ``chunk`` counts from 1, so ``first chunk - 1``;
    a forked source's first packet carries the RTP marker bit, so 0 when the first one received
    is audio with it, else None (unknown: RTP numbering starts at random). Summed over the direction's tracks."""
    out: dict[tuple[str, str], int | None] = {}
    frames = rx_or_session.frames if hasattr(rx_or_session, "frames") else None
    rtp = rx_or_session.rtp if hasattr(rx_or_session, "rtp") else None
    heads: list[tuple[object, str, int | None]] = []
    if frames is not None and len(frames):
        heads += [(t.first("call_control_id"), _DIRECTION[str(t.key[1])], int(t.ext.min()) - 1)
                  for t in stream_tracks(frames) if len(t.ext)]
    if rtp is not None and len(rtp):
        for t in fork_sources(rtp):
            if len(t.ext):
                first = int(np.argmin(t.ext))   # an audio packet's marker: a telephone event marks its own start
                marker = bool(t.kept("marker", bool)[first] and t.timed[first])
                heads.append((t.first("call_control_id"), _DIRECTION[str(t.key[0])], 0 if marker else None))
    for ccid, direction, head in heads:
        if (call := _label(ccid)) is not None:
            key = (call, direction)
            known = out.get(key, 0)
            out[key] = None if known is None or head is None else known + head
    return out


#: A stream or fork that starts this close after the answer, or stops this close before the
#: hang-up, covers the call to that end: Telnyx sends the stop webhooks of a hang-up just before
#: call.hangup, and a stream asked for at dial starts with the answer (ns; 5 frames).
COVERAGE_TOLERANCE_NS = 100_000_000
#: The webhooks that start and stop each kind of source quality() rows come from.
_SOURCE_EVENTS = {"stream": ("streaming.started", "streaming.stopped"),
                  "fork": ("call.fork.started", "call.fork.stopped")}


def _partial_coverage(events: pd.DataFrame, ccid: str, sources: str | None) -> list[str]:
    """How the call's stream or fork (``sources`` as in reconcile()) covered less than the call,
    from its webhooks' times (``occurred_at``, Telnyx's clock; ``received_at`` if one lacks it):
    started after ``call.answered``, stopped and restarted, stopped before ``call.hangup`` (by
    more than ``COVERAGE_TOLERANCE_NS``). Empty when it covered the whole call or the webhooks do
    not tell."""
    if not sources or events.empty:
        return []
    mine = events[events["call_control_id"].astype(object) == ccid]
    at = mine["occurred_at"] if mine["occurred_at"].notna().all() else mine["received_at"]
    times = pd.Series(_ns(at), index=mine.index)
    kinds = mine["event_type"].astype(object)

    def when(kind: str) -> np.ndarray:
        return np.sort(times[kinds == kind].to_numpy())

    answered, hangup = when("call.answered"), when("call.hangup")
    notes = []
    for source in sources.split("+"):
        start_type, stop_type = _SOURCE_EVENTS[source]
        starts, stops = when(start_type), when(stop_type)
        if len(starts) and len(answered) and starts[0] > answered[0] + COVERAGE_TOLERANCE_NS:
            notes.append(f"the {source} started {(starts[0] - answered[0]) / 1e9:.3f} s after the answer")
        for stop in stops:
            later = starts[starts > stop]
            if len(later):
                notes.append(f"the {source} stopped for {(later[0] - stop) / 1e9:.3f} s")
            elif len(hangup) and stop < hangup[-1] - COVERAGE_TOLERANCE_NS:
                notes.append(f"the {source} stopped {(hangup[-1] - stop) / 1e9:.3f} s before the hang-up")
    return notes


def _explain(row: dict, has_hangup: bool, telephone_events: int, coverage: list[str]) -> str:
    if not has_hangup:
        return "no call.hangup yet: Telnyx sends call_quality_stats when the call ends"
    if row["telnyx_packet_count"] is None and row["telnyx_skip_packet_count"] is None:
        return "call.hangup carried no call_quality_stats for this direction"
    if not row["sources"]:
        return ("nothing received on this direction (no stream track or fork): Telnyx's counts are the call "
                "leg's 20 ms packets")
    what = {"stream": "stream frames (20 ms each)", "fork": "forked RTP packets",
            "stream+fork": "stream frames (20 ms) plus forked RTP packets, summed as the sandbox sums them"}
    notes = [f"ours counts {what[row['sources']]}; Telnyx counts the call leg's RTP packets"]
    packets_diff, lost_diff, edges = row["packets_diff"], row["lost_diff"], row["edges"]
    before, after = row["edges_before"], row["edges_after"]
    if packets_diff == 0 and lost_diff == 0:
        notes.append("counts agree")
    partial = (f"the {row['sources'].replace('+', ' and the ')} covered only part of the call ({', '.join(coverage)}) "
               "and Telnyx's counts cover the whole call leg")
    split = (f"{before} before our first packet and {after} after our last" if before is not None
             else "before our first packet or after our last")
    if lost_diff is not None and lost_diff > 0:
        if packets_diff == 0 and edges == lost_diff and (after is None or after >= 0):
            notes.append(f"Telnyx counts {lost_diff} more lost: the edges, {split}, which RFC 3550 A.1 cannot see "
                         "(every packet Telnyx counts as sent was received, so they lie outside our first..last)")
        else:
            if edges is None or packets_diff is None:
                why = "Telnyx's counts are incomplete"
            elif packets_diff:
                unseen = partial if coverage else "lost on the way or after the receiver stopped"
                why = (f"{edges} packets lie outside our first..last and {packets_diff} that Telnyx counts as sent "
                       f"were not received ({unseen}): which is which is unknown")
            elif after is not None and after < 0:
                why = (f"the numbering puts {before} packets before our first, more than the {edges} outside our "
                       "first..last that Telnyx's counts leave room for")
            else:
                why = f"{edges} packets lie outside our first..last, not {lost_diff}"
            notes.append(f"Telnyx counts {lost_diff} more lost, unexplained: {why}")
    elif lost_diff is not None and lost_diff < 0:
        notes.append(f"we count {-lost_diff} more lost: gaps in the numbering Telnyx does not count as skipped "
                     "(lost after it sent them, or a stream's chunk jumping over frames never generated)")
    if packets_diff is not None and packets_diff > 0 and coverage:
        notes.append(f"Telnyx counts {packets_diff} more than were received: {partial}, so they are not comparable")
    elif packets_diff is not None and packets_diff > 0:
        notes.append(f"Telnyx sent {packets_diff} more than were received: lost on the way, or arriving after "
                     "the receiver stopped")
    elif packets_diff is not None and packets_diff < 0:
        extra = f" ({telephone_events} of them RFC 4733 telephone events)" if telephone_events else ""
        notes.append(f"we received {-packets_diff} more than Telnyx counts{extra}")
    if row["mos_diff"] is not None and abs(row["mos_diff"]) >= 0.05:
        notes.append("MOS: ours is the lowest of the direction's rows (loss and RFC 3550 jitter, "
                     "d = 2 × jitter + 10 ms); Telnyx's its own (the sandbox: loss and mean added delay)")
    return "; ".join(notes)


def reconcile(rx_or_session: Any) -> pd.DataFrame:
    """Per call and direction, our counts and MOS next to the ``call_quality_stats`` of its
    ``call.hangup`` webhook, with the differences and an ``explanation`` of them.

    Columns (:data:`RECONCILE_COLUMNS`): ``call_control_id``, ``direction`` ("inbound": the stream's
    inbound track and the fork's rx; "outbound": outbound and tx), ``sources`` ("stream", "fork",
    "stream+fork"; null when nothing was received), ours — ``packets`` (received, duplicates
    included) and ``lost`` (RFC 3550 A.1) summed over the direction's quality() rows, ``mos`` the
    lowest of them (NaN without rows) — then Telnyx's values as numbers (nullable; Telnyx sends
    strings and omits what it did not measure; ``mos`` and the jitter fields are inbound only):
    ``telnyx_packet_count``, ``telnyx_skip_packet_count`` (lost), ``telnyx_jitter_packet_count``,
    ``telnyx_jitter_max_variance``, ``telnyx_mos``; ``packets_diff``, ``lost_diff`` and ``mos_diff``
    are Telnyx's minus ours. The edges (nullable Int64): ``edges`` the packets Telnyx counts that
    lie outside our first..last sequence number, each once — ``telnyx_packet_count - duplicates +
    telnyx_skip_packet_count - expected`` (our ``duplicates`` and ``expected`` summed over the
    direction's rows); ``edges_before`` those before our first packet as the numbering shows it (a
    stream's ``chunk`` counts from 1; a fork's first packet carries the RTP marker bit, else null:
    RTP numbering starts at random); ``edges_after`` the rest.

    Why they differ (the ``explanation``): Telnyx counts the call leg's RTP packets, we count what
    reached us — a stream's 20 ms frames and the fork's packets, each a copy of that media (the
    sandbox sums stream and fork per direction, and counts a duplicate twice, as ``packets``
    does). A.1 counts no loss before the first or after the last packet received (the edges),
    which Telnyx counts as skipped; packets lost between Telnyx and the receiver are in Telnyx's
    ``packet_count`` and our ``lost``. By the counts, ``lost_diff = edges - packets_diff``, so a
    positive ``lost_diff`` is explained as edges only when every packet Telnyx counts as sent was
    received (``packets_diff`` 0) and the edges after our last are not negative (the numbering
    puts no more before our first than Telnyx counts in all); otherwise the explanation says it
    is unexplained, and why. When the call's webhooks show that its stream or fork covered only
    part of the call (``streaming.started`` / ``call.fork.started`` after ``call.answered``, a stop
    before ``call.hangup`` or a stop and restart, by ``occurred_at``), Telnyx's counts of the whole
    leg are not comparable with ours and the explanation says so, with the times, instead of
    "lost on the way"; that is said only when no webhook shows partial coverage (the whole call,
    or webhooks that do not tell). Calls appear once they have quality() rows or a ``call.hangup``;
    without a hangup yet the Telnyx columns are null.
    """
    table = _quality_of(rx_or_session)
    events = rx_or_session.events if hasattr(rx_or_session, "events") else pd.DataFrame()
    hangups = _hangup_stats(events)
    rtp = rx_or_session.rtp if hasattr(rx_or_session, "rtp") else None
    calls = sorted({str(c) for c in table["call_control_id"].dropna().astype(object)} | set(hangups))
    heads = _edges_before(rx_or_session) if hangups else {}
    rows = []
    for ccid in calls:
        mine = table[table["call_control_id"].astype(object) == ccid]
        stats = hangups.get(ccid)
        for direction in ("inbound", "outbound"):
            part = mine[mine["direction"].astype(object) == direction]
            present = set(part["source"].astype(object))
            sources = "+".join(s for s in ("stream", "fork") if s in present) or None
            telephone_events = 0
            if rtp is not None and "fork" in present and len(rtp):
                target = "rx" if direction == "inbound" else "tx"
                picked = rtp[(rtp["call_control_id"].astype(object) == ccid) & (rtp["target"].astype(object) == target)]
                telephone_events = int(picked["encoding"].astype(object).map(is_non_audio).fillna(False).sum())
            row = dict(call_control_id=ccid, direction=direction, sources=sources,
                       packets=int(part["packets"].sum()), lost=int(part["lost"].sum()),
                       mos=float(part["mos"].min()) if len(part) else float("nan"),
                       telnyx_packet_count=_stat(stats, direction, "packet_count", int),
                       telnyx_skip_packet_count=_stat(stats, direction, "skip_packet_count", int),
                       telnyx_jitter_packet_count=_stat(stats, direction, "jitter_packet_count", int),
                       telnyx_jitter_max_variance=_stat(stats, direction, "jitter_max_variance", float),
                       telnyx_mos=_stat(stats, direction, "mos", float))
            row["packets_diff"] = (None if row["telnyx_packet_count"] is None
                                   else row["telnyx_packet_count"] - row["packets"])
            row["lost_diff"] = (None if row["telnyx_skip_packet_count"] is None
                                else row["telnyx_skip_packet_count"] - row["lost"])
            row["mos_diff"] = (None if row["telnyx_mos"] is None or not len(part)
                               else row["telnyx_mos"] - row["mos"])
            row["edges"] = (None if row["telnyx_packet_count"] is None or row["telnyx_skip_packet_count"] is None
                            or not len(part) else row["telnyx_packet_count"] - int(part["duplicates"].sum())
                            + row["telnyx_skip_packet_count"] - int(part["expected"].sum()))
            row["edges_before"] = heads.get((ccid, direction)) if row["edges"] is not None else None
            row["edges_after"] = (None if row["edges_before"] is None else row["edges"] - row["edges_before"])
            row["explanation"] = _explain(row, ccid in hangups, telephone_events,
                                          _partial_coverage(events, ccid, sources) if ccid in hangups else [])
            rows.append(row)
    df = pd.DataFrame(rows, columns=RECONCILE_COLUMNS)
    for col in ("call_control_id", "direction", "sources"):
        df[col] = category(df[col])
    for col in ("packets", "lost"):
        df[col] = df[col].astype(np.int64)
    for col in ("telnyx_packet_count", "telnyx_skip_packet_count", "telnyx_jitter_packet_count", "packets_diff",
                "lost_diff", "edges", "edges_before", "edges_after"):
        df[col] = pd.array(df[col].astype(object).where(df[col].notna(), None).tolist(), dtype="Int64")
    for col in ("mos", "telnyx_jitter_max_variance", "telnyx_mos", "mos_diff"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
    df["explanation"] = df["explanation"].astype(str)
    return df
