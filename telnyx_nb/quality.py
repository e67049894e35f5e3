"""Stream-quality analytics over the store's tables: loss, duplicates, reordering, jitter, MOS.

Counting follows RFC 3550 appendix A.1: ``expected`` runs from the first to the last
(extended) sequence number received, ``lost = expected - unique received``, ``duplicates``
are extra copies, ``reordered`` counts packets that arrive after one with a higher number
(a swapped pair counts 1; duplicates are never reordered). Interarrival jitter is RFC 3550
section 6.4.1, whose recursion ``J += (|D| - J) / 16`` is exactly
``ewm(alpha=1/16, adjust=False)`` started from 0, so it runs vectorised.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from telnyx_nb.wire import codecs

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "extend_sequence", "sequence_stats", "e_model_mos", "mos", "quality"]

SEQ_MOD = 1 << 16
#: RFC 3550 A.1: a jump ahead by more than this many packets (or back by more than
#: MAX_MISORDER) is a restart when the next packet confirms it, else a stray to discard.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
DEFAULT_CLOCK_RATE = 8000

#: Columns of quality(), in order.
COLUMNS = [
    "source", "stream_id", "ssrc", "call_control_id", "track", "packets", "expected", "lost",
    "loss_pct", "duplicates", "reordered", "discarded", "max_gap_ms", "jitter_ms", "mos",
]


def extend_sequence(seq: np.ndarray, modulus: int | None = SEQ_MOD) -> np.ndarray:
    """RFC 3550 A.1 extended sequence numbers for ``seq`` in arrival order.

    ``modulus`` is 65536 for RTP sequence numbers, None for counters that never wrap
    (media-stream chunks). A step of less than MAX_DROPOUT ahead or MAX_MISORDER back
    continues the run, across wraps. A larger jump confirmed by the next packet (``seq + 1``)
    is a restart: the new run continues right after the highest number seen, so ``expected``
    does not count the jump as loss and audio() does not fill it with silence, and the
    confirmed packet is kept (A.1 itself would drop it). An unconfirmed jump is a stray and
    gets -1 ("discarded"), so one wild number cannot make a track span 10**12 frames.
    Numbers start at the first packet's; if a late packet would fall below 0 (sent before a
    wrap that preceded the first arrival), all are shifted up so that the lowest is 0.
    """
    seq = np.asarray(seq, dtype=np.int64)
    out = np.zeros(len(seq), dtype=np.int64)
    kept = np.zeros(len(seq), dtype=bool)
    if not len(seq):
        return out
    half = (modulus or 0) // 2
    last = int(seq[0])          # highest raw number of the current run
    ext_last = top = last       # its extended number; the highest extended number of all runs
    bad_next, bad_index = None, -1
    out[0], kept[0] = last, True
    for i in range(1, len(seq)):
        s = int(seq[i])
        delta = s - last
        if modulus:
            delta = (delta + half) % modulus - half
        if -MAX_MISORDER < delta < MAX_DROPOUT:
            ext = ext_last + delta
            if delta > 0:
                last, ext_last = s, ext
        elif s == bad_next:     # confirmed restart: continue after everything seen so far
            out[bad_index], kept[bad_index] = top + 1, True
            ext = top + 2
            last, ext_last = s, ext
        else:
            bad_next, bad_index = (s + 1) % modulus if modulus else s + 1, i
            continue
        out[i], kept[i] = ext, True
        top = max(top, ext)
    lowest = int(out[kept].min())
    if lowest < 0:
        out[kept] -= lowest
    out[~kept] = -1
    return out


def _jitter(arrival_s: np.ndarray, media_s: np.ndarray) -> float:
    """RFC 3550 interarrival jitter (seconds) at the last packet, packets in arrival order."""
    if len(arrival_s) < 2:
        return 0.0
    d = np.abs(np.diff(arrival_s) - np.diff(media_s))
    return float(pd.Series(np.concatenate(([0.0], d))).ewm(alpha=1 / 16, adjust=False).mean().iloc[-1])


def sequence_stats(ext: np.ndarray, arrival_ns: np.ndarray, media_s: np.ndarray) -> dict[str, float | int]:
    """Counts and timing for one stream track or SSRC; arrays in arrival order, ext >= 0."""
    n = len(ext)
    if not n:
        return dict(packets=0, expected=0, lost=0, loss_pct=0.0, duplicates=0, reordered=0,
                    max_gap_ms=0.0, jitter_ms=0.0)
    _, first = np.unique(ext, return_index=True)
    first.sort()                            # first copies, in arrival order
    unique = len(first)
    expected = int(ext.max() - ext.min() + 1)
    lost = expected - unique
    firsts = ext[first]
    reordered = int(np.count_nonzero(firsts[1:] < np.maximum.accumulate(firsts)[:-1]))
    arrival_s = (arrival_ns - arrival_ns[0]) / 1e9
    gaps = np.diff(arrival_s)
    return dict(
        packets=n, expected=expected, lost=lost, loss_pct=100.0 * lost / expected,
        duplicates=n - unique, reordered=reordered,
        max_gap_ms=float(gaps.max() * 1e3) if len(gaps) else 0.0,
        jitter_ms=_jitter(arrival_s[first], media_s[first]) * 1e3,
    )


def mos(loss_pct: float, jitter_ms: float, latency_ms: float = 0.0) -> float:
    """MOS of a received stream: e_model_mos with d = latency_ms + 2 * jitter_ms + 10 ms
    (a jitter buffer of twice the jitter, plus codec delay)."""
    return e_model_mos(loss_pct, latency_ms + 2.0 * jitter_ms + 10.0)


def e_model_mos(loss_pct: float, d: float) -> float:
    """Simplified E-model (ITU-T G.107 for G.711, after Cole & Rosenbluth 2001), one-way delay d in ms.

    Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3);
    Ie_eff = 95 * P / (P + 4.3)  (G.711 without PLC, Ie = 0, Bpl = 4.3, P = loss %);
    R = 93.2 - Id - Ie_eff;  MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R), 1 if R < 0, 4.5 if R > 100.
    """
    r = 93.2 - (0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)) - 95.0 * loss_pct / (loss_pct + 4.3)
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)


def _row(source: str, stream_id, ssrc, ccid, track, stats: Mapping, discarded: int) -> dict:
    row = dict(source=source, stream_id=stream_id, ssrc=ssrc, call_control_id=ccid, track=track,
               discarded=discarded, **stats)
    row["mos"] = mos(row["loss_pct"], row["jitter_ms"])
    return row


def _ns(times: pd.Series) -> np.ndarray:
    return times.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _frame_seconds(group: pd.DataFrame) -> float:
    """Duration of the track's most common frame from its size and media format (else 20 ms)."""
    try:
        codec = codecs.get_codec(group["encoding"].iloc[0])
        rate = int(group["sample_rate"].iloc[0])
    except (codecs.UnsupportedCodecError, AttributeError, TypeError):
        return 0.020
    size = int(np.bincount(group["n_bytes"].to_numpy(np.int64)).argmax())
    return size / codec.bytes_per_sample / rate


