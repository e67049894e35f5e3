"""Fuzzing one live Receiver over real sockets: webhook headers and bodies, WebSocket text frames
and UDP datagrams of any length and content.

Every input gets an answer that is not a 5xx; every rejection is a row in the matching errors
table (counted against what was sent); the receiver stays healthy, still accepts good input
afterwards, and what it had collected before is still there. One receiver serves the module; its
capture mode is the suite's (``TELNYX_NB_TEST_CAPTURE``, see conftest). Example counts are those
of ``tests/fuzzing.py``'s profile (``ci``: derandomized, about a minute for the module).
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import pytest
from fuzzing import EDGE_INTS, deep_json, fuzz_settings, hostile_numbers, hostile_text, json_values, nested
from hypothesis import given, note
from hypothesis import strategies as st

import telnyx_nb as tnb
from telnyx_nb.wire import codecs, media, rtp, stream, webhooks

from waiting import timeout, wait_until

MAX_MESSAGE = 2048

# Unsigned webhooks in a row make the receiver warn once (a wrong public key?): expected here.
pytestmark = pytest.mark.filterwarnings("ignore:.*failed signature verification:UserWarning")


@dataclass
class Live:
    rx: tnb.Receiver
    signer: webhooks.Signer
    baseline: dict = field(default_factory=dict)


def raw_post(port: int, headers: list[tuple[bytes, bytes]], body: bytes, path: bytes = b"/webhooks") -> int:
    """One POST on its own connection, written byte by byte (no client library cleans the headers);
    the answer's status code (the connection must be answered)."""
    head = [b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/json",
            b"Connection: close", b"Content-Length: %d" % len(body)]
    request = b"\r\n".join(head + [name + b": " + value for name, value in headers]) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(10)) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), f"no answer: {answer[:80]!r}"
    return int(answer.split(b" ", 2)[1])


def signed_post(live: Live, body: bytes, extra: list[tuple[bytes, bytes]] = ()) -> int:
    headers = [(k.encode(), v.encode()) for k, v in live.signer.sign(body).items()]
    return raw_post(live.rx.port, headers + list(extra), body)


def good_body(event_id: str, event_type: str = "call.answered", **payload) -> bytes:
    return webhooks.encode_body(webhooks.build_envelope(event_type, {"call_control_id": "v3:fuzz", **payload},
                                                        event_id=event_id))


async def ws_session(url: str, messages: list[str | bytes]) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        for message in messages:
            await (ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message))


def udp_send(target: str, datagrams: list[bytes]) -> None:
    _, host, port = target.split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in datagrams:
            sock.sendto(datagram, (host, int(port)))


PCMU = codecs.ulaw_encode((8000 * np.sin(np.arange(160) / 3)).astype(np.int16))


@pytest.fixture(scope="module")
def live():
    signer = webhooks.Signer()
    rx = tnb.Receiver(public_key=signer.public_key, max_message_size=MAX_MESSAGE).start()
    live = Live(rx, signer)
    # What it holds before the fuzz: one webhook, one stream of 10 frames, 10 forked packets.
    assert signed_post(live, good_body("before-fuzz")) == 200
    sid = "stream-before-fuzz"
    messages = [media.dumps(media.Start(sid, 1, "v3:fuzz", media.MediaFormat("PCMU", 8000)))]
    messages += [media.dumps(media.Media(sid, k + 2, "inbound", k + 1, 20 * k, PCMU)) for k in range(10)]
    asyncio.run(ws_session(rx.stream_url, messages))
    udp_send(rx.fork_rx, [rtp.build_rtp(rtp.RtpPacket(0, k, 160 * k, 0xB0F0, PCMU)) for k in range(10)])
    wait_until(lambda: len(rx.events) == 1 and len(rx.frames) == 10 and len(rx.rtp) == 10, what="the baseline")
    live.baseline = {"frames": rx.frames.copy(), "rtp": rx.rtp.copy(), "events": rx.events.copy()}
    yield live
    rx.stop()


