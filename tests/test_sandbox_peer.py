"""The sandbox tests' independent peer checks its own plumbing before it checks anything else."""

import json
import socket
import urllib.request

from sandbox_peer import Peer, parse_rtp
from waiting import timeout


def test_peer_receives_webhook_and_udp() -> None:
    with Peer() as peer:
        body = json.dumps({"data": {"id": "x", "event_type": "t", "payload": {}}, "meta": {"attempt": 1}}).encode()
        request = urllib.request.Request(peer.webhook_url, data=body, headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(request, timeout=timeout(5)).status == 200
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(b"\x80\x00\x00\x01" + bytes(8) + b"abc", ("127.0.0.1", peer.udp_ports["rx"]))
        sock.close()
        peer.wait_for(lambda: peer.udp["rx"], what="a datagram")
        assert peer.types() == ["t"]
        assert parse_rtp(peer.udp["rx"][0][1])["payload"] == b"abc"
