"""Sandbox building blocks without sockets: playback queue, transcription script, validation,
scenarios, quality stats, ground-truth frame, media clock, and the shell entry point."""

from __future__ import annotations

import asyncio
import io
import threading
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telnyx_nb.emodel import e_model_mos
from telnyx_nb.sandbox import Scenario, library_names, serve
from telnyx_nb.sandbox.control import pack_snapshot, unpack_snapshot
from telnyx_nb.sandbox.errors import CATALOGUE, ApiError
from telnyx_nb.sandbox.ground_truth import GroundTruth
from telnyx_nb.sandbox.media_clock import MediaClock
from telnyx_nb.sandbox.params import SCHEMAS, parse_udp_target, validate
from telnyx_nb.sandbox.playback import Playback
from telnyx_nb.sandbox.quality_stats import call_quality_stats
from telnyx_nb.sandbox.scenarios import get_scenario
from telnyx_nb.sandbox.transcription import Transcriber
from telnyx_nb.store.columns import label_dtype

from waiting import await_until, timeout, wait_until


def test_playback_marks_follow_the_audio_before_them():
    p = Playback(8000, 160)
    assert p.push_mark("now") == ["now"]
    assert p.pop_frame() == (None, [])
    p.push_audio(np.full(200, 7, dtype=np.int16))
    assert p.push_mark("a") == [] and p.push_mark("b") == []
    p.push_audio(np.full(100, 9, dtype=np.int16))
    frame, marks = p.pop_frame()
    assert marks == [] and (frame == 7).all()
    frame, marks = p.pop_frame()
    assert marks == ["a", "b"] and list(frame[:40]) == [7] * 40 and list(frame[40:140]) == [9] * 100
    assert (frame[140:] == 0).all() and p.queued_samples == 0
    p.push_audio(np.ones(1000, dtype=np.int16))
    p.push_mark("c")
    assert p.clear() == ["c"] and p.pop_frame() == (None, [])
    assert not p.push_audio(np.zeros(8000 * 121, dtype=np.int16))  # over the 120 s limit


def test_transcriber_interim_and_tracks():
    scenario = Scenario.silence(3.0, transcript=[("inbound", 0.0, 0.9, "one two three"),
                                                 ("outbound", 1.0, 2.0, "four")])
    t = Transcriber(scenario, "both", interim=True)
    assert [(r.transcript, r.is_final) for r in t.due(0.6)] == [("one", False), ("one two", False)]
    assert [(r.transcript, r.is_final, r.track) for r in t.due(5)] == [("one two three", True, "inbound"),
                                                                        ("four", True, "outbound")]
    assert t.due(10) == []
    late = Transcriber(scenario, "inbound", start_s=0.7)
    assert [r.transcript for r in late.due(10)] == ["one two three"]
    assert [r.transcript for r in Transcriber(scenario, "outbound").due(10)] == ["four"]


def test_library_scenarios_render_at_both_rates():
    names = library_names()
    assert {"support_call", "appointment", "survey", "tone", "silence"} <= set(names)
    total = sum(get_scenario(n).duration_s for n in ("support_call", "appointment", "survey"))
    assert total >= 60
    s = get_scenario("appointment")
    assert get_scenario("appointment") is s  # cached
    pcm8, pcm16 = s.pcm(8000), s.pcm(16000)
    assert len(pcm16["inbound"]) == 2 * len(pcm8["inbound"]) == 2 * 160 * s.n_frames
    assert {u.track for u in s.utterances} == {"inbound", "outbound"}
    with pytest.raises(ValueError):
        get_scenario("nope")
    with pytest.raises(ValueError):
        Scenario.tone(0)
    with pytest.raises(ValueError):
        Scenario.tone(1, dtmf=[(0.1, "X")])


def test_tone_is_deterministic_and_encoded_per_codec():
    a, b = Scenario.tone(0.1, 500.0), Scenario.tone(0.1, 500.0)
    assert a.encoded("PCMU") == b.encoded("PCMU") and len(a.encoded("PCMU")["inbound"]) == 800
    assert len(a.encoded("L16")["inbound"]) == 3200 and set(a.encoded("PCMA")["outbound"]) == {0xD5}


