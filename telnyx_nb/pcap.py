"""Classic libpcap capture files of UDP datagrams, for Wireshark, tshark and every pcap tool.

The file format is libpcap's (draft-ietf-opsawg-pcap, "PCAP Capture File Format", §3-§5):
a 24-byte file header — magic number ``0xA1B23C4D`` (nanosecond-resolution timestamps),
version 2.4, SnapLen, LinkType — then per packet a 16-byte record header (seconds and
nanoseconds since the epoch, captured and original length) and the packet bytes. Written in
little-endian byte order (readers detect it from the magic).

LinkType 101, ``LINKTYPE_RAW`` (tcpdump.org link-layer header types): each packet begins with
its IP header. The IP and UDP headers are synthesised from the datagram's addresses: IPv4
(RFC 791: no options, TTL 64, don't-fragment, header checksum) with UDP checksum 0 ("no
checksum", RFC 768), or IPv6 (RFC 8200: hop limit 64) with the UDP checksum computed, as IPv6
requires (RFC 8200 §8.1). When either address is IPv6, an IPv4 one is written IPv4-mapped
(``::ffff:a.b.c.d``). An address that is not a numeric IP (unknown, or a host name) is
written as ``0.0.0.0``, and an unknown port as 0.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

__all__ = ["MAGIC_NS", "VERSION", "LINKTYPE_RAW", "SNAPLEN", "Endpoint", "udp_packet", "write"]

#: The file header's magic number for nanosecond-resolution timestamps.
MAGIC_NS = 0xA1B23C4D
VERSION = (2, 4)
#: LINKTYPE_RAW: the packet starts with an IPv4 or IPv6 header.
LINKTYPE_RAW = 101
#: The largest packet the file announces, in bytes (an IPv4 datagram's limit).
SNAPLEN = 65_535

_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")
_UDP_PROTOCOL = 17
_TTL = 64
_DONT_FRAGMENT = 0x4000

#: A datagram's end: (host, port); host None when unknown.
Endpoint = tuple[str | None, int | None]


def _address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address((host or "").split("%")[0])     # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return ipaddress.IPv4Address(0)


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(src: Endpoint, dst: Endpoint, payload: bytes) -> bytes:
    """``payload`` as a UDP datagram from ``src`` to ``dst`` in an IPv4 or IPv6 packet (see the
    module docstring). Raises ValueError for a payload too long for one IP packet."""
    source, destination = _address(src[0]), _address(dst[0])
    sport, dport = src[1] or 0, dst[1] or 0
    length = _UDP.size + len(payload)
    if source.version == 4 and destination.version == 4:
        if _IPV4.size + length > SNAPLEN:
            raise ValueError(f"a {len(payload)}-byte payload does not fit an IPv4 packet")
        header = _IPV4.pack(0x45, 0, _IPV4.size + length, 0, _DONT_FRAGMENT, _TTL, _UDP_PROTOCOL, 0,
                            source.packed, destination.packed)
        header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
        return header + _UDP.pack(sport, dport, length, 0) + payload
    if length > 0xFFFF:
        raise ValueError(f"a {len(payload)}-byte payload does not fit a UDP datagram")
    source6, destination6 = (a if a.version == 6 else ipaddress.IPv6Address(f"::ffff:{a}")
                             for a in (source, destination))
    pseudo = source6.packed + destination6.packed + struct.pack("!I3xB", length, _UDP_PROTOCOL)
    checksum = _checksum(pseudo + _UDP.pack(sport, dport, length, 0) + payload) or 0xFFFF
    return (_IPV6.pack(6 << 28, length, _UDP_PROTOCOL, _TTL, source6.packed, destination6.packed)
            + _UDP.pack(sport, dport, length, checksum) + payload)


def write(path: str | PathLike[str], packets: Iterable[tuple[int, bytes]]) -> Path:
    """Write ``(time, ip_packet)`` pairs as a pcap file (``LINKTYPE_RAW``); returns its path.

    ``time``: UTC nanoseconds since the epoch (int). Packets longer than ``SNAPLEN`` are
    truncated to it (their original length is kept in the record header).
    """
    path = Path(path)
    with open(path, "wb") as out:
        out.write(_FILE_HEADER.pack(MAGIC_NS, *VERSION, 0, 0, SNAPLEN, LINKTYPE_RAW))
        for ns, packet in packets:
            seconds, nanoseconds = divmod(ns, 1_000_000_000)
            captured = packet[:SNAPLEN]
            out.write(_RECORD_HEADER.pack(seconds, nanoseconds, len(captured), len(packet)))
            out.write(captured)
    return path
