"""The receiver's tables: append-only storage (one lock) and the DataFrame views built on read."""

from __future__ import annotations

import copy
import mmap
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from telnyx_nb.defaults import EXCERPT_CHARS, FORK_CLAIM_WINDOW_S
from telnyx_nb.store.attribution import CALL_LEG, ForkAttribution, RtpSource
from telnyx_nb.store.columns import Columns, as_labels, category, excerpt, ints, label_dtype, labels, parse_times, utc
from telnyx_nb.store.commands import CommandInfo, bidirectional_columns, commands_view, recorded_options, stream_request
from telnyx_nb.store.schema import (
    BOOL_COLUMNS,
    DEFAULT_PAYLOAD_TYPES,
    DTMF_SOURCES,
    FRAME_DTYPE,
    FRAME_ROW,
    JSON_COLUMNS,
    LABEL_COLUMNS,
    NAT,
    TARGETS,
    TRACK_CODE,
    TRACKS,
)
from telnyx_nb.store.scrub import scrub, scrub_bytes, scrub_text
from telnyx_nb.wire import codecs, telephone_event
from telnyx_nb.wire.errors import Reason
from telnyx_nb.wire.media import Start
from telnyx_nb.wire.rtp import ForkPacket, RtpPacket
from telnyx_nb.wire.webhooks import WebhookEvent

__all__ = ["Store", "StreamInfo", "sources_view"]

#: How much of a refused input is scrubbed of secrets: more than an excerpt ever keeps
#: (``EXCERPT_CHARS`` characters, of at most 4 bytes each) plus a token's length.
_SCRUB_WINDOW = EXCERPT_CHARS * 4 + 256


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


#: A telephone event whose end packets never came is written (``end`` False) when its source
#: sends something else this long (ns) after the event's last packet.
EVENT_QUIET_NS = 500_000_000


@dataclass(slots=True)
class _OpenEvent:
    """A forked telephone event still going on: (RTP timestamp, event code), the first packet's
    arrival and sequence number, the longest duration so far (timestamp units) at ``rate``."""

    key: tuple[int, int]
    digit: str | None
    first_ns: int
    seq: int
    rate: int
    leg: str | None
    duration: int = 0
    last_ns: int = 0


#: The int64 columns of the ``frames`` view, in their order, and the stored field each comes
#: from (``_key`` = 2 * stream + track code).
_FRAME_NUMBERS = {"sequence_number": "sequence_number", "chunk": "chunk", "timestamp": "timestamp",
                  "n_bytes": "n_bytes", "_key": None, "_offset": "offset"}


def _text_or_none(value: Any) -> str | None:
    """A payload id for a table column: strings only (the raw payload keeps anything else)."""
    return value if isinstance(value, str) else None


#: Tables whose flushed rows ``Store.forget`` may drop (the registries are kept).
_FORGETTABLE = ("events", "transcripts", "frames", "rtp", "dtmf", "marks", "stream_errors", "webhook_errors",
                "rtp_errors")


