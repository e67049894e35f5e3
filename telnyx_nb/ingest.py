"""The receiver's I/O: webhooks, media WebSockets and forked RTP from sockets into the store.

It also answers ``GET|POST /selftest?nonce=...`` (``wire.selftest``, for ``Receiver.selftest``),
which stores nothing.

It runs on the receiver's own loop (see ``loopthread``) and only moves bytes: parsing,
verification and every stream rule are ``telnyx_nb.wire`` (``webhooks``, ``stream``,
``rtp``). Arrival times are stamped with ``time.time_ns()`` when the socket read returns:
the HTTP protocol is wrapped so that each read is stamped before aiohttp sees its bytes.

Limits (see ``defaults``): a WebSocket text message over ``max_message_size`` is recorded
(``oversized``) and skipped; one over ``HARD_LIMIT_FACTOR`` times that closes the connection
(1009) so memory stays bounded; webhook bodies over ``max_webhook_size`` get 413 (at once,
before the body is read, when the request's Content-Length says so). On the stock asyncio loop
each socket read takes at most ``READ_SIZE`` bytes (CPython #85451).

Slow clients (slowloris): aiohttp bounds neither how long a request header nor a body may take
to arrive. Each HTTP connection therefore carries a deadline while it waits for a header
(``header_timeout_s`` from its opening, or from the first byte after an earlier request) or a
webhook body (``body_timeout_s`` from its header); the lag ticker sweeps the connections that
have one, closes those past it and records one ``webhook_errors`` row (reason "timeout").
Connections busy in a handler (a media WebSocket) or idle between requests have no deadline
(aiohttp's keep-alive timeout closes idle ones), so the per-read cost is one comparison.

Signature failures: after ``signature_failures_warning`` webhooks in a row fail verification,
``warn`` is called once with the likely cause (a verified webhook starts a new run). aiohttp's
own server messages (e.g. a peer that vanished mid-request) go to the ``telnyx_nb.ingest``
logger, never to stderr.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import pandas as pd
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from telnyx_nb import defaults
from telnyx_nb.defaults import COUNTERS, Limits
from telnyx_nb.events import EventSink
from telnyx_nb.outbound import Outbound
from telnyx_nb.store import Store, StreamInfo
from telnyx_nb.store.schema import TARGETS
from telnyx_nb.udp import SOCKET_READ, ForkPort
from telnyx_nb.wire import media, rtp, selftest, stream, webhooks
from telnyx_nb.wire.errors import Reason

__all__ = ["Ingest", "Limits", "Link", "COUNTERS"]

log = logging.getLogger(__name__)

class _Http(web.RequestHandler):
    """aiohttp's HTTP protocol (what ``web.Server()`` builds, with the AppRunner's handler
    arguments), except that a request its parser refuses (answered 400 before any route sees
    it: a header line over 8,190 bytes, a control character in a header, a bad request line) is
    a ``webhook_errors`` row (``bad_request``) instead of a traceback in the log."""

    def __init__(self, ingest: Ingest, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.ingest = ingest

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not (isinstance(exc, HttpProcessingError) and status < 500) or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        detail = " ".join(str(exc.message).split())[:200]
        self.ingest.counters["webhooks_malformed"] += 1
        self.ingest.store.add_webhook_error(Reason.BAD_REQUEST, detail, request.remote, b"", time.time_ns())
        log.debug("refused an HTTP request from %s: %s", request.remote, detail)
        response = web.Response(status=status, text=f"{status} {detail}")
        response.force_close()
        return response


#: What an HTTP connection waits for (``_Stamped.phase``): a request header, a webhook body,
#: nothing (a handler has it: a media WebSocket), the next request (idle), or the rest of a body
#: refused with 413 before it arrived (closed silently at its deadline: already recorded).
_HEADER, _BODY, _BUSY, _IDLE, _DRAINING = "header", "body", "busy", "idle", "draining"


class _Stamped(asyncio.Protocol):
    """Wraps aiohttp's HTTP protocol to stamp each socket read with ``time.time_ns()``, and to
    give the connection a deadline while it waits for a request header or body (see the module
    docstring): ``waiting`` is the set of connections that have one, swept by ``Ingest``."""

    def __init__(self, inner: asyncio.Protocol, read_size: int, waiting: set[_Stamped],
                 header_timeout_s: float) -> None:
        self.inner = inner
        self.read_size = read_size
        self.read_ns = time.time_ns()
        self.waiting = waiting
        self.header_timeout_s = header_timeout_s
        self.transport: asyncio.BaseTransport | None = None
        self.phase = _HEADER
        #: ``time.monotonic()`` by which the phase must end (in ``waiting`` only then).
        self.deadline = 0.0
        #: The first bytes of the request header on its way (for the record of a timeout).
        self.head = b""
        #: Closed for being too slow: the error that follows is already recorded.
        self.timed_out = False

    def expect(self, phase: str, seconds: float | None) -> None:
        """Enter ``phase``, to end within ``seconds`` (None: no deadline)."""
        self.phase = phase
        if seconds is None:
            self.waiting.discard(self)
        else:
            self.deadline = time.monotonic() + seconds
            self.waiting.add(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _small_reads(transport, self.read_size)
        self.transport = transport
        self.expect(_HEADER, self.header_timeout_s)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.read_ns = time.time_ns()
        if self.phase is not _BUSY:             # not the hot path: a media WebSocket is busy
            if self.phase is _IDLE:             # the next request begins
                self.head = b""
                self.expect(_HEADER, self.header_timeout_s)
            if self.phase is _HEADER and len(self.head) < defaults.EXCERPT_CHARS:
                self.head += data[: defaults.EXCERPT_CHARS]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.discard(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class Link:
    """One media WebSocket: its protocol state, its stream and what the application sends back."""

    def __init__(self, ws: web.WebSocketResponse, protocol: stream.StreamConnection, connected_ns: int) -> None:
        self.ws = ws
        self.protocol = protocol
        self.connected_ns = connected_ns
        self.info: StreamInfo | None = None
        self.outbound = Outbound(ws)
        #: The last message's arrival (ns), and whether the silence since was already recorded.
        self.last_ns = connected_ns
        self.silent = False


class Ingest:
    """Sockets -> ``wire`` -> store, plus live events; every method runs on the I/O loop.

    ``verify_key``: verify webhook signatures (fail closed); None stores them unverified.
    ``stream_auth_token``: required of media WebSockets when set. ``warn(message)``: how a
    run of signature failures is reported (default: a UserWarning in this process).
    """

    def __init__(self, store: Store, bus: EventSink, limits: Limits, *, verify_key: Any,
                 stream_auth_token: str | None, warn: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.bus = bus
        self.limits = limits
        self.verify_key = verify_key
        self.stream_auth_token = stream_auth_token
        self.warn = warn or _warn_here
        #: Webhooks in a row that failed signature verification (0 after a verified one).
        self.signature_failures = 0
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.links: dict[str, Link] = {}
        self.lags: deque[float] = deque(maxlen=limits.lag_samples)
        self.udp_rcvbuf = 0
        #: The HTTP port listened on (0 until ``open``).
        self.port = 0
        self.stopping = False
        self._server: asyncio.base_events.Server | None = None
        self._runner: web.AppRunner | None = None
        self._udp: list[ForkPort] = []
        #: What stamped ``rtp.received_at``: "kernel" receive times, or "socket_read".
        self.rtp_clock = SOCKET_READ
        self._ticker: asyncio.Task[None] | None = None
        #: HTTP connections waiting for a request header or body, with a deadline (``_Stamped``).
        self._waiting: set[_Stamped] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self, host: str, port: int, fork_ports: tuple[int, int]) -> tuple[int, tuple[int, int]]:
        """Listen; returns the bound HTTP port and the two fork ports (rx, tx)."""
        loop = asyncio.get_running_loop()
        limits = self.limits
        self.stopping = False
        self._udp = []
        app = web.Application(client_max_size=limits.max_webhook_size, middlewares=[_in_handler])
        app.router.add_post("/webhooks", self._on_webhook)
        app.router.add_get("/stream", self._on_stream)
        app.router.add_get(selftest.PATH, self._on_selftest)
        app.router.add_post(selftest.PATH, self._on_selftest)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=log,
                                     shutdown_timeout=limits.shutdown_timeout_s)
        await self._runner.setup()
        factory = self._runner.server
        assert factory is not None
        self._server = await loop.create_server(
            lambda: _Stamped(_Http(self, factory, loop=loop, access_log=None, logger=log), limits.read_size,
                             self._waiting, limits.header_timeout_s),
            host, port, backlog=limits.backlog)
        for target, port in zip(TARGETS, fork_ports, strict=True):
            fork = ForkPort(host, port, rcvbuf=limits.udp_rcvbuf, read_size=limits.read_size,
                            on_datagram=functools.partial(self._on_datagram, target))
            self._udp.append(fork)
            self.store.fork_addresses[target] = (host, fork.port)
            fork.start(loop)
        self.udp_rcvbuf = self._udp[0].rcvbuf
        self.rtp_clock = self._udp[0].clock
        self._ticker = asyncio.ensure_future(self._tick())
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port, (self._udp[0].port, self._udp[1].port)

    def kernel_drops(self) -> dict[str, int | None]:
        """Per fork target, the datagrams the kernel dropped on its port (full receive buffer;
        ``ForkPort.kernel_drops``, None where the platform does not say)."""
        return {target: fork.kernel_drops for target, fork in zip(TARGETS, self._udp, strict=False)}

    async def close(self) -> None:
        """Stop listening; open streams end with reason ``receiver_stopped``."""
        self.stopping = True
        if self._ticker is not None:
            self._ticker.cancel()
        if self._server is not None:
            self._server.close()
        for link in list(self.links.values()):
            await link.ws.close(code=WSCloseCode.GOING_AWAY, message=b"receiver stopping")
        if self._runner is not None:
            await self._runner.cleanup()
        for fork in self._udp:
            fork.close()

    async def _tick(self) -> None:
        """Measure scheduling delay (how late a ``lag_interval_s`` sleep wakes up), and notice
        streams that went silent."""
        loop = asyncio.get_running_loop()
        interval = self.limits.lag_interval_s
        while True:
            t0 = loop.time()
            await asyncio.sleep(interval)
            self.lags.append(max(0.0, loop.time() - t0 - interval))  # a clock read early is on time, not -4.5e-11 s
            self._notice_silence(time.time_ns())
            if self._waiting:
                self._sweep(time.monotonic())

    def _sweep(self, now: float) -> None:
        """Close the HTTP connections past their deadline, each recorded once (``webhook_errors``,
        reason "timeout"; a refused body's rest is not: its 413 is the record)."""
        for conn in [conn for conn in self._waiting if conn.deadline <= now]:
            self._waiting.discard(conn)
            conn.timed_out = True
            transport = conn.transport
            if conn.phase is _HEADER or conn.phase is _BODY:
                header = conn.phase is _HEADER
                limit = self.limits.header_timeout_s if header else self.limits.body_timeout_s
                what = "a complete request header" if header else "the whole webhook body"
                peer = transport.get_extra_info("peername") if transport is not None else None
                self.counters["webhook_timeouts"] += 1
                self.store.add_webhook_error(Reason.TIMEOUT, f"no {what} within {limit:g} s; connection closed",
                                             peer[0] if peer else None, conn.head if header else b"",
                                             time.time_ns())
            if transport is not None:
                transport.abort()   # type: ignore[attr-defined]

    def _notice_silence(self, now_ns: int) -> None:
        """A started stream with no message for ``stream_silence_s`` gets one ``silent`` row in
        ``stream_errors`` (and a "stream.error" event with that reason) per silence; the stream goes on, and
        the gap shows in ``frames`` when media resumes."""
        limit_ns = int(self.limits.stream_silence_s * 1e9)
        for link in list(self.links.values()):
            if not link.silent and link.info is not None and not link.protocol.ended \
                    and now_ns - link.last_ns > limit_ns:
                link.silent = True
                seconds = (now_ns - link.last_ns) / 1e9
                self._stream_error(link, Reason.SILENT, f"no message for {seconds:.1f} s "
                                   f"(limit {self.limits.stream_silence_s} s)", "", now_ns)

    # -- forked RTP ---------------------------------------------------------------------------

    def _on_datagram(self, target: str, data: bytes, ns: int, sender: tuple[Any, ...]) -> None:
        """One datagram on a fork port: parsed by ``wire.rtp`` and stored, or recorded as an error."""
        counters = self.counters
        counters["udp_packets"] += 1
        counters["udp_bytes"] += len(data)
        try:
            packet = rtp.parse_fork_packet(data)
        except rtp.RtpError as exc:
            counters["udp_errors"] += 1
            self.store.add_rtp_error(target, exc.reason, exc.detail, data, ns)
            return
        self.store.add_packet(target, packet, ns, sender)

    # -- webhooks -----------------------------------------------------------------------------

    async def _on_webhook(self, request: web.Request) -> web.Response:
        conn = _connection(request)
        limit, declared = self.limits.max_webhook_size, request.content_length
        if declared is not None and declared > limit:   # refused now, not after a slow body
            if conn is not None:
                conn.expect(_DRAINING, self.limits.body_timeout_s)
            return self._reject_webhook(request, webhooks.WebhookTooLargeError(
                Reason.TOO_LARGE, f"Content-Length {declared} is over max_webhook_size ({limit} bytes); refused "
                "before reading the body"), b"", time.time_ns())
        if conn is not None:
            conn.expect(_BODY, self.limits.body_timeout_s)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            return self._reject_webhook(request, webhooks.WebhookTooLargeError(Reason.TOO_LARGE, str(exc)), b"",
                                        time.time_ns())
        except ConnectionError as exc:      # the peer vanished mid-body: recorded, nobody to answer
            if conn is not None and conn.timed_out:     # closed by the sweep, which recorded it
                return web.Response(status=408)
            return self._reject_webhook(request, webhooks.MalformedWebhookError(
                Reason.CONNECTION_ERROR, f"the connection ended before the body was complete ({exc!r})"), b"",
                time.time_ns())
        finally:
            if conn is not None and conn.phase is _BODY:
                conn.expect(_BUSY, None)
        ns = _read_ns(request)
        self.counters["webhooks"] += 1
        self.counters["webhook_bytes"] += len(body)
        verified = self.verify_key is not None
        try:
            if verified:
                webhooks.verify(body, request.headers, self.verify_key, tolerance=self.limits.signature_tolerance_s)
                self.signature_failures = 0
            event = webhooks.parse_event(body)
        except webhooks.WebhookError as exc:
            return self._reject_webhook(request, exc, body, ns)
        if self.store.add_event(event, verified, ns):
            self.bus.emit(event.event_type, lambda: {
                "received_at": pd.Timestamp(ns, tz="UTC"), "event_id": event.id, "occurred_at": event.occurred_at,
                "call_control_id": event.payload.get("call_control_id"), "verified": verified,
                "attempt": event.attempt, "payload": copy.deepcopy(event.payload),
            })
        return web.Response(status=200)

    def _reject_webhook(self, request: web.Request, exc: webhooks.WebhookError, body: bytes, ns: int) -> web.Response:
        rejected = isinstance(exc, webhooks.SignatureVerificationError)
        self.counters["webhooks_rejected" if rejected else "webhooks_malformed"] += 1
        self.store.add_webhook_error(exc.reason, exc.detail, request.remote, body, ns)
        if rejected:
            self.signature_failures += 1
            if self.signature_failures == self.limits.signature_failures_warning:
                self.warn(_signature_warning(self.signature_failures, exc, self.limits.signature_tolerance_s))
        return web.json_response({"error": exc.reason.value, "detail": exc.detail}, status=exc.http_status)

    async def _on_selftest(self, request: web.Request) -> web.Response:
        """``/selftest?nonce=...`` (``wire.selftest``): echoes the nonce; unsigned, stored nowhere."""
        nonce = request.query.get("nonce")
        problem = selftest.nonce_error(nonce)
        if problem is not None or nonce is None:
            return web.json_response({"error": "bad_nonce", "detail": problem}, status=400)
        return web.json_response(selftest.answer(nonce, _read_ns(request), self.port))

    # -- media streams ----------------------------------------------------------------------

    async def _on_stream(self, request: web.Request) -> web.StreamResponse:
        connected_ns = _read_ns(request)
        limit = self.limits.max_message_size
        protocol = stream.StreamConnection(auth_token=self.stream_auth_token, max_message_size=limit)
        refused = protocol.open(request.headers.get(media.AUTH_TOKEN_HEADER))
        if refused is not None:
            self.counters["ws_refused"] += 1
            self._stream_error(None, refused.reason, refused.detail, "", connected_ns)
            return web.Response(status=403, text="stream auth token does not match")
        ws = web.WebSocketResponse(max_msg_size=defaults.HARD_LIMIT_FACTOR * limit, autoping=True)
        await ws.prepare(request)
        self.counters["ws_connections"] += 1
        link = Link(ws, protocol, connected_ns)
        reason = stream.EndReason.CLOSED
        stamped = request.transport.get_protocol() if request.transport is not None else None
        if not isinstance(stamped, _Stamped):
            raise TypeError("the media WebSocket must be served through Ingest.open()")
        # Per-message names bound once: attribute lookups cost as much as the work here.
        counters, add_frame, bus, receive_text = self.counters, self.store.add_frame, self.bus, protocol.receive_text
        text, media_frame = WSMsgType.TEXT, media.Media
        try:
            async for msg in ws:
                ns = link.last_ns = stamped.read_ns
                if link.silent:
                    link.silent = False
                if msg.type is text:
                    data = msg.data
                    counters["ws_messages"] += 1
                    counters["ws_bytes"] += len(data)
                    event = receive_text(data)
                    if type(event) is media_frame:          # the hot path, inline
                        info = link.info or self._adopt(link, event.stream_id)
                        add_frame(info, event.track, event.sequence_number, event.chunk, event.timestamp,
                                  event.payload, ns)
                        if bus.active:
                            self._emit_media(info, event, ns)
                        continue
                elif msg.type is WSMsgType.BINARY:
                    data = msg.data
                    counters["ws_messages"] += 1
                    counters["ws_bytes"] += len(data)
                    event = protocol.receive_binary(data)
                else:
                    exc = ws.exception()
                    big = getattr(exc, "code", None) == WSCloseCode.MESSAGE_TOO_BIG
                    reason = stream.EndReason.MESSAGE_TOO_BIG if big else stream.EndReason.ERROR
                    self._stream_error(link, Reason.MESSAGE_TOO_BIG if big else Reason.CONNECTION_ERROR,
                                       str(exc), "", ns)
                    continue
                self._on_event(link, event, data, ns)
                if type(event) is stream.Refused:
                    reason = stream.EndReason.AUTH_FAILED
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"stream auth token required")
                    break
        finally:
            link.outbound.cancel()
            reason = stream.EndReason.RECEIVER_STOPPED if self.stopping else reason
            ended = protocol.close(reason)
            if ended is not None:
                self._end(link, ended, time.time_ns())
            elif link.info is not None:     # stopped before: the socket's end is still an event
                self._emit_closed(link.info, reason.value)
        return ws

    def _on_event(self, link: Link, event: stream.Event, raw: str | bytes, ns: int) -> None:
        """Everything but media: record it in the store and tell the listeners."""
        at = pd.Timestamp(ns, tz="UTC")
        match event:
            case stream.Started(frame=start, authenticated=authenticated, replaced=replaced):
                if replaced is not None:
                    self._end(link, replaced, ns)
                link.info = self.store.start_stream(start, ns, link.connected_ns, authenticated)
                self.links[start.stream_id] = link
                self.bus.emit("stream.start", lambda: {
                    "received_at": at, "stream_id": start.stream_id, "call_control_id": start.call_control_id,
                    "media_format": start.media_format.to_dict(), "custom_parameters": dict(start.custom_parameters)})
            case stream.Stopped(frame=stop):
                info = link.info or self._adopt(link, stop.stream_id)
                self.store.end_stream(info, ns, stream.EndReason.STOP.value, stopped=True)
                self._emit_stream(info, "stream.stop", at)
            case media.Dtmf(stream_id=stream_id, digit=digit):
                info = link.info or self._adopt(link, stream_id)
                self.store.add_dtmf(info, event.occurred_at, event.sequence_number, digit, ns)
                self._emit_stream(info, "stream.dtmf", at, digit=digit)
            case media.Mark(stream_id=stream_id, name=name):
                info = link.info or self._adopt(link, stream_id)
                self.store.add_mark(info, event.sequence_number, name, ns)
                self._emit_stream(info, "stream.mark", at, name=name)
            case media.ErrorFrame(code=code, title=title, detail=detail):
                stream_id = event.stream_id or (link.info.stream_id if link.info else None)
                self.store.add_stream_error(stream_id, "telnyx", title, detail, raw, ns, code)  # Telnyx's own title
                self.bus.emit("stream.error", lambda: {"stream_id": stream_id, "origin": "telnyx", "reason": title,
                                                       "code": code, "detail": detail})
            case stream.Rejected(reason=reason, detail=detail, stream_id=stream_id):
                self._stream_error(link, reason, detail, raw, ns, stream_id)
            case stream.Refused(reason=reason, detail=detail):
                self.counters["ws_refused"] += 1
                self._stream_error(link, reason, detail, raw, ns)

    def _emit_stream(self, info: StreamInfo, event_type: str, at: pd.Timestamp, **fields: Any) -> None:
        self.bus.emit(event_type, lambda: {"received_at": at, "stream_id": info.stream_id,
                                           "call_control_id": info.call_control_id, **fields})

    def _adopt(self, link: Link, stream_id: str) -> StreamInfo:
        """A stream first named by a frame other than ``start`` (its ``start`` never came):
        connected when its socket opened."""
        info = link.info = self.store.stream(stream_id, link.connected_ns)
        self.links[stream_id] = link
        return info

    def _end(self, link: Link, ended: stream.Ended, ns: int) -> None:
        info = self.store.stream(ended.stream_id)
        reason = ended.reason.value
        self.store.end_stream(info, ns, reason)
        if self.links.get(ended.stream_id) is link:
            del self.links[ended.stream_id]
        self._emit_closed(info, reason)

    def _emit_closed(self, info: StreamInfo, reason: str) -> None:
        """``stream.closed``: the socket that carried this stream is gone (or it was replaced)."""
        self.bus.emit("stream.closed", lambda: {"stream_id": info.stream_id,
                                                "call_control_id": info.call_control_id, "reason": reason})

    def _stream_error(self, link: Link | None, reason: Reason, detail: str, raw: str | bytes, ns: int,
                      stream_id: str | None = None) -> None:
        self.counters["stream_errors"] += 1
        if stream_id is None and link is not None and link.info is not None:
            stream_id = link.info.stream_id
        self.store.add_stream_error(stream_id, "receiver", reason, detail, raw, ns)
        self.bus.emit("stream.error", lambda: {"stream_id": stream_id, "origin": "receiver", "reason": reason.value,
                                               "detail": detail})

    def _emit_media(self, info: StreamInfo, frame: media.Media, ns: int) -> None:
        self.bus.emit("stream.media", lambda: {
            "received_at": pd.Timestamp(ns, tz="UTC"), "stream_id": frame.stream_id,
            "call_control_id": info.call_control_id, "track": frame.track, "chunk": frame.chunk,
            "payload": frame.payload})


