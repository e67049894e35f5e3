"""Telnyx media-streaming WebSocket frames: parse and build, no I/O.

Telnyx (the WebSocket client) sends ``connected``, ``start``, ``media``,
``stop``, ``dtmf``, ``mark`` and ``error`` frames; the application may send
``media``, ``mark`` and ``clear`` back (bidirectional mode). On the wire the
counters ``sequence_number``, ``chunk`` and ``timestamp`` are JSON strings;
parsed frames carry ints, and built frames write strings again. ``payload``
travels as base64 and is ``bytes`` here.

Every parse failure raises :class:`FrameError`, and only that, with a short
``reason`` code and whatever of the frame could be read (event, stream id).
Frames are slotted dataclasses, not frozen ones: a receiver builds one per
20 ms per track, and a frozen dataclass costs four times as much to build.

``media`` frames of the documented shape take a typed msgspec fast path first (see
:func:`_parse_media_fast`); everything else, and anything the fast path is unsure of, goes
through the general orjson parser, which alone decides every error.
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import orjson

from telnyx_nb.wire.errors import INT64_MAX, INT64_MIN, ProtocolError, Reason

__all__ = [
    "FRAME_MS",
    "FrameError",
    "ERROR_CODES",
    "MediaFormat",
    "Connected",
    "Start",
    "Media",
    "Stop",
    "Dtmf",
    "Mark",
    "ErrorFrame",
    "AppMedia",
    "AppMark",
    "Clear",
    "TelnyxFrame",
    "AppFrame",
    "parse_frame",
    "parse_app_frame",
    "dumps",
]

AUTH_TOKEN_HEADER = "x-telnyx-streaming-auth-token"

#: Duration of one ``media`` frame, milliseconds: the standard 20 ms telephony ptime (160 PCMU
#: bytes at 8 kHz). Telnyx's documentation does not state it (docs/protocol.md, "Where Telnyx
#: is silent: the project's choices"); the sandbox sends one frame per track every FRAME_MS
#: and stamps ``timestamp = FRAME_MS * (chunk - 1)``.
FRAME_MS = 20

#: WebSocket error frame codes (integers, unlike REST error codes).
ERROR_CODES: dict[int, tuple[str, str]] = {
    100002: ("unknown_error", "An unknown error occurred on the stream"),
    100003: ("malformed_frame", "Received frame was not formed correctly"),
    100004: ("invalid_media", "Media provided was not base64 encoded"),
    100005: ("rate_limit_reached", "Too many requests"),
}

#: Bounds on ``start.media_format``: a zero or absurd rate would break every later computation.
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 8

Track = Literal["inbound", "outbound"]


class FrameError(ProtocolError):
    """A frame that cannot be accepted.

    ``reason`` is one of ``MALFORMED_JSON``, ``NOT_AN_OBJECT``, ``UNKNOWN_EVENT``,
    ``MISSING_FIELD``, ``BAD_FIELD``, ``OUT_OF_RANGE``, ``INVALID_BASE64``. ``event`` and
    ``stream_id`` hold what could be read before the failure (else None).
    """

    def __init__(self, reason: Reason, detail: str, *, event: str | None = None, stream_id: str | None = None) -> None:
        super().__init__(reason, detail)
        self.event = event
        self.stream_id = stream_id


if sys.version_info >= (3, 11):
    def _b64decode(text: str) -> bytes:
        return binascii.a2b_base64(text, strict_mode=True)
else:  # pragma: no cover - exercised on 3.10 only
    def _b64decode(text: str) -> bytes:
        return base64.b64decode(text, validate=True)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(slots=True)
class MediaFormat:
    """``start.media_format``: authoritative for decoding the stream's payloads."""

    encoding: str
    sample_rate: int
    channels: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"encoding": self.encoding, "sample_rate": self.sample_rate, "channels": self.channels}


@dataclass(slots=True)
class Connected:
    """First frame on a new stream; carries the auth token when one was configured."""

    version: str = "1.0.0"
    auth_token: str | None = None

    def to_dict(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"event": "connected", "version": self.version}
        if self.auth_token is not None:
            frame["connected"] = {AUTH_TOKEN_HEADER: self.auth_token}
        return frame


