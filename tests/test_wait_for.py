"""Waiting for webhooks (``rx.wait_for``/``await_for``), Telnyx's seventh webhook
(``call.transcription.stopped``), and the README's notebook example run top to bottom.

Real sockets throughout: the real ``telnyx`` SDK drives the sandbox, which sends signed webhooks
to a real Receiver (in the suite's capture mode, ``TELNYX_NB_TEST_CAPTURE``).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import telnyx_nb as tnb
from telnyx_nb.sandbox import Scenario

from waiting import timeout

FROM = "+15550199"
README = Path(__file__).resolve().parent.parent / "README.md"


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


def readme_example() -> str:
    """The README's "In a notebook" code block."""
    text = README.read_text()
    section = text[text.index("## In a notebook"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_notebook_example_runs_top_to_bottom(tmp_path):
    """Run the README's notebook example as one script, as "Run All" does. Before ``wait_for``,
    ``start_streaming`` went out about 20 ms after ``dial``, before the callee answered, and the
    sandbox (like Telnyx) answered 422 90034: it failed 4 runs of 4."""
    code = readme_example()
    assert 'rx.wait_for("call.answered", ccid)' in code
    capture = os.environ.get("TELNYX_NB_TEST_CAPTURE")
    prelude = ("import telnyx_nb.defaults\n"
               f"telnyx_nb.defaults.RECEIVER_PROCESS = {capture != 'thread'}\n") if capture else ""
    epilogue = ("\nassert len(rx.transcripts) and len(rx.frames)\n"
                "assert s.commands.command.tolist() == ['streaming_start', 'transcription_start']\n"
                "rx.stop(); sb.stop()\nprint('README example ok')\n")
    result = subprocess.run([sys.executable, "-c", prelude + code + epilogue], cwd=tmp_path, capture_output=True,
                            text=True, timeout=timeout(90))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("README example ok")
    assert tnb.load(tmp_path / "session").commands.status.tolist() == ["ok", "ok"]
