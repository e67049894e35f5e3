"""Sandbox media, webhooks and transcription as an independent peer receives them."""

from __future__ import annotations

import base64
import json
import uuid
from itertools import pairwise

import numpy as np
import pytest

from telnyx_nb.sandbox import Sandbox, Scenario
from telnyx_nb.wire import codecs, webhooks

from sandbox_peer import dial, parse_rtp


def stream_rows(truth, track=None):
    rows = truth[truth["path"] == "stream"]
    return rows if track is None else rows[rows["track"] == track]


@pytest.mark.both_modes
def test_stream_frames_order_counters_payloads_and_signed_webhooks(sb, client, peer):
    tone = Scenario.tone(1.0, 440.0, outbound_frequency=880.0)
    ccid = dial(sb, client, peer, tone)
    client.calls.actions.start_streaming(ccid, stream_url=peer.stream_url, stream_track="both_tracks",
                                         stream_auth_token="s3cret",
                                         custom_parameters=[{"name": "customer", "value": "c-1"}])
    peer.wait_event(ccid, "call.hangup")
    conn = peer.stream_of(ccid)
    peer.wait_for(lambda: conn.closed_ns is not None, what="socket closed")
    frames = conn.frames
    events = [f["event"] for f in frames]
    assert events[:2] == ["connected", "start"] and events[-1] == "stop"
    assert set(events[2:-1]) == {"media"}
    assert conn.headers["x-telnyx-streaming-auth-token"] == "s3cret"
    assert frames[0] == {"event": "connected", "version": "1.0.0",
                         "connected": {"x-telnyx-streaming-auth-token": "s3cret"}}
    start = frames[1]
    stream_id = start["stream_id"]
    assert start["sequence_number"] == "1" and str(uuid.UUID(stream_id)) == stream_id
    assert start["start"]["media_format"] == {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}
    assert start["start"]["custom_parameters"] == {"customer": "c-1"}
    assert [int(f["sequence_number"]) for f in frames[1:]] == list(range(1, len(frames)))
    truth = sb.ground_truth(ccid, payloads=True)
    for track in ("inbound", "outbound"):
        media = conn.media(track)
        chunks = [int(m["media"]["chunk"]) for m in media]
        assert all(isinstance(m["media"][k], str) for m in media for k in ("chunk", "timestamp"))
        assert chunks == list(range(1, len(media) + 1))
        assert [int(m["media"]["timestamp"]) for m in media] == [20 * (c - 1) for c in chunks]
        payloads = [base64.b64decode(m["media"]["payload"]) for m in media]
        assert {len(p) for p in payloads} == {160}
        assert 25 <= len(media) <= 50  # 1 s of media at 20 ms, less what played before the socket opened
        rows = stream_rows(truth, track)
        assert list(rows["chunk"]) == chunks and list(rows["fate"].unique()) == ["delivered"]
        assert list(rows["payload"]) == payloads  # bit-exact
        assert len(media) == tone.n_frames - rows["frame"].iloc[0]  # one frame per 20 ms until the far end hung up
        assert (rows["due_at"].diff().dropna().dt.total_seconds().sub(0.020).abs() < 1e-8).all()  # absolute deadlines
        assert (rows["sent_at"] >= rows["due_at"]).all()  # never early (how late: benchmarks/bench_sandbox.py)
        assert b"".join(payloads) == tone.encoded("PCMU")[track][(50 - len(media)) * 160:]  # the script's tail
    assert str(truth["sent_at"].dtype) == str(truth["due_at"].dtype) == "datetime64[ns, UTC]"
    assert str(truth["chunk"].dtype) == "Int64"
    types = peer.types(ccid)
    assert types == ["call.initiated", "call.answered", "streaming.started", "streaming.stopped", "call.hangup"]
    hangup = peer.events(ccid)[-1].payload
    assert hangup["hangup_source"] == "callee" and \
        hangup["call_quality_stats"]["inbound"]["packet_count"] == str(len(conn.media("inbound")))
    for hook in peer.events(ccid):
        webhooks.verify(hook.body, hook.headers, sb.public_key)
        event = client.webhooks.unwrap(hook.body.decode(), headers=hook.headers)
        assert event.data.event_type == hook.event_type and hook.json["meta"]["attempt"] == 1
        assert hook.json["meta"]["delivered_to"] == peer.webhook_url and hook.json["data"]["record_type"] == "event"