def _stream_rows(frames: pd.DataFrame) -> list[dict]:
    rows = []
    for (stream_id, track), g in frames.groupby(["stream_id", "track"], sort=False):
        ext = extend_sequence(g["chunk"].to_numpy(np.int64), modulus=None)
        ok = ext >= 0
        stats = sequence_stats(ext[ok], _ns(g["received_at"])[ok], ext[ok] * _frame_seconds(g))
        rows.append(_row("stream", stream_id, None, g["call_control_id"].iloc[0], track, stats, int((~ok).sum())))
    return rows


def _fork_rows(rtp: pd.DataFrame) -> list[dict]:
    rows = []
    for (target, ssrc), g in rtp.groupby(["target", "ssrc"], sort=False):
        ext = extend_sequence(g["seq"].to_numpy())
        ok = ext >= 0
        ts = g["rtp_timestamp"].to_numpy(np.int64)
        media = np.concatenate(([0], np.cumsum((np.diff(ts) + (1 << 31)) % (1 << 32) - (1 << 31))))
        rate = g["clock_rate"].iloc[0]
        media_s = media / (int(rate) if pd.notna(rate) else DEFAULT_CLOCK_RATE)
        stats = sequence_stats(ext[ok], _ns(g["received_at"])[ok], media_s[ok])
        rows.append(_row("fork", None, int(ssrc), g["call_control_id"].iloc[0], target, stats, int((~ok).sum())))
    return rows


def quality(frames: pd.DataFrame, rtp: pd.DataFrame) -> pd.DataFrame:
    """One row per WebSocket stream and track, then one per forked RTP (target, SSRC).

    Takes the ``frames`` and ``rtp`` tables. Stream media time is ``chunk * frame duration``
    (the ``timestamp`` field's unit is not documented by Telnyx); fork media time is the
    unwrapped RTP timestamp over the clock rate (8 kHz when the payload type is unknown).
    ``discarded`` counts packets or chunks A.1 rejects (unconfirmed jumps); they are in no other count.
    """
    df = pd.DataFrame(_stream_rows(frames) + _fork_rows(rtp), columns=COLUMNS)
    df["ssrc"] = df["ssrc"].astype("Int64")
    for col in ("packets", "expected", "lost", "duplicates", "reordered", "discarded"):
        df[col] = df[col].astype(np.int64)
    for col in ("loss_pct", "max_gap_ms", "jitter_ms", "mos"):
        df[col] = df[col].astype(np.float64)
    return df