def _confidence(value: Any) -> float:
    """A transcript's confidence as a float in [0, 1] (NaN for anything else: null, text, out of range)."""
    if (type(value) is int or type(value) is float) and 0 <= value <= 1:
        return float(value)
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
        self.payload_types = {**DEFAULT_PAYLOAD_TYPES, **(payload_types or {})}
        #: Telephone-event payload types and their clock rates (RFC 4733), for ``dtmf`` rows.
        self._event_types = {pt: rate for pt, name in self.payload_types.items()
                             if (rate := telephone_event.event_clock_rate(name)) is not None}
        #: Per RTP source: the telephone event still going on, and the last events finished.
        self._open_events: dict[int, _OpenEvent] = {}
        self._done_events: dict[int, deque[tuple[int, int]]] = {}
        self.events = Columns(
            received_ns="q", occurred_at="O", event_type="O", event_id="O", call_control_id="O",
            call_leg_id="O", call_session_id="O", client_state="O", verified="b", attempt="q", payload="O",
        )
        self.transcripts = Columns(
            received_ns="q", occurred_at="O", call_control_id="O", track="O", transcript="O",
            confidence="d", is_final="b",
        )
        self.frames = bytearray()       # FRAME_ROW rows
        #: The stored ``frames`` fields as contiguous arrays, of the rows read so far (``forgotten``
        #: count, rows, arrays): see :meth:`_frame_fields`.
        self._frame_field_cache: tuple[int, int, dict[str, np.ndarray]] = (0, 0, {})
        self.rtp = Columns(
            received_ns="q", source="i", seq="i", rtp_timestamp="q", payload_type="b", marker="b",
            n_bytes="i", offset="q", leg="O",
        )
        #: Stream rows (``rtp_source`` -1) and fork rows (``stream`` -1, one per telephone event);
        #: ``end`` is 1/0 for fork rows (its end packet came or not), -1 for stream rows.
        self.dtmf = Columns(received_ns="q", stream="i", occurred_at="O", sequence_number="q", digit="O",
                            rtp_source="i", duration_ms="d", end="b", leg="O")
        self.marks = Columns(received_ns="q", stream="i", sequence_number="q", name="O")
        self.stream_errors = Columns(
            received_ns="q", stream_id="O", origin="O", reason="O", code="q", detail="O", excerpt="O",
        )
        self.webhook_errors = Columns(received_ns="q", reason="O", detail="O", remote="O", excerpt="O")
        self.rtp_errors = Columns(received_ns="q", target="O", reason="O", detail="O", n_bytes="q", excerpt="O")
        self.streams: list[StreamInfo] = []
        self._stream_index: dict[str, int] = {}
        #: The ``commands`` registry (``store.commands``): rows are completed when answered.
        self.commands: list[CommandInfo] = []
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
        #: The (host, port) each fork target listens on (set by the receiver's I/O when it binds).
        self.fork_addresses: dict[str, tuple[str, int]] = {}
        self._rtp_payloads: list[bytearray] = []
        self._event_ids: set[str] = set()
        self.duplicate_events = 0
        #: Values never stored in an excerpt (the receiver's stream auth token; see ``store.scrub``).
        self.secrets: tuple[str, ...] = ()

    # -- appends (receiver loop thread) ------------------------------------------------

    def stream(self, stream_id: str, connected_ns: int = NAT) -> StreamInfo:
        """The stream with this id, created on first sight (e.g. media before ``start``, on a
        socket opened at ``connected_ns``: its ``connected_at``)."""
        index = self._stream_index.get(stream_id)
        if index is not None:
            return self.streams[index]
        with self.lock:
            info = StreamInfo(len(self.streams), stream_id, connected_ns=connected_ns)
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

    def add_packet(self, target: str, packet: ForkPacket, received_ns: int,
                   sender: tuple[Any, ...] | None = None) -> None:
        """Append one forked packet from ``sender`` (its socket address, ``(host, port, ...)``;
        None when unknown); STREP's direction decides its target ("rx" = received).

        Per packet, only the source's newest sequence number and its arrival are updated (for
        SSRC changes, see ``store.attribution``); the sender is kept once per source.
        """
        rtp = packet.rtp
        seq = rtp.sequence_number
        leg = None
        if packet.strep is not None:
            target = "rx" if packet.strep.direction == "received" else "tx"
            leg = str(packet.strep.call_leg_id)
        with self.lock:
            index = self._source_index.get((target, rtp.ssrc))
            if index is None:
                index = self._new_source(target, rtp.ssrc, leg is None, received_ns, seq, sender)
            source = self.sources[index]
            if (seq - source.last_seq) & 0xFFFF < 0x8000:     # its newest packet so far (mod 2^16)
                source.last_seq, source.last_ns = seq, received_ns
                if source.heir is not None:
                    self.attribution.overlap(source, seq, self.sources)
            buffer = self._rtp_payloads[index]
            self.rtp.append(received_ns, index, seq, rtp.timestamp, rtp.payload_type,
                            rtp.marker, len(rtp.payload), self._rtp_base[index] + len(buffer), leg)
            buffer += rtp.payload
            if rtp.payload_type in self._event_types:
                self._telephone_event(index, rtp, leg, received_ns)
            elif self._open_events and index in self._open_events:
                self._event_quiet(index, received_ns)

    def _new_source(self, target: str, ssrc: int, claimable: bool, received_ns: int, seq: int,
                    sender: tuple[Any, ...] | None) -> int:
        index = len(self.sources)
        dst_host, dst_port = self.fork_addresses.get(target, (None, None))
        source = RtpSource(index, target, ssrc, None, received_ns, claimable, first_seq=seq, last_seq=seq,
                           last_ns=received_ns, src_host=None if sender is None else str(sender[0]),
                           src_port=None if sender is None else int(sender[1]), dst_host=dst_host, dst_port=dst_port)
        self.attribution.attribute(source, self.sources)
        self.sources.append(source)
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
                    _text_or_none(data.get("transcript")), _confidence(data.get("confidence")),
                    bool(data.get("is_final", True)),
                )
            if ccid:
                self.attribution.on_webhook(event.event_type, ccid, self.sources)
        return True

    def add_command(self, command: str, call_control_id: str | None, options: dict[str, Any], sent_ns: int) -> int:
        """Record a command about to be sent (``options`` as ``recorded_options`` made them);
        returns its row index for :meth:`answer_command`."""
        with self.lock:
            info = CommandInfo(len(self.commands), command, call_control_id, recorded_options(options), sent_ns,
                               command_id=_text_or_none(options.get("command_id")))
            self.commands.append(info)
        return info.index

    def answer_command(self, index: int, answered_ns: int, status: str, *, call_control_id: str | None = None,
                       http_status: int | None = None, error: str | None = None) -> None:
        """Complete command ``index`` with its answer (``status`` one of ``commands.STATUSES``);
        ``call_control_id`` fills in the call a ``dial`` created. IndexError for an unknown row."""
        with self.lock:
            info = self.commands[index]
            info.answered_ns, info.status, info.http_status, info.error = answered_ns, status, http_status, error
            if call_control_id is not None:
                info.call_control_id = call_control_id

    def bidirectional(self, info: StreamInfo) -> tuple[bool, tuple[str, int] | None]:
        """Whether a recorded command asked for this stream, and the codec and rate Telnyx then
        expects of audio sent back on it (None in mp3 mode; ``wire.codecs.bidirectional_format``)."""
        with self.lock:
            request = stream_request(self.commands, info.call_control_id, info.connected_ns)
        return request is not None, None if request is None else codecs.bidirectional_format(request.options)

    def add_dtmf(self, info: StreamInfo, occurred_at: str | None, sequence_number: int, digit: str,
                 received_ns: int) -> None:
        """A media stream's ``dtmf`` frame (a ``dtmf`` row with source "stream")."""
        with self.lock:
            self.dtmf.append(received_ns, info.index, occurred_at, sequence_number, digit, -1, float("nan"), -1, None)

    # Forked telephone events (RFC 4733) -> ``dtmf`` rows with source "fork", one per event:
    # written when its first end packet arrives (the redundant ones are then ignored), or, with
    # ``end`` False, when the next event starts on that source or a non-event packet comes
    # EVENT_QUIET_NS after the event's last packet (its end packets were all lost). Called
    # under the lock.

    def _telephone_event(self, source: int, rtp: RtpPacket, leg: str | None, received_ns: int) -> None:
        try:
            event = telephone_event.parse(rtp.payload)
        except telephone_event.TelephoneEventError:
            return
        key = (rtp.timestamp, event.event)
        done = self._done_events.get(source)
        if done is not None and key in done:
            return                                  # a redundant end packet, or a late update
        current = self._open_events.get(source)
        if current is not None and current.key != key:
            self._finish_event(source, current, end=False)
            current = None
        if current is None:
            current = self._open_events[source] = _OpenEvent(key, event.digit, received_ns, rtp.sequence_number,
                                                             self._event_types[rtp.payload_type], leg)
        current.duration = max(current.duration, event.duration)
        current.last_ns = received_ns
        if event.end:
            self._finish_event(source, current, end=True)

    def _event_quiet(self, source: int, received_ns: int) -> None:
        current = self._open_events[source]
        if received_ns - current.last_ns > EVENT_QUIET_NS:
            self._finish_event(source, current, end=False)

    def _finish_event(self, source: int, current: _OpenEvent, *, end: bool) -> None:
        del self._open_events[source]
        self._done_events.setdefault(source, deque(maxlen=16)).append(current.key)
        if current.digit is not None:               # DTMF only (events 0-15)
            self.dtmf.append(current.first_ns, -1, None, current.seq, current.digit, source,
                             1000.0 * current.duration / current.rate, int(end), current.leg)

    def add_mark(self, info: StreamInfo, sequence_number: int, name: str, received_ns: int) -> None:
        with self.lock:
            self.marks.append(received_ns, info.index, sequence_number, name)

    # Excerpts and details of refused input are scrubbed of ``secrets`` and of any auth-token
    # field's value before they are stored (``store.scrub``): the recording and saved sessions
    # never hold them.

    def add_stream_error(self, stream_id: str | None, origin: str, reason: Reason | str, detail: str,
                         raw: str | bytes, received_ns: int, code: int = -1) -> None:
        """``origin`` is "receiver" (input we rejected) or "telnyx" (an ``error`` frame)."""
        text, detail = excerpt(scrub(raw, self.secrets, _SCRUB_WINDOW)), scrub_text(detail, self.secrets)
        with self.lock:
            self.stream_errors.append(received_ns, stream_id, origin, str(reason), code, detail, text)

    def add_webhook_error(self, reason: Reason | str, detail: str, remote: str | None, raw: bytes,
                          received_ns: int) -> None:
        text, detail = excerpt(scrub(raw, self.secrets, _SCRUB_WINDOW)), scrub_text(detail, self.secrets)
        with self.lock:
            self.webhook_errors.append(received_ns, str(reason), detail, remote, text)

    def add_rtp_error(self, target: str, reason: Reason | str, detail: str, raw: bytes, received_ns: int) -> None:
        text = scrub_bytes(raw, self.secrets, EXCERPT_CHARS // 2 + 256)[:EXCERPT_CHARS // 2].hex()
        with self.lock:
            self.rtp_errors.append(received_ns, target, str(reason), detail, len(raw), text)

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
        """Memory held by the hot tables (frames, rtp, the frames read so far as columns) and all
        payload buffers, allocation included."""
        with self.lock:
            buffers = [self.frames, *self.rtp.columns.values(), *self._frame_payloads, *self._rtp_payloads]
            cached = sum(a.nbytes for a in self._frame_field_cache[2].values())
            return sum(map(sys.getsizeof, buffers)) + cached

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

    def payload_view(self, kind: str, key: int) -> memoryview:
        """One payload buffer as a read-only view. For a store that follows a recording, its file
        memory-mapped: a reader pays for the pages it touches, not the file (the codec-mismatch
        scan looks at the first second or minute of an hour); else :meth:`payload`'s copy."""
        if self.payload_dir is None:
            return memoryview(self.payload(kind, key))
        try:
            with open(self.payload_dir / f"{kind}-{key}.bin", "rb") as file:
                return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
        except (FileNotFoundError, ValueError):        # no file yet, or an empty one (which mmap refuses)
            return memoryview(b"")

    def payload_tail(self, kind: str, key: int, start: int) -> bytes:
        """One payload's bytes from offset ``start`` (in the recording's numbering) on."""
        if self.payload_dir is not None:
            return self.payload(kind, key)[start:]
        buffer, base = ((self._frame_payloads, self._frame_base) if kind == "frames"
                        else (self._rtp_payloads, self._rtp_base))
        return bytes(buffer[key][start - base[key]:])

    def table(self, name: str) -> pd.DataFrame:
        """The internal view of one table (public columns plus ``_``-prefixed keys); ``name`` is
        one of ``schema.TABLES``, "sources" (:func:`sources_view`) or "commands" (``store.commands``).
        Its ``schema.LABEL_COLUMNS`` are ``category`` (``store.columns.label_dtype``)."""
        return as_labels(self._view(name), LABEL_COLUMNS.get(name, ()))

    def _view(self, name: str) -> pd.DataFrame:
        if name == "sources":
            with self.lock:
                rtp = self.rtp.copy()
                sources = [RtpSource(**vars(s)) for s in self.sources]
            return sources_view(self._rtp_view(rtp, sources), sources)
        if name == "commands":
            return commands_view(self._commands_copy())
        if name == "frames":
            return self._frames_view()
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
        if name == "rtp":
            return self._rtp_view(columns, sources)
        if name == "streams":
            return self._streams_view(streams, self._commands_copy())
        df = self._plain_view(columns)
        for col in BOOL_COLUMNS.get(name, ()):
            df[col] = df[col].astype(bool)
        if name == "dtmf":
            return self._dtmf_view(df, streams, sources)
        if name == "marks":
            index = df.pop("stream").to_numpy(np.int64)
            df.insert(1, "stream_id", labels([s.stream_id for s in streams], index))
            df.insert(2, "call_control_id", labels([s.call_control_id for s in streams], index))
        elif name == "stream_errors":
            df.insert(2, "call_control_id", df["stream_id"].map({s.stream_id: s.call_control_id for s in streams}))
            df["code"] = df["code"].astype("Int64").mask(df["code"] < 0)
        return df

    def _dtmf_view(self, df: pd.DataFrame, streams: list[StreamInfo], sources: list[RtpSource]) -> pd.DataFrame:
        """``dtmf``: stream rows name their stream; fork rows their SSRC, and the call their
        source is attributed to (STREP: the call of their ``call_leg_id``)."""
        stream = df.pop("stream").to_numpy(np.int64)
        source = df.pop("rtp_source").to_numpy(np.int64)
        legs = df.pop("leg")
        end = df.pop("end").to_numpy(np.int64)
        fork = source >= 0
        stream_at = np.where(fork | (stream < 0), len(streams), stream)
        source_at = np.where(fork, source, len(sources))
        stream_calls = np.array([s.call_control_id for s in streams] + [None], dtype=object)
        source_calls = np.array([s.call_control_id for s in sources] + [None], dtype=object)
        calls = np.where(fork, source_calls[source_at], stream_calls[stream_at])
        if legs.notna().any():
            by_leg = legs.map(self._leg_calls()).to_numpy(dtype=object)
            calls = np.where(legs.notna().to_numpy() & pd.notna(by_leg), by_leg, calls)
        ssrc = np.array([s.ssrc for s in sources] + [-1], dtype=np.int64)[source_at]
        stream_ids = np.array([s.stream_id for s in streams] + [None], dtype=object)[stream_at]
        df.insert(1, "stream_id", pd.Series(stream_ids, index=df.index, dtype=object))
        df.insert(2, "call_control_id", pd.Series(calls, index=df.index, dtype=object))
        df["source"] = pd.Categorical.from_codes(fork.astype(np.int8), dtype=label_dtype(DTMF_SOURCES))
        df["ssrc"] = pd.arrays.IntegerArray(ssrc, ~fork)
        df["duration_ms"] = df.pop("duration_ms").astype(np.float64)
        df["end"] = pd.arrays.BooleanArray(end == 1, end < 0)
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

    def _frames_view(self) -> pd.DataFrame:
        # Each column is a contiguous copy of the cached fields (a copy each read: the caller owns
        # its DataFrame), which the DataFrame takes as it is (``copy=False``: one block per column,
        # no consolidation, which would copy every int64 column a second time).
        with self.lock:
            streams = [(s.stream_id, s.call_control_id, s.encoding, s.sample_rate) for s in self.streams]
            c = self._frame_fields()
        stream = c["stream"].astype(np.int64)
        track = c["track"].copy()
        received = c["received_ns"].copy()
        numbers = {name: (c[stored].astype(np.int64) if stored is not None else 2 * stream + track)
                   for name, stored in _FRAME_NUMBERS.items()}
        stream_ids, calls, encodings, rates = (list(column) for column in zip(*streams, strict=True)) if streams \
            else ([], [], [], [])
        return pd.DataFrame({
            "received_at": utc(received),
            "stream_id": labels(stream_ids, stream),
            "call_control_id": labels(calls, stream),
            "track": pd.Categorical.from_codes(track, dtype=label_dtype(TRACKS)),
            **{name: numbers[name] for name in ("sequence_number", "chunk", "timestamp")},
            "encoding": labels(encodings, stream),
            "sample_rate": ints(rates, stream),
            **{name: numbers[name] for name in ("n_bytes", "_key", "_offset")},
        }, copy=False)

    def seed_frame_fields(self, fields: dict[str, np.ndarray]) -> None:
        """Call under the lock, right before the rows ``fields`` hold (each ``FRAME_DTYPE`` field,
        contiguous) are appended to an empty ``frames``: a reader that decoded them already (a
        recording read back) spares the first read decoding them again (:meth:`_frame_fields`)."""
        self._frame_field_cache = (self.forgotten["frames"], len(fields["received_ns"]), fields)

    def _frame_fields(self) -> dict[str, np.ndarray]:
        """Each ``FRAME_DTYPE`` field of the stored rows as a contiguous array (call under the lock;
        the arrays are shared: never written to). Stored rows never change, so the fields of the
        rows earlier reads decoded are kept and only the rows appended since are decoded (a
        strided copy out of the packed rows costs ~10x a contiguous one); after :meth:`forget`
        dropped rows, all are decoded again."""
        forgotten, done, fields = self._frame_field_cache
        rows = len(self.frames) // FRAME_ROW.size
        if forgotten != self.forgotten["frames"] or rows < done:
            done, fields = 0, {}
        if rows > done or not fields:
            c = np.frombuffer(self.frames, dtype=FRAME_DTYPE, offset=done * FRAME_ROW.size, count=rows - done)
            try:            # no view of the buffer may outlive the lock (appends resize it)
                fields = {name: np.concatenate((fields[name], c[name])) if done else c[name].copy()
                          for name in FRAME_DTYPE.names or ()}
            finally:
                del c
            self._frame_field_cache = (self.forgotten["frames"], rows, fields)
        return fields

    def _rtp_view(self, c: dict, sources: list[RtpSource]) -> pd.DataFrame:
        source = np.frombuffer(c["source"], dtype=np.int32).astype(np.int64)
        pt = np.frombuffer(c["payload_type"], dtype=np.int8).astype(np.int64)
        encodings = [self.payload_types.get(p) for p in range(128)]
        legs = pd.Series(c["leg"], dtype=object)
        ccid: pd.Categorical | np.ndarray = labels([s.call_control_id for s in sources], source)
        if legs.notna().any():      # STREP: the call comes from the webhooks' call_leg_id
            by_leg = legs.map(self._leg_calls()).astype(object)
            by_leg = by_leg.where(by_leg.notna(), None)
            ccid = category(np.where(legs.notna(), by_leg, np.asarray(ccid, dtype=object)))
        return pd.DataFrame({
            "received_at": utc(c["received_ns"]),
            "target": labels([s.target for s in sources], source),
            "ssrc": np.array([s.ssrc for s in sources], dtype=np.int64)[source],
            "seq": np.frombuffer(c["seq"], dtype=np.int32).astype(np.int64),
            "rtp_timestamp": np.frombuffer(c["rtp_timestamp"], dtype=np.int64),
            "payload_type": pt,
            "marker": np.frombuffer(c["marker"], dtype=np.int8).astype(bool),
            "n_bytes": np.frombuffer(c["n_bytes"], dtype=np.int32).astype(np.int64),
            "call_leg_id": category(legs),
            "call_control_id": ccid,
            "encoding": labels(encodings, pt),
            "clock_rate": ints([_clock_rate(e) for e in encodings], pt),
            "_key": source,
            "_offset": np.frombuffer(c["offset"], dtype=np.int64),
        })

    def _commands_copy(self) -> list[CommandInfo]:
        with self.lock:
            return [CommandInfo(**{**vars(c), "options": copy.deepcopy(c.options)}) for c in self.commands]

    def _leg_calls(self) -> dict[str, str]:
        with self.lock:
            pairs = zip(self.events.columns["call_leg_id"][:], self.events.columns["call_control_id"][:], strict=True)
            return {leg: ccid for leg, ccid in pairs if leg and ccid}

    @staticmethod
    def _streams_view(streams: list[StreamInfo], commands: list[CommandInfo]) -> pd.DataFrame:
        def col(attribute: str) -> list:
            return [getattr(s, attribute) for s in streams]

        bidirectional = [bidirectional_columns(stream_request(commands, s.call_control_id, s.connected_ns))
                         for s in streams]

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
            "bidirectional_codec": pd.Series([codec for codec, _ in bidirectional], dtype=object),
            "bidirectional_rate": pd.array([rate for _, rate in bidirectional], dtype="Int64"),
        })


