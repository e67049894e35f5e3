"""Audio back into the call: the bidirectional codec and rate, 20 ms chunks, resampling, ``rx.commands``.

Through real sockets: the real ``telnyx`` SDK drives the sandbox, whose media stream connects to
a real Receiver (in the suite's capture mode, ``TELNYX_NB_TEST_CAPTURE``); what the sandbox
decoded from the application's frames is read back with ``sb.received_audio``.
"""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import numpy as np
import pandas as pd
import pytest
import telnyx

import telnyx_nb as tnb
from telnyx_nb.sandbox import Scenario
from telnyx_nb.store.commands import SECRET_MARKER
from telnyx_nb.wire import codecs, media, webhooks

from waiting import await_until, timeout, wait_until

FROM = "+15550199"


def tone(hz: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * 32767 * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)).astype(np.int16)


def snr_db(sent: np.ndarray, got: np.ndarray) -> float:
    sent, got = sent.astype(np.float64), got[: len(sent)].astype(np.float64)
    return float(10 * np.log10(np.sum(sent**2) / np.sum((got - sent) ** 2)))


def rms_db(samples: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(samples.astype(np.float64) ** 2)))


@pytest.fixture
def rx(sb):
    with tnb.Receiver(public_key=sb.public_key, stream_auth_token="tok-SECRET-4711") as receiver:
        yield receiver


def call_with_stream(sb, client, rx, to: str, codec: str, **stream_options) -> tuple[str, str]:
    """Dial ``to`` (routed to 20 s of silence in ``codec``), wait for the answer, start a stream."""
    sb.route(to, Scenario.silence(20.0), codec=codec)
    ccid = tnb.dial(client, rx, connection_id=sb.connection_id, to=to, from_=FROM).data.call_control_id
    rx.wait_for("call.answered", ccid)
    tnb.start_streaming(client, ccid, rx, **stream_options)
    streams = wait_until(lambda: _started(rx, ccid), what="the stream's start frame")
    return ccid, streams


def _started(rx, ccid: str) -> str | None:
    streams = rx.streams
    row = streams[(streams.call_control_id == ccid) & streams.started_at.notna()]
    return row.stream_id.iloc[0] if len(row) else None


def received(sb, ccid: str, n: int) -> tuple[np.ndarray, int]:
    def enough():
        try:
            samples, rate = sb.received_audio(ccid)
        except LookupError:
            return None
        return (samples, rate) if len(samples) >= n else None
    return wait_until(enough, what=f"{n} samples of application audio at the sandbox")


def test_pcma_call_gets_audio_back_in_the_bidirectional_codec(sb, client, rx):
    """A PCMA call streamed with ``stream_bidirectional_codec="PCMU"``: the tone goes out as
    PCMU (what Telnyx plays), not in the inbound A-law, and the sandbox decodes a clean tone.
    Encoded with the inbound codec (the old behaviour) the sandbox's PCMU decoder heard -1 dB:
    noise as loud as the tone; one G.711 quantisation gives about 38 dB."""
    ccid, stream_id = call_with_stream(sb, client, rx, "+15550171", "PCMA",
                                       stream_bidirectional_mode="rtp", stream_bidirectional_codec="PCMU")
    row = rx.streams.set_index("stream_id").loc[stream_id]
    assert (row.encoding, row.sample_rate) == ("PCMA", 8000)                     # inbound: start.media_format
    assert (row.bidirectional_codec, row.bidirectional_rate) == ("PCMU", 8000)    # outbound: what was asked for
    sent = tone(440, 1.0, 8000)
    rx.send_audio(stream_id, sent, 8000).result(timeout(10))
    got, rate = received(sb, ccid, len(sent))
    assert rate == 8000
    assert snr_db(sent, got) >= 35


def test_a_5khz_tone_at_48khz_is_filtered_out_not_aliased_to_3khz(sb, client, rx):
    """48 kHz audio into an 8 kHz PCMU call: 5 kHz is above the call's 4 kHz Nyquist frequency,
    so the caller must hear (almost) nothing. Measured here: soxr -72 dB (its filter, then
    µ-law's floor); the linear interpolation it replaced took every 6th sample and played a
    3 kHz alias at 0 dB, as loud as the tone sent (``codecs.resample`` unit test below)."""
    ccid, stream_id = call_with_stream(sb, client, rx, "+15550172", "PCMU", stream_bidirectional_mode="rtp")
    sent = tone(5000, 1.0, 48000)
    rx.send_audio(stream_id, sent, 48000).result(timeout(10))
    got, rate = received(sb, ccid, 8000)
    assert rate == 8000
    middle = got[800:7200]                                                    # away from the ends' transients
    assert rms_db(sent) - rms_db(middle) >= 40


