"""Recordings (telnyx_nb.store.recording): continuous, crash-safe, resumable, one dataset across runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from test_receiver import CCID, TONE, chunks, media_frame, rtp_packets, start_frame, udp_send, wait_until, ws_send

import telnyx_nb as tnb
from telnyx_nb.wire import codecs

from waiting import timeout

PCMU = chunks(codecs.ulaw_encode(TONE[:1600]), 160)
TABLES = ("events", "transcripts", "frames", "rtp", "streams", "dtmf", "marks", "stream_errors",
          "webhook_errors", "rtp_errors")


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def flushed(path: Path, table: str) -> int:
    try:
        return manifest(path)["rows"][table]
    except (OSError, ValueError, KeyError):
        return 0


def send_call(rx: tnb.Receiver, stream_id: str, chunk_numbers) -> None:
    messages = [start_frame(stream_id)]
    messages += [media_frame(stream_id, c + 1, "inbound", c, PCMU[(c - 1) % 10]) for c in chunk_numbers]
    asyncio.run(ws_send(rx.stream_url, messages))


def test_a_recording_is_flushed_while_running_and_loads_identical(tmp_path):
    path = tmp_path / "rec"
    rx = tnb.Receiver(record_to=path, flush_interval_s=0.05).start()
    try:
        send_call(rx, "s1", range(1, 11))
        rx.expect_fork(CCID)
        udp_send(rx.fork_rx, rtp_packets(3, [7, 8, 9], {n: PCMU[n % 10] for n in (7, 8, 9)}))
        wait_until(lambda: flushed(path, "frames") == 10 and flushed(path, "rtp") == 3)
        assert manifest(path)["finished"] is False
        live = tnb.load(path)                                     # readable while the receiver runs
        assert len(live.frames) == 10 and "unfinished" in repr(live)
    finally:
        rx.stop()
    loaded = tnb.load(path)
    assert manifest(path)["finished"] is True and rx.health()["recording_error"] is None
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(rx, name))
    np.testing.assert_array_equal(loaded.audio(CCID).samples, rx.audio(CCID).samples)
    np.testing.assert_array_equal(loaded.audio(CCID, "rx", source="fork").samples,
                                  rx.audio(CCID, "rx", source="fork").samples)


def test_a_new_receiver_resumes_the_recording(tmp_path):
    path = tmp_path / "rec"
    with tnb.Receiver(record_to=path, flush_interval_s=0.05) as first:
        send_call(first, "s1", range(1, 6))
        wait_until(lambda: len(first.frames) == 5)
    with tnb.Receiver(record_to=path, flush_interval_s=0.05) as second:
        assert second.frames["stream_id"].tolist() == ["s1"] * 5         # the earlier rows are in its tables
        send_call(second, "s2", range(1, 4))
        wait_until(lambda: len(second.frames) == 8)
    loaded = tnb.load(path)
    assert loaded.frames["stream_id"].tolist() == ["s1"] * 5 + ["s2"] * 3
    assert len(loaded.audio("s2")) == 480 and len(loaded.audio("s1")) == 800
    np.testing.assert_array_equal(loaded.audio("s1").samples, codecs.ulaw_decode(b"".join(PCMU[:5])))


CHILD = textwrap.dedent("""
    import sys, time
    import telnyx_nb as tnb
    rx = tnb.Receiver(record_to=sys.argv[1], flush_interval_s=0.05, process=False).start()  # it writes itself
    print(rx.stream_url, flush=True)
    time.sleep(600)
