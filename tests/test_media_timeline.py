"""Media on its own timeline (issue 9): audio placed by media time, telephone events as DTMF,
comfort noise, a call's streams and SSRCs on one timeline, ``Audio.start`` and two channels.

The issue's own case goes through real UDP sockets into a live Receiver; the finer rules are
pinned on a Store (the same code path, without waiting for sockets); the sandbox's fork sends
RFC 4733 events for a scenario's digits, end to end.
"""

from __future__ import annotations

import io
import shutil
import socket
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import telnyx_nb as tnb
from telnyx_nb.audio import Audio, assemble, assemble_fork
from telnyx_nb.sandbox import Scenario
from telnyx_nb.session import StoreSession
from telnyx_nb.store import Store, recording
from telnyx_nb.wire import codecs, media, rtp
from telnyx_nb.wire import telephone_event as te

from waiting import timeout, wait_until

CCID = "v3:timeline"
RATE = 8000
TONE = (8000 * np.sin(2 * np.pi * 440 * np.arange(RATE * 4) / RATE)).astype(np.int16)
PCMU = codecs.ulaw_encode(TONE)
T0 = 1_700_000_000_000_000_000         # arrival times of the Store-level tests (ns)


def packet(seq: int, ts: int, payload: bytes, pt: int = 0, ssrc: int = 0x5151, marker: bool = False) -> bytes:
    return rtp.build_rtp(rtp.RtpPacket(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, payload, marker))


def event(code: int, duration: int, end: bool = False) -> bytes:
    return te.build(te.TelephoneEvent(code, end, 10, duration))


def issue_case(seq0: int = 65_520, ts0: int = 4_294_963_000) -> list[bytes]:
    """25 PCMU packets, 5 PT-101 packets (4 bytes, one RTP timestamp), 25 PCMU packets, one PT-13
    packet; sequence numbers and timestamps both wrap on the way."""
    packets, seq = [], seq0
    for k in range(25):
        packets.append(packet(seq, ts0 + 160 * k, PCMU[160 * k:160 * (k + 1)]))
        seq += 1
    for k, (duration, end) in enumerate(((160, False), (480, False), (800, True), (800, True), (800, True))):
        packets.append(packet(seq, ts0 + 4000, event(5, duration, end), pt=101, marker=k == 0))
        seq += 1
    for k in range(30, 55):
        packets.append(packet(seq, ts0 + 160 * k, PCMU[160 * k:160 * (k + 1)]))
        seq += 1
    packets.append(packet(seq, ts0 + 8800, b"\x40", pt=13))
    return packets


def udp_send(target: str, packets: list[bytes]) -> None:
    _, host, port = target.split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in packets:
            sock.sendto(data, (host, int(port)))


def fork_store(packets: list[bytes], *, target: str = "rx", claim: str | None = CCID, step_ns: int = 20_000_000,
               store: Store | None = None, start_ns: int = T0, **kw) -> tuple[Store, StoreSession]:
    store = store or Store(**kw)
    if claim is not None:
        store.claim_fork(claim)
    for i, data in enumerate(packets):
        store.add_packet(target, rtp.parse_fork_packet(data), start_ns + i * step_ns)
    return store, StoreSession(store)


# -- the issue's case, through real sockets ---------------------------------------------------------

def test_events_and_comfort_noise_keep_the_timeline_through_a_live_receiver():
    with pytest.warns(UserWarning, match="unverified"):
        rx = tnb.Receiver().start()
    try:
        rx.expect_fork(CCID)
        packets = issue_case()
        udp_send(rx.fork_rx, packets)
        wait_until(lambda: len(rx.rtp) == len(packets) and len(rx.dtmf) == 1, what="56 RTP packets and 1 DTMF row")
        audio = rx.audio(CCID, "rx", source="fork")
        assert len(audio) == 8_800 and audio.rate == RATE
        np.testing.assert_array_equal(audio.samples[:4_000], codecs.ulaw_decode(PCMU[:4_000]))
        assert (audio.samples[4_000:4_800] == 0).all()              # the digit's 100 ms: silence, no clicks
        np.testing.assert_array_equal(audio.samples[4_800:], codecs.ulaw_decode(PCMU[4_800:8_800]))
        assert audio.left_out == {}
        assert audio.start == rx.rtp["received_at"].iloc[0] and str(audio.start.tz) == "UTC"

        dtmf = rx.dtmf
        assert dtmf[["call_control_id", "digit", "source", "ssrc", "duration_ms", "end"]].values.tolist() == \
            [[CCID, "5", "fork", 0x5151, 100.0, True]]
        assert pd.isna(dtmf.loc[0, "stream_id"]) and dtmf.loc[0, "sequence_number"] == (65_520 + 25) & 0xFFFF
        assert set(rx.rtp["encoding"]) == {"PCMU", "telephone-event", "CN"}
    finally:
        rx.stop()


