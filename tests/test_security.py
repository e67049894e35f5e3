"""Security: loopback by default, verification required off loopback, a stream token made when
exposed, constant-time token checks, no secret anywhere, and phone numbers redacted on save.

Every Receiver runs in the suite's capture mode (``TELNYX_NB_TEST_CAPTURE``); the sandbox is
real, in its own process, with a known API key.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import inspect
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np
import pyarrow.parquet as pq
import pytest
import telnyx
from cryptography.hazmat.primitives import serialization

import telnyx_nb as tnb
from telnyx_nb.sandbox import Sandbox, Scenario
from telnyx_nb.store.redact import PREFIX
from telnyx_nb.wire import media, stream, webhooks

from waiting import timeout, wait_until

API_KEY = "KEY_SECRET_api_0f9e8d7c6b5a49382716"
TOKEN = "tok_SECRET_stream_5a4b3c2d1e0f"
CALLER, CALLEE, CALLBACK = "+15550199", "+15550100", "+442071838750"
NUMBERS = (CALLER, CALLEE, CALLBACK)


@pytest.fixture(scope="module")
def sb():
    with Sandbox(api_key=API_KEY, ring_s=0.05, scenario=Scenario.silence(30.0), webhook_backoff_s=0.05) as s:
        yield s


@pytest.fixture(scope="module")
def client(sb):
    return sb.client()


def private_key_forms(sb: Sandbox) -> list[bytes]:
    """The sandbox's Ed25519 private key as it could leak: raw, base64, hex."""
    raw = sb._private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
    return [raw, base64.b64encode(raw), raw.hex().encode()]


# -- where a receiver listens ---------------------------------------------------------------------

@pytest.mark.parametrize("where", [{"host": "0.0.0.0"}, {"host": "::"}, {"host": "192.0.2.7"}, {"host": ""},
                                   {"host": "myhost.example"}, {"public_url": "https://tunnel.example.test"}])
def test_a_receiver_reachable_from_elsewhere_needs_a_public_key(where):
    with pytest.raises(ValueError, match=r"can be reached by anyone.*pass public_key=.*allow_unverified=True"):
        tnb.Receiver(**where)
    open_one = tnb.Receiver(**where, allow_unverified=True)          # said out loud: accepted
    other = tnb.Receiver(**where, public_key=webhooks.Signer().public_key)
    assert len(open_one.stream_auth_token) == 43 and len(other.stream_auth_token) == 43   # token_urlsafe(32)
    assert open_one.stream_auth_token != other.stream_auth_token
    assert tnb.Receiver(**where, allow_unverified=True, stream_auth_token="mine").stream_auth_token == "mine"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_neither_key_nor_token(host):
    rx = tnb.Receiver(host=host)
    assert rx.stream_auth_token is None and rx.public_key is None
    assert tnb.Receiver().host == "127.0.0.1"                        # the default


def test_off_loopback_the_generated_token_guards_the_media_port(sb, client):
    rx = tnb.Receiver(host="0.0.0.0", public_key=sb.public_key).start()
    try:
        token = rx.stream_auth_token
        assert token is not None and token not in repr(rx) and "stream token required" in repr(rx)

        async def knock(headers):
            """The refusal: the upgrade's HTTP status, or the close code after a ``start`` frame."""
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.ws_connect(rx.stream_url, headers=headers) as ws:
                        start = media.Start("intruder", 1, "v3:x", media.MediaFormat("PCMU", 8000))
                        await ws.send_str(media.dumps(start))
                        await ws.receive(timeout=timeout(5))
                        return ws.close_code
                except aiohttp.WSServerHandshakeError as exc:
                    return exc.status

        assert asyncio.run(knock({})) == aiohttp.WSCloseCode.POLICY_VIOLATION       # no token: closed, 1008
        assert asyncio.run(knock({media.AUTH_TOKEN_HEADER: token[:-1]})) == 403     # a wrong one: refused
        assert asyncio.run(knock({media.AUTH_TOKEN_HEADER: token + "x"})) == 403
        ccid = client.calls.dial(connection_id=sb.connection_id, to=CALLEE, from_=CALLER,
                                 webhook_url=rx.webhook_url).data.call_control_id
        rx.wait_for("call.answered", ccid, timeout=timeout(10))
        tnb.start_streaming(client, ccid, rx)                         # the helper passes the token on
        wait_until(lambda: len(rx.frames) >= 5, timeout(10))
        streams = rx.streams
        assert streams["call_control_id"].tolist() == [ccid] and streams["authenticated"].tolist() == [True]
        client.calls.actions.hangup(ccid)
        refused = rx.stream_errors
        assert refused["reason"].tolist() == ["auth_failed"] * 3
        assert not refused["detail"].str.contains(token, regex=False).any()
    finally:
        rx.stop()


