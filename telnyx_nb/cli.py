"""The ``telnyx-nb`` command."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from telnyx_nb.wire import codecs, media, rtp, webhooks


def _wire_demo() -> int:
    """Round-trip one second of a 440 Hz tone through every wire format and report."""
    rate = 8000
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.int16)
    pcmu = codecs.ulaw_encode(tone)
    frames = [media.Media("demo-stream", k + 2, "inbound", k + 1, 20 * k, pcmu[160 * k : 160 * (k + 1)]) for k in range(50)]
    parsed = [media.parse_frame(media.dumps(frame)) for frame in frames]
    decoded = codecs.ulaw_decode(b"".join(frame.payload for frame in parsed))
    snr = 10 * np.log10(np.sum(tone.astype(float) ** 2) / np.sum((tone - decoded.astype(float)) ** 2))
    print(f"media:    {len(parsed)} frames of {len(parsed[0].payload)} bytes, PCMU SNR {snr:.1f} dB")

    packet = rtp.RtpPacket(0, 65535, 0, 0x1234, pcmu[:160])
    print(f"rtp:      seq {rtp.parse_rtp(rtp.build_rtp(packet)).sequence_number}, {len(rtp.build_rtp(packet))} bytes")

    signer = webhooks.Signer()
    body = webhooks.encode_body(webhooks.build_envelope("streaming.started", {"call_control_id": "v3:demo"}))
    headers = signer.sign(body)
    webhooks.verify(body, headers, signer.public_key)
    try:
        webhooks.verify(body.replace(b"demo", b"evil"), headers, signer.public_key)
    except webhooks.SignatureVerificationError as exc:
        print(f"webhooks: signature verified; tampered body rejected ({exc.reason})")
    print("The wire layer works. The sandbox call demo arrives with the sandbox and receiver.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telnyx-nb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the headless demo")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _wire_demo()
    return 2


if __name__ == "__main__":
    sys.exit(main())
