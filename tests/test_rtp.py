"""RTP (RFC 3550) and STREP parse/build."""

import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telnyx_nb.wire import rtp

LEG_ID = uuid.UUID("428c31b6-7af4-4bcb-b7f5-5013ef9657c1")

packets = st.builds(
    rtp.RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=400),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none() | st.builds(rtp.RtpExtension, st.integers(0, 0xFFFF),
                                    st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
    padding=st.integers(0, 255),
)
streps = st.builds(
    rtp.StrepHeader,
    call_leg_id=st.uuids(),
    leg=st.sampled_from(["A", "B"]),
    direction=st.sampled_from(["received", "transmitted"]),
    version=st.integers(1, 15),
)


@given(packets)
def test_rtp_build_parse_round_trip(packet):
    assert rtp.parse_rtp(rtp.build_rtp(packet)) == packet


@given(packets, st.none() | streps)
def test_fork_packet_round_trip(packet, strep):
    fork = rtp.ForkPacket(packet, strep)
    data = rtp.build_fork_packet(fork)
    assert rtp.is_strep(data) is (strep is not None)
    assert rtp.parse_fork_packet(data) == fork


def test_plain_pcmu_packet_matches_the_wire_layout():
    payload = bytes(range(160))
    data = rtp.build_rtp(rtp.RtpPacket(0, 65535, 160 * 7, 0xDEADBEEF, payload, marker=True))
    assert data[:12] == struct.pack("!BBHII", 0x80, 0x80, 65535, 1120, 0xDEADBEEF)
    assert rtp.parse_fork_packet(data) == \
        rtp.ForkPacket(rtp.RtpPacket(0, 65535, 1120, 0xDEADBEEF, payload, marker=True))


def test_sequence_and_timestamp_wrap():
    last = rtp.parse_rtp(rtp.build_rtp(rtp.RtpPacket(8, 0xFFFF, 0xFFFFFF60, 1, b"\xd5" * 160)))
    after = rtp.parse_rtp(rtp.build_rtp(rtp.RtpPacket(8, (last.sequence_number + 1) & 0xFFFF,
                                                      (last.timestamp + 160) & 0xFFFFFFFF, 1)))
    assert (after.sequence_number, after.timestamp) == (0, 0)


def test_csrc_extension_and_padding_layout():
    packet = rtp.RtpPacket(96, 1, 2, 3, b"abc", csrcs=(10, 11),
                           extension=rtp.RtpExtension(0xBEDE, b"\x01\x02\x03\x04"), padding=5)
    data = rtp.build_rtp(packet)
    assert data[0] == 0x80 | 0x20 | 0x10 | 2
    assert data[12:20] == struct.pack("!II", 10, 11)
    assert data[20:28] == struct.pack("!HH", 0xBEDE, 1) + b"\x01\x02\x03\x04"
    assert data[28:31] == b"abc" and data[-1] == 5 and len(data) == 36


def test_strep_header_bits_match_the_telnyx_spec():
    header = rtp.StrepHeader(LEG_ID, leg="B", direction="transmitted")
    data = rtp.build_strep(header)
    assert len(data) == 24
    assert data[0] >> 6 == 0b11 and (data[0] >> 2) & 0xF == 1 and data[0] & 0b11 == 0b11
    assert data[1] == 24 and data[2:8] == bytes(6) and data[8:] == LEG_ID.bytes
    parsed, rest = rtp.parse_strep(data + b"rtp")
    assert parsed == header and rest == b"rtp"


def test_strep_header_length_from_second_byte_is_honoured():
    """The spec says receivers may use the second byte to find the header length."""
    longer = bytes([0xC4, 28]) + bytes(6) + LEG_ID.bytes + b"\xff" * 4
    inner = rtp.build_rtp(rtp.RtpPacket(0, 5, 800, 9, b"x"))
    fork = rtp.parse_fork_packet(longer + inner)
    assert fork.strep.header_length == 28 and fork.rtp.sequence_number == 5


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "truncated"),
        (b"\x80\x00\x00", "truncated"),
        (b"\x40" + bytes(11), "bad_version"),
        (b"\x83" + bytes(11) + bytes(4), "truncated"),  # 3 CSRCs announced, 1 present
        (b"\x90" + bytes(11) + b"\x00\x00", "truncated"),  # extension header cut
        (b"\x90" + bytes(11) + b"\x00\x00\x00\x05", "truncated"),  # extension words missing
        (b"\xa0" + bytes(11) + b"\x00", "bad_padding"),
        (b"\xa0" + bytes(11) + b"\x09", "bad_padding"),
        (b"\xc4\x18" + bytes(10), "truncated"),
        (b"\xc4\x10" + bytes(30), "bad_header_length"),
    ],
)
def test_malformed_datagrams_raise_rtp_error_with_reason(data, reason):
    with pytest.raises(rtp.RtpError) as info:
        rtp.parse_fork_packet(data)
    assert info.value.reason == reason


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_rtp_error(data):
    try:
        parsed = rtp.parse_fork_packet(data)
    except rtp.RtpError as exc:
        assert exc.reason in {"truncated", "bad_version", "bad_padding", "bad_header_length"}
    else:
        assert rtp.parse_rtp(rtp.build_rtp(parsed.rtp)) == parsed.rtp


def test_build_rejects_unaligned_extension_and_too_many_csrcs():
    with pytest.raises(rtp.RtpError, match="aligned"):
        rtp.build_rtp(rtp.RtpPacket(0, 0, 0, 0, extension=rtp.RtpExtension(1, b"abc")))
    with pytest.raises(rtp.RtpError, match="CSRC"):
        rtp.build_rtp(rtp.RtpPacket(0, 0, 0, 0, csrcs=tuple(range(16))))