# -- fork placement by RTP timestamp ---------------------------------------------------------------

@pytest.mark.parametrize("ms", [[10] * 8, [30] * 4, [40] * 3, [20, 10, 30, 40, 20, 10, 20]])
def test_packets_of_any_length_keep_the_timeline(ms):
    """Packets of 10/30/40 ms or a mix, one lost: the loss is silence of exactly its length."""
    starts = np.concatenate(([0], np.cumsum(ms)[:-1])) * 8
    lost = len(ms) // 2
    packets = [packet(100 + k, 5_000 + s, PCMU[s:s + 8 * m]) for k, (s, m) in enumerate(zip(starts, ms, strict=True))
               if k != lost]
    _, session = fork_store(packets)
    audio = session.audio(CCID, "rx", source="fork")
    expected = codecs.ulaw_decode(PCMU[:8 * sum(ms)]).copy()
    expected[starts[lost]:starts[lost] + 8 * ms[lost]] = 0
    np.testing.assert_array_equal(audio.samples, expected)


def test_an_empty_payload_keeps_its_place_and_missing_media_is_silence():
    packets = [packet(1, 0, PCMU[:160]), packet(2, 160, b""), packet(3, 320, PCMU[320:480]),
               packet(6, 800, PCMU[800:960])]                   # 4 and 5 lost: 40 ms
    _, session = fork_store(packets)
    samples = session.audio(CCID, "rx", source="fork").samples
    assert len(samples) == 960
    np.testing.assert_array_equal(samples[320:480], codecs.ulaw_decode(PCMU[320:480]))
    assert (samples[160:320] == 0).all() and (samples[480:800] == 0).all()
    np.testing.assert_array_equal(samples[800:], codecs.ulaw_decode(PCMU[800:960]))


def test_a_timestamp_discontinuity_is_handled_like_a_sequence_restart():
    """The timestamp jumps back (a re-INVITE rebased it): the media goes on right after."""
    packets = [packet(10 + k, 90_000 + 160 * k, PCMU[160 * k:160 * (k + 1)]) for k in range(5)]
    packets += [packet(15 + k, 7 + 160 * k, PCMU[800 + 160 * k:960 + 160 * k]) for k in range(5)]
    packets += [packet(21 + k, 2_000_000_000 + 160 * k, PCMU[1760 + 160 * k:1920 + 160 * k]) for k in range(3)]
    _, session = fork_store(packets)                              # ...and jumps 70 h ahead after seq 20 was lost
    samples = session.audio(CCID, "rx", source="fork").samples
    assert len(samples) == 13 * 160 + 160
    np.testing.assert_array_equal(samples[:1600], codecs.ulaw_decode(PCMU[:1600]))
    assert (samples[1600:1760] == 0).all()
    np.testing.assert_array_equal(samples[1760:], codecs.ulaw_decode(PCMU[1760:2240]))


def test_comfort_noise_fills_its_period_at_its_level():
    """Silence suppression: CN at -40 dBov, then 2 s without packets, then a talkspurt (marker)."""
    packets = [packet(1, 0, PCMU[:160]), packet(2, 160, bytes([40]), pt=13),
               packet(3, 16_160, PCMU[160:320], marker=True)]
    _, session = fork_store(packets)
    samples = session.audio(CCID, "rx", source="fork").samples
    assert len(samples) == 16_320
    noise = samples[160:16_160].astype(np.float64)
    assert np.sqrt(np.mean(noise ** 2)) == pytest.approx(te.comfort_noise_rms(40), rel=0.05)   # ~328
    np.testing.assert_array_equal(samples[16_160:], codecs.ulaw_decode(PCMU[160:320]))
    np.testing.assert_array_equal(session.audio(CCID, "rx", source="fork").samples, samples)   # reproducible