@pytest.mark.parametrize("endpoint, body, code, pointer", [
    ("streaming_start", {"stream_url": "ws://h/x", "stream_track": "x"}, "10032", "/stream_track"),
    ("streaming_start", {"stream_url": "ws://h/x", "custom_parameters": [{"value": "v"}]}, "10004",
     "/custom_parameters/0/name"),
    ("streaming_start", {"stream_url": "ws://h/x", "stream_auth_token": "x" * 4001}, "10033", "/stream_auth_token"),
    ("streaming_start", {"stream_url": "ws://h/x", "enable_dialogflow": "yes"}, "10015", "/enable_dialogflow"),
    ("transcription_start", {"transcription_engine_config": {"interim_results": 1}}, "10015",
     "/transcription_engine_config/interim_results"),
    ("dial", {"connection_id": "1", "from": "+1", "to": ["+2", 3]}, "10015", "/to/1"),
    ("dial", {"connection_id": "1", "from": "+1", "to": "+2", "webhook_url": "ftp://x"}, "10003", "/webhook_url"),
    ("fork_start", {"target": "udp:999.1.1.1:80:9"}, "10003", "/target"),
    ("fork_start", {"tx": "udp:127.0.0.1:5000"}, "10004", "/rx"),
])
def test_validation_errors(endpoint, body, code, pointer):
    with pytest.raises(ApiError) as err:
        validate(endpoint, body)
    assert err.value.code == code and err.value.pointer == pointer
    assert err.value.body()["errors"][0]["source"] == {"pointer": pointer}


