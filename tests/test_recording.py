"""Recordings (telnyx_nb.store.recording): continuous, crash-safe, resumable, one dataset across runs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from test_receiver import (
    CCID,
    TONE,
    chunks,
    envelope,
    media_frame,
    post,
    rtp_packets,
    start_frame,
    udp_send,
    wait_until,
    ws_send,
)

import telnyx_nb as tnb
from telnyx_nb.store import recording
from telnyx_nb.wire import codecs
from telnyx_nb.wire import rtp as rtp_wire

from waiting import timeout

DATA = Path(__file__).with_name("data")
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


@pytest.mark.parametrize("pack_rows", [recording._PACK_ROWS, 2])    # 2: rows checked and packed across blocks
def test_torn_writes_are_skipped_and_counted(tmp_path, monkeypatch, pack_rows):
    monkeypatch.setattr(recording, "_PACK_ROWS", pack_rows)
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
    copy = tnb.load(loaded.save(tmp_path / "copy"))          # the rows as packed in the loaded store
    pd.testing.assert_frame_equal(copy.frames, loaded.frames)


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


def fork_call(rx: tnb.Receiver, ccid: str, ssrc: int, n: int) -> None:
    """A webhook for ``ccid``, its fork claimed, ``n`` RTP packets of ``ssrc`` on the rx target."""
    post(rx.webhook_url, envelope("call.answered", {"call_control_id": ccid}))
    rx.expect_fork(ccid)
    packets = [rtp_wire.build_rtp(rtp_wire.RtpPacket(0, seq, 160 * seq, ssrc, PCMU[seq % 10])) for seq in range(n)]
    udp_send(rx.fork_rx, packets)


def test_two_recordings_read_as_one_dataset(tmp_path):
    """Every row carries its labels and its recording's id: DuckDB and pyarrow.dataset read a
    directory of recordings as one table per kind and group rows by call, stream and SSRC."""
    duckdb = pytest.importorskip("duckdb")
    expected_frames, expected_rtp, ids = {}, {}, set()
    for name, n, ssrc in (("a", 4, 0x111), ("b", 6, 0x222)):
        with tnb.Receiver(record_to=tmp_path / f"rec-{name}", flush_interval_s=0.05) as rx:
            send_call(rx, f"s-{name}", range(1, n + 1))
            send_call(rx, f"t-{name}", range(1, 3))       # a second stream of the same call
            fork_call(rx, f"v3:fork-{name}", ssrc, n + 1)
            wait_until(lambda rx=rx, n=n: len(rx.frames) == n + 2 and len(rx.rtp) == n + 1)
            per_stream = rx.frames.groupby("stream_id", observed=True).size()
            per_call = rx.rtp.groupby("call_control_id", observed=True).size()
            expected_frames.update({(name, k): v for k, v in per_stream.items()})
            expected_rtp.update({(name, k): v for k, v in per_call.items()})
            ids.add(manifest(tmp_path / f"rec-{name}")["recording_id"])
    assert len(ids) == 2
    by_id = {manifest(tmp_path / f"rec-{name}")["recording_id"]: name for name in ("a", "b")}
    root = str(tmp_path / "rec-*")
    frames = duckdb.sql("select recording_id, stream_id, call_control_id, count(*) "
                        f"from read_parquet('{root}/frames/*.parquet') group by all").fetchall()
    assert {(by_id[r], s): n for r, s, _, n in frames} == expected_frames
    assert {c for _, _, c, _ in frames} == {CCID}
    rtp = duckdb.sql(f"""
        select r.recording_id, s.call_control_id, r.ssrc, count(*)
        from read_parquet('{root}/rtp/*.parquet') r
        join read_parquet('{root}/sources.parquet') s using (recording_id, target, ssrc)
        group by all""").fetchall()
    assert {(by_id[r], c): n for r, c, _, n in rtp} == expected_rtp
    assert sorted(ssrc for *_, ssrc, _ in rtp) == [0x111, 0x222]
    [(kind,)] = duckdb.sql(f"select distinct typeof(received_at) from read_parquet('{root}/rtp/*.parquet')").fetchall()
    assert kind.startswith("TIMESTAMP")
    for kind, key, expected in (("frames", "stream_id", expected_frames), ("rtp", "ssrc", None)):
        dataset = ds.dataset([ds.dataset(tmp_path / f"rec-{name}" / kind, format="parquet") for name in ("a", "b")])
        grouped = dataset.to_table().group_by(["recording_id", key]).aggregate([([], "count_all")]).to_pylist()
        counts = {(by_id[row["recording_id"]], row[key]): row["count_all"] for row in grouped}
        if expected is not None:
            assert counts == expected
        else:
            assert counts == {("a", 0x111): 5, ("b", 0x222): 7}


def test_recordings_of_version_2_still_load(tmp_path):
    """tests/data/recording-v2 was written by the version-2 writer (rows holding registry indexes)."""
    old = tnb.load(DATA / "recording-v2")
    assert old.manifest["version"] == 2
    frames = old.frames
    assert frames["stream_id"].tolist() == ["s-early"] + ["s1"] * 8
    assert frames["call_control_id"].tolist() == ["v3:other-call"] + ["v3:fixture-call"] * 8
    assert frames["track"].tolist()[1:4] == ["inbound", "outbound", "inbound"]
    assert old.rtp["ssrc"].tolist() == [0x1234] * 3 + [0x9999] * 2
    assert old.rtp["target"].tolist() == ["rx"] * 3 + ["tx"] * 2
    assert old.rtp["call_control_id"].tolist() == ["v3:fixture-call"] * 5
    assert old.marks["stream_id"].tolist() == ["s1"] and old.dtmf["digit"].tolist() == ["5"]
    np.testing.assert_array_equal(old.audio("v3:fixture-call").samples[:160], codecs.ulaw_decode(bytes([1]) * 160))
    new = tnb.load(old_copy := shutil.copytree(DATA / "recording-v2", tmp_path / "v2"))
    new = tnb.load(tnb.load(old_copy).save(tmp_path / "v3"))         # written again in this version
    assert new.manifest["version"] == recording.VERSION
    for name in (*TABLES, "sources", "commands"):
        pd.testing.assert_frame_equal(getattr(new, name), getattr(old, name), obj=name)


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


def add_frames(store, info, chunk_numbers) -> None:
    for chunk in chunk_numbers:
        store.add_frame(info, "inbound", chunk + 1, chunk, 20 * (chunk - 1), bytes([chunk % 256]) * 160, chunk)


def test_compaction_merges_segments_and_live_followers_read_each_row_once(tmp_path):
    from telnyx_nb.store import Store
    from telnyx_nb.store.recording import Follower, Recorder
    from telnyx_nb.wire import media as wire_media

    path = tmp_path / "rec"
    store = Store()
    recorder = Recorder(store, path, l16_byteorder="big", clocks=dict, forget_flushed=True, compact_parts=4)
    info = store.start_stream(wire_media.Start("s", 1, CCID, wire_media.MediaFormat("PCMU", 8000)), 1, 0, False)
    followers = {every: Follower(path, Store()) for every in (1, 2, 3, 5, 7, 100)}
    for flush in range(1, 16):
        add_frames(store, info, range(3 * flush - 2, 3 * flush + 1))
        assert recorder.flush()
        for every, follower in followers.items():
            if flush % every == 0:
                follower.refresh()
                assert len(follower.store.table("frames")) == 3 * flush
    parts = sorted(p.name for p in (path / "frames").iterdir())
    assert parts == ["part-000001-000004.parquet", "part-000005-000008.parquet", "part-000009-000012.parquet",
                     "part-000013.parquet", "part-000014.parquet", "part-000015.parquet"]
    recorder.close(1.0)                                         # merges what is left
    assert sorted(p.name for p in (path / "frames").iterdir())[-1] == "part-000013-000015.parquet"
    for follower in followers.values():
        follower.refresh()
        assert follower.store.table("frames")["chunk"].tolist() == list(range(1, 46))
    loaded = tnb.load(path)
    assert loaded.frames["chunk"].tolist() == list(range(1, 46)) and loaded.manifest["torn_rows"] == 0
    assert len(loaded.audio("s")) == 45 * 160


def test_a_kill_at_any_point_of_a_compaction_leaves_a_whole_recording(tmp_path, monkeypatch):
    """Every state the directory passes through while segments are merged (after each rename
    and each delete) is copied: each copy loads every flushed row once, a recorder resumed on
    it goes on without losing or repeating one, and a live follower read through them all."""
    from telnyx_nb.store import Store
    from telnyx_nb.store.recording import Follower, Recorder, read
    from telnyx_nb.wire import media as wire_media

    path, states = tmp_path / "rec", []
    store = Store()
    recorder = Recorder(store, path, l16_byteorder="big", clocks=dict, forget_flushed=True, compact_parts=3)
    info = store.start_stream(wire_media.Start("s", 1, CCID, wire_media.MediaFormat("PCMU", 8000)), 1, 0, False)
    follower = Follower(path, Store())
    compacting = []
    real_compact, real_replace, real_unlink = recorder._compact, os.replace, Path.unlink

    def snapshot() -> None:
        if compacting:
            states.append((shutil.copytree(path, tmp_path / f"state-{len(states)}"), recorder._rows["frames"]))
            follower.refresh()
            chunks_read = follower.store.table("frames")["chunk"].tolist()
            assert chunks_read == list(range(1, len(chunks_read) + 1))

    def compact(at_least: int) -> None:
        compacting.append(True)
        try:
            real_compact(at_least)
        finally:
            compacting.clear()

    def replace(src, dst) -> None:
        real_replace(src, dst)
        snapshot()

    def unlink(self, missing_ok=False) -> None:
        real_unlink(self, missing_ok=missing_ok)
        snapshot()

    monkeypatch.setattr(recorder, "_compact", compact)
    monkeypatch.setattr(recording.os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    for flush in range(1, 8):
        add_frames(store, info, range(2 * flush - 1, 2 * flush + 1))
        assert recorder.flush()
    monkeypatch.undo()
    assert len(states) >= 10                                     # merged file, manifest, one per deleted segment
    follower.refresh()
    assert follower.store.table("frames")["chunk"].tolist() == list(range(1, 15))
    for state, flushed_rows in states:
        loaded = tnb.load(state)
        chunks_loaded = loaded.frames["chunk"].tolist()
        assert chunks_loaded == list(range(1, flushed_rows + 1)), state.name
        assert loaded.manifest["torn_rows"] == 0
        resumed, _ = read(state, payloads_in_memory=True)         # the capture restarted on it
        again = Recorder(resumed, state, l16_byteorder="big", clocks=dict, compact_parts=3)
        stream = resumed.streams[0]
        add_frames(resumed, stream, range(flushed_rows + 1, flushed_rows + 4))
        assert again.flush()
        again.close(1.0)
        assert tnb.load(state).frames["chunk"].tolist() == list(range(1, flushed_rows + 4)), state.name
        files = recording._segment_files(state / "frames")
        merged = [(first, last) for first, last, _ in files if last > first]
        assert not [name for first, last, name in files                      # no merged segment is left
                    if first == last and any(a <= first <= b for a, b in merged)], state.name


def test_reads_in_a_loop_ask_for_a_flush_at_most_every_read_flush_interval(tmp_path):
    with tnb.Receiver(record_to=tmp_path / "rec", flush_interval_s=30, read_flush_interval_s=0.25) as rx:
        if not rx.process:
            pytest.skip("a capture thread is read directly, never flushed for a read")
        send_call(rx, "s1", range(1, 4))
        wait_until(lambda: len(rx.frames) == 3)
        before, end, reads = rx.health()["recording_flushes"], time.monotonic() + 1.0, 0
        while time.monotonic() < end:
            assert len(rx.frames) == 3
            reads += 1
        assert reads > 20 and rx.health()["recording_flushes"] - before <= 5
