"""talk_time's words per minute against the scenario's word timing (``sb.script``), while the call
runs and after it ends.

A real call: the sandbox (its own process) plays the first 15 s of ``support_call`` through the
real ``telnyx`` SDK to a real Receiver, transcribing the inbound track. The script gives each
utterance's text and the audio time of its first word's start and last word's end, so a track's
true rate over the utterances transcribed so far is their words (split at white space, as the
script splits them) over their spans. The summary's ``wpm`` must agree with it at every poll —
in the middle of an utterance whose final transcript has not come yet too (where it used to
divide by that talk as well: 42 wpm instead of 182) — with the script and without it (as with
real Telnyx, where only the transcripts' arrival is known). The tolerance is the issue's for talk
time: the talk ``wpm`` implies (``60 × words / wpm``) within TALK_TOLERANCE_S per utterance of
the utterances' spans.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import telnyx_nb as tnb
from telnyx_nb.sandbox import Sandbox, Scenario
from telnyx_nb.sandbox.scenarios import get_scenario

from waiting import wait_until

FROM = "+15550199"
TALK_TOLERANCE_S = 0.2
CUT = Scenario("support_call_15s", 15.0, get_scenario("support_call").utterances[:4])
POLL_S = 0.3


def _ended(rx, ccid: str) -> bool:
    hung_up = (rx.events.event_type.eq("call.hangup") & rx.events.call_control_id.eq(ccid)).any()
    return bool(hung_up and rx.streams.loc[rx.streams.call_control_id == ccid, "stopped_at"].notna().all())


@pytest.fixture(scope="module")
def polls():
    """(script, [(talk_time with the script, talk_time without)] taken every POLL_S while the
    call runs, and once after it ended)."""
    with Sandbox(ring_s=0.05, webhook_backoff_s=0.05) as sb, tnb.Receiver(public_key=sb.public_key) as rx:
        sb.route("+15550160", CUT)
        ccid = tnb.dial(sb.client(), rx, stream=True, connection_id=sb.connection_id, to="+15550160", from_=FROM,
                        transcription=True).data.call_control_id
        snapshots: list[tuple[tnb.quality.TalkTime, tnb.quality.TalkTime]] = []
        last = [0.0]

        def snapshot() -> None:
            snapshots.append((tnb.quality.talk_time(rx, ccid, script=sb.script(ccid)), tnb.quality.talk_time(rx, ccid)))

        def poll() -> bool:
            if time.monotonic() - last[0] >= POLL_S and (rx.frames.call_control_id == ccid).any():
                last[0] = time.monotonic()
                snapshot()
            return _ended(rx, ccid)

        wait_until(poll, timeout=40, what="the end of the call")
        sb.wait_webhooks()
        snapshot()
        script = sb.script(ccid)
    return script, snapshots


def _script_rate(script: pd.DataFrame, transcripts: pd.Series) -> tuple[int, int, float]:
    """(words, utterances, seconds of their spans) of the inbound utterances whose final
    transcript is among ``transcripts``, from the script alone."""
    spans = (script[script.track == "inbound"].groupby("utterance", observed=True)
             .agg(text=("text", "first"), start=("start_s", "min"), end=("end_s", "max")))
    said = spans[spans.text.isin(set(transcripts))]
    return int(sum(len(text.split()) for text in said.text)), len(said), float((said.end - said.start).sum())


def _agrees(talk: tnb.quality.TalkTime, script: pd.DataFrame) -> tuple[bool, bool]:
    """(the inbound wpm agrees with the script's words and spans, a transcript was pending: the
    track has talked over a second more than its transcribed utterances' spans)."""
    rows = talk.summary.set_index("track")
    assert pd.isna(rows.loc["outbound", "words"]) and np.isnan(rows.loc["outbound", "wpm"])      # not transcribed
    words, utterances, seconds = _script_rate(script, talk.utterances.transcript)
    if not utterances:
        assert pd.isna(rows.loc["inbound", "words"]) and np.isnan(rows.loc["inbound", "wpm"])
        return False, False
    assert rows.loc["inbound", "words"] == words
    implied_talk_s = 60 * words / rows.loc["inbound", "wpm"]
    assert implied_talk_s == pytest.approx(seconds, abs=TALK_TOLERANCE_S * utterances), (words, seconds)
    return True, bool(rows.loc["inbound", "talk_s"] > seconds + 1.0)


def test_wpm_follows_the_word_timing_while_the_call_runs(polls):
    script, snapshots = polls
    checked = pending = 0
    for with_script, without in snapshots:
        for talk in (with_script, without):
            agreed, waiting = _agrees(talk, script)
            checked, pending = checked + agreed, pending + waiting
    assert checked >= 6 and pending >= 1, (checked, pending)


def test_after_the_call_every_word_counts_and_each_utterance_has_its_rate(polls):
    script, snapshots = polls
    with_script, without = snapshots[-1]
    inbound = script[script.track == "inbound"]
    assert set(with_script.utterances.transcript) == set(inbound.text)      # every inbound utterance came
    words, utterances, _ = _script_rate(script, with_script.utterances.transcript)
    assert words == len(inbound) == 16 and utterances == 2
    for talk in (with_script, without):
        assert _agrees(talk, script) == (True, False)
        assert 120 < talk.summary.set_index("track").loc["inbound", "wpm"] < 220   # a speaking rate, as said
    utterances = with_script.utterances.set_index("transcript")
    spans = inbound.groupby("text").agg(start=("start_s", "min"), end=("end_s", "max"), words=("word", "size"))
    expected = 60 * spans.words / (spans.end - spans.start)
    assert (utterances.loc[spans.index, "words"].to_numpy() == spans.words.to_numpy()).all()
    assert np.allclose(utterances.loc[spans.index, "wpm"], expected, rtol=1e-6)
    assert without.utterances.wpm.isna().all()                               # no script: no audio time
