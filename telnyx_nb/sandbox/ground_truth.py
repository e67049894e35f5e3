"""Ground truth: one row per media frame or RTP packet the sandbox generated, and its fate.

Rows go into typed ``array`` columns on the sandbox loop (cheap per frame, ~90 bytes a row:
a one-hour two-track call is ~33 MB), with no Python object per row, so the garbage
collector has nothing per row to traverse (a list of per-row references made its full
collections grow to hundreds of ms). The DataFrame is built only when asked for. Payloads
are not copied: a row keeps the index of the call's encoded script and the frame index, and
``payloads=True`` slices the exact bytes back out (mixed bidirectional frames, which exist
nowhere else, are kept as bytes). ``sent_at`` is the *scheduled* send time (the
media clock's deadline); ``delay_ms`` the extra delay an impairment added on top of it.
"""

from __future__ import annotations

from array import array
from typing import Any, TypedDict

import numpy as np
import pandas as pd

__all__ = ["GroundTruth", "COLUMNS", "Source", "Snapshot"]

COLUMNS = ("path", "track", "chunk", "seq", "sent_at", "fate", "delay_ms", "stream_id", "ssrc",
           "rtp_timestamp", "timestamp", "sequence_number", "frame", "n_bytes")
_PATHS = ("stream", "fork")
_TRACKS = ("inbound", "outbound", "rx", "tx")
_FATES = ("delivered", "dropped", "duplicated")
_FATE_CODE = {name: code for code, name in enumerate(_FATES)}
_TRACK_CODE = {name: code for code, name in enumerate(_TRACKS)}
_SCRIPT_TRACK = {"inbound": "inbound", "outbound": "outbound", "rx": "inbound", "tx": "outbound"}
_NA = -1
_INT_COLUMNS = ("chunk", "seq", "ssrc", "rtp_timestamp", "timestamp", "sequence_number", "frame")

#: Where a payload came from: (encoded script tracks, frame size) — or the bytes themselves.
Source = tuple[dict[str, bytes], int] | bytes


class Snapshot(TypedDict):
    """Copies of a GroundTruth's columns, one entry per row (``GroundTruth.snapshot``)."""

    path: array[int]
    track: array[int]
    fate: array[int]
    sent_at: array[int]
    delay_ms: array[float]
    n_bytes: array[int]
    chunk: array[int]
    seq: array[int]
    ssrc: array[int]
    rtp_timestamp: array[int]
    timestamp: array[int]
    sequence_number: array[int]
    frame: array[int]
    stream_id: list[str | None]
    source: list[Source]