@dataclass(slots=True)
class Start:
    """Stream metadata: ids, call parties, custom parameters and the media format."""

    stream_id: str
    sequence_number: int
    call_control_id: str
    media_format: MediaFormat
    call_session_id: str | None = None
    user_id: str | None = None
    from_: str | None = None
    to: str | None = None
    tags: tuple[str, ...] = ()
    client_state: str | None = None
    custom_parameters: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        start: dict[str, Any] = {"call_control_id": self.call_control_id}
        optional = {
            "user_id": self.user_id, "call_session_id": self.call_session_id,
            "from": self.from_, "to": self.to, "client_state": self.client_state,
        }
        start.update({key: value for key, value in optional.items() if value is not None})
        if self.tags:
            start["tags"] = list(self.tags)
        if self.custom_parameters:
            start["custom_parameters"] = dict(self.custom_parameters)
        start["media_format"] = self.media_format.to_dict()
        return {"event": "start", "sequence_number": str(self.sequence_number), "stream_id": self.stream_id,
                "start": start}


@dataclass(slots=True)
class Media:
    """One chunk of one track's audio: raw codec bytes, no RTP header."""

    stream_id: str
    sequence_number: int
    track: Track
    chunk: int
    timestamp: int
    payload: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "media",
            "sequence_number": str(self.sequence_number),
            "stream_id": self.stream_id,
            "media": {
                "track": self.track,
                "chunk": str(self.chunk),
                "timestamp": str(self.timestamp),
                "payload": _b64encode(self.payload),
            },
        }


@dataclass(slots=True)
class Stop:
    """Last frame of a stream."""

    stream_id: str
    sequence_number: int
    call_control_id: str
    user_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        stop: dict[str, Any] = {"call_control_id": self.call_control_id}
        if self.user_id is not None:
            stop["user_id"] = self.user_id
        return {"event": "stop", "sequence_number": str(self.sequence_number), "stream_id": self.stream_id,
                "stop": stop}


@dataclass(slots=True)
class Dtmf:
    """A DTMF digit detected on the call."""

    stream_id: str
    sequence_number: int
    digit: str
    occurred_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"event": "dtmf", "stream_id": self.stream_id}
        if self.occurred_at is not None:
            frame["occurred_at"] = self.occurred_at
        frame["sequence_number"] = str(self.sequence_number)
        frame["dtmf"] = {"digit": self.digit}
        return frame


@dataclass(slots=True)
class Mark:
    """Telnyx's echo of an application mark: the audio queued before it has played."""

    stream_id: str
    sequence_number: int
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "mark", "stream_id": self.stream_id, "sequence_number": str(self.sequence_number),
                "mark": {"name": self.name}}


@dataclass(slots=True)
class ErrorFrame:
    """An error Telnyx reports on the stream (codes in ERROR_CODES)."""

    stream_id: str | None
    code: int
    title: str
    detail: str

    @classmethod
    def for_code(cls, code: int, stream_id: str | None, detail: str | None = None) -> ErrorFrame:
        """An error frame with Telnyx's title and default detail for ``code``."""
        title, default_detail = ERROR_CODES[code]
        return cls(stream_id, code, title, detail or default_detail)

    def to_dict(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"event": "error",
                                 "payload": {"code": self.code, "title": self.title, "detail": self.detail}}
        if self.stream_id is not None:
            frame["stream_id"] = self.stream_id
        return frame


@dataclass(slots=True)
class AppMedia:
    """Audio the application sends into the call (bidirectional mode)."""

    payload: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"event": "media", "media": {"payload": _b64encode(self.payload)}}


@dataclass(slots=True)
class AppMark:
    """A named mark after queued audio; Telnyx echoes it when that audio has played."""

    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "mark", "mark": {"name": self.name}}


@dataclass(slots=True)
class Clear:
    """Stop playback and flush queued audio; queued marks are echoed back."""

    def to_dict(self) -> dict[str, Any]:
        return {"event": "clear"}


TelnyxFrame = Connected | Start | Media | Stop | Dtmf | Mark | ErrorFrame
AppFrame = AppMedia | AppMark | Clear


def dumps(frame: TelnyxFrame | AppFrame) -> str:
    """Serialise a frame to the JSON text sent in one WebSocket text message."""
    return orjson.dumps(frame.to_dict()).decode("utf-8")


def _fail(frame: Mapping[str, Any], reason: Reason, detail: str) -> FrameError:
    """A FrameError carrying whatever event and stream id the frame has."""
    event, stream_id = frame.get("event"), frame.get("stream_id")
    return FrameError(
        reason, detail,
        event=event if isinstance(event, str) else None,
        stream_id=stream_id if isinstance(stream_id, str) else None,
    )


def _show(value: Any) -> str:
    """A JSON value for an error detail, at most 40 characters and never the whole value: the
    repr of an array or object nested 1,000 deep raises RecursionError (orjson parses up to
    1,024 levels), and that of a long one costs its length."""
    if type(value) is dict or type(value) is list:
        return f"a JSON {'object' if type(value) is dict else 'array'} of {len(value)}"
    return f"{value!r:.40}"


