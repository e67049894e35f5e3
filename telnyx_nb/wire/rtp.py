"""RTP (RFC 3550) and Telnyx STREP headers: parse and build, no I/O.

``fork_start`` with ``rx``/``tx`` sends plain RTP over UDP; with the legacy
``target`` every packet starts with a 24-byte STREP header ("Simple Telnyx
RTP Encapsulation Protocol") whose first two bits are ``11`` (RTP's are
``10``), so one look at the first byte tells them apart.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Literal

import numpy as np

from telnyx_nb.wire.errors import ProtocolError, Reason

__all__ = [
    "extend_sequence",
    "SEQ_MOD",
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "RtpError",
    "RtpExtension",
    "RtpPacket",
    "StrepHeader",
    "ForkPacket",
    "parse_rtp",
    "build_rtp",
    "parse_strep",
    "build_strep",
    "parse_fork_packet",
    "build_fork_packet",
    "is_strep",
    "RTP_HEADER_SIZE",
    "STREP_HEADER_SIZE",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
STREP_HEADER_SIZE = 24
STREP_VERSION = 1

_FIXED = struct.Struct("!BBHII")
_EXTENSION = struct.Struct("!HH")


class RtpError(ProtocolError):
    """A datagram that is not a well-formed RTP or STREP packet; ``reason`` says why."""


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """An RFC 3550 header extension: a 16-bit profile word and 32-bit-aligned data."""

    profile: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. ``padding`` is the number of padding bytes (0 = no P bit)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0


@dataclass(frozen=True, slots=True)
class StrepHeader:
    """The 24-byte STREP v1 header Telnyx prepends in ``target`` fork mode.

    ``leg`` is "A" (first leg) or "B"; ``direction`` is "received" for media
    Telnyx received from the call, "transmitted" for media Telnyx sent to it.
    """

    call_leg_id: uuid.UUID
    leg: Literal["A", "B"] = "A"
    direction: Literal["received", "transmitted"] = "received"
    version: int = STREP_VERSION
    header_length: int = STREP_HEADER_SIZE


@dataclass(frozen=True, slots=True)
class ForkPacket:
    """A forked datagram: the RTP packet and, in ``target`` mode, its STREP header."""

    rtp: RtpPacket
    strep: StrepHeader | None = None


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse an RTP v2 packet, honouring CSRC list, header extension and padding."""
    data = bytes(data)
    if len(data) < RTP_HEADER_SIZE:
        raise RtpError(Reason.TRUNCATED, f"{len(data)} bytes is shorter than the 12-byte RTP header")
    b0, b1, seq, timestamp, ssrc = _FIXED.unpack_from(data)
    version = b0 >> 6
    if version != RTP_VERSION:
        raise RtpError(Reason.BAD_VERSION, f"RTP version {version}, expected 2")
    offset = RTP_HEADER_SIZE
    csrc_count = b0 & 0x0F
    if len(data) < offset + 4 * csrc_count:
        raise RtpError(Reason.TRUNCATED, f"header announces {csrc_count} CSRCs but the packet ends first")
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, offset)
    offset += 4 * csrc_count
    extension = None
    if b0 & 0x10:
        if len(data) < offset + 4:
            raise RtpError(Reason.TRUNCATED, "extension bit set but no extension header")
        profile, words = _EXTENSION.unpack_from(data, offset)
        end = offset + 4 + 4 * words
        if len(data) < end:
            raise RtpError(Reason.TRUNCATED, f"extension of {words} words runs past the packet")
        extension = RtpExtension(profile, data[offset + 4 : end])
        offset = end
    end = len(data)
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > end:
            raise RtpError(Reason.BAD_PADDING, f"padding count {padding} does not fit the packet")
        end -= padding
    return RtpPacket(
        payload_type=b1 & 0x7F,
        sequence_number=seq,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=data[offset:end],
        marker=bool(b1 & 0x80),
        csrcs=csrcs,
        extension=extension,
        padding=padding,
    )


