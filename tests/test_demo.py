"""The README's first command: ``telnyx-nb demo`` runs headless and saves a loadable session."""

import shutil
import subprocess
import sys
import wave

import telnyx_nb as tnb

from waiting import timeout


def test_demo_command_runs_two_calls_and_saves_a_loadable_session(tmp_path):
    command = shutil.which("telnyx-nb") or f"{sys.executable} -m telnyx_nb.cli"
    session = tmp_path / "session"
    result = subprocess.run(
        [*command.split(), "demo", "--session-dir", str(session)],
        capture_output=True, text=True, timeout=timeout(180),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for section in ("== events", "== transcripts", "== streams", "== frames", "== rtp", "== quality",
                    "session saved to"):
        assert section in out
    assert "KEY_SANDBOX_" not in out  # never print an API key

    saved = tnb.load(session)
    events = saved.events
    assert set(events.event_type) >= {"call.initiated", "call.answered", "streaming.started", "call.fork.started",
                                      "call.transcription", "streaming.stopped", "call.fork.stopped", "call.hangup"}
    assert events.verified.all()
    assert set(saved.frames.track) == {"inbound", "outbound"}
    assert set(saved.rtp.target) == {"rx", "tx"}
    quality = saved.quality()
    assert (quality.loc[quality.source == "stream", "lost"] == 0).all()
    assert quality.loc[quality.source == "fork", "lost"].sum() > 0  # the demo drops 3 % of forked packets

    with wave.open(str(session / "call-A-inbound.wav")) as wav:
        assert wav.getframerate() == 8000 and wav.getnframes() > 8000 * 15

    again = subprocess.run([*command.split(), "demo", "--session-dir", str(session)],
                           capture_output=True, text=True, timeout=timeout(60))
    assert again.returncode == 2 and "exists and is not empty" in again.stderr     # never overwritten silently
    assert len(tnb.load(session).frames) == len(saved.frames)
