"""Talk time from the audio against the scenario's word timing (``sb.script``), and the script itself.

Real calls: the sandbox (its own process) plays its speech scenarios through the real ``telnyx``
SDK to a real Receiver (the suite's capture mode); ``tnb.quality.talk_time`` must find each
scripted utterance in the audio within 0.2 s at both ends, on both tracks, streamed and forked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import telnyx_nb as tnb
from telnyx_nb.sandbox import Sandbox, Scenario

from waiting import wait_until

FROM = "+15550199"
TOLERANCE_S = 0.2
SPEECH = ("support_call", "appointment", "survey")


@pytest.fixture(scope="module")
def speech_sb():
    with Sandbox(ring_s=0.05, webhook_backoff_s=0.05) as sb:
        yield sb


def _utterances(script: pd.DataFrame) -> pd.DataFrame:
    """One row per scripted utterance: its first word's start and last word's end."""
    return (script.groupby(["call_control_id", "track", "utterance"], observed=True)
            .agg(start=("start_at", "min"), end=("end_at", "max"), text=("text", "first"))
            .reset_index().sort_values(["track", "start"], ignore_index=True))


def _ended(rx, ccid: str, source: str) -> bool:
    if not (rx.events.event_type.eq("call.hangup") & rx.events.call_control_id.eq(ccid)).any():
        return False
    if source == "stream":
        return bool(rx.streams.loc[rx.streams.call_control_id == ccid, "stopped_at"].notna().all())
    return True


@pytest.fixture(scope="module")
def speech_calls(speech_sb, tmp_path_factory):
    """The three speech scenarios streamed (both tracks, transcribed on both) and survey forked,
    at once; returns the receiver's talk_time, the scripts, the calls and a saved copy's talk_time."""
    sb = speech_sb
    client = sb.client()
    with tnb.Receiver(public_key=sb.public_key) as rx:
        calls = {}
        for k, name in enumerate(SPEECH):
            to = f"+1555013{k}"
            sb.route(to, name)
            calls[name] = (tnb.dial(client, rx, stream=True, connection_id=sb.connection_id, to=to, from_=FROM,
                                    transcription=True, transcription_config={"transcription_tracks": "both"})
                           .data.call_control_id, "stream")
        sb.route("+15550139", "survey")
        forked = client.calls.dial(connection_id=sb.connection_id, to="+15550139", from_=FROM,
                                   webhook_url=rx.webhook_url).data.call_control_id
        calls["survey/fork"] = (forked, "fork")
        rx.wait_for("call.answered", forked)
        tnb.start_forking(client, forked, rx)
        for ccid, source in calls.values():
            wait_until(lambda c=ccid, s=source: _ended(rx, c, s), timeout=60, what=f"the end of call {ccid}")
        sb.wait_webhooks()
        scripts = pd.concat([sb.script(ccid) for ccid, _ in calls.values()], ignore_index=True)
        talk = tnb.quality.talk_time(rx, script=scripts)
        saved = rx.save(tmp_path_factory.mktemp("talk") / "session")
        first_media = {ccid: (rx.frames if source == "stream" else rx.rtp).loc[
            lambda t, c=ccid: t.call_control_id == c, "received_at"].min() for ccid, source in calls.values()}
    return talk, scripts, calls, tnb.quality.talk_time(tnb.load(saved), script=scripts), first_media


@pytest.mark.parametrize("call", [*SPEECH, "survey/fork"])
def test_each_utterance_is_found_within_200_ms_on_both_tracks(speech_calls, call):
    """One talk segment per scripted utterance, in order, on each track; start and end within
    0.2 s of the first word's start and the last word's end (UTC on both clocks, one machine).
    A fork starts after the answer: an utterance under way before its first packet is not
    compared (nor the segment its tail makes at the start of the audio)."""
    talk, scripts, calls, _, first_media = speech_calls
    ccid, source = calls[call]
    expected = _utterances(scripts[scripts.call_control_id == ccid])
    expected = expected[expected.start >= first_media[ccid]].reset_index(drop=True)
    got = talk.segments[(talk.segments.call_control_id == ccid)
                        & (talk.segments.start > first_media[ccid] + pd.Timedelta(20, "ms"))]
    got = got.sort_values(["track", "start"], ignore_index=True)
    assert got.track.astype(str).tolist() == expected.track.astype(str).tolist()
    assert set(expected.track) == {"inbound", "outbound"}
    start_err = (got.start - expected.start).dt.total_seconds().abs()
    end_err = (got.end - expected.end).dt.total_seconds().abs()
    assert start_err.max() <= TOLERANCE_S, expected.text[start_err.idxmax()]
    assert end_err.max() <= TOLERANCE_S, expected.text[end_err.idxmax()]
    summary = talk.summary[talk.summary.call_control_id == ccid].set_index("track")
    assert summary.source.astype(str).unique().tolist() == [source]
    script_talk = (expected.end - expected.start).dt.total_seconds().groupby(expected.track, observed=True).sum()
    found_talk = got.duration_s.groupby(got.track, observed=True).sum()
    n = expected.groupby("track", observed=True).size()
    assert ((found_talk - script_talk).abs() <= TOLERANCE_S * n).all()
    every = talk.segments[talk.segments.call_control_id == ccid].groupby("track", observed=True).duration_s
    assert np.allclose(summary.talk_s, every.sum()) and (summary.segments == every.size()).all()
    assert summary.overlap_s.tolist() == [0.0, 0.0]          # the scripts never talk over each other
    assert summary.talk_share.sum() == pytest.approx(1.0)
    assert np.allclose(summary.talk_s + summary.silence_s, summary.duration_s)


def test_transcripts_sit_on_the_script_and_count_words(speech_calls):
    """Final transcripts get their utterance's exact audio time from the script, words and wpm;
    the forked call was not transcribed: words NA there, not 0."""
    talk, scripts, calls, _, _ = speech_calls
    utterances = talk.utterances
    expected = _utterances(scripts)
    streamed = [ccid for ccid, source in calls.values() if source == "stream"]
    assert sorted(utterances.call_control_id.astype(str).unique()) == sorted(streamed)
    merged = utterances.merge(expected, left_on=["call_control_id", "track", "transcript"],
                              right_on=["call_control_id", "track", "text"], suffixes=("", "_script"))
    assert len(merged) == len(utterances) == len(expected[expected.call_control_id.isin(streamed)])
    assert (merged.start == merged.start_script).all() and (merged.end == merged.end_script).all()
    assert (utterances.received_at >= utterances.end).all()
    assert utterances.wpm.between(60, 400).all()
    words = scripts.groupby(["call_control_id", "track"], observed=True).size()
    summary = talk.summary.set_index(["call_control_id", "track"])
    for ccid in streamed:
        for track in ("inbound", "outbound"):
            assert summary.loc[(ccid, track), "words"] >= words.loc[(ccid, track)]     # "3:15" says two
    fork_id = calls["survey/fork"][0]
    assert summary.loc[(fork_id, "inbound"), "words"] is pd.NA and np.isnan(summary.loc[(fork_id, "inbound"), "wpm"])


def test_a_saved_session_gives_the_same_talk_time(speech_calls):
    talk, _, _, loaded, _ = speech_calls
    pd.testing.assert_frame_equal(loaded.summary, talk.summary)
    pd.testing.assert_frame_equal(loaded.segments, talk.segments)
    pd.testing.assert_frame_equal(loaded.utterances, talk.utterances)


def test_both_tracks_talking_at_once_is_overlap(sb, client):
    """Two tones for the whole call: both tracks talk all the time, overlap is the call, shares
    are equal, no silence; a track that never falls silent is all talk for the detector."""
    sb.route("+15550138", Scenario.tone(2.0, 440.0, outbound_frequency=660.0))
    with tnb.Receiver(public_key=sb.public_key) as rx:
        ccid = tnb.dial(client, rx, stream=True, connection_id=sb.connection_id, to="+15550138",
                        from_=FROM).data.call_control_id
        wait_until(lambda: _ended(rx, ccid, "stream"), timeout=20, what="the end of the tone call")
        summary = tnb.quality.talk_time(rx, ccid).summary.set_index("track")
    assert summary.loc["inbound", "duration_s"] > 1.5
    assert (summary.talk_fraction == 1.0).all() and (summary.longest_silence_s == 0.0).all()
    assert (summary.overlap_s == summary.duration_s).all() and summary.talk_share.tolist() == [0.5, 0.5]
    assert summary.words.isna().all()


def test_script_before_and_after_the_answer_and_against_the_ground_truth(sb, client):
    """``sb.script``: the scenario's words with NaT times while the call rings; once answered,
    ``start_at - start_s`` is the instant of media time 0, which is every ground-truth frame's
    slot minus 20 ms per frame."""
    with tnb.Receiver(public_key=sb.public_key) as rx:
        ccid = sb.incoming_call("+15550137", FROM, webhook_url=rx.webhook_url, scenario=Scenario.silence(
            1.0, transcript=[("inbound", 0.2, 0.5, "one two"), ("outbound", 0.6, 0.9, "three")]))
        ringing = sb.script(ccid)
        assert ringing[["track", "utterance", "word", "word_index"]].astype(str).values.tolist() == [
            ["inbound", "0", "one", "0"], ["inbound", "0", "two", "1"], ["outbound", "1", "three", "0"]]
        assert ringing.start_s.tolist() == [0.2, 0.35, 0.6] and ringing.end_s.tolist() == [0.35, 0.5, 0.9]
        assert ringing.start_at.isna().all() and str(ringing.start_at.dtype) == "datetime64[ns, UTC]"
        tnb.answer(client, ccid, rx, stream=True)
        wait_until(lambda: _ended(rx, ccid, "stream"), timeout=20, what="the end of the call")
    script = sb.script(ccid)
    origin = script.start_at - pd.to_timedelta(script.start_s, unit="s")
    assert (origin - origin.iloc[0]).abs().max() <= pd.Timedelta(1, "us")
    assert ((script.end_at - script.start_at).dt.total_seconds() - (script.end_s - script.start_s)).abs().max() < 1e-6
    truth = sb.ground_truth(ccid)
    slots = truth.due_at - pd.to_timedelta(truth.frame * 20, unit="ms")
    assert (slots - origin.iloc[0]).abs().max() <= pd.Timedelta(1, "us")
    with pytest.raises(KeyError):
        sb.script("v3:no-such-call")


def test_absurd_detector_settings_and_a_wrong_script_are_value_errors():
    """They were silently accepted (NaN floors: no talk at all; negative hangover) or KeyError."""
    import pandas as pd

    session = tnb.load(Path(__file__).resolve().parent.parent / "notebooks" / "data" / "survey-call")
    for bad in ({"floor_dbfs": float("nan")}, {"snr_db": float("nan")}, {"hangover_s": -1.0},
                {"min_speech_s": -5.0}, {"noise_percentile": 101.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            tnb.quality.talk_time(session, **bad)
    with pytest.raises(ValueError, match="script must be word timing"):
        tnb.quality.talk_time(session, script=pd.DataFrame({"x": [1]}))
    for bin_s in (float("inf"), 0.0, 1e-10):
        with pytest.raises(ValueError, match=r"bin_s must be a finite number of seconds, at least 0\.001"):
            tnb.plots.quality_timeline(session, bin_s=bin_s)


def test_a_quality_timeline_of_too_many_bins_is_a_value_error():
    """1 ms bins over a stream of 200 s asked for 200,000 bins (1e-9 s bins: 29.7 GiB)."""
    from telnyx_nb.session import StoreSession
    from telnyx_nb.store import Store
    from telnyx_nb.wire import media

    store, t0 = Store(), 1_767_225_600_000_000_000
    info = store.start_stream(media.Start("s", 1, "v3:long", media.MediaFormat("PCMU", 8000)), t0, t0, True)
    for k in (1, 2, 10_001, 10_002, 10_003):
        store.add_frame(info, "inbound", k + 1, k, k * 20, bytes(160), t0 + k * 20_000_000)
    session = StoreSession(store)
    with pytest.raises(ValueError, match="into more than 100,000 bins; use a longer bin_s"):
        tnb.plots.quality_timeline(session, "v3:long", bin_s=0.001)
    assert tnb.plots.quality_timeline(session, "v3:long", bin_s=1.0).axes


def test_audio_of_under_one_sample_per_frame_is_a_value_error_naming_the_call():
    """A stream that declared 7 Hz (the wire accepts 1 Hz and up) raised ZeroDivisionError."""
    from telnyx_nb.session import StoreSession
    from telnyx_nb.store import Store
    from telnyx_nb.wire import media

    store, t0 = Store(), 1_767_225_600_000_000_000
    info = store.start_stream(media.Start("s", 1, "v3:slow", media.MediaFormat("PCMU", 7)), t0, t0, True)
    for k in range(1, 100):
        store.add_frame(info, "inbound", k + 1, k, k * 20, b"\x10\x90" * 80, t0 + k * 20_000_000)
    with pytest.raises(ValueError, match="call 'v3:slow': its audio runs at 7 Hz, under one sample per 20 ms frame"):
        tnb.quality.talk_time(StoreSession(store))
