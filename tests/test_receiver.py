"""Receiver against an independent peer written here: aiohttp WebSocket client, UDP sockets, urllib.

The peer builds everything with ``telnyx_nb.wire`` (the sans-I/O layer tested on its own) and
sends known impairments and bad input; the tests check tables, audio and error records exactly.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

import aiohttp
import numpy as np
import pandas as pd
import pytest

import telnyx_nb as tnb
from telnyx_nb.wire import codecs, media, rtp, webhooks
from telnyx_nb.wire.codecs import to_int16

import waiting
from waiting import timeout

CCID = "v3:call-one"
TONE = (9000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.int16)
TONE16 = (9000 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.int16)


# -- the peer -------------------------------------------------------------------------------

wait_until = functools.partial(waiting.wait_until, timeout=5.0)


def start_frame(sid: str, ccid: str = CCID, encoding: str = "PCMU", rate: int = 8000, **kw) -> str:
    return media.dumps(media.Start(sid, 1, ccid, media.MediaFormat(encoding, rate), **kw))


def media_frame(sid: str, seq: int, track: str, chunk: int, payload: bytes) -> str:
    return media.dumps(media.Media(sid, seq, track, chunk, 20 * (chunk - 1), payload))


def stop_frame(sid: str, seq: int, ccid: str = CCID) -> str:
    return media.dumps(media.Stop(sid, seq, ccid))


def chunks(payload: bytes, size: int) -> list[bytes]:
    return [payload[i : i + size] for i in range(0, len(payload), size)]


async def ws_send(url: str, messages, *, headers=None, pace: float = 0.0, vanish: bool = False,
                  sent_at: list | None = None, read: int = 0):
    """Connect like Telnyx, send ``messages`` (str = text, bytes = binary), optionally read replies."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers or {}) as ws:
        for message in messages:
            if sent_at is not None:
                sent_at.append(time.time_ns())
            await (ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message))
            if pace:
                await asyncio.sleep(pace)           # stimulus: Telnyx's real-time pacing, not a wait
        replies = [json.loads((await ws.receive(timeout=timeout(5))).data) for _ in range(read)]
        if vanish:
            ws.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        return ws, replies


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout(5)) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def envelope(event_type: str, payload: dict, **kw) -> bytes:
    return webhooks.encode_body(webhooks.build_envelope(event_type, payload, **kw))


def udp_send(target: str, packets: list[bytes]) -> None:
    _, host, port = target.split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet, (host, int(port)))


@pytest.fixture
def rx():
    with pytest.warns(UserWarning, match="unverified"):              # no public_key: said once, at start
        receiver = tnb.Receiver(max_message_size=4096).start()
    yield receiver
    receiver.stop()


# -- WebSocket media ----------------------------------------------------------------------------

