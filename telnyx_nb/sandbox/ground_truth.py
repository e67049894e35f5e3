"""Ground truth: one row per media frame or RTP packet the sandbox generated, and what happened to it.

Rows go into typed ``array`` columns on the sandbox loop (cheap per frame, ~100 bytes a row:
a one-hour two-track call is ~36 MB), with no Python object per row, so the garbage
collector has nothing per row to traverse (a list of per-row references made its full
collections grow to hundreds of ms). The DataFrame is built only when asked for (pandas is
imported then, not by the sandbox process). Payloads are not copied: a row keeps the index of
the call's encoded script and the frame index, and ``payloads=True`` slices the exact bytes
back out (mixed bidirectional frames, which exist nowhere else, are kept as bytes).

Times are honest. ``due_at`` is the frame's slot on the media clock (its 20 ms deadline);
``sent_at`` is when the frame was actually handed to the socket (``ws.send_str``, UDP
``sendto``; the first copy of a duplicate), on the same clock, so ``sent_at - due_at`` is how
late it went out (``delay_ms`` of impairment on purpose, plus the clock's own lateness); it is
NaT for a frame that was not sent. ``delay_ms`` is the extra delay an impairment added.
``fate``:

* ``delivered`` / ``duplicated`` — sent, once / twice (back to back);
* ``dropped`` — the impairment dropped it (its ``chunk``/``sequence_number`` or RTP ``seq`` are
  used up: a real gap on the wire);
* ``skipped`` — the media clock fell more than ``media_clock.MAX_CATCH_UP_S`` behind (the
  sandbox's process was starved of CPU) and skipped the frame's tick: nothing was generated on
  the wire for it (a stream's ``chunk`` jumps, its ``sequence_number`` does not; a fork's RTP
  ``seq`` and timestamp do not advance, so those columns are null);
* ``pending`` — generated, not sent yet (queued behind the socket, or held back by a delay);
* ``unsent`` — generated, never sent: its connection ended first.

``path`` is "stream" (a media frame), "fork" (an RTP audio packet: one per scenario frame) or
"fork_event" (an RFC 4733 telephone-event packet the fork sent for a DTMF digit, on ``rx``:
``frame`` is the tick it went with, ``payload`` its 4 bytes). Event packets share the fork's
SSRC and sequence numbers, so every packet a receiver gets is a ``fork`` or ``fork_event`` row;
they are not frames: selecting ``path == "fork"`` gives the frames alone, and :meth:`fates`,
:meth:`delays_ms` (hence ``call_quality_stats``) count frames only.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GroundTruth", "COLUMNS", "FATES", "Source", "Snapshot"]

COLUMNS = ("path", "track", "chunk", "seq", "due_at", "sent_at", "fate", "delay_ms", "stream_id", "ssrc",
           "rtp_timestamp", "timestamp", "sequence_number", "frame", "n_bytes")
#: Every value of the ``fate`` column.
FATES = ("delivered", "dropped", "duplicated", "skipped", "pending", "unsent")
_PATHS = ("stream", "fork", "fork_event")
_EVENT_PATH = 2
_TRACKS = ("inbound", "outbound", "rx", "tx")
_DELIVERED, _DROPPED, _DUPLICATED, _SKIPPED, _PENDING, _UNSENT, _PENDING_TWICE = range(7)
#: Stored fate codes -> labels (a frame pending with two copies shows as "pending" too).
_FATE_LABELS = (*FATES, "pending")
_INTENT = {"delivered": _PENDING, "duplicated": _PENDING_TWICE, "dropped": _DROPPED, "skipped": _SKIPPED}
_TRACK_CODE = {name: code for code, name in enumerate(_TRACKS)}
_SCRIPT_TRACK = {"inbound": "inbound", "outbound": "outbound", "rx": "inbound", "tx": "outbound"}
_NA = -1
_INT_COLUMNS = ("chunk", "seq", "ssrc", "rtp_timestamp", "timestamp", "sequence_number", "frame")
#: The typed columns of a snapshot, with their ``array`` type codes (the rest are lists).
ARRAY_COLUMNS = {"path": "b", "track": "b", "fate": "b", "due_at": "q", "sent_at": "q", "delay_ms": "d",
                 "n_bytes": "i", **{name: "q" for name in _INT_COLUMNS}, "stream_id": "i", "source": "i"}

#: Where a payload came from: (encoded script tracks, frame size) — or the bytes themselves.
Source = tuple[dict[str, bytes], int] | bytes


class Snapshot(TypedDict, total=False):
    """Copies of a GroundTruth's columns (``GroundTruth.snapshot``); one entry per row in the
    arrays, ``stream_id``/``source`` index ``stream_ids``/``sources``. ``payloads``, when present,
    holds each row's payload already sliced out (what crosses the process boundary)."""

    path: array[int]
    track: array[int]
    fate: array[int]
    due_at: array[int]
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
    stream_id: array[int]
    source: array[int]
    stream_ids: list[str | None]
    sources: list[Source | None]
    payloads: list[bytes]