def test_resample_attenuates_above_nyquist_where_interpolation_aliased():
    sent = tone(5000, 1.0, 48000)
    filtered = codecs.resample(sent, 48000, 8000)
    assert len(filtered) == 8000
    assert rms_db(sent) - rms_db(filtered[800:7200]) >= 40
    interpolated = sent[::6]                    # what linear interpolation at a 6:1 ratio computed
    assert rms_db(sent) - rms_db(interpolated) < 1
    in_band = tone(1000, 1.0, 48000)            # and a tone in the band passes (0.1 dB ripple at most)
    assert abs(rms_db(in_band) - rms_db(codecs.resample(in_band, 48000, 8000)[800:7200])) < 0.1


def test_streaming_resampler_matches_one_shot_and_filters():
    """``codecs.Resampler`` (the sandbox's playback): 20 ms chunks resampled as one signal."""
    sent = tone(1000, 1.0, 16000) + tone(5000, 1.0, 16000, 0.3)
    resampler = codecs.Resampler(16000, 8000)
    parts = [resampler.push(sent[i:i + 320]) for i in range(0, len(sent), 320)]
    out = np.concatenate([*parts, resampler.flush()])
    assert abs(len(out) - 8000) <= 1
    assert snr_db(tone(1000, 1.0, 8000)[800:7200], out[800:7200]) >= 40   # the 1 kHz tone, 5 kHz gone


