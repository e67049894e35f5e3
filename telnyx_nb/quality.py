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

from telnyx_nb.emodel import mos
from telnyx_nb.wire import codecs, media
from telnyx_nb.wire.rtp import extend_sequence

__all__ = ["sequence_stats", "quality"]

DEFAULT_CLOCK_RATE = 8000

#: Columns of quality(), in order.
COLUMNS = [
    "source", "stream_id", "ssrc", "call_control_id", "track", "packets", "expected", "lost",
    "loss_pct", "duplicates", "reordered", "discarded", "max_gap_ms", "jitter_ms", "mos",
]


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
        return media.FRAME_MS / 1000
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
