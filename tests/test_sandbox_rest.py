"""The sandbox's REST API driven by the real telnyx SDK, sync and async."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import telnyx

from sandbox_peer import dial
from waiting import await_until

ACTIONS = ["start_streaming", "stop_streaming", "start_forking", "stop_forking", "start_transcription",
           "stop_transcription"]


def action_kwargs(peer, action: str) -> dict:
    return {
        "start_streaming": {"stream_url": peer.stream_url, "stream_track": "both_tracks"},
        "start_forking": {"rx": peer.udp_target("rx"), "tx": peer.udp_target("tx"), "stream_type": "decrypted"},
        "stop_forking": {"stream_type": "decrypted"},
        "start_transcription": {"transcription_engine": "Google", "transcription_tracks": "both",
                                "transcription_engine_config": {"transcription_engine": "Google", "language": "en",
                                                                "interim_results": True}},
    }.get(action, {})


@pytest.mark.both_modes
def test_dial_response_and_lifecycle_webhooks(sb, client, peer):
    call = client.calls.dial(connection_id=sb.connection_id, to="+15550100", from_="+15550199",
                             webhook_url=peer.webhook_url, client_state="aGVsbG8=")
    data = call.data
    assert data.call_control_id.startswith("v3:") and data.record_type == "call" and data.is_alive is False
    assert len(data.call_leg_id) == 36 and len(data.call_session_id) == 36 and data.client_state == "aGVsbG8="
    ccid = data.call_control_id
    peer.wait_event(ccid, "call.answered")
    initiated, answered = peer.events(ccid)[:2]
    assert initiated.event_type == "call.initiated" and initiated.payload["direction"] == "outgoing"
    assert initiated.payload["connection_id"] == sb.connection_id and initiated.payload["client_state"] == "aGVsbG8="
    assert answered.payload["state"] == "answered" and answered.payload["call_leg_id"] == data.call_leg_id
    status = client.calls.retrieve_status(ccid)
    assert status.data.is_alive is True
    assert client.calls.actions.hangup(ccid).data.result == "ok"
    hangup = peer.wait_event(ccid, "call.hangup")[0].payload
    assert hangup["hangup_cause"] == "normal_clearing" and hangup["hangup_source"] == "caller"
    assert set(hangup["call_quality_stats"]) == {"inbound", "outbound"}
    assert all(isinstance(v, str) for v in hangup["call_quality_stats"]["inbound"].values())
    assert client.calls.retrieve_status(ccid).data.is_alive is False


def test_every_action_sync(sb, client, peer):
    ccid = dial(sb, client, peer)
    for action in ACTIONS:
        response = getattr(client.calls.actions, action)(ccid, client_state="c3RhdGU=", command_id=f"s-{action}",
                                                         **action_kwargs(peer, action))
        assert response.data.result == "ok", action
        if action == "start_streaming":
            peer.wait_event(ccid, "streaming.started")
    peer.wait_event(ccid, "call.fork.stopped")
    assert {"streaming.started", "streaming.stopped", "call.fork.started"} <= set(peer.types(ccid))
    client.calls.actions.hangup(ccid)


async def adial(aclient, sb, peer) -> str:
    """The async twin of sandbox_peer.dial: dial with the AsyncTelnyx client and wait for the answer."""
    call = await aclient.calls.dial(connection_id=sb.connection_id, to="+15550100", from_="+15550199",
                                    webhook_url=peer.webhook_url)
    ccid = call.data.call_control_id
    await await_until(lambda: "call.answered" in peer.types(ccid), what="call.answered")
    return ccid


def test_every_action_async(sb, peer):
    async def run() -> str:
        aclient = sb.aclient()
        ccid = await adial(aclient, sb, peer)
        for action in ACTIONS:
            response = await getattr(aclient.calls.actions, action)(ccid, command_id=f"a-{action}",
                                                                    **action_kwargs(peer, action))
            assert response.data.result == "ok", action
            if action == "start_streaming":
                await await_until(lambda: "streaming.started" in peer.types(ccid), what="streaming.started")
        with pytest.raises(telnyx.UnprocessableEntityError) as err:
            await aclient.calls.actions.stop_forking(ccid)
        assert err.value.body["errors"][0]["code"] == "90031"
        await aclient.calls.actions.hangup(ccid)
        await aclient.close()
        return ccid

    ccid = asyncio.run(run())
    peer.wait_event(ccid, "call.hangup")


@pytest.mark.both_modes
def test_far_end_hangs_up_on_demand(sb, client, peer):
    ccid = dial(sb, client, peer)
    assert sb.call_state(ccid) == "answered"
    sb.hangup(ccid)
    hangup = peer.wait_event(ccid, "call.hangup")[0].payload
    assert (hangup["hangup_cause"], hangup["hangup_source"]) == ("normal_clearing", "callee")
    assert sb.call_state(ccid) == "ended"
    with pytest.raises(KeyError):
        sb.hangup("v3:nope")


@pytest.mark.both_modes
def test_incoming_call_answered_through_the_sdk(sb, client, peer):
    ccid = sb.incoming_call(to="+15550111", from_="+15550122", webhook_url=peer.webhook_url)
    initiated = peer.wait_event(ccid, "call.initiated")[0].payload
    assert initiated["direction"] == "incoming" and initiated["from"] == "+15550122"
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        client.calls.actions.start_transcription(ccid)
    assert err.value.body["errors"][0]["code"] == "90034"
    client.calls.actions.answer(ccid, client_state="YW5zd2Vy", stream_url=peer.stream_url, stream_track="both_tracks",
                                stream_codec="PCMA")
    answered = peer.wait_event(ccid, "call.answered")[0].payload
    assert answered["client_state"] == "YW5zd2Vy"
    start = peer.stream_of(ccid).frames[1]["start"]
    assert start["media_format"]["encoding"] == "PCMA" and start["from"] == "+15550122" and start["to"] == "+15550111"
    client.calls.actions.answer(ccid)  # not ringing any more: 200, nothing done
    client.calls.actions.hangup(ccid)
    assert peer.wait_event(ccid, "call.hangup")[0].payload["hangup_source"] == "callee"


def error_of(exc_info) -> dict:
    return exc_info.value.body["errors"][0]


def test_authentication_is_required(sb, peer):
    bad = telnyx.Telnyx(base_url=sb.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(telnyx.AuthenticationError) as err:
        bad.calls.actions.start_streaming("v3:x", stream_url=peer.stream_url)
    assert err.value.status_code == 401 and error_of(err)["code"] == "10009"
    response = httpx.post(f"{sb.base_url}/calls", json={})
    assert response.status_code == 401 and response.json()["errors"][0]["code"] == "10009"


@pytest.mark.parametrize("action, kwargs, pointer", [
    ("start_streaming", {"stream_track": "bogus"}, "/stream_track"),
    ("start_streaming", {"stream_codec": "MP3"}, "/stream_codec"),
    ("start_streaming", {"stream_bidirectional_mode": "ogg"}, "/stream_bidirectional_mode"),
    ("start_streaming", {"stream_bidirectional_codec": "pcmu"}, "/stream_bidirectional_codec"),
    ("start_streaming", {"stream_bidirectional_sampling_rate": 11025}, "/stream_bidirectional_sampling_rate"),
    ("start_streaming", {"stream_bidirectional_target_legs": "all"}, "/stream_bidirectional_target_legs"),
    ("start_forking", {"stream_type": "raw"}, "/stream_type"),
    ("stop_forking", {"stream_type": "encrypted"}, "/stream_type"),
    ("start_transcription", {"transcription_engine": "Whisper"}, "/transcription_engine"),
    ("start_transcription", {"transcription_tracks": "left"}, "/transcription_tracks"),
    ("start_transcription", {"transcription_engine_config": {"model": "huge"}}, "/transcription_engine_config/model"),
])
def test_enums_are_validated(sb, client, peer, action, kwargs, pointer):
    extra = {"stream_url": peer.stream_url} if action == "start_streaming" else {}
    extra.update({"rx": peer.udp_target("rx"), "tx": peer.udp_target("tx")} if action == "start_forking" else {})
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        getattr(client.calls.actions, action)("v3:unknown", **extra, **kwargs)
    error = error_of(err)
    assert error["code"] == "10032" and error["source"]["pointer"] == pointer and error["title"]


def test_call_state_errors(sb, client, peer):
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        client.calls.actions.stop_transcription("v3:doesnotexist")
    assert error_of(err) == {"code": "90015", "title": "Invalid Call Control ID",
                             "detail": "The call_control_id provided was not valid.",
                             "source": {"pointer": "/call_control_id"}}
    ccid = dial(sb, client, peer)
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        client.calls.actions.stop_forking(ccid)
    assert error_of(err)["code"] == "90031"
    client.calls.actions.start_transcription(ccid)
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        client.calls.actions.start_transcription(ccid)
    assert error_of(err)["code"] == "90054" and error_of(err)["title"] == "Call transcription is already in progress"
    client.calls.actions.hangup(ccid)
    for action in [*ACTIONS, "hangup"]:
        with pytest.raises(telnyx.UnprocessableEntityError) as err:
            getattr(client.calls.actions, action)(ccid, **action_kwargs(peer, action))
        assert error_of(err)["code"] == "90018", action


def test_every_error_code_async(sb, peer):
    """401, 10032, 90015, 90034, 90031, 90054 and 90018 through telnyx.AsyncTelnyx."""
    async def code_of(call) -> tuple[int, str]:
        with pytest.raises(telnyx.APIStatusError) as err:
            await call
        return err.value.status_code, error_of(err)["code"]

    async def run() -> list[tuple[int, str]]:
        aclient = sb.aclient()
        bad = telnyx.AsyncTelnyx(base_url=sb.base_url, api_key="wrong", max_retries=0)
        codes = [await code_of(bad.calls.actions.stop_streaming("v3:x")),
                 await code_of(aclient.calls.actions.start_streaming("v3:x", stream_url=peer.stream_url,
                                                                     stream_track="bogus")),
                 await code_of(aclient.calls.actions.stop_transcription("v3:doesnotexist"))]
        ringing = sb.incoming_call(webhook_url=peer.webhook_url)
        codes.append(await code_of(aclient.calls.actions.start_forking(ringing, rx=peer.udp_target("rx"),
                                                                       tx=peer.udp_target("tx"))))
        ccid = await adial(aclient, sb, peer)
        codes.append(await code_of(aclient.calls.actions.stop_forking(ccid)))
        await aclient.calls.actions.start_transcription(ccid)
        codes.append(await code_of(aclient.calls.actions.start_transcription(ccid)))
        await aclient.calls.actions.hangup(ccid)
        codes.append(await code_of(aclient.calls.actions.stop_streaming(ccid)))
        await aclient.calls.actions.hangup(ringing)
        return codes

    assert asyncio.run(run()) == [(401, "10009"), (422, "10032"), (422, "90015"), (422, "90034"),
                                  (422, "90031"), (422, "90054"), (422, "90018")]


def test_bad_requests_get_telnyx_error_bodies(sb, client, peer):
    headers = {"Authorization": f"Bearer {sb.api_key}", "Content-Type": "application/json"}
    ccid = dial(sb, client, peer)
    url = f"{sb.base_url}/calls/{ccid}/actions/streaming_start"
    for body in (b"{not json", b"[1, 2]", b'"text"'):
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 400 and response.json()["errors"][0]["code"] == "10015"
    response = httpx.post(url, json={"stream_url": 5}, headers=headers)
    assert response.status_code == 400 and response.json()["errors"][0]["source"]["pointer"] == "/stream_url"
    response = httpx.post(url, json={"stream_url": "http://not-a-websocket"}, headers=headers)
    assert response.status_code == 422 and response.json()["errors"][0]["code"] == "10003"
    response = httpx.post(url, json={}, headers=headers)
    assert response.status_code == 422 and response.json()["errors"][0] == {
        "code": "10004", "title": "Missing required parameter",
        "detail": "The 'stream_url' parameter is required and cannot be blank.", "source": {"pointer": "/stream_url"}}
    fork_start = f"{sb.base_url}/calls/{ccid}/actions/fork_start"
    response = httpx.post(fork_start, json={"rx": "tcp:1.2.3.4:5"}, headers=headers)
    assert response.json()["errors"][0]["code"] == "10003"
    response = httpx.post(fork_start, json={"rx": peer.udp_target("rx")}, headers=headers)
    assert response.json()["errors"][0]["source"]["pointer"] == "/tx"
    response = httpx.post(f"{sb.base_url}/calls/{ccid}/actions/speak", json={}, headers=headers)
    assert response.status_code == 404 and response.json()["errors"][0]["code"] == "10005"
    response = httpx.post(f"{sb.base_url}/nowhere", json={}, headers=headers)
    assert response.status_code == 404 and response.json()["errors"][0]["code"] == "10005"
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        client.calls.dial(connection_id=sb.connection_id, to="+15550100", from_="+1", timeout_secs=1)
    assert error_of(err)["code"] == "10033"
    response = httpx.post(f"{sb.base_url}/calls", json={"connection_id": "1", "from": "+1"}, headers=headers)
    assert response.json()["errors"][0]["source"]["pointer"] == "/to"
    assert client.calls.retrieve_status(ccid).data.is_alive  # nothing above broke the call
    client.calls.actions.hangup(ccid)


def test_command_id_is_honoured_once_per_call(sb, client, peer):
    ccid = dial(sb, client, peer)
    before = len(peer.conns)
    for _ in range(2):
        client.calls.actions.start_streaming(ccid, stream_url=peer.stream_url, command_id="same")
    client.calls.actions.start_transcription(ccid, command_id="tx-1")
    client.calls.actions.start_transcription(ccid, command_id="tx-1")  # a repeat: 200, no 90054
    peer.wait_event(ccid, "streaming.started")
    other = dial(sb, client, peer)
    client.calls.actions.start_transcription(other, command_id="tx-1")  # another call: not a repeat
    client.calls.actions.hangup(ccid)
    client.calls.actions.hangup(other)
    peer.wait_event(ccid, "streaming.stopped")
    assert len(peer.conns) - before == 1
    assert peer.types(ccid).count("streaming.started") == 1


def test_command_id_async(sb, peer):
    async def run() -> str:
        aclient = sb.aclient()
        ccid = await adial(aclient, sb, peer)
        for _ in range(2):
            await aclient.calls.actions.start_forking(ccid, rx=peer.udp_target("rx"), tx=peer.udp_target("tx"),
                                                      command_id="fork-once")
        await aclient.calls.actions.hangup(ccid)
        await aclient.close()
        return ccid

    ccid = asyncio.run(run())
    peer.wait_event(ccid, "call.hangup")
    assert peer.types(ccid).count("call.fork.started") == 1


def test_client_state_is_echoed(sb, client, peer):
    ccid = dial(sb, client, peer)
    client.calls.actions.start_forking(ccid, rx=peer.udp_target("rx"), tx=peer.udp_target("tx"),
                                       client_state="Zm9yaw==")
    assert peer.wait_event(ccid, "call.fork.started")[0].payload["client_state"] == "Zm9yaw=="
    client.calls.actions.stop_forking(ccid, client_state="c3RvcA==")
    stopped = peer.wait_event(ccid, "call.fork.stopped")[0].payload
    assert stopped["client_state"] == "c3RvcA==" and stopped["stream_type"] == "decrypted"
    client.calls.actions.hangup(ccid)


def test_the_client_reaches_a_loopback_sandbox_with_a_proxy_in_the_environment(sb, monkeypatch):
    """Many JupyterHubs set HTTP(S)_PROXY; a proxy cannot reach this machine's 127.0.0.1 (it was
    APIConnectionError for every call)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    call = sb.client().calls.dial(connection_id=sb.connection_id, to="+15550177", from_="+15550199")
    assert call.data.call_control_id.startswith("v3:")
    sb.client().calls.actions.hangup(call.data.call_control_id)
