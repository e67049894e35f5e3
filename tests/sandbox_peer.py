"""An independent peer for the sandbox tests: an application written from Telnyx's docs.

It runs an aiohttp server (``/webhooks`` and a WebSocket ``/stream``) and UDP sockets on its
own loop thread (the project's ``LoopThread``: plumbing, not protocol) and records what
arrives, parsing with plain ``json``/``struct``/``base64`` (not with telnyx_nb.wire), so that
the sandbox is checked against the protocol rather than against itself. Its own plumbing is
checked in test_sandbox_peer.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from telnyx_nb.loopthread import LoopThread

from waiting import timeout, wait_until


@dataclass
class Webhook:
    received_ns: int
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event_type(self) -> str:
        return self.json["data"]["event_type"]

    @property
    def payload(self) -> dict[str, Any]:
        return self.json["data"]["payload"]


@dataclass
class WsConn:
    headers: dict[str, str]
    messages: list[tuple[int, str]] = field(default_factory=list)
    closed_ns: int | None = None
    close_code: int | None = None
    ws: web.WebSocketResponse | None = None

    @property
    def frames(self) -> list[dict[str, Any]]:
        return [json.loads(text) for _, text in self.messages]

    def events(self) -> list[str]:
        return [f["event"] for f in self.frames]

    def media(self, track: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["event"] == "media" and (track is None or f["media"]["track"] == track)]


class Peer:
    """``webhook_url``, ``stream_url``, ``udp_rx``/``udp_tx`` targets, and what they received."""

    def __init__(self) -> None:
        self.webhooks: list[Webhook] = []
        self.conns: list[WsConn] = []
        self.udp: dict[str, list[tuple[int, bytes]]] = {"rx": [], "tx": []}
        self.fail_first: dict[str, int] = {}  # event id -> failures still to answer with 500
        self.fail_every_first_attempt = False
        self._io = LoopThread("sandbox-peer", "asyncio")
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> Peer:
        self._io.start()
        self._io.run(self._start(), timeout(10))
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhooks", self._webhook)
        app.router.add_get("/stream", self._stream)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._udp_transports = []
        self.udp_ports = {}
        for name in ("rx", "tx"):
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda name=name: _Udp(self, name), local_addr=("127.0.0.1", 0))
            self._udp_transports.append(transport)
            self.udp_ports[name] = transport.get_extra_info("sockname")[1]

    def stop(self) -> None:
        async def _stop() -> None:
            for t in self._udp_transports:
                t.close()
            await self._runner.cleanup()
        self._io.run(_stop(), timeout(10))
        self._io.stop(timeout(5))

    def __enter__(self) -> Peer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ---------------------------------------------------------------------
    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    def udp_target(self, name: str) -> str:
        return f"udp:127.0.0.1:{self.udp_ports[name]}"

    # --- handlers ----------------------------------------------------------------------
    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        received = time.time_ns()
        status = 200
        try:
            data = json.loads(body)
            event_id, attempt = data["data"]["id"], data["meta"]["attempt"]
        except (ValueError, KeyError):
            event_id, attempt = None, 1
        with self._lock:
            if self.fail_every_first_attempt and attempt == 1:
                status = 500
            elif event_id is not None and self.fail_first.get(event_id, 0) > 0:
                self.fail_first[event_id] -= 1
                status = 500
            self.webhooks.append(Webhook(received, dict(request.headers), body, status))
        return web.Response(status=status, text="ok" if status == 200 else "boom")

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = WsConn(dict(request.headers), ws=ws)
        with self._lock:
            self.conns.append(conn)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                conn.messages.append((time.time_ns(), message.data))
        conn.closed_ns = time.time_ns()
        conn.close_code = ws.close_code
        return ws

    # --- helpers for tests ------------------------------------------------------------------
    def send(self, conn: WsConn, text: str) -> None:
        """Send a text frame back to the sandbox on ``conn`` (bidirectional tests)."""
        self._io.run(conn.ws.send_str(text), timeout(5))

    def events(self, ccid: str | None = None) -> list[Webhook]:
        """Delivered (2xx) webhooks, optionally of one call, in arrival order."""
        with self._lock:
            hooks = list(self.webhooks)
        return [h for h in hooks if h.status == 200 and (ccid is None or h.payload.get("call_control_id") == ccid)]

    def types(self, ccid: str | None = None) -> list[str]:
        return [h.event_type for h in self.events(ccid)]

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition") -> None:
        wait_until(predicate, timeout, what)

    def stream_of(self, ccid: str, timeout: float = 10.0) -> WsConn:
        """The WebSocket connection whose ``start`` frame names call ``ccid``."""
        def find() -> WsConn | None:
            for conn in list(self.conns):
                if any(f["event"] == "start" and f["start"]["call_control_id"] == ccid for f in conn.frames):
                    return conn
            return None
        self.wait_for(lambda: find() is not None, timeout, f"a stream of {ccid}")
        return find()

    def wait_event(self, ccid: str, event_type: str, count: int = 1, timeout: float = 10.0) -> list[Webhook]:
        self.wait_for(lambda: self.types(ccid).count(event_type) >= count, timeout, f"{count}x {event_type}")
        return [h for h in self.events(ccid) if h.event_type == event_type]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, peer: Peer, name: str) -> None:
        self.peer, self.name = peer, name

    def datagram_received(self, data: bytes, addr) -> None:
        self.peer.udp[self.name].append((time.time_ns(), data))


def parse_rtp(data: bytes) -> dict[str, Any]:
    """Independent RTP/STREP parser (docs/protocol.md, "RTP fork")."""
    strep = None
    if data[0] >> 6 == 0b11:
        strep = {"version": (data[0] >> 2) & 0xF, "leg": (data[0] >> 1) & 1, "direction": data[0] & 1,
                 "header_len": data[1], "call_leg_id": data[8:24]}
        data = data[data[1]:]
    b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
    return {"strep": strep, "version": b0 >> 6, "pt": b1 & 0x7F, "marker": b1 >> 7, "seq": seq, "ts": ts,
            "ssrc": ssrc, "payload": data[12 + 4 * (b0 & 0x0F):]}



_numbers = (f"+1555{n:07d}" for n in itertools.count(200))


def dial(sb: Any, client: Any, peer: Peer, scenario: Any = None, codec: str = "PCMU", **kwargs: Any) -> str:
    """Dial a sandbox call whose webhooks go to the peer (routed to ``scenario`` when given); wait for the answer."""
    to = next(_numbers)
    if scenario is not None:
        sb.route(to, scenario, codec=codec)
    call = client.calls.dial(connection_id=sb.connection_id, to=to, from_="+15550199",
                             webhook_url=peer.webhook_url, **kwargs)
    ccid = call.data.call_control_id
    peer.wait_event(ccid, "call.answered")
    return ccid
