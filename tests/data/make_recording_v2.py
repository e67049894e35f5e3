"""Writes tests/data/recording-v2: a small recording in the format of telnyx_nb's recording
VERSION 2 (rows holding registry indexes), made with the code of that version. Kept for
reference; re-running it with a newer telnyx_nb writes the newer format, not version 2."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

from telnyx_nb.store import Store
from telnyx_nb.store.recording import Recorder
from telnyx_nb.wire import media, rtp, webhooks

T0 = 1_767_225_600_000_000_000
CCID = "v3:fixture-call"
LEG = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


def main(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    store = Store()
    recorder = Recorder(store, path, l16_byteorder="big", clocks=lambda: {"frames": "time_ns", "rtp": "kernel"})
    event = webhooks.parse_event(webhooks.encode_body(webhooks.build_envelope(
        "call.answered", {"call_control_id": CCID, "call_leg_id": str(LEG), "call_session_id": "sess"},
        event_id="e1", occurred_at="2026-01-01T00:00:00.000000Z")))
    store.add_event(event, True, T0)
    late = store.stream("s-early", T0)            # media before start: no call yet in its first segment
    store.add_frame(late, "inbound", 1, 1, 0, bytes([1]) * 160, T0 + 1)
    info = store.start_stream(media.Start("s1", 1, CCID, media.MediaFormat("PCMU", 8000)), T0 + 2, T0, False)
    store.claim_fork(CCID)
    for chunk in range(1, 4):
        store.add_frame(info, "inbound", 2 * chunk, chunk, 20 * chunk, bytes([chunk]) * 160, T0 + 10 * chunk)
        store.add_frame(info, "outbound", 2 * chunk + 1, chunk, 20 * chunk, bytes([50 + chunk]) * 160,
                        T0 + 10 * chunk + 1)
        packet = rtp.RtpPacket(0, chunk, 160 * chunk, 0x1234, bytes([100 + chunk]) * 160)
        store.add_packet("rx", rtp.parse_fork_packet(rtp.build_rtp(packet)), T0 + 10 * chunk + 2)
    store.add_mark(info, 9, "m1", T0 + 50)
    store.add_dtmf(info, None, 10, "5", T0 + 60)
    recorder.flush()
    late_start = media.Start("s-early", 1, "v3:other-call", media.MediaFormat("PCMU", 8000))
    store.start_stream(late_start, T0 + 70, T0, False)
    for chunk in range(4, 6):
        store.add_frame(info, "inbound", 2 * chunk, chunk, 20 * chunk, bytes([chunk]) * 160, T0 + 10 * chunk)
        strep = rtp.StrepHeader(LEG, "A", "transmitted")
        packet = rtp.RtpPacket(0, chunk, 160 * chunk, 0x9999, bytes([200 + chunk]) * 160)
        store.add_packet("rx", rtp.parse_fork_packet(rtp.build_fork_packet(rtp.ForkPacket(packet, strep))),
                         T0 + 10 * chunk + 3)
    recorder.close(1.0)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("recording-v2"))
