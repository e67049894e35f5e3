"""The headless sandbox demo behind ``telnyx-nb demo``: one call, all six actions.

One emulated call ("survey" scenario: a caller answering a short survey) runs against the
built-in sandbox, driven through the real ``telnyx`` SDK and the package's helpers: it is
dialled and answered, transcribed on both tracks, streamed on both tracks over a WebSocket for
``STREAM_S`` seconds, then forked over UDP as RTP for ``FORK_S`` seconds with ``FORK_LOSS`` of
the packets dropped by the sandbox; each action is stopped again and the call is hung up.
A progress bar (``tqdm``) shows each step and the receiver's live counters from the first
second. The demo then prints the tables (their size and first rows), the stream quality per
call next to the sandbox's ground truth, saves the session directory and writes PNG plots into
it, and says where.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pandas as pd
from tqdm.auto import tqdm

import telnyx_nb as tnb

if TYPE_CHECKING:
    import telnyx

SCENARIO = "survey"
STREAM_S = 6.0
FORK_S = 6.0
FORK_LOSS = 0.03
#: The steps the progress bar counts.
STEPS = ("sandbox", "receiver", "dial", "answer", "transcription", "streaming", "forking", "stop", "hang-up",
         "tables", "plots", "save")
#: The figures written next to the session: file name -> (``tnb.plots`` function, its options).
PLOTS: dict[str, tuple[str, dict[str, Any]]] = {
    "waveform-stream": ("waveform", {"source": "stream"}), "waveform-fork": ("waveform", {"source": "fork"}),
    "transcript_timeline": ("transcript_timeline", {}), "quality_timeline": ("quality_timeline", {}),
    "latency": ("latency", {}), "talk_time": ("talk_time", {}), "quality_summary": ("quality_summary", {}),
}
#: Rows of each table printed.
HEAD = 6


class _Progress:
    """One tqdm bar over STEPS: its description the step under way, its postfix the receiver's
    counters (refreshed while waiting), redrawn from a thread (twice a second on a terminal,
    every 5 s into a file) so that the elapsed time moves during long steps too."""

    def __init__(self, out: TextIO) -> None:
        self.bar = tqdm(total=len(STEPS), file=out, unit="step", mininterval=0.25, desc="starting the sandbox",
                        bar_format="{desc:<34} {bar:20} {n_fmt}/{total_fmt} [{elapsed}] {postfix}")
        self.rx: tnb.Receiver | None = None
        self._closed = threading.Event()
        interval = 0.5 if out.isatty() else 5.0        # a log file keeps every redraw
        threading.Thread(target=self._redraw, args=(interval,), name="telnyx_nb-demo-progress", daemon=True).start()

    def _redraw(self, interval: float) -> None:
        while not self._closed.wait(interval):
            self.bar.refresh()

    def step(self, next_step: str) -> None:
        """One step done; ``next_step`` names the one now under way."""
        self.bar.set_description_str(next_step, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self._closed.set()
        self.bar.close()

    def counters(self) -> None:
        if self.rx is not None:
            health = self.rx.health()
            self.bar.set_postfix_str(f"webhooks {health['webhooks']} media {health['ws_messages']} "
                                     f"rtp {health['udp_packets']} errors {health['errors']}",
                                     refresh=False)    # drawn by the redraw thread and each step

    def wait(self, seconds: float, until: Callable[[], bool] | None = None) -> None:
        """Sleep ``seconds`` (or until ``until()``), refreshing the counters four times a second."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until is not None and until()):
            self.counters()
            time.sleep(0.25)
        self.counters()


def _show(title: str, frame: pd.DataFrame, out: TextIO, columns: list[str]) -> None:
    shown = f"first {HEAD} of {len(frame)} rows" if len(frame) > HEAD else f"{len(frame)} rows"
    print(f"\n== {title}: {shown}", file=out)
    if len(frame):
        with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 40):
            print(frame[columns].head(HEAD).to_string(index=False), file=out)


def _dial(client: telnyx.Telnyx, sb: tnb.Sandbox, rx: tnb.Receiver) -> str:
    data = tnb.dial(client, rx, connection_id=sb.connection_id, to="+15550100", from_="+15550199").data
    if data is None:
        raise RuntimeError("the dial returned no call data")
    return data.call_control_id