""")


def test_sigkill_keeps_every_flushed_row(tmp_path):
    """The process that writes a recording is killed mid-call: all it flushed loads. (Here an
    in-thread capture; test_capture.py kills a capture process and the notebook that owns one.)"""
    path = tmp_path / "rec"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        stream_url = child.stdout.readline().strip()

        async def stream_until_killed() -> None:
            import aiohttp
            async with aiohttp.ClientSession() as session, session.ws_connect(stream_url) as ws:
                await ws.send_str(start_frame("doomed"))
                for chunk in range(1, 200):
                    await ws.send_str(media_frame("doomed", chunk + 1, "inbound", chunk, PCMU[(chunk - 1) % 10]))
                    await asyncio.sleep(0.005)                # stimulus: a paced stream
                    if chunk == 60:
                        await asyncio.to_thread(wait_until, lambda: flushed(path, "frames") >= 40)
                        os.kill(child.pid, signal.SIGKILL)
                        return

        asyncio.run(stream_until_killed())
        child.wait(timeout(10))
    finally:
        if child.poll() is None:
            child.kill()
    markers = manifest(path)
    assert child.returncode == -signal.SIGKILL and markers["finished"] is False
    loaded = tnb.load(path)
    assert len(loaded.frames) >= markers["rows"]["frames"] >= 40               # every flushed row is there
    chunks_loaded = loaded.frames["chunk"].tolist()
    assert chunks_loaded == list(range(1, len(chunks_loaded) + 1))
    np.testing.assert_array_equal(loaded.audio("doomed").samples[:1600], codecs.ulaw_decode(b"".join(PCMU)))


def test_torn_writes_are_skipped_and_counted(tmp_path):
    path = tmp_path / "rec"
    with tnb.Receiver(record_to=path, flush_interval_s=0.05) as rx:
        send_call(rx, "s1", range(1, 6))
        wait_until(lambda: len(rx.frames) == 5)
    (path / "frames" / "part-999999.parquet.tmp").write_bytes(b"PAR1 half a segment")     # a write cut short
    payload = path / "payloads" / "frames-0.bin"
    payload.write_bytes(payload.read_bytes()[: 3 * 160 + 10])                         # payload bytes lost
    loaded = tnb.load(path)
    assert loaded.manifest["torn_files"] == 1 and loaded.manifest["torn_rows"] == 2
    assert loaded.frames["chunk"].tolist() == [1, 2, 3]


def test_a_failing_disk_stops_the_recording_not_the_receiver(tmp_path):
    path = tmp_path / "rec"
    rx = tnb.Receiver(record_to=path, flush_interval_s=0.05).start()
    try:
        send_call(rx, "s1", range(1, 4))
        wait_until(lambda: flushed(path, "frames") == 3)
        (path / "payloads").rename(tmp_path / "moved")
        (path / "payloads").write_bytes(b"")          # a file where the payload directory was: writes fail
        with pytest.warns(RuntimeWarning, match="recording to .* stopped"):
            send_call(rx, "s2", range(1, 4))
            wait_until(lambda: rx.health()["recording_error"] is not None)
        send_call(rx, "s3", range(1, 4))
        wait_until(lambda: rx.health()["ws_messages"] == 12)    # ingest went on (all it sees is not on disk)
    finally:
        rx.stop()
    assert "stopped" in rx.health()["recording_error"]
    (path / "payloads").unlink()
    (tmp_path / "moved").rename(path / "payloads")
    assert len(tnb.load(path).frames) == 3               # what was written stays loadable


def test_two_recordings_read_as_one_dataset(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    for name, n in (("a", 4), ("b", 6)):
        with tnb.Receiver(record_to=tmp_path / f"rec-{name}", flush_interval_s=0.05) as rx:
            send_call(rx, f"s-{name}", range(1, n + 1))
            wait_until(lambda rx=rx, n=n: len(rx.frames) == n)
    dataset = ds.dataset([ds.dataset(tmp_path / f"rec-{name}" / "frames", format="parquet") for name in ("a", "b")])
    assert dataset.count_rows() == 10
    glob = str(tmp_path / "rec-*" / "frames" / "*.parquet")
    assert duckdb.sql(f"select count(*), sum(n_bytes) from read_parquet('{glob}')").fetchall() == [(10, 1600)]


def test_sessions_saved_by_version_0_1_still_load():
    session = tnb.load(Path(__file__).with_name("data") / "session-v1")
    assert session.manifest["format"] == "telnyx_nb.session"
    assert session.frames["chunk"].tolist() == [1, 2, 3, 5] and len(session.rtp) == 3
    assert len(session.audio(CCID)) == 800
    with pytest.raises(tnb.TelnyxNbError, match="read-only"):
        session.save("anywhere")


def test_save_refuses_to_overwrite_unless_told(tmp_path):
    with tnb.Receiver() as rx:
        send_call(rx, "s1", range(1, 3))
        wait_until(lambda: len(rx.frames) == 2)
        first = rx.save(tmp_path / "s")
        with pytest.raises(FileExistsError, match="overwrite=True"):
            rx.save(first)
        assert rx.save(first, overwrite=True) == first
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "notes.txt").write_text("mine")
        with pytest.raises(FileExistsError, match="not a telnyx_nb"):
            rx.save(tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_a_store_that_forgets_what_it_flushed_stays_small_and_its_recording_whole(tmp_path):
    """The capture process's store: flushed rows and payload bytes leave memory, offsets stay right."""
    from telnyx_nb.store import Store
    from telnyx_nb.store.recording import Recorder
    from telnyx_nb.wire import media as wire_media
    from telnyx_nb.wire import rtp as wire_rtp

    store = Store()
    recorder = Recorder(store, tmp_path / "rec", l16_byteorder="big", clocks=dict, forget_flushed=True)
    info = store.start_stream(wire_media.Start("s", 1, "v3:c", wire_media.MediaFormat("PCMU", 8000)), 1, 0, False)
    store.claim_fork("v3:c")
    sizes = []
    for second in range(3):
        for chunk in range(1 + 10 * second, 11 + 10 * second):
            store.add_frame(info, "inbound", chunk + 1, chunk, 20 * (chunk - 1), bytes([chunk]) * 160, chunk)
            packet = wire_rtp.RtpPacket(0, chunk, 160 * chunk, 0x55, bytes([100 + chunk]) * 160)
            store.add_packet("rx", wire_rtp.parse_fork_packet(wire_rtp.build_rtp(packet)), chunk)
        assert recorder.flush()
        sizes.append(store.nbytes())
        assert len(store.table("frames")) == 0 and len(store.payload("frames", 0)) == 0   # all of it on disk
    assert sizes[0] == sizes[-1]                                     # flat: nothing accumulates
    loaded = tnb.load(tmp_path / "rec")
    assert loaded.frames["chunk"].tolist() == list(range(1, 31)) and len(loaded.rtp) == 30
    every_chunk = range(1, 31)                                       # each payload distinct: offsets must be exact
    np.testing.assert_array_equal(loaded.audio("s").samples,
                                  codecs.ulaw_decode(b"".join(bytes([c]) * 160 for c in every_chunk)))
    np.testing.assert_array_equal(loaded.audio("v3:c", "rx", source="fork").samples,
                                  codecs.ulaw_decode(b"".join(bytes([100 + c]) * 160 for c in every_chunk)))
