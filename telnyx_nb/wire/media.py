"""Telnyx media-streaming WebSocket frames: parse and build, no I/O.

Telnyx (the WebSocket client) sends ``connected``, ``start``, ``media``,
``stop``, ``dtmf``, ``mark`` and ``error`` frames; the application may send
``media``, ``mark`` and ``clear`` back (bidirectional mode). On the wire the
counters ``sequence_number``, ``chunk`` and ``timestamp`` are JSON strings;
parsed frames carry ints, and built frames write strings again. ``payload``
travels as base64 and is ``bytes`` here.

Every parse failure raises :class:`FrameError`, and only that, with a short
``reason`` code and whatever of the frame could be read (event, stream id).
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import orjson

__all__ = [
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

#: WebSocket error frame codes (integers, unlike REST error codes).
ERROR_CODES: dict[int, tuple[str, str]] = {
    100002: ("unknown_error", "An unknown error occurred on the stream"),
    100003: ("malformed_frame", "Received frame was not formed correctly"),
    100004: ("invalid_media", "Media provided was not base64 encoded"),
    100005: ("rate_limit_reached", "Too many requests"),
}

Track = Literal["inbound", "outbound"]
_TRACKS = ("inbound", "outbound")


class FrameError(ValueError):
    """A frame that cannot be accepted.

    ``reason`` is one of ``malformed_json``, ``not_an_object``, ``unknown_event``,
    ``missing_field``, ``bad_field``, ``invalid_base64``. ``event`` and
    ``stream_id`` hold what could be read before the failure (else None).
    """

    def __init__(self, reason: str, detail: str, *, event: str | None = None, stream_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
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


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """``start.media_format``: authoritative for decoding the stream's payloads."""

    encoding: str
    sample_rate: int
    channels: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"encoding": self.encoding, "sample_rate": self.sample_rate, "channels": self.channels}


@dataclass(frozen=True, slots=True)
class Connected:
    """First frame on a new stream; carries the auth token when one was configured."""

    version: str = "1.0.0"
    auth_token: str | None = None

    def to_dict(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"event": "connected", "version": self.version}
        if self.auth_token is not None:
            frame["connected"] = {AUTH_TOKEN_HEADER: self.auth_token}
        return frame


@dataclass(frozen=True, slots=True)
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
        return {"event": "start", "sequence_number": str(self.sequence_number), "stream_id": self.stream_id, "start": start}


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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
        return {"event": "stop", "sequence_number": str(self.sequence_number), "stream_id": self.stream_id, "stop": stop}


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Mark:
    """Telnyx's echo of an application mark: the audio queued before it has played."""

    stream_id: str
    sequence_number: int
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "mark", "stream_id": self.stream_id, "sequence_number": str(self.sequence_number), "mark": {"name": self.name}}


@dataclass(frozen=True, slots=True)
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
        frame: dict[str, Any] = {"event": "error", "payload": {"code": self.code, "title": self.title, "detail": self.detail}}
        if self.stream_id is not None:
            frame["stream_id"] = self.stream_id
        return frame


@dataclass(frozen=True, slots=True)
class AppMedia:
    """Audio the application sends into the call (bidirectional mode)."""

    payload: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"event": "media", "media": {"payload": _b64encode(self.payload)}}


@dataclass(frozen=True, slots=True)
class AppMark:
    """A named mark after queued audio; Telnyx echoes it when that audio has played."""

    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "mark", "mark": {"name": self.name}}


@dataclass(frozen=True, slots=True)
class Clear:
    """Stop playback and flush queued audio; queued marks are echoed back."""

    def to_dict(self) -> dict[str, Any]:
        return {"event": "clear"}


TelnyxFrame = Union[Connected, Start, Media, Stop, Dtmf, Mark, ErrorFrame]
AppFrame = Union[AppMedia, AppMark, Clear]


def dumps(frame: TelnyxFrame | AppFrame) -> str:
    """Serialise a frame to the JSON text sent in one WebSocket text message."""
    return orjson.dumps(frame.to_dict()).decode("utf-8")


