"""Receiver contracts, through the public API only, with frames built from the protocol text.

Each test pins one promise of the README / DESIGN that a plausible change could break while
every other test stays green: ``clear()`` drops queued outbound audio; arrival stamps are taken
after the socket read (WebSocket, UDP and webhook paths); streams still open at ``rx.stop()``
end with "receiver_stopped"; the ``"*"`` listener sees webhooks and stream events;
``payload_types`` and ``l16_byteorder`` decide how forked and streamed audio decode; audio
assembly keeps the first copy of a duplicate.

Telnyx's side is played with plain ``json``/``base64``/``struct``, an aiohttp WebSocket
client, ``http.client`` and UDP sockets on 127.0.0.1, and webhooks are signed here with
``cryptography`` (Ed25519 over ``f"{timestamp}|{body}"``), so nothing depends on the
receiver's internals or on ``telnyx_nb.wire``.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import socket
import struct
import threading
import time
import uuid
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import telnyx_nb as tnb

from waiting import await_until, timeout, wait_until

CCID = "v3:contract-call"
SID = "0b6c5f1e-0000-4000-8000-00000000c0de"


# -- Telnyx's side, from the protocol text ---------------------------------------------------

def _dumps(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def start_frame(sid: str = SID, ccid: str = CCID, encoding: str = "PCMU", rate: int = 8000, seq: int = 1) -> str:
    return _dumps({"event": "start", "sequence_number": str(seq), "stream_id": sid,
                   "start": {"call_control_id": ccid, "call_session_id": "sess-1",
                             "media_format": {"encoding": encoding, "sample_rate": rate, "channels": 1}}})


def media_frame(seq: int, chunk: int, payload: bytes, sid: str = SID, track: str = "inbound") -> str:
    return _dumps({"event": "media", "sequence_number": str(seq), "stream_id": sid,
                   "media": {"track": track, "chunk": str(chunk), "timestamp": str(20 * (chunk - 1)),
                             "payload": base64.b64encode(payload).decode("ascii")}})


def stop_frame(seq: int, sid: str = SID, ccid: str = CCID) -> str:
    return _dumps({"event": "stop", "sequence_number": str(seq), "stream_id": sid,
                   "stop": {"call_control_id": ccid}})


def rtp_packet(seq: int, ssrc: int, payload: bytes, pt: int = 0, samples_per_packet: int = 160) -> bytes:
    """RFC 3550 fixed header (V=2, no padding/extension/CSRC), then the payload."""
    return struct.pack("!BBHII", 0x80, pt & 0x7F, seq & 0xFFFF, (seq * samples_per_packet) & 0xFFFFFFFF, ssrc) + payload


class Signer:
    """Signs webhooks the way Telnyx documents it: Ed25519 over ``f"{timestamp}|{body}"``."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key = base64.b64encode(raw).decode("ascii")

    def headers(self, body: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        signature = self._key.sign(ts.encode("ascii") + b"|" + body)
        return {"content-type": "application/json", "telnyx-timestamp": ts,
                "telnyx-signature-ed25519": base64.b64encode(signature).decode("ascii")}


def envelope(event_type: str, payload: dict, url: str = "") -> bytes:
    return json.dumps({
        "data": {"record_type": "event", "event_type": event_type, "id": str(uuid.uuid4()),
                 "occurred_at": "2026-11-30T08:00:00.000000Z", "payload": payload},
        "meta": {"attempt": 1, "delivered_to": url},
    }).encode()


class WebhookClient:
    """One keep-alive HTTP connection to ``rx.webhook_url`` (several webhooks on one socket)."""

    def __init__(self, rx: tnb.Receiver, signer: Signer) -> None:
        self.url = urlsplit(rx.webhook_url)
        self.signer = signer
        self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=timeout(5))

    def post(self, body: bytes) -> int:
        self.conn.request("POST", self.url.path, body=body, headers=self.signer.headers(body))
        response = self.conn.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.conn.close()


def post_webhook(rx: tnb.Receiver, signer: Signer, event_type: str, payload: dict) -> None:
    client = WebhookClient(rx, signer)
    try:
        assert client.post(envelope(event_type, payload, rx.webhook_url)) == 200
    finally:
        client.close()


def udp_address(target: str) -> tuple[str, int]:
    _, host, port = target.split(":")
    return host, int(port)


def ns(column) -> np.ndarray:
    """A ``datetime64[ns, UTC]`` column as int64 nanoseconds since the epoch."""
    return column.to_numpy(dtype="datetime64[ns]").view(np.int64)


