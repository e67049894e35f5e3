"""Media forking: the call's RTP, copied over UDP to the application (``fork_start``).

``rx`` gets the media Telnyx receives from the call (the ``inbound`` track), ``tx`` the media
it transmits (``outbound``). Plain RTP v2, payload type of the call's codec (0 PCMU, 8 PCMA,
no transcoding), one packet per 20 ms; per direction a random SSRC, a random initial
sequence number (+1 per packet, wrapping at 16 bits) and a random initial timestamp (+160
per packet); the marker bit is set on the first packet. With the legacy ``target`` both
directions go to one address, each packet behind a 24-byte STREP v1 header (leg A;
direction 0 = rx, 1 = tx; the call's ``call_leg_id``). Packets are built by ``wire.rtp``.
Each packet's ground-truth row is stamped when it is handed to ``sendto``.

DTMF (the scenario's digits and ``Sandbox.send_dtmf``: the far end presses keys) goes on
``rx`` as RFC 4733 telephone events, payload type 101, in the same SSRC and sequence-number
space: one event per digit lasting EVENT_FRAMES ticks (100 ms), one packet per tick after that
tick's audio packet, all with the RTP timestamp of the tick the event began, the duration so
far (160, 320, ... 800 at 8 kHz), the marker bit on the first; the last carries the end bit
and is sent END_PACKETS times in all, one per tick (RFC 4733 §2.5.1.4), each with a sequence
number of its own. Digits that come while an event is being sent wait their turn. The audio
goes on meanwhile (the scenario has no DTMF tones), so a receiver's audio and the ground
truth's fork frames are unchanged; each event packet has a ground-truth row of its own, path
``fork_event``, and goes through the same impairment channel as the audio.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Literal

from telnyx_nb.wire import codecs, rtp, telephone_event

if TYPE_CHECKING:
    from telnyx_nb.sandbox.calls import Call

__all__ = ["Fork", "DIRECTIONS", "EVENT_PAYLOAD_TYPE", "EVENT_FRAMES", "END_PACKETS", "EVENT_VOLUME"]

#: RFC 4733 telephone events: their payload type, the ticks (20 ms) one digit lasts, how many
#: times its end packet is sent, and the volume reported (-dBm0).
EVENT_PAYLOAD_TYPE = telephone_event.TELEPHONE_EVENT_PAYLOAD_TYPE
EVENT_FRAMES = 5
END_PACKETS = 3
EVENT_VOLUME = 10

#: fork direction -> (scenario track, STREP direction)
DIRECTIONS: dict[str, tuple[str, Literal["received", "transmitted"]]] = {
    "rx": ("inbound", "received"), "tx": ("outbound", "transmitted"),
}


class _Direction:
    __slots__ = ("name", "track", "address", "ssrc", "seq", "timestamp", "first", "strep", "digits", "event")

    def __init__(self, name: str, address: tuple[str, int], strep: rtp.StrepHeader | None) -> None:
        self.name = name
        self.track = DIRECTIONS[name][0]
        self.address = address
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self.first = True
        self.strep = strep
        #: Event codes waiting to be sent, and the one being sent: [code, RTP timestamp, packets sent].
        self.digits: deque[int] = deque()
        self.event: list[int] | None = None


class Fork:
    """One fork of one call; the media clock calls :meth:`emit` every 20 ms."""

    def __init__(self, call: Call, transport: asyncio.DatagramTransport, addresses: dict[str, tuple[str, int]],
                 *, strep: bool, stream_type: str | None) -> None:
        self.call = call
        self.transport = transport
        self.stream_type = stream_type
        self.codec = codecs.get_codec(call.codec)
        if self.codec.rtp_payload_type is None:  # calls are PCMU or PCMA: never reached
            raise ValueError(f"{call.codec} has no static RTP payload type to fork with")
        self.payload_type: int = self.codec.rtp_payload_type
        leg = uuid.UUID(call.leg_id)
        self.directions = [
            _Direction(name, address, rtp.StrepHeader(leg, "A", DIRECTIONS[name][1]) if strep else None)
            for name, address in addresses.items()
        ]
        self.live = True

    def send_dtmf(self, digit: str) -> None:
        """The far end pressed ``digit``: telephone events on ``rx`` from the next tick on."""
        for d in self.directions:
            if d.name == "rx":
                d.digits.append(telephone_event.event_code(digit))

    def stop(self) -> None:
        """No new packets; delayed ones are in flight and still arrive."""
        self.live = False

    def emit(self, i: int, deadline: float) -> None:
        if not self.live:
            return
        call = self.call
        wall_ns = call.clock.wall_ns(deadline)
        step = self.codec.frame_bytes() // self.codec.bytes_per_sample
        source = call.frame_source(self.codec.name)
        script, size = source
        for d in self.directions:
            payload = script[d.track][i * size:(i + 1) * size]
            packet = rtp.RtpPacket(self.payload_type, d.seq, d.timestamp, d.ssrc, payload, marker=d.first)
            data = rtp.build_fork_packet(rtp.ForkPacket(packet, d.strep))
            channel = call.channel("fork", d.name)
            fate, delay = channel.next() if channel is not None else ("delivered", 0.0)
            row = call.ground_truth.add_fork(d.name, d.seq, d.timestamp, d.ssrc, wall_ns, fate, delay, i, source,
                                             len(payload))
            d.seq = (d.seq + 1) & 0xFFFF
            timestamp = d.timestamp
            d.timestamp = (d.timestamp + step) & 0xFFFFFFFF
            d.first = False
            self._go(data, d, fate, delay, deadline, row)
            if d.event is not None or d.digits:
                self._event_packet(d, i, deadline, wall_ns, timestamp, step)

    def _event_packet(self, d: _Direction, i: int, deadline: float, wall_ns: int, timestamp: int, step: int) -> None:
        """The next telephone-event packet of ``d`` (starting the next queued digit if none runs)."""
        if d.event is None:
            d.event = [d.digits.popleft(), timestamp, 0]
        code, start, sent = d.event
        duration = min(sent + 1, EVENT_FRAMES) * step
        end = sent + 1 >= EVENT_FRAMES
        payload = telephone_event.build(telephone_event.TelephoneEvent(code, end, EVENT_VOLUME, duration))
        packet = rtp.RtpPacket(EVENT_PAYLOAD_TYPE, d.seq, start, d.ssrc, payload, marker=sent == 0)
        data = rtp.build_fork_packet(rtp.ForkPacket(packet, d.strep))
        channel = self.call.channel("fork", d.name)
        fate, delay = channel.next() if channel is not None else ("delivered", 0.0)
        row = self.call.ground_truth.add_fork_event(d.name, d.seq, start, d.ssrc, wall_ns, fate, delay, i, payload)
        d.seq = (d.seq + 1) & 0xFFFF
        d.event[2] = sent + 1
        if sent + 1 >= EVENT_FRAMES + END_PACKETS - 1:
            d.event = None
        self._go(data, d, fate, delay, deadline, row)

    def _go(self, data: bytes, d: _Direction, fate: str, delay: float, deadline: float, row: int) -> None:
        """Send a packet as its impairment decided: dropped, once or twice, now or delayed."""
        if fate == "dropped":
            return
        copies = 2 if fate == "duplicated" else 1
        if delay > 0:
            self.call.clock.call_at(deadline + delay, self._send, data, d.address, copies, deadline + delay, row)
        else:
            self._send(data, d.address, copies, deadline, row)

    def skip(self, i: int, deadline: float) -> None:
        """The media clock skipped frame ``i``'s tick: record ``skipped`` rows. No packet is
        built, so the RTP sequence number and timestamp do not advance (null in the rows)."""
        if not self.live:
            return
        call = self.call
        wall_ns = call.clock.wall_ns(deadline)
        source = call.frame_source(self.codec.name)
        for d in self.directions:
            call.ground_truth.add_fork(d.name, -1, -1, d.ssrc, wall_ns, "skipped", 0.0, i, source, source[1])

    def _send(self, data: bytes, address: tuple[str, int], copies: int, due: float, row: int) -> None:
        truth = self.call.ground_truth
        if self.transport.is_closing():
            truth.unsent(row)
            return
        now = time.monotonic()
        for _ in range(copies):
            self.transport.sendto(data, address)
        truth.sent(row, self.call.clock.wall_ns(now))
        self.call.clock.record_send(due, now)