def test_other_payload_types_are_left_out_and_counted():
    packets = [packet(1, 0, PCMU[:160]), packet(2, 160, b"\x01\x02\x03", pt=96), packet(3, 160, PCMU[160:320]),
               packet(4, 320, b"\x00" * 20, pt=98), packet(5, 320, b"\x00" * 20, pt=98),
               packet(6, 320, PCMU[320:480])]
    _, session = fork_store(packets)
    audio = session.audio(CCID, "rx", source="fork")
    np.testing.assert_array_equal(audio.samples, codecs.ulaw_decode(PCMU[:480]))
    assert audio.left_out == {96: 1, 98: 2} and "left out" in repr(audio)
    only_other = fork_store([packet(1, 0, b"\x00" * 160, pt=96)], claim="v3:other")[1]
    with pytest.raises(LookupError, match="pass encoding="):
        only_other.audio("v3:other", "rx", source="fork")
    assert len(only_other.audio("v3:other", "rx", source="fork", encoding="PCMA")) == 160


def test_a_telephone_event_type_other_than_101_is_named_by_payload_types():
    packets = [packet(1, 0, PCMU[:160]), packet(2, 160, event(11, 800, True), pt=97),
               packet(3, 960, PCMU[160:320])]
    _, session = fork_store(packets, payload_types={97: "telephone-event"})
    assert session.dtmf["digit"].tolist() == ["#"]
    assert len(session.audio(CCID, "rx", source="fork")) == 1120
    with pytest.raises(codecs.UnsupportedCodecError):
        tnb.Receiver(payload_types={97: "telephone-evnt"})
    tnb.Receiver(payload_types={97: "telephone-event/16000", 98: "CN"})       # accepted (not started)


# -- telephone events -> dtmf --------------------------------------------------------------------

def test_one_dtmf_row_per_event_however_many_end_packets():
    packets = [packet(1, 0, PCMU[:160])]
    packets += [packet(2 + k, 160, event(1, 160 * (k + 1), end=k >= 4), pt=101) for k in range(8)]   # 4 ends
    packets += [packet(10, 1_440, event(2, 160), pt=101), packet(11, 1_440, event(2, 320), pt=101)]  # no end...
    packets += [packet(12, 2_000, event(3, 400, True), pt=101)]                    # ...the next event closes it
    packets += [packet(13, 2_000, event(3, 400, True), pt=101), packet(14, 2_400, PCMU[:160])]
    _, session = fork_store(packets)
    dtmf = session.dtmf
    assert dtmf[["digit", "source", "duration_ms", "end", "sequence_number"]].values.tolist() == [
        ["1", "fork", 100.0, True, 2], ["2", "fork", 40.0, False, 10], ["3", "fork", 50.0, True, 12]]
    assert dtmf["call_control_id"].eq(CCID).all() and dtmf["ssrc"].eq(0x5151).all()
    assert str(dtmf["end"].dtype) == "boolean" and str(dtmf["ssrc"].dtype) == "Int64"


def test_an_event_whose_end_never_comes_is_written_when_its_source_moves_on():
    packets = [packet(1, 0, event(9, 160), pt=101), packet(2, 0, event(9, 320), pt=101)]
    store, session = fork_store(packets)
    assert session.dtmf.empty                                        # still going on
    store.add_packet("rx", rtp.parse_fork_packet(packet(3, 320, PCMU[:160])), T0 + 100_000_000)
    assert session.dtmf.empty                                        # 0.1 s later: may still end
    store.add_packet("rx", rtp.parse_fork_packet(packet(4, 480, PCMU[:160])), T0 + 900_000_000)
    assert session.dtmf[["digit", "duration_ms", "end"]].values.tolist() == [["9", 40.0, False]]


def test_stream_dtmf_rows_say_stream_and_unattributed_fork_rows_have_no_call():
    store = Store()
    info = store.start_stream(media.Start("s1", 1, CCID, media.MediaFormat("PCMU", RATE)), T0, T0, False)
    store.add_dtmf(info, "2025-06-05T08:54:19.698408Z", 5, "7", T0)
    fork_store([packet(1, 0, event(0, 800, True), pt=101)], claim=None, store=store, start_ns=T0 + 1)
    dtmf = StoreSession(store).dtmf
    assert list(dtmf.columns) == ["received_at", "stream_id", "call_control_id", "occurred_at", "sequence_number",
                                  "digit", "source", "ssrc", "duration_ms", "end"]
    assert dtmf["source"].tolist() == ["stream", "fork"]      # labels are category: missing is NaN
    assert dtmf["stream_id"].iloc[0] == "s1" and pd.isna(dtmf["stream_id"].iloc[1])
    assert dtmf["call_control_id"].iloc[0] == CCID and pd.isna(dtmf["call_control_id"].iloc[1])
    assert pd.isna(dtmf.loc[0, "ssrc"]) and pd.isna(dtmf.loc[0, "duration_ms"]) and pd.isna(dtmf.loc[0, "end"])
    assert pd.isna(dtmf.loc[1, "occurred_at"]) and dtmf.loc[1, "ssrc"] == 0x5151