def counts(rx: tnb.Receiver) -> dict[str, int]:
    return {name: len(getattr(rx, name)) for name in
            ("events", "webhook_errors", "frames", "stream_errors", "rtp", "rtp_errors")}


def still_healthy(live: Live) -> None:
    """Good input of every kind is still taken, and what was collected before is unchanged."""
    rx = live.rx
    health = rx.health()
    assert "process died" not in str(health.get("capture")) and not health.get("recording_error"), health
    before = counts(rx)
    event_id = f"after-{uuid.uuid4()}"
    assert signed_post(live, good_body(event_id)) == 200
    sid = f"good-{uuid.uuid4()}"
    asyncio.run(ws_session(rx.stream_url, [media.dumps(media.Media(sid, 1, "inbound", 1, 0, PCMU))]))
    udp_send(rx.fork_tx, [rtp.build_rtp(rtp.RtpPacket(0, 1, 160, 0xA11CE, PCMU))])
    wait_until(lambda: counts(rx)["events"] == before["events"] + 1 and counts(rx)["frames"] == before["frames"] + 1
               and counts(rx)["rtp"] == before["rtp"] + 1, what="good input after the fuzz")
    assert event_id in set(rx.events["event_id"])
    for table in ("frames", "rtp", "events"):
        old = live.baseline[table]
        now = getattr(rx, table).iloc[: len(old)]
        assert now["received_at"].tolist() == old["received_at"].tolist(), table
    np.testing.assert_array_equal(rx.audio("stream-before-fuzz").samples[:160], codecs.ulaw_decode(PCMU))


# -- webhook headers -----------------------------------------------------------------------------

header_bytes = st.one_of(
    hostile_text.map(lambda t: t.encode("utf-8")),
    st.binary(max_size=300),
    st.integers(1, 20_000).map(lambda n: b"9" * n),
    st.sampled_from(EDGE_INTS).map(lambda n: str(n).encode()),
).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))     # one header line each


def test_webhook_headers_of_any_length_and_content(live):
    rx, signer = live.rx, live.signer
    before = counts(rx)
    tally = {"accepted": 0, "rejected": 0}

    @fuzz_settings(60)
    @given(timestamp=st.one_of(st.none(), st.just("right"), header_bytes),
           signature=st.one_of(st.none(), st.just("right"), header_bytes),
           extra=st.lists(st.tuples(st.sampled_from([b"telnyx-timestamp", b"Telnyx-Signature-Ed25519", b"X-Fuzz",
                                                     b"telnyx-timestamp "]), header_bytes), max_size=2))
    def post(timestamp, signature, extra):
        body = good_body(f"hdr-{uuid.uuid4()}")
        right = signer.sign(body)
        headers = []
        if timestamp is not None:
            headers.append((b"telnyx-timestamp", right[webhooks.TIMESTAMP_HEADER].encode() if timestamp == "right"
                            else timestamp))
        if signature is not None:
            headers.append((b"telnyx-signature-ed25519", right[webhooks.SIGNATURE_HEADER].encode()
                            if signature == "right" else signature))
        status = raw_post(rx.port, headers + extra, body)
        note(f"{headers + extra!r:.300} -> {status}")
        assert status in (200, 400, 401, 413, 431), status          # never a 5xx
        if status == 200:   # only with the signer's signature over this body
            assert signature == "right"
        tally["accepted" if status == 200 else "rejected"] += 1

    post()
    assert tally["rejected"] > 0
    wait_until(lambda: counts(rx)["webhook_errors"] == before["webhook_errors"] + tally["rejected"]
               and counts(rx)["events"] == before["events"] + tally["accepted"], what="every webhook accounted for")
    errors = rx.webhook_errors.iloc[before["webhook_errors"]:]
    assert errors["reason"].notna().all() and (errors["detail"].str.len() <= 400).all()
    still_healthy(live)