def test_udp_targets():
    assert parse_udp_target("udp:127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_udp_target("udp:localhost:1") == ("localhost", 1)
    for bad in ("tcp:1.2.3.4:5", "udp:1.2.3.4", "udp:1.2.3.4:0", "udp:1.2.3.4:70000", "udp::5", "udp:a b:5"):
        assert parse_udp_target(bad) is None, bad


def test_quality_stats_and_mos():
    assert 4.3 < e_model_mos(0.0, 0.0) < 4.5 and e_model_mos(20.0, 0.0) < 2.5 < e_model_mos(1.0, 0.0)
    truth = GroundTruth()
    script = ({"inbound": bytes(320), "outbound": bytes(320)}, 160)
    for i, fate in enumerate(["delivered", "dropped", "duplicated"]):
        truth.add_fork("rx", i, i * 160, 1, 0, fate, 0.01 * i, 0, script, 160)
    stats = call_quality_stats(truth, 99)
    assert stats["inbound"]["packet_count"] == "3" and stats["inbound"]["skip_packet_count"] == "1"
    assert stats["inbound"]["jitter_packet_count"] == "1" and \
        stats["outbound"] == {"packet_count": "99", "skip_packet_count": "0"}


def test_ground_truth_frame_types_payloads_and_fates():
    truth = GroundTruth()
    script = ({"inbound": bytes(range(160)) * 2, "outbound": bytes(320)}, 160)
    sent = truth.add_stream("inbound", 1, 2, 0, 1_700_000_000_123_456_789, "delivered", 0.0, "sid", 1, script, 160)
    truth.add_fork("tx", 65535, 7, 99, 1_700_000_000_000_000_000, "dropped", 0.0, 0, b"mixed", 5)
    twice = truth.add_fork("rx", 1, 160, 98, 1_700_000_000_020_000_000, "duplicated", 0.004, 1, script, 160)
    truth.add_fork("rx", -1, -1, 98, 1_700_000_000_040_000_000, "skipped", 0.0, 2, script, 160)
    never = truth.add_stream("outbound", 2, 3, 20, 1_700_000_000_143_456_789, "delivered", 0.0, "sid", 2, script, 160)
    pending = truth.add_stream("inbound", 2, 4, 20, 1_700_000_000_143_456_789, "delivered", 0.0, "sid", 2, script, 160)
    assert list(GroundTruth.to_frame(truth.snapshot())["fate"]) == ["pending", "dropped", "pending", "skipped",
                                                                      "pending", "pending"]
    truth.sent(sent, 1_700_000_000_123_999_999)
    truth.sent(twice, 1_700_000_000_025_000_000)
    truth.unsent(never)
    truth.sent(never, 1)  # too late: it stays unsent
    empty = GroundTruth.to_frame(GroundTruth().snapshot())
    frame = GroundTruth.to_frame(truth.snapshot(), payloads=True)
    assert list(empty.columns) == list(frame.columns)[:-1] and len(empty) == 0
    for column in ("due_at", "sent_at"):
        assert str(frame[column].dtype) == str(empty[column].dtype) == "datetime64[ns, UTC]"
    assert frame["due_at"][0].nanosecond == 789 and frame["sent_at"][0].nanosecond == 999
    assert list(frame["fate"]) == ["delivered", "dropped", "duplicated", "skipped", "unsent", "pending"]
    assert frame["sent_at"].isna().tolist() == [False, True, False, True, True, True]
    assert frame["chunk"].tolist() == [1, pd.NA, pd.NA, pd.NA, 2, 2]
    assert frame["seq"].tolist()[:4] == [pd.NA, 65535, 1, pd.NA]
    assert frame["sequence_number"].tolist()[0] == 2 and frame["rtp_timestamp"].isna().tolist()[3]
    assert list(frame["path"]) == ["stream", "fork", "fork", "fork", "stream", "stream"]
    assert frame["stream_id"].isna().tolist() == [False, True, True, True, False, False]
    assert set(frame["stream_id"].dropna()) == {"sid"}
    for column in ("path", "track", "fate", "stream_id"):   # the receiver's label dtype, empty or not
        for dtype in (frame[column].dtype, empty[column].dtype):
            assert isinstance(dtype, pd.CategoricalDtype) and dtype.categories.dtype == label_dtype(()).categories.dtype
    assert frame["payload"].tolist()[:3] == [bytes(range(160)), b"mixed", bytes(range(160))]
    assert truth.fates(("inbound", "rx")) == {"delivered": 2, "dropped": 0, "duplicated": 1, "skipped": 1,
                                              "pending": 0, "unsent": 0}  # pending counts as it will be sent
    assert pending == 5


def test_ground_truth_crosses_the_process_boundary_unchanged():
    """What the control endpoint sends (pack/unpack) builds the very same DataFrame, dtypes included."""
    truth = GroundTruth()
    script = ({"inbound": bytes(range(160)) * 3, "outbound": bytes(480)}, 160)
    for i in range(3):
        row = truth.add_stream("outbound", i + 1, i + 2, 20 * i, 1_700_000_000_000_000_000 + i * 20_000_000,
                               "delivered", 0.0, "sid", i, script, 160)
        truth.sent(row, 1_700_000_000_000_100_000 + i * 20_000_000)
    truth.add_fork("tx", 7, 8, 9, 1_700_000_000_060_000_000, "dropped", 0.0, 0, b"mixed", 5)
    for payloads in (False, True):
        local = GroundTruth.to_frame(truth.snapshot(), payloads)
        remote = GroundTruth.to_frame(unpack_snapshot(pack_snapshot(truth.snapshot(), payloads)), payloads)
        pd.testing.assert_frame_equal(local, remote)
    empty = GroundTruth().snapshot()
    remote = unpack_snapshot(pack_snapshot(empty))
    pd.testing.assert_frame_equal(GroundTruth.to_frame(empty), GroundTruth.to_frame(remote))


def test_media_clock_spreads_calls_over_slots_and_keeps_pace():
    async def run() -> tuple[dict, dict, int]:
        clock = MediaClock(slots=4)
        seen: dict[int, list[tuple[int, float]]] = {key: [] for key in range(8)}
        clock.start(asyncio.get_running_loop())
        for key in seen:
            clock.subscribe(key, lambda k, deadline, key=key: (seen[key].append((k, deadline)),
                                                               clock.record_send(deadline)))
        await await_until(lambda: all(len(ticks) >= 10 for ticks in seen.values()), what="10 ticks for every call")
        clock.unsubscribe(0)
        unsubscribed_after = len(seen[0])
        await await_until(lambda: len(seen[1]) >= unsubscribed_after + 3, what="ticks after the unsubscribe")
        await clock.stop()
        return seen, clock.pacing(), unsubscribed_after

    seen, pacing, unsubscribed_after = asyncio.run(run())
    for ticks in seen.values():
        ks = [k for k, _ in ticks]
        assert ks == list(range(ks[0], ks[0] + len(ks)))  # one tick every period, none skipped
        assert all(abs((b - a) - 0.020) < 1e-9 for (_, a), (_, b) in pairwise(ticks))  # absolute deadlines
    phases = {round((ticks[0][1] * 1000) % 20, 3) for ticks in seen.values()}
    assert len(phases) == 4  # two calls per slot, four slots
    assert len(seen[0]) == unsubscribed_after < len(seen[1]) and pacing["n"] == sum(len(t) for t in seen.values())


def test_serve_prints_the_environment_and_stops():
    out, stop = io.StringIO(), threading.Event()
    thread = threading.Thread(target=serve, kwargs={"out": out, "stop": stop})
    thread.start()
    wait_until(lambda: "running" in out.getvalue(), what="the sandbox to print 'running'")
    stop.set()
    thread.join(timeout(10))
    lines = out.getvalue().splitlines()
    names = [line.split("=")[0] for line in lines if line.startswith("export ")]
    assert names == ["export TELNYX_BASE_URL", "export TELNYX_API_KEY", "export TELNYX_PUBLIC_KEY",
                     "export TELNYX_CONNECTION_ID", "export TELNYX_SANDBOX_PID"]
    assert lines[0].endswith("/v2") and not thread.is_alive()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
_FIELDS = ["stream_url", "stream_track", "custom_parameters", "rx", "tx", "target", "transcription_engine_config",
           "to", "from", "connection_id", "webhook_url", "stream_bidirectional_sampling_rate", "client_state"]


@settings(max_examples=300, deadline=None)
@given(endpoint=st.sampled_from(sorted(SCHEMAS)),
       body=st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=8), _json, max_size=5))
def test_any_json_body_is_accepted_or_a_telnyx_error(endpoint, body):
    try:
        checked = validate(endpoint, body)
    except ApiError as exc:
        error = exc.body()["errors"][0]
        assert error["code"] in CATALOGUE and error["title"] and exc.status in (400, 422)
    else:
        assert isinstance(checked, dict)
