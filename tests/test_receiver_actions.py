"""The six action helpers, through the real ``telnyx`` SDK, against a recording REST peer."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import telnyx

import telnyx_nb as tnb
from telnyx_nb.store.commands import SECRET_MARKER


@pytest.fixture
def recorded():
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"] or 0))
            requests.append((self.path, json.loads(body or b"{}")))
            reply = b'{"data":{"result":"ok"}}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = telnyx.Telnyx(api_key="KEY_TEST", base_url=f"http://127.0.0.1:{server.server_port}/v2", max_retries=0)
    yield client, requests
    server.shutdown()


def test_helpers_fill_from_the_receiver_and_pass_options_through(recorded):
    client, requests = recorded
    ccid = "v3:abc-123"
    with tnb.Receiver(stream_auth_token="tok") as rx:
        response = tnb.start_streaming(client, ccid, rx, stream_codec="PCMA",
                                       custom_parameters=[{"name": "a", "value": "b"}])
        assert response.data.result == "ok"
        tnb.start_forking(client, ccid, rx, client_state="c3RhdGU=")
        tnb.start_transcription(client, ccid, rx, transcription_engine="Google", transcription_tracks="both")
        tnb.stop_streaming(client, ccid, rx, stream_id="s-1")
        tnb.stop_forking(client, ccid)
        tnb.stop_transcription(client, ccid, command_id="mine")
        tnb.start_streaming(client, ccid, rx, stream_url="wss://elsewhere.test/ws", stream_track="inbound_track")
        paths = [path for path, _ in requests]
        bodies = [body for _, body in requests]
        assert paths == [f"/v2/calls/{ccid}/actions/{a}" for a in (
            "streaming_start", "fork_start", "transcription_start", "streaming_stop", "fork_stop",
            "transcription_stop", "streaming_start")]
        command_ids = [body.pop("command_id") for body in bodies]
        assert len(set(command_ids[:5])) == 5 and command_ids[5] == "mine"
        assert bodies == [
            {"stream_url": rx.stream_url, "stream_track": "both_tracks", "stream_auth_token": "tok",
             "stream_codec": "PCMA", "custom_parameters": [{"name": "a", "value": "b"}]},
            {"rx": rx.fork_rx, "tx": rx.fork_tx, "stream_type": "decrypted", "client_state": "c3RhdGU="},
            {"transcription_engine": "Google", "transcription_tracks": "both"},
            {"stream_id": "s-1"},
            {"stream_type": "decrypted"},
            {},
            {"stream_url": "wss://elsewhere.test/ws", "stream_track": "inbound_track", "stream_auth_token": "tok"},
        ]
        commands = rx.commands                       # what the helpers given rx sent, token masked
        assert commands.command.tolist() == ["streaming_start", "fork_start", "transcription_start",
                                             "streaming_stop", "streaming_start"]
        assert commands.status.tolist() == ["ok"] * 5 and commands.call_control_id.tolist() == [ccid] * 5
        assert commands.command_id.tolist() == [command_ids[i] for i in (0, 1, 2, 3, 6)]
        assert commands.options.iloc[0] == {**bodies[0], "stream_auth_token": SECRET_MARKER,
                                            "command_id": command_ids[0]}


def test_the_receiver_is_positional_so_fork_targets_can_be_set_by_keyword(recorded):
    """fork_start has options named rx and tx; the helpers' receiver argument is positional-only,
    so ``rx=`` is the SDK's option (it was a TypeError: multiple values for argument 'rx')."""
    client, requests = recorded
    with tnb.Receiver() as rx:
        tnb.start_forking(client, "v3:abc-9", rx, rx="udp:203.0.113.5:5000")
        assert requests[-1][1]["rx"] == "udp:203.0.113.5:5000" and requests[-1][1]["tx"] == rx.fork_tx
        with pytest.raises(TypeError):
            tnb.hangup(client, call_control_id="v3:abc-9")
