"""The headless sandbox demo behind ``telnyx-nb demo``.

Two emulated calls run at once against the built-in sandbox, driven through
the real ``telnyx`` SDK: call A streams both tracks over a WebSocket, call B
forks its RTP over UDP with 3 % of packets dropped by the sandbox; both are
transcribed. Everything lands in one receiver; the demo then prints each
table, the stream quality next to the sandbox's ground truth, and saves the
session directory.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import pandas as pd

import telnyx_nb as tnb

if TYPE_CHECKING:
    import telnyx

SCENARIO = "survey"
FORK_LOSS = 0.03


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _dial(client: telnyx.Telnyx, sb: tnb.Sandbox, rx: tnb.Receiver, to: str) -> str:
    """Dial ``to`` from the sandbox's connection, webhooks to ``rx``; the new call's control id."""
    data = client.calls.dial(connection_id=sb.connection_id, to=to, from_="+15550199", webhook_url=rx.webhook_url).data
    if data is None:
        raise RuntimeError(f"dialling {to} returned no call data")
    return data.call_control_id


def _answered(rx: tnb.Receiver, ccid: str) -> bool:
    events = rx.events
    return bool(((events.event_type == "call.answered") & (events.call_control_id == ccid)).any())


def _hung_up(rx: tnb.Receiver, ccids: list[str]) -> bool:
    events = rx.events
    done = events.loc[events.event_type == "call.hangup", "call_control_id"]
    return set(ccids) <= set(done)


def _progress(rx: tnb.Receiver, started: float) -> str:
    health = rx.health()
    return (
        f"  {time.monotonic() - started:5.1f} s  events {len(rx.events):4d}  frames {len(rx.frames):5d}"
        f"  rtp {len(rx.rtp):5d}  transcripts {len(rx.transcripts):3d}  errors {health['errors']}"
    )


def _show(title: str, frame: pd.DataFrame, out: TextIO, columns: list[str] | None = None) -> None:
    print(f"\n== {title}: {len(frame)} rows", file=out)
    if len(frame):
        view = frame[columns] if columns else frame
        with pd.option_context("display.width", 140, "display.max_columns", 20, "display.max_colwidth", 48):
            print(view.head(6).to_string(index=False), file=out)


def run(out: TextIO = sys.stdout, session_dir: str | Path | None = None) -> Path:
    """Run the demo; return the saved session directory."""
    print("telnyx_nb demo: two sandbox calls -> one in-kernel receiver", file=out)
    with tnb.Sandbox() as sb, tnb.Receiver(public_key=sb.public_key) as rx:
        print(f"  sandbox  {sb.base_url}  (signs webhooks with its Ed25519 key)", file=out)
        print(f"  receiver {rx.webhook_url}  {rx.stream_url}  {rx.fork_rx}  {rx.fork_tx}", file=out)
        client = sb.client()
        sb.route("+15550100", SCENARIO)
        sb.route("+15550101", SCENARIO)
        call_a = _dial(client, sb, rx, "+15550100")
        call_b = _dial(client, sb, rx, "+15550101")
        _wait_for(lambda: _answered(rx, call_a) and _answered(rx, call_b), 10, "both calls to be answered")
        print(f"  call A {call_a}: streaming both tracks + transcription", file=out)
        print(f"  call B {call_b}: RTP fork with {FORK_LOSS:.0%} loss + transcription", file=out)

        tnb.start_streaming(client, call_a, rx, stream_track="both_tracks")
        sb.impair(call_b, loss=FORK_LOSS, seed=1)
        tnb.start_forking(client, call_b, rx)
        interim = {"transcription_engine": "Google", "language": "en", "interim_results": True}
        for ccid in (call_a, call_b):
            tnb.start_transcription(client, ccid, transcription_tracks="both", transcription_engine_config=interim)

        started = time.monotonic()
        interactive = out.isatty()
        last_line = 0.0
        while not _hung_up(rx, [call_a, call_b]):
            if time.monotonic() - started > 120:
                raise TimeoutError("the scenario did not end within 120 s")
            now = time.monotonic()
            if interactive:
                print("\r" + _progress(rx, started), end="", file=out, flush=True)
            elif now - last_line >= 5:
                print(_progress(rx, started), file=out, flush=True)
                last_line = now
            time.sleep(0.25)
        print(("\n" if interactive else "") + _progress(rx, started), file=out)
        time.sleep(0.3)  # let the final webhooks of the hang-up arrive

        _show("events", rx.events, out, ["received_at", "event_type", "call_control_id", "verified"])
        transcripts = rx.transcripts
        final_a = transcripts[transcripts.is_final & (transcripts.call_control_id == call_a)]
        _show("transcripts (call A, final)", final_a, out, ["occurred_at", "track", "transcript", "confidence"])
        _show("streams", rx.streams, out, ["stream_id", "encoding", "sample_rate", "started_at", "stopped_at"])
        _show("frames", rx.frames, out, ["received_at", "track", "chunk", "timestamp", "n_bytes"])
        _show("rtp", rx.rtp, out, ["received_at", "target", "ssrc", "seq", "rtp_timestamp", "n_bytes"])
        quality = rx.quality()
        _show("quality", quality, out,
              ["source", "track", "packets", "expected", "lost", "loss_pct", "jitter_ms", "mos"])

        truth = sb.ground_truth(call_b)
        fork_truth = truth[truth.path == "fork"]
        dropped = int((fork_truth.fate == "dropped").sum())
        measured = int(quality.loc[quality.source == "fork", "lost"].sum())
        print(f"\nfork loss: the receiver counted {measured} lost packets;"
              f" the sandbox's ground truth says it dropped {dropped}.", file=out)
        if measured != dropped:
            print("  (RFC 3550 counts only gaps between the first and last packet received:"
                  " drops before the first or after the last are invisible to a receiver.)", file=out)

        path = Path(session_dir or Path("sessions") / time.strftime("demo-%Y%m%d-%H%M%S"))
        rx.save(path)
        wav = path / "call-A-inbound.wav"
        rx.audio(call_a, track="inbound").to_wav(wav)
        print(f"\nsession saved to {path.resolve()}"
              f"  (load it with tnb.load({str(path)!r}); listen to {wav.name})", file=out)
        return path
