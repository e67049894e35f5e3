"""The receiver's tables: append-only storage (one lock) and the DataFrame views built on read."""

from __future__ import annotations

import copy
import sys
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from telnyx_nb.defaults import EXCERPT_CHARS, FORK_CLAIM_WINDOW_S
from telnyx_nb.store.attribution import ForkAttribution, RtpSource
from telnyx_nb.store.columns import Columns, excerpt, ints, labels, parse_times, utc
from telnyx_nb.store.schema import (
    BOOL_COLUMNS,
    FRAME_DTYPE,
    FRAME_ROW,
    JSON_COLUMNS,
    NAT,
    STATIC_PAYLOAD_TYPES,
    TRACK_CODE,
    TRACKS,
)
from telnyx_nb.wire import codecs
from telnyx_nb.wire.errors import Reason
from telnyx_nb.wire.media import Start
from telnyx_nb.wire.rtp import ForkPacket
from telnyx_nb.wire.webhooks import WebhookEvent

__all__ = ["Store", "StreamInfo"]


@dataclass
class StreamInfo:
    """What the receiver knows about one media stream (a row of ``streams``)."""

    index: int
    stream_id: str
    call_control_id: str | None = None
    call_session_id: str | None = None
    client_state: str | None = None
    connected_ns: int = NAT
    started_ns: int = NAT
    stopped_ns: int = NAT
    ended_ns: int = NAT
    end_reason: str | None = None
    encoding: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)
    authenticated: bool = False


def _text_or_none(value: Any) -> str | None:
    """A payload id for a table column: strings only (the raw payload keeps anything else)."""
    return value if isinstance(value, str) else None


#: Tables whose flushed rows ``Store.forget`` may drop (the registries are kept).
_FORGETTABLE = ("events", "transcripts", "frames", "rtp", "dtmf", "marks", "stream_errors", "webhook_errors",
                "rtp_errors")


