"""Append-only columnar store, DataFrame views, audio assembly and session save/load.

The receiver's I/O thread appends one row per webhook or packet to stdlib ``array`` columns,
one packed 49-byte row per media frame to a ``bytearray`` (one append instead of one per
column: media frames are the hot path), and one payload per stream track (or RTP source) to a
``bytearray``: no per-message DataFrame work (~0.65 MB per PCMU call-minute and track,
measured by benchmarks/bench_receiver.py). DataFrames are built on read, from
copies taken under one lock, so readers on any thread see a consistent snapshot and never
hold up ingest for more than a memcpy.

:class:`Session` is the read side shared by a live :class:`~telnyx_nb.Receiver` and a
session loaded with :func:`load`: the same ``events``, ``frames``, ``audio()``,
``quality()`` ... on both.
"""

from __future__ import annotations

import datetime as dt
import struct
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from telnyx_nb import quality as _quality
from telnyx_nb.audio import Audio
from telnyx_nb.wire import codecs
from telnyx_nb.wire.media import Start
from telnyx_nb.wire.rtp import ForkPacket
from telnyx_nb.wire.webhooks import WebhookEvent

__all__ = ["Store", "Session", "load", "assemble", "SESSION_FORMAT", "SESSION_VERSION", "EXCERPT_CHARS"]

SESSION_FORMAT = "telnyx_nb.session"
SESSION_VERSION = 1
#: Bad input is kept in the error tables as an excerpt of at most this many characters.
EXCERPT_CHARS = 200
#: A fork claim binds an unattributed SSRC first seen at most this long before it.
CLAIM_WINDOW_S = 5.0
#: RTP payload types with a static codec (RFC 3551); dynamic ones come from the receiver's map.
STATIC_PAYLOAD_TYPES = {0: "PCMU", 8: "PCMA"}

_NAT = np.iinfo(np.int64).min
TRACKS = ("inbound", "outbound")
TARGETS = ("rx", "tx")
_TRACK_CODE = {name: code for code, name in enumerate(TRACKS)}
_FORK_TRACK = {"rx": "rx", "tx": "tx", "inbound": "rx", "outbound": "tx"}
_JSON_COLUMNS = {"events": ["payload"], "streams": ["custom_parameters"]}
_BOOL_COLUMNS = {"events": ["verified"], "transcripts": ["is_final"]}
_TIME_COLUMNS = {
    "events": ["received_at", "occurred_at"],
    "transcripts": ["received_at", "occurred_at"],
    "frames": ["received_at"],
    "rtp": ["received_at"],
    "streams": ["connected_at", "started_at", "stopped_at", "ended_at"],
    "dtmf": ["received_at", "occurred_at"],
    "marks": ["received_at"],
    "stream_errors": ["received_at"],
    "webhook_errors": ["received_at"],
    "rtp_errors": ["received_at"],
}
TABLES = tuple(_TIME_COLUMNS)
#: The ``frames`` table's row layout, packed little-endian without padding (struct codes).
_FRAME_FIELDS = (("received_ns", "q"), ("stream", "i"), ("track", "b"), ("sequence_number", "q"),
                 ("chunk", "q"), ("timestamp", "q"), ("n_bytes", "i"), ("offset", "q"))
_FRAME_ROW = struct.Struct("<" + "".join(code for _, code in _FRAME_FIELDS))
_FRAME_DTYPE = np.dtype([(name, "<" + code) for name, code in _FRAME_FIELDS])


def excerpt(data: str | bytes | bytearray | memoryview) -> str:
    """The start of a bad message, as text (bytes that are not UTF-8 are shown escaped)."""
    if not isinstance(data, str):
        data = bytes(data[: EXCERPT_CHARS * 4]).decode("utf-8", "backslashreplace")
    return data[:EXCERPT_CHARS]


def utc(ns: Iterable[int] | np.ndarray) -> pd.DatetimeIndex:
    """Nanoseconds since the epoch (int64 min = missing) as ``datetime64[ns, UTC]``."""
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("datetime64[ns]")).tz_localize("UTC")