def test_stream_tables_audio_and_quality_with_impairments(rx):
    pcmu = chunks(codecs.ulaw_encode(TONE[:8000]), 160)            # 50 chunks of 20 ms
    sid = "3a3d1c1e-0000-4000-8000-000000000001"
    order = [c for c in range(1, 51) if c != 10]                   # chunk 10 lost
    order.insert(order.index(21), 20)                              # chunk 20 duplicated
    i = order.index(30)
    order[i], order[i + 1] = order[i + 1], order[i]                # 30 and 31 swapped
    messages = [media.dumps(media.Connected()), start_frame(sid, custom_parameters={"customer": "c-1"})]
    seq = 2
    for c in order:
        messages.append(media_frame(sid, seq, "inbound", c, pcmu[c - 1]))
        messages.append(media_frame(sid, seq + 1, "outbound", c, pcmu[c - 1]))
        seq += 2
    messages.append(stop_frame(sid, seq))
    asyncio.run(ws_send(rx.stream_url, messages))
    wait_until(lambda: rx.streams["stopped_at"].notna().all() and len(rx.streams))

    frames = rx.frames
    assert list(frames.columns[:10]) == ["received_at", "stream_id", "call_control_id", "track", "sequence_number",
                                         "chunk", "timestamp", "encoding", "sample_rate", "n_bytes"]
    assert str(frames["received_at"].dtype) == "datetime64[ns, UTC]"
    assert len(frames) == 2 * len(order)
    inbound = frames[frames.track == "inbound"]
    assert inbound["chunk"].tolist() == order
    assert inbound["timestamp"].tolist() == [20 * (c - 1) for c in order]
    assert inbound["sequence_number"].dtype == np.int64 and inbound["n_bytes"].eq(160).all()
    assert set(frames.encoding) == {"PCMU"} and set(frames.sample_rate) == {8000}
    assert set(frames.call_control_id) == {CCID} and frames["received_at"].is_monotonic_increasing

    streams = rx.streams
    assert streams.loc[0, ["stream_id", "call_control_id", "encoding", "sample_rate", "channels"]].tolist() == \
        [sid, CCID, "PCMU", 8000, 1]
    assert streams.loc[0, "custom_parameters"] == {"customer": "c-1"}
    assert streams.loc[0, "authenticated"] == False  # noqa: E712  (no token configured)
    assert streams.loc[0, "connected_at"] <= streams.loc[0, "started_at"] <= streams.loc[0, "stopped_at"]
    assert streams.loc[0, "end_reason"] == "stop"

    audio = rx.audio(CCID)
    expected = codecs.ulaw_decode(b"".join(pcmu[c - 1] if c != 10 else b"\xff" * 160 for c in range(1, 51)))
    assert isinstance(audio, tnb.Audio) and audio.rate == 8000
    np.testing.assert_array_equal(audio.samples, expected)
    np.testing.assert_array_equal(rx.audio(sid, "outbound").samples, expected)     # by stream id too

    q = rx.quality().set_index("track")
    columns = ["source", "stream_id", "packets", "expected", "lost", "duplicates", "reordered"]
    assert q.loc["inbound", columns].tolist() == ["stream", sid, 50, 50, 1, 1, 1]
    assert q.loc["inbound", "loss_pct"] == pytest.approx(2.0)
    assert q.loc["outbound", ["lost", "duplicates", "reordered"]].tolist() == [1, 1, 1]
    assert pd.isna(q.loc["inbound", "ssrc"]) and 1 <= q.loc["inbound", "mos"] <= 4.5