def build_rtp(packet: RtpPacket) -> bytes:
    """Serialise an RtpPacket; the inverse of parse_rtp."""
    if len(packet.csrcs) > 15:
        raise RtpError(Reason.TOO_MANY_CSRCS, f"{len(packet.csrcs)} CSRCs, at most 15")
    if not 0 <= packet.padding <= 255:
        raise RtpError(Reason.BAD_PADDING, f"padding {packet.padding} is not 0..255")
    b0 = (RTP_VERSION << 6) | len(packet.csrcs)
    if packet.padding:
        b0 |= 0x20
    if packet.extension is not None:
        b0 |= 0x10
    b1 = (0x80 if packet.marker else 0) | (packet.payload_type & 0x7F)
    parts = [
        _FIXED.pack(b0, b1, packet.sequence_number & 0xFFFF, packet.timestamp & 0xFFFFFFFF, packet.ssrc & 0xFFFFFFFF),
        struct.pack(f"!{len(packet.csrcs)}I", *packet.csrcs),
    ]
    if packet.extension is not None:
        ext = packet.extension.data
        if len(ext) % 4:
            raise RtpError(Reason.BAD_EXTENSION, f"extension data must be 32-bit aligned, got {len(ext)} bytes")
        parts.append(_EXTENSION.pack(packet.extension.profile, len(ext) // 4) + ext)
    parts.append(packet.payload)
    if packet.padding:
        parts.append(bytes(packet.padding - 1) + bytes([packet.padding]))
    return b"".join(parts)


def is_strep(data: bytes | bytearray | memoryview) -> bool:
    """True when the datagram starts with STREP's magic bits ``11``."""
    return len(data) > 0 and data[0] >> 6 == 0b11


def parse_strep(data: bytes | bytearray | memoryview) -> tuple[StrepHeader, bytes]:
    """Split a STREP datagram into its header and the RTP packet that follows."""
    data = bytes(data)
    if not is_strep(data):
        raise RtpError(Reason.NOT_STREP, "first two bits are not 11")
    if len(data) < STREP_HEADER_SIZE:
        raise RtpError(Reason.TRUNCATED, f"{len(data)} bytes is shorter than the 24-byte STREP header")
    header_length = data[1]
    if header_length < STREP_HEADER_SIZE or header_length > len(data):
        raise RtpError(Reason.BAD_HEADER_LENGTH, f"STREP header length {header_length}")
    header = StrepHeader(
        call_leg_id=uuid.UUID(bytes=data[8:24]),
        leg="B" if data[0] & 0x02 else "A",
        direction="transmitted" if data[0] & 0x01 else "received",
        version=(data[0] >> 2) & 0x0F,
        header_length=header_length,
    )
    return header, data[header_length:]


def build_strep(header: StrepHeader) -> bytes:
    """Serialise a STREP v1 header (24 bytes, reserved bytes zero)."""
    if header.header_length != STREP_HEADER_SIZE:
        raise RtpError(Reason.BAD_HEADER_LENGTH, "only the 24-byte STREP v1 header can be built")
    b0 = 0xC0 | ((header.version & 0x0F) << 2)
    b0 |= 0x02 if header.leg == "B" else 0
    b0 |= 0x01 if header.direction == "transmitted" else 0
    return bytes([b0, header.header_length]) + bytes(6) + header.call_leg_id.bytes


def parse_fork_packet(data: bytes | bytearray | memoryview) -> ForkPacket:
    """Parse a forked datagram: plain RTP, or STREP followed by RTP."""
    if is_strep(data):
        strep, rest = parse_strep(data)
        return ForkPacket(parse_rtp(rest), strep)
    return ForkPacket(parse_rtp(data))


def build_fork_packet(packet: ForkPacket) -> bytes:
    """Serialise a forked datagram; the inverse of parse_fork_packet."""
    rtp = build_rtp(packet.rtp)
    return rtp if packet.strep is None else build_strep(packet.strep) + rtp


#: RTP sequence numbers are 16 bits (RFC 3550 section 5.1).
SEQ_MOD = 1 << 16
#: RFC 3550 A.1: a jump ahead by more than this many packets (or back by more than
#: MAX_MISORDER) is a restart when the next packet confirms it, else a stray to discard.
MAX_DROPOUT = 3000
MAX_MISORDER = 100


def extend_sequence(seq: np.ndarray, modulus: int | None = SEQ_MOD) -> np.ndarray:
    """RFC 3550 A.1 extended sequence numbers for ``seq`` in arrival order.

    ``modulus`` is 65536 for RTP sequence numbers, None for counters that never wrap
    (media-stream chunks). A step of less than MAX_DROPOUT ahead or MAX_MISORDER back
    continues the run, across wraps. A larger jump confirmed by the next packet (``seq + 1``)
    is a restart: the new run continues right after the highest number seen, so ``expected``
    does not count the jump as loss and audio() does not fill it with silence, and the
    confirmed packet is kept (A.1 itself would drop it). An unconfirmed jump is a stray and
    gets -1 ("discarded"), so one wild number cannot make a track span 10**12 frames.
    Numbers start at the first packet's; if a late packet would fall below 0 (sent before a
    wrap that preceded the first arrival), all are shifted up so that the lowest is 0.
    """
    seq = np.asarray(seq, dtype=np.int64)
    if not len(seq):
        return np.zeros(0, dtype=np.int64)
    half = (modulus or 0) // 2
    # Vectorised first: unwrap step by step, and keep the result when every packet lies within
    # (-MAX_MISORDER, MAX_DROPOUT) of the highest number before it. Then the packet-by-packet
    # rules would compute the same numbers (no restart, no stray): ext = highest + wrapped difference.
    if modulus:
        steps = (np.diff(seq) + half) % modulus - half
        fast = np.concatenate((seq[:1], seq[0] + np.cumsum(steps)))
    else:
        fast = seq.copy()
    ahead = fast[1:] - np.maximum.accumulate(fast)[:-1]
    if ((ahead > -MAX_MISORDER) & (ahead < MAX_DROPOUT)).all():
        lowest = int(fast.min())
        return fast - lowest if lowest < 0 else fast
    return _extend_sequence_loop(seq, modulus)


def _extend_sequence_loop(seq: np.ndarray, modulus: int | None) -> np.ndarray:
    """:func:`extend_sequence` packet by packet (``seq``: int64, not empty): every case,
    restarts and strays included; the vectorised path must agree with it where it applies."""
    out = np.zeros(len(seq), dtype=np.int64)
    kept = np.zeros(len(seq), dtype=bool)
    half = (modulus or 0) // 2
    last = int(seq[0])          # highest raw number of the current run
    ext_last = top = last       # its extended number; the highest extended number of all runs
    bad_next, bad_index = None, -1
    out[0], kept[0] = last, True
    for i in range(1, len(seq)):
        s = int(seq[i])
        delta = s - last
        if modulus:
            delta = (delta + half) % modulus - half
        if -MAX_MISORDER < delta < MAX_DROPOUT:
            ext = ext_last + delta
            if delta > 0:
                last, ext_last = s, ext
        elif s == bad_next:     # confirmed restart: continue after everything seen so far
            out[bad_index], kept[bad_index] = top + 1, True
            ext = top + 2
            last, ext_last = s, ext
        else:
            bad_next, bad_index = (s + 1) % modulus if modulus else s + 1, i
            continue
        out[i], kept[i] = ext, True
        top = max(top, ext)
    lowest = int(out[kept].min())
    if lowest < 0:
        out[kept] -= lowest
    out[~kept] = -1
    return out
