"""The tables' names, label vocabularies, typed columns and the packed ``frames`` row layout."""

from __future__ import annotations

import struct

import numpy as np

__all__ = [
    "TABLES", "TRACKS", "TARGETS", "TRACK_CODE", "FORK_TRACK", "TIME_COLUMNS", "JSON_COLUMNS", "BOOL_COLUMNS",
    "STATIC_PAYLOAD_TYPES", "NAT", "FRAME_ROW", "FRAME_DTYPE",
]

#: int64 min: a missing time in the nanosecond columns (NaT once converted).
NAT = int(np.iinfo(np.int64).min)
TRACKS = ("inbound", "outbound")
TARGETS = ("rx", "tx")
TRACK_CODE = {name: code for code, name in enumerate(TRACKS)}
#: ``audio(source="fork")`` takes a fork target, or the stream track it corresponds to.
FORK_TRACK = {"rx": "rx", "tx": "tx", "inbound": "rx", "outbound": "tx"}
#: RTP payload types with a static codec (RFC 3551); dynamic ones come from the receiver's map.
STATIC_PAYLOAD_TYPES = {0: "PCMU", 8: "PCMA"}

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
#: Columns holding dicts (stored as JSON text in files).
JSON_COLUMNS = {"events": ["payload"], "streams": ["custom_parameters"]}
BOOL_COLUMNS = {"events": ["verified"], "transcripts": ["is_final"]}

#: The ``frames`` table's row layout, packed little-endian without padding (struct codes).
_FRAME_FIELDS = (("received_ns", "q"), ("stream", "i"), ("track", "b"), ("sequence_number", "q"),
                 ("chunk", "q"), ("timestamp", "q"), ("n_bytes", "i"), ("offset", "q"))
FRAME_ROW = struct.Struct("<" + "".join(code for _, code in _FRAME_FIELDS))
FRAME_DTYPE = np.dtype([(name, "<" + code) for name, code in _FRAME_FIELDS])