# -- webhook bodies ------------------------------------------------------------------------------

@st.composite
def hostile_bodies(draw):
    """Signed envelopes whose counters, times and payload values are anything JSON can carry."""
    kind = draw(st.sampled_from(["envelope", "transcription", "raw"]))
    if kind == "raw":
        return draw(st.one_of(st.binary(max_size=400), deep_json.map(str.encode),
                              json_values.map(lambda v: json.dumps(v).encode())))
    data = {"event_type": "call.transcription" if kind == "transcription" else draw(st.one_of(
        st.just("call.answered"), hostile_text)), "id": f"body-{uuid.uuid4()}",
        "occurred_at": draw(st.one_of(st.just("2026-01-01T00:00:00.000000Z"), hostile_text, hostile_numbers,
                                      st.sampled_from(["9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z",
                                                       "2262-04-12T00:00:00Z", "1677-09-21T00:00:00Z"]))),
        "record_type": draw(st.one_of(st.just("event"), json_values))}
    payload = {"call_control_id": draw(st.one_of(st.just("v3:fuzz"), json_values)),
               "counter": draw(hostile_numbers)}
    if kind == "transcription":
        payload["transcription_data"] = draw(st.one_of(json_values, st.fixed_dictionaries({
            "confidence": st.one_of(hostile_numbers, st.none(), hostile_text), "is_final": json_values,
            "transcript": st.one_of(hostile_text, json_values), "transcription_track": json_values})))
    data["payload"] = payload
    meta = {"attempt": draw(st.one_of(hostile_numbers, json_values)), "delivered_to": draw(json_values)}
    text = json.dumps({"data": data, "meta": meta})
    if draw(st.integers(0, 5)) == 0:
        deep = nested(draw(st.sampled_from([60, 70, 300, 1000])))
        text = text.replace('"counter": ', '"counter": ' + deep + ', "c2": ', 1)
    return text.encode()


def test_webhook_bodies_with_numbers_that_do_not_fit(live):
    rx = live.rx
    before = counts(rx)
    tally = {"accepted": 0, "rejected": 0}

    @fuzz_settings(60)
    @given(hostile_bodies())
    def post(body):
        status = signed_post(live, body)
        note(f"{body[:300]!r} -> {status}")
        assert status in (200, 400, 413), status
        tally["accepted" if status == 200 else "rejected"] += 1

    post()
    assert tally["accepted"] > 0 and tally["rejected"] > 0
    wait_until(lambda: counts(rx)["webhook_errors"] == before["webhook_errors"] + tally["rejected"]
               and counts(rx)["events"] == before["events"] + tally["accepted"], what="every webhook accounted for")
    events, transcripts = rx.events, rx.transcripts
    assert str(events["attempt"].dtype) == "int64" and str(events["occurred_at"].dtype) == "datetime64[ns, UTC]"
    confidence = transcripts["confidence"].dropna()
    assert ((confidence >= 0) & (confidence <= 1)).all()
    still_healthy(live)


# -- WebSocket text frames -----------------------------------------------------------------------