def test_fork_dtmf_survives_save_and_load_and_old_recordings_read_as_stream_rows(tmp_path):
    store, session = fork_store(issue_case())
    info = store.start_stream(media.Start("s1", 1, CCID, media.MediaFormat("PCMU", RATE)), T0, T0, False)
    store.add_dtmf(info, None, 5, "7", T0)
    loaded = tnb.load(session.save(tmp_path / "rec"))
    pd.testing.assert_frame_equal(loaded.dtmf, session.dtmf)
    np.testing.assert_array_equal(loaded.audio(CCID, "rx", source="fork").samples,
                                  session.audio(CCID, "rx", source="fork").samples)

    # a recording made before the fork columns: the version-2 fixture with its dtmf segment cut down
    old_root = shutil.copytree(Path(__file__).parent / "data" / "recording-v2", tmp_path / "old")
    for part in (old_root / "dtmf").glob("*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.select(["received_ns", "stream", "occurred_at", "sequence_number", "digit"]), part)
    old = recording.read(old_root)[0].table("dtmf")
    assert old["source"].tolist() == ["stream"] and old["end"].isna().all() and old["digit"].tolist() == ["5"]


# -- streams ---------------------------------------------------------------------------------------

def stream_session(frames: list[tuple[int, int, bytes]], *, encoding: str | None = "PCMU", rate: int = RATE,
                   sid: str = "s1", ccid: str = CCID, store: Store | None = None, start_ns: int = T0
                   ) -> tuple[Store, StoreSession]:
    """(chunk, timestamp, payload) frames on one stream's inbound track, 20 ms apart."""
    store = store or Store()
    if encoding is None:
        info = store.stream(sid)
    else:
        info = store.start_stream(media.Start(sid, 1, ccid, media.MediaFormat(encoding, rate)), start_ns, start_ns,
                                  False)
    for i, (chunk, ts, payload) in enumerate(frames):
        store.add_frame(info, "inbound", i + 2, chunk, ts, payload, start_ns + 20_000_000 * (i + 1))
    return store, StoreSession(store)


def test_stream_chunks_of_mixed_length_and_gaps_sized_by_timestamp():
    """10/30/40 ms chunks with millisecond timestamps; chunk 4 (40 ms) lost: 40 ms of silence, not 20."""
    ms = [20, 10, 30, 40, 20, 20, 10]
    starts = np.concatenate(([0], np.cumsum(ms)[:-1]))
    frames = [(k + 1, int(s), PCMU[8 * s:8 * (s + m)])
              for k, (s, m) in enumerate(zip(starts, ms, strict=True)) if k != 3]
    samples = stream_session(frames)[1].audio(CCID).samples
    expected = codecs.ulaw_decode(PCMU[:8 * sum(ms)]).copy()
    expected[8 * starts[3]:8 * (starts[3] + 40)] = 0
    np.testing.assert_array_equal(samples, expected)
    # the same frames with timestamps in no known unit: the gap is one typical frame per chunk
    odd = [(c, 7 * c * c, p) for c, _, p in frames]
    assert len(stream_session(odd)[1].audio(CCID)) == 8 * (sum(ms) - 40) + 8 * 20


def test_an_empty_stream_chunk_keeps_its_place():
    frames = [(1, 0, PCMU[:160]), (2, 20, b""), (3, 40, PCMU[320:480])]
    samples = stream_session(frames)[1].audio(CCID).samples
    assert len(samples) == 480 and (samples[160:320] == 0).all()


def test_a_stream_timestamp_discontinuity_and_a_chunk_restart_add_no_silence():
    """The reviewer's input: chunks 1..20 (ms timestamps), 21..30 all stamped 10**15, then a
    confirmed chunk restart at 10**12 (timestamps 0, 20, ...): every frame once, end to end, no
    silence for the jumps (it used to try to allocate 291 TiB); talk_time reads it too."""
    frames = [(1 + k, 20 * k, PCMU[160 * k:160 * (k + 1)]) for k in range(20)]
    frames += [(21 + k, 10**15, PCMU[160 * (20 + k):160 * (21 + k)]) for k in range(10)]
    frames += [(10**12 + k, 20 * k, PCMU[160 * (30 + k):160 * (31 + k)]) for k in range(10)]
    _, session = stream_session(frames)
    np.testing.assert_array_equal(session.audio(CCID).samples, codecs.ulaw_decode(PCMU[:160 * 40]))
    summary = tnb.quality.talk_time(session, CCID).summary
    assert summary["duration_s"].tolist() == [0.8] and summary["talk_s"].sum() > 0


def test_a_stream_gap_gets_no_more_silence_than_its_missing_chunks_explain():
    """Chunk 3 lost while the timestamps claim an hour passed: one typical frame of silence. A
    timestamp discontinuity elsewhere leaves the millisecond unit, so a lost 40 ms chunk after it
    is still 40 ms. One huge chunk does not make each missing chunk longer."""
    frames = [(1, 0, PCMU[:160]), (2, 20, PCMU[160:320]), (4, 3_600_000, PCMU[480:640])]
    assert len(stream_session(frames)[1].audio(CCID)) == 4 * 160
    ms = [20, 20, 20, 40] + [20] * 6       # chunk 2 stamped far ahead, chunk 4 (40 ms) lost
    starts = np.concatenate(([0], np.cumsum(ms)[:-1]))
    frames = [(k + 1, int(s) + (10**9 if k == 1 else 0), PCMU[8 * s:8 * (s + m)])
              for k, (s, m) in enumerate(zip(starts, ms, strict=True)) if k != 3]
    assert len(stream_session(frames)[1].audio(CCID)) == 8 * sum(ms)
    huge = bytes(PCMU[:160]) * 1000       # one 20 s chunk; then 1996 chunks lost, "1 s" each by timestamp
    frames = [(1, 0, PCMU[:160]), (2, 20, huge), (3, 20_020, PCMU[:160]), (2_000, 20_040 + 1_996_000, PCMU[:160])]
    assert len(stream_session(frames)[1].audio(CCID)) == 160 * 1_002 + 1_996 * 160 + 160


def test_assemble_by_number_adds_no_silence_for_a_restart_or_a_wild_number():
    pcmu = codecs.get_codec("PCMU")
    payload = PCMU[:640]
    offsets, lengths = np.arange(0, 640, 160), np.full(4, 160)
    restart = assemble(np.array([1, 2, 10**12, 10**12 + 1]), offsets, lengths, payload, pcmu)
    np.testing.assert_array_equal(restart, codecs.ulaw_decode(payload))
    wild = assemble(np.array([1, 2, 10**12, 3]), offsets, lengths, payload, pcmu)     # 10**12: a stray
    np.testing.assert_array_equal(wild, codecs.ulaw_decode(PCMU[:320] + PCMU[480:640]))


def test_a_stream_without_start_takes_its_rate_from_the_codec(tmp_path):
    frames = [(k + 1, 20 * k, PCMU[160 * k:160 * (k + 1)]) for k in range(20)]
    _, session = stream_session(frames, encoding=None, sid="no-start")
    with pytest.raises(LookupError, match="encoding="):
        session.audio("no-start")
    audio = session.audio("no-start", encoding="PCMU")
    assert (len(audio), audio.rate) == (3_200, 8_000)
    loaded = tnb.load(session.save(tmp_path / "rec"))
    audio = loaded.audio("no-start", encoding="PCMU")
    assert (len(audio), audio.rate) == (3_200, 8_000)


# -- one timeline per call ----------------------------------------------------------------------------

def test_ssrcs_of_a_call_join_by_sequence_number_or_by_arrival_gap():
    a = [packet(100 + k, 1_000 + 160 * k, PCMU[160 * k:160 * (k + 1)], ssrc=0xA) for k in range(12)]
    b = [packet(114 + k, 555_555 + 160 * k, PCMU[160 * (14 + k):160 * (15 + k)], ssrc=0xB) for k in range(100)]
    store, session = fork_store(a)
    store.claim_fork(CCID)                                           # B: the same call (its claim)
    fork_store(b, store=store, claim=None, start_ns=T0 + 14 * 20_000_000)
    samples = session.audio(CCID, "rx", source="fork").samples
    assert len(samples) == 114 * 160                                  # 112, 113 lost: 2 frames of silence
    np.testing.assert_array_equal(samples[:1920], codecs.ulaw_decode(PCMU[:1920]))
    assert (samples[1920:2240] == 0).all()
    np.testing.assert_array_equal(samples[2240:], codecs.ulaw_decode(PCMU[2240:18_240]))

    c = [packet(40_000 + k, 9 + 160 * k, PCMU[:160], ssrc=0xC) for k in range(5)]   # numbers do not continue
    store.claim_fork(CCID)
    fork_store(c, store=store, claim=None, start_ns=T0 + (114 + 50) * 20_000_000)   # 1 s after B's last
    joined = session.audio(CCID, "rx", source="fork")
    assert len(joined) == 114 * 160 + 50 * 160 + 5 * 160
    assert (joined.samples[114 * 160:164 * 160] == 0).all()
    assert joined.start == pd.Timestamp(T0, tz="UTC")
    assert len(session.audio(ssrc=0xB)) == 100 * 160                 # one SSRC on its own


def test_streams_of_a_call_join_by_arrival_gap():
    store, session = stream_session([(k + 1, 20 * k, PCMU[:160]) for k in range(10)], sid="first")
    stream_session([(k + 1, 20 * k, PCMU[:160]) for k in range(5)], sid="second", store=store,
                   start_ns=T0 + 300_000_000)                         # its first frame 120 ms after the last
    audio = session.audio(CCID)
    assert len(audio) == 1600 + 5 * 160 + 800 and audio.start == pd.Timestamp(T0 + 20_000_000, tz="UTC")


def test_an_unattributed_source_is_reached_by_ssrc():
    _, session = fork_store([packet(k, 160 * k, PCMU[:160], ssrc=0xBEEF) for k in range(4)], claim=None)
    assert session.rtp["call_control_id"].isna().all()
    audio = session.audio(ssrc=0xBEEF, source="fork")
    assert len(audio) == 640 and audio.start == pd.Timestamp(T0, tz="UTC")
    assert len(session.audio(ssrc=0xBEEF, track="rx")) == 640
    with pytest.raises(LookupError):
        session.audio(ssrc=0xBEEF, track="tx")
    with pytest.raises(ValueError, match="source='fork'"):
        session.audio(ssrc=0xBEEF, source="stream")
    with pytest.raises(ValueError):
        session.audio()


def test_both_tracks_come_time_aligned_as_two_channels(tmp_path):
    store = Store()
    store.claim_fork(CCID)
    rx_packets = [packet(k, 160 * k, PCMU[160 * k:160 * (k + 1)], ssrc=1) for k in range(10)]
    tx_packets = [packet(k, 77 + 160 * k, codecs.alaw_encode(TONE[160 * k:160 * (k + 1)]), pt=8, ssrc=2)
                  for k in range(5)]
    for k, data in enumerate(rx_packets):
        store.add_packet("rx", rtp.parse_fork_packet(data), T0 + 20_000_000 * k)
    for k, data in enumerate(tx_packets):                            # starts 100 ms after rx
        store.add_packet("tx", rtp.parse_fork_packet(data), T0 + 100_000_000 + 20_000_000 * k)
    both = StoreSession(store).audio(CCID, "both", source="fork")
    assert both.samples.shape == (1600, 2) and both.channels == 2 and both.start == pd.Timestamp(T0, tz="UTC")
    np.testing.assert_array_equal(both.samples[:, 0], codecs.ulaw_decode(PCMU[:1600]))
    assert (both.samples[:800, 1] == codecs.alaw_decode(b"\xd5")[0]).all()
    np.testing.assert_array_equal(both.samples[800:, 1], codecs.alaw_decode(codecs.alaw_encode(TONE[:800])))
    with wave.open(str(both.to_wav(tmp_path / "both.wav"))) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (2, RATE, 1600)
        np.testing.assert_array_equal(np.frombuffer(wav.readframes(1600), "<i2").reshape(-1, 2), both.samples)
    assert "<audio" in both._repr_html_() and "2 channels" in repr(both)


def test_audio_repr_and_mono_defaults_are_unchanged():
    audio = Audio(np.zeros(8, np.int16), RATE)
    assert repr(audio) == "Audio(8 samples, 8000 Hz, 0.00 s)" and audio.channels == 1 and audio.start is None


def test_assemble_fork_is_vectorised_over_large_inputs():
    """100,000 packets with 3 % loss decode in one pass per contiguous run (no per-packet loop)."""
    n = 100_000
    keep = np.random.default_rng(1).random(n) > 0.03
    seq = np.arange(n)[keep] % 65536
    payload = np.random.default_rng(2).integers(0, 256, 160 * n, dtype=np.uint8).tobytes()
    timeline = assemble_fork(seq, (160 * np.arange(n))[keep], np.zeros(keep.sum(), np.int64),
                             np.zeros(keep.sum(), bool), (160 * np.arange(n))[keep], np.full(keep.sum(), 160),
                             np.arange(keep.sum()), payload, {0: codecs.get_codec("PCMU")}, {13}, {101})
    assert timeline is not None and len(timeline.samples) == 160 * (np.flatnonzero(keep)[-1] + 1)
    np.testing.assert_array_equal(timeline.samples[:160], codecs.ulaw_decode(payload[:160]) if keep[0] else 0)


# -- wire: RFC 4733 payloads, and extend_sequence's vectorised path ---------------------------------

def test_telephone_event_payloads_round_trip():
    for code, digit in ((0, "0"), (10, "*"), (11, "#"), (15, "D")):
        parsed = te.parse(te.build(te.TelephoneEvent(code, True, 63, 65_535)))
        assert parsed == te.TelephoneEvent(code, True, 63, 65_535) and parsed.digit == digit
        assert te.event_code(digit) == code
    assert te.parse(b"\x10\x0a\x00\xa0").digit is None                 # 16: flash, not a digit
    with pytest.raises(te.TelephoneEventError):
        te.parse(b"\x01\x80")
    with pytest.raises(ValueError):
        te.event_code("X")
    assert te.event_clock_rate("telephone-event/16000") == 16_000 and te.event_clock_rate("PCMU") is None
    assert te.comfort_noise_level(b"") == 127 and te.comfort_noise_rms(0) == 32767.0


def test_extend_sequence_vectorised_path_matches_the_reference():
    rng = np.random.default_rng(9)
    for trial in range(600):
        n = int(rng.integers(1, 80))
        numbers = int(rng.integers(0, 65_536)) + np.arange(n)
        if trial % 3 == 1:
            numbers = numbers + rng.integers(-120, 120, n)             # reordering, duplicates
        elif trial % 3 == 2:
            numbers[int(rng.integers(0, n)):] += int(rng.integers(-40_000, 40_000))   # a restart or a stray
        wrapped = (numbers % 65_536).astype(np.int64)
        assert rtp.extend_sequence(wrapped).tolist() == rtp._extend_sequence_loop(wrapped, rtp.SEQ_MOD).tolist()
        chunks = np.abs(numbers).astype(np.int64)
        assert rtp.extend_sequence(chunks, modulus=None).tolist() == rtp._extend_sequence_loop(chunks, None).tolist()


# -- the sandbox's fork sends RFC 4733 events ---------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox():
    with tnb.Sandbox() as sb:
        yield sb


def test_sandbox_fork_sends_telephone_events_for_dtmf(sandbox):
    sb = sandbox
    sb.route("+15550409000", Scenario.tone(seconds=2.5, dtmf=[(1.0, "4"), (1.6, "#")]), codec="PCMU")
    with tnb.Receiver(public_key=sb.public_key) as rx:
        client = sb.client()
        ccid = client.calls.dial(connection_id=sb.connection_id, to="+15550409000", from_="+15550199",
                                 webhook_url=rx.webhook_url).data.call_control_id
        wait_until(lambda: sb.call_state(ccid) == "answered")
        tnb.start_forking(client, ccid, rx)
        sb.send_dtmf(ccid, "9")                                      # a key pressed now, and the scripted ones
        wait_until(lambda: sb.call_state(ccid) == "ended", timeout=15)
        sb.wait_webhooks(timeout(10))
        wait_until(lambda: "call.hangup" in set(rx.events["event_type"]) and len(rx.dtmf) == 3,
                   what="the hangup and three fork DTMF rows")
        truth = sb.ground_truth(ccid, payloads=True)
        dtmf = rx.dtmf
        assert dtmf[["call_control_id", "digit", "source", "duration_ms", "end"]].values.tolist() == \
            [[ccid, digit, "fork", 100.0, True] for digit in ("9", "4", "#")]
        assert dtmf["ssrc"].nunique() == 1 and dtmf["stream_id"].isna().all()
        received = rx.events[rx.events["event_type"] == "call.dtmf.received"]["payload"].map(lambda p: p["digit"])
        assert received.tolist() == dtmf["digit"].tolist()           # the webhooks name the same digits
        events = truth[truth["path"] == "fork_event"]
        assert len(events) == 3 * 7 and set(events["track"]) == {"rx"} and events["n_bytes"].eq(4).all()
        assert set(events["payload"].map(lambda p: te.parse(p).digit)) == {"9", "4", "#"}
        got = rx.rtp[rx.rtp["target"] == "rx"]
        sent = truth[truth["track"] == "rx"]                          # frames and event packets
        assert sorted(got["seq"]) == sorted(sent["seq"].astype(int))
        assert got["payload_type"].value_counts().to_dict() == {0: int((sent["path"] == "fork").sum()), 101: 21}
        frames = sent[sent["path"] == "fork"].sort_values("frame")
        expected = codecs.ulaw_decode(b"".join(frames["payload"]))
        np.testing.assert_array_equal(rx.audio(ccid, "rx", source="fork").samples, expected)   # audio untouched
        hangup = rx.events[rx.events["event_type"] == "call.hangup"].iloc[0]["payload"]
        assert hangup["call_quality_stats"]["inbound"]["packet_count"] == str(len(frames))    # frames only


def test_telephone_events_count_as_packets_but_not_in_the_jitter():
    """Event packets carry their event's start time: the jitter follows the audio packets only."""
    def quality(with_events: bool) -> pd.Series:
        packets, arrivals, seq = [], [], 0
        for k in range(50):
            packets.append(packet(seq, 160 * k, bytes(160)))
            arrivals.append(T0 + k * 20_000_000 + (k % 3) * 1_000_000)
            seq += 1
            if with_events and 10 <= k < 17:
                packets.append(packet(seq, 1600, event(1, 160 * min(k - 9, 5), k >= 14), pt=101))
                arrivals.append(T0 + k * 20_000_000 + 1000)
                seq += 1
        store = Store()
        store.claim_fork(CCID)
        for data, at in zip(packets, arrivals, strict=True):
            store.add_packet("rx", rtp.parse_fork_packet(data), at)
        return StoreSession(store).quality().iloc[0]

    plain, with_events = quality(False), quality(True)
    assert (with_events["packets"], with_events["lost"]) == (57, 0)
    assert with_events["jitter_ms"] == pytest.approx(plain["jitter_ms"]) and plain["jitter_ms"] > 0


def _embedded_wav(html: str) -> bytes:
    """The WAV file inside a player's data URI."""
    import base64
    import re

    return base64.b64decode(re.search(r'base64,([A-Za-z0-9+/=]+)"', html).group(1))


def test_player_embeds_at_most_the_limit_and_says_what_it_left_out():
    from telnyx_nb import defaults

    samples = (np.arange(25 * RATE) % 1000).astype(np.int16)
    audio = Audio(samples, RATE, pd.Timestamp(T0, tz="UTC"))
    html = audio._repr_html_()
    with wave.open(io.BytesIO(_embedded_wav(html))) as wav:
        assert wav.getnframes() == int(defaults.AUDIO_EMBED_MAX_S * RATE)
        np.testing.assert_array_equal(np.frombuffer(wav.readframes(wav.getnframes()), "<i2"),
                                      samples[: int(defaults.AUDIO_EMBED_MAX_S * RATE)])
    assert "first 10.0 s of 25.0 s" in html and ".player(max_s=None)" in html
    with wave.open(io.BytesIO(_embedded_wav(audio.player(max_s=None).data))) as wav:
        assert wav.getnframes() == len(samples)
    short = Audio(samples[:RATE], RATE)
    assert "first" not in short._repr_html_()


def test_clip_cuts_by_media_time_and_moves_start():
    audio = Audio(np.arange(3 * RATE, dtype=np.int16), RATE, pd.Timestamp(T0, tz="UTC"))
    part = audio.clip(1.0, 2.5)
    np.testing.assert_array_equal(part.samples, audio.samples[RATE: int(2.5 * RATE)])
    assert part.start == pd.Timestamp(T0, tz="UTC") + pd.Timedelta(seconds=1)
    assert audio.clip(2.0).duration == 1.0
    with pytest.raises(ValueError, match="clip"):
        audio.clip(2.0, 1.0)
