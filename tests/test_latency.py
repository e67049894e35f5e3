"""``tnb.quality.latency``: every stage present and consistent with the tables it comes from.

One real call through the real ``telnyx`` SDK and the sandbox: transcribed (interim results),
streamed both tracks in bidirectional ``rtp`` mode with audio and a ``mark`` sent back, then
forked; in both capture modes and after save/load. Durations are not asserted (they go to
``benchmarks/bench_latency.py``); instants are checked against the tables and ``sb.script``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import telnyx_nb as tnb
from telnyx_nb.errors import StreamNotOpenError
from telnyx_nb.latency import COLUMNS, STAGES
from telnyx_nb.sandbox import Scenario

from waiting import timeout, wait_until

FROM = "+15550199"
SCENARIO = Scenario.tone(5.0, transcript=[("inbound", 0.6, 1.2, "hello there friend"),
                                          ("inbound", 1.4, 1.8, "good bye")])


def _started_stream(rx, ccid: str) -> str | None:
    streams = rx.streams
    row = streams[(streams.call_control_id == ccid) & streams.started_at.notna()]
    return row.stream_id.iloc[0] if len(row) else None


@pytest.fixture(scope="module", params=["process", "thread"])
def timed_call(request, sb, client, tmp_path_factory):
    """The call, its latency with and without the script, the tables, and a loaded copy's latency."""
    sb.route("+15550140", SCENARIO)
    with tnb.Receiver(public_key=sb.public_key, process=request.param == "process") as rx:
        ccid = tnb.dial(client, rx, connection_id=sb.connection_id, to="+15550140", from_=FROM).data.call_control_id
        rx.wait_for("call.answered", ccid)
        tnb.start_transcription(client, ccid, rx, transcription_engine_config={
            "transcription_engine": "Google", "interim_results": True})
        tnb.start_streaming(client, ccid, rx, stream_bidirectional_mode="rtp")
        stream_id = wait_until(lambda: _started_stream(rx, ccid), what="the stream's start frame")
        rx.send_audio(stream_id, np.zeros(1600, np.int16), 8000)
        rx.mark(stream_id, "after-audio").result(timeout(10))
        with pytest.raises(StreamNotOpenError):
            rx.mark("no-such-stream", "lost")
        wait_until(lambda: (rx.marks.name == "after-audio").any(), what="the mark's echo")
        tnb.start_forking(client, ccid, rx)
        wait_until(lambda: set(rx.rtp.target.astype(str)) == {"rx", "tx"}, what="forked RTP on both targets")
        rx.wait_for("call.hangup", ccid, timeout=20)
        sb.wait_webhooks()
        wait_until(lambda: rx.transcripts.is_final.sum() == 2, what="both final transcripts")
        script = sb.script(ccid)
        tables = {name: getattr(rx, name) for name in ("commands", "events", "streams", "frames", "rtp",
                                                        "transcripts", "marks")}
        measured = tnb.quality.latency(rx, script=script)
        blind = tnb.quality.latency(rx, ccid)
        saved = rx.save(tmp_path_factory.mktemp("latency") / "session")
    return dict(ccid=ccid, script=script, tables=tables, latency=measured, blind=blind,
                loaded=tnb.quality.latency(tnb.load(saved), script=script))


def _stage(lat: pd.DataFrame, stage: str) -> pd.DataFrame:
    return lat[lat.stage == stage].reset_index(drop=True)


def test_every_stage_is_present_and_measured(timed_call):
    lat = timed_call["latency"]
    assert list(lat.columns) == COLUMNS
    assert str(lat.since.dtype) == str(lat.until.dtype) == "datetime64[ns, UTC]" and lat.seconds.dtype == np.float64
    assert {col: str(lat[col].dtype) for col in ("call_control_id", "stage", "command", "detail", "stream_id")} == \
        dict.fromkeys(("call_control_id", "stage", "command", "detail", "stream_id"), "category")
    assert set(lat.stage) == set(STAGES)
    assert lat.call_control_id.astype(str).unique().tolist() == [timed_call["ccid"]]
    assert lat.seconds.notna().all() and (lat.seconds >= 0).all()
    pairs = set(zip(lat.stage.astype(str), lat.detail.astype(object).fillna(""), strict=True))
    assert pairs >= {("first_media", "inbound"), ("first_media", "outbound"), ("first_rtp", "rx"),
                     ("first_rtp", "tx"), ("transcription_lag", "interim"), ("transcription_lag", "final"),
                     ("mark_echo", "after-audio"), ("ws_connected", ""), ("ws_start", ""),
                     ("streaming.started", ""), ("call.fork.started", "")}


