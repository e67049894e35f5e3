"""The sandbox in its own process: a notebook cell that holds the interpreter lock cannot distort
its media, its ground truth stays honest either way, and its lifecycle follows the parent's.

The "cell" is one C call that holds the GIL for ~3 s in the test's main thread (``sum(range(N))``,
N calibrated on this machine), as pandas and numpy operations do. Only counts and orderings are
asserted here; how late anything ran is measured by ``benchmarks/bench_sandbox.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import telnyx_nb as tnb
from telnyx_nb.sandbox import Sandbox, SandboxProcessError, Scenario
from telnyx_nb.sandbox.control import PREFIX, TOKEN_HEADER

from waiting import timeout, wait_until

CELL_S = 3.0


@pytest.fixture(scope="module")
def cell():
    """A function that sits inside one C call holding the GIL for about CELL_S seconds."""
    n = 2_000_000
    t0 = time.perf_counter()
    sum(range(n))
    per_item = (time.perf_counter() - t0) / n
    size = int(CELL_S / per_item)

    def run() -> int:
        return sum(range(size))
    return run


class Ticker:
    """A thread of this process that counts 1 ms sleeps: frozen while the main thread holds the GIL."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.count += 1
            time.sleep(0.001)

    def __enter__(self) -> Ticker:
        self._thread.start()
        wait_until(lambda: self.count > 10, what="the ticker to run")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout(5))


def stream_call_with_cell(sb: Sandbox, rx: tnb.Receiver, to: str, cell) -> tuple[str, int]:
    """A clean two-track streamed call; the cell runs in the middle of it. (ccid, ticker steps during the cell)"""
    # media left after the cell, even when a loaded machine stretches the cell to several times CELL_S
    sb.route(to, Scenario.tone(seconds=CELL_S + 12.0, outbound_frequency=660.0))
    client = sb.client()
    ccid = client.calls.dial(connection_id=sb.connection_id, to=to, from_="+15550199",
                             webhook_url=rx.webhook_url).data.call_control_id
    wait_until(lambda: sb.call_state(ccid) == "answered")
    tnb.start_streaming(client, ccid, rx, stream_track="both_tracks")
    wait_until(lambda: len(rx.frames) >= 20, what="the stream to flow")
    with Ticker() as ticker:
        before = ticker.count
        cell()
        steps = ticker.count - before
    assert sb.call_state(ccid) == "answered", "the call must outlast the cell"
    wait_until(lambda: sb.call_state(ccid) == "ended", timeout=CELL_S + 20)
    sb.wait_webhooks(timeout(10))
    wait_until(lambda: "call.hangup" in set(rx.events["event_type"]))
    wait_until(lambda: rx.streams["stopped_at"].notna().all(), what="the stream's stop frame")
    return ccid, steps


def fates(truth) -> dict[str, int]:
    return {fate: int(n) for fate, n in truth["fate"].value_counts().items() if n}


def test_a_cell_holding_the_gil_does_not_touch_the_sandbox_process(cell):
    with Sandbox() as sb, tnb.Receiver(public_key=sb.public_key) as rx:
        ccid, steps = stream_call_with_cell(sb, rx, "+15550400", cell)
        assert steps <= 5  # the cell did hold this process's interpreter lock throughout
        truth = sb.ground_truth(ccid)
        quality = rx.quality().set_index("track")
        assert sb.pacing()["skipped_ticks"] == 0
        for track in ("inbound", "outbound"):
            sent = truth[(truth["path"] == "stream") & (truth["track"] == track)]
            row = quality.loc[track]
            assert fates(sent) == {"delivered": len(sent)}  # nothing dropped, skipped, pending or unsent
            assert (sent["sent_at"] >= sent["due_at"]).all()
            assert int(row["lost"]) == 0 == int((sent["fate"] == "dropped").sum())
            assert int(row["duplicates"]) == int((sent["fate"] == "duplicated").sum()) == 0
            assert int(row["packets"]) == len(sent) and int(row["expected"]) == len(sent)


