"""Faults a receiver meets in the field: none crashes or stalls it, each is visible, and nothing
it accepted is lost."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest
from test_receiver import envelope, media_frame, start_frame, wait_until, ws_send

import telnyx_nb as tnb
from telnyx_nb.wire import rtp, webhooks

from waiting import timeout


@pytest.fixture
def signer():
    return webhooks.Signer()


@pytest.fixture
def rx(signer):
    with tnb.Receiver(public_key=signer.public_key) as receiver:
        yield receiver


def signed(signer: webhooks.Signer, event_type: str, event_id: str) -> tuple[bytes, dict[str, str]]:
    body = webhooks.encode_body(webhooks.build_envelope(event_type, {"call_control_id": "v3:f"}, event_id=event_id))
    return body, {**signer.sign(body), "content-type": "application/json"}


def test_a_thousand_webhooks_at_once_duplicates_and_out_of_order(rx, signer):
    deliveries = [signed(signer, "call.transcription", f"e{n:04d}") for n in range(1000)]
    deliveries += deliveries[:100]                                      # re-deliveries of 100 events
    deliveries.reverse()                                                # and every one out of order

    async def post_all() -> list[int]:
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def post(body: bytes, headers: dict[str, str]) -> int:
                async with session.post(rx.webhook_url, data=body, headers=headers) as response:
                    return response.status
            return await asyncio.gather(*(post(body, headers) for body, headers in deliveries))

    statuses = asyncio.run(post_all())
    assert statuses == [200] * 1100
    wait_until(lambda: len(rx.events) == 1000)
    assert sorted(rx.events["event_id"]) == [f"e{n:04d}" for n in range(1000)]
    assert rx.health()["duplicates"] == 100 and rx.events["verified"].all()


def test_slow_clients_holding_the_port_do_not_stop_webhooks(rx, signer):
    """Slowloris: 200 connections that send half a request header and wait."""
    host, port = "127.0.0.1", rx.port
    slow = []
    try:
        for _ in range(200):
            sock = socket.create_connection((host, port), timeout=timeout(5))
            sock.sendall(b"POST /webhooks HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        body, headers = signed(signer, "call.answered", "while-slow")

        async def post() -> int:
            async with aiohttp.ClientSession() as session, \
                    session.post(rx.webhook_url, data=body, headers=headers) as response:
                return response.status

        assert asyncio.run(post()) == 200
        wait_until(lambda: rx.events["event_id"].tolist() == ["while-slow"])
    finally:
        for sock in slow:
            sock.close()


def test_a_udp_flood_is_all_accounted_for(rx):
    """50,000 datagrams back to back, half of them garbage: every one the kernel handed over is a
    row or an error row."""
    port = int(rx.fork_rx.rsplit(":", 1)[1])
    packet = rtp.build_rtp(rtp.RtpPacket(0, 1, 160, 0x77, b"\xff" * 160))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(50_000):
            sock.sendto(packet if n % 2 else b"\x00junk", ("127.0.0.1", port))
    def settled() -> bool:                              # the count stopped moving: the flood is read
        count = rx.health()["udp_packets"]
        time.sleep(0.2)
        return count > 0 and count == rx.health()["udp_packets"] == len(rx.rtp) + len(rx.rtp_errors)

    wait_until(settled)
    health = rx.health()
    assert health["udp_errors"] == len(rx.rtp_errors) and len(rx.rtp) > 0
    assert health["udp_packets"] <= 50_000                            # the kernel may drop some; never more


def test_a_peer_that_vanishes_mid_frame_and_a_stream_that_never_stops(rx):
    async def vanish_mid_frame() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
            await ws.send_str(start_frame("cut"))
            await ws.send_str(media_frame("cut", 2, "inbound", 1, b"\xff" * 160))
            transport = ws._response.connection.transport  # type: ignore[union-attr]
            transport.write(b"\x81\xfe\x10\x00")            # a text frame header announcing 4096 bytes...
            transport.write(b"\x00" * 10)                   # ...and only 10 of them
            transport.abort()

    asyncio.run(vanish_mid_frame())
    never_stops = [start_frame("no-stop"), media_frame("no-stop", 2, "inbound", 1, b"\xff" * 160)]
    asyncio.run(ws_send(rx.stream_url, never_stops))
    wait_until(lambda: len(rx.streams) == 2 and rx.streams["ended_at"].notna().all())
    streams = rx.streams.set_index("stream_id")
    assert streams.loc["cut", "end_reason"] in ("closed", "error")     # the socket's end, whatever it was
    assert streams.loc["no-stop", "end_reason"] == "closed" and streams["stopped_at"].isna().all()
    assert sorted(rx.frames["stream_id"]) == ["cut", "no-stop"]      # what arrived whole is kept


def test_oversized_webhook_bodies_and_garbage_methods(rx):
    async def probe() -> tuple[int, int, int]:
        async with aiohttp.ClientSession() as session:
            async with session.post(rx.webhook_url, data=b"x" * (2 << 20)) as big:
                big_status = big.status
            async with session.get(rx.webhook_url) as get:
                get_status = get.status
            async with session.post(rx.webhook_url, data=envelope("call.answered", {})) as unsigned:
                unsigned_status = unsigned.status
        return big_status, get_status, unsigned_status

    assert asyncio.run(probe()) == (413, 405, 401)
    wait_until(lambda: len(rx.webhook_errors) == 2)
    assert rx.webhook_errors["reason"].tolist() == ["too_large", "missing_header"] and rx.events.empty


def test_a_stream_that_goes_silent_is_recorded_and_goes_on():
    with pytest.warns(UserWarning, match="unverified"), tnb.Receiver(stream_silence_s=0.3) as rx:
        async def pause_mid_stream() -> None:
            async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
                await ws.send_str(start_frame("quiet"))
                await ws.send_str(media_frame("quiet", 2, "inbound", 1, b"\xff" * 160))
                await asyncio.to_thread(wait_until, lambda: (rx.stream_errors["reason"] == "silent").any())
                await ws.send_str(media_frame("quiet", 3, "inbound", 2, b"\xff" * 160))   # it speaks again

        asyncio.run(pause_mid_stream())
        wait_until(lambda: len(rx.frames) == 2)
        errors = rx.stream_errors
        assert errors["reason"].tolist() == ["silent"] and errors["stream_id"].tolist() == ["quiet"]
        assert "no message for" in errors["detail"].iloc[0]
        gap = rx.quality().loc[0, "max_gap_ms"]
        assert gap > 300                                  # the silence shows as a gap between chunks 1 and 2
    assert rx.streams["end_reason"].tolist() == ["closed"]