def test_the_stream_token_is_compared_in_constant_time():
    """Timing is not asserted in tests: the check is that every comparison goes through
    ``hmac.compare_digest``, and that it answers right at every edge."""
    tree = ast.parse(inspect.getsource(stream))
    same = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "same_token")
    calls = [ast.unparse(node.func) for node in ast.walk(same) if isinstance(node, ast.Call)]
    assert "hmac.compare_digest" in calls
    compared = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Compare)
                and any("token" in ast.unparse(side).lower() for side in (node.left, *node.comparators))
                and not all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops)]
    assert compared == []                                            # no ==/!= on a token anywhere
    token = "s3cret-token"
    assert stream.same_token(token, token)
    for offered in ("", "s3cret-toke", "s3cret-tokenx", "S3cret-token", "s3cret-tokem", "s3cr\u00e9t-token"):
        assert not stream.same_token(offered, token)


# -- no secret anywhere; phone numbers redacted ----------------------------------------------------

def post_unsigned(rx: tnb.Receiver, text: str) -> int:
    request = urllib.request.Request(rx.webhook_url, data=text.encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout(5)) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def all_text(path: Path) -> list[tuple[str, bytes]]:
    """Every file under ``path`` as raw bytes, and each Parquet file's values as text too
    (compressed pages need not hold a string verbatim)."""
    found = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        found.append((str(file), file.read_bytes()))
        if file.suffix == ".parquet":
            found.append((f"{file} (values)", str(pq.read_table(file).to_pylist()).encode()))
    return found


def reprs(obj: object) -> list[str]:
    """What a notebook shows of ``obj``: its repr, and its HTML repr when it has one."""
    html = getattr(obj, "_repr_html_", None)
    return [repr(obj), *([html()] if html is not None else [])]


TABLES = ("events", "transcripts", "frames", "rtp", "streams", "dtmf", "marks", "stream_errors", "webhook_errors",
          "rtp_errors", "commands")