def _absent_or_bad(frame: Mapping[str, Any], value: Any, key: str, expected: str) -> FrameError:
    if value is None:
        return _fail(frame, Reason.MISSING_FIELD, f"{frame.get('event')} frame has no {key!r}")
    return _fail(frame, Reason.BAD_FIELD, f"{key!r} must be {expected}, got {_show(value)}")


# The field readers take the whole frame (for error context) and the object holding the field.
# They check exact types (``type(x) is``): JSON gives only dict/list/str/int/float/bool/None,
# and the exact check keeps bool out of int and keeps the hot media path cheap.

def _object(frame: Mapping[str, Any], parent: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if type(value) is dict:
        return value
    raise _absent_or_bad(frame, value, key, "an object")


def _text(frame: Mapping[str, Any], parent: Mapping[str, Any], key: str) -> str:
    value = parent.get(key)
    if type(value) is str:
        return value
    raise _absent_or_bad(frame, value, key, "a string")


def _optional_text(frame: Mapping[str, Any], parent: Mapping[str, Any], key: str) -> str | None:
    value = parent.get(key)
    if value is None or type(value) is str:
        return value
    raise _absent_or_bad(frame, value, key, "a string")


def _counter(frame: Mapping[str, Any], parent: Mapping[str, Any], key: str, default: int | None = None) -> int:
    """A non-negative integer sent as a decimal string (ints are tolerated); ``default`` when absent.

    Above INT64_MAX it is refused as ``OUT_OF_RANGE`` (every column that stores one is int64).
    The bound costs nothing on the hot path: fewer than 19 digits always fit, so only longer
    strings are converted and compared, and no string of any length is handed to ``int()``
    with more than 19 significant digits.
    """
    value = parent.get(key, default)
    if type(value) is str and value.isdigit() and value.isascii():
        if len(value) < 19:
            return int(value)
        digits = value.lstrip("0") or "0"
        if len(digits) < 19 or (len(digits) == 19 and int(digits) <= INT64_MAX):
            return int(digits)
        raise _fail(frame, Reason.OUT_OF_RANGE, f"{key!r} {value:.30} does not fit in int64")
    if type(value) is int and value >= 0:
        if value <= INT64_MAX:
            return value
        raise _fail(frame, Reason.OUT_OF_RANGE, f"{key!r} {value} does not fit in int64")
    raise _absent_or_bad(frame, value, key, "a non-negative integer string")


def _payload(frame: Mapping[str, Any], media: Mapping[str, Any]) -> bytes:
    text = media.get("payload")
    if type(text) is not str:
        raise _absent_or_bad(frame, text, "payload", "a string")
    try:
        return _b64decode(text)
    except (binascii.Error, ValueError) as exc:
        raise _fail(frame, Reason.INVALID_BASE64, f"payload is not valid base64 ({exc})") from None


def _load(data: str | bytes | bytearray | memoryview) -> tuple[dict[str, Any], str]:
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FrameError(Reason.MALFORMED_JSON, str(exc)) from None
    if type(frame) is not dict:
        raise FrameError(Reason.NOT_AN_OBJECT, f"frame is a JSON {type(frame).__name__}, not an object")
    event = frame.get("event")
    if type(event) is not str:
        raise _fail(frame, Reason.MISSING_FIELD, "frame has no string 'event'")
    return frame, event


def _parse_media(frame: dict[str, Any]) -> Media:
    # The hot path (one frame per 20 ms per track): the field readers' checks inline,
    # with their error builders called only when a check fails.
    media = frame.get("media")
    if type(media) is not dict:
        raise _absent_or_bad(frame, media, "media", "an object")
    track = media.get("track")
    if track != "inbound" and track != "outbound":
        raise _fail(frame, Reason.BAD_FIELD, f"media.track must be 'inbound' or 'outbound', got {_show(track)}")
    stream_id = frame.get("stream_id")
    if type(stream_id) is not str:
        raise _absent_or_bad(frame, stream_id, "stream_id", "a string")
    sequence_number = _counter(frame, frame, "sequence_number", 0)
    chunk = _counter(frame, media, "chunk")
    timestamp = _counter(frame, media, "timestamp")
    return Media(stream_id, sequence_number, track, chunk, timestamp, _payload(frame, media))


def _parse_start(frame: dict[str, Any]) -> Start:
    start = _object(frame, frame, "start")
    fmt = _object(frame, start, "media_format")
    tags = start.get("tags") or []
    custom = start.get("custom_parameters") or {}
    if type(tags) is not list or not all(type(t) is str for t in tags):
        raise _fail(frame, Reason.BAD_FIELD, "start.tags must be a list of strings")
    if type(custom) is not dict:
        raise _fail(frame, Reason.BAD_FIELD, "start.custom_parameters must be an object")
    # Telnyx sends string values; other scalars are kept as text, arrays and objects refused
    # (no parameter is one, and str() of one nested 1,000 deep raises RecursionError).
    if any(type(v) is dict or type(v) is list for v in custom.values()):
        raise _fail(frame, Reason.BAD_FIELD, "start.custom_parameters values must be strings")
    sample_rate = _counter(frame, fmt, "sample_rate")
    channels = _counter(frame, fmt, "channels", 1)
    if not (0 < sample_rate <= MAX_SAMPLE_RATE and 0 < channels <= MAX_CHANNELS):
        raise _fail(frame, Reason.BAD_FIELD,
                    f"media_format sample_rate {sample_rate} / channels {channels} out of range")
    return Start(
        stream_id=_text(frame, frame, "stream_id"),
        sequence_number=_counter(frame, frame, "sequence_number", 0),
        call_control_id=_text(frame, start, "call_control_id"),
        media_format=MediaFormat(_text(frame, fmt, "encoding"), sample_rate, channels),
        call_session_id=_optional_text(frame, start, "call_session_id"),
        user_id=_optional_text(frame, start, "user_id"),
        from_=_optional_text(frame, start, "from"),
        to=_optional_text(frame, start, "to"),
        tags=tuple(tags),
        client_state=_optional_text(frame, start, "client_state"),
        custom_parameters={str(k): str(v) for k, v in custom.items()},
    )


def _parse_connected(frame: dict[str, Any]) -> Connected:
    token = None
    if frame.get("connected") is not None:
        token = _optional_text(frame, _object(frame, frame, "connected"), AUTH_TOKEN_HEADER)
    return Connected(version=_optional_text(frame, frame, "version") or "", auth_token=token)


def _parse_stop(frame: dict[str, Any]) -> Stop:
    stop = _object(frame, frame, "stop")
    return Stop(
        stream_id=_text(frame, frame, "stream_id"),
        sequence_number=_counter(frame, frame, "sequence_number", 0),
        call_control_id=_text(frame, stop, "call_control_id"),
        user_id=_optional_text(frame, stop, "user_id"),
    )


def _parse_dtmf(frame: dict[str, Any]) -> Dtmf:
    return Dtmf(
        stream_id=_text(frame, frame, "stream_id"),
        sequence_number=_counter(frame, frame, "sequence_number", 0),
        digit=_text(frame, _object(frame, frame, "dtmf"), "digit"),
        occurred_at=_optional_text(frame, frame, "occurred_at"),
    )


def _parse_mark(frame: dict[str, Any]) -> Mark:
    return Mark(
        stream_id=_text(frame, frame, "stream_id"),
        sequence_number=_counter(frame, frame, "sequence_number", 0),
        name=_text(frame, _object(frame, frame, "mark"), "name"),
    )


def _parse_error(frame: dict[str, Any]) -> ErrorFrame:
    payload = _object(frame, frame, "payload")
    code = payload.get("code")
    if type(code) is not int:
        raise _fail(frame, Reason.BAD_FIELD, f"error payload.code must be an integer, got {_show(code)}")
    if not INT64_MIN <= code <= INT64_MAX:
        raise _fail(frame, Reason.OUT_OF_RANGE, f"error payload.code {code} does not fit in int64")
    stream_id = frame.get("stream_id")
    return ErrorFrame(
        stream_id=stream_id if type(stream_id) is str else None,
        code=code,
        title=_optional_text(frame, payload, "title") or "",
        detail=_optional_text(frame, payload, "detail") or "",
    )


_TELNYX_PARSERS: dict[str, Callable[[dict[str, Any]], TelnyxFrame]] = {
    "media": _parse_media,
    "start": _parse_start,
    "connected": _parse_connected,
    "stop": _parse_stop,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "error": _parse_error,
}


# A counter as msgspec reads it, strictly: a string (checked by _parse_media_fast) or a JSON
# integer in 0..INT64_MAX. The int bounds are checked while decoding, for every occurrence of a
# repeated key too: orjson refuses an integer too long for a double (about 309 digits or more),
# so an earlier occurrence that the last one overrides must not get through either.
_FastCounter = str | Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]


