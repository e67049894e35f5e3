"""Forked RTP through real UDP sockets: SSRC changes followed without stealing another call's
RTP, unattributed sources listed, the fork written as a pcap; and media streams that never
sent ``start`` (issue 9, "Fork attribution" and "Streams that skip steps").

Every test runs in the receiver's capture mode under test (``TELNYX_NB_TEST_CAPTURE``).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_receiver import envelope, media_frame, post, ws_send

import telnyx_nb as tnb
from telnyx_nb.wire import codecs, rtp

import waiting
from waiting import timeout

CALL_X, CALL_Y = "v3:call-x", "v3:call-y"
#: 117 packets of a 440 Hz tone, 20 ms (160 PCMU bytes) each.
TONE = codecs.ulaw_encode((9000 * np.sin(2 * np.pi * 440 * np.arange(117 * 160) / 8000)).astype(np.int16))


def wait_until(predicate, what: str = "the condition") -> None:
    waiting.wait_until(predicate, timeout=5.0, what=what)


@pytest.fixture
def rx():
    receiver = tnb.Receiver(allow_unverified=True)
    with pytest.warns(UserWarning, match="unverified"):
        receiver.start()
    yield receiver
    receiver.stop()


class Sender:
    """One UDP socket (one source address and port, as a media server forks every call from)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def send(self, target: str, ssrc: int, seq: int, payload: bytes = b"\xff" * 160) -> None:
        _, host, port = target.split(":")
        packet = rtp.RtpPacket(0, seq & 0xFFFF, (160 * seq) & 0xFFFFFFFF, ssrc, payload)
        self.sock.sendto(rtp.build_rtp(packet), (host, int(port)))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def media_server():
    senders: list[Sender] = []

    def new() -> Sender:
        senders.append(Sender())
        return senders[-1]

    yield new
    for sender in senders:
        sender.close()


def calls_by_ssrc(session) -> dict[int, str | None]:
    rows = session.rtp
    return {int(ssrc): (None if pd.isna(call) else call) for ssrc, call in zip(rows["ssrc"], rows["call_control_id"],
                                                                             strict=True)}


# -- SSRC changes -------------------------------------------------------------------------------------

def send_ssrc_change(sender: Sender, target: str, first_seq: int = 65500) -> None:
    """12 packets of SSRC A, 100 of B, 5 of C; sequence numbers continue (and wrap past 65535)."""
    seq = first_seq
    for ssrc, count in ((0xA, 12), (0xB, 100), (0xC, 5)):
        for _ in range(count):
            i = seq - first_seq
            sender.send(target, ssrc, seq, TONE[160 * i : 160 * (i + 1)])
            seq += 1


def test_an_ssrc_change_mid_call_stays_with_the_call(rx, media_server, tmp_path):
    rx.expect_fork(CALL_X)
    send_ssrc_change(media_server(), rx.fork_rx)
    wait_until(lambda: len(rx.rtp) == 117, "117 packets")

    assert calls_by_ssrc(rx) == {0xA: CALL_X, 0xB: CALL_X, 0xC: CALL_X}
    sources = rx.sources
    assert sources[["ssrc", "attributed_by", "packets"]].values.tolist() == [
        [0xA, "claim", 12], [0xB, "ssrc_change", 100], [0xC, "ssrc_change", 5]]
    assert sources["continues_ssrc"].tolist() == [pd.NA, 0xA, 0xB]
    audio = rx.audio(CALL_X, "rx", source="fork")
    assert len(audio) == 18_720 and audio.rate == 8000
    np.testing.assert_array_equal(audio.samples, codecs.ulaw_decode(TONE))

    loaded = tnb.load(rx.save(tmp_path / "saved"))
    assert calls_by_ssrc(loaded) == {0xA: CALL_X, 0xB: CALL_X, 0xC: CALL_X}
    pd.testing.assert_frame_equal(loaded.sources, sources)
    assert len(loaded.audio(CALL_X, "rx", source="fork")) == 18_720


def test_a_new_ssrc_from_another_port_is_not_the_calls(rx, media_server):
    rx.expect_fork(CALL_X)
    first, other = media_server(), media_server()
    for seq in range(100, 112):
        first.send(rx.fork_rx, 0xA, seq)
    wait_until(lambda: len(rx.rtp) == 12)
    for seq in range(112, 117):                     # continues A's numbers, but from another port
        other.send(rx.fork_rx, 0xB, seq)
    wait_until(lambda: len(rx.rtp) == 17)
    assert calls_by_ssrc(rx) == {0xA: CALL_X, 0xB: None}
    unattributed = rx.sources.set_index("ssrc").loc[0xB]
    assert pd.isna(unattributed["call_control_id"]) and unattributed["packets"] == 5
    assert unattributed["src_port"] == other.port and unattributed["dst_port"] == int(rx.fork_rx.rsplit(":")[-1])
    quality = rx.quality().set_index("ssrc")
    assert quality.loc[0xB, "packets"] == 5 and pd.isna(quality.loc[0xB, "call_control_id"])