def band_db(samples: np.ndarray, rate: int, hz: float) -> float:
    """Power (dB) within 50 Hz of ``hz`` (Hann window)."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(10 * np.log10(spectrum[np.abs(freqs - hz) <= 50].sum()))


def test_sandbox_playback_resamples_l16_16k_into_an_8k_call_without_aliasing(sb, client, rx):
    """L16 at 16 kHz played into a PCMU call (8 kHz): the sandbox's playback takes it to 8 kHz.
    1 kHz passes; 5 kHz must not come back as a 3 kHz alias (linear interpolation, taking every
    other sample, played it at the level of the 1 kHz tone: 0 dB apart)."""
    ccid, stream_id = call_with_stream(sb, client, rx, "+15550177", "PCMU", stream_bidirectional_mode="rtp",
                                       stream_bidirectional_codec="L16", stream_bidirectional_sampling_rate=16000)
    assert rx.streams.set_index("stream_id").loc[stream_id, "bidirectional_rate"] == 16000
    sent = tone(1000, 1.0, 16000, 0.3) + tone(5000, 1.0, 16000, 0.3)
    rx.send_audio(stream_id, sent, 16000).result(timeout(10))
    rx.mark(stream_id, "played").result(timeout(10))                 # echoed once the audio has played
    wait_until(lambda: (rx.marks.name == "played").any(), what="the mark echo after the playback")
    played = rx.audio(ccid, track="outbound")
    assert played.rate == 8000
    assert band_db(played.samples, 8000, 1000) - band_db(played.samples, 8000, 3000) >= 40


def test_streams_asked_for_at_dial_and_answer_carry_their_bidirectional_codec(sb, client, rx):
    sb.route("+15550173", Scenario.silence(20.0), codec="PCMU")
    ccid = tnb.dial(client, rx, stream=True, connection_id=sb.connection_id, to="+15550173", from_=FROM,
                    stream_bidirectional_mode="rtp", stream_bidirectional_codec="PCMA").data.call_control_id
    stream_id = wait_until(lambda: _started(rx, ccid), what="the dial-time stream")
    incoming = sb.incoming_call("+15550174", FROM, webhook_url=rx.webhook_url, scenario=Scenario.silence(20.0))
    rx.wait_for("call.initiated", incoming)
    tnb.answer(client, incoming, rx, stream=True)                          # mp3 mode: Telnyx's default
    answered_stream = wait_until(lambda: _started(rx, incoming), what="the answer-time stream")
    streams = rx.streams.set_index("stream_id")
    assert streams.loc[stream_id, ["encoding", "bidirectional_codec", "bidirectional_rate"]].tolist() == \
        ["PCMU", "PCMA", 8000]
    assert streams.loc[answered_stream, "bidirectional_codec"] == "MP3"
    assert pd.isna(streams.loc[answered_stream, "bidirectional_rate"])
    sent = tone(440, 0.4, 8000)
    rx.send_audio(stream_id, sent, 8000).result(timeout(10))
    got, _ = received(sb, ccid, len(sent))                                  # decoded as A-law: clean
    assert snr_db(sent, got) >= 35
    with pytest.raises(ValueError, match="stream_bidirectional_mode='rtp'"):
        rx.send_audio(answered_stream, sent, 8000)


def test_commands_table_records_options_answers_and_no_secret(sb, client, rx, tmp_path):
    sb.route("+15550175", Scenario.silence(20.0))
    dialled = tnb.dial(client, rx, connection_id=sb.connection_id, to="+15550175", from_=FROM)
    ccid = dialled.data.call_control_id
    ringing = sb.incoming_call("+15550176", FROM, webhook_url=rx.webhook_url)    # rings until answered
    with pytest.raises(telnyx.UnprocessableEntityError, match="90034"):
        tnb.start_streaming(client, ringing, rx)
    rx.wait_for("call.answered", ccid)
    tnb.start_streaming(client, ccid, rx, stream_bidirectional_mode="rtp", command_id="cmd-stream")
    commands = rx.commands
    assert commands[["command", "call_control_id", "status"]].values.tolist() == [
        ["dial", ccid, "ok"], ["streaming_start", ringing, "rejected"], ["streaming_start", ccid, "ok"]]
    assert commands.http_status.isna().tolist() == [True, False, True] and commands.http_status.iloc[1] == 422
    assert commands.error.iloc[1] == "90034 Call not answered yet"
    assert commands.options.iloc[0]["to"] == "+15550175" and commands.options.iloc[0]["webhook_url"] == rx.webhook_url
    assert commands.options.iloc[2] == {"stream_track": "both_tracks", "stream_url": rx.stream_url,
                                        "stream_auth_token": SECRET_MARKER, "stream_bidirectional_mode": "rtp",
                                        "command_id": "cmd-stream"}
    assert commands.command_id.iloc[2] == "cmd-stream"
    assert (commands.answered_at >= commands.sent_at).all()
    assert str(commands.sent_at.dtype) == "datetime64[ns, UTC]"
    wait_until(lambda: _started(rx, ccid), what="the stream")
    path = rx.save(tmp_path / "session")
    loaded = tnb.load(path)
    assert loaded.commands.drop(columns="options").equals(rx.commands.drop(columns="options"))
    assert loaded.commands.options.tolist() == rx.commands.options.tolist()
    assert loaded.streams.bidirectional_codec.tolist() == ["PCMU"]
    for file in path.rglob("*"):
        if file.is_file():
            assert b"tok-SECRET-4711" not in file.read_bytes(), file


def test_30_ms_goes_out_as_two_20_ms_chunks_the_tail_padded_with_silence():
    """Telnyx takes chunks of 20 ms to 30 s: 30 ms is sent as 20 ms + 20 ms (10 ms of µ-law
    silence, 0xFF), never with a 10 ms chunk."""
    sent = tone(440, 0.03, 8000)
    with tnb.Receiver(public_key=webhooks.Signer().public_key) as rx:
        async def telnyx_side() -> list[bytes]:
            async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
                await ws.send_str(media.dumps(media.Start("s-30", 1, "v3:call-30", media.MediaFormat("PCMA", 8000))))
                await await_until(lambda: len(rx.streams) == 1, what="the stream to start")
                done = rx.send_audio("s-30", sent, 8000)
                frames = [json.loads((await ws.receive(timeout=timeout(5))).data) for _ in range(2)]
                await asyncio.to_thread(done.result, timeout(5))
                return [base64.b64decode(frame["media"]["payload"]) for frame in frames]

        payloads = asyncio.run(telnyx_side())
    assert [len(p) for p in payloads] == [160, 160]
    assert payloads[0] + payloads[1][:80] == codecs.ulaw_encode(sent)        # no command: Telnyx's PCMU default
    assert payloads[1][80:] == b"\xff" * 80


def test_a_mark_on_a_stream_a_fork_replaced_says_the_stream_closed(sb, client, rx):
    """Telnyx ends a stream that a fork replaces; sending on it afterwards is StreamNotOpenError
    (it was aiohttp's 'Cannot write to closing transport'), and the mark's command row says so."""
    ccid, stream_id = call_with_stream(sb, client, rx, "+15550910", "PCMU", stream_bidirectional_mode="rtp")
    tnb.start_forking(client, ccid, rx)
    rx.wait_for("streaming.stopped", ccid)
    for k in range(3):                          # while the socket closes, and after
        with pytest.raises(tnb.StreamNotOpenError, match=r"no open media stream|has closed"):
            rx.mark(stream_id, f"late-{k}").result(10)
    marks = rx.commands[rx.commands.command == "mark"]
    assert marks.status.tolist() == ["failed"] * 3, marks
    assert marks.error.str.contains("StreamNotOpenError").all(), marks.error.tolist()
    tnb.hangup(client, ccid, rx)