@pytest.mark.parametrize("encoding, rate, encode, decode, size", [
    ("PCMA", 8000, codecs.alaw_encode, codecs.alaw_decode, 160),
    ("L16", 16000, codecs.l16_encode, codecs.l16_decode, 640),
])
def test_media_format_decides_the_codec(rx, encoding, rate, encode, decode, size):
    samples = TONE if rate == 8000 else TONE16
    payload = encode(samples[: rate // 5])                        # 200 ms
    sid = f"stream-{encoding}"
    messages = [start_frame(sid, "v3:codec", encoding, rate)]
    messages += [media_frame(sid, k + 2, "inbound", k + 1, p) for k, p in enumerate(chunks(payload, size))]
    asyncio.run(ws_send(rx.stream_url, messages))
    wait_until(lambda: len(rx.frames) == 10)
    audio = rx.audio("v3:codec")
    assert audio.rate == rate
    np.testing.assert_array_equal(audio.samples, decode(payload))


def test_bad_input_is_recorded_and_never_fatal(rx):
    sid = "stream-bad"
    good = codecs.ulaw_encode(TONE[:160])
    messages = [
        start_frame(sid),
        media_frame(sid, 2, "inbound", 1, good),
        '{"event": "media", "stream_id": "stream-bad", "media": {',                               # malformed JSON
        '{"event":"media","stream_id":"stream-bad","media":{"track":"inbound","chunk":"2","timestamp":"20","payload":"!!!"}}',
        '{"event":"party","stream_id":"stream-bad"}',                                              # unknown event
        b"\x00\x01binary",                                                                         # binary frame
        '{"event":"media","stream_id":"stream-bad","pad":"' + "x" * 5000 + '"}',                 # > 4096 limit
        '{"event":"media","stream_id":"stream-bad","media":{"track":"sideways","chunk":"2","timestamp":"0","payload":""}}',
        media.dumps(media.Media(sid, 9, "inbound", 99999999999999999999, 0, good)),                  # > int64
        media.dumps(media.ErrorFrame.for_code(100003, sid)),                                       # Telnyx's own error
        media_frame(sid, 3, "inbound", 3, good),
    ]
    asyncio.run(ws_send(rx.stream_url, messages))
    wait_until(lambda: len(rx.frames) == 2 and len(rx.stream_errors) == 8)
    errors = rx.stream_errors
    assert errors["reason"].tolist() == ["malformed_json", "invalid_base64", "unknown_event", "binary_frame",
                                         "oversized", "bad_field", "out_of_range", "malformed_frame"]
    assert errors["origin"].tolist() == ["receiver"] * 7 + ["telnyx"]
    assert errors["stream_id"].tolist() == [sid] * 8 and set(errors["call_control_id"]) == {CCID}
    assert errors["code"].tolist()[-1] == 100003 and errors["code"].isna().sum() == 7
    assert errors.loc[1, "excerpt"].startswith('{"event":"media"') and len(errors.loc[4, "excerpt"]) == 200
    assert errors.loc[3, "excerpt"] == "\x00\x01binary"
    assert rx.frames["chunk"].tolist() == [1, 3]                    # the bad frame is not in frames...
    audio = rx.audio(CCID)                                          # ...and is silence in audio
    np.testing.assert_array_equal(audio.samples[320:], codecs.ulaw_decode(good))
    assert (audio.samples[160:320] == codecs.ulaw_decode(b"\xff")[0]).all()
    health = rx.health()
    assert health["stream_errors"] == 7 and health["ws_messages"] == len(messages)


def test_a_wild_chunk_number_is_discarded_not_filled_with_silence(rx):
    sid = "stream-wild"
    payloads = [bytes([k]) * 160 for k in range(4)]
    numbers = [1, 2, 10**12, 3]
    messages = [start_frame(sid)] + [media_frame(sid, k + 2, "inbound", n, p)
                                     for k, (n, p) in enumerate(zip(numbers, payloads, strict=True))]
    asyncio.run(ws_send(rx.stream_url, [*messages, stop_frame(sid, 6)]))
    wait_until(lambda: len(rx.frames) == 4)
    row = rx.quality().iloc[0]
    assert (row.packets, row.expected, row.lost, row.discarded) == (3, 3, 0, 1)
    expected = codecs.ulaw_decode(payloads[0] + payloads[1] + payloads[3])
    np.testing.assert_array_equal(rx.audio(CCID).samples, expected)


def test_an_odd_length_l16_payload_does_not_spoil_the_track(rx):
    sid = "stream-odd"
    good = codecs.l16_encode(TONE16[:320])
    messages = [start_frame(sid, encoding="L16", rate=16000), media_frame(sid, 2, "inbound", 1, good),
                media_frame(sid, 3, "inbound", 2, good[:-1]), media_frame(sid, 4, "inbound", 3, good)]
    asyncio.run(ws_send(rx.stream_url, [*messages, stop_frame(sid, 5)]))
    wait_until(lambda: len(rx.frames) == 3)
    audio = rx.audio(CCID)
    assert audio.rate == 16000 and len(audio) == 320 + 319 + 320
    np.testing.assert_array_equal(audio.samples[-320:], TONE16[:320])


def test_message_over_the_hard_limit_ends_the_stream_and_keeps_data(rx):
    sid = "stream-huge"
    messages = [start_frame(sid), media_frame(sid, 2, "inbound", 1, bytes(160)), "x" * (16 * 4096 + 1)]
    asyncio.run(ws_send(rx.stream_url, messages))
    wait_until(lambda: len(rx.streams) > 0 and rx.streams["ended_at"].notna().all())
    assert rx.streams.loc[0, "end_reason"] == "message_too_big"
    assert rx.stream_errors["reason"].tolist() == ["message_too_big"]
    assert len(rx.frames) == 1


def test_peer_vanishing_mid_stream_keeps_data(rx):
    sid = "stream-vanish"
    messages = [start_frame(sid)] + [media_frame(sid, k + 2, "inbound", k + 1, bytes(160)) for k in range(5)]
    asyncio.run(ws_send(rx.stream_url, messages, vanish=True))
    wait_until(lambda: len(rx.streams) > 0 and rx.streams["ended_at"].notna().all())
    streams = rx.streams
    assert streams.loc[0, "end_reason"] == "closed" and pd.isna(streams.loc[0, "stopped_at"])
    assert len(rx.frames) == 5 and len(rx.audio(CCID)) == 800
    assert rx.health()["open_streams"] == 0


def test_several_streams_at_once(rx):
    async def calls():
        await asyncio.gather(*(
            ws_send(rx.stream_url, [start_frame(f"s{n}", f"v3:c{n}")] +
                    [media_frame(f"s{n}", k + 2, "inbound", k + 1, bytes([n]) * 160) for k in range(25)], pace=0.002)
            for n in range(8)))
    asyncio.run(calls())
    wait_until(lambda: len(rx.frames) == 200)
    assert rx.frames.groupby("call_control_id").size().tolist() == [25] * 8
    assert all(len(rx.audio(f"v3:c{n}")) == 4000 for n in range(8))


def test_stream_auth_token():
    with tnb.Receiver(stream_auth_token="s3cret") as rx:
        header = {media.AUTH_TOKEN_HEADER: "s3cret"}
        asyncio.run(ws_send(rx.stream_url,
                            [start_frame("ok-header"), media_frame("ok-header", 2, "inbound", 1, bytes(160))],
                            headers=header))
        connected = media.dumps(media.Connected(auth_token="s3cret"))
        asyncio.run(ws_send(rx.stream_url, [connected, start_frame("ok-frame", "v3:b")]))
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            asyncio.run(ws_send(rx.stream_url, [start_frame("bad-header")], headers={media.AUTH_TOKEN_HEADER: "nope"}))
        assert refused.value.status == 403
        ws, _ = asyncio.run(ws_send(rx.stream_url,
                                    [start_frame("no-token"), media_frame("no-token", 2, "inbound", 1, bytes(160))]))
        wrong = media.dumps(media.Connected(auth_token="guess"))
        asyncio.run(ws_send(rx.stream_url, [wrong, start_frame("wrong-token")]))
        garbage, _ = asyncio.run(ws_send(rx.stream_url, ["{bad"] * 50))                # unparseable: refused at once
        with pytest.raises(aiohttp.WSServerHandshakeError) as odd_header:
            asyncio.run(ws_send(rx.stream_url, [start_frame("odd")], headers={media.AUTH_TOKEN_HEADER: "s3cr\u00e9t"}))
        assert odd_header.value.status == 403
        wait_until(lambda: len(rx.streams) == 2 and rx.health()["ws_refused"] == 5)
        assert ws.close_code == 1008 and garbage.close_code == 1008
        assert rx.streams.set_index("stream_id")["authenticated"].to_dict() == {"ok-header": True, "ok-frame": True}
        assert len(rx.frames) == 1
        assert rx.stream_errors["reason"].tolist() == ["auth_failed"] * 5


def test_a_second_start_on_one_socket_ends_the_first_stream(rx):
    messages = [start_frame("first"), media_frame("first", 2, "inbound", 1, bytes(160)),
                start_frame("second", "v3:second"), media_frame("second", 2, "inbound", 1, bytes(160))]
    asyncio.run(ws_send(rx.stream_url, messages))
    wait_until(lambda: len(rx.streams) == 2 and rx.streams["ended_at"].notna().all())
    reasons = rx.streams.set_index("stream_id")["end_reason"].to_dict()
    assert reasons["first"] == "replaced" and reasons["second"] == "closed"
    assert rx.health()["open_streams"] == 0


def test_blocking_cell_does_not_hold_up_arrivals(rx):
    """A 2 s time.sleep in this thread while frames arrive every 20 ms: nothing waits for it.

    Every frame is stored, none is stamped before it was sent, and frames sent while this
    thread was blocked were stamped while it was still blocked (on the kernel's own loop they
    would all be stamped after it woke up). That is an ordering on one clock, not a duration:
    how late the stamps are is measured by benchmarks/bench_blocking_cell.py.
    """
    sid, sent = "stream-sleep", []
    messages = [start_frame(sid)] + [media_frame(sid, k + 2, "inbound", k + 1, bytes(160)) for k in range(150)]
    peer = threading.Thread(target=lambda: asyncio.run(ws_send(rx.stream_url, messages, pace=0.02, sent_at=sent)))
    peer.start()
    wait_until(lambda: len(sent) > 10)
    asleep = time.time_ns()
    time.sleep(2)                   # the stimulus: the "blocking cell" itself, not a wait for something
    awake = time.time_ns()
    peer.join(timeout(30))
    assert not peer.is_alive()
    wait_until(lambda: len(rx.frames) == 150)
    sent_ns = np.array(sent[1:])
    received_ns = rx.frames["received_at"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    assert (received_ns >= sent_ns).all()
    during = (sent_ns > asleep) & (sent_ns < awake)
    assert during.any()
    assert (received_ns[during] < awake).any()


def test_callbacks(rx, caplog):
    seen, done = [], threading.Event()
    rx.on("stream.dtmf", lambda event: seen.append(event))
    rx.on("stream.stop", lambda event: done.set())
    unsubscribe = rx.on("stream.start", lambda event: 1 / 0)
    asyncio.run(ws_send(rx.stream_url, [start_frame("cb"), media.dumps(media.Dtmf("cb", 2, "7")), stop_frame("cb", 3)]))
    assert done.wait(timeout(5))
    assert [r.exc_info[0] for r in caplog.records if r.name == "telnyx_nb.events"] == [ZeroDivisionError]
    unsubscribe()
    assert [(e["event_type"], e["digit"], e["call_control_id"]) for e in seen] == [("stream.dtmf", "7", CCID)]
    assert rx.health()["callback_errors"] == 1
    assert rx.dtmf[["stream_id", "call_control_id", "digit", "sequence_number"]].values.tolist() == \
        [["cb", CCID, "7", 2]]


@pytest.mark.parametrize("samples", [TONE16[:1600], TONE16[:1600].astype(np.float64) / 32768], ids=["int16", "float"])
def test_send_audio_mark_and_clear(rx, samples):
    async def telnyx_side():
        async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
            await ws.send_str(start_frame("bidi"))
            await asyncio.to_thread(wait_until, lambda: len(rx.streams))
            sent = rx.send_audio("bidi", samples, 16000)                                  # 100 ms at 16 kHz
            marked = rx.mark("bidi", "after-tone")
            replies = [media.parse_app_frame((await ws.receive(timeout=timeout(5))).data) for _ in range(6)]
            await asyncio.to_thread(sent.result, timeout(5))
            await asyncio.to_thread(marked.result, timeout(5))
            await ws.send_str(media.dumps(media.Mark("bidi", 3, "after-tone")))         # the echo
            rx.send_audio("bidi", TONE, 8000)                                             # 1 s, cut short:
            await ws.receive(timeout=timeout(5))
            await asyncio.to_thread(rx.clear("bidi").result, timeout(5))
            rest = []
            while not isinstance(rest[-1:] and rest[-1], media.Clear):
                rest.append(media.parse_app_frame((await ws.receive(timeout=timeout(5))).data))
            return replies, rest
    replies, rest = asyncio.run(telnyx_side())
    assert [type(r) for r in replies] == [media.AppMedia] * 5 + [media.AppMark]
    audio = b"".join(r.payload for r in replies[:5])
    assert len(audio) == 800                                      # resampled 16 kHz -> Telnyx's default 8 kHz PCMU
    assert audio == codecs.ulaw_encode(codecs.resample(to_int16(samples), 16000, 8000))
    assert replies[5].name == "after-tone"
    assert len(rest) < 50                                          # clear cut the 1 s (50 frames) short
    wait_until(lambda: len(rx.marks))
    assert rx.marks[["stream_id", "name"]].values.tolist() == [["bidi", "after-tone"]]
    with pytest.raises(LookupError):
        rx.mark("no-such-stream", "x")


# -- webhooks -------------------------------------------------------------------------------------

def test_webhooks_verified_fail_closed_and_deduplicated():
    signer, other = webhooks.Signer(), webhooks.Signer()
    with tnb.Receiver(public_key=signer.public_key) as rx:
        started = envelope("call.fork.started", {"call_control_id": CCID, "call_leg_id": "leg-1",
                                                 "call_session_id": "sess-1", "client_state": "YQ=="},
                           event_id="ev-1", occurred_at="2026-11-24T09:00:00.123456Z")
        assert post(rx.webhook_url, started, signer.sign(started)) == 200
        again = envelope("call.fork.started", {"call_control_id": CCID}, event_id="ev-1", attempt=2)
        assert post(rx.webhook_url, again, signer.sign(again)) == 200            # re-delivery: stored once
        transcript = envelope("call.transcription", {"call_control_id": CCID, "transcription_data": {
            "transcript": "hello there", "confidence": 0.93, "is_final": True, "transcription_track": "inbound"}})
        assert post(rx.webhook_url, transcript, signer.sign(transcript)) == 200

        body = envelope("streaming.started", {"call_control_id": CCID})
        rejected = [
            (body.replace(b"streaming", b"Streaming"), signer.sign(body)),            # tampered
            (body, signer.sign(body, timestamp=int(time.time()) - 301)),              # stale
            (body, {}),                                                               # unsigned
            (body, other.sign(body)),                                                 # wrong key
        ]
        assert [post(rx.webhook_url, b, h) for b, h in rejected] == [401] * 4
        assert post(rx.webhook_url, b"{not json", signer.sign(b"{not json")) == 400
        assert post(rx.webhook_url, b'{"data": 1}', signer.sign(b'{"data": 1}')) == 400

        events = rx.events
        assert events["event_type"].tolist() == ["call.fork.started", "call.transcription"]
        row = events.iloc[0]
        columns = ["event_id", "call_control_id", "call_leg_id", "call_session_id", "client_state", "verified",
                   "attempt"]
        assert row[columns].tolist() == ["ev-1", CCID, "leg-1", "sess-1", "YQ==", True, 1]
        assert row["occurred_at"] == pd.Timestamp("2026-11-24T09:00:00.123456Z")
        assert str(events["occurred_at"].dtype) == "datetime64[ns, UTC]" and isinstance(row["payload"], dict)
        assert rx.transcripts[["call_control_id", "track", "transcript", "confidence", "is_final"]].values.tolist() == \
            [[CCID, "inbound", "hello there", 0.93, True]]
        assert rx.webhook_errors["reason"].tolist() == ["bad_signature", "stale", "missing_header", "bad_signature",
                                                        "malformed_json", "bad_envelope"]
        health = rx.health()
        assert (health["duplicates"], health["webhooks_rejected"], health["webhooks_malformed"]) == (1, 4, 2)


def test_webhooks_without_public_key_warn_once_and_are_unverified():
    with pytest.warns(UserWarning, match="unverified") as said, tnb.Receiver() as rx:
        body = envelope("call.initiated", {"call_control_id": CCID})
        assert post(rx.webhook_url, body) == 200
        assert post(rx.webhook_url, envelope("call.answered", {"call_control_id": CCID})) == 200
        assert rx.events["verified"].tolist() == [False, False]
    assert len([w for w in said if "unverified" in str(w.message)]) == 1


def test_webhook_ids_of_the_wrong_type_are_stored_as_null_not_a_500(rx):
    odd = {"call_control_id": ["v3:a"], "call_leg_id": 5, "call_session_id": {"x": 1}, "client_state": 7}
    assert post(rx.webhook_url, envelope("call.fork.started", odd)) == 200
    assert post(rx.webhook_url, envelope("call.fork.stopped", odd)) == 200
    events = rx.events
    assert events[["call_control_id", "call_leg_id", "call_session_id", "client_state"]].isna().all().all()
    assert events["payload"].iloc[0]["call_control_id"] == ["v3:a"]   # the raw payload is kept as sent


def test_webhook_callback(rx):
    got = threading.Event()
    rx.on("call.transcription",
          lambda event: got.set() if event["payload"]["transcription_data"]["transcript"] == "hi" else None)
    post(rx.webhook_url, envelope("call.transcription",
                                  {"call_control_id": CCID, "transcription_data": {"transcript": "hi"}}))
    assert got.wait(timeout(5))


# -- UDP fork ---------------------------------------------------------------------------------------

def rtp_packets(ssrc: int, seqs: list[int], payloads: dict[int, bytes], pt: int = 0) -> list[bytes]:
    return [rtp.build_rtp(rtp.RtpPacket(pt, s & 0xFFFF, (160 * s) & 0xFFFFFFFF, ssrc, payloads[s])) for s in seqs]


def test_fork_rtp_wrap_impairments_attribution_and_audio(rx):
    pcmu = chunks(codecs.ulaw_encode(TONE[:160 * 16]), 160)
    numbers = list(range(65530, 65546))                           # wraps after 65535
    payloads = {n: pcmu[i] for i, n in enumerate(numbers)}
    order = [n for n in numbers if n != 65533]                    # lost
    order.insert(order.index(65536) + 1, 65536)                   # seq 0 duplicated
    i = order.index(65539)
    order[i], order[i + 1] = order[i + 1], order[i]               # 3 and 4 swapped
    rx.expect_fork(CCID)
    udp_send(rx.fork_rx, rtp_packets(0xA1, order, payloads))
    udp_send(rx.fork_tx, rtp_packets(0xB2, numbers[:4], payloads, pt=8))
    udp_send(rx.fork_rx, [b"\x00\x01", bytes(12)])                # truncated, RTP version 0
    wait_until(lambda: len(rx.rtp) == len(order) + 4 and len(rx.rtp_errors) == 2)

    table = rx.rtp
    inbound = table[table.target == "rx"]
    assert inbound["seq"].tolist() == [n & 0xFFFF for n in order]
    assert inbound["ssrc"].eq(0xA1).all() and inbound["payload_type"].eq(0).all() and inbound["n_bytes"].eq(160).all()
    assert table["call_control_id"].eq(CCID).all() and table["call_leg_id"].isna().all()
    assert str(table["received_at"].dtype) == "datetime64[ns, UTC]"
    assert rx.rtp_errors["reason"].tolist() == ["truncated", "bad_version"]

    audio = rx.audio(CCID, "rx", source="fork")
    expected = codecs.ulaw_decode(b"".join(payloads[n] if n != 65533 else b"\xff" * 160 for n in numbers))
    np.testing.assert_array_equal(audio.samples, expected)
    np.testing.assert_array_equal(rx.audio(CCID, "inbound", source="fork").samples, expected)
    outbound = rx.audio(CCID, "tx", source="fork")                 # PT 8: decoded as PCMA
    np.testing.assert_array_equal(outbound.samples, codecs.alaw_decode(b"".join(payloads[n] for n in numbers[:4])))

    q = rx.quality().set_index("track")
    columns = ["source", "ssrc", "packets", "expected", "lost", "duplicates", "reordered", "discarded"]
    assert q.loc["rx", columns].tolist() == ["fork", 0xA1, 16, 16, 1, 1, 1, 0]
    assert pd.isna(q.loc["rx", "stream_id"]) and q.loc["tx", "lost"] == 0


def test_fork_attribution_by_webhook_and_strep(rx):
    leg = uuid.uuid4()
    post(rx.webhook_url, envelope("call.fork.started", {"call_control_id": "v3:by-webhook"}))
    post(rx.webhook_url, envelope("call.answered", {"call_control_id": "v3:strep", "call_leg_id": str(leg)}))
    wait_until(lambda: len(rx.events) == 2)
    udp_send(rx.fork_rx, rtp_packets(7, [1, 2], {1: bytes(160), 2: bytes(160)}))
    strep = rtp.StrepHeader(leg, direction="transmitted")
    udp_send(rx.fork_rx, [rtp.build_fork_packet(rtp.ForkPacket(rtp.RtpPacket(0, 9, 0, 8, bytes(160)), strep))])
    udp_send(rx.fork_rx, rtp_packets(9, [1], {1: bytes(160)}))   # no claim left: unattributed...
    wait_until(lambda: len(rx.rtp) == 4)
    table = rx.rtp.astype({"call_control_id": object, "call_leg_id": object}).fillna({"call_control_id": "-",
                                                                                      "call_leg_id": "-"})
    assert table[["ssrc", "target", "call_control_id", "call_leg_id"]].values.tolist() == [
        [7, "rx", "v3:by-webhook", "-"], [7, "rx", "v3:by-webhook", "-"],
        [8, "tx", "v3:strep", str(leg)], [9, "rx", "-", "-"]]
    post(rx.webhook_url, envelope("call.fork.started", {"call_control_id": "v3:late-webhook"}))  # ...until claimed late
    wait_until(lambda: len(rx.events) == 3)
    assert rx.rtp["call_control_id"].tolist()[-1] == "v3:late-webhook"


# -- lifecycle, addresses, health --------------------------------------------------------------------

def test_urls_lifecycle_and_health():
    rx = tnb.Receiver(public_url="https://abc.example.test/", loop="asyncio", allow_unverified=True)
    with rx:
        assert rx.webhook_url == "https://abc.example.test/webhooks"
        assert rx.stream_url == "wss://abc.example.test/stream"
        assert rx.fork_rx.startswith("udp:127.0.0.1:") and rx.fork_rx != rx.fork_tx
        wait_until(lambda: rx.health()["loop_lag_p99_ms"] >= 0, what="a loop-lag sample")   # NaN until one
        health = rx.health()
        assert health["loop"] == "asyncio" and health["loop_lag_p99_ms"] >= 0 and health["messages"] == 0
        for key in ("loop_lag_p50_ms", "loop_lag_p99_ms"):             # microseconds, no float noise
            assert health[key] == round(health[key], 3), health[key]
        assert rx.start() is rx and rx.__enter__() is rx                # idempotent
        with pytest.raises(OSError):
            tnb.Receiver(port=rx.port).start()                          # port taken: fails, cleanly
    assert "stopped" in repr(rx)


def test_restart_keeps_data_and_callbacks():
    rx, seen = tnb.Receiver(), []
    rx.on("stream.start", seen.append)
    for n in range(2):
        with rx:
            asyncio.run(ws_send(rx.stream_url, [start_frame(f"r{n}")]))
            wait_until(lambda n=n: len(seen) == n + 1)
    assert rx.streams["stream_id"].tolist() == ["r0", "r1"]


def test_async_twins():
    async def main():
        rx = await tnb.Receiver().astart()
        try:
            messages = [start_frame("a"), media_frame("a", 2, "inbound", 1, bytes(160))]
            await asyncio.to_thread(asyncio.run, ws_send(rx.stream_url, messages))
            await asyncio.to_thread(wait_until, lambda: len(rx.frames) == 1)
        finally:
            await rx.astop()
    asyncio.run(main())


# -- save / load -------------------------------------------------------------------------------------

def test_save_and_load_round_trip(rx, tmp_path):
    pcmu = chunks(codecs.ulaw_encode(TONE[:1600]), 160)
    messages = [start_frame("s-save", custom_parameters={"k": "v"})]
    messages += [media_frame("s-save", c + 1, "inbound", c, pcmu[c - 1]) for c in (1, 2, 4, 5, 5, 7, 6, 8, 9, 10)]
    messages += [media.dumps(media.Dtmf("s-save", 20, "5")), "{oops", stop_frame("s-save", 21)]
    asyncio.run(ws_send(rx.stream_url, messages))
    rx.expect_fork(CCID)
    udp_send(rx.fork_rx, rtp_packets(3, [65535, 65536, 65538], {n: pcmu[n % 8] for n in (65535, 65536, 65538)}))
    post(rx.webhook_url, envelope("call.transcription", {"call_control_id": CCID, "transcription_data": {
        "transcript": "saved", "confidence": None, "is_final": False}}))
    wait_until(lambda: len(rx.frames) == 10 and len(rx.rtp) == 3 and len(rx.events) == 1 and len(rx.stream_errors) == 1)

    path = rx.save(tmp_path / "session")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "telnyx_nb.recording" and manifest["version"] == 3 and manifest["finished"]
    assert manifest["rows"]["frames"] == 10 and manifest["rows"]["rtp"] == 3
    s = tnb.load(path)
    for name in ("events", "transcripts", "frames", "rtp", "streams", "dtmf", "marks", "stream_errors",
                 "webhook_errors", "rtp_errors"):
        live, loaded = getattr(rx, name), getattr(s, name)
        pd.testing.assert_frame_equal(loaded, live)                     # identical, dtypes included
        for col in live.columns:
            if str(live[col].dtype).startswith("datetime64"):
                assert str(loaded[col].dtype) == "datetime64[ns, UTC]", (name, col)
    assert isinstance(s.events.loc[0, "payload"], dict) and s.streams.loc[0, "custom_parameters"] == {"k": "v"}
    np.testing.assert_array_equal(s.audio(CCID).samples, rx.audio(CCID).samples)
    np.testing.assert_array_equal(s.audio(CCID, "rx", source="fork").samples,
                                  rx.audio(CCID, "rx", source="fork").samples)
    pd.testing.assert_frame_equal(s.quality(), rx.quality())
    assert len(s.audio(CCID)) == 1600


def test_garbage_never_crashes_and_is_all_accounted_for(rx):
    """Seeded random text, binary and datagrams: every message is either stored or recorded."""
    rng = np.random.default_rng(5)
    valid = media_frame("fuzz", 2, "inbound", 1, bytes(160))
    messages = [start_frame("fuzz")]
    for n in range(60):
        raw = rng.bytes(int(rng.integers(0, 300)))
        kind = n % 3
        if kind == 0:
            messages.append(raw)                                              # binary
        elif kind == 1:
            messages.append(raw.decode("latin-1"))                            # text, not JSON
        else:
            cut = int(rng.integers(0, len(valid)))
            messages.append(valid[:cut] + raw.decode("latin-1")[:10] + valid[cut:])   # damaged frame
    messages.append(media_frame("fuzz", 3, "inbound", 2, bytes(160)))
    asyncio.run(ws_send(rx.stream_url, messages))
    datagrams = [rng.bytes(int(rng.integers(0, 200))) for _ in range(50)]
    udp_send(rx.fork_rx, datagrams)
    wait_until(lambda: rx.health()["ws_messages"] == len(messages) and rx.health()["udp_packets"] == 50)
    health = rx.health()
    assert len(rx.frames) + health["stream_errors"] == len(messages) - 1     # the start frame aside
    assert len(rx.rtp) + len(rx.rtp_errors) == 50 and health["udp_errors"] == len(rx.rtp_errors)
    assert rx.frames["chunk"].tolist()[-1] == 2                                # the stream went on
    written = set(rx.stream_errors["reason"]) | set(rx.rtp_errors["reason"])
    assert written and written <= {reason.value for reason in tnb.Reason}      # reasons are the enum's values


def test_webhook_too_large_is_413_and_recorded():
    with tnb.Receiver(max_webhook_size=1000) as rx:
        assert post(rx.webhook_url, b"{" + b" " * 2000 + b"}") == 413
        assert rx.webhook_errors["reason"].tolist() == ["too_large"] and rx.events.empty
