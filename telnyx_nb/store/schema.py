"""The tables' names, label vocabularies, typed columns and the packed ``frames`` row layout."""

from __future__ import annotations

import struct

import numpy as np

__all__ = [
    "TABLES", "TRACKS", "TARGETS", "TRACK_CODE", "FORK_TRACK", "TIME_COLUMNS", "JSON_COLUMNS", "BOOL_COLUMNS",
    "STATIC_PAYLOAD_TYPES", "DEFAULT_PAYLOAD_TYPES", "COLUMN_DEFAULTS", "DTMF_SOURCES", "NAT", "FRAME_ROW",
    "FRAME_DTYPE", "LABEL_COLUMNS",
]

#: int64 min: a missing time in the nanosecond columns (NaT once converted).
NAT = int(np.iinfo(np.int64).min)
TRACKS = ("inbound", "outbound")
TARGETS = ("rx", "tx")
TRACK_CODE = {name: code for code, name in enumerate(TRACKS)}
#: ``audio(source="fork")`` takes a fork target, or the stream track it corresponds to.
FORK_TRACK = {"rx": "rx", "tx": "tx", "inbound": "rx", "outbound": "tx"}
#: RTP payload types with a static meaning (RFC 3551: G.711, RFC 3389 comfort noise); dynamic
#: ones come from the receiver's map.
STATIC_PAYLOAD_TYPES = {0: "PCMU", 8: "PCMA", 13: "CN"}
#: What a store knows without being told: the static types, and RFC 4733 telephone events on
#: 101, the dynamic type they conventionally use (a receiver's ``payload_types`` may remap it).
DEFAULT_PAYLOAD_TYPES = {**STATIC_PAYLOAD_TYPES, 101: "telephone-event"}
#: ``dtmf``'s ``source``: a media stream's ``dtmf`` frame, or forked RTP telephone events.
DTMF_SOURCES = ("stream", "fork")
#: Stored columns a table gained after recordings were first written, and the value rows of
#: an older recording read back with (``dtmf``: stream rows, as all rows were then).
COLUMN_DEFAULTS: dict[str, dict[str, object]] = {
    "dtmf": {"rtp_source": -1, "duration_ms": float("nan"), "end": -1, "leg": None},
}

#: Every table and its ``datetime64[ns, UTC]`` columns.
TIME_COLUMNS = {
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
TABLES = tuple(TIME_COLUMNS)
#: The label and id columns of each public table: pandas ``category`` with string categories
#: (``store.columns.label_dtype``), live and loaded alike.
LABEL_COLUMNS = {
    "events": ["event_type", "event_id", "call_control_id", "call_leg_id", "call_session_id", "client_state"],
    "transcripts": ["call_control_id", "track"],
    "frames": ["stream_id", "call_control_id", "track", "encoding"],
    "rtp": ["target", "call_leg_id", "call_control_id", "encoding"],
    "streams": ["stream_id", "call_control_id", "end_reason", "encoding", "call_session_id", "client_state",
                "bidirectional_codec"],
    "dtmf": ["stream_id", "call_control_id", "digit", "source"],
    "marks": ["stream_id", "call_control_id", "name"],
    "stream_errors": ["stream_id", "call_control_id", "origin", "reason"],
    "webhook_errors": ["reason", "remote"],
    "rtp_errors": ["target", "reason"],
    "sources": ["target", "call_control_id", "attributed_by", "src_host", "dst_host"],
    "commands": ["command", "call_control_id", "status", "command_id"],
}
#: Columns holding dicts (stored as JSON text in files).
JSON_COLUMNS = {"events": ["payload"], "streams": ["custom_parameters"]}
BOOL_COLUMNS = {"events": ["verified"], "transcripts": ["is_final"]}

#: The ``frames`` table's row layout, packed little-endian without padding (struct codes).
_FRAME_FIELDS = (("received_ns", "q"), ("stream", "i"), ("track", "b"), ("sequence_number", "q"),
                 ("chunk", "q"), ("timestamp", "q"), ("n_bytes", "i"), ("offset", "q"))
FRAME_ROW = struct.Struct("<" + "".join(code for _, code in _FRAME_FIELDS))
FRAME_DTYPE = np.dtype([(name, "<" + code) for name, code in _FRAME_FIELDS])
