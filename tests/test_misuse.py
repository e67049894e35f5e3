"""Misuse gets a clear answer: a receiver used before start, a wrong public key, a second
receiver left running, and background messages that must never land in whatever cell runs.

Every Receiver here runs in the suite's capture mode (``TELNYX_NB_TEST_CAPTURE``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import warnings

import numpy as np
import pytest

import telnyx_nb as tnb
from telnyx_nb import defaults
from telnyx_nb.wire import webhooks

from waiting import timeout, wait_until

ADDRESSES = ("webhook_url", "stream_url", "fork_rx", "fork_tx")


@pytest.fixture
def signer():
    return webhooks.Signer()


def post_signed(rx: tnb.Receiver, signer: webhooks.Signer, event_id: str, *, skew_s: int = 0) -> int:
    """POST one ``call.initiated`` signed by ``signer`` (its timestamp ``skew_s`` off); the HTTP status."""
    body = webhooks.encode_body(webhooks.build_envelope("call.initiated", {"call_control_id": "v3:m"},
                                                        event_id=event_id))
    headers = {**signer.sign(body, int(time.time()) + skew_s), "content-type": "application/json"}
    request = urllib.request.Request(rx.webhook_url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout(5)) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def signature_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "failed signature verification" in str(w.message)]


# -- used before start, and after stop ------------------------------------------------------------------

def test_a_receiver_used_before_start_raises_and_its_repr_says_where_it_stands(signer):
    rx = tnb.Receiver(public_key=signer.public_key)
    assert repr(rx) == "<telnyx_nb.Receiver never started (host 127.0.0.1); call .start()>"
    for name in ADDRESSES:
        with pytest.raises(tnb.ReceiverNotStartedError, match=r"^receiver not started; call \.start\(\)$"):
            getattr(rx, name)
    for use in (lambda: rx.send_audio("s", np.zeros(160, np.int16), 8000), lambda: rx.mark("s", "m"),
                lambda: rx.clear("s"), lambda: rx.expect_fork("v3:m"), lambda: rx.withdraw_fork("v3:m")):
        with pytest.raises(tnb.ReceiverNotStartedError, match="receiver not started"):
            use()
    assert issubclass(tnb.ReceiverNotStartedError, RuntimeError)
    assert issubclass(tnb.ReceiverNotStartedError, tnb.TelnyxNbError)
    assert rx.events.empty                                  # the tables are readable all along

    with rx:
        urls = {name: getattr(rx, name) for name in ADDRESSES}
        assert urls["webhook_url"] == f"http://127.0.0.1:{rx.port}/webhooks"
        assert urls["stream_url"] == f"ws://127.0.0.1:{rx.port}/stream"
        assert repr(rx).startswith("<telnyx_nb.Receiver listening: ")
        assert all(url in repr(rx) for url in urls.values())
        assert "webhooks verified, stream token not required" in repr(rx)
        assert post_signed(rx, signer, "ev-1") == 200
        wait_until(lambda: len(rx.events) == 1)
    for name in ADDRESSES:
        with pytest.raises(tnb.ReceiverNotStartedError, match=r"^receiver stopped; nothing listens at its addresses"):
            getattr(rx, name)
    assert repr(rx).startswith("<telnyx_nb.Receiver stopped (was webhook_url ")
    assert all(url in repr(rx) for url in urls.values())
    assert rx.events["event_id"].tolist() == ["ev-1"]       # still readable after stop
    with rx:                                                # and it can listen again
        assert rx.webhook_url.endswith("/webhooks")


# -- a wrong public key, clock skew ------------------------------------------------------------------

def test_a_run_of_signature_failures_warns_once_naming_webhook_errors_and_the_cause(signer):
    wrong = webhooks.Signer()                                # a valid key, but not the one that signs
    limit = defaults.SIGNATURE_FAILURES_WARNING
    assert limit == 3
    with warnings.catch_warnings(record=True) as caught, tnb.Receiver(public_key=signer.public_key) as rx:
        warnings.simplefilter("always")
        assert [post_signed(rx, wrong, f"bad-{n}") for n in range(limit - 1)] == [401] * (limit - 1)
        assert post_signed(rx, signer, "good-1") == 200      # a verified one: the run starts again
        assert [post_signed(rx, wrong, f"bad-{n}") for n in range(limit, 2 * limit + 2)] == [401] * (limit + 2)
        (said,) = wait_until(lambda: signature_warnings(caught), what="the signature warning")
        assert said == ("telnyx_nb.Receiver: the last 3 webhooks all failed signature verification and were "
                        "refused (last reason 'bad_signature'); see rx.webhook_errors. Likely cause: a wrong public "
                        "key: Receiver(public_key=...) must be the key that signs them (the Telnyx portal's public "
                        "key for real calls, sb.public_key for a Sandbox).")
        assert post_signed(rx, signer, "good-2") == 200
        # a second run, of stale signatures this time: one more warning, with its own cause
        assert [post_signed(rx, signer, f"old-{n}", skew_s=-3600) for n in range(limit)] == [401] * limit
        wait_until(lambda: len(signature_warnings(caught)) == 2, what="the second run's warning")
        assert "(last reason 'stale')" in signature_warnings(caught)[1]
        assert "Likely cause: clock skew" in signature_warnings(caught)[1]
        assert rx.webhook_errors["reason"].tolist() == ["bad_signature"] * (2 * limit + 1) + ["stale"] * limit
        assert rx.events["event_id"].tolist() == ["good-1", "good-2"]
        assert rx.health()["webhooks_rejected"] == 3 * limit + 1
    assert len(signature_warnings(caught)) == 2                 # once per run, however long the run


# -- a second receiver ------------------------------------------------------------------------------------

def test_a_second_receiver_started_while_one_listens_warns_naming_the_first(signer):
    first = tnb.Receiver(public_key=signer.public_key).start()
    try:
        address = first.webhook_url
        with pytest.warns(UserWarning, match="another telnyx_nb.Receiver is still listening") as said:
            second = tnb.Receiver(public_key=signer.public_key).start()
        (message,) = [str(w.message) for w in said if "another" in str(w.message)]
        assert all(getattr(first, name) in message for name in ADDRESSES)
        assert second.webhook_url not in message
        second.stop()
    finally:
        first.stop()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tnb.Receiver(public_key=signer.public_key):
            pass
    assert not [w for w in caught if address in str(w.message)]     # a stopped receiver is not named


# -- background messages: logging, never stderr ---------------------------------------------------------

NOTEBOOK = textwrap.dedent("""
    import asyncio, json, logging, socket, struct, sys, time, warnings
    import aiohttp
    import telnyx_nb as tnb
    from telnyx_nb.wire import media

    mode, configured, sandbox_process = sys.argv[1], sys.argv[2] == "logging", sys.argv[3] == "process"
    warnings.simplefilter("ignore")        # warnings are the notebook's; this counts everything else
    if configured:                          # what a user who wants the messages does
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s|%(message)s")
    rx = tnb.Receiver(process=mode == "process").start()
    rx.on("stream.start", lambda event: 1 / 0)                      # a callback that raises

    async def stream():
        async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
            await ws.send_str(media.dumps(media.Start("s", 1, "v3:n", media.MediaFormat("PCMU", 8000))))
    asyncio.run(stream())
    with socket.create_connection(("127.0.0.1", rx.port)) as peer:  # a peer that vanishes mid-body
        peer.sendall(b"POST /webhooks HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 900\\r\\n\\r\\n{\\"data\\"")
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    while rx.health()["callback_errors"] < 1 or rx.webhook_errors["reason"].tolist() != ["error"]:
        time.sleep(0.02)                                            # polling: both happen on other threads
    with socket.socket() as closed:                                # a webhook URL where nothing listens
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}/webhooks"
    sb = tnb.Sandbox(process=sandbox_process, webhook_attempts=1, ring_s=0.05).start()
    sb.client().calls.dial(connection_id=sb.connection_id, to="+15550100", from_="+15550199", webhook_url=nowhere)
    sb.stop()                                                       # drains: every webhook given up
    rx.stop()
    print(json.dumps({"done": True}))
