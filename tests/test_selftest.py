"""``rx.selftest()`` and the receiver's ``/selftest`` route, through real sockets on 127.0.0.1.

The verdicts a user meets: reachable at the local URL and through a forwarding hop (a tunnel
stand-in); not reachable at a closed port, a server that never answers, or a wrong responder
(another HTTP server answering 200, a 404, something that does not speak HTTP, another
telnyx_nb receiver); the route stores nothing; bad nonces get 400; misuse raises.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import http.server
import json
import math
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

import telnyx_nb as tnb
from telnyx_nb.loopthread import LoopThread
from telnyx_nb.wire import selftest, webhooks

from waiting import timeout, wait_until

pytestmark = pytest.mark.filterwarnings("ignore:telnyx_nb.Receiver has no public_key:UserWarning",
                                        "ignore:another telnyx_nb.Receiver is still listening:UserWarning")


@pytest.fixture(scope="module")
def rx() -> Iterator[tnb.Receiver]:
    with tnb.Receiver() as receiver:
        yield receiver


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, dict]:
    """Status and JSON body of a GET, without any proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout(5)) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class _Fixed(http.server.BaseHTTPRequestHandler):
    """Answers every GET with ``status`` and ``body`` (class attributes set per server)."""

    status = 200
    body = b""

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def responder() -> Iterator:
    """Start HTTP servers answering a fixed status and body; returns their base URLs."""
    servers = []

    def start(status: int, body: bytes) -> str:
        handler = type("Handler", (_Fixed,), {"status": status, "body": body})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# -- reachable ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("process", [True, False], ids=["capture_process", "capture_thread"])
def test_reachable_at_the_local_url(process):
    with tnb.Receiver(process=process) as receiver:
        before = dt.datetime.now(dt.timezone.utc)
        result = receiver.selftest()
        after = dt.datetime.now(dt.timezone.utc)
    assert isinstance(result, tnb.SelfTest) and result.reachable, result
    assert result.error is None and result.status == 200
    assert result.url.startswith(f"http://127.0.0.1:{receiver.port}/selftest?nonce=")
    assert math.isfinite(result.round_trip_ms) and result.round_trip_ms > 0
    assert result.received_at is not None and before <= result.received_at <= after
    assert str(result).startswith(f"reachable: this receiver answered at http://127.0.0.1:{receiver.port}/selftest in ")


def test_reachable_on_ipv6_loopback():
    with tnb.Receiver(host="::1") as receiver:
        result = receiver.selftest()
    assert result.reachable, result
    assert result.url.startswith(f"http://[::1]:{receiver.port}/selftest?nonce=")


class Forwarder:
    """A TCP hop (what a tunnel's agent does): each connection to ``port`` is piped to ``target``."""

    def __init__(self) -> None:
        self.target = 0
        self.loop = LoopThread("test-forwarder", kind="asyncio")
        self.loop.start()
        self.server = self.loop.run(asyncio.start_server(self._pipe, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.connections = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer), return_exceptions=True)

    def close(self) -> None:
        self.loop.call_soon(self.server.close)
        self.loop.stop(timeout(5))


def test_reachable_through_its_public_url_and_not_when_the_hop_is_gone():
    """``public_url`` is what the self-test requests by default: here a forwarding hop to the
    receiver's port. Once the hop is gone, the same call reports the URL unreachable."""
    hop = Forwarder()
    public_url = f"http://127.0.0.1:{hop.port}"
    with tnb.Receiver(public_url=public_url, allow_unverified=True) as receiver:
        hop.target = receiver.port
        assert receiver.webhook_url == f"{public_url}/webhooks"
        through = receiver.selftest()
        assert through.reachable, through
        assert through.url.startswith(f"{public_url}/selftest?nonce=") and hop.connections == 1
        hop.close()
        gone = receiver.selftest()
    assert not gone.reachable and "connection refused" in gone.error, gone


# -- not reachable: reported, never raised --------------------------------------------------------


def test_a_closed_port_is_not_reachable_with_the_reason(rx):
    port = closed_port()
    result = rx.selftest(f"http://127.0.0.1:{port}")
    assert result.reachable is False
    assert result.error == "connection refused: nothing listens at that host and port"
    assert result.status is None and math.isnan(result.round_trip_ms) and result.received_at is None
    assert str(result) == (f"NOT reachable at http://127.0.0.1:{port}/selftest: connection refused: nothing listens "
                           "at that host and port")


def test_a_server_that_never_answers_is_reported_after_the_timeout(rx):
    with socket.socket() as silent:                     # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        result = rx.selftest(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
    assert not result.reachable and result.error == "no answer within 0.3 s", result


