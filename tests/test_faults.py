"""Faults a receiver meets in the field: none crashes or stalls it, each is visible, and nothing
it accepted is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from test_receiver import envelope, media_frame, start_frame, wait_until, ws_send

import telnyx_nb as tnb
from telnyx_nb import udp
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


# -- limits the field found: a full disk, secrets in excerpts, slow clients, kernel drops ------------

@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (root only: the test is skipped where mount is not permitted)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def send_rtp(port: int, first: int, count: int, payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(first, first + count):
            sock.sendto(rtp.build_rtp(rtp.RtpPacket(0, n & 0xFFFF, 160 * n, 0xF0110, payload)), ("127.0.0.1", port))


def test_a_full_disk_stops_the_recording_and_the_capture_keeps_no_rows_it_cannot_record(tmp_path, signer):
    """A 300 KiB disk fills mid-call: health() says so (and warns), what was written before stays
    loadable, every datagram is recorded or counted in ``unrecorded_rows``, and a capture process
    keeps none of the rows it cannot record (its memory stays flat); a thread keeps them in memory."""
    with small_disk(tmp_path / "disk", "300k") as disk:
        rec = disk / "rec"
        with tnb.Receiver(public_key=signer.public_key, record_to=rec, flush_interval_s=0.2) as rx:
            port = int(rx.fork_rx.rsplit(":", 1)[1])
            rx.expect_fork("full")
            send_rtp(port, 0, 50, b"\xff" * 160)
            wait_until(lambda: tnb.load(rec).rtp.shape[0] == 50, what="the first 50 packets recorded")
            sent = 50
            with pytest.warns(RuntimeWarning, match="No space left"):
                while not rx.health()["recording_error"]:         # 1,200-byte packets until the disk is full
                    send_rtp(port, sent, 200, b"\x11" * 1200)
                    sent += 200
                send_rtp(port, sent, 20_000, b"\x22" * 1200)      # 24 MB more after the failure
                sent += 20_000

                def settled() -> bool:                            # every datagram read is recorded or counted
                    health = rx.health()
                    return health["udp_packets"] == len(tnb.load(rec).rtp) + health["unrecorded_rows"]

                wait_until(settled, timeout=30, what="udp_packets == recorded + unrecorded_rows")
                health = rx.health()
            assert "No space left" in health["recording_error"] and rx.running
            assert health["unrecorded_rows"] >= 1_000     # of the 20,000 sent after it (the kernel may drop some)
            if rx.process:      # nothing it cannot record stays in the capture process
                wait_until(lambda: rx.health()["store_bytes"] < 1 << 20, what="the capture's store emptied")
            else:               # a thread's tables are in memory: the rows are kept there, not recorded
                assert len(rx.rtp) == health["udp_packets"]
        loaded = tnb.load(rec)                                    # what was written before stays loadable
        assert loaded.rtp["seq"].tolist()[:50] == list(range(50))
        assert len(loaded.rtp) + rx.health()["unrecorded_rows"] == rx.health()["udp_packets"]


SECRET = "s3cr3t-TOKEN-3f9a"


def test_secrets_never_reach_an_excerpt_the_recording_or_a_saved_session(tmp_path, signer):
    """Refused input that carries the stream auth token (or any auth-token field) is stored with
    the value replaced: in the error tables, the recording and a saved session."""
    rec = tmp_path / "rec"
    with tnb.Receiver(public_key=signer.public_key, stream_auth_token=SECRET, record_to=rec,
                      header_timeout_s=0.3) as rx:
        refused = [
            json.dumps({"event": "connected", "x-telnyx-streaming-auth-token": SECRET}),         # top level
            '{"event": "connected", "connected": {"x-telnyx-streaming-auth-token": "' + SECRET
            + '"}, "junk": Infinity}',                                                          # invalid JSON
            '{"event":"connected","connected":{"x-telnyx-streaming-auth-token":"other-token-value"',  # torn
        ]
        for frame in refused:
            asyncio.run(ws_send(rx.stream_url, [frame, start_frame("s")]))
        body = json.dumps({"data": {"stream_auth_token": "webhook-token-value", "note": SECRET}}).encode()
        assert urllib_post(rx.webhook_url, body) == 401                       # unsigned: refused, excerpt kept
        with socket.create_connection(("127.0.0.1", rx.port)) as slow:        # a header that never ends
            slow.sendall(f"POST /webhooks HTTP/1.1\r\nAuthorization: Bearer api-key-value\r\n"
                         f"x-telnyx-streaming-auth-token: {SECRET}\r\nX-Slow: ".encode())
            wait_until(lambda: (rx.webhook_errors["reason"] == "timeout").any())
        port = int(rx.fork_rx.rsplit(":", 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"\x00" + SECRET.encode(), ("127.0.0.1", port))    # not RTP: an rtp_errors row
        wait_until(lambda: len(rx.stream_errors) >= 3 and len(rx.webhook_errors) == 2 and len(rx.rtp_errors) == 1)
        tables = "".join(t.to_csv() for t in (rx.stream_errors, rx.webhook_errors, rx.rtp_errors))
        assert (rx.stream_errors["reason"] == "auth_failed").sum() >= 3 and "[redacted]" in tables
        rx.save(tmp_path / "saved")
    leaks = ("s3cr3t", "other-token-value", "webhook-token-value", "api-key-value")
    for value in leaks:
        assert value not in tables
    assert SECRET.encode().hex() not in tables
    for path in [*rec.rglob("*"), *(tmp_path / "saved").rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert not any(value.encode() in data for value in leaks), path
    assert not any(value in tnb.load(tmp_path / "saved").stream_errors.to_csv() for value in leaks)


def urllib_post(url: str, body: bytes) -> int:
    async def post() -> int:
        async with aiohttp.ClientSession() as session, session.post(url, data=body) as response:
            return response.status
    return asyncio.run(post())


def test_slow_clients_are_closed_after_the_header_and_body_timeouts_and_recorded(signer):
    """Slowloris: half a header, a body that trickles, an over-limit Content-Length; each is closed
    (or refused at once, 413) and recorded once, and webhooks go on."""
    for bad in ({"header_timeout_s": 0}, {"body_timeout_s": -1.0}, {"header_timeout_s": "10"}):
        with pytest.raises(ValueError, match="timeout_s"):
            tnb.Receiver(public_key=signer.public_key, **bad)
    with tnb.Receiver(public_key=signer.public_key, header_timeout_s=0.5, body_timeout_s=0.5) as rx:
        address = ("127.0.0.1", rx.port)
        slow = [socket.create_connection(address, timeout=timeout(10)) for _ in range(100)]
        for sock in slow:
            sock.sendall(b"POST /webhooks HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        trickle = socket.create_connection(address, timeout=timeout(10))
        trickle.sendall(b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n{\"data\":")
        huge = socket.create_connection(address, timeout=timeout(10))
        huge.sendall(b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n{")
        try:
            assert huge.recv(12) == b"HTTP/1.1 413"              # before the body: refused at once

            def closed(sock: socket.socket) -> bool:
                try:
                    return sock.recv(1024) == b""
                except ConnectionResetError:
                    return True

            assert all(closed(sock) for sock in [*slow, trickle])   # recv blocks until the receiver closes
            wait_until(lambda: rx.health()["webhook_timeouts"] == 101)
            body, headers = signed(signer, "call.answered", "after-slow")
            assert asyncio.run(post_signed(rx.webhook_url, body, headers)) == 200
            wait_until(lambda: rx.events["event_id"].tolist() == ["after-slow"])
            errors = rx.webhook_errors
            assert errors["reason"].value_counts().to_dict() == {"timeout": 101, "too_large": 1}
            timeouts = errors[errors["reason"] == "timeout"]
            assert timeouts["detail"].str.contains("request header within 0.5 s").sum() == 100
            assert timeouts["detail"].str.contains("webhook body within 0.5 s").sum() == 1
            assert timeouts["excerpt"].str.startswith("POST /webhooks HTTP/1.1").sum() == 100
            assert "Content-Length 2000000" in errors[errors["reason"] == "too_large"]["detail"].iloc[0]
            assert rx.health()["errors"] >= 102
        finally:
            for sock in [*slow, trickle, huge]:
                sock.close()


async def post_signed(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status


@contextlib.contextmanager
def capture_paused(rx: tnb.Receiver):
    """The capture reads nothing meanwhile: its process stopped (SIGSTOP), or its loop blocked on the store's lock."""
    if rx.process:
        pid = rx.health()["capture_pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)
    else:
        with rx._store.lock:
            yield


def test_kernel_udp_drops_are_counted(signer):
    """A flood larger than the socket's receive buffer while the capture cannot read: every datagram
    sent is either read (``udp_packets``) or counted as dropped by the kernel (``udp_kernel_drops``)."""
    if not udp.kernel_drops_available():
        pytest.skip("this platform does not report kernel drops (SO_RXQ_OVFL)")
    with tnb.Receiver(public_key=signer.public_key, udp_rcvbuf=65_536) as small:
        port = int(small.fork_rx.rsplit(":", 1)[1])
        with capture_paused(small):
            send_rtp(port, 0, 20_000, b"\xff" * 160)

        def settled() -> bool:                              # the queued datagrams are read
            count = small.health()["udp_packets"]
            time.sleep(0.2)
            return count > 0 and count == small.health()["udp_packets"]

        wait_until(settled)
        send_rtp(port, 20_000, 1, b"\xff" * 160)            # drops show with the next datagram that arrives
        wait_until(lambda: small.health()["udp_packets"] + small.health()["udp_kernel_drops"] == 20_001,
                   what="udp_packets + udp_kernel_drops == datagrams sent")
        health = small.health()
        assert health["udp_kernel_drops"] > 0 and health["udp_kernel_drops_by_target"]["tx"] == 0
        assert health["udp_kernel_drops_by_target"]["rx"] == health["udp_kernel_drops"]
        assert len(small.rtp) == health["udp_packets"]