class GroundTruth:
    """Append-only columns for one call."""

    __slots__ = ("_path", "_track", "_fate", "_sent_at", "_delay_ms", "_n_bytes", "_ints", "_stream_id", "_source",
                 "_values", "_value_index")

    def __init__(self) -> None:
        self._path, self._track, self._fate = array("b"), array("b"), array("b")
        self._sent_at, self._delay_ms, self._n_bytes = array("q"), array("d"), array("i")
        self._ints = {name: array("q") for name in _INT_COLUMNS}
        self._stream_id, self._source = array("i"), array("i")  # indexes into _values
        self._values: list[Any] = [None]  # distinct stream ids (str | None) and payload sources (Source)
        self._value_index: dict[int, int] = {id(None): 0}

    def _intern(self, value: object) -> int:
        """Index of ``value`` in ``_values`` (by identity; mixed payloads are each new)."""
        index = self._value_index.get(id(value))
        if index is None:
            index = self._value_index[id(value)] = len(self._values)
            self._values.append(value)
        return index

    def _add(self, path: int, track: str, sent_at_ns: int, fate: str, delay_s: float, n_bytes: int,
             stream_id: str | None, source: Source, ints: tuple[int, ...]) -> None:
        self._path.append(path)
        self._track.append(_TRACK_CODE[track])
        self._fate.append(_FATE_CODE[fate])
        self._sent_at.append(sent_at_ns)
        self._delay_ms.append(delay_s * 1e3)
        self._n_bytes.append(n_bytes)
        self._stream_id.append(self._intern(stream_id))
        self._source.append(self._intern(source))
        for column, value in zip(self._ints.values(), ints, strict=True):
            column.append(value)

    def add_stream(self, track: str, chunk: int, sequence_number: int, timestamp: int, sent_at_ns: int, fate: str,
                   delay_s: float, stream_id: str, frame: int, source: Source, n_bytes: int) -> None:
        self._add(0, track, sent_at_ns, fate, delay_s, n_bytes, stream_id, source,
                  (chunk, _NA, _NA, _NA, timestamp, sequence_number, frame))

    def add_fork(self, track: str, seq: int, rtp_timestamp: int, ssrc: int, sent_at_ns: int, fate: str,
                 delay_s: float, frame: int, source: Source, n_bytes: int) -> None:
        self._add(1, track, sent_at_ns, fate, delay_s, n_bytes, None, source,
                  (_NA, seq, ssrc, rtp_timestamp, _NA, _NA, frame))

    def snapshot(self) -> Snapshot:
        """Copies of the columns (call on the loop thread; build the frame anywhere)."""
        ints = {name: array(col.typecode, col) for name, col in self._ints.items()}
        values = list(self._values)
        return Snapshot(
            path=array("b", self._path), track=array("b", self._track), fate=array("b", self._fate),
            sent_at=array("q", self._sent_at), delay_ms=array("d", self._delay_ms), n_bytes=array("i", self._n_bytes),
            chunk=ints["chunk"], seq=ints["seq"], ssrc=ints["ssrc"], rtp_timestamp=ints["rtp_timestamp"],
            timestamp=ints["timestamp"], sequence_number=ints["sequence_number"], frame=ints["frame"],
            stream_id=[values[i] for i in self._stream_id], source=[values[i] for i in self._source],
        )

    def fates(self, tracks: tuple[str, ...]) -> dict[str, int]:
        """Counts of each fate over rows on ``tracks`` (for call_quality_stats)."""
        codes = {_TRACK_CODE[t] for t in tracks}
        counts = [0, 0, 0]
        for track, fate in zip(self._track, self._fate, strict=True):
            if track in codes:
                counts[fate] += 1
        return dict(zip(_FATES, counts, strict=True))

    def delays_ms(self, tracks: tuple[str, ...]) -> list[float]:
        """Added delays of the rows on ``tracks`` that were sent."""
        codes = {_TRACK_CODE[t] for t in tracks}
        dropped = _FATE_CODE["dropped"]
        rows = zip(self._track, self._fate, self._delay_ms, strict=True)
        return [d for t, f, d in rows if t in codes and f != dropped]

    @staticmethod
    def to_frame(snap: Snapshot, payloads: bool = False) -> pd.DataFrame:
        """The contract DataFrame: nullable Int64 counters, ns UTC ``sent_at``, string labels."""
        def labels(codes: array[int], names: tuple[str, ...]) -> pd.Series:
            return pd.Series(np.asarray(names, dtype=object)[np.frombuffer(codes, dtype=np.int8)], dtype="string")

        def nullable(values: array[int]) -> pd.Series:
            data = np.frombuffer(values, dtype=np.int64)
            return pd.Series(pd.arrays.IntegerArray(data.copy(), data == _NA))

        sent_at = pd.Series(np.frombuffer(snap["sent_at"], dtype=np.int64))
        frame = pd.DataFrame({
            "path": labels(snap["path"], _PATHS),
            "track": labels(snap["track"], _TRACKS),
            "chunk": nullable(snap["chunk"]),
            "seq": nullable(snap["seq"]),
            "sent_at": pd.to_datetime(sent_at, unit="ns", utc=True).astype("datetime64[ns, UTC]"),
            "fate": labels(snap["fate"], _FATES),
            "delay_ms": pd.Series(np.frombuffer(snap["delay_ms"], dtype=np.float64)),
            "stream_id": pd.Series(snap["stream_id"], dtype="string"),
            "ssrc": nullable(snap["ssrc"]),
            "rtp_timestamp": nullable(snap["rtp_timestamp"]),
            "timestamp": nullable(snap["timestamp"]),
            "sequence_number": nullable(snap["sequence_number"]),
            "frame": pd.Series(np.frombuffer(snap["frame"], dtype=np.int64)),
            "n_bytes": pd.Series(np.frombuffer(snap["n_bytes"], dtype=np.int32).astype(np.int64)),
        })
        if payloads:
            frame["payload"] = pd.Series([
                source if isinstance(source, bytes)
                else source[0][_SCRIPT_TRACK[_TRACKS[t]]][i * source[1]:(i + 1) * source[1]]
                for source, t, i in zip(snap["source"], snap["track"], snap["frame"], strict=True)
            ], dtype="object")
        return frame
