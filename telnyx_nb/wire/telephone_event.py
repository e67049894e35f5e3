"""RFC 4733 telephone events (DTMF in RTP) and RFC 3389 comfort noise: payloads, no I/O.

A telephone-event payload (RFC 4733 §2.3) is 4 bytes::

    event (8 bits) | E (end) | R | volume (6 bits, -dBm0) | duration (16 bits, timestamp units)

Every packet of one event carries the RTP timestamp of the event's start and the duration so
far; the last one has the E bit and is usually sent three times (§2.5.1.4). Events 0-15 are
the DTMF digits ``0``-``9``, ``*``, ``#``, ``A``-``D`` (§3.2); other codes (flash, modem and
fax tones of RFC 4734) have no digit. Telephone events ride on a dynamic payload type,
conventionally 101.

A comfort-noise payload (RFC 3389 §3) starts with the noise level in -dBov (0..127), optionally
followed by spectral coefficients; it stands for a silent period, up to the next packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from telnyx_nb.wire.errors import ProtocolError, Reason

__all__ = [
    "DIGITS", "TELEPHONE_EVENT", "COMFORT_NOISE", "CN_PAYLOAD_TYPE", "TELEPHONE_EVENT_PAYLOAD_TYPE",
    "TelephoneEvent", "TelephoneEventError", "parse", "build", "event_code", "event_clock_rate",
    "comfort_noise_level", "comfort_noise_rms", "is_non_audio",
]

#: Event codes 0..15 as digits (RFC 4733 §3.2).
DIGITS = "0123456789*#ABCD"
#: The encoding names the receiver's payload-type map uses for these payloads.
TELEPHONE_EVENT = "telephone-event"
COMFORT_NOISE = "CN"
#: RFC 3551's static payload type for comfort noise, and the usual dynamic one for events.
CN_PAYLOAD_TYPE = 13
TELEPHONE_EVENT_PAYLOAD_TYPE = 101
#: The telephone-event clock when the payload-type map does not name one ("telephone-event/8000").
DEFAULT_EVENT_CLOCK_RATE = 8000

_EVENT = struct.Struct("!BBH")


class TelephoneEventError(ProtocolError):
    """A telephone-event payload shorter than its 4 bytes."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 event report: ``duration`` in RTP timestamp units, ``volume`` in -dBm0."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @property
    def digit(self) -> str | None:
        """The DTMF digit, or None for an event that is not one (16 and up)."""
        return DIGITS[self.event] if self.event < len(DIGITS) else None


def parse(payload: bytes | bytearray | memoryview) -> TelephoneEvent:
    """The first event of a telephone-event payload (bytes after the first 4 are ignored)."""
    if len(payload) < _EVENT.size:
        raise TelephoneEventError(Reason.TRUNCATED, f"{len(payload)} bytes is shorter than a 4-byte telephone event")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def build(event: TelephoneEvent) -> bytes:
    """The 4-byte payload of one event report; the inverse of :func:`parse` (R bit zero)."""
    if not (0 <= event.event <= 255 and 0 <= event.volume <= 63 and 0 <= event.duration <= 0xFFFF):
        raise ValueError(f"telephone event out of range: {event!r}")
    return _EVENT.pack(event.event, (0x80 if event.end else 0) | event.volume, event.duration)


def event_code(digit: str) -> int:
    """A DTMF digit's event code (``"#"`` -> 11); ValueError for anything else."""
    if len(digit) != 1 or digit.upper() not in DIGITS:
        raise ValueError(f"a DTMF digit is one of {DIGITS}, got {digit!r}")
    return DIGITS.index(digit.upper())


def event_clock_rate(encoding: str | None) -> int | None:
    """The clock of a payload-type map entry when it is telephone-event (``"telephone-event"``
    or ``"telephone-event/16000"``), else None."""
    if not isinstance(encoding, str):
        return None
    name, _, rate = encoding.partition("/")
    if name.lower() != TELEPHONE_EVENT:
        return None
    # ASCII digits, at most 7 significant: int() refuses "²" (a digit to isdigit) and 4,301 digits
    rate = rate.lstrip("0")
    ok = rate.isascii() and rate.isdigit() and len(rate) <= 7 and int(rate) <= 1_000_000
    return int(rate) if ok else DEFAULT_EVENT_CLOCK_RATE


def comfort_noise_level(payload: bytes | bytearray | memoryview) -> int:
    """The noise level in -dBov (0 = full scale .. 127); an empty payload is taken as 127 (silence)."""
    return payload[0] & 0x7F if len(payload) else 127


def comfort_noise_rms(level: int) -> float:
    """The RMS of 16-bit samples at ``level`` -dBov, 0 dBov being a full-scale square wave (32767)."""
    return 32767.0 * 10.0 ** (-min(max(level, 0), 127) / 20.0)


def is_non_audio(encoding: object) -> bool:
    """True for the payload-type map's names of telephone events and comfort noise."""
    return isinstance(encoding, str) and (event_clock_rate(encoding) is not None
                                          or encoding.upper() == COMFORT_NOISE)