def frame_messages(sid: str):
    """Good frames of one stream mixed with hostile ones: counters of any size, wrong types, long text."""
    good = st.sampled_from([
        media.dumps(media.Start(sid, 1, "v3:fuzz-ws", media.MediaFormat("PCMU", 8000))),
        media.dumps(media.Media(sid, 2, "inbound", 1, 0, PCMU)),
        media.dumps(media.Dtmf(sid, 3, "7")), media.dumps(media.Mark(sid, 4, "m")),
        media.dumps(media.ErrorFrame.for_code(100002, sid)), media.dumps(media.Stop(sid, 9, "v3:fuzz-ws")),
    ])
    counter = st.one_of(st.sampled_from(EDGE_INTS), hostile_numbers, hostile_text, json_values)

    def media_with(seq, chunk, ts, track, payload):
        return json.dumps({"event": "media", "sequence_number": seq, "stream_id": sid,
                           "media": {"track": track, "chunk": chunk, "timestamp": ts, "payload": payload}})

    hostile_media = st.builds(media_with, counter.map(lambda c: str(c) if isinstance(c, int) else c),
                              counter.map(lambda c: str(c) if isinstance(c, int) else c), counter,
                              st.one_of(st.just("inbound"), json_values), st.one_of(st.just("/w=="), json_values))
    start_with = st.builds(lambda rate, channels: json.dumps({"event": "start", "stream_id": sid, "start": {
        "call_control_id": "v3:fuzz-ws", "media_format": {"encoding": "PCMU", "sample_rate": rate,
                                                          "channels": channels}}}), counter, counter)
    return st.one_of(good, hostile_media, start_with, hostile_text, deep_json,
                     st.integers(MAX_MESSAGE - 2, 5 * MAX_MESSAGE).map(lambda n: " " * n),
                     st.binary(max_size=50))


def test_websocket_frames_of_any_content(live):
    """The sans-I/O connection (``wire.stream``, fuzzed on its own in test_fuzz_wire) says what each
    message is; every frame it accepts is a row in ``frames``, every rejection one in
    ``stream_errors``."""
    rx = live.rx
    before = counts(rx)
    tally = {"frames": 0, "errors": 0}

    @fuzz_settings(40)
    @given(st.data())
    def session(data):
        sid = f"ws-{uuid.uuid4()}"
        messages = data.draw(st.lists(frame_messages(sid), min_size=1, max_size=12))
        asyncio.run(ws_session(rx.stream_url, messages))
        oracle = stream.StreamConnection(max_message_size=MAX_MESSAGE)
        for message in messages:
            event = oracle.receive_binary(message) if isinstance(message, bytes) else oracle.receive_text(message)
            if isinstance(event, media.Media):
                tally["frames"] += 1
            elif isinstance(event, (stream.Rejected, media.ErrorFrame)):
                tally["errors"] += 1

    session()
    wait_until(lambda: counts(rx)["frames"] == before["frames"] + tally["frames"]
               and counts(rx)["stream_errors"] >= before["stream_errors"] + tally["errors"],
               what="every frame and rejection accounted for")
    errors = rx.stream_errors.iloc[before["stream_errors"]:]
    # Beyond the oracle's rejections only streams that went quiet ("silent") may add rows.
    assert (errors["reason"] != "silent").sum() == tally["errors"], errors["reason"].value_counts()
    frames = rx.frames
    assert str(frames["chunk"].dtype) == "int64" and str(frames["timestamp"].dtype) == "int64"
    still_healthy(live)


# -- UDP datagrams ------------------------------------------------------------------------------------

datagrams = st.one_of(
    st.binary(max_size=1500),
    st.builds(lambda head, rest: bytes([head]) + rest, st.sampled_from([0x80, 0x90, 0xA0, 0xAF, 0xC0, 0xFF]),
              st.binary(max_size=300)),
    st.integers(1500, 65507).map(lambda n: bytes([0x80]) + bytes(n - 1)),      # up to the largest UDP datagram
    st.just(b""),
)


def test_datagrams_of_any_length(live):
    rx = live.rx
    before = counts(rx)
    tally = {"packets": 0, "errors": 0}

    @fuzz_settings(60)
    @given(st.lists(datagrams, min_size=1, max_size=8), st.sampled_from(["fork_rx", "fork_tx"]))
    def send(batch, target):
        udp_send(getattr(rx, target), batch)
        for datagram in batch:
            try:
                rtp.parse_fork_packet(datagram)
            except rtp.RtpError:
                tally["errors"] += 1
            else:
                tally["packets"] += 1

    send()
    wait_until(lambda: counts(rx)["rtp"] == before["rtp"] + tally["packets"]
               and counts(rx)["rtp_errors"] == before["rtp_errors"] + tally["errors"], what="rtp and rtp_errors rows")
    still_healthy(live)
