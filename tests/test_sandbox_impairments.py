"""Impairments as the peer sees them, checked against the sandbox's ground truth; webhook retries."""

from __future__ import annotations

import base64
import itertools

import pytest

from telnyx_nb.sandbox import GilbertElliott, Impairment, Scenario

from sandbox_peer import dial, parse_rtp
from waiting import timeout


@pytest.mark.both_modes
def test_stream_loss_matches_ground_truth_exactly(sb, client, peer):
    ccid = dial(sb, client, peer, Scenario.tone(1.5), stream_url=peer.stream_url, stream_track="both_tracks")
    peer.wait_event(ccid, "streaming.started")
    assert sb.impair(ccid, loss=0.2, seed=1).seed == 1
    peer.wait_event(ccid, "call.hangup")
    conn = peer.stream_of(ccid)
    truth = sb.ground_truth(ccid)
    sent = truth[truth["fate"] != "dropped"]
    assert (truth["fate"] == "dropped").sum() > 0
    for track in ("inbound", "outbound"):
        received = [int(m["media"]["chunk"]) for m in conn.media(track)]
        rows = sent[sent["track"] == track]
        assert received == list(rows["chunk"])  # exactly the delivered (+duplicated) rows, in order
    assert len(conn.media()) == len(sent)
    lost = truth[truth["fate"] == "dropped"]
    assert lost["chunk"].notna().all() and lost["seq"].isna().all() and (lost["delay_ms"] == 0).all()
    assert lost["sent_at"].isna().all() and (sent["sent_at"] >= sent["due_at"]).all()  # dropped: never sent
    stats = peer.events(ccid)[-1].payload["call_quality_stats"]
    assert stats["inbound"]["skip_packet_count"] == str(int((lost["track"] == "inbound").sum()))


@pytest.mark.both_modes
def test_fork_duplicates_reorder_jitter(sb, client, peer):
    start = {name: len(peer.udp[name]) for name in ("rx", "tx")}
    ccid = dial(sb, client, peer, Scenario.tone(1.5))
    sb.impair(ccid, duplicate=0.2, reorder=0.2, jitter_ms=4.0, seed=7)
    client.calls.actions.start_forking(ccid, rx=peer.udp_target("rx"), tx=peer.udp_target("tx"))
    peer.wait_event(ccid, "call.hangup")
    truth = sb.ground_truth(ccid)
    for name in ("rx", "tx"):
        rows = truth[truth["track"] == name]
        seqs = [parse_rtp(data)["seq"] for _, data in peer.udp[name][start[name]:]]
        expected = sum(2 if fate == "duplicated" else 1 for fate in rows["fate"])
        assert len(seqs) == expected
        assert sorted(set(seqs)) == sorted(set(rows["seq"]))
        assert (rows["fate"] == "duplicated").sum() > 0 and (rows["delay_ms"] >= 30).sum() > 0
        assert rows["delay_ms"].between(0, 38).all()
        assert (rows["sent_at"] >= rows["due_at"]).all()
        assert any(b < a for a, b in itertools.pairwise(seqs) if abs(b - a) < 1000)  # some arrived out of order


def test_burst_loss_on_fork(sb, client, peer):
    start = len(peer.udp["rx"])
    ccid = dial(sb, client, peer, Scenario.tone(1.5))
    sb.impair(ccid, burst={"p": 0.1, "r": 0.3}, seed=3)
    client.calls.actions.start_forking(ccid, rx=peer.udp_target("rx"), tx=peer.udp_target("tx"))
    peer.wait_event(ccid, "call.hangup")
    truth = sb.ground_truth(ccid)
    rx = truth[truth["track"] == "rx"]
    received = [parse_rtp(data)["seq"] for _, data in peer.udp["rx"][start:]]
    assert received == list(rx[rx["fate"] == "delivered"]["seq"])
    fates = list(rx["fate"])
    runs = [len(list(g)) for k, g in itertools.groupby(fates) if k == "dropped"]
    assert runs and max(runs) >= 2  # losses come in bursts


def test_codec_mismatch(sb, client, peer):
    tone = Scenario.tone(0.6)
    ccid = dial(sb, client, peer, tone)
    sb.impair(ccid, codec_mismatch=True)
    client.calls.actions.start_streaming(ccid, stream_url=peer.stream_url)
    peer.wait_event(ccid, "call.hangup")
    conn = peer.stream_of(ccid)
    assert conn.frames[1]["start"]["media_format"]["encoding"] == "PCMU"
    payload = b"".join(base64.b64decode(m["media"]["payload"]) for m in conn.media())
    assert payload == tone.encoded("PCMA")["inbound"][-len(payload):]  # A-law bytes under a PCMU label
    assert payload != tone.encoded("PCMU")["inbound"][-len(payload):]