def test_another_http_server_answering_200_is_not_this_receiver(rx, responder):
    result = rx.selftest(responder(200, b"<html>It works!</html>"))
    assert not result.reachable
    assert result.status == 200 and math.isfinite(result.round_trip_ms)
    assert result.error.startswith("answered but not this receiver: the answer is not JSON")
    assert "It works!" in result.error


@pytest.mark.parametrize("body, why", [
    (b'{"ok": true}', "does not come from a telnyx_nb receiver"),
    (b'{"receiver": "telnyx_nb", "nonce": "stale", "port": 1}', "answered with another nonce"),
])
def test_json_that_does_not_echo_the_nonce_is_not_this_receiver(rx, responder, body, why):
    result = rx.selftest(responder(200, body))
    assert not result.reachable and result.error.startswith("answered but not this receiver") and why in result.error


def test_a_404_names_the_likely_cause(rx, responder):
    result = rx.selftest(responder(404, b"Tunnel abc.ngrok-free.app not found"))
    assert not result.reachable and result.status == 404
    assert "HTTP 404" in result.error and "without the /selftest route" in result.error, result


def test_a_peer_that_does_not_speak_http_is_not_this_receiver(rx):
    with socket.socket() as raw:
        raw.bind(("127.0.0.1", 0))
        raw.listen()

        def babble() -> None:
            conn, _ = raw.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        thread = threading.Thread(target=babble, daemon=True)
        thread.start()
        result = rx.selftest(f"http://127.0.0.1:{raw.getsockname()[1]}")
        thread.join(timeout(5))
    assert not result.reachable and result.error.startswith("answered but not this receiver: the answer is not HTTP")


def test_another_telnyx_nb_receiver_is_named_as_such(rx):
    """A tunnel left pointing at a leftover receiver (a re-run cell) answers the nonce, from another port."""
    with tnb.Receiver() as leftover:
        result = rx.selftest(f"http://127.0.0.1:{leftover.port}")
    assert not result.reachable
    assert f"another telnyx_nb receiver answered, listening on port {leftover.port}" in result.error
    assert f"point the tunnel at port {rx.port}" in result.error


# -- the route ------------------------------------------------------------------------------------


def test_the_route_stores_nothing_while_a_webhook_still_would(rx):
    base = f"http://127.0.0.1:{rx.port}"
    before = (len(rx.events), len(rx.webhook_errors), rx.health()["webhooks"])
    for _ in range(3):
        assert rx.selftest().reachable
    assert get(f"{base}/selftest?nonce={'n' * 65}")[0] == 400
    assert get(f"{base}/selftest")[0] == 400
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(f"{base}/selftest?nonce=posted", data=b"{}", method="POST"),
                     timeout=timeout(5)) as answer:
        assert json.loads(answer.read())["nonce"] == "posted"
    assert rx.health()["webhooks"] == before[2]
    # A fence: an unparseable body at /webhooks is refused and listed. Once its row is readable
    # (a read may lag by read_flush_interval_s), so is anything the requests before it stored.
    with pytest.raises(urllib.error.HTTPError):
        opener.open(urllib.request.Request(f"{base}/webhooks", data=b"not json", method="POST"), timeout=timeout(5))
    wait_until(lambda: len(rx.webhook_errors) > before[1], what="the refused webhook in webhook_errors")
    errors = rx.webhook_errors
    assert len(errors) == before[1] + 1 and errors.reason.iloc[-1] == "malformed_json", errors
    assert len(rx.events) == before[0]
    assert rx.health()["webhooks"] == before[2] + 1


def test_the_route_answers_the_documented_json(rx):
    status, answer = get(f"http://127.0.0.1:{rx.port}/selftest?nonce=abc-_9")
    assert status == 200
    assert answer["nonce"] == "abc-_9" and answer["receiver"] == "telnyx_nb" and answer["port"] == rx.port
    assert dt.datetime.fromisoformat(answer["received_at"].replace("Z", "+00:00")).tzinfo is not None


@pytest.mark.parametrize("nonce, detail", [
    ("n" * (selftest.NONCE_MAX_CHARS + 1), "65 characters long; at most 64"),
    ("n" * 5000, "5000 characters long"),
    ("", "missing or empty"),
    ("a%20b", "only the URL-safe characters"),
    ("%3Cscript%3E", "only the URL-safe characters"),
])
def test_a_bad_nonce_gets_a_clear_400(rx, nonce, detail):
    status, answer = get(f"http://127.0.0.1:{rx.port}/selftest?nonce={nonce}")
    assert status == 400 and answer["error"] == "bad_nonce" and detail in answer["detail"], answer
    assert "script" not in answer["detail"]            # the refused nonce is never echoed