def ramp(n: int, start: int = -12345, step: int = 257) -> np.ndarray:
    """int16 samples whose two bytes differ (byte order matters) and that never repeat in a chunk."""
    return ((start + step * np.arange(n)) % 65536 - 32768).astype(np.int16)


@pytest.fixture
def signer():
    return Signer()


# -- 1. clear() drops the audio still queued here ------------------------------------------------

def test_clear_cancels_queued_outbound_audio():
    """After ``clear`` Telnyx gets no more of the audio queued before it: the clear frame is last."""
    with tnb.Receiver() as rx:
        tone = np.full(8000, 4000, dtype=np.int16)                  # 1 s = 50 paced 20 ms frames

        async def telnyx_side():
            async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
                await ws.send_str(start_frame())
                await await_until(lambda: len(rx.streams) == 1, what="the stream to start")
                sent = rx.send_audio(SID, tone, 8000)
                first = json.loads((await ws.receive(timeout=timeout(5))).data)
                assert first["event"] == "media"                   # playback has begun...
                await asyncio.to_thread(rx.clear(SID).result, timeout(5))
                # ...and was cleared. The queued send ends (cancelled) instead of playing 1 s.
                await await_until(sent.done, what="the cleared send_audio future to finish")
                assert sent.cancelled()                             # in either capture mode
                await asyncio.to_thread(rx.mark(SID, "after-clear").result, timeout(5))
                received = [first]
                while not (received[-1]["event"] == "mark" and received[-1]["mark"]["name"] == "after-clear"):
                    received.append(json.loads((await ws.receive(timeout=timeout(5))).data))
                return received

        received = asyncio.run(telnyx_side())
        events = [frame["event"] for frame in received]
        assert events.count("clear") == 1
        after_clear = events[events.index("clear") + 1:]
        assert after_clear == ["mark"], f"frames sent after clear: {after_clear}"
        assert 1 <= events.count("media") < 50


# -- 2. arrival stamps: taken after the read, never before the peer sent ---------------------------

def test_websocket_arrival_stamps_are_after_the_send():
    """Every frame's ``received_at`` lies between the moment it was sent and the moment it was seen."""
    with tnb.Receiver() as rx:
        payloads = [bytes([k]) * 160 for k in range(6)]

        async def telnyx_side():
            sent, seen = [], []
            async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
                sent.append(time.time_ns())
                await ws.send_str(start_frame())
                await await_until(lambda: len(rx.streams) == 1, what="the start frame")
                seen.append(time.time_ns())
                for k, payload in enumerate(payloads):
                    sent.append(time.time_ns())
                    await ws.send_str(media_frame(k + 2, k + 1, payload))
                    await await_until(lambda k=k: len(rx.frames) == k + 1, what=f"media frame {k + 1}")
                    seen.append(time.time_ns())
            return np.array(sent), np.array(seen)

        sent, seen = asyncio.run(telnyx_side())
        started_at = ns(rx.streams["started_at"])[0]
        assert sent[0] <= started_at <= seen[0]
        received = ns(rx.frames["received_at"])
        assert len(received) == len(payloads)
        assert (received >= sent[1:]).all(), f"stamped before it was sent: {(received - sent[1:]).tolist()} ns"
        assert (received <= seen[1:]).all()


def test_udp_arrival_stamps_are_after_the_send():
    with tnb.Receiver() as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sent, seen = [], []
        for k in range(6):
            sent.append(time.time_ns())
            sock.sendto(rtp_packet(100 + k, 0xC0FFEE, bytes([k]) * 160), udp_address(rx.fork_rx))
            wait_until(lambda k=k: len(rx.rtp) == k + 1, what=f"datagram {k + 1}")
            seen.append(time.time_ns())
        received = ns(rx.rtp["received_at"])
        assert rx.rtp["seq"].tolist() == list(range(100, 106))
        sent = np.array(sent)
        assert (received >= sent).all(), f"stamped before it was sent: {(received - sent).tolist()} ns"
        assert (received <= np.array(seen)).all()


def test_webhook_arrival_stamps_are_after_the_send(signer):
    """Several webhooks on one keep-alive connection: each stamped at its own read, not the connection's."""
    with tnb.Receiver(public_key=signer.public_key) as rx:
        client = WebhookClient(rx, signer)
        sent, seen = [], []
        try:
            for k in range(4):
                body = envelope("call.dtmf.received", {"call_control_id": CCID, "digit": str(k)}, rx.webhook_url)
                sent.append(time.time_ns())
                assert client.post(body) == 200
                seen.append(time.time_ns())
        finally:
            client.close()
        events = rx.events
        assert [p["digit"] for p in events["payload"]] == ["0", "1", "2", "3"]
        received = ns(events["received_at"])
        sent = np.array(sent)
        assert (received >= sent).all(), f"stamped before it was sent: {(received - sent).tolist()} ns"
        assert (received <= np.array(seen)).all()