class GroundTruth:
    """Append-only columns for one call (fates and send times are filled in as frames go out)."""

    __slots__ = ("_path", "_track", "_fate", "_due_at", "_sent_at", "_delay_ms", "_n_bytes", "_chunk", "_seq",
                 "_ssrc", "_rtp_timestamp", "_timestamp", "_sequence_number", "_frame", "_stream_id", "_source",
                 "_values", "_value_index")

    def __init__(self) -> None:
        self._path, self._track, self._fate = array("b"), array("b"), array("b")
        self._due_at, self._sent_at, self._delay_ms, self._n_bytes = array("q"), array("q"), array("d"), array("i")
        self._chunk, self._seq, self._ssrc, self._rtp_timestamp = array("q"), array("q"), array("q"), array("q")
        self._timestamp, self._sequence_number, self._frame = array("q"), array("q"), array("q")
        self._stream_id, self._source = array("i"), array("i")  # indexes into _values
        self._values: list[Any] = [None]  # distinct stream ids (str | None) and payload sources (Source)
        self._value_index: dict[int, int] = {id(None): 0}

    def __len__(self) -> int:
        return len(self._fate)

    def _intern(self, value: object) -> int:
        """Index of ``value`` in ``_values`` (by identity; mixed payloads are each new)."""
        index = self._value_index.get(id(value))
        if index is None:
            index = self._value_index[id(value)] = len(self._values)
            self._values.append(value)
        return index

    def add_stream(self, track: str, chunk: int, sequence_number: int, timestamp: int, due_at_ns: int, fate: str,
                   delay_s: float, stream_id: str, frame: int, source: Source, n_bytes: int) -> int:
        """A row for a stream frame; returns its index. ``fate`` is the impairment's decision
        (``delivered``, ``duplicated``, ``dropped``) or ``skipped``; a frame to be sent stays
        ``pending`` until :meth:`sent` (``sequence_number`` -1 = none)."""
        return self._add(0, track, due_at_ns, fate, delay_s, n_bytes, chunk, _NA, _NA, _NA, timestamp,
                         sequence_number, frame, stream_id, source)

    def add_fork(self, track: str, seq: int, rtp_timestamp: int, ssrc: int, due_at_ns: int, fate: str,
                 delay_s: float, frame: int, source: Source, n_bytes: int) -> int:
        """A row for an RTP packet (``seq``/``rtp_timestamp`` -1 = none); see :meth:`add_stream`."""
        return self._add(1, track, due_at_ns, fate, delay_s, n_bytes, _NA, seq, ssrc, rtp_timestamp, _NA, _NA,
                         frame, None, source)

    def add_fork_event(self, track: str, seq: int, rtp_timestamp: int, ssrc: int, due_at_ns: int, fate: str,
                       delay_s: float, frame: int, payload: bytes) -> int:
        """A row for a telephone-event packet (path ``fork_event``) sent with frame ``frame``."""
        return self._add(_EVENT_PATH, track, due_at_ns, fate, delay_s, len(payload), _NA, seq, ssrc, rtp_timestamp,
                         _NA, _NA, frame, None, payload)

    # Runs for every frame on the media clock: plain appends, no loops.
    def _add(self, path: int, track: str, due_at_ns: int, fate: str, delay_s: float, n_bytes: int, chunk: int,
             seq: int, ssrc: int, rtp_timestamp: int, timestamp: int, sequence_number: int, frame: int,
             stream_id: str | None, source: Source) -> int:
        values = self._value_index
        sid = values.get(id(stream_id))
        src = values.get(id(source))
        self._path.append(path)
        self._track.append(_TRACK_CODE[track])
        self._fate.append(_INTENT[fate])
        self._due_at.append(due_at_ns)
        self._sent_at.append(_NA)
        self._delay_ms.append(delay_s * 1e3)
        self._n_bytes.append(n_bytes)
        self._chunk.append(chunk)
        self._seq.append(seq)
        self._ssrc.append(ssrc)
        self._rtp_timestamp.append(rtp_timestamp)
        self._timestamp.append(timestamp)
        self._sequence_number.append(sequence_number)
        self._frame.append(frame)
        self._stream_id.append(self._intern(stream_id) if sid is None else sid)
        self._source.append(self._intern(source) if src is None else src)
        return len(self._fate) - 1

    def sent(self, row: int, sent_at_ns: int) -> None:
        """Row ``row`` was handed to its socket at ``sent_at_ns``: pending → delivered/duplicated."""
        fate = self._fate[row]
        if fate == _PENDING:
            self._fate[row] = _DELIVERED
        elif fate == _PENDING_TWICE:
            self._fate[row] = _DUPLICATED
        else:
            return
        self._sent_at[row] = sent_at_ns

    def unsent(self, row: int) -> None:
        """Row ``row`` will never be sent (its connection ended first)."""
        if self._fate[row] in (_PENDING, _PENDING_TWICE):
            self._fate[row] = _UNSENT

    def snapshot(self) -> Snapshot:
        """Copies of the columns (call on the loop thread; build the frame anywhere)."""
        snap = Snapshot(path=array("b", self._path), track=array("b", self._track), fate=array("b", self._fate),
                        due_at=array("q", self._due_at), sent_at=array("q", self._sent_at),
                        delay_ms=array("d", self._delay_ms), n_bytes=array("i", self._n_bytes),
                        chunk=array("q", self._chunk), seq=array("q", self._seq), ssrc=array("q", self._ssrc),
                        rtp_timestamp=array("q", self._rtp_timestamp), timestamp=array("q", self._timestamp),
                        sequence_number=array("q", self._sequence_number), frame=array("q", self._frame),
                        stream_id=array("i", self._stream_id), source=array("i", self._source))
        values = list(self._values)
        snap["stream_ids"] = [v if v is None or isinstance(v, str) else None for v in values]
        snap["sources"] = [v if isinstance(v, (tuple, bytes)) else None for v in values]
        return snap

    def fates(self, tracks: tuple[str, ...]) -> dict[str, int]:
        """Counts of each fate over rows on ``tracks``, a pending frame counted as what it will
        be when sent (``delivered`` or ``duplicated``; for call_quality_stats)."""
        codes = {_TRACK_CODE[t] for t in tracks}
        counts = [0] * len(_FATE_LABELS)
        for path, track, fate in zip(self._path, self._track, self._fate, strict=True):
            if track in codes and path != _EVENT_PATH:
                counts[fate] += 1
        result = dict.fromkeys(FATES, 0)
        for code, label in enumerate(_FATE_LABELS):
            result[label] += counts[code]
        result["delivered"] += counts[_PENDING]
        result["duplicated"] += counts[_PENDING_TWICE]
        result["pending"] = 0
        return result

    def delays_ms(self, tracks: tuple[str, ...]) -> list[float]:
        """Added delays of the rows on ``tracks`` that were (or are about to be) sent."""
        codes = {_TRACK_CODE[t] for t in tracks}
        going = {_DELIVERED, _DUPLICATED, _PENDING, _PENDING_TWICE}
        rows = zip(self._path, self._track, self._fate, self._delay_ms, strict=True)
        return [d for p, t, f, d in rows if t in codes and f in going and p != _EVENT_PATH]

    @staticmethod
    def payloads(snap: Snapshot) -> list[bytes]:
        """Each row's payload bytes, sliced out of the script (or the mixed bytes themselves)."""
        if "payloads" in snap:
            return snap["payloads"]
        sources = snap["sources"]
        out = []
        for s, t, i in zip(snap["source"], snap["track"], snap["frame"], strict=True):
            source = sources[s]
            if isinstance(source, bytes):
                out.append(source)
            elif source is not None:
                script, size = source
                out.append(script[_SCRIPT_TRACK[_TRACKS[t]]][i * size:(i + 1) * size])
            else:
                out.append(b"")
        return out

    @staticmethod
    def to_frame(snap: Snapshot, payloads: bool = False) -> pd.DataFrame:
        """The contract DataFrame: nullable Int64 counters, ns UTC times, labels as ``category``."""
        import pandas as pd

        from telnyx_nb.labels import labels as label_values

        def labels(codes: np.ndarray, names: Sequence[str | None]) -> pd.Series:
            """Codes indexing ``names`` (repeats and None allowed) as the receiver's label dtype."""
            return pd.Series(label_values(names, codes))

        def nullable(values: array[int]) -> pd.Series:
            data = np.frombuffer(values, dtype=np.int64)
            return pd.Series(pd.arrays.IntegerArray(data.copy(), data == _NA))

        def times(values: array[int]) -> pd.Series:
            data = np.frombuffer(values, dtype=np.int64).copy()
            na = data == _NA
            stamps = pd.Series(pd.to_datetime(data, unit="ns", utc=True)).astype("datetime64[ns, UTC]")
            return stamps.mask(na) if na.any() else stamps

        frame = pd.DataFrame({
            "path": labels(np.frombuffer(snap["path"], dtype=np.int8), _PATHS),
            "track": labels(np.frombuffer(snap["track"], dtype=np.int8), _TRACKS),
            "chunk": nullable(snap["chunk"]),
            "seq": nullable(snap["seq"]),
            "due_at": times(snap["due_at"]),
            "sent_at": times(snap["sent_at"]),
            "fate": labels(np.frombuffer(snap["fate"], dtype=np.int8), _FATE_LABELS),
            "delay_ms": pd.Series(np.frombuffer(snap["delay_ms"], dtype=np.float64)),
            "stream_id": labels(np.frombuffer(snap["stream_id"], dtype=np.int32), snap["stream_ids"] or [None]),
            "ssrc": nullable(snap["ssrc"]),
            "rtp_timestamp": nullable(snap["rtp_timestamp"]),
            "timestamp": nullable(snap["timestamp"]),
            "sequence_number": nullable(snap["sequence_number"]),
            "frame": pd.Series(np.frombuffer(snap["frame"], dtype=np.int64)),
            "n_bytes": pd.Series(np.frombuffer(snap["n_bytes"], dtype=np.int32).astype(np.int64)),
        })
        if payloads:
            frame["payload"] = pd.Series(GroundTruth.payloads(snap), dtype="object")
        return frame