""")


@pytest.mark.parametrize(("configured", "sandbox"),
                         [("unconfigured", "thread"), ("unconfigured", "process"), ("logging", "thread"),
                          ("logging", "process")])
def test_background_messages_go_to_the_telnyx_nb_loggers_never_to_stderr(tmp_path, configured, sandbox):
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    mode = "process" if defaults.RECEIVER_PROCESS else "thread"
    done = subprocess.run([sys.executable, str(script), mode, configured, sandbox], capture_output=True, text=True,
                          timeout=timeout(90), env={**os.environ, "PYTHONWARNINGS": ""})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""                        # no traceback, no stray line, whatever the user configured
    lines = done.stdout.splitlines()
    assert json.loads(lines[-1]) == {"done": True}
    if configured == "unconfigured":
        assert lines == ['{"done": true}']
        return
    records = [match.groups() for line in lines if (match := re.match(r"(telnyx_nb[\w.]*)\|(.*)", line))]
    assert any(name == "telnyx_nb.events" and "callback" in text and "ZeroDivisionError" in text
               for name, text in records)
    assert any(name == "telnyx_nb.sandbox.webhook_sender" and re.search(r"webhook call\.\w+ to .* given up", text)
               for name, text in records)


def test_a_peer_that_vanishes_mid_webhook_is_recorded_not_a_traceback(signer, caplog):
    with tnb.Receiver(public_key=signer.public_key) as rx:
        with socket.create_connection(("127.0.0.1", rx.port)) as peer:
            peer.sendall(b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n{\"data\"")
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_until(lambda: len(rx.webhook_errors) == 1)
        assert post_signed(rx, signer, "after") == 200         # the receiver goes on
        wait_until(lambda: len(rx.events) == 1)
    row = rx.webhook_errors.iloc[0]
    assert row["reason"] == "error" and "connection ended before the body was complete" in row["detail"]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


# -- analytics given the wrong thing ----------------------------------------------------------------

def test_analytics_given_something_else_than_a_receiver_or_session_say_so():
    """latency(None), talk_time(None) and the plots raised AttributeError; loss_bursts and
    reconcile of a quality(by="call") summary a bare KeyError."""
    from pathlib import Path

    session = tnb.load(Path(__file__).resolve().parent.parent / "notebooks" / "data" / "survey-call")
    for analysis in (tnb.quality.latency, tnb.quality.talk_time, tnb.plots.waveform, tnb.plots.spectrogram,
                     tnb.plots.transcript_timeline, tnb.plots.quality_timeline, tnb.plots.latency,
                     tnb.plots.talk_time, tnb.plots.quality_summary):
        for wrong in (None, session.frames):
            with pytest.raises(TypeError, match="expected a Receiver or a session"):
                analysis(wrong)
    for analysis in (tnb.quality.loss_bursts, tnb.quality.reconcile):
        with pytest.raises(ValueError, match=r"expected quality\(\)'s table.*a quality\(by='call'\) summary"):
            analysis(session.quality(by="call"))
    assert len(tnb.quality.loss_bursts(session.quality())) == 10 * len(session.quality())
