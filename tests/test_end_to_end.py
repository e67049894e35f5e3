"""End to end: sandbox -> real ``telnyx`` SDK -> Receiver, checked against the sandbox's ground truth.

Each call plays a 2 s scripted tone with seeded impairments (loss, duplicates, reordering),
on all three media paths: WebSocket stream (PCMU, PCMA, L16), forked RTP (PCMU, PCMA) and
transcription webhooks. Tables, counts and audio must match what the sandbox says it sent,
bit for bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import telnyx

import telnyx_nb as tnb
from telnyx_nb.sandbox import Scenario
from telnyx_nb.wire import codecs

from waiting import timeout, wait_until

COPIES = {"delivered": 1, "dropped": 0, "duplicated": 2, "skipped": 0, "unsent": 0}
IMPAIRMENT = dict(loss=0.08, duplicate=0.08, reorder=0.08, seed=7)


@pytest.fixture(scope="module")
def sb():
    with tnb.Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def rx(sb):
    with tnb.Receiver(public_key=sb.public_key) as receiver:
        yield receiver




def run_call(sb, rx, to: str, codec: str, start, scenario: Scenario | None = None, **impairment) -> str:
    """Dial ``to`` with the real SDK, impair, run ``start(client, ccid)`` once answered, wait for the end."""
    sb.route(to, scenario or Scenario.tone(seconds=2, outbound_frequency=660), codec=codec)
    client = sb.client()
    ccid = client.calls.dial(connection_id=sb.connection_id, to=to, from_="+15550199",
                             webhook_url=rx.webhook_url).data.call_control_id
    if impairment:
        sb.impair(ccid, **impairment)
    wait_until(lambda: sb.call_state(ccid) == "answered")
    start(client, ccid)
    wait_until(lambda: sb.call_state(ccid) == "ended")
    sb.wait_webhooks(timeout(10))
    wait_until(lambda: "call.hangup" in set(rx.events["event_type"]))
    return ccid


def expected_track(truth: pd.DataFrame, codec: codecs.Codec) -> dict:
    """What the receiver must report for one track, from the ground truth (ordered by ``frame``)."""
    truth = truth.sort_values("frame")
    copies = truth["fate"].map(COPIES).to_numpy(int)
    frame = truth["frame"].to_numpy()
    got = copies > 0
    span = (frame >= frame[got].min()) & (frame <= frame[got].max())
    audio = b"".join(p if c else codec.silence * (n // len(codec.silence))
                     for p, c, n in zip(truth["payload"][span], copies[span], truth["n_bytes"][span], strict=True))
    sent_at = truth["sent_at"].to_numpy(dtype="datetime64[ns]").view(np.int64)[got]
    order = frame[got][np.lexsort((frame[got], sent_at))]        # the order they went on the wire
    return {
        "packets": int(copies.sum()), "expected": int(span.sum()), "lost": int((copies[span] == 0).sum()),
        "duplicates": int((copies == 2).sum()),
        "reordered": int(np.count_nonzero(order[1:] < np.maximum.accumulate(order)[:-1])),
        "samples": codec.decode(audio),
    }


def check_quality(row: pd.Series, expected: dict) -> None:
    assert row[["packets", "expected", "lost", "duplicates", "reordered"]].tolist() == \
        [expected[k] for k in ("packets", "expected", "lost", "duplicates", "reordered")]
    assert expected["lost"] and expected["duplicates"] and expected["reordered"]   # the seed impairs every kind


@pytest.mark.parametrize("call_codec, stream_codec, encoding, rate", [
    ("PCMU", "default", "PCMU", 8000),
    ("PCMA", "default", "PCMA", 8000),
    ("PCMU", "L16", "L16", 16000),
])
def test_stream(sb, rx, call_codec, stream_codec, encoding, rate):
    ccid = run_call(sb, rx, f"+1555010{len(stream_codec)}{call_codec[-1]}", call_codec,
                    lambda client, ccid: tnb.start_streaming(client, ccid, rx, stream_codec=stream_codec), **IMPAIRMENT)
    truth = sb.ground_truth(ccid, payloads=True)
    truth = truth[truth["path"] == "stream"]
    codec = codecs.get_codec(encoding)

    streams = rx.streams
    assert streams[["call_control_id", "encoding", "sample_rate"]].values.tolist() == [[ccid, encoding, rate]]
    assert streams.loc[0, "stream_id"] == truth["stream_id"].iloc[0] and streams.loc[0, "end_reason"] == "stop"
    frames = rx.frames
    quality = rx.quality().set_index("track")
    for track in ("inbound", "outbound"):
        sent = truth[truth["track"] == track]
        got = frames[frames["track"] == track]
        expected_chunks = np.repeat(sent["chunk"].to_numpy(int), sent["fate"].map(COPIES).to_numpy(int))
        assert sorted(got["chunk"]) == sorted(expected_chunks.tolist())
        by_chunk = got.drop_duplicates("chunk").set_index("chunk").sort_index()
        delivered = sent[sent["fate"] != "dropped"].set_index("chunk").sort_index()
        assert by_chunk["sequence_number"].tolist() == delivered["sequence_number"].astype(int).tolist()
        assert by_chunk["timestamp"].tolist() == delivered["timestamp"].astype(int).tolist()
        assert (got["received_at"].min() >= sent["due_at"].min()) and \
            got["n_bytes"].eq(codec.frame_bytes(20, rate)).all()
        expected = expected_track(sent, codec)
        np.testing.assert_array_equal(rx.audio(ccid, track).samples, expected["samples"])
        check_quality(quality.loc[track], expected)
    assert rx.audio(ccid).rate == rate


@pytest.mark.parametrize("call_codec", ["PCMU", "PCMA"])
def test_fork(sb, rx, call_codec):
    ccid = run_call(sb, rx, f"+1555020000{call_codec[-1]}", call_codec,
                    lambda client, ccid: tnb.start_forking(client, ccid, rx), **IMPAIRMENT)
    truth = sb.ground_truth(ccid, payloads=True)
    truth = truth[truth["path"] == "fork"]
    codec = codecs.get_codec(call_codec)
    table = rx.rtp
    assert table["call_control_id"].eq(ccid).all() and table["call_leg_id"].isna().all()
    assert set(table["encoding"]) == {call_codec}
    quality = rx.quality().set_index("track")
    for target in ("rx", "tx"):
        sent = truth[truth["track"] == target]
        got = table[table["target"] == target]
        assert set(got["ssrc"]) == set(sent["ssrc"].astype(int))
        expected_seq = np.repeat(sent["seq"].to_numpy(int), sent["fate"].map(COPIES).to_numpy(int))
        assert sorted(got["seq"]) == sorted(expected_seq.tolist())
        expected = expected_track(sent, codec)
        np.testing.assert_array_equal(rx.audio(ccid, target, source="fork").samples, expected["samples"])
        check_quality(quality.loc[target], expected)
    events = rx.events
    assert {"call.fork.started", "call.fork.stopped"} <= set(events["event_type"]) and events["verified"].all()


def test_transcripts_dtmf_and_webhooks(sb, rx):
    scenario = Scenario.tone(seconds=2, transcript=[("inbound", 0.2, 1.2, "hello from the sandbox")], dtmf=[(0.6, "7")])

    def start(client, ccid):
        tnb.start_streaming(client, ccid, rx)
        tnb.start_transcription(client, ccid, rx)

    ccid = run_call(sb, rx, "+15550300000", "PCMU", start, scenario, webhook_duplicate=0.5, seed=3)
    events = rx.events
    assert events["event_id"].is_unique and events["verified"].all() and events["call_control_id"].eq(ccid).all()
    assert rx.health()["duplicates"] == sb.webhook_stats().get("duplicated", 0)
    assert rx.health()["webhooks_rejected"] == 0
    finals = rx.transcripts[rx.transcripts["is_final"]]
    assert finals[["call_control_id", "track", "transcript"]].values.tolist() == \
        [[ccid, "inbound", "hello from the sandbox"]]
    assert rx.dtmf[["call_control_id", "digit"]].values.tolist() == [[ccid, "7"]]
    assert str(rx.transcripts["occurred_at"].dtype) == "datetime64[ns, UTC]"


def test_a_failed_fork_start_leaves_no_claim_behind(sb, rx):
    """start_forking on call A fails (422); call B's forked RTP must still be attributed to B."""
    client = sb.client()
    calls = []
    for to in ("+15550301", "+15550302"):
        sb.route(to, Scenario.tone(seconds=1))
        calls.append(client.calls.dial(connection_id=sb.connection_id, to=to, from_="+15550199",
                                       webhook_url=rx.webhook_url).data.call_control_id)
    a, b = calls
    wait_until(lambda: sb.call_state(a) == sb.call_state(b) == "answered")
    with pytest.raises(telnyx.UnprocessableEntityError):
        tnb.start_forking(client, a, rx, stream_type="raw")  # not a fork_start stream_type: 422 10032
    tnb.start_forking(client, b, rx)
    wait_until(lambda: sb.call_state(b) == "ended")
    sb.wait_webhooks(timeout(10))
    wait_until(lambda: len(rx.rtp) > 0 and "call.fork.stopped" in set(rx.events["event_type"]))
    assert set(rx.rtp["call_control_id"]) == {b}
    assert set(rx.quality().query("source == 'fork'")["call_control_id"]) == {b}