def test_in_thread_the_same_cell_starves_the_clock_and_the_ground_truth_says_so(cell):
    """process=False: the sandbox shares the GIL, its clock skips ticks; the ground truth records
    them as ``skipped`` (never ``delivered``), and the receiver's loss is exactly those."""
    with Sandbox(process=False) as sb, tnb.Receiver(public_key=sb.public_key) as rx:
        ccid, steps = stream_call_with_cell(sb, rx, "+15550401", cell)
        assert steps <= 5
        truth = sb.ground_truth(ccid)
        quality = rx.quality().set_index("track")
        assert sb.pacing()["skipped_ticks"] > 0
        for track in ("inbound", "outbound"):
            sent = truth[(truth["path"] == "stream") & (truth["track"] == track)]
            row = quality.loc[track]
            counts = fates(sent)
            assert set(counts) == {"delivered", "skipped"} and counts["skipped"] > 0
            skipped = sent[sent["fate"] == "skipped"]
            delivered = sent[sent["fate"] == "delivered"]
            assert skipped["sent_at"].isna().all() and skipped["sequence_number"].isna().all()
            assert delivered["sent_at"].notna().all() and (delivered["sent_at"] >= delivered["due_at"]).all()
            assert sent["chunk"].tolist() == list(range(1, len(sent) + 1))  # every slot accounted for, in order
            assert int(row["lost"]) == counts["skipped"]  # the chunks that never went out
            assert int(row["duplicates"]) == 0 and int(row["packets"]) == counts["delivered"]