# -- 4. streams open at stop() end with "receiver_stopped" ----------------------------------------

def _three_streams_then_stop(rx: tnb.Receiver) -> None:
    """Stream "closed" hangs up, "stopped" sends stop, "open" is still connected when rx.stop() runs."""
    async def telnyx_side():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(rx.stream_url) as ws:
                await ws.send_str(start_frame("closed", "v3:closed"))
                await ws.send_str(media_frame(2, 1, bytes(160), "closed"))
            async with session.ws_connect(rx.stream_url) as stopped, session.ws_connect(rx.stream_url) as ws:
                await stopped.send_str(start_frame("stopped", "v3:stopped"))
                await stopped.send_str(stop_frame(2, "stopped", "v3:stopped"))
                await ws.send_str(start_frame("open", "v3:open"))
                await ws.send_str(media_frame(2, 1, bytes(160), "open"))
                def two_ended() -> bool:
                    streams = rx.streams.set_index("stream_id")
                    return len(rx.frames) == 2 and len(streams) == 3 and \
                        streams.loc[["closed", "stopped"], "ended_at"].notna().all()
                await await_until(two_ended, what="three streams, two ended")
                await asyncio.to_thread(rx.stop)
                closing = await ws.receive(timeout=timeout(5))     # the receiver closed the socket
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    asyncio.run(telnyx_side())


def test_streams_open_at_stop_end_with_receiver_stopped():
    rx = tnb.Receiver().start()
    try:
        _three_streams_then_stop(rx)
    finally:
        rx.stop()
    streams = rx.streams.set_index("stream_id")
    assert streams["ended_at"].notna().all()
    assert streams["end_reason"].to_dict() == {"closed": "closed", "stopped": "stop", "open": "receiver_stopped"}
    assert len(rx.frames) == 2                                       # what was collected stays


def test_stream_closed_callback_reports_receiver_stopped():
    rx, closed = tnb.Receiver(), []
    rx.on("stream.closed", closed.append)
    rx.start()
    try:
        _three_streams_then_stop(rx)
    finally:
        rx.stop()
    wait_until(lambda: {e["stream_id"] for e in closed} >= {"closed", "stopped", "open"},
               what="stream.closed callbacks")
    reasons = {e["stream_id"]: e["reason"] for e in closed}
    assert reasons["closed"] == "closed"
    assert reasons["stopped"] == "receiver_stopped"                  # its socket outlived its stop frame
    assert reasons["open"] == "receiver_stopped"                     # the same reason as rx.streams


# -- 5. the "*" listener ------------------------------------------------------------------------

def test_wildcard_listener_gets_webhooks_and_stream_events(signer):
    with tnb.Receiver(public_key=signer.public_key) as rx:
        everything, lock = [], threading.Lock()

        def record(event):
            with lock:
                everything.append(event)

        rx.on("*", record)
        post_webhook(rx, signer, "call.answered", {"call_control_id": CCID})

        async def telnyx_side():
            async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
                for message in (start_frame(), media_frame(2, 1, bytes(160)), stop_frame(3)):
                    await ws.send_str(message)

        asyncio.run(telnyx_side())
        wanted = {"call.answered", "stream.start", "stream.media", "stream.stop"}
        wait_until(lambda: wanted <= {e["event_type"] for e in list(everything)}, what=f"{sorted(wanted)} through '*'")
        with lock:
            by_type = {e["event_type"]: e for e in everything}
        assert by_type["call.answered"]["call_control_id"] == CCID
        assert by_type["stream.media"]["stream_id"] == SID and by_type["stream.media"]["chunk"] == 1


# -- 6. payload_types maps dynamic RTP payload types ---------------------------------------------

def send_fork(rx: tnb.Receiver, signer: Signer, packets: list[bytes], ccid: str = CCID) -> None:
    """``call.fork.started`` for ``ccid`` (it claims the fork ports), then the datagrams to ``fork_rx``."""
    post_webhook(rx, signer, "call.fork.started", {"call_control_id": ccid})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet, udp_address(rx.fork_rx))
    wait_until(lambda: len(rx.rtp) == len(packets), what=f"{len(packets)} RTP packets")