def test_websocket_dropped_abruptly(sb, client, peer):
    ccid = dial(sb, client, peer, Scenario.silence(3.0), stream_url=peer.stream_url)
    peer.wait_event(ccid, "streaming.started")
    sb.impair(ccid, drop_ws_after_s=0.3)
    conn = peer.stream_of(ccid)
    peer.wait_for(lambda: conn.closed_ns is not None, what="the socket to drop")
    assert "stop" not in conn.events() and conn.close_code != 1000
    peer.wait_event(ccid, "streaming.stopped")
    assert len(conn.media()) == len(sb.ground_truth(ccid))
    client.calls.actions.hangup(ccid)


@pytest.mark.both_modes
def test_webhooks_retried_after_500(sb, client, peer):
    sb.wait_webhooks(timeout(10))
    peer.fail_every_first_attempt = True
    try:
        before = sb.webhook_stats()
        ccid = dial(sb, client, peer, Scenario.silence(0.3))
        peer.wait_event(ccid, "call.hangup")
    finally:
        peer.fail_every_first_attempt = False
    hooks = [h for h in peer.webhooks if h.payload.get("call_control_id") == ccid]
    assert [(h.json["meta"]["attempt"], h.status) for h in hooks[:2]] == [(1, 500), (2, 200)]
    assert hooks[0].json["data"]["id"] == hooks[1].json["data"]["id"]
    assert all(h.json["meta"]["attempt"] == 2 for h in peer.events(ccid))
    sb.wait_webhooks(timeout(10))
    after = sb.webhook_stats()
    assert after["attempts"] - before.get("attempts", 0) == 2 * (after["queued"] - before["queued"])


def test_webhooks_given_up_after_three_attempts(sb, client):
    sb.wait_webhooks(timeout(10))
    before = sb.webhook_stats()
    ccid = client.calls.dial(connection_id=sb.connection_id, to="+15550100", from_="+1",
                             webhook_url="http://127.0.0.1:9/down").data.call_control_id
    client.calls.actions.hangup(ccid)
    sb.wait_webhooks(timeout(10))
    after = sb.webhook_stats()
    assert after["failed"] - before.get("failed", 0) == 2  # call.initiated and call.hangup
    assert after["attempts"] - before["attempts"] == 6


def test_webhook_duplicates_and_reorder(sb, client, peer):
    ccid = dial(sb, client, peer, Scenario.silence(2.0))
    sb.impair(ccid, webhook_duplicate=1.0, seed=1)
    sb.send_dtmf(ccid, "1")
    peer.wait_event(ccid, "call.dtmf.received", count=2)
    twice = [h.json["data"]["id"] for h in peer.events(ccid) if h.event_type == "call.dtmf.received"]
    assert len(twice) == 2 and twice[0] == twice[1]
    sb.impair(ccid, webhook_reorder=1.0, seed=1)
    sb.send_dtmf(ccid, "234")
    peer.wait_event(ccid, "call.dtmf.received", count=5)
    digits = [h.payload["digit"] for h in peer.events(ccid) if h.event_type == "call.dtmf.received"][2:]
    assert digits == ["3", "2", "4"]
    client.calls.actions.hangup(ccid)


def test_impairment_settings_are_validated_and_reproducible():
    with pytest.raises(ValueError):
        Impairment(loss=1.5)
    with pytest.raises(ValueError):
        Impairment(jitter_ms=-1)
    assert Impairment(burst=(0.1, 0.2)).burst == GilbertElliott(0.1, 0.2)
    assert Impairment().seed is not None
    a = Impairment(loss=0.3, duplicate=0.1, jitter_ms=10, reorder=0.1, burst={"p": 0.05, "r": 0.5}, seed=42)

    def fates(name):
        channel = a.channel(name)
        return [channel.next() for _ in range(200)]

    assert fates("stream/inbound") == fates("stream/inbound")
    assert fates("stream/inbound") != fates("stream/outbound")
    ge = Impairment(burst=GilbertElliott(p=0.02, r=0.25), seed=5).channel("fork/rx")
    lost = sum(ge.next()[0] == "dropped" for _ in range(20000)) / 20000
    assert abs(lost - 0.02 / 0.27) < 0.02  # stationary loss p/(p+r)
