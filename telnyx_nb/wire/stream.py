"""One media-stream WebSocket as a sans-I/O state machine, both sides.

The rules here are the stateful part of Telnyx's media-streaming protocol (``docs/protocol.md``,
"Media-stream connection and auth token" and "Media-stream frames from Telnyx"); single
frames are :mod:`telnyx_nb.wire.media`. Nothing here touches a socket: the caller feeds each WebSocket
message in and acts on what comes back, so both sides can be tested with plain strings.

- :class:`StreamConnection` is the application's (receiver's) side of one socket. Each
  ``receive_text`` / ``receive_binary`` returns exactly one event; ``close`` reports the end
  of the stream the socket carried.
- :class:`StreamSender` is Telnyx's side (used by the sandbox): it numbers and builds the
  frames Telnyx sends, and turns what the application sends back into an application frame
  or the ``error`` frame Telnyx answers with.

Receiver-side rules:

1. **Auth** ("Media-stream connection and auth token"): with a token configured, Telnyx presents it in the
   ``x-telnyx-streaming-auth-token`` upgrade header and in ``connected``'s
   ``x-telnyx-streaming-auth-token``. A header that does not match refuses the upgrade; with
   no header, the first message must be a ``connected`` frame carrying the token, else the
   connection is refused (close code 1008). Tokens are compared in constant time.
2. **One stream per socket**: the first frame naming a ``stream_id`` (normally ``start``;
   media with no ``start`` is still collected) sets the stream this socket carries. A later
   ``start`` naming another id replaces it (the old stream ends, reason ``replaced``); any
   other frame naming another id is rejected (``stream_mismatch``). Telnyx's ``error`` frames
   and ``connected`` pass through whatever they name.
3. **Ends**: a ``stop`` frame ends the stream (reason ``stop``); otherwise ``close`` ends it
   with the caller's reason. A stream ends once.
4. **Bad input never ends the stream** (except auth): oversized text, binary messages and
   frames ``wire.media`` refuses come back as :class:`Rejected` and the stream goes on.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from telnyx_nb.wire.errors import Reason, TextEnum
from telnyx_nb.wire.media import (
    FRAME_MS,
    AppFrame,
    Connected,
    Dtmf,
    ErrorFrame,
    FrameError,
    Mark,
    Media,
    MediaFormat,
    Start,
    Stop,
    TelnyxFrame,
    Track,
    parse_app_frame,
    parse_frame,
)

__all__ = [
    "EndReason",
    "Started",
    "Stopped",
    "Rejected",
    "Refused",
    "Ended",
    "Event",
    "StreamConnection",
    "StreamSender",
    "same_token",
    "MALFORMED_FRAME",
    "INVALID_MEDIA",
]

#: Telnyx ``error`` frame codes the sender answers bad application frames with
#: (``docs/protocol.md``, "Media-stream error frames").
MALFORMED_FRAME = 100003
INVALID_MEDIA = 100004


class EndReason(TextEnum):
    """Why a stream ended: the value written to ``streams.end_reason``."""

    #: Telnyx sent ``stop``.
    STOP = "stop"
    #: The socket closed without a ``stop``.
    CLOSED = "closed"
    #: The connection failed (reset, protocol error).
    ERROR = "error"
    #: A message beyond the hard size limit closed the connection (1009).
    MESSAGE_TOO_BIG = "message_too_big"
    #: The auth token was missing or wrong (1008).
    AUTH_FAILED = "auth_failed"
    #: A ``start`` for another stream arrived on the same socket.
    REPLACED = "replaced"
    #: The receiver was shut down with the socket open.
    RECEIVER_STOPPED = "receiver_stopped"


# -- events (receiver side) ------------------------------------------------------------------
# For media, dtmf, mark, error and connected frames the parsed wire.media frame itself is the
# event: media arrives 50 times a second per track, and a wrapper would cost an allocation each.


@dataclass(slots=True)
class Ended:
    """The stream ``stream_id`` is over, for ``reason``."""

    stream_id: str
    reason: EndReason


@dataclass(slots=True)
class Started:
    """A ``start`` frame. ``authenticated``: a configured token was presented on this socket.

    ``replaced`` is the end of the stream this socket carried before, when ``frame`` names
    another ``stream_id`` and that stream had not already ended (else None).
    """

    frame: Start
    authenticated: bool
    replaced: Ended | None = None


@dataclass(slots=True)
class Stopped:
    """A ``stop`` frame: the stream ended with reason ``stop`` (``close`` reports nothing more)."""

    frame: Stop


@dataclass(slots=True)
class Rejected:
    """A message refused while the stream goes on: record it and read the next one.

    ``reason``: ``OVERSIZED``, ``BINARY_FRAME``, ``STREAM_MISMATCH`` or a
    :class:`~telnyx_nb.wire.media.FrameError` reason. ``stream_id``: the stream the
    message belongs to as far as known (the frame's own id if it could be read, else the
    connection's; the connection's for ``STREAM_MISMATCH``), or None.
    """

    reason: Reason
    detail: str
    stream_id: str | None


@dataclass(slots=True)
class Refused:
    """Auth failed (``reason`` is ``AUTH_FAILED``): the connection is over.

    From :meth:`StreamConnection.open`, answer HTTP 403 and do not upgrade; from a
    ``receive_*`` call, close the socket with 1008.
    """

    reason: Reason
    detail: str


#: What ``StreamConnection.receive_text`` / ``receive_binary`` return, one per message.
Event = Media | Dtmf | Mark | ErrorFrame | Connected | Started | Stopped | Rejected | Refused


def same_token(offered: str, token: str) -> bool:
    """Constant-time token comparison; header text may carry undecodable bytes as surrogates."""
    return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))


_HEADER_MISMATCH = "upgrade header token does not match"
_NO_TOKEN = "no matching auth token in the upgrade header or connected frame"

# Connection states. Any state but _OPEN sets the fast-path size limit to -1, so that the hot
# path's single ``len(data) > limit`` test sends every message of those states to the slow path.
_OPEN, _LOCKED, _REFUSED, _CLOSED = range(4)

_EVENT_NAME: dict[type, str] = {Media: "media", Stop: "stop", Dtmf: "dtmf", Mark: "mark"}


class StreamConnection:
    """One media WebSocket, receiver side. Fed each message; returns one event per call.

    ``auth_token``: the ``stream_auth_token`` given to ``streaming_start`` (None: no auth).
    ``max_message_size``: the longest text message accepted, in characters; longer ones are
    :class:`Rejected` (``OVERSIZED``). The caller keeps its own hard limit on the socket.

    Use: ``open(header)`` once before the first message (answer 403 on :class:`Refused`);
    then ``receive_text`` / ``receive_binary`` per message; ``close(reason)`` once when the
    socket is gone. Messages after ``close`` raise RuntimeError (a caller bug, not input).

    Attributes: ``stream_id`` (the stream this socket carries, or None before any frame
    names one), ``authenticated`` (a configured token was presented, in the header or the
    ``connected`` frame), ``ended`` (the carried stream has ended, by ``stop``, ``close``
    or auth refusal; a ``start`` of a new stream clears it).
    """

    __slots__ = ("stream_id", "authenticated", "ended", "_limit", "_token", "_state", "_fast_limit", "_refusal")

    stream_id: str | None
    authenticated: bool
    ended: bool

    def __init__(self, *, auth_token: str | None = None, max_message_size: int = 1 << 20) -> None:
        self.stream_id = None
        self.authenticated = False
        self.ended = False
        self._limit = max_message_size
        self._token = auth_token
        # With a token the connection starts locked; a matching upgrade header unlocks it.
        self._state = _OPEN if auth_token is None else _LOCKED
        self._fast_limit = max_message_size if auth_token is None else -1
        self._refusal = ""

    @property
    def max_message_size(self) -> int:
        """The longest text message accepted, in characters (fixed at construction)."""
        return self._limit

    def open(self, header_token: str | None) -> Refused | None:
        """The upgrade request's ``x-telnyx-streaming-auth-token`` header (None if absent).

        Returns :class:`Refused` when a token is configured and the header does not match
        (answer 403, do not upgrade). With a token and no header the connection stays locked
        until a ``connected`` frame presents it.
        """
        if self._state == _CLOSED:
            raise RuntimeError("open() after close()")
        token = self._token
        if token is None or header_token is None or self._state != _LOCKED:
            return None
        if not same_token(header_token, token):
            return self._refuse(_HEADER_MISMATCH)
        self.authenticated = True
        self._state, self._fast_limit = _OPEN, self._limit
        return None

    def receive_text(self, data: str) -> Event:
        """One text message: the parsed frame (media, dtmf, mark, error, connected), or
        :class:`Started`, :class:`Stopped`, :class:`Rejected`, :class:`Refused`."""
        # The hot path: one size test (it also catches every state but _OPEN), the parse,
        # and for media on the carried stream nothing else.
        if len(data) > self._fast_limit:
            return self._gated_text(data)
        try:
            frame = parse_frame(data)
        except FrameError as exc:
            # The carried stream owns whatever arrives on its socket (as for STREAM_MISMATCH).
            return Rejected(exc.reason, exc.detail, self.stream_id or exc.stream_id)
        if type(frame) is Media and frame.stream_id == self.stream_id:
            return frame
        return self._route(frame)

    def receive_binary(self, data: bytes | bytearray | memoryview) -> Event:
        """One binary message: Telnyx sends text only, so :class:`Rejected` (``BINARY_FRAME``),
        or :class:`Refused` on a connection still waiting for its token."""
        state = self._state
        if state == _OPEN:
            return Rejected(Reason.BINARY_FRAME, f"{len(data)}-byte binary message; Telnyx sends text", self.stream_id)
        if state == _LOCKED:
            return self._refuse(_NO_TOKEN)
        return self._after_end(state)

    def close(self, reason: EndReason) -> Ended | None:
        """The socket is gone: the end of the carried stream, unless none was carried or it
        already ended (``stop``, replaced). ``reason`` is the caller's: ``CLOSED``, ``ERROR``,
        ``MESSAGE_TOO_BIG``, ``RECEIVER_STOPPED``, ... Closing twice returns None."""
        if self._state == _CLOSED:
            return None
        self._state, self._fast_limit = _CLOSED, -1
        stream_id, ended = self.stream_id, self.ended
        self.ended = True
        if stream_id is None or ended:
            return None
        return Ended(stream_id, reason)

    # -- slow paths --------------------------------------------------------------------------

    def _gated_text(self, data: str) -> Event:
        state = self._state
        if state == _OPEN:
            return Rejected(Reason.OVERSIZED, f"{len(data)} characters, limit {self._limit}", self.stream_id)
        if state == _LOCKED:
            return self._authenticate(data)
        return self._after_end(state)

    def _authenticate(self, data: str) -> Event:
        """The first message of a locked connection: a ``connected`` frame with the token, or refusal."""
        token = self._token
        if token is not None and len(data) <= self._limit:
            try:
                frame = parse_frame(data)
            except FrameError:
                pass
            else:
                if type(frame) is Connected and frame.auth_token is not None and same_token(frame.auth_token, token):
                    self.authenticated = True
                    self._state, self._fast_limit = _OPEN, self._limit
                    return frame
        return self._refuse(_NO_TOKEN)

    def _refuse(self, detail: str) -> Refused:
        self._state, self._fast_limit, self._refusal = _REFUSED, -1, detail
        self.ended = True
        return Refused(Reason.AUTH_FAILED, detail)

    def _after_end(self, state: int) -> Refused:
        if state == _REFUSED:
            return Refused(Reason.AUTH_FAILED, self._refusal)
        raise RuntimeError("a message after close()")

    def _route(self, frame: TelnyxFrame) -> Event:
        """Every frame but media on the carried stream (rare: ``isinstance`` is cheap enough)."""
        if isinstance(frame, Start):
            return self._start(frame)
        if isinstance(frame, (ErrorFrame, Connected)):
            return frame
        # media, stop, dtmf, mark: they name a stream, which must be the carried one.
        stream_id, current = frame.stream_id, self.stream_id
        if current is None:
            self.stream_id = stream_id  # before any start, the first frame naming a stream adopts it
        elif stream_id != current:
            return Rejected(Reason.STREAM_MISMATCH,
                            f"{_EVENT_NAME[type(frame)]} frame names stream {stream_id!r:.60}; "
                            f"this connection carries {current!r}", current)
        if isinstance(frame, Stop):
            self.ended = True
            return Stopped(frame)
        return frame

    def _start(self, frame: Start) -> Started:
        stream_id, current = frame.stream_id, self.stream_id
        replaced = None
        if current is not None and current != stream_id:
            if not self.ended:
                replaced = Ended(current, EndReason.REPLACED)
            self.ended = False
        self.stream_id = stream_id
        return Started(frame, self.authenticated, replaced)


class StreamSender:
    """Telnyx's side of one media stream: numbers and builds the frames it sends.

    Numbering (undocumented by Telnyx; ``docs/protocol.md``, "Media-stream counters, tracks
    and ordering" and "Where Telnyx is silent: the project's choices"): ``sequence_number``
    counts every numbered frame of the stream from 1 (``start`` is 1; ``connected`` and
    ``error`` carry none); ``chunk`` counts media ticks from 1 at the first tick the stream
    sends (both tracks of one tick share a chunk); ``timestamp`` is milliseconds of media,
    ``FRAME_MS * (chunk - 1)``.

    Every numbered builder takes the next number, so a caller that drops a frame after
    building it (an impairment) leaves the gap a real loss would.
    """

    __slots__ = ("stream_id", "call_control_id", "user_id", "auth_token", "sequence_number", "first_tick")

    stream_id: str
    call_control_id: str
    user_id: str | None
    auth_token: str | None
    #: The last sequence number given out (0 before any frame).
    sequence_number: int
    #: The media clock tick that is chunk 1 (None before the first media tick).
    first_tick: int | None

    def __init__(self, stream_id: str, call_control_id: str, *, user_id: str | None = None,
                 auth_token: str | None = None) -> None:
        self.stream_id = stream_id
        self.call_control_id = call_control_id
        self.user_id = user_id
        self.auth_token = auth_token
        self.sequence_number = 0
        self.first_tick = None

    def _next(self) -> int:
        self.sequence_number += 1
        return self.sequence_number

    def connected(self) -> Connected:
        """The first frame; carries the auth token when one was configured. No sequence number."""
        return Connected(auth_token=self.auth_token)

    def start(self, media_format: MediaFormat, *, call_session_id: str | None = None, from_: str | None = None,
              to: str | None = None, tags: Iterable[str] = (), client_state: str | None = None,
              custom_parameters: Mapping[str, str] | None = None) -> Start:
        """The ``start`` frame (sequence number 1 when sent first, as it should be)."""
        return Start(
            stream_id=self.stream_id, sequence_number=self._next(), call_control_id=self.call_control_id,
            media_format=media_format, call_session_id=call_session_id, user_id=self.user_id, from_=from_,
            to=to, tags=tuple(tags), client_state=client_state, custom_parameters=dict(custom_parameters or {}),
        )

    def chunk(self, tick: int) -> int:
        """The chunk number of media clock tick ``tick`` (20 ms ticks): the first tick asked is 1."""
        first = self.first_tick
        if first is None:
            self.first_tick = first = tick
        return tick - first + 1

    def media(self, track: Track, chunk: int, payload: bytes) -> Media:
        """One track's ``media`` frame for ``chunk``: the next sequence number, timestamp in ms."""
        self.sequence_number += 1
        return Media(self.stream_id, self.sequence_number, track, chunk, FRAME_MS * (chunk - 1), payload)

    def dtmf(self, digit: str, occurred_at: str | None = None) -> Dtmf:
        """A ``dtmf`` frame; ``occurred_at`` is ISO 8601 UTC with microseconds and ``Z``."""
        return Dtmf(self.stream_id, self._next(), digit, occurred_at)

    def mark(self, name: str) -> Mark:
        """The echo of an application mark whose audio has played."""
        return Mark(self.stream_id, self._next(), name)

    def stop(self) -> Stop:
        """The last frame."""
        return Stop(self.stream_id, self._next(), self.call_control_id, self.user_id)

    def error(self, code: int, detail: str | None = None) -> ErrorFrame:
        """An ``error`` frame for a code of ``wire.media.ERROR_CODES`` (Telnyx's title and,
        unless given, its default detail). Raises KeyError for an unknown code."""
        return ErrorFrame.for_code(code, self.stream_id, detail)

    def receive_text(self, data: str | bytes) -> AppFrame | ErrorFrame:
        """A text message from the application: the parsed ``AppMedia`` / ``AppMark`` /
        ``Clear``, or the ``error`` frame Telnyx answers with: 100004 (``invalid_media``) for
        a payload that is not base64, 100003 (``malformed_frame``) for anything else wrong."""
        try:
            return parse_app_frame(data)
        except FrameError as exc:
            code = INVALID_MEDIA if exc.reason is Reason.INVALID_BASE64 else MALFORMED_FRAME
            return ErrorFrame.for_code(code, self.stream_id, exc.detail)

    def receive_binary(self, data: bytes | bytearray | memoryview) -> ErrorFrame:
        """A binary message from the application: always the 100003 ``error`` frame."""
        return ErrorFrame.for_code(MALFORMED_FRAME, self.stream_id,
                                   "binary frames are not accepted; send JSON text frames")