def test_the_longest_nonce_is_echoed(rx):
    nonce = "n" * selftest.NONCE_MAX_CHARS
    status, answer = get(f"http://127.0.0.1:{rx.port}/selftest?nonce={nonce}")
    assert status == 200 and answer["nonce"] == nonce


def test_the_route_is_unsigned_on_a_verifying_receiver():
    """A receiver that verifies webhooks (fails closed) still answers the self-test: nothing is signed."""
    with tnb.Receiver(public_key=webhooks.Signer().public_key) as receiver:
        result = receiver.selftest()
        assert result.reachable, result
        assert len(receiver.webhook_errors) == 0


# -- misuse ---------------------------------------------------------------------------------------


def test_misuse_raises_clear_errors(rx):
    fresh = tnb.Receiver()
    with pytest.raises(tnb.ReceiverNotStartedError, match=r"receiver not started; call \.start\(\)"):
        fresh.selftest()
    with pytest.raises(ValueError, match="http:// or https:// base URL"):
        rx.selftest("127.0.0.1:8080")
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        rx.selftest(timeout=0)
    stopped = tnb.Receiver().start()
    stopped.stop()
    with pytest.raises(tnb.ReceiverNotStartedError, match="stopped"):
        stopped.selftest()


# -- the sans-I/O verdicts (wire.selftest), on plain values -----------------------------------------


@pytest.mark.parametrize("exc, why", [
    (socket.gaierror(-2, "Name or service not known"), "the host name does not resolve (Name or service not known)"),
    (urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution")),
     "the host name does not resolve (Temporary failure in name resolution)"),
    (urllib.error.URLError(ssl.SSLCertVerificationError("certificate verify failed")), "the TLS handshake failed"),
    (urllib.error.URLError(TimeoutError("timed out")), "no answer within 2.5 s"),
    (ConnectionResetError(104, "reset"), "the connection was closed without an answer (ConnectionResetError)"),
    (http.client.RemoteDisconnected("closed"), "the connection was closed without an answer (RemoteDisconnected)"),
    (http.client.BadStatusLine("SSH-2.0"), "answered but not this receiver: the answer is not HTTP (BadStatusLine)"),
])
def test_unreachable_names_the_cause(exc, why):
    result = selftest.unreachable("https://example.test/selftest?nonce=x", exc, 2.5)
    assert not result.reachable and result.error.startswith(why), result.error
    assert result.status is None and math.isnan(result.round_trip_ms)


def test_judge_accepts_only_the_echo_from_this_port():
    answer = selftest.answer("n0nce", 1_700_000_000_123_456_789, 8765)
    body = json.dumps(answer).encode()
    ok = selftest.judge("u", "n0nce", 8765, 200, body, 3.0)
    assert ok.reachable and ok.received_at == dt.datetime(2023, 11, 14, 22, 13, 20, 123457, tzinfo=dt.timezone.utc)
    assert not selftest.judge("u", "other", 8765, 200, body, 3.0).reachable
    assert not selftest.judge("u", "n0nce", 8766, 200, body, 3.0).reachable
    assert not selftest.judge("u", "n0nce", 8765, 200, b"[1, 2]", 3.0).reachable
    bad_gateway = selftest.judge("u", "n0nce", 8765, 502, b"<html>" + b"x" * 500, 3.0)
    assert "HTTP 502" in bad_gateway.error and "tunnel or proxy" in bad_gateway.error
    assert len(bad_gateway.error) < 400                 # a long foreign body is quoted in part


@pytest.mark.parametrize("nonce, ok", [
    ("a", True), ("A-z_0" * 12 + "abcd", True), ("x" * 65, False), ("", False), (None, False), ("a.b", False),
    ("é", False), ("a\nb", False),
])
def test_nonce_rules(nonce, ok):
    assert (selftest.nonce_error(nonce) is None) is ok


def test_ipv6_receiver_addresses_are_valid_urls():
    """An IPv6 host goes in brackets (it was ``http://::1:PORT/webhooks``)."""
    from urllib.parse import urlsplit

    with tnb.Receiver(host="::1") as rx:
        for url in (rx.webhook_url, rx.stream_url):
            assert urlsplit(url).hostname == "::1" and urlsplit(url).port == rx.port, url


def test_the_webhook_url_itself_works_and_an_empty_url_is_refused():
    with tnb.Receiver() as rx:
        assert rx.selftest(url=rx.webhook_url).reachable
        with pytest.raises(ValueError, match="url is empty"):
            rx.selftest(url="")