def test_payload_types_decide_how_forked_rtp_decodes(signer):
    samples = ramp(3 * 320)                                          # 3 packets of 20 ms at 16 kHz
    big = samples.astype(">i2").tobytes()                             # L16 in network order (the default)
    packets = [rtp_packet(7 + k, 0xD16, big[640 * k: 640 * (k + 1)], pt=96, samples_per_packet=320) for k in range(3)]
    with tnb.Receiver(public_key=signer.public_key, payload_types={96: "L16"}) as rx:
        send_fork(rx, signer, packets)
        table = rx.rtp
        assert table["payload_type"].tolist() == [96] * 3
        assert table["encoding"].tolist() == ["L16"] * 3
        assert table["call_control_id"].tolist() == [CCID] * 3
        audio = rx.audio(CCID, "rx", source="fork")
        assert audio.rate == 16000
        np.testing.assert_array_equal(audio.samples, samples)


# -- 7. l16_byteorder="little" ------------------------------------------------------------------

def test_l16_byteorder_little_decodes_streams_and_forks_and_encodes_playback(signer):
    samples = ramp(4 * 320)                                          # 80 ms at 16 kHz
    little = samples.astype("<i2").tobytes()
    assert little != samples.astype(">i2").tobytes()
    with tnb.Receiver(public_key=signer.public_key, l16_byteorder="little", payload_types={96: "L16"}) as rx:
        async def telnyx_side():
            async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
                await ws.send_str(start_frame(encoding="L16", rate=16000))
                for k in range(4):
                    await ws.send_str(media_frame(k + 2, k + 1, little[640 * k: 640 * (k + 1)]))
                await await_until(lambda: len(rx.frames) == 4, what="4 L16 frames")
                played = rx.send_audio(SID, samples[:640], 16000, encoding="L16")    # 2 frames back in L16
                replies = [json.loads((await ws.receive(timeout=timeout(5))).data) for _ in range(2)]
                await asyncio.to_thread(played.result, timeout(5))
                return replies

        replies = asyncio.run(telnyx_side())
        audio = rx.audio(CCID)
        assert audio.rate == 16000
        np.testing.assert_array_equal(audio.samples, samples)

        back = b"".join(base64.b64decode(r["media"]["payload"]) for r in replies)
        np.testing.assert_array_equal(np.frombuffer(back, "<i2"), samples[:640])

        packets = [rtp_packet(1 + k, 0x1E, little[640 * k: 640 * (k + 1)], pt=96, samples_per_packet=320)
                   for k in range(4)]
        send_fork(rx, signer, packets, ccid="v3:fork-l16")
        np.testing.assert_array_equal(rx.audio("v3:fork-l16", "rx", source="fork").samples, samples)


# -- 8. audio keeps the first copy of a duplicate ---------------------------------------------------

def test_audio_keeps_the_first_copy_of_a_duplicate_chunk(signer):
    """Chunk 2 (and RTP seq 41) arrive twice with different payloads: audio() holds the first copy."""
    samples = ramp(4 * 320)
    big = samples.astype(">i2").tobytes()                             # L16, network order (the default)
    one, first, three = big[:640], big[640:1280], big[1280:1920]
    second = ramp(320, start=777, step=-91).astype(">i2").tobytes()
    expected = samples[:960]                                         # chunks 1, 2 (first copy), 3
    with tnb.Receiver(public_key=signer.public_key, payload_types={96: "L16"}) as rx:
        messages = [start_frame(encoding="L16", rate=16000), media_frame(2, 1, one), media_frame(3, 2, first),
                    media_frame(4, 2, second), media_frame(5, 3, three), stop_frame(6)]

        async def telnyx_side():
            async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
                for message in messages:
                    await ws.send_str(message)

        asyncio.run(telnyx_side())
        wait_until(lambda: len(rx.frames) == 4, what="4 media frames")
        assert rx.frames["chunk"].tolist() == [1, 2, 2, 3]
        np.testing.assert_array_equal(rx.audio(CCID).samples, expected)

        # the same on the fork path: a duplicated sequence number with a different payload
        packets = [rtp_packet(s, 0xD0B, p, pt=96, samples_per_packet=320)
                   for s, p in ((40, one), (41, first), (41, second), (42, three))]
        send_fork(rx, signer, packets, ccid="v3:fork-dup")
        np.testing.assert_array_equal(rx.audio("v3:fork-dup", "rx", source="fork").samples, expected)