def sources_view(rtp: pd.DataFrame, sources: Sequence[RtpSource]) -> pd.DataFrame:
    """One row per forked RTP source (a target and SSRC), attributed or not, from the internal
    ``rtp`` view (its ``_key`` is the source index) and the source registry.

    Columns: target ("rx"/"tx"), ssrc (int64), call_control_id (missing while unattributed),
    attributed_by ("claim", "late_claim", "ssrc_change", "call_leg_id": see
    ``store.attribution``; None when unattributed or not recorded), continues_ssrc (Int64: the
    SSRC whose call it took over on an SSRC change), packets (int64), first_at/last_at
    (``datetime64[ns, UTC]``: first and last arrival), first_seq/last_seq (Int64: sequence
    numbers of the first and last packet to arrive), src_host/src_port (the sender of its first
    packet), dst_host/dst_port (the fork port it came to). With an empty registry (sessions
    saved by telnyx_nb 0.1) the sources are the rows' (target, ssrc) and the registry's columns
    are null. Label columns (``schema.LABEL_COLUMNS``) are ``category``.
    """
    count = len(sources) if sources else (int(rtp["_key"].max()) + 1 if len(rtp) else 0)
    rows = rtp.groupby("_key", sort=True).agg(
        target=("target", "first"), ssrc=("ssrc", "first"), call_control_id=("call_control_id", "first"),
        packets=("seq", "size"), first_at=("received_at", "min"), last_at=("received_at", "max"),
        first_seq=("seq", "first"), last_seq=("seq", "last"),
    ).reindex(pd.RangeIndex(count))
    calls = [c if isinstance(c, str) else None for c in rows["call_control_id"]]
    registry: list[RtpSource | None] = list(sources) or [None] * count

    def registered(name: str) -> list[Any]:
        return [None if s is None else getattr(s, name) for s in registry]

    heirs = {s.heir: s.ssrc for s in sources if s.heir is not None}
    return as_labels(pd.DataFrame({
        "target": category(registered("target") if sources else rows["target"].astype(object), TARGETS),
        "ssrc": np.asarray(registered("ssrc") if sources else rows["ssrc"], dtype=np.int64),
        "call_control_id": pd.Series(calls, dtype=object),
        "attributed_by": pd.Series([None if call is None or s is None else s.attributed_by if s.claimable
                                    else CALL_LEG for call, s in zip(calls, registry, strict=True)], dtype=object),
        "continues_ssrc": pd.array([heirs.get(i) for i in range(count)], dtype="Int64"),
        "packets": rows["packets"].fillna(0).to_numpy(np.int64),
        "first_at": rows["first_at"].astype("datetime64[ns, UTC]").array,
        "last_at": rows["last_at"].astype("datetime64[ns, UTC]").array,
        "first_seq": rows["first_seq"].astype("Int64").array,
        "last_seq": rows["last_seq"].astype("Int64").array,
        "src_host": pd.Series(registered("src_host"), dtype=object),
        "src_port": pd.array(registered("src_port"), dtype="Int64"),
        "dst_host": pd.Series(registered("dst_host"), dtype=object),
        "dst_port": pd.array(registered("dst_port"), dtype="Int64"),
    }), LABEL_COLUMNS["sources"])


def _clock_rate(encoding: str | None) -> int | None:
    try:
        return codecs.get_codec(encoding).sample_rate if encoding is not None else None
    except codecs.UnsupportedCodecError:
        return None
