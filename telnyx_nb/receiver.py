"""Receiver: Telnyx webhooks, media-stream WebSockets and forked RTP into the store, live.

It runs its own asyncio loop (uvloop when importable) on a daemon thread of the kernel
process, so a blocking notebook cell neither delays nor drops anything, and nothing touches
the kernel's loop. Arrival times are stamped with ``time.time_ns()`` when the socket read
returns, on that thread. Public methods are synchronous and thread-safe.

All parsing and verification is ``telnyx_nb.wire``; this module only moves bytes.

Limits (all constructor arguments):
- ``max_message_size`` (1 MiB): a WebSocket text message longer than this is recorded in
  ``stream_errors`` (reason ``oversized``) and skipped; the stream goes on. A message longer
  than ``16 * max_message_size`` makes aiohttp close the connection (1009) to bound memory;
  the stream is marked ended (reason ``message_too_big``) and what was collected stays.
- ``max_webhook_size`` (1 MiB): larger webhook bodies get 413 and are recorded.
- Socket reads: 64 KiB per read on the stock asyncio loop (instead of asyncio's 256 KiB,
  which costs an mmap/munmap per small message, CPython #85451); that is also the largest
  UDP datagram, so none is truncated. UDP ``SO_RCVBUF`` 4 MiB (the kernel may cap it: see
  ``health()["udp_rcvbuf"]``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import socket
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from aiohttp import WSCloseCode, WSMsgType, web

from telnyx_nb.audio import resample, to_int16
from telnyx_nb.store import Session, StreamInfo, Store
from telnyx_nb.wire import codecs, media, rtp, webhooks

__all__ = ["Receiver"]

READ_SIZE = 64 * 1024
UDP_RCVBUF = 4 * 1024 * 1024
HARD_LIMIT_FACTOR = 16
FRAME_MS = 20
LAG_INTERVAL_S = 0.05
LAG_SAMPLES = 1200          # one minute of loop-lag samples at 50 ms

Callback = Callable[[dict[str, Any]], Any]


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _small_reads(transport: asyncio.BaseTransport) -> None:
    """On stock asyncio, read at most READ_SIZE per call (uvloop transports have no max_size)."""
    if hasattr(transport, "max_size"):
        transport.max_size = READ_SIZE


class _Stamped(asyncio.Protocol):
    """Wraps aiohttp's HTTP protocol to stamp each socket read with ``time.time_ns()``."""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self.inner = inner
        self.read_ns = time.time_ns()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _small_reads(transport)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.read_ns = time.time_ns()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _Fork(asyncio.DatagramProtocol):
    """One fork port: each datagram parsed by ``wire.rtp`` and stored, or recorded as an error."""

    def __init__(self, receiver: Receiver, target: str) -> None:
        self.receiver = receiver
        self.target = target

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _small_reads(transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        ns = time.time_ns()
        rx = self.receiver
        rx._counters["udp_packets"] += 1
        rx._counters["udp_bytes"] += len(data)
        try:
            packet = rtp.parse_fork_packet(data)
        except rtp.RtpError as exc:
            rx._counters["udp_errors"] += 1
            rx._store.add_rtp_error(self.target, exc.reason, exc.detail, data, ns)
            return
        rx._store.add_packet(self.target, packet, ns)


class _Connection:
    """One media WebSocket: its stream and the queue of frames the application sends back."""

    def __init__(self, ws: web.WebSocketResponse, connected_ns: int) -> None:
        self.ws = ws
        self.connected_ns = connected_ns
        self.info: StreamInfo | None = None
        self.tail: asyncio.Task | None = None
        self.pending: set[asyncio.Task] = set()


class Receiver(Session):
    """Collects everything Telnyx sends into DataFrames, on its own loop thread.

    ``rx = Receiver(public_key=...).start()`` serves ``POST /webhooks`` and the ``/stream``
    WebSocket on ``host:port`` (0 = ephemeral) and opens two UDP fork ports. URLs for Telnyx
    use ``public_url`` when given (``https://`` becomes ``wss://`` for the stream);
    ``fork_host`` is the address advertised in ``fork_rx``/``fork_tx`` (default ``host``).
    ``payload_types`` maps dynamic RTP payload types to encodings (e.g. ``{96: "L16"}``);
    ``l16_byteorder`` is the byte order of L16 payloads (disputed for Telnyx; "big" = RFC 2586).
    ``loop``: "auto" (uvloop if importable), "uvloop" or "asyncio".
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        public_url: str | None = None,
        public_key: str | bytes | None = None,
        stream_auth_token: str | None = None,
        max_message_size: int = 1 << 20,
        max_webhook_size: int = 1 << 20,
        fork_host: str | None = None,
        fork_ports: tuple[int, int] = (0, 0),
        payload_types: Mapping[int, str] | None = None,
        l16_byteorder: str = "big",
        loop: str = "auto",
    ) -> None:
        if l16_byteorder not in ("big", "little"):
            raise ValueError(f"l16_byteorder must be 'big' or 'little', got {l16_byteorder!r}")
        if loop not in ("auto", "uvloop", "asyncio"):
            raise ValueError(f"loop must be 'auto', 'uvloop' or 'asyncio', got {loop!r}")
        self.host, self.port = host, port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.public_key = public_key
        self._verify_key = webhooks.load_public_key(public_key) if public_key is not None else None
        self.stream_auth_token = stream_auth_token
        self.max_message_size = max_message_size
        self.max_webhook_size = max_webhook_size
        self.fork_host = fork_host or host
        self.fork_ports = list(fork_ports)
        self._l16_byteorder = l16_byteorder
        self._loop_kind = loop
        self._store = Store(payload_types=payload_types)
        self._counters = dict.fromkeys(
            ("webhooks", "webhook_bytes", "webhook_duplicates", "webhooks_rejected", "webhooks_malformed",
             "ws_connections", "ws_refused", "ws_messages", "ws_bytes", "stream_errors",
             "udp_packets", "udp_bytes", "udp_errors", "callback_errors"), 0)
        self._lags: deque[float] = deque(maxlen=LAG_SAMPLES)
        self._listeners: dict[str, list[Callback]] = {}
        self._callbacks: concurrent.futures.ThreadPoolExecutor | None = None
        self._connections: dict[str, _Connection] = {}
        self._warned_unverified = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._udp_rcvbuf = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Receiver:
        """Start the loop thread; returns once every socket listens (no-op when running)."""
        if self._thread is not None:
            return self
        self._loop = _new_loop(self._loop_kind)
        self._callbacks = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="telnyx_nb-callbacks")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="telnyx_nb-receiver", daemon=True)
        self._thread.start()
        try:
            ready.result()
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        return self

    async def astart(self) -> Receiver:
        """``start()`` for asyncio code."""
        return await asyncio.to_thread(self.start)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every socket (open streams end with reason "receiver_stopped") and the thread."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        self._thread = None
        self._callbacks.shutdown(wait=False)

    async def astop(self) -> None:
        """``stop()`` for asyncio code."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"listening on {self.webhook_url}" if self._thread else "stopped"
        return f"<telnyx_nb.Receiver {state}>"

    def _run(self, ready: concurrent.futures.Future) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(ready))
        finally:
            self._loop.close()

    async def _serve(self, ready: concurrent.futures.Future) -> None:
        self._stopping = asyncio.Event()
        try:
            await self._open()
        except BaseException as exc:
            await self._close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        ticker = asyncio.ensure_future(self._tick())
        await self._stopping.wait()
        ticker.cancel()
        await self._close()

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._server, self._udp = None, []
        app = web.Application(client_max_size=self.max_webhook_size)
        app.router.add_post("/webhooks", self._on_webhook)
        app.router.add_get("/stream", self._on_stream)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        factory = self._runner.server
        self._server = await loop.create_server(lambda: _Stamped(factory()), self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        for i, target in enumerate(("rx", "tx")):
            transport, _ = await loop.create_datagram_endpoint(
                lambda target=target: _Fork(self, target), local_addr=(self.host, self.fork_ports[i]))
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            self._udp_rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            self.fork_ports[i] = sock.getsockname()[1]
            self._udp.append(transport)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            await conn.ws.close(code=1001, message=b"receiver stopping")
        await self._runner.cleanup()
        for transport in self._udp:
            transport.close()

    async def _tick(self) -> None:
        """Measure scheduling delay: how late a 50 ms sleep wakes up."""
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            self._lags.append(loop.time() - t0 - LAG_INTERVAL_S)

    # -- addresses ---------------------------------------------------------------------------

    @property
    def _base(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """Where Telnyx should POST webhooks (the call's / connection's ``webhook_url``)."""
        return f"{self._base}/webhooks"

    @property
    def stream_url(self) -> str:
        """The ``stream_url`` for ``streaming_start`` (ws://, or wss:// behind an https public_url)."""
        parts = urlsplit(self._base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/stream"

    @property
    def fork_rx(self) -> str:
        """``rx`` target for ``fork_start``: the call's incoming RTP."""
        return f"udp:{self.fork_host}:{self.fork_ports[0]}"

    @property
    def fork_tx(self) -> str:
        """``tx`` target for ``fork_start``: the call's outgoing RTP."""
        return f"udp:{self.fork_host}:{self.fork_ports[1]}"

    # -- reads ----------------------------------------------------------------------------------

    def _table(self, name: str) -> pd.DataFrame:
        return self._store.table(name)

    def _payload(self, kind: str, key: int) -> bytes:
        return self._store.payload(kind, key)

    def expect_fork(self, call_control_id: str) -> None:
        """Attribute the next new RTP source on each fork port to this call (start_forking does this)."""
        self._store.claim_fork(call_control_id)

    def withdraw_fork(self, call_control_id: str) -> None:
        """Undo ``expect_fork``: the call's fork did not start (start_forking does this on errors)."""
        self._store.withdraw_fork(call_control_id)

    def health(self) -> dict[str, Any]:
        """Counters since start, loop lag p50/p99 (ms, last minute) and the loop in use.

        ``messages``/``bytes``/``errors`` sum webhooks, WebSocket messages and UDP datagrams;
        ``duplicates`` are re-delivered webhooks (stored once); ``rejected_webhooks`` failed
        verification; ``store_bytes`` is the memory of frames, packets and their payloads.
        """
        c = dict(self._counters)
        c["webhook_duplicates"] = self._store.duplicate_events
        lags = np.array(self._lags) * 1e3
        return {
            "messages": c["webhooks"] + c["ws_messages"] + c["udp_packets"],
            "bytes": c["webhook_bytes"] + c["ws_bytes"] + c["udp_bytes"],
            "errors": c["webhooks_malformed"] + c["webhooks_rejected"] + c["stream_errors"] + c["udp_errors"]
            + c["ws_refused"] + c["callback_errors"],
            "duplicates": c["webhook_duplicates"],
            "rejected_webhooks": c["webhooks_rejected"],
            **c,
            "open_streams": len(self._connections),
            "loop": type(self._loop).__module__.split(".")[0] if self._loop else None,
            "loop_lag_p50_ms": float(np.percentile(lags, 50)) if len(lags) else float("nan"),
            "loop_lag_p99_ms": float(np.percentile(lags, 99)) if len(lags) else float("nan"),
            "udp_rcvbuf": self._udp_rcvbuf,
            "store_bytes": self._store.nbytes(),
        }

    # -- callbacks ----------------------------------------------------------------------------

    def on(self, event_type: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event: dict)`` for each matching event; returns an unsubscribe function.

        ``event_type`` is a webhook type ("call.transcription", ...), a stream event
        ("stream.start", "stream.media", "stream.stop", "stream.dtmf", "stream.mark",
        "stream.error", "stream.closed") or "*" for all. Callbacks run in arrival order on one
        worker thread, never on the receiver's loop; an exception is counted and warned about.
        """
        self._listeners = {**self._listeners, event_type: [*self._listeners.get(event_type, []), callback]}

        def unsubscribe() -> None:
            callbacks = [cb for cb in self._listeners.get(event_type, []) if cb is not callback]
            self._listeners = {**self._listeners, event_type: callbacks}

        return unsubscribe

    def _emit(self, event_type: str, event: Callable[[], dict[str, Any]]) -> None:
        listeners = self._listeners
        callbacks = listeners.get(event_type, []) + listeners.get("*", [])
        if callbacks:
            payload = {"event_type": event_type, **event()}
            for callback in callbacks:
                self._callbacks.submit(self._call, callback, payload)

    def _call(self, callback: Callback, event: dict[str, Any]) -> None:
        try:
            callback(event)
        except Exception as exc:  # a user callback must not stop the others
            self._counters["callback_errors"] += 1
            warnings.warn(f"telnyx_nb callback {callback!r} raised {exc!r}", RuntimeWarning, stacklevel=1)

    # -- webhooks -----------------------------------------------------------------------------

    async def _on_webhook(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            return self._reject_webhook(request, "too_large", str(exc), b"", 413, "webhooks_malformed")
        ns = _read_ns(request)
        self._counters["webhooks"] += 1
        self._counters["webhook_bytes"] += len(body)
        verified = self._verify_key is not None
        if verified:
            try:
                webhooks.verify(body, request.headers, self._verify_key)
            except webhooks.SignatureVerificationError as exc:
                return self._reject_webhook(request, exc.reason, exc.detail, body, 401, "webhooks_rejected", ns)
        elif not self._warned_unverified:
            self._warned_unverified = True
            warnings.warn("telnyx_nb.Receiver has no public_key: webhooks are stored unverified (verified=False)",
                          UserWarning, stacklevel=1)
        try:
            event = webhooks.parse_event(body)
        except webhooks.MalformedWebhookError as exc:
            return self._reject_webhook(request, exc.reason, exc.detail, body, 400, "webhooks_malformed", ns)
        try:
            added = self._store.add_event(event, verified, ns)
        except OverflowError:
            return self._reject_webhook(request, "out_of_range", "meta.attempt does not fit in int64", body, 400,
                                        "webhooks_malformed", ns)
        if added:
            self._emit(event.event_type, lambda: {
                "received_at": pd.Timestamp(ns, tz="UTC"), "event_id": event.id, "occurred_at": event.occurred_at,
                "call_control_id": event.payload.get("call_control_id"), "verified": verified,
                "attempt": event.attempt, "payload": event.payload,
            })
        return web.Response(status=200)

    def _reject_webhook(self, request: web.Request, reason: str, detail: str, body: bytes, status: int,
                        counter: str, ns: int | None = None) -> web.Response:
        self._counters[counter] += 1
        self._store.add_webhook_error(reason, detail, request.remote, body, ns or time.time_ns())
        return web.json_response({"error": reason, "detail": detail}, status=status)

    # -- media streams ----------------------------------------------------------------------

    async def _on_stream(self, request: web.Request) -> web.StreamResponse:
        connected_ns = _read_ns(request)
        token = self.stream_auth_token
        header = request.headers.get(media.AUTH_TOKEN_HEADER)
        if token is not None and header is not None and not _same_token(header, token):
            return self._refuse(None, "upgrade header token does not match", connected_ns)
        ws = web.WebSocketResponse(max_msg_size=HARD_LIMIT_FACTOR * self.max_message_size, autoping=True)
        await ws.prepare(request)
        self._counters["ws_connections"] += 1
        conn = _Connection(ws, connected_ns)
        authenticated = token is not None and header is not None
        locked = token is not None and not authenticated
        reason = "closed"
        stamped = request.transport.get_protocol()
        # Per-message names bound once: enum and module attribute lookups cost as much as the checks.
        counters, limit, add_frame = self._counters, self.max_message_size, self._store.add_frame
        text, parse, media_frame = WSMsgType.TEXT, media.parse_frame, media.Media
        try:
            async for msg in ws:
                ns = stamped.read_ns
                if locked:
                    if not self._authenticates(msg, token):
                        self._refuse(conn, "no matching auth token in the upgrade header or connected frame", ns)
                        await ws.close(code=1008, message=b"stream auth token required")
                        reason = "auth_failed"
                        break
                    authenticated, locked = True, False
                if msg.type is not text:
                    reason = self._not_text(conn, ws, msg, ns) or reason
                    continue
                data = msg.data
                size = len(data)
                counters["ws_messages"] += 1
                counters["ws_bytes"] += size
                if size > limit:
                    self._stream_error(conn, "oversized", f"{size} characters, limit {limit}", data, ns)
                    continue
                try:
                    frame = parse(data)
                    if type(frame) is media_frame:          # the hot path, inline
                        info = conn.info
                        if info is None or info.stream_id != frame.stream_id:
                            info = self._stream(conn, frame.stream_id)
                        add_frame(info, frame.track, frame.sequence_number, frame.chunk, frame.timestamp, frame.payload, ns)
                        if self._listeners:
                            self._emit_media(info, frame, ns)
                    else:
                        self._on_frame(conn, frame, data, ns, authenticated)
                except media.FrameError as exc:
                    self._stream_error(conn, exc.reason, exc.detail, data, ns, exc.stream_id)
                except OverflowError as exc:
                    self._stream_error(conn, "out_of_range", str(exc), data, ns)
        finally:
            self._end(conn, reason)
        return ws

    def _authenticates(self, msg: Any, token: str) -> bool:
        """Without the upgrade header, the first message must be a ``connected`` frame carrying the token."""
        if msg.type is not WSMsgType.TEXT or len(msg.data) > self.max_message_size:
            return False
        try:
            frame = media.parse_frame(msg.data)
        except media.FrameError:
            return False
        return type(frame) is media.Connected and frame.auth_token is not None and _same_token(frame.auth_token, token)

    def _not_text(self, conn: _Connection, ws: web.WebSocketResponse, msg: Any, ns: int) -> str | None:
        """Record a binary message or a connection error; returns the end reason for an error."""
        if msg.type is WSMsgType.BINARY:
            self._counters["ws_messages"] += 1
            self._counters["ws_bytes"] += len(msg.data)
            self._stream_error(conn, "binary_frame", f"{len(msg.data)}-byte binary message; Telnyx sends text", msg.data, ns)
            return None
        exc = ws.exception()
        reason = "message_too_big" if getattr(exc, "code", None) == WSCloseCode.MESSAGE_TOO_BIG else "error"
        self._stream_error(conn, reason, str(exc), "", ns)
        return reason

    def _refuse(self, conn: _Connection | None, detail: str, ns: int) -> web.Response:
        self._counters["ws_refused"] += 1
        self._stream_error(conn, "auth_failed", detail, "", ns)
        return web.Response(status=403, text="stream auth token does not match")

    def _end(self, conn: _Connection, reason: str) -> None:
        for task in conn.pending:
            task.cancel()
        info = conn.info
        if info is not None:
            self._store.end_stream(info, time.time_ns(), reason if not self._stopping.is_set() else "receiver_stopped")
            if self._connections.get(info.stream_id) is conn:
                del self._connections[info.stream_id]
            self._emit("stream.closed", lambda: {"stream_id": info.stream_id,
                                                 "call_control_id": info.call_control_id, "reason": reason})

    def _stream_error(self, conn: _Connection | None, reason: str, detail: str, raw: str | bytes, ns: int,
                      stream_id: str | None = None) -> None:
        self._counters["stream_errors"] += 1
        stream_id = stream_id or (conn.info.stream_id if conn is not None and conn.info is not None else None)
        self._store.add_stream_error(stream_id, "receiver", reason, detail, raw, ns)
        self._emit("stream.error", lambda: {"stream_id": stream_id, "origin": "receiver", "reason": reason, "detail": detail})

    def _stream(self, conn: _Connection, stream_id: str) -> StreamInfo:
        info = conn.info
        if info is None or info.stream_id != stream_id:
            info = self._store.stream(stream_id)
            if conn.info is None:
                conn.info = info
                self._connections[stream_id] = conn
        return info

    def _emit_media(self, info: StreamInfo, frame: media.Media, ns: int) -> None:
        self._emit("stream.media", lambda: {
            "received_at": pd.Timestamp(ns, tz="UTC"), "stream_id": frame.stream_id,
            "call_control_id": info.call_control_id, "track": frame.track, "chunk": frame.chunk,
            "payload": frame.payload})

    def _on_frame(self, conn: _Connection, frame: media.TelnyxFrame, data: str, ns: int, authenticated: bool) -> None:
        kind = type(frame)
        if kind is media.Start:
            if conn.info is not None and conn.info.stream_id != frame.stream_id:  # a new stream on this socket
                self._end(conn, "replaced")
            conn.info = self._store.start_stream(frame, ns, conn.connected_ns, authenticated)
            self._connections[frame.stream_id] = conn
            self._emit("stream.start", lambda: {"received_at": pd.Timestamp(ns, tz="UTC"), "stream_id": frame.stream_id,
                                                "call_control_id": frame.call_control_id,
                                                "media_format": frame.media_format.to_dict(),
                                                "custom_parameters": dict(frame.custom_parameters)})
        elif kind is media.Stop:
            info = self._stream(conn, frame.stream_id)
            self._store.end_stream(info, ns, "stop", stopped=True)
            self._emit("stream.stop", lambda: {"received_at": pd.Timestamp(ns, tz="UTC"), "stream_id": frame.stream_id,
                                               "call_control_id": info.call_control_id})
        elif kind is media.Dtmf:
            info = self._stream(conn, frame.stream_id)
            self._store.add_dtmf(info, frame.occurred_at, frame.sequence_number, frame.digit, ns)
            self._emit("stream.dtmf", lambda: {"received_at": pd.Timestamp(ns, tz="UTC"), "stream_id": frame.stream_id,
                                               "call_control_id": info.call_control_id, "digit": frame.digit})
        elif kind is media.Mark:
            info = self._stream(conn, frame.stream_id)
            self._store.add_mark(info, frame.sequence_number, frame.name, ns)
            self._emit("stream.mark", lambda: {"received_at": pd.Timestamp(ns, tz="UTC"), "stream_id": frame.stream_id,
                                               "call_control_id": info.call_control_id, "name": frame.name})
        elif kind is media.ErrorFrame:
            stream_id = frame.stream_id or (conn.info.stream_id if conn.info else None)
            self._store.add_stream_error(stream_id, "telnyx", frame.title or "telnyx_error", frame.detail, data, ns, frame.code)
            self._emit("stream.error", lambda: {"stream_id": stream_id, "origin": "telnyx", "reason": frame.title,
                                                "code": frame.code, "detail": frame.detail})

    # -- bidirectional: application -> Telnyx ------------------------------------------------------

    def _open_connection(self, stream_id: str) -> _Connection:
        conn = self._connections.get(stream_id)
        if conn is None or self._loop is None:
            raise LookupError(f"no open media stream {stream_id!r}")
        return conn

    def _enqueue(self, conn: _Connection, frames: list[media.AppFrame], paced: bool) -> concurrent.futures.Future:
        """Send frames after everything queued before on this stream (so a mark follows its audio)."""
        async def send() -> None:
            this = asyncio.current_task()
            previous, conn.tail = conn.tail, this
            conn.pending.add(this)
            try:
                if previous is not None:
                    await asyncio.wait({previous})
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                for k, frame in enumerate(frames):
                    await conn.ws.send_str(media.dumps(frame))
                    if paced:
                        await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME_MS / 1000 - loop.time()))
            finally:
                conn.pending.discard(this)

        return asyncio.run_coroutine_threadsafe(send(), self._loop)

    def send_audio(self, stream_id: str, samples: np.ndarray, rate: int, *, encoding: str | None = None
                   ) -> concurrent.futures.Future:
        """Play audio into the call: resampled, encoded and sent as paced 20 ms ``media`` frames.

        ``samples``: int16, or float in [-1, 1]. The codec is the stream's ``media_format``
        unless ``encoding`` names another (Telnyx's ``stream_bidirectional_codec`` must match,
        with ``stream_bidirectional_mode="rtp"``). Resampling is linear interpolation to the
        codec's rate. Returns a Future that completes when the last frame was sent.
        """
        conn = self._open_connection(stream_id)
        name = encoding or conn.info.encoding
        codec = codecs.get_codec(name, l16_byteorder=self._l16_byteorder)
        target = conn.info.sample_rate if encoding is None and conn.info.sample_rate else codec.sample_rate
        payload = codec.encode(resample(to_int16(samples), rate, target))
        step = codec.frame_bytes(FRAME_MS, target)
        frames = [media.AppMedia(payload[i : i + step]) for i in range(0, len(payload), step)]
        return self._enqueue(conn, frames, paced=True)

    async def asend_audio(self, stream_id: str, samples: np.ndarray, rate: int, *, encoding: str | None = None) -> None:
        """``send_audio`` for asyncio code: returns when the last frame was sent."""
        await asyncio.wrap_future(self.send_audio(stream_id, samples, rate, encoding=encoding))

    def mark(self, stream_id: str, name: str) -> concurrent.futures.Future:
        """Send a ``mark`` after the audio queued so far; Telnyx echoes it (``rx.marks``) once played."""
        return self._enqueue(self._open_connection(stream_id), [media.AppMark(name)], paced=False)

    def clear(self, stream_id: str) -> concurrent.futures.Future:
        """Drop audio still queued here and send ``clear`` (Telnyx flushes its queue, echoes marks)."""
        conn = self._open_connection(stream_id)

        async def clear() -> None:
            for task in list(conn.pending):
                task.cancel()
            conn.tail = None
            await conn.ws.send_str(media.dumps(media.Clear()))

        return asyncio.run_coroutine_threadsafe(clear(), self._loop)


def _same_token(offered: str, token: str) -> bool:
    """Constant-time comparison; header text may carry undecodable bytes as surrogates."""
    return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))


def _read_ns(request: web.Request) -> int:
    """When the socket read that completed this request or message returned."""
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol.read_ns if isinstance(protocol, _Stamped) else time.time_ns()