class _Reader:
    """Typed field access on one decoded frame, raising FrameError with context."""

    __slots__ = ("event", "stream_id")

    def __init__(self, event: str, stream_id: str | None) -> None:
        self.event = event
        self.stream_id = stream_id

    def fail(self, reason: str, detail: str) -> FrameError:
        return FrameError(reason, detail, event=self.event, stream_id=self.stream_id)

    def obj(self, frame: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = frame.get(key)
        if value is None:
            raise self.fail("missing_field", f"{self.event} frame has no {key!r} object")
        if not isinstance(value, dict):
            raise self.fail("bad_field", f"{key!r} must be an object")
        return value

    def text(self, frame: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
        value = frame.get(key)
        if value is None:
            if optional:
                return None
            raise self.fail("missing_field", f"{self.event} frame has no {key!r}")
        if not isinstance(value, str):
            raise self.fail("bad_field", f"{key!r} must be a string, got {type(value).__name__}")
        return value

    def counter(self, frame: Mapping[str, Any], key: str) -> int:
        """A non-negative integer sent as a decimal string (ints are tolerated)."""
        value = frame.get(key)
        if value is None:
            raise self.fail("missing_field", f"{self.event} frame has no {key!r}")
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise self.fail("bad_field", f"{key!r} must be a non-negative integer string, got {value!r}")

    def optional_counter(self, frame: Mapping[str, Any], key: str) -> int:
        return self.counter(frame, key) if key in frame else 0

    def payload(self, media: Mapping[str, Any]) -> bytes:
        text = self.text(media, "payload")
        try:
            return _b64decode(text)
        except (binascii.Error, ValueError) as exc:
            raise self.fail("invalid_base64", f"payload is not valid base64 ({exc})") from None


def _load(data: str | bytes | bytearray | memoryview) -> tuple[dict[str, Any], _Reader]:
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FrameError("malformed_json", str(exc)) from None
    if not isinstance(frame, dict):
        raise FrameError("not_an_object", f"frame is a JSON {type(frame).__name__}, not an object")
    event = frame.get("event")
    stream_id = frame.get("stream_id")
    reader = _Reader(event if isinstance(event, str) else None, stream_id if isinstance(stream_id, str) else None)
    if reader.event is None:
        raise reader.fail("missing_field", "frame has no string 'event'")
    return frame, reader


def _parse_media(frame: dict[str, Any], r: _Reader) -> Media:
    media = r.obj(frame, "media")
    track = r.text(media, "track")
    if track not in _TRACKS:
        raise r.fail("bad_field", f"media.track must be 'inbound' or 'outbound', got {track!r}")
    return Media(
        stream_id=r.text(frame, "stream_id"),
        sequence_number=r.optional_counter(frame, "sequence_number"),
        track=track,
        chunk=r.counter(media, "chunk"),
        timestamp=r.counter(media, "timestamp"),
        payload=r.payload(media),
    )


def _parse_start(frame: dict[str, Any], r: _Reader) -> Start:
    start = r.obj(frame, "start")
    fmt = r.obj(start, "media_format")
    tags = start.get("tags") or []
    custom = start.get("custom_parameters") or {}
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise r.fail("bad_field", "start.tags must be a list of strings")
    if not isinstance(custom, dict):
        raise r.fail("bad_field", "start.custom_parameters must be an object")
    encoding = r.text(fmt, "encoding")
    channels = r.counter(fmt, "channels") if "channels" in fmt else 1
    return Start(
        stream_id=r.text(frame, "stream_id"),
        sequence_number=r.optional_counter(frame, "sequence_number"),
        call_control_id=r.text(start, "call_control_id"),
        media_format=MediaFormat(encoding, r.counter(fmt, "sample_rate"), channels),
        call_session_id=r.text(start, "call_session_id", optional=True),
        user_id=r.text(start, "user_id", optional=True),
        from_=r.text(start, "from", optional=True),
        to=r.text(start, "to", optional=True),
        tags=tuple(tags),
        client_state=r.text(start, "client_state", optional=True),
        custom_parameters={str(k): str(v) for k, v in custom.items()},
    )


def _parse_connected(frame: dict[str, Any], r: _Reader) -> Connected:
    connected = frame.get("connected")
    token = None
    if connected is not None:
        token = r.text(r.obj(frame, "connected"), AUTH_TOKEN_HEADER, optional=True)
    return Connected(version=r.text(frame, "version", optional=True) or "", auth_token=token)


def _parse_stop(frame: dict[str, Any], r: _Reader) -> Stop:
    stop = r.obj(frame, "stop")
    return Stop(
        stream_id=r.text(frame, "stream_id"),
        sequence_number=r.optional_counter(frame, "sequence_number"),
        call_control_id=r.text(stop, "call_control_id"),
        user_id=r.text(stop, "user_id", optional=True),
    )


def _parse_dtmf(frame: dict[str, Any], r: _Reader) -> Dtmf:
    return Dtmf(
        stream_id=r.text(frame, "stream_id"),
        sequence_number=r.optional_counter(frame, "sequence_number"),
        digit=r.text(r.obj(frame, "dtmf"), "digit"),
        occurred_at=r.text(frame, "occurred_at", optional=True),
    )


def _parse_mark(frame: dict[str, Any], r: _Reader) -> Mark:
    return Mark(
        stream_id=r.text(frame, "stream_id"),
        sequence_number=r.optional_counter(frame, "sequence_number"),
        name=r.text(r.obj(frame, "mark"), "name"),
    )


def _parse_error(frame: dict[str, Any], r: _Reader) -> ErrorFrame:
    payload = r.obj(frame, "payload")
    code = payload.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise r.fail("bad_field", f"error payload.code must be an integer, got {code!r}")
    return ErrorFrame(
        stream_id=r.stream_id,
        code=code,
        title=r.text(payload, "title", optional=True) or "",
        detail=r.text(payload, "detail", optional=True) or "",
    )


_TELNYX_PARSERS = {
    "media": _parse_media,
    "start": _parse_start,
    "connected": _parse_connected,
    "stop": _parse_stop,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "error": _parse_error,
}


def parse_frame(data: str | bytes | bytearray | memoryview) -> TelnyxFrame:
    """Parse one frame Telnyx sends to the application's ``stream_url``."""
    frame, reader = _load(data)
    parser = _TELNYX_PARSERS.get(reader.event)
    if parser is None:
        raise reader.fail("unknown_event", f"unknown event {reader.event!r}")
    return parser(frame, reader)


def parse_app_frame(data: str | bytes | bytearray | memoryview) -> AppFrame:
    """Parse one frame the application sends back to Telnyx (bidirectional mode)."""
    frame, r = _load(data)
    if r.event == "media":
        return AppMedia(r.payload(r.obj(frame, "media")))
    if r.event == "mark":
        return AppMark(r.text(r.obj(frame, "mark"), "name"))
    if r.event == "clear":
        return Clear()
    raise r.fail("unknown_event", f"unknown event {r.event!r}")
