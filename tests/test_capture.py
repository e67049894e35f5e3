"""The capture process: it outlives a notebook that dies, dies without losing what it wrote,
and goes away with a Receiver that is dropped."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_receiver import media_frame, start_frame, wait_until, ws_send

import telnyx_nb as tnb
from telnyx_nb.capture import CaptureError

from waiting import timeout


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def send(rx: tnb.Receiver, stream_id: str, n: int) -> None:
    asyncio.run(ws_send(rx.stream_url, [start_frame(stream_id)]
                        + [media_frame(stream_id, c + 1, "inbound", c, b"\xff" * 160) for c in range(1, n + 1)]))


@pytest.fixture
def quiet():
    with pytest.warns(UserWarning, match="unverified"):
        yield


def test_a_capture_process_that_dies_keeps_what_it_wrote_and_can_be_restarted(tmp_path, quiet):
    rx = tnb.Receiver(process=True, record_to=tmp_path / "rec", flush_interval_s=0.05).start()
    try:
        send(rx, "before", 5)
        wait_until(lambda: len(rx.frames) == 5)
        pid = int(rx.health()["capture"].split()[1])
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not rx.running)
        with pytest.warns(RuntimeWarning, match="ended unexpectedly"):
            assert len(rx.frames) == 5                     # what was recorded is still there
        assert rx.health()["capture"] == f"process died (exit code {-signal.SIGKILL})"
        with pytest.raises(CaptureError, match="not running"):
            rx.expect_fork("v3:x")
        rx.start()                                          # a new child resumes the same recording
        send(rx, "after", 3)
        wait_until(lambda: len(rx.frames) == 8)
        assert rx.frames["stream_id"].tolist() == ["before"] * 5 + ["after"] * 3
    finally:
        rx.stop()
    assert tnb.load(tmp_path / "rec").manifest["finished"] is True


NOTEBOOK = textwrap.dedent("""
    import json, sys, time
    import telnyx_nb as tnb
    rx = tnb.Receiver(process=True, record_to=sys.argv[1], flush_interval_s=0.05).start()
    print(json.dumps({"stream_url": rx.stream_url, "capture": rx.health()["capture"]}), flush=True)
    time.sleep(600)
""")


def test_the_capture_process_finishes_the_recording_when_the_notebook_dies(tmp_path):
    path = tmp_path / "rec"
    notebook = subprocess.Popen([sys.executable, "-c", NOTEBOOK, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(notebook.stdout.readline())
        capture_pid = int(info["capture"].split()[1])

        async def stream() -> None:
            import aiohttp
            async with aiohttp.ClientSession() as session, session.ws_connect(info["stream_url"]) as ws:
                await ws.send_str(start_frame("orphan"))
                for chunk in range(1, 11):
                    await ws.send_str(media_frame("orphan", chunk + 1, "inbound", chunk, b"\xff" * 160))
                await asyncio.to_thread(wait_until, lambda: _flushed(path) == 10)
                notebook.kill()                            # the kernel dies; the socket is still open
                notebook.wait(timeout(10))
                await asyncio.to_thread(lambda: wait_until(lambda: not alive(capture_pid), timeout=15))

        asyncio.run(stream())
    finally:
        if notebook.poll() is None:
            notebook.kill()
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["finished"] is True                   # the child finished the recording on its own
    assert tnb.load(path).streams["end_reason"].tolist() == ["receiver_stopped"]


def _flushed(path: Path) -> int:
    try:
        return json.loads((path / "manifest.json").read_text())["rows"]["frames"]
    except (OSError, ValueError, KeyError):
        return 0


def test_a_dropped_receiver_ends_its_capture_process_and_removes_its_temporary_recording(quiet):
    rx = tnb.Receiver(process=True).start()
    pid = int(rx.health()["capture"].split()[1])
    path = rx.recording_path
    assert path is not None and path.exists()
    del rx
    gc.collect()
    wait_until(lambda: not alive(pid) and not path.exists())
