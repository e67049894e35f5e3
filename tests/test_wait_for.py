"""Waiting for webhooks (``rx.wait_for``/``await_for``), Telnyx's seventh webhook
(``call.transcription.stopped``).

Real sockets throughout: the real ``telnyx`` SDK drives the sandbox, which sends signed webhooks
to a real Receiver (in the suite's capture mode, ``TELNYX_NB_TEST_CAPTURE``).
"""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

import telnyx_nb as tnb
from telnyx_nb.sandbox import Scenario

from waiting import timeout

FROM = "+15550199"


@pytest.fixture
def rx(sb):
    with tnb.Receiver(public_key=sb.public_key) as receiver:
        yield receiver


def test_wait_for_returns_the_first_matching_row_past_or_future(sb, client, rx):
    ringing = sb.incoming_call("+15550180", FROM, webhook_url=rx.webhook_url)     # rings until answered
    initiated = rx.wait_for("call.initiated", ringing)
    assert isinstance(initiated, pd.Series)
    assert (initiated.event_type, initiated.call_control_id, initiated.verified) == ("call.initiated", ringing, True)
    assert initiated.payload["direction"] == "incoming"
    tnb.answer(client, ringing, rx)
    answered = rx.wait_for("call.answered", ringing)                               # arrives later
    assert (answered.event_type, answered.call_control_id) == ("call.answered", ringing)
    again = rx.wait_for("call.answered", ringing, timeout=0)                      # already here: at once
    assert again.event_id == answered.event_id
    assert rx.wait_for("call.initiated").event_id == initiated.event_id           # any call
    assert list(answered.index) == list(rx.events.columns)


def test_wait_for_timeout_lists_what_did_arrive_for_the_call(sb, rx):
    ringing = sb.incoming_call("+15550181", FROM, webhook_url=rx.webhook_url)
    rx.wait_for("call.initiated", ringing)
    with pytest.raises(TimeoutError, match=r"no 'call.answered' event for call .* within 0.2 s; "
                                           r"events that arrived for call .*: call.initiated x1$"):
        rx.wait_for("call.answered", ringing, timeout=0.2)
    with pytest.raises(TimeoutError, match=r"events that arrived for call 'v3:none': none"):
        rx.wait_for("call.answered", "v3:none", timeout=0.1)


def test_await_for_in_asyncio_code(sb, client, rx):
    sb.route("+15550182", Scenario.silence(20.0))

    async def app() -> pd.Series:
        ccid = tnb.dial(client, rx, connection_id=sb.connection_id, to="+15550182", from_=FROM).data.call_control_id
        return await rx.await_for("call.answered", ccid, timeout=timeout(10))

    answered = asyncio.run(app())
    assert answered.event_type == "call.answered"
    assert answered.call_control_id == rx.commands.call_control_id.iloc[0]


def _transcription_stopped(rx, ccid: str) -> pd.Series:
    event = rx.wait_for("call.transcription.stopped", ccid, timeout=timeout(10))
    assert event.verified
    assert set(event.payload) == {"call_control_id", "call_leg_id", "call_session_id", "connection_id",
                                  "client_state"}
    return event


def test_call_transcription_stopped_after_transcription_stop_and_at_hangup(sb, client, rx):
    """The seventh webhook (protocol reference §2.2, "Transcription stopped"): after
    ``transcription_stop``, and when a call being transcribed ends (before ``call.hangup``)."""
    scenario = Scenario.silence(20.0, transcript=[("inbound", 1.0, 1.5, "hello there")])
    ccids = []
    for to in ("+15550183", "+15550184"):
        sb.route(to, scenario)
        ccid = tnb.dial(client, rx, connection_id=sb.connection_id, to=to, from_=FROM).data.call_control_id
        rx.wait_for("call.answered", ccid)
        tnb.start_transcription(client, ccid, rx, client_state="c3RhdGU=")
        rx.wait_for("call.transcription", ccid)
        ccids.append(ccid)
    stopped_by_command, ended = ccids
    tnb.stop_transcription(client, stopped_by_command, rx)
    event = _transcription_stopped(rx, stopped_by_command)
    assert event.payload["call_control_id"] == stopped_by_command and event.client_state == "c3RhdGU="
    assert event.payload["connection_id"] == sb.connection_id
    sb.hangup(ended)
    _transcription_stopped(rx, ended)
    rx.wait_for("call.hangup", ended)
    sb.wait_webhooks()
    events = rx.events
    order = events[events.call_control_id == ended].event_type.tolist()
    assert order.index("call.transcription.stopped") < order.index("call.hangup")
    assert ((events.event_type == "call.transcription.stopped").groupby(events.call_control_id).sum()
            .loc[ccids].tolist() == [1, 1])
    assert rx.commands.command.tolist() == ["dial", "transcription_start", "dial", "transcription_start",
                                            "transcription_stop"]


def test_a_long_wait_shows_what_it_waits_for_and_a_short_one_nothing(sb, client, rx, capsys):
    with pytest.raises(TimeoutError):
        rx.wait_for("call.bogus", "no-such-call", timeout=1.2, progress=True)
    shown = capsys.readouterr().err
    assert "waiting for call.bogus (no-such-call" in shown and "/1.2 s" in shown, shown
    ccid = sb.incoming_call("+15550181", FROM, webhook_url=rx.webhook_url)
    rx.wait_for("call.initiated", ccid, timeout=10, progress=True)
    with pytest.raises(TimeoutError):
        rx.wait_for("call.bogus", timeout=0.3, progress=True)   # shorter than WAIT_PROGRESS_AFTER_S
    with pytest.raises(TimeoutError):
        rx.wait_for("call.bogus", timeout=1.2)                  # not in a kernel: no bar by default
    assert "waiting for call.bogus" not in capsys.readouterr().err
