"""The read path (issue 11): label and id columns are ``category`` with string categories in every
table, live (both capture modes) and loaded alike, and identical; a Follower reads each segment once;
``frames`` decodes each stored row once and hands out copies; quality() maps a recording's payload files.

Timing is in benchmarks/bench_read.py, not here.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_receiver import CCID, TONE, chunks, envelope, media_frame, post, rtp_packets, start_frame, udp_send, ws_send

import telnyx_nb as tnb
from telnyx_nb.quality import quality
from telnyx_nb.session import StoreSession
from telnyx_nb.store import Store, recording
from telnyx_nb.store.columns import category, label_dtype, labels
from telnyx_nb.store.schema import LABEL_COLUMNS, TABLES
from telnyx_nb.wire import codecs, media, rtp
from telnyx_nb.wire import telephone_event as te

from waiting import wait_until

LEGACY = Path(__file__).parent / "data" / "session-v1"
PCMU = chunks(codecs.ulaw_encode(TONE[:1600]), 160)
#: The string dtype of this pandas (object on pandas 2, str on pandas 3).
STRING = pd.Index([], dtype=str).dtype
ALL_TABLES = (*TABLES, "sources", "commands")


def assert_labels(df: pd.DataFrame, table: str, *, legacy: bool = False) -> None:
    """Every label column of ``table`` is category with string categories; no other column is.
    ``legacy``: a session saved by telnyx_nb 0.1 lacks the columns added since (they are skipped)."""
    for col in LABEL_COLUMNS[table]:
        if legacy and col not in df.columns:
            continue
        dtype = df[col].dtype
        assert isinstance(dtype, pd.CategoricalDtype), (table, col, dtype)
        assert dtype.categories.dtype == STRING, (table, col, dtype.categories.dtype)
        assert all(isinstance(c, str) for c in dtype.categories), (table, col)
    others = [col for col in df.columns if col not in LABEL_COLUMNS[table]]
    assert not any(isinstance(df[col].dtype, pd.CategoricalDtype) for col in others), (table, others)


def feed_everything(rx: tnb.Receiver) -> None:
    """A row in every table, over real sockets (and a recorded command): stream (media, dtmf,
    mark, a bad frame, Telnyx's error), webhooks (a call with a leg, a transcript, a bad body),
    fork RTP (audio, a telephone event, STREP, garbage)."""
    leg = uuid.uuid4()
    command = rx.record_command("streaming_start", CCID, {"stream_url": rx.stream_url, "stream_track": "both_tracks"})
    rx.command_answered(command, "ok")
    post(rx.webhook_url, envelope("call.answered", {"call_control_id": CCID, "call_leg_id": str(leg),
                                                    "call_session_id": "session-1", "client_state": "c3RhdGU="}))
    post(rx.webhook_url, envelope("call.transcription", {"call_control_id": CCID, "transcription_data": {
        "transcript": "hello", "confidence": 0.9, "is_final": True, "transcription_track": "inbound"}}))
    post(rx.webhook_url, b"{not json")
    messages = [start_frame("s-all")]
    messages += [media_frame("s-all", c + 1, track, c, PCMU[c - 1]) for c in range(1, 6) for track in ("inbound",
                                                                                                         "outbound")]
    messages += [media.dumps(media.Dtmf("s-all", 20, "5")), media.dumps(media.Mark("s-all", 21, "greeting")),
                 "{oops", media.dumps(media.ErrorFrame.for_code(100003, "s-all"))]
    asyncio.run(ws_send(rx.stream_url, messages))
    rx.expect_fork(CCID)
    udp_send(rx.fork_rx, rtp_packets(3, [1, 2, 3], {n: PCMU[n] for n in (1, 2, 3)}))
    udp_send(rx.fork_rx, [rtp.build_rtp(rtp.RtpPacket(101, 4, 480, 3, te.build(te.TelephoneEvent(5, True, 10, 800))))])
    strep = rtp.StrepHeader(leg, direction="transmitted")
    udp_send(rx.fork_tx, [rtp.build_fork_packet(rtp.ForkPacket(rtp.RtpPacket(0, 9, 0, 8, PCMU[0]), strep))])
    udp_send(rx.fork_rx, [b"\x00garbage"])
    wait_until(lambda: len(rx.frames) == 10 and len(rx.rtp) == 5 and len(rx.events) == 2 and len(rx.dtmf) == 2
               and len(rx.marks) == 1 and len(rx.stream_errors) == 2 and len(rx.webhook_errors) == 1
               and len(rx.rtp_errors) == 1, timeout=10)


@pytest.mark.parametrize("process", [True, False], ids=["process", "thread"])
def test_label_columns_are_category_live_and_loaded_and_identical(tmp_path, process):
    path = tmp_path / "rec"
    with pytest.warns(UserWarning, match="unverified"):
        rx = tnb.Receiver(record_to=path, process=process, flush_interval_s=0.05).start()
    try:
        feed_everything(rx)
        live = {name: getattr(rx, name) for name in ALL_TABLES}
    finally:
        rx.stop()
    loaded = tnb.load(path)
    saved = tnb.load(rx.save(tmp_path / "saved"))
    for name in ALL_TABLES:
        assert len(live[name]), name
        assert_labels(live[name], name)
        pd.testing.assert_frame_equal(getattr(loaded, name), live[name], obj=name)
        pd.testing.assert_frame_equal(getattr(saved, name), live[name], obj=name)
        pd.testing.assert_frame_equal(getattr(rx, name), live[name], obj=name)    # after stop: the same
    assert set(live["rtp"]["call_leg_id"].dropna()) and live["dtmf"]["source"].tolist() == ["stream", "fork"]


def test_a_legacy_session_reads_with_category_labels():
    session = tnb.load(LEGACY)
    for name in ALL_TABLES:
        assert_labels(getattr(session, name), name, legacy=True)
    frames = session.frames
    assert len(frames) and set(frames["track"]) <= {"inbound", "outbound"}
    assert len(session.audio(frames["call_control_id"].iloc[0]))


def test_category_helpers():
    c = category(["b", None, "a", "b", float("nan")])
    assert c.dtype == label_dtype(["a", "b"]) and c.categories.dtype == STRING
    assert c.codes.tolist() == [1, -1, 0, 1, -1]
    fixed = category(["outbound", "sideways", None], ["inbound", "outbound"])
    assert list(fixed.categories) == ["inbound", "outbound"] and fixed.codes.tolist() == [1, -1, -1]
    assert category([]).dtype == label_dtype([])
    picked = labels(["s1", None, "s0"], np.array([2, 1, 0, 0]))
    assert list(picked.categories) == ["s0", "s1"] and picked.codes.tolist() == [0, -1, 1, 1]


def write_seconds(store: Store, recorder: recording.Recorder, info, first: int, seconds: int) -> None:
    """``seconds`` flushes of 50 inbound frames each, from chunk ``first``."""
    for second in range(seconds):
        for k in range(50):
            chunk = first + 50 * second + k
            store.add_frame(info, "inbound", chunk, chunk, 20 * (chunk - 1), PCMU[chunk % 10],
                            10**18 + chunk * 20_000_000)
        recorder.flush()


def recorded_stream(path, stream_id: str):
    """A Store written to a recording at ``path`` as the capture writes it, and one started stream."""
    writer = Store()
    recorder = recording.Recorder(writer, path, l16_byteorder="big", clocks=dict, forget_flushed=True)
    info = writer.start_stream(media.Start(stream_id, 1, CCID, media.MediaFormat("PCMU", 8000)), 10**18, 10**18, True)
    return writer, recorder, info


def test_a_follower_reads_each_segment_once_and_only_what_is_new(tmp_path):
    path = tmp_path / "rec"
    writer, recorder, info = recorded_stream(path, "s-f")
    write_seconds(writer, recorder, info, 1, 3)
    follower = recording.Follower(path, Store())
    follower.refresh()
    session = StoreSession(follower.store)
    first = session.frames
    assert first["chunk"].tolist() == list(range(1, 151))
    for part in (path / "frames").iterdir():       # what was read is not read again...
        part.write_bytes(b"not parquet any more")
    follower.refresh()
    pd.testing.assert_frame_equal(session.frames, first)
    write_seconds(writer, recorder, info, 151, 2)   # ...and what is new is
    follower.refresh()
    frames = session.frames
    assert frames["chunk"].tolist() == list(range(1, 251))
    pd.testing.assert_frame_equal(frames.iloc[:150], first)
    assert session.audio(CCID).samples.size == 250 * 160
    assert follower.store.payload_dir == path / "payloads" and not any(follower.store._frame_payloads[0])


def test_frames_reads_decode_each_row_once_and_hand_out_copies():
    """``frames`` decodes the packed rows once (``Store._frame_fields``) and reads after that copy
    them: rows appended since and rows forgotten show, and a DataFrame handed out is the caller's."""
    def new_store() -> tuple[Store, object]:
        store = Store()
        info = store.start_stream(media.Start("s-c", 1, CCID, media.MediaFormat("PCMU", 8000)), 10**18, 10**18, True)
        return store, info

    store, info = new_store()
    session = StoreSession(store)
    for chunk in range(1, 101):
        store.add_frame(info, "inbound", chunk, chunk, 20 * (chunk - 1), PCMU[chunk % 10], 10**18 + chunk * 20_000_000)
    first = session.frames
    first.loc[0, "chunk"] = -5                           # the caller's copy: the next read does not see it
    first["n_bytes"] = 0
    for chunk in range(101, 151):
        store.add_frame(info, "outbound", chunk, chunk, 20 * (chunk - 1), PCMU[chunk % 10],
                        10**18 + chunk * 20_000_000)
    again = session.frames
    assert again["chunk"].tolist() == list(range(1, 151)) and (again["n_bytes"] == 160).all()
    fresh, _ = new_store()                               # the same rows in a store never read before
    fresh.frames[:] = store.frames
    fresh.streams[:] = store.streams
    pd.testing.assert_frame_equal(again, StoreSession(fresh).frames)
    assert again["track"].tolist() == ["inbound"] * 100 + ["outbound"] * 50
    store.forget({"frames": 120}, {})                    # then more rows than were forgotten
    for chunk in range(151, 281):
        store.add_frame(info, "inbound", chunk, chunk, 20 * (chunk - 1), PCMU[1], 10**18 + chunk * 20_000_000)
    assert session.frames["chunk"].tolist() == list(range(121, 281))
    assert store.nbytes() > len(store.frames)            # the decoded fields are counted


def test_a_recordings_payloads_are_mapped_for_quality(tmp_path):
    path = tmp_path / "rec"
    writer, recorder, info = recorded_stream(path, "s-m")
    write_seconds(writer, recorder, info, 1, 2)
    recorder.close(1.0)
    session = tnb.load(path)
    store = session._store
    view = store.payload_view("frames", 0)
    assert view.readonly and bytes(view) == store.payload("frames", 0) == b"".join(PCMU[c % 10] for c in range(1, 101))
    assert store.payload_view("frames", 1).nbytes == 0      # the outbound track's file is empty
    assert store.payload_view("rtp", 3).nbytes == 0         # no such file
    read_whole = quality(session._table("frames"), session._table("rtp"), payload=lambda k, n: session._payload(k, n))
    pd.testing.assert_frame_equal(session.quality(), read_whole)