def test_a_new_ssrc_whose_numbers_jump_is_not_the_calls(rx, media_server):
    rx.expect_fork(CALL_X)
    sender = media_server()
    for seq in range(100, 112):
        sender.send(rx.fork_rx, 0xA, seq)
    wait_until(lambda: len(rx.rtp) == 12)
    for seq in range(112 + 8, 125 + 8):             # 9 after A's last: outside the window of 8
        sender.send(rx.fork_rx, 0xB, seq)
    wait_until(lambda: len(rx.rtp) == 25)
    assert calls_by_ssrc(rx) == {0xA: CALL_X, 0xB: None}


def test_two_calls_from_one_address_keep_their_own_rtp(rx, media_server):
    """A media server forks both calls from one socket; a third SSRC whose numbers happen to
    continue X's while X still sends is nobody's; each call's own SSRC change stays its own."""
    sender = media_server()
    rx.expect_fork(CALL_X)
    sender.send(rx.fork_rx, 0x1, 100)
    wait_until(lambda: len(rx.rtp) == 1)
    rx.expect_fork(CALL_Y)
    for i in range(1, 10):
        sender.send(rx.fork_rx, 0x1, 100 + i)      # X
        sender.send(rx.fork_rx, 0x2, 5000 + i)     # Y
    for i in range(10, 20):
        sender.send(rx.fork_rx, 0x3, 100 + i)      # another stream that meets X's numbers...
        sender.send(rx.fork_rx, 0x1, 100 + i)      # ...while X still sends: not X's
        sender.send(rx.fork_rx, 0x2, 5000 + i)
    for i in range(20, 30):
        sender.send(rx.fork_rx, 0x11, 100 + i)     # X changes SSRC
        sender.send(rx.fork_rx, 0x22, 5000 + i)    # Y changes SSRC
    wait_until(lambda: len(rx.rtp) == 69, "69 packets")
    assert calls_by_ssrc(rx) == {0x1: CALL_X, 0x2: CALL_Y, 0x3: None, 0x11: CALL_X, 0x22: CALL_Y}
    assert rx.sources.set_index("ssrc")["continues_ssrc"].fillna(0).to_dict() == {
        0x1: 0, 0x2: 0, 0x3: 0, 0x11: 0x1, 0x22: 0x2}


def test_a_waiting_claim_takes_the_new_ssrc(rx, media_server):
    sender = media_server()
    rx.expect_fork(CALL_X)
    for seq in range(100, 112):
        sender.send(rx.fork_rx, 0xA, seq)
    wait_until(lambda: len(rx.rtp) == 12)
    rx.expect_fork(CALL_Y)                         # a claim waits on rx...
    for seq in range(112, 117):
        sender.send(rx.fork_rx, 0xB, seq)           # ...so B, though it continues A, is Y's
    wait_until(lambda: len(rx.rtp) == 17)
    assert calls_by_ssrc(rx) == {0xA: CALL_X, 0xB: CALL_Y}
    assert rx.sources["attributed_by"].tolist() == ["claim", "claim"]


def test_a_stopped_fork_passes_its_call_to_no_new_ssrc(rx, media_server):
    sender = media_server()
    rx.expect_fork(CALL_X)
    for seq in range(100, 112):
        sender.send(rx.fork_rx, 0xA, seq)
    wait_until(lambda: len(rx.rtp) == 12)
    assert post(rx.webhook_url, envelope("call.fork.stopped", {"call_control_id": CALL_X})) == 200
    wait_until(lambda: len(rx.events) == 1)
    for seq in range(112, 117):
        sender.send(rx.fork_rx, 0xB, seq)
    wait_until(lambda: len(rx.rtp) == 17)
    assert calls_by_ssrc(rx) == {0xA: CALL_X, 0xB: None}


# -- pcap --------------------------------------------------------------------------------------------

def read_pcap(path: Path) -> tuple[int, list[tuple[int, bytes]]]:
    """An independent reader of what to_pcap promises: little-endian, nanosecond magic,
    LINKTYPE_RAW; returns the link type and (time ns, IP packet) per record."""
    data = path.read_bytes()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, snaplen) == (0xA1B23C4D, 2, 4, 65535)
    records, offset = [], 24
    while offset < len(data):
        seconds, nanoseconds, captured, original = struct.unpack_from("<IIII", data, offset)
        assert captured == original
        records.append((seconds * 10**9 + nanoseconds, data[offset + 16 : offset + 16 + captured]))
        offset += 16 + captured
    return linktype, records


def ipv4_udp(packet: bytes) -> tuple[str, int, str, int, bytes]:
    """Source and destination address and port, and the UDP payload, checking both headers."""
    assert packet[0] == 0x45 and packet[9] == 17                                  # IPv4, no options, UDP
    total, = struct.unpack_from("!H", packet, 2)
    words = struct.unpack_from("!10H", packet)
    assert total == len(packet) and sum(words) % 0xFFFF == 0                      # header checksum holds
    sport, dport, length = struct.unpack_from("!HHH", packet, 20)
    assert length == len(packet) - 20
    return socket.inet_ntoa(packet[12:16]), sport, socket.inet_ntoa(packet[16:20]), dport, packet[28:]