def parse_times(values: Iterable[str | None]) -> pd.DatetimeIndex:
    """Telnyx ISO-8601 timestamps (``...Z``) as ``datetime64[ns, UTC]``; bad or missing -> NaT."""
    parsed = pd.to_datetime(pd.Series(list(values), dtype=object), utc=True, format="ISO8601", errors="coerce")
    return pd.DatetimeIndex(parsed).as_unit("ns")


class _Columns:
    """One append-only table: stdlib ``array`` columns for numbers, lists for objects ("O")."""

    def __init__(self, **spec: str) -> None:
        self.columns: dict[str, array | list] = {
            name: [] if code == "O" else array(code) for name, code in spec.items()
        }
        self._appenders = [column.append for column in self.columns.values()]

    def append(self, *values: Any) -> None:
        """Append one row; a value a column cannot hold (OverflowError) leaves no partial row."""
        try:
            for add, value in zip(self._appenders, values, strict=True):
                add(value)
        except (OverflowError, TypeError):
            size = min(len(column) for column in self.columns.values())
            for column in self.columns.values():
                del column[size:]
            raise

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def copy(self) -> dict[str, array | list]:
        return {name: column[:] for name, column in self.columns.items()}


@dataclass
class StreamInfo:
    """What the receiver knows about one media stream (a row of ``streams``)."""

    index: int
    stream_id: str
    call_control_id: str | None = None
    call_session_id: str | None = None
    client_state: str | None = None
    connected_ns: int = _NAT
    started_ns: int = _NAT
    stopped_ns: int = _NAT
    ended_ns: int = _NAT
    end_reason: str | None = None
    encoding: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)
    authenticated: bool = False


@dataclass
class RtpSource:
    """One forked RTP source: a (target, SSRC) pair and the call it is attributed to."""

    index: int
    target: str
    ssrc: int
    call_control_id: str | None
    first_ns: int
    claimable: bool = True      # False for STREP sources, attributed by call_leg_id


def _text_or_none(value: Any) -> str | None:
    """A payload id for a table column: strings only (the raw payload keeps anything else)."""
    return value if isinstance(value, str) else None