def _state(pid: int) -> str | None:
    """The process's state letter (``Z`` for a zombie), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    return stat.rpartition(")")[2].split()[0]


def _gone(pid: int) -> bool:
    if Path("/proc").is_dir():
        return _state(pid) in (None, "Z")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_child_ends_when_its_parent_is_killed():
    code = ("import sys, telnyx_nb as tnb\n"
            "sb = tnb.Sandbox().start()\n"
            "print(sb.pid, flush=True)\n"
            "sys.stdin.read()\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = parent.stdout.readline()
        assert line, "the parent failed to start its sandbox"
        child = int(line)
        assert not _gone(child)
    finally:
        parent.kill()  # SIGKILL: no cleanup code runs; only the kernel closes its end of the pipe
        parent.wait(timeout(10))
        parent.stdin.close()
        parent.stdout.close()
    wait_until(lambda: _gone(child), timeout=20, what=f"the orphaned sandbox process {child} to exit")


def test_a_dead_child_is_reported_on_the_next_call_and_can_be_replaced():
    sb = Sandbox().start()
    try:
        first = sb.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not sb.running, what="the sandbox process to die")
        with pytest.raises(SandboxProcessError, match=r"was killed by signal 9 \(SIGKILL\)") as err:
            sb.call_state("v3:any")
        assert f"pid {first}" in str(err.value) and "start()" in str(err.value)
        with pytest.raises(SandboxProcessError):
            sb.ground_truth("v3:any")
        sb.start()  # a new child
        assert sb.running and sb.pid != first
        with pytest.raises(KeyError):
            sb.call_state("v3:any")
    finally:
        sb.stop()
    assert not sb.running and sb.pid is None


def test_a_port_in_use_is_reported_by_start_itself():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        sb = Sandbox(port=port)
        with pytest.raises(SandboxProcessError) as err:
            sb.start()
        assert f"cannot listen on 127.0.0.1:{port}" in str(err.value)
        assert "address already in use" in str(err.value).lower()
        assert not sb.running and sb.pid is None
    finally:
        taken.close()


def test_a_child_that_cannot_start_is_reported_with_its_stderr_on_first_use(tmp_path, monkeypatch):
    # a broken environment: an aiohttp that fails to import shadows the real one in the child
    (tmp_path / "aiohttp").mkdir()
    (tmp_path / "aiohttp" / "__init__.py").write_text("raise ImportError('this aiohttp is broken')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    sb = Sandbox()
    sb.start()  # returns before the child has imported anything
    try:
        with pytest.raises(SandboxProcessError) as err:
            sb.client()
        message = str(err.value)
        assert "exited with status 1 during start-up" in message and f"pid {sb.pid}" in message
        assert "this aiohttp is broken" in message and "Traceback" in message
        with pytest.raises(SandboxProcessError, match="during start-up"):
            sb.call_state("v3:any")  # the same error on every later use
        assert not sb.running
        monkeypatch.delenv("PYTHONPATH")
        sb.start()  # a new child, in a sound environment
        assert sb.loop_name in ("uvloop", "asyncio") and sb.running
    finally:
        sb.stop()


def test_stop_ends_the_child_gracefully_with_its_calls(peer):
    sb = Sandbox(ring_s=0.05, scenario=Scenario.silence(30.0)).start()
    child = sb.pid
    ccid = sb.client().calls.dial(connection_id=sb.connection_id, to="+15550402", from_="+15550199",
                                  webhook_url=peer.webhook_url, stream_url=peer.stream_url).data.call_control_id
    peer.wait_event(ccid, "streaming.started")
    with pytest.raises(KeyError):
        sb.hangup("v3:not-a-call")
    assert "Traceback" not in sb.stderr_tail()  # an expected error is not logged as a crash
    sb.stop()
    assert _gone(child)
    peer.wait_event(ccid, "call.hangup")  # live calls were hung up before the child exited
    assert peer.stream_of(ccid).events()[-1] == "stop"
    with pytest.raises(RuntimeError, match="not running"):
        sb.call_state(ccid)


def _errors(sb: Sandbox, ccid: str) -> list[tuple[str, str]]:
    attempts = [
        lambda: sb.call_state("v3:nope"),
        lambda: sb.hangup("v3:nope"),
        lambda: sb.ground_truth("v3:nope"),
        lambda: sb.impair("v3:nope", loss=0.1),
        lambda: sb.impair(ccid, loss=1.5),
        lambda: sb.impair(ccid, burst=(0.1,)),
        lambda: sb.send_dtmf(ccid, "12X"),
        lambda: sb.send_dtmf("v3:nope", "1"),
        lambda: sb.route("+15550000", "nope"),
        lambda: sb.route("+15550000", "tone", codec="G729"),
        lambda: sb.incoming_call(scenario="nope"),
        lambda: sb.incoming_call(scenario="tone", codec="L16"),
    ]
    seen = []
    for attempt in attempts:
        with pytest.raises(Exception) as err:  # any type: the point is to compare what they raise
            attempt()
        seen.append((type(err.value).__name__, str(err.value)))
    return seen


def test_errors_are_the_same_exceptions_with_the_same_messages_in_both_modes(peer):
    results = {}
    for process in (True, False):
        with Sandbox(ring_s=0.05, scenario=Scenario.silence(5.0), process=process) as sb:
            ccid = sb.incoming_call(webhook_url=peer.webhook_url)
            results[process] = [(kind, message.replace(ccid, "<ccid>")) for kind, message in _errors(sb, ccid)]
    assert results[True] == results[False]
    kinds = [kind for kind, _ in results[True]]
    assert kinds == ["KeyError"] * 4 + ["ValueError", "TypeError", "ValueError", "KeyError"] + ["ValueError"] * 4
    assert results[True][0] == ("KeyError", "\"no call with call_control_id 'v3:nope'\"")


def test_the_control_endpoint_wants_its_token_and_the_child_is_lean():
    with Sandbox() as sb:
        port, token = sb._control.port, sb._control._token
        request = urllib.request.Request(f"http://127.0.0.1:{port}{PREFIX}/pacing", data=b"{}",
                                         headers={TOKEN_HEADER: "wrong"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=timeout(5))
        assert err.value.code == 401
        request = urllib.request.Request(f"http://127.0.0.1:{port}{PREFIX}/pacing", data=b"{}",
                                         headers={TOKEN_HEADER: token})
        with urllib.request.urlopen(request, timeout=timeout(5)) as response:
            assert "skipped_ticks" in json.load(response)["result"]
        proc = Path(f"/proc/{sb.pid}")
        if proc.is_dir():  # Linux: the token is on no command line or environment; pandas is not loaded
            assert token.encode() not in (proc / "cmdline").read_bytes()
            assert token.encode() not in (proc / "environ").read_bytes()
            assert "/pandas/" not in (proc / "maps").read_text()