def test_to_pcap_writes_the_forked_rtp_with_arrival_times(rx, media_server, tmp_path):
    rx.expect_fork(CALL_X)
    sender = media_server()
    send_ssrc_change(sender, rx.fork_rx)
    stranger = media_server()
    for seq in range(1, 4):
        stranger.send(rx.fork_rx, 0xD, seq)          # unattributed: in the file of everything only
    wait_until(lambda: len(rx.rtp) == 120, "120 packets")
    fork_port = int(rx.fork_rx.rsplit(":")[-1])
    table = rx.rtp
    ours = table[table["call_control_id"] == CALL_X].sort_values("received_at", kind="stable")

    linktype, records = read_pcap(rx.to_pcap(tmp_path / "x.pcap", CALL_X))
    assert linktype == 101 and len(records) == 117
    assert [ns for ns, _ in records] == ours["received_at"].array.asi8.tolist()
    decoded = [ipv4_udp(packet) for _, packet in records]
    assert {(s, sp, d, dp) for s, sp, d, dp, _ in decoded} == {("127.0.0.1", sender.port, "127.0.0.1", fork_port)}
    packets = [rtp.parse_rtp(payload) for *_, payload in decoded]
    assert [(p.ssrc, p.sequence_number, p.timestamp, p.payload_type) for p in packets] == list(zip(
        ours["ssrc"], ours["seq"], ours["rtp_timestamp"], ours["payload_type"], strict=True))
    assert b"".join(p.payload for p in packets) == TONE

    everything = rx.to_pcap(tmp_path / "all.pcap")
    assert len(read_pcap(everything)[1]) == 120
    loaded = tnb.load(rx.save(tmp_path / "saved"))
    assert loaded.to_pcap(tmp_path / "again.pcap", CALL_X).read_bytes() == (tmp_path / "x.pcap").read_bytes()
    with pytest.raises(LookupError, match="no forked RTP"):
        rx.to_pcap(tmp_path / "none.pcap", "v3:no-such-call")

    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed: the file was checked by the reader above only")
    fields = subprocess.run(
        ["tshark", "-r", str(everything), "-d", f"udp.port=={fork_port},rtp", "-T", "fields",
         "-e", "frame.time_epoch", "-e", "ip.src", "-e", "udp.srcport", "-e", "rtp.ssrc", "-e", "rtp.seq"],
        capture_output=True, text=True, check=True, timeout=timeout(60)).stdout.split("\n")
    rows = [line.split("\t") for line in fields if line]
    table = table.sort_values("received_at", kind="stable")
    assert len(rows) == 120
    assert [int(t.replace(".", "")) for t, *_ in rows] == table["received_at"].array.asi8.tolist()
    assert [(int(ssrc, 16), int(seq)) for *_, ssrc, seq in rows] == list(zip(table["ssrc"], table["seq"],
                                                                               strict=True))
    assert {(host, int(port)) for _, host, port, *_ in rows} == {("127.0.0.1", sender.port),
                                                                 ("127.0.0.1", stranger.port)}


def test_to_pcap_of_a_session_saved_by_version_1(tmp_path):
    session = tnb.load(Path(__file__).parent / "data" / "session-v1")
    _, records = read_pcap(session.to_pcap(tmp_path / "v1.pcap"))
    assert [ns for ns, _ in records] == session.rtp["received_at"].array.asi8.tolist()
    decoded = [ipv4_udp(packet) for _, packet in records]
    assert {(s, sp, d, dp) for s, sp, d, dp, _ in decoded} == {("0.0.0.0", 0, "0.0.0.0", 0)}   # not recorded
    assert [rtp.parse_rtp(payload).sequence_number for *_, payload in decoded] == session.rtp["seq"].tolist()
    assert session.sources[["target", "ssrc", "packets"]].values.tolist() == [["rx", 3, 3]]


# -- streams that skip steps ---------------------------------------------------------------------------

def test_media_without_a_start_frame_decodes_at_the_codecs_rate(rx, tmp_path):
    payloads = [TONE[160 * i : 160 * (i + 1)] for i in range(20)]
    asyncio.run(ws_send(rx.stream_url, [media_frame("no-start", i + 1, "inbound", i + 1, p)
                                        for i, p in enumerate(payloads)]))
    wait_until(lambda: len(rx.frames) == 20 and rx.streams["ended_at"].notna().all(), "20 frames, then the close")
    stream = rx.streams.iloc[0]
    assert stream["stream_id"] == "no-start" and pd.isna(stream["started_at"])
    assert stream["connected_at"] <= rx.frames["received_at"].min()             # when the socket opened
    assert pd.isna(stream["encoding"]) and pd.isna(stream["sample_rate"])       # it never said
    for session in (rx, tnb.load(rx.save(tmp_path / "saved"))):
        audio = session.audio("no-start", encoding="PCMU")
        assert (len(audio), audio.rate) == (3_200, 8_000)
        np.testing.assert_array_equal(audio.samples, codecs.ulaw_decode(b"".join(payloads)))
        assert session.streams["connected_at"].iloc[0] == stream["connected_at"]