class _FastMediaBody(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    track: Track
    chunk: _FastCounter
    timestamp: _FastCounter
    payload: str


class _FastMedia(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    event: Literal["media"]
    stream_id: str
    media: _FastMediaBody
    sequence_number: _FastCounter = "0"


_decode_fast_media = msgspec.json.Decoder(_FastMedia).decode


def _fast_counter(value: str | int) -> int:
    """A counter ``_counter`` accepts and that needs no int64 bound check, as an int; else -1."""
    if type(value) is str:
        if len(value) < 19 and value.isdigit() and value.isascii():
            return int(value)
        return -1
    if type(value) is int and 0 <= value <= INT64_MAX:
        return value
    return -1


def _parse_media_fast(text: str) -> Media | None:
    """The hot path for ``media`` frames: the frame, or None to leave the text to the general parser.

    It returns a frame only for input the general parser accepts, and then an equal frame;
    whatever it is unsure of gets None and is parsed again from scratch, so every error comes
    from the general parser. It accepts exactly:

    - a JSON object with the keys ``event`` (the string ``"media"``), ``stream_id`` (a string),
      ``media`` and optionally ``sequence_number`` (absent: 0), and no other key;
    - ``media``: an object with exactly the keys ``track`` (``"inbound"`` or ``"outbound"``),
      ``chunk``, ``timestamp`` and ``payload`` (a string of strict base64);
    - counters: a string of 1–18 ASCII digits (leading zeros allowed) or a JSON integer in
      0..INT64_MAX. Digit strings of 19 or more characters (those that need the int64 bound)
      go to the general parser.

    Unknown keys are refused, not skipped: msgspec skips an unknown value without every check
    orjson makes (orjson rejects ``1e400``, and nesting deeper than 1024 levels, which msgspec
    skips when the recursion limit allows). Counters are decoded strictly, as ``str | int``:
    msgspec's lax ``int`` coercion also takes ``"-0"``, ``"1.0"``, ``"1e2"`` and ``1.0``, which
    ``_counter`` refuses. With a key repeated, the last value wins, as with orjson, and every
    occurrence must be valid by the rules above (so none can be one orjson refuses).
    """
    try:
        frame = _decode_fast_media(text)
    except Exception:  # DecodeError, ValidationError, RecursionError, UnicodeEncodeError (a lone
        return None    # surrogate in the str)…: whatever it is, the general parser decides
    body = frame.media
    seq, chunk, ts = frame.sequence_number, body.chunk, body.timestamp
    # The common case inline (three short digit strings); anything else through _fast_counter.
    if (type(seq) is str and type(chunk) is str and type(ts) is str
            and len(seq) < 19 and len(chunk) < 19 and len(ts) < 19
            and seq.isdigit() and chunk.isdigit() and ts.isdigit()
            and seq.isascii() and chunk.isascii() and ts.isascii()):
        sequence_number, chunk_number, timestamp = int(seq), int(chunk), int(ts)
    else:
        sequence_number, chunk_number, timestamp = _fast_counter(seq), _fast_counter(chunk), _fast_counter(ts)
        if sequence_number < 0 or chunk_number < 0 or timestamp < 0:
            return None
    try:
        payload = _b64decode(body.payload)
    except (binascii.Error, ValueError):
        return None
    return Media(frame.stream_id, sequence_number, body.track, chunk_number, timestamp, payload)


def parse_frame(data: str | bytes | bytearray | memoryview) -> TelnyxFrame:
    """Parse one frame Telnyx sends to the application's ``stream_url``."""
    # The fast path takes text (what the receiver gets); bytes go to the general parser. The
    # substring test spares non-media frames a failed fast attempt (about 2 µs). Both are only
    # filters: whichever way a text goes, the result is the same.
    if type(data) is str and '"media"' in data:
        frame = _parse_media_fast(data)
        if frame is not None:
            return frame
    return _parse_general(data)


def _parse_general(data: str | bytes | bytearray | memoryview) -> TelnyxFrame:
    """:func:`parse_frame` without the media fast path: the reference for every input."""
    frame, event = _load(data)
    parser = _TELNYX_PARSERS.get(event)
    if parser is None:
        raise _fail(frame, Reason.UNKNOWN_EVENT, f"unknown event {event!r:.40}")
    return parser(frame)


def parse_app_frame(data: str | bytes | bytearray | memoryview) -> AppFrame:
    """Parse one frame the application sends back to Telnyx (bidirectional mode)."""
    frame, event = _load(data)
    if event == "media":
        return AppMedia(_payload(frame, _object(frame, frame, "media")))
    if event == "mark":
        return AppMark(_text(frame, _object(frame, frame, "mark"), "name"))
    if event == "clear":
        return Clear()
    raise _fail(frame, Reason.UNKNOWN_EVENT, f"unknown event {event!r:.40}")
