"""Fork ports stamp datagrams with the kernel's receive time (telnyx_nb.udp)."""

from __future__ import annotations

import socket
import time

import pytest
from test_receiver import wait_until

import telnyx_nb as tnb
from telnyx_nb.udp import kernel_timestamps_available
from telnyx_nb.wire import rtp

from waiting import timeout


def rtp_packet(seq: int) -> bytes:
    return rtp.build_rtp(rtp.RtpPacket(0, seq, 160 * seq, 0x1234, b"\xff" * 160))


@pytest.mark.skipif(not kernel_timestamps_available(), reason="no SO_TIMESTAMPNS on this platform")
def test_a_datagram_read_late_keeps_its_arrival_time(tmp_path):
    with tnb.Receiver(process=False) as rx:                 # its loop is blocked below, from this process
        assert rx.clocks["rtp"] == "kernel" and rx.health()["rtp_clock"] == "kernel"
        port = int(rx.fork_rx.rsplit(":", 1)[1])
        released = []

        async def hold_the_loop() -> None:
            time.sleep(0.3)                         # stimulus: the receiver's loop cannot read
            released.append(time.time_ns())

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            blocked = rx._capture._io.submit(hold_the_loop())   # the in-thread capture: block its loop
            time.sleep(0.05)                        # stimulus: the loop is inside the blocking call now
            sent = time.time_ns()
            sock.sendto(rtp_packet(1), ("127.0.0.1", port))
            blocked.result(timeout(5))
        wait_until(lambda: len(rx.rtp) == 1)
        received = rx.rtp["received_at"].iloc[0].value
        assert sent <= received < released[0]       # stamped on arrival, before the loop could read it
        assert tnb.load(rx.save(tmp_path / "s")).clocks["rtp"] == "kernel"


def test_clocks_name_every_table():
    with tnb.Receiver() as rx:
        clocks = rx.clocks
    assert set(clocks) == {"events", "transcripts", "frames", "rtp", "streams", "dtmf", "marks",
                           "stream_errors", "webhook_errors", "rtp_errors"}
    assert clocks["frames"] == "socket_read" and clocks["rtp"] in ("kernel", "socket_read")