def _number(value: Any) -> float:
    """A JSON number as a float (NaN for anything else, or for an int too large for a float)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            pass
    return float("nan")


class Store:
    """Thread-safe append-only tables; appends from the receiver's I/O thread, reads from anywhere.

    Webhooks, errors, DTMF and marks go to :class:`~telnyx_nb.store.columns.Columns`; each
    media frame is one packed ``FRAME_ROW`` appended to a ``bytearray`` (one append instead of
    one per column: media frames are the hot path), and payloads go to one ``bytearray`` per
    stream track or RTP source: no per-message DataFrame work. DataFrames are built on read
    (:meth:`table`) from copies taken under one lock, so readers see a consistent snapshot and
    never hold up ingest for more than a memcpy. Forked sources are attributed to calls by
    :class:`~telnyx_nb.store.attribution.ForkAttribution`.
    """

    def __init__(self, *, payload_types: Mapping[int, str] | None = None,
                 fork_claim_window_s: float = FORK_CLAIM_WINDOW_S, clock: Callable[[], int] = time.time_ns) -> None:
        self.lock = threading.Lock()
        self.attribution = ForkAttribution(fork_claim_window_s, clock)
        self.payload_types = {**STATIC_PAYLOAD_TYPES, **(payload_types or {})}
        self.events = Columns(
            received_ns="q", occurred_at="O", event_type="O", event_id="O", call_control_id="O",
            call_leg_id="O", call_session_id="O", client_state="O", verified="b", attempt="q", payload="O",
        )
        self.transcripts = Columns(
            received_ns="q", occurred_at="O", call_control_id="O", track="O", transcript="O",
            confidence="d", is_final="b",
        )
        self.frames = bytearray()       # FRAME_ROW rows
        self.rtp = Columns(
            received_ns="q", source="i", seq="i", rtp_timestamp="q", payload_type="b", marker="b",
            n_bytes="i", offset="q", leg="O",
        )
        self.dtmf = Columns(received_ns="q", stream="i", occurred_at="O", sequence_number="q", digit="O")
        self.marks = Columns(received_ns="q", stream="i", sequence_number="q", name="O")
        self.stream_errors = Columns(
            received_ns="q", stream_id="O", origin="O", reason="O", code="q", detail="O", excerpt="O",
        )
        self.webhook_errors = Columns(received_ns="q", reason="O", detail="O", remote="O", excerpt="O")
        self.rtp_errors = Columns(received_ns="q", target="O", reason="O", detail="O", n_bytes="i", excerpt="O")
        self.streams: list[StreamInfo] = []
        self._stream_index: dict[str, int] = {}
        self._frame_payloads: list[bytearray] = []      # index 2 * stream + track
        #: Bytes already forgotten from the front of each payload buffer (``forget``): a row's
        #: offset is ``base + position in the buffer``, so offsets stay those of the recording.
        self._frame_base: list[int] = []
        self._rtp_base: list[int] = []
        #: Where the payload bytes are when they are not held here (a store following a recording).
        self.payload_dir: Path | None = None
        #: Rows already forgotten from the front of each table (``forget``).
        self.forgotten: dict[str, int] = dict.fromkeys(_FORGETTABLE, 0)
        self.sources: list[RtpSource] = []
        self._source_index: dict[tuple[str, int], int] = {}
        self._rtp_payloads: list[bytearray] = []
        self._event_ids: set[str] = set()
        self.duplicate_events = 0

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
            self._frame_base += (0, 0)
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
            if info.ended_ns == NAT:
                info.ended_ns, info.end_reason = ended_ns, reason

    def add_frame(self, info: StreamInfo, track: str, sequence_number: int, chunk: int,
                  timestamp: int, payload: bytes, received_ns: int) -> None:
        """The hot path (one call per media frame): one packed row and the payload appended.

        Counters are int64 (``wire`` refuses larger ones). Only the receiver's I/O thread
        appends, so the payload offset can be read before taking the lock.
        """
        code = TRACK_CODE[track]
        index = info.index
        key = 2 * index + code
        buffer = self._frame_payloads[key]
        row = FRAME_ROW.pack(received_ns, index, code, sequence_number, chunk, timestamp, len(payload),
                             self._frame_base[key] + len(buffer))
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
                            rtp.marker, len(rtp.payload), self._rtp_base[index] + len(buffer), leg)
            buffer += rtp.payload

    def _new_source(self, target: str, ssrc: int, claimable: bool, received_ns: int) -> int:
        ccid = self.attribution.call_for_new_source(target, claimable, received_ns)
        index = len(self.sources)
        self.sources.append(RtpSource(index, target, ssrc, ccid, received_ns, claimable))
        self._source_index[(target, ssrc)] = index
        self._rtp_payloads.append(bytearray())
        self._rtp_base.append(0)
        return index

    def claim_fork(self, call_control_id: str) -> None:
        """Bind the next new SSRC on each fork target to this call (see ``store.attribution``)."""
        with self.lock:
            self.attribution.claim(call_control_id, self.sources)

    def withdraw_fork(self, call_control_id: str) -> None:
        """Forget this call's open fork claims (its fork_start failed, or its fork stopped)."""
        with self.lock:
            self.attribution.withdraw(call_control_id)

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
                self.transcripts.append(
                    received_ns, event.occurred_at, ccid, _text_or_none(data.get("transcription_track")),
                    _text_or_none(data.get("transcript")), _number(data.get("confidence")),
                    bool(data.get("is_final", True)),
                )
            if ccid:
                self.attribution.on_webhook(event.event_type, ccid, self.sources)
        return True

    def add_dtmf(self, info: StreamInfo, occurred_at: str | None, sequence_number: int, digit: str,
                 received_ns: int) -> None:
        with self.lock:
            self.dtmf.append(received_ns, info.index, occurred_at, sequence_number, digit)

    def add_mark(self, info: StreamInfo, sequence_number: int, name: str, received_ns: int) -> None:
        with self.lock:
            self.marks.append(received_ns, info.index, sequence_number, name)

    def add_stream_error(self, stream_id: str | None, origin: str, reason: Reason | str, detail: str,
                         raw: str | bytes, received_ns: int, code: int = -1) -> None:
        """``origin`` is "receiver" (input we rejected) or "telnyx" (an ``error`` frame)."""
        with self.lock:
            self.stream_errors.append(received_ns, stream_id, origin, str(reason), code, detail, excerpt(raw))

    def add_webhook_error(self, reason: Reason | str, detail: str, remote: str | None, raw: bytes,
                          received_ns: int) -> None:
        with self.lock:
            self.webhook_errors.append(received_ns, str(reason), detail, remote, excerpt(raw))

    def add_rtp_error(self, target: str, reason: Reason | str, detail: str, raw: bytes, received_ns: int) -> None:
        with self.lock:
            self.rtp_errors.append(received_ns, target, str(reason), detail, len(raw), raw[:EXCERPT_CHARS // 2].hex())

    def forget(self, rows: Mapping[str, int], payload_bytes: Mapping[str, int]) -> None:
        """Drop what a recording already holds: the first ``rows[table]`` rows of each table and
        the first ``payload_bytes["frames-K"|"rtp-K"]`` bytes of each payload buffer.

        For a store whose reads go to its recording (the capture process), so that its memory
        stays flat however long it runs; its own tables then hold only what is not flushed yet.
        """
        with self.lock:
            for table in _FORGETTABLE:
                n = rows.get(table, 0) - self.forgotten[table]
                if n <= 0:
                    continue
                if table == "frames":
                    del self.frames[: n * FRAME_ROW.size]
                else:
                    for column in getattr(self, table).columns.values():
                        del column[:n]
                self.forgotten[table] += n
            for kind, buffers, bases in (("frames", self._frame_payloads, self._frame_base),
                                         ("rtp", self._rtp_payloads, self._rtp_base)):
                for key, buffer in enumerate(buffers):
                    n = payload_bytes.get(f"{kind}-{key}", 0) - bases[key]
                    if n > 0:
                        del buffer[:n]
                        bases[key] += n

    # -- reads (any thread) ---------------------------------------------------------------

    def nbytes(self) -> int:
        """Memory held by the hot tables (frames, rtp) and all payload buffers, allocation included."""
        with self.lock:
            buffers = [self.frames, *self.rtp.columns.values(), *self._frame_payloads, *self._rtp_payloads]
            return sum(map(sys.getsizeof, buffers))

    def payload(self, kind: str, key: int) -> bytes:
        """A copy of one payload buffer: frames key = 2 * stream index + track code; rtp key = source.

        For a store that follows a recording (``payload_dir`` set), the bytes come from its file.
        """
        if self.payload_dir is not None:
            file = self.payload_dir / f"{kind}-{key}.bin"
            return file.read_bytes() if file.exists() else b""
        buffers = self._frame_payloads if kind == "frames" else self._rtp_payloads
        with self.lock:
            return bytes(buffers[key])

    def payload_tail(self, kind: str, key: int, start: int) -> bytes:
        """One payload's bytes from offset ``start`` (in the recording's numbering) on."""
        if self.payload_dir is not None:
            return self.payload(kind, key)[start:]
        buffer, base = ((self._frame_payloads, self._frame_base) if kind == "frames"
                        else (self._rtp_payloads, self._rtp_base))
        return bytes(buffer[key][start - base[key]:])

    def table(self, name: str) -> pd.DataFrame:
        """The internal view of one table (public columns plus ``_``-prefixed keys)."""
        with self.lock:
            columns: Any = getattr(self, name).copy() if name != "streams" else {}
            streams = [StreamInfo(**vars(s)) for s in self.streams]
            sources = list(self.sources)
        for col in JSON_COLUMNS.get(name, ()):      # a snapshot must not hand out the stored dicts
            if name == "streams":
                for s in streams:
                    s.custom_parameters = copy.deepcopy(s.custom_parameters)
            else:
                columns[col] = copy.deepcopy(columns[col])
        if name == "frames":
            return self._frames_view(columns, streams)
        if name == "rtp":
            return self._rtp_view(columns, sources)
        if name == "streams":
            return self._streams_view(streams)
        df = self._plain_view(columns)
        for col in BOOL_COLUMNS.get(name, ()):
            df[col] = df[col].astype(bool)
        if name in ("dtmf", "marks"):
            index = df.pop("stream").to_numpy(np.int64)
            df.insert(1, "stream_id", labels([s.stream_id for s in streams], index))
            df.insert(2, "call_control_id", labels([s.call_control_id for s in streams], index))
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
        c = np.frombuffer(rows, dtype=FRAME_DTYPE)
        stream = c["stream"].astype(np.int64)
        track = c["track"]
        return pd.DataFrame({
            "received_at": utc(c["received_ns"]),
            "stream_id": labels([s.stream_id for s in streams], stream),
            "call_control_id": labels([s.call_control_id for s in streams], stream),
            "track": pd.Categorical.from_codes(track, TRACKS),
            "sequence_number": c["sequence_number"],
            "chunk": c["chunk"],
            "timestamp": c["timestamp"],
            "encoding": labels([s.encoding for s in streams], stream),
            "sample_rate": ints([s.sample_rate for s in streams], stream),
            "n_bytes": c["n_bytes"].astype(np.int64),
            "_key": 2 * stream + track,
            "_offset": c["offset"],
        })

    def _rtp_view(self, c: dict, sources: list[RtpSource]) -> pd.DataFrame:
        source = np.frombuffer(c["source"], dtype=np.int32).astype(np.int64)
        pt = np.frombuffer(c["payload_type"], dtype=np.int8).astype(np.int64)
        encodings = [self.payload_types.get(p) for p in range(128)]
        legs = pd.Series(c["leg"], dtype=object)
        ccid: pd.Categorical | np.ndarray = labels([s.call_control_id for s in sources], source)
        if legs.notna().any():      # STREP: the call comes from the webhooks' call_leg_id
            by_leg = legs.map(self._leg_calls()).astype(object)
            by_leg = by_leg.where(by_leg.notna(), None)
            ccid = pd.Categorical(np.where(legs.notna(), by_leg, np.asarray(ccid, dtype=object)))
        return pd.DataFrame({
            "received_at": utc(c["received_ns"]),
            "target": labels([s.target for s in sources], source),
            "ssrc": np.array([s.ssrc for s in sources], dtype=np.int64)[source],
            "seq": np.frombuffer(c["seq"], dtype=np.int32).astype(np.int64),
            "rtp_timestamp": np.frombuffer(c["rtp_timestamp"], dtype=np.int64),
            "payload_type": pt,
            "marker": np.frombuffer(c["marker"], dtype=np.int8).astype(bool),
            "n_bytes": np.frombuffer(c["n_bytes"], dtype=np.int32).astype(np.int64),
            "call_leg_id": pd.Categorical(legs),
            "call_control_id": ccid,
            "encoding": labels(encodings, pt),
            "clock_rate": ints([_clock_rate(e) for e in encodings], pt),
            "_key": source,
            "_offset": np.frombuffer(c["offset"], dtype=np.int64),
        })

    def _leg_calls(self) -> dict[str, str]:
        with self.lock:
            pairs = zip(self.events.columns["call_leg_id"][:], self.events.columns["call_control_id"][:], strict=True)
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


def _clock_rate(encoding: str | None) -> int | None:
    try:
        return codecs.get_codec(encoding).sample_rate if encoding is not None else None
    except codecs.UnsupportedCodecError:
        return None