def test_stages_are_the_instants_of_the_tables(timed_call):
    """Order-free consistency: each stage's ``since`` is its command's ``sent_at``, its ``until``
    the instant in the table it comes from (the webhook and the socket race: no order assumed)."""
    lat, t = timed_call["latency"], timed_call["tables"]
    commands = t["commands"].set_index(t["commands"].command.astype(str))
    rest = _stage(lat, "rest_answer")
    assert sorted(rest.detail.astype(str)) == ["dial", "fork_start", "streaming_start", "transcription_start"]
    for row in rest.itertuples():
        assert (row.since, row.until) == (commands.sent_at[row.detail], commands.answered_at[row.detail])
    stream = t["streams"].iloc[0]
    for stage, at in (("ws_connected", stream.connected_at), ("ws_start", stream.started_at)):
        row = _stage(lat, stage).iloc[0]
        assert (row.until, row.since, row.command, row.stream_id) == (
            at, commands.sent_at["streaming_start"], "streaming_start", stream.stream_id)
    events = t["events"]
    for stage in ("streaming.started", "call.fork.started"):
        assert _stage(lat, stage).until.tolist() == events.received_at[events.event_type == stage].tolist()
    first = t["frames"].groupby("track", observed=True).received_at.min()
    media = _stage(lat, "first_media").set_index("detail")
    assert all(media.until[track] == first[track] for track in ("inbound", "outbound"))
    rtp = t["rtp"].groupby("target", observed=True).received_at.min()
    forked = _stage(lat, "first_rtp").set_index("detail")
    assert all(forked.until[target] == rtp[target] for target in ("rx", "tx"))
    assert (forked.since == commands.sent_at["fork_start"]).all()
    lags = _stage(lat, "webhook_lag")
    assert lags.until.tolist() == events.received_at.tolist() and lags.since.tolist() == events.occurred_at.tolist()


def test_transcription_lag_starts_at_the_scripts_last_word(timed_call):
    """Interim results end at a word of the script, finals at their utterance's last word;
    without the script (real Telnyx) the rows are there, their time NaN."""
    lat, t, script = timed_call["latency"], timed_call["tables"], timed_call["script"]
    lags = _stage(lat, "transcription_lag")
    assert lags.until.tolist() == t["transcripts"].received_at.tolist()
    assert lags.since.isin(script.end_at).all()
    finals = lags[lags.detail == "final"]
    assert finals.since.tolist() == script.groupby("utterance").end_at.max().tolist()
    blind = _stage(timed_call["blind"], "transcription_lag")
    assert len(blind) == len(lags) and blind.since.isna().all() and blind.seconds.isna().all()


def test_marks_are_commands_and_echoes(timed_call):
    """``rx.mark`` logs a "mark" command: sent when called, answered when the frame went out,
    with the stream's call; a mark that cannot be sent is logged "failed". The stage runs from
    the frame going out to the echo."""
    t = timed_call["tables"]
    marks = t["commands"][t["commands"].command == "mark"].reset_index(drop=True)
    assert marks.options.tolist() == [{"stream_id": t["streams"].stream_id.iloc[0], "name": "after-audio"},
                                      {"stream_id": "no-such-stream", "name": "lost"}]
    assert marks.status.astype(str).tolist() == ["ok", "failed"]
    assert "StreamNotOpenError" in marks.error.iloc[1]
    assert marks.call_control_id.astype(object).tolist()[0] == timed_call["ccid"]
    assert marks.answered_at.iloc[0] >= marks.sent_at.iloc[0]
    echo = _stage(timed_call["latency"], "mark_echo")
    assert echo.detail.astype(str).tolist() == ["after-audio"]   # the failed one is not sent, not timed
    assert echo.since.iloc[0] == marks.answered_at.iloc[0]
    assert echo.until.iloc[0] == t["marks"].received_at[t["marks"].name == "after-audio"].iloc[0]


def test_a_loaded_session_gives_the_same_latency(timed_call):
    pd.testing.assert_frame_equal(timed_call["loaded"], timed_call["latency"])


def test_a_call_the_sdk_dialled_and_tnb_forked_has_its_fork_stages(sb, client):
    """rx.commands holds only fork_start (no dial, no stream): it was KeyError 'sent_at'."""
    with tnb.Receiver(public_key=sb.public_key) as rx:
        assert len(tnb.quality.latency(rx)) == 0                   # nothing yet: an empty table
        sb.route("+15550166", Scenario.tone(2.0))
        ccid = client.calls.dial(connection_id=sb.connection_id, to="+15550166", from_=FROM,
                                 webhook_url=rx.webhook_url).data.call_control_id
        rx.wait_for("call.answered", ccid)
        tnb.start_forking(client, ccid, rx)
        rx.wait_for("call.hangup", ccid, timeout=timeout(15))
        sb.wait_webhooks(timeout(10))
        lat = tnb.quality.latency(rx)
        assert {"rest_answer", "call.fork.started"} <= set(lat["stage"].astype(object)), lat
        assert (lat["command"].astype(object) == "fork_start").any()