class Store:
    """Thread-safe append-only tables; appends from the receiver's loop, reads from anywhere.

    Fork attribution: plain RTP carries no call id, so a call *claims* the fork ports
    (``claim_fork``, done by ``tnb.start_forking`` and by each ``call.fork.started`` webhook
    for a call not already claimed) and the first new SSRC on each target is bound to the
    oldest open claim, first come first served. An open claim lapses after CLAIM_WINDOW_S
    without packets, on ``call.fork.stopped``, or when ``withdraw_fork`` is called (a
    fork_start that failed), so it cannot capture a later call's fork. A claim that comes after its packets (the
    webhook is often slower than the RTP) takes the oldest unattributed SSRC first seen on
    that target within CLAIM_WINDOW_S before it. Two calls starting forks to the same ports
    at the same instant may swap; STREP packets carry their ``call_leg_id`` and are
    attributed through the webhooks' ``call_leg_id`` instead.
    """

    def __init__(self, *, payload_types: Mapping[int, str] | None = None) -> None:
        self.lock = threading.Lock()
        self.payload_types = {**STATIC_PAYLOAD_TYPES, **(payload_types or {})}
        self.events = _Columns(
            received_ns="q", occurred_at="O", event_type="O", event_id="O", call_control_id="O",
            call_leg_id="O", call_session_id="O", client_state="O", verified="b", attempt="q", payload="O",
        )
        self.transcripts = _Columns(
            received_ns="q", occurred_at="O", call_control_id="O", track="O", transcript="O",
            confidence="d", is_final="b",
        )
        self.frames = bytearray()       # _FRAME_ROW rows
        self.rtp = _Columns(
            received_ns="q", source="i", seq="i", rtp_timestamp="q", payload_type="b", marker="b",
            n_bytes="i", offset="q", leg="O",
        )
        self.dtmf = _Columns(received_ns="q", stream="i", occurred_at="O", sequence_number="q", digit="O")
        self.marks = _Columns(received_ns="q", stream="i", sequence_number="q", name="O")
        self.stream_errors = _Columns(
            received_ns="q", stream_id="O", origin="O", reason="O", code="q", detail="O", excerpt="O",
        )
        self.webhook_errors = _Columns(received_ns="q", reason="O", detail="O", remote="O", excerpt="O")
        self.rtp_errors = _Columns(received_ns="q", target="O", reason="O", detail="O", n_bytes="i", excerpt="O")
        self.streams: list[StreamInfo] = []
        self._stream_index: dict[str, int] = {}
        self._frame_payloads: list[bytearray] = []      # index 2 * stream + track
        self.sources: list[RtpSource] = []
        self._source_index: dict[tuple[str, int], int] = {}
        self._rtp_payloads: list[bytearray] = []
        self._event_ids: set[str] = set()
        self.duplicate_events = 0
        self._claims: dict[str, deque[tuple[str, int]]] = {target: deque() for target in TARGETS}  # (ccid, claimed_ns)
        self._forked: set[str] = set()

    # -- appends (receiver loop thread) ------------------------------------------------

    def stream(self, stream_id: str) -> StreamInfo:
        """The stream with this id, created on first sight (e.g. media before ``start``)."""
        index = self._stream_index.get(stream_id)
        if index is not None:
            return self.streams[index]
        with self.lock:
            info = StreamInfo(len(self.streams), stream_id)
            self.streams.append(info)
            self._frame_payloads += (bytearray(), bytearray())
            self._stream_index[stream_id] = info.index
        return info

    def start_stream(self, start: Start, received_ns: int, connected_ns: int, authenticated: bool) -> StreamInfo:
        """Record a ``start`` frame: ids, media format (authoritative for decoding), parameters."""
        info = self.stream(start.stream_id)
        with self.lock:
            info.call_control_id = start.call_control_id
            info.call_session_id = start.call_session_id
            info.client_state = start.client_state
            info.connected_ns = connected_ns
            info.started_ns = received_ns
            info.encoding = start.media_format.encoding
            info.sample_rate = start.media_format.sample_rate
            info.channels = start.media_format.channels
            info.custom_parameters = dict(start.custom_parameters)
            info.authenticated = authenticated
        return info

    def end_stream(self, info: StreamInfo, ended_ns: int, reason: str, *, stopped: bool = False) -> None:
        """Mark a stream stopped (``stop`` frame) or ended (its connection closed)."""
        with self.lock:
            if stopped:
                info.stopped_ns = ended_ns
            if info.ended_ns == _NAT:
                info.ended_ns, info.end_reason = ended_ns, reason

    def add_frame(self, info: StreamInfo, track: str, sequence_number: int, chunk: int,
                  timestamp: int, payload: bytes, received_ns: int) -> None:
        """The hot path (one call per media frame): one packed row and the payload appended.

        A counter beyond int64 raises OverflowError and stores nothing. Only the receiver's
        loop thread appends, so the payload offset can be read before taking the lock.
        """
        code = _TRACK_CODE[track]
        index = info.index
        buffer = self._frame_payloads[2 * index + code]
        try:
            row = _FRAME_ROW.pack(received_ns, index, code, sequence_number, chunk, timestamp, len(payload), len(buffer))
        except struct.error:
            raise OverflowError("a frame counter does not fit in int64") from None
        lock = self.lock
        lock.acquire()          # not ``with``: half the cost on this path
        try:
            buffer += payload
            self.frames += row
        finally:
            lock.release()

    def add_packet(self, target: str, packet: ForkPacket, received_ns: int) -> None:
        """Append one forked packet; STREP's direction decides its target ("rx" = received)."""
        rtp = packet.rtp
        leg = None
        if packet.strep is not None:
            target = "rx" if packet.strep.direction == "received" else "tx"
            leg = str(packet.strep.call_leg_id)
        with self.lock:
            index = self._source_index.get((target, rtp.ssrc))
            if index is None:
                index = self._new_source(target, rtp.ssrc, leg is None, received_ns)
            buffer = self._rtp_payloads[index]
            self.rtp.append(received_ns, index, rtp.sequence_number, rtp.timestamp, rtp.payload_type,
                            rtp.marker, len(rtp.payload), len(buffer), leg)
            buffer += rtp.payload

    def _new_source(self, target: str, ssrc: int, claimable: bool, received_ns: int) -> int:
        claims = self._claims[target]
        while claims and received_ns - claims[0][1] > CLAIM_WINDOW_S * 1e9:
            claims.popleft()
        ccid = claims.popleft()[0] if claimable and claims else None
        index = len(self.sources)
        self.sources.append(RtpSource(index, target, ssrc, ccid, received_ns, claimable))
        self._source_index[(target, ssrc)] = index
        self._rtp_payloads.append(bytearray())
        return index

    def claim_fork(self, call_control_id: str) -> None:
        """Bind the next new SSRC on each fork target to this call (see the class docstring)."""
        now = time.time_ns()
        with self.lock:
            self._forked.add(call_control_id)
            self._drop_claims(call_control_id)
            for target, claims in self._claims.items():
                orphan = next((s for s in self.sources if s.target == target and s.claimable
                               and s.call_control_id is None and now - s.first_ns < CLAIM_WINDOW_S * 1e9), None)
                if orphan is not None:
                    orphan.call_control_id = call_control_id
                else:
                    claims.append((call_control_id, now))

    def withdraw_fork(self, call_control_id: str) -> None:
        """Forget this call's open claims (its fork_start failed, or its fork stopped)."""
        with self.lock:
            self._forked.discard(call_control_id)
            self._drop_claims(call_control_id)

    def _drop_claims(self, call_control_id: str) -> None:
        for target, claims in self._claims.items():
            self._claims[target] = deque(claim for claim in claims if claim[0] != call_control_id)

    def add_event(self, event: WebhookEvent, verified: bool, received_ns: int) -> bool:
        """Append a webhook; False (and counted) when its event id was stored before."""
        p = event.payload
        ccid, leg, session, state = (_text_or_none(p.get(key)) for key in
                                     ("call_control_id", "call_leg_id", "call_session_id", "client_state"))
        with self.lock:
            if event.id in self._event_ids:
                self.duplicate_events += 1
                return False
            self.events.append(
                received_ns, event.occurred_at, event.event_type, event.id, ccid, leg, session, state,
                verified, event.attempt, p,
            )
            self._event_ids.add(event.id)
            if event.event_type == "call.transcription":
                data = p.get("transcription_data")
                data = data if isinstance(data, dict) else {}
                confidence = data.get("confidence")
                self.transcripts.append(
                    received_ns, event.occurred_at, ccid, data.get("transcription_track"),
                    data.get("transcript"), float(confidence) if isinstance(confidence, (int, float)) else float("nan"),
                    bool(data.get("is_final", True)),
                )
        if event.event_type == "call.fork.stopped" and ccid:
            self.withdraw_fork(ccid)
        elif event.event_type == "call.fork.started" and ccid and ccid not in self._forked:
            self.claim_fork(ccid)
        return True

    def add_dtmf(self, info: StreamInfo, occurred_at: str | None, sequence_number: int, digit: str, received_ns: int) -> None:
        with self.lock:
            self.dtmf.append(received_ns, info.index, occurred_at, sequence_number, digit)

    def add_mark(self, info: StreamInfo, sequence_number: int, name: str, received_ns: int) -> None:
        with self.lock:
            self.marks.append(received_ns, info.index, sequence_number, name)

    def add_stream_error(self, stream_id: str | None, origin: str, reason: str, detail: str,
                         raw: str | bytes, received_ns: int, code: int = -1) -> None:
        """``origin`` is "receiver" (input we rejected) or "telnyx" (an ``error`` frame)."""
        with self.lock:
            self.stream_errors.append(received_ns, stream_id, origin, reason, code, detail, excerpt(raw))

    def add_webhook_error(self, reason: str, detail: str, remote: str | None, raw: bytes, received_ns: int) -> None:
        with self.lock:
            self.webhook_errors.append(received_ns, reason, detail, remote, excerpt(raw))

    def add_rtp_error(self, target: str, reason: str, detail: str, raw: bytes, received_ns: int) -> None:
        with self.lock:
            self.rtp_errors.append(received_ns, target, reason, detail, len(raw), raw[:EXCERPT_CHARS // 2].hex())

    # -- reads (any thread) ---------------------------------------------------------------

    def nbytes(self) -> int:
        """Memory held by the hot tables (frames, rtp) and all payload buffers, allocation included."""
        with self.lock:
            buffers = [self.frames, *self.rtp.columns.values(), *self._frame_payloads, *self._rtp_payloads]
            return sum(map(sys.getsizeof, buffers))

    def payload(self, kind: str, key: int) -> bytes:
        """A copy of one payload buffer: frames key = 2 * stream index + track code; rtp key = source."""
        buffers = self._frame_payloads if kind == "frames" else self._rtp_payloads
        with self.lock:
            return bytes(buffers[key])

    def table(self, name: str) -> pd.DataFrame:
        """The internal view of one table (public columns plus ``_``-prefixed keys)."""
        with self.lock:
            columns = getattr(self, name).copy() if name != "streams" else {}
            streams = [StreamInfo(**vars(s)) for s in self.streams]
            sources = list(self.sources)
        if name == "frames":
            return self._frames_view(columns, streams)
        if name == "rtp":
            return self._rtp_view(columns, sources)
        if name == "streams":
            return self._streams_view(streams)
        df = self._plain_view(columns)
        for col in _BOOL_COLUMNS.get(name, ()):
            df[col] = df[col].astype(bool)
        if name in ("dtmf", "marks"):
            index = df.pop("stream").to_numpy(np.int64)
            df.insert(1, "stream_id", _labels([s.stream_id for s in streams], index))
            df.insert(2, "call_control_id", _labels([s.call_control_id for s in streams], index))
        elif name == "stream_errors":
            df.insert(2, "call_control_id", df["stream_id"].map({s.stream_id: s.call_control_id for s in streams}))
            df["code"] = df["code"].astype("Int64").mask(df["code"] < 0)
        return df

    @staticmethod
    def _plain_view(c: dict) -> pd.DataFrame:
        c = {key: np.asarray(value) if isinstance(value, array) else pd.Series(value, dtype=object)
             for key, value in c.items()}
        c["received_at"] = utc(c.pop("received_ns"))
        if "occurred_at" in c:
            c["occurred_at"] = parse_times(c["occurred_at"])
        df = pd.DataFrame(c)
        first = ["received_at", "occurred_at"] if "occurred_at" in c else ["received_at"]
        return df[first + [col for col in df.columns if col not in first]]

    def _frames_view(self, rows: bytearray, streams: list[StreamInfo]) -> pd.DataFrame:
        c = np.frombuffer(rows, dtype=_FRAME_DTYPE)
        stream = c["stream"].astype(np.int64)
        track = c["track"]
        return pd.DataFrame({
            "received_at": utc(c["received_ns"]),
            "stream_id": _labels([s.stream_id for s in streams], stream),
            "call_control_id": _labels([s.call_control_id for s in streams], stream),
            "track": pd.Categorical.from_codes(track, TRACKS),
            "sequence_number": c["sequence_number"],
            "chunk": c["chunk"],
            "timestamp": c["timestamp"],
            "encoding": _labels([s.encoding for s in streams], stream),
            "sample_rate": _ints([s.sample_rate for s in streams], stream),
            "n_bytes": c["n_bytes"].astype(np.int64),
            "_key": 2 * stream + track,
            "_offset": c["offset"],
        })

    def _rtp_view(self, c: dict, sources: list[RtpSource]) -> pd.DataFrame:
        source = np.frombuffer(c["source"], dtype=np.int32).astype(np.int64)
        pt = np.frombuffer(c["payload_type"], dtype=np.int8).astype(np.int64)
        encodings = [self.payload_types.get(p) for p in range(128)]
        legs = pd.Series(c["leg"], dtype=object)
        ccid: pd.Categorical | np.ndarray = _labels([s.call_control_id for s in sources], source)
        if legs.notna().any():      # STREP: the call comes from the webhooks' call_leg_id
            by_leg = legs.map(self._leg_calls()).astype(object)
            ccid = pd.Categorical(np.where(legs.notna(), by_leg.where(by_leg.notna(), None), np.asarray(ccid, dtype=object)))
        return pd.DataFrame({
            "received_at": utc(c["received_ns"]),
            "target": _labels([s.target for s in sources], source),
            "ssrc": np.array([s.ssrc for s in sources], dtype=np.int64)[source],
            "seq": np.frombuffer(c["seq"], dtype=np.int32).astype(np.int64),
            "rtp_timestamp": np.frombuffer(c["rtp_timestamp"], dtype=np.int64),
            "payload_type": pt,
            "marker": np.frombuffer(c["marker"], dtype=np.int8).astype(bool),
            "n_bytes": np.frombuffer(c["n_bytes"], dtype=np.int32).astype(np.int64),
            "call_leg_id": pd.Categorical(legs),
            "call_control_id": ccid,
            "encoding": _labels(encodings, pt),
            "clock_rate": _ints([_clock_rate(e) for e in encodings], pt),
            "_key": source,
            "_offset": np.frombuffer(c["offset"], dtype=np.int64),
        })

    def _leg_calls(self) -> dict[str, str]:
        with self.lock:
            pairs = zip(self.events.columns["call_leg_id"][:], self.events.columns["call_control_id"][:])
            return {leg: ccid for leg, ccid in pairs if leg and ccid}

    @staticmethod
    def _streams_view(streams: list[StreamInfo]) -> pd.DataFrame:
        def col(attribute: str) -> list:
            return [getattr(s, attribute) for s in streams]

        return pd.DataFrame({
            "stream_id": pd.Series(col("stream_id"), dtype=object),
            "call_control_id": pd.Series(col("call_control_id"), dtype=object),
            "connected_at": utc(col("connected_ns")),
            "started_at": utc(col("started_ns")),
            "stopped_at": utc(col("stopped_ns")),
            "ended_at": utc(col("ended_ns")),
            "end_reason": pd.Series(col("end_reason"), dtype=object),
            "encoding": pd.Series(col("encoding"), dtype=object),
            "sample_rate": pd.array(col("sample_rate"), dtype="Int64"),
            "channels": pd.array(col("channels"), dtype="Int64"),
            "custom_parameters": pd.Series(col("custom_parameters"), dtype=object),
            "authenticated": pd.Series(col("authenticated"), dtype=bool),
            "call_session_id": pd.Series(col("call_session_id"), dtype=object),
            "client_state": pd.Series(col("client_state"), dtype=object),
        })


def _labels(values: list[str | None], index: np.ndarray) -> pd.Categorical:
    """``values[index]`` as a Categorical (None = missing), without a Python string per row."""
    table = pd.Categorical(pd.Series(values, dtype=object))
    return pd.Categorical.from_codes(table.codes[index], table.categories)


def _ints(values: list[int | None], index: np.ndarray) -> pd.arrays.IntegerArray:
    """``values[index]`` as nullable Int64 (None = missing)."""
    raw = np.array([-1 if v is None else v for v in values], dtype=np.int64)[index]
    return pd.arrays.IntegerArray(raw, raw < 0)


def _plain(column: pd.Series) -> pd.Series:
    """A Categorical label column as plain strings, the dtype the public tables use."""
    values = np.append(np.asarray(column.cat.categories, dtype=object), None)
    return pd.Series(values[column.cat.codes.to_numpy()], index=column.index)


def _clock_rate(encoding: str | None) -> int | None:
    try:
        return codecs.get_codec(encoding).sample_rate if encoding is not None else None
    except codecs.UnsupportedCodecError:
        return None


def assemble(numbers: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, payload: bytes,
             codec: codecs.Codec) -> np.ndarray:
    """Decode one track: frames in number order, first copy of duplicates, gaps as silence.

    ``numbers`` are chunks or extended RTP sequence numbers. A missing number is filled with
    one frame of the codec's digital silence, the frame being the most common payload size,
    so the sample index is media time when frames have equal durations (Telnyx: 20 ms).
    A payload that ends in a partial sample (an odd-length L16 chunk) loses that byte, so one
    bad frame cannot make the whole track undecodable.
    """
    if not len(numbers):
        return np.zeros(0, dtype=np.int16)
    unique, first = np.unique(numbers, return_index=True)
    width = codec.bytes_per_sample
    frame = int(np.bincount(lengths).argmax())
    silence = codec.silence * (frame // len(codec.silence))
    pieces = []
    previous = unique[0] - 1
    view = memoryview(payload)
    for number, i in zip(unique.tolist(), first.tolist()):
        if number - previous > 1:
            pieces.append(silence * (number - previous - 1))
        pieces.append(view[offsets[i] : offsets[i] + lengths[i] - lengths[i] % width])
        previous = number
    return codec.decode(b"".join(pieces))


class Session:
    """Read accessors over a set of tables: shared by a live Receiver and a loaded session.

    Every table is a fresh DataFrame (a snapshot); times are ``datetime64[ns, UTC]``.
    """

    _l16_byteorder: str = "big"

    def _table(self, name: str) -> pd.DataFrame:
        raise NotImplementedError

    def _payload(self, kind: str, key: int) -> bytes:
        raise NotImplementedError

    def _public(self, name: str) -> pd.DataFrame:
        """The table without its internal ``_`` columns; label columns as plain strings.

        Internally the big tables keep labels (stream id, track, ...) as Categoricals, so
        ``audio()`` and ``quality()`` never build a string per row.
        """
        df = self._table(name)
        df = df[[col for col in df.columns if not col.startswith("_")]]
        for col in df.columns:
            if isinstance(df[col].dtype, pd.CategoricalDtype):
                df[col] = _plain(df[col])
        return df

    @property
    def events(self) -> pd.DataFrame:
        """Webhooks, once per event id: ..., verified, attempt, payload (dict)."""
        return self._public("events")

    @property
    def transcripts(self) -> pd.DataFrame:
        """``call.transcription`` webhooks: track, transcript, confidence, is_final."""
        return self._public("transcripts")

    @property
    def frames(self) -> pd.DataFrame:
        """WebSocket media frames (payload bytes are kept apart; see ``audio()``)."""
        return self._public("frames")

    @property
    def rtp(self) -> pd.DataFrame:
        """Forked RTP packets; ``call_control_id`` as attributed (see Store docstring)."""
        return self._public("rtp")

    @property
    def streams(self) -> pd.DataFrame:
        """One row per media stream: ids, times, media format, custom parameters, auth."""
        return self._public("streams")

    @property
    def dtmf(self) -> pd.DataFrame:
        """DTMF frames from media streams."""
        return self._public("dtmf")

    @property
    def marks(self) -> pd.DataFrame:
        """Mark echoes Telnyx sent back on media streams."""
        return self._public("marks")

    @property
    def stream_errors(self) -> pd.DataFrame:
        """Rejected WebSocket input (origin "receiver") and Telnyx ``error`` frames (origin "telnyx")."""
        return self._public("stream_errors")

    @property
    def webhook_errors(self) -> pd.DataFrame:
        """Rejected webhooks: failed signature checks and malformed bodies, with the reason."""
        return self._public("webhook_errors")

    @property
    def rtp_errors(self) -> pd.DataFrame:
        """Datagrams on the fork ports that are not RTP/STREP (hex excerpt)."""
        return self._public("rtp_errors")

    def quality(self) -> pd.DataFrame:
        """Loss, duplicates, reordering, jitter and MOS per stream track and RTP source (see quality.py)."""
        return _quality.quality(self._table("frames"), self._table("rtp"))

    def audio(self, call_control_id: str, track: str = "inbound", source: str = "stream", *,
              encoding: str | None = None) -> Audio:
        """One track of a call as :class:`Audio` (``call_control_id`` may also be a stream id).

        ``source="stream"``: WebSocket frames, track "inbound"/"outbound", codec from each
        stream's ``start.media_format``. ``source="fork"``: RTP payloads by extended sequence
        number, track "rx"/"tx" ("inbound"/"outbound" are accepted as rx/tx), codec from the
        payload type. Several streams (or SSRCs) of one call are joined in arrival order.
        ``encoding`` overrides the codec. Raises LookupError when nothing matches.
        """
        if source == "stream":
            table = self._table("frames")
            rows = table[((table["call_control_id"] == call_control_id) | (table["stream_id"] == call_control_id))
                         & (table["track"] == track)]
            kind = "frames"
        elif source == "fork":
            if track not in _FORK_TRACK:
                raise ValueError(f"fork track must be one of {sorted(_FORK_TRACK)}, got {track!r}")
            table = self._table("rtp")
            rows = table[(table["call_control_id"] == call_control_id) & (table["target"] == _FORK_TRACK[track])]
            kind = "rtp"
        else:
            raise ValueError(f"source must be 'stream' or 'fork', got {source!r}")
        if rows.empty:
            raise LookupError(f"no {source} {track} audio for {call_control_id!r}")
        parts, rates = [], set()
        for key, group in rows.groupby("_key", sort=False):
            name = encoding or group["encoding"].iloc[0]
            if not isinstance(name, str):
                raise LookupError(f"unknown encoding for {source} {track} of {call_control_id!r}; pass encoding=")
            codec = codecs.get_codec(name, l16_byteorder=self._l16_byteorder)
            if kind == "frames":
                numbers = _quality.extend_sequence(group["chunk"].to_numpy(np.int64), modulus=None)
                rates.add(int(group["sample_rate"].iloc[0]))
            else:
                numbers = _quality.extend_sequence(group["seq"].to_numpy())
                rates.add(int(group["clock_rate"].iloc[0]) if pd.notna(group["clock_rate"].iloc[0]) else codec.sample_rate)
            group = group[numbers >= 0]
            numbers = numbers[numbers >= 0]
            parts.append(assemble(numbers, group["_offset"].to_numpy(np.int64), group["n_bytes"].to_numpy(np.int64),
                                  self._payload(kind, int(key)), codec))
        if len(rates) != 1:
            raise ValueError(f"streams of {call_control_id!r} have different sample rates {sorted(rates)}")
        return Audio(np.concatenate(parts), rates.pop())

    def save(self, path: str | PathLike[str]) -> Path:
        """Write a session directory: one Parquet file per table, payload files, manifest.json.

        Dict columns (``events.payload``, ``streams.custom_parameters``) are stored as JSON text
        and come back as dicts from :func:`load`. Returns the directory.
        """
        root = Path(path)
        (root / "payloads").mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {
            "format": SESSION_FORMAT, "version": SESSION_VERSION,
            "saved_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "l16_byteorder": self._l16_byteorder, "tables": {}, "payloads": {"frames": [], "rtp": []},
        }
        for name in TABLES:
            df = self._table(name).copy()
            for col in _JSON_COLUMNS.get(name, []):
                df[col] = [orjson.dumps(value).decode() for value in df[col]]
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), root / f"{name}.parquet")
            manifest["tables"][name] = {"file": f"{name}.parquet", "rows": len(df)}
            if name in ("frames", "rtp"):
                for key in sorted(set(df["_key"].tolist())):
                    (root / "payloads" / f"{name}-{key}.bin").write_bytes(self._payload(name, key))
                    manifest["payloads"][name].append(key)
        (root / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        return root


class LoadedSession(Session):
    """A session directory read back by :func:`load`; read-only, same accessors as a receiver."""

    def __init__(self, root: Path, manifest: Mapping[str, Any]) -> None:
        self.path = root
        self.manifest = dict(manifest)
        self._l16_byteorder = manifest.get("l16_byteorder", "big")
        self._tables: dict[str, pd.DataFrame] = {}
        for name, entry in manifest["tables"].items():
            df = pq.read_table(root / entry["file"]).to_pandas()
            for col in _TIME_COLUMNS.get(name, []):
                df[col] = df[col].astype("datetime64[ns, UTC]")
            for col in _JSON_COLUMNS.get(name, []):
                df[col] = [orjson.loads(value) for value in df[col]]
            self._tables[name] = df

    def __repr__(self) -> str:
        return f"<telnyx_nb session {str(self.path)!r}>"

    def _table(self, name: str) -> pd.DataFrame:
        return self._tables[name].copy()

    def _payload(self, kind: str, key: int) -> bytes:
        return (self.path / "payloads" / f"{kind}-{key}.bin").read_bytes()


def load(path: str | PathLike[str]) -> LoadedSession:
    """Open a session directory written by ``save()``; checks the manifest's format and version."""
    root = Path(path)
    manifest = orjson.loads((root / "manifest.json").read_bytes())
    if manifest.get("format") != SESSION_FORMAT:
        raise ValueError(f"{root} is not a telnyx_nb session (format {manifest.get('format')!r})")
    if manifest.get("version", 0) > SESSION_VERSION:
        raise ValueError(f"session version {manifest['version']} is newer than this telnyx_nb ({SESSION_VERSION})")
    return LoadedSession(root, manifest)