def test_no_secret_in_reprs_logs_errors_or_saved_sessions_and_redacted_saves_hide_numbers(sb, client, tmp_path,
                                                                                           caplog):
    caplog.set_level(logging.DEBUG, logger="telnyx_nb")
    texts: list[str] = reprs(sb)
    errors: list[BaseException] = []
    rx = tnb.Receiver(public_key=sb.public_key, stream_auth_token=TOKEN, record_to=tmp_path / "recording")
    texts += reprs(rx)
    rx.start()
    try:
        texts += reprs(rx)
        ccid, forked = (tnb.dial(client, rx, connection_id=sb.connection_id, to=CALLEE, from_=CALLER)
                        .data.call_control_id for _ in range(2))
        rx.wait_for("call.answered", ccid, timeout=timeout(10))
        rx.wait_for("call.answered", forked, timeout=timeout(10))
        tnb.start_streaming(client, ccid, rx)             # the sandbox sends a call's media one way at a time
        tnb.start_transcription(client, ccid, rx)
        tnb.start_forking(client, forked, rx)

        async def other_stream():            # a stream of its own, the caller's number in its custom parameters
            headers = {media.AUTH_TOKEN_HEADER: TOKEN}
            async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url, headers=headers) as ws:
                await ws.send_str(media.dumps(media.Start(
                    "own", 1, "v3:own", media.MediaFormat("PCMU", 8000), from_=CALLER, to=CALLBACK,
                    custom_parameters={"callback": CALLBACK, "caller": CALLER})))

        asyncio.run(other_stream())
        assert post_unsigned(rx, f'{{"data": {{"payload": {{"from": "{CALLER}", "to": "{CALLBACK}"}}}}}}') == 401
        wait_until(lambda: len(rx.frames) >= 10 and len(rx.rtp) >= 10 and len(rx.streams) == 2, timeout(15))
        for misuse in (lambda: rx.send_audio("no-such-stream", np.zeros(160, np.int16), 8000).result(timeout(5)),
                       lambda: client.calls.actions.start_streaming("v3:no-such-call", stream_url=rx.stream_url,
                                                                    stream_auth_token=TOKEN),
                       lambda: telnyx.Telnyx(base_url=sb.base_url, api_key="KEY_wrong", max_retries=0
                                             ).calls.actions.hangup(ccid),
                       lambda: tnb.Receiver(host="0.0.0.0")):
            with pytest.raises(Exception) as caught:                  # each its own kind, checked below
                misuse()
            errors.append(caught.value)
        for call in (ccid, forked):
            client.calls.actions.hangup(call)
            rx.wait_for("call.hangup", call, timeout=timeout(10))
        if rx.health()["capture_pid"] is not None and Path("/proc").is_dir():      # what `ps` shows
            proc = Path("/proc") / str(rx.health()["capture_pid"])
            texts += [(proc / "cmdline").read_bytes().decode(errors="replace"),
                      (proc / "environ").read_bytes().decode(errors="replace")]
        texts += [*reprs(rx), str(rx.health())]
    finally:
        rx.stop()
    texts += [*reprs(rx), *(getattr(rx, name).to_string() for name in TABLES)]
    saved = rx.save(tmp_path / "saved")
    redacted = rx.save(tmp_path / "redacted", redact=True)
    plain_session, redacted_session = tnb.load(saved), tnb.load(redacted)
    texts += [*reprs(plain_session), *reprs(redacted_session)]
    texts += [f"{type(e).__name__}: {e} {e.__cause__!r} {e.__context__!r}" for e in errors]
    texts += [caplog.text] + [r.getMessage() for r in caplog.records]
    files = all_text(tmp_path)
    assert [type(e).__name__ for e in errors] == ["StreamNotOpenError", "UnprocessableEntityError",
                                                  "AuthenticationError", "ValueError"]

    secrets = [API_KEY.encode(), TOKEN.encode(), *private_key_forms(sb)]
    leaks = [(where, secret) for where, data in [*files, *((f"text {i}", t.encode()) for i, t in enumerate(texts))]
             for secret in secrets if secret in data]
    assert leaks == []

    # redaction: the numbers are in the plain save and nowhere in the redacted one, byte for byte
    in_plain = {n for n in NUMBERS for where, data in files if where.startswith(str(saved)) and n.encode() in data}
    assert in_plain == set(NUMBERS)
    assert [(where, n) for where, data in files if where.startswith(str(redacted))
            for n in NUMBERS if n.encode() in data or n[1:].encode() in data] == []
    assert not list(tmp_path.glob(".redacted-*"))                     # no staging copy left behind
    assert (plain_session.redacted, redacted_session.redacted, rx.redacted) == (False, True, False)
    assert "redacted" in repr(redacted_session) and "redacted" not in repr(plain_session)

    # ... and joins still hold: one token per number, the same wherever the number was
    events = redacted_session.events
    call = events[events["call_control_id"] == ccid]
    caller = {p["from"] for p in call["payload"] if "from" in p}
    callee = {p["to"] for p in call["payload"] if "to" in p}
    assert len(caller) == 1 and len(callee) == 1 and caller != callee
    (caller_token,), (callee_token,) = caller, callee
    assert caller_token.startswith(PREFIX) and len(caller_token) == len(PREFIX) + 16
    own = redacted_session.streams.set_index("stream_id").loc["own", "custom_parameters"]
    assert own["caller"] == caller_token and own["callback"].startswith(PREFIX) and own["callback"] != callee_token
    assert caller_token in redacted_session.webhook_errors["excerpt"].iloc[0]
    assert own["callback"] in redacted_session.webhook_errors["excerpt"].iloc[0]
    commands = redacted_session.commands
    dialled = commands[commands["command"] == "dial"]["options"].iloc[0]
    assert (dialled["from_"], dialled["to"]) == (caller_token, callee_token)
    # everything else is as it was
    assert redacted_session.events["event_id"].tolist() == plain_session.events["event_id"].tolist()
    assert redacted_session.frames.equals(plain_session.frames)
    assert np.array_equal(redacted_session.audio(ccid).samples, plain_session.audio(ccid).samples)
    # a second redacted save uses a new salt: tokens cannot be matched across shared sessions
    again = tnb.load(rx.save(tmp_path / "again", redact=True)).events
    assert {p["from"] for p in again[again["call_control_id"] == ccid]["payload"] if "from" in p} != caller
    assert os.listdir(tmp_path / "recording")                        # the live recording kept its own data