def _warn_here(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=2)


#: The likely cause of a run of signature failures, by the last one's reason.
_CAUSES = {
    Reason.STALE: "clock skew: this machine's clock and the sender's differ by more than the replay window "
                  "of {tolerance:g} s (check NTP), or the webhooks are replayed",
    Reason.MISSING_HEADER: "they are not signed: not sent by Telnyx, or a proxy strips the telnyx-timestamp and "
                           "telnyx-signature-ed25519 headers",
}
_CAUSES[Reason.FUTURE] = _CAUSES[Reason.STALE]
_CAUSES[Reason.BAD_TIMESTAMP] = _CAUSES[Reason.MISSING_HEADER]
_WRONG_KEY = ("a wrong public key: Receiver(public_key=...) must be the key that signs them (the Telnyx "
              "portal's public key for real calls, sb.public_key for a Sandbox)")


def _signature_warning(count: int, exc: webhooks.WebhookError, tolerance_s: float) -> str:
    cause = _CAUSES.get(exc.reason, _WRONG_KEY).format(tolerance=tolerance_s)
    return (f"telnyx_nb.Receiver: the last {count} webhooks all failed signature verification and were refused "
            f"(last reason {exc.reason.value!r}); see rx.webhook_errors. Likely cause: {cause}.")


def _small_reads(transport: asyncio.BaseTransport, size: int) -> None:
    """On stock asyncio, read at most ``size`` bytes per call (uvloop transports have no max_size)."""
    if hasattr(transport, "max_size"):
        transport.max_size = size


def _connection(request: web.BaseRequest) -> _Stamped | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, _Stamped) else None


@web.middleware
async def _in_handler(request: web.Request, handler: Any) -> web.StreamResponse:
    """A request's header is complete: its connection has no deadline while a handler has it
    (a media WebSocket for as long as it lasts), and is idle after (see ``_Stamped``)."""
    conn = _connection(request)
    if conn is not None:
        conn.expect(_BUSY, None)
    try:
        response: web.StreamResponse = await handler(request)
        return response
    finally:
        if conn is not None and conn.phase is _BUSY:
            conn.phase = _IDLE


def _read_ns(request: web.Request) -> int:
    """When the socket read that completed this request returned."""
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol.read_ns if isinstance(protocol, _Stamped) else time.time_ns()