def run(out: TextIO = sys.stdout, session_dir: str | Path | None = None) -> Path:
    """Run the demo; return the saved session directory (with ``plots/*.png`` in it)."""
    print("telnyx_nb demo: one sandbox call, all six actions, into a receiver", file=out, flush=True)
    progress = _Progress(out)
    try:
        with tnb.Sandbox() as sb:
            progress.step("starting the receiver")
            with tnb.Receiver(public_key=sb.public_key) as rx:
                progress.rx = rx
                progress.step("dialling")
                client = sb.client()
                sb.route("+15550100", SCENARIO)
                ccid = _dial(client, sb, rx)
                progress.step("waiting for the answer")
                rx.wait_for("call.answered", ccid)      # commands before the answer get 422 90034
                progress.step("starting transcription")
                tnb.start_transcription(client, ccid, rx, transcription_tracks="both",
                                        transcription_engine_config={"transcription_engine": "Google",
                                                                     "language": "en", "interim_results": True})
                progress.step(f"streaming both tracks {STREAM_S:g} s")
                tnb.start_streaming(client, ccid, rx, stream_track="both_tracks")
                progress.wait(STREAM_S)
                tnb.stop_streaming(client, ccid, rx)
                progress.step(f"forking {FORK_S:g} s, {FORK_LOSS:.0%} dropped")
                sb.impair(ccid, loss=FORK_LOSS, seed=1)
                tnb.start_forking(client, ccid, rx)
                progress.wait(FORK_S)
                tnb.stop_forking(client, ccid, rx)
                progress.step("stopping transcription")
                tnb.stop_transcription(client, ccid, rx)
                progress.step("hanging up")
                tnb.hangup(client, ccid, rx)
                rx.wait_for("call.hangup", ccid)
                progress.wait(1.0, until=lambda: "call.transcription.stopped" in set(rx.events["event_type"]))
                progress.step("reading the tables")
                tables = {name: getattr(rx, name) for name in ("events", "commands", "transcripts", "streams", "frames",
                                                              "rtp", "dtmf")}
                quality = rx.quality()
                truth = sb.ground_truth(ccid)
                progress.step("saving, writing plots")
                path = Path(session_dir or Path("sessions") / time.strftime("demo-%Y%m%d-%H%M%S"))
                rx.save(path)
                figures = _write_plots(rx, ccid, path / "plots")
                progress.step("writing the audio")
                wav = path / "call-inbound.wav"
                rx.audio(ccid, track="inbound", source="stream").to_wav(wav)
                progress.step("done")
    finally:
        progress.close()
    _report(out, ccid, tables, quality, truth)
    print(f"\nsession saved to {path.resolve()}  (tnb.load({str(path)!r}) opens it)", file=out)
    print(f"plots: {', '.join(p.name for p in figures)} in {(path / 'plots').resolve()}", file=out)
    print(f"audio: {wav.name} (the far end, as streamed)", file=out)
    return path


def _write_plots(rx: tnb.Receiver, ccid: str, where: Path) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (function, options) in PLOTS.items():
        getattr(tnb.plots, function)(rx, ccid, **options).savefig(where / f"{name}.png", dpi=100)
        written.append(where / f"{name}.png")
    return written


def _report(out: TextIO, ccid: str, tables: dict[str, pd.DataFrame], quality: pd.DataFrame,
            truth: pd.DataFrame) -> None:
    print(f"\ncall {ccid}", file=out)
    columns: dict[str, list[str]] = {
        "events": ["received_at", "event_type", "verified"],
        "commands": ["sent_at", "command", "status"],
        "transcripts": ["occurred_at", "track", "transcript", "is_final"],
        "streams": ["stream_id", "encoding", "sample_rate", "started_at", "stopped_at"],
        "frames": ["received_at", "track", "chunk", "n_bytes"],
        "rtp": ["received_at", "target", "ssrc", "seq", "n_bytes"],
        "dtmf": ["received_at", "source", "digit"],
    }
    for name, frame in tables.items():
        _show(name, frame, out, [c for c in columns[name] if c in frame.columns])
    report = quality.assign(call=quality["call_control_id"].astype(str).str[-8:])
    _show("quality", report, out, ["call", "source", "track", "packets", "expected", "lost", "loss_pct", "jitter_ms",
                                   "mos"])
    _ground_truth(out, quality, truth)


def _ground_truth(out: TextIO, quality: pd.DataFrame, truth: pd.DataFrame) -> None:
    rows: list[dict[str, Any]] = []
    for path, source in (("stream", "stream"), ("fork", "fork")):
        sent = truth[truth["path"] == path]
        measured = quality[quality["source"] == source]
        rows.append({"path": path, "sent": len(sent), "dropped (truth)": int((sent["fate"] == "dropped").sum()),
                     "received": int(measured["packets"].sum()), "lost (measured)": int(measured["lost"].sum())})
    print("\n== quality next to the sandbox's ground truth", file=out)
    print(pd.DataFrame(rows).to_string(index=False), file=out)
    print("  (RFC 3550 counts the gaps between the first and last packet received: drops before the first or\n"
          "   after the last are invisible to a receiver, so 'lost' can be below 'dropped'.)", file=out)