def test_codecs_transcoding_and_l16(sb, client, peer):
    tone = Scenario.tone(0.5, 1000.0)
    calls = {
        "default": dial(sb, client, peer, tone, codec="PCMA", stream_url=peer.stream_url),
        "PCMU": dial(sb, client, peer, tone, codec="PCMA", stream_url=peer.stream_url, stream_codec="PCMU"),
        "L16": dial(sb, client, peer, tone, stream_url=peer.stream_url, stream_codec="L16"),
        "G722": dial(sb, client, peer, tone, codec="PCMA", stream_url=peer.stream_url, stream_codec="G722"),
    }
    expected = {"default": ("PCMA", 8000, 160), "PCMU": ("PCMU", 8000, 160), "L16": ("L16", 16000, 640),
                "G722": ("PCMA", 8000, 160)}
    for name, ccid in calls.items():
        peer.wait_event(ccid, "call.hangup")
        conn = peer.stream_of(ccid)
        encoding, rate, size = expected[name]
        assert conn.frames[1]["start"]["media_format"] == {"encoding": encoding, "sample_rate": rate, "channels": 1}
        payloads = [base64.b64decode(m["media"]["payload"]) for m in conn.media("inbound")]
        assert payloads and {len(p) for p in payloads} == {size}
        samples = codecs.get_codec(encoding).decode(b"".join(payloads))
        spectrum = np.abs(np.fft.rfft(samples))
        assert abs(np.argmax(spectrum) * rate / len(samples) - 1000.0) < 20  # it is the tone, decoded right
    l16 = b"".join(base64.b64decode(m["media"]["payload"]) for m in peer.stream_of(calls["L16"]).media("inbound"))
    assert l16 == tone.encoded("L16")["inbound"][-len(l16):]
    assert np.array_equal(np.frombuffer(l16, ">i2"), tone.pcm(16000)["inbound"][-len(l16) // 2:])  # big-endian


@pytest.mark.both_modes
def test_fork_plain_rtp(sb, client, peer):
    start = {name: len(peer.udp[name]) for name in ("rx", "tx")}
    ccid = dial(sb, client, peer, Scenario.tone(1.0, outbound_frequency=660.0))
    client.calls.actions.start_forking(ccid, rx=peer.udp_target("rx"), tx=peer.udp_target("tx"),
                                       stream_type="decrypted")
    peer.wait_event(ccid, "call.hangup")
    truth = sb.ground_truth(ccid, payloads=True)
    ssrcs = set()
    for name, pt_track in (("rx", "rx"), ("tx", "tx")):
        packets = [parse_rtp(data) for _, data in peer.udp[name][start[name]:]]
        rows = truth[truth["track"] == pt_track]
        assert len(packets) == len(rows) > 30
        assert {p["version"] for p in packets} == {2} and {p["pt"] for p in packets} == {0}
        assert [p["marker"] for p in packets] == [1] + [0] * (len(packets) - 1)
        assert all((b["seq"] - a["seq"]) % 65536 == 1 for a, b in pairwise(packets))
        assert all((b["ts"] - a["ts"]) % 2**32 == 160 for a, b in pairwise(packets))
        assert {len(p["payload"]) for p in packets} == {160} and len({p["ssrc"] for p in packets}) == 1
        assert [p["payload"] for p in packets] == list(rows["payload"])
        assert [p["seq"] for p in packets] == list(rows["seq"])
        assert list(rows["fate"].unique()) == ["delivered"] and (rows["sent_at"] >= rows["due_at"]).all()
        ssrcs.add(packets[0]["ssrc"])
    assert len(ssrcs) == 2
    types = peer.types(ccid)
    assert types.index("call.fork.started") < types.index("call.fork.stopped") < types.index("call.hangup")


def test_fork_strep_with_legacy_target(sb, client, peer):
    start = len(peer.udp["rx"])
    ccid = dial(sb, client, peer, Scenario.tone(0.5))
    leg = client.calls.retrieve_status(ccid).data.call_leg_id
    client.calls.actions.start_forking(ccid, extra_body={"target": peer.udp_target("rx")})
    peer.wait_event(ccid, "call.hangup")
    packets = [parse_rtp(data) for _, data in peer.udp["rx"][start:]]
    assert packets and all(p["strep"] is not None for p in packets)
    assert {(p["strep"]["version"], p["strep"]["leg"], p["strep"]["header_len"]) for p in packets} == {(1, 0, 24)}
    assert {p["strep"]["call_leg_id"] for p in packets} == {uuid.UUID(leg).bytes}
    by_direction = {d: [p for p in packets if p["strep"]["direction"] == d] for d in (0, 1)}
    assert len(by_direction[0]) == len(by_direction[1]) > 10
    assert by_direction[0][0]["ssrc"] != by_direction[1][0]["ssrc"]


def test_fork_replaces_stream(sb, client, peer):
    ccid = dial(sb, client, peer, Scenario.silence(3.0), stream_url=peer.stream_url)
    peer.wait_event(ccid, "streaming.started")
    conn = peer.stream_of(ccid)
    client.calls.actions.start_forking(ccid, rx=peer.udp_target("rx"), tx=peer.udp_target("tx"))
    peer.wait_event(ccid, "call.fork.started")
    peer.wait_for(lambda: conn.closed_ns is not None, what="stream closed")
    assert conn.events()[-1] == "stop"
    types = peer.types(ccid)
    assert types.index("streaming.stopped") < types.index("call.fork.started")
    client.calls.actions.hangup(ccid)
    assert peer.wait_event(ccid, "call.fork.stopped")


def test_bidirectional_playback_marks_clear_and_errors(sb, client, peer):
    ccid = dial(sb, client, peer, Scenario.silence(4.0), stream_url=peer.stream_url, stream_track="both_tracks",
                stream_bidirectional_mode="rtp", stream_bidirectional_codec="PCMA")
    conn = peer.stream_of(ccid)
    send = lambda frame: peer.send(conn, json.dumps(frame))  # noqa: E731
    send({"event": "mark", "mark": {"name": "idle"}})  # nothing queued: echoed at once
    t = np.arange(1600) / 8000
    audio = codecs.alaw_encode((np.sin(2 * np.pi * 500 * t) * 8000).astype(np.int16))  # 0.2 s
    send({"event": "media", "media": {"payload": base64.b64encode(audio).decode()}})
    send({"event": "mark", "mark": {"name": "played"}})
    send({"event": "media", "media": {"payload": "%%% not base64"}})
    peer.send(conn, "{not json")
    send({"event": "dance"})
    peer.wait_for(lambda: [f for f in conn.frames if f["event"] == "mark" and f["mark"]["name"] == "played"],
                  what="mark echo")
    frames = conn.frames
    marks = [i for i, f in enumerate(frames) if f["event"] == "mark"]
    assert [frames[i]["mark"]["name"] for i in marks] == ["idle", "played"]
    assert all(isinstance(frames[i]["sequence_number"], str) for i in marks)
    loud = [i for i, f in enumerate(frames) if f["event"] == "media" and f["media"]["track"] == "outbound"
            and np.abs(codecs.ulaw_decode(base64.b64decode(f["media"]["payload"]))).max() > 1000]
    assert len(loud) == 10 and max(loud) < marks[1]  # 0.2 s of app audio, all played before the echo
    errors = [f["payload"]["code"] for f in frames if f["event"] == "error"]
    assert errors == [100004, 100003, 100003] and all(f["stream_id"] for f in frames if f["event"] == "error")
    long_audio = codecs.alaw_encode(np.full(16000, 4000, dtype=np.int16))  # 2 s
    send({"event": "media", "media": {"payload": base64.b64encode(long_audio).decode()}})
    send({"event": "mark", "mark": {"name": "m2"}})
    send({"event": "mark", "mark": {"name": "m3"}})
    send({"event": "clear"})
    peer.wait_for(lambda: [f for f in conn.frames if f["event"] == "mark" and f["mark"]["name"] == "m3"], what="clear")
    names = [f["mark"]["name"] for f in conn.frames if f["event"] == "mark"]
    assert names == ["idle", "played", "m2", "m3"]
    client.calls.actions.hangup(ccid)


def test_dtmf_frames_and_webhooks(sb, client, peer):
    ccid = dial(sb, client, peer, Scenario.tone(1.0, dtmf=[(0.1, "5")]), stream_url=peer.stream_url)
    peer.wait_event(ccid, "streaming.started")
    sb.send_dtmf(ccid, "12#")
    peer.wait_event(ccid, "call.hangup")
    digits = [f["dtmf"]["digit"] for f in peer.stream_of(ccid).frames if f["event"] == "dtmf"]
    assert [d for d in digits if d != "5"] == list("12#")
    received = [h.payload["digit"] for h in peer.events(ccid) if h.event_type == "call.dtmf.received"]
    assert sorted(received) == sorted("512#")


def test_streaming_failed_when_unreachable(sb, client, peer):
    ccid = dial(sb, client, peer, Scenario.silence(2.0))
    client.calls.actions.start_streaming(ccid, stream_url="ws://127.0.0.1:9/nothing", stream_track="both_tracks")
    failed = peer.wait_event(ccid, "streaming.failed")[0].payload
    assert failed["failure_reason"] == "connection_failed" and failed["stream_type"] == "websocket"
    assert failed["stream_params"] == {"stream_url": "ws://127.0.0.1:9/nothing", "track": "both_tracks"}
    client.calls.actions.hangup(ccid)


SCRIPT = [("inbound", 0.1, 0.5, "hello big world"), ("outbound", 0.6, 0.9, "hi there")]


def test_transcription_follows_the_script(sb, client, peer):
    scenario = Scenario.tone(1.2, transcript=SCRIPT, confidence=0.91)
    full = dial(sb, client, peer, scenario, transcription=True, transcription_config={
        "transcription_tracks": "both", "transcription_engine": "Google",
        "transcription_engine_config": {"transcription_engine": "Google", "interim_results": True}})
    default = dial(sb, client, peer, scenario)
    client.calls.actions.start_transcription(default)
    peer.wait_event(full, "call.hangup")
    peer.wait_event(default, "call.hangup")

    def results(ccid):
        return [(h.payload["transcription_data"]["transcript"], h.payload["transcription_data"]["is_final"],
                 h.payload["transcription_data"]["transcription_track"], h.payload["transcription_data"]["confidence"])
                for h in peer.events(ccid) if h.event_type == "call.transcription"]

    assert results(full) == [("hello", False, "inbound", 0.91), ("hello big", False, "inbound", 0.91),
                             ("hello big world", True, "inbound", 0.91), ("hi", False, "outbound", 0.91),
                             ("hi there", True, "outbound", 0.91)]
    assert results(default) == [("hello big world", True, "inbound", 0.91)]
    types = peer.types(full)
    assert types.index("call.answered") < types.index("call.transcription") < types.index("call.hangup")


def test_speech_scenario_streams_real_audio(sb, client, peer):
    """A library scenario: the outbound track carries speech where the script says so."""
    from telnyx_nb.sandbox.scenarios import get_scenario

    survey = get_scenario("survey")
    pcm = survey.pcm(8000)
    first = survey.utterances[0]
    segment = pcm[first.track][int(first.start_s * 8000):int(first.end_s * 8000)]
    assert np.abs(segment).max() > 1000 and np.abs(pcm[first.track][: int(0.5 * 8000)]).max() < 50
    assert len(pcm["inbound"]) == survey.n_frames * 160 == len(survey.encoded("PCMU")["outbound"])


def test_stock_asyncio_loop_works_too(peer):
    with Sandbox(ring_s=0.05, scenario=Scenario.tone(0.5), use_uvloop=False) as plain:
        client = plain.client()
        ccid = client.calls.dial(connection_id=plain.connection_id, to="+15550100", from_="+15550199",
                                 webhook_url=peer.webhook_url, stream_url=peer.stream_url).data.call_control_id
        peer.wait_event(ccid, "call.hangup")
        assert plain.loop_name == "asyncio"
        media = peer.stream_of(ccid).media()
        assert media and len(media) == len(plain.ground_truth(ccid))
