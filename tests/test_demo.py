"""The README's first command: ``telnyx-nb demo`` runs headless and saves a loadable session."""

import subprocess
import sys
import wave
from pathlib import Path

import telnyx_nb as tnb

from waiting import timeout


def test_demo_command_runs_all_six_actions_and_saves_a_loadable_session_with_plots(tmp_path):
    script = Path(sys.executable).with_name("telnyx-nb")          # the installed console script
    command = [str(script)] if script.exists() else [sys.executable, "-m", "telnyx_nb.cli"]
    session = tmp_path / "session"
    result = subprocess.run(
        [*command, "demo", "--session-dir", str(session)],
        capture_output=True, text=True, timeout=timeout(180),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for section in ("== events", "== commands", "== transcripts", "== streams", "== frames", "== rtp", "== quality",
                    "== quality next to the sandbox's ground truth", "session saved to", "plots:"):
        assert section in out
    assert "first 6 of" in out and "12/12" in out                   # headings say how many rows are shown
    assert "KEY_SANDBOX_" not in out  # never print an API key

    saved = tnb.load(session)
    events = saved.events
    assert set(events.event_type) >= {"call.initiated", "call.answered", "streaming.started", "streaming.stopped",
                                      "call.fork.started", "call.fork.stopped", "call.transcription",
                                      "call.transcription.stopped", "call.hangup"}
    assert events.verified.all() and events.call_control_id.nunique() == 1
    assert list(saved.commands.command) == ["dial", "transcription_start", "streaming_start", "streaming_stop",
                                            "fork_start", "fork_stop", "transcription_stop", "hangup"]
    assert (saved.commands.status == "ok").all()
    assert set(saved.frames.track) == {"inbound", "outbound"}
    assert set(saved.rtp.target) == {"rx", "tx"}
    quality = saved.quality()
    assert (quality.loc[quality.source == "stream", "lost"] == 0).all()
    assert quality.loc[quality.source == "fork", "lost"].sum() > 0  # the demo drops 3 % of forked packets
    assert set(saved.transcripts.track) == {"inbound", "outbound"}

    for name in ("waveform-stream", "waveform-fork", "transcript_timeline", "quality_timeline", "latency",
                 "talk_time", "quality_summary"):
        png = session / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
    with wave.open(str(session / "call-inbound.wav")) as wav:
        assert wav.getframerate() == 8000 and wav.getnframes() > 8000 * 5    # 6 s streamed

    again = subprocess.run([*command, "demo", "--session-dir", str(session)],
                           capture_output=True, text=True, timeout=timeout(60))
    assert again.returncode == 2 and "exists and is not empty" in again.stderr     # never overwritten silently
    assert len(tnb.load(session).frames) == len(saved.frames)
