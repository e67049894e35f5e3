"""Coverage-guided fuzzing of ``telnyx_nb.wire`` with atheris (libFuzzer for Python).

Every parse entry point gets the fuzzer's bytes; the only outcomes allowed are a parsed value or
the module's documented ProtocolError subclass (FrameError, WebhookError, RtpError,
TelephoneEventError). Anything else is a crash that atheris reports with the input that caused
it (written to ``crash-*`` in the working directory). The media fast path must agree with the
general parser on every text.

    pip install atheris        # wheels for CPython 3.11 on Linux x86-64; else it builds with clang
    python scripts/fuzz_wire_atheris.py -max_total_time=40 -rss_limit_mb=2048

``.ci/run`` runs it for a bounded time when atheris installs; ``tests/test_fuzz_wire.py`` is the
hypothesis suite over the same entry points (it always runs).
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["telnyx_nb.wire"]):
    from telnyx_nb.wire import media, rtp, stream, telephone_event, webhooks
    from telnyx_nb.wire.errors import ProtocolError

SIGNER = webhooks.Signer()
NOW = 1_700_000_000


def _general(text: str) -> object:
    try:
        return media._parse_general(text)
    except media.FrameError as exc:
        return ("error", exc.reason, exc.detail, exc.event, exc.stream_id)


def _frames(fdp: atheris.FuzzedDataProvider) -> None:
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    try:
        parsed: object = media.parse_frame(text)
    except media.FrameError as exc:
        parsed = ("error", exc.reason, exc.detail, exc.event, exc.stream_id)
    if parsed != _general(text):
        raise AssertionError(f"fast path and general parser disagree on {text[:200]!r}")
    if not isinstance(parsed, tuple):
        assert media.parse_frame(media.dumps(parsed)) == parsed  # type: ignore[arg-type]  (a frame here)


def _app_frames(fdp: atheris.FuzzedDataProvider) -> None:
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    stream.StreamSender("s", "c").receive_text(data)


def _webhook_body(fdp: atheris.FuzzedDataProvider) -> None:
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    with contextlib.suppress(webhooks.MalformedWebhookError):
        webhooks.parse_event(data)


def _webhook_headers(fdp: atheris.FuzzedDataProvider) -> None:
    timestamp = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
    signature = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 120))
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    headers = {webhooks.TIMESTAMP_HEADER: timestamp, webhooks.SIGNATURE_HEADER: signature}
    try:
        webhooks.verify(body, headers, SIGNER.public_key, now=NOW)
    except webhooks.SignatureVerificationError:
        return
    raise AssertionError(f"a signature the signer did not make verified: {headers!r}")


def _datagram(fdp: atheris.FuzzedDataProvider) -> None:
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    with contextlib.suppress(rtp.RtpError):
        rtp.parse_fork_packet(data)


def _telephone_event(fdp: atheris.FuzzedDataProvider) -> None:
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    with contextlib.suppress(telephone_event.TelephoneEventError):
        telephone_event.parse(data)
    telephone_event.comfort_noise_level(data)
    telephone_event.event_clock_rate(data.decode("utf-8", "replace"))


def _connection(fdp: atheris.FuzzedDataProvider) -> None:
    token = "tok" if fdp.ConsumeBool() else None
    conn = stream.StreamConnection(auth_token=token, max_message_size=fdp.ConsumeIntInRange(1, 4096))
    conn.open(fdp.ConsumeUnicodeNoSurrogates(8) if fdp.ConsumeBool() else None)
    while fdp.remaining_bytes():
        if fdp.ConsumeIntInRange(0, 7) == 0:
            conn.receive_binary(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16)))
        else:
            conn.receive_text(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 300)))
    conn.close(stream.EndReason.CLOSED)


TARGETS = [_frames, _app_frames, _webhook_body, _webhook_headers, _datagram, _telephone_event, _connection]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    target = TARGETS[fdp.ConsumeIntInRange(0, len(TARGETS) - 1)]
    try:
        target(fdp)
    except ProtocolError as exc:   # a documented error escaping a target that catches its own: a bug
        raise AssertionError(f"{target.__name__}: uncaught {type(exc).__name__}: {exc}") from exc


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
