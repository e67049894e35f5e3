"""quality.py: RFC 3550 A.1 counting, extended sequence numbers, jitter and MOS on known inputs."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telnyx_nb import quality as q
from telnyx_nb.emodel import mos
from telnyx_nb.store import Store
from telnyx_nb.wire.rtp import extend_sequence


def stats(numbers, arrival_ms=None, media_ms=None):
    numbers = np.asarray(numbers, dtype=np.int64)
    arrival = np.asarray(arrival_ms if arrival_ms is not None else 20.0 * np.arange(len(numbers))) * 1e6
    media = np.asarray(media_ms if media_ms is not None else 20.0 * numbers) / 1e3
    return q.sequence_stats(numbers, arrival.astype(np.int64), media)


@pytest.mark.parametrize("numbers, expected, lost, duplicates, reordered", [
    ([1, 2, 3, 4], 4, 0, 0, 0),
    ([1, 3, 2, 4], 4, 0, 0, 1),           # a swapped pair counts 1
    ([1, 2, 2, 3], 3, 0, 1, 0),           # a duplicate is not reordered
    ([3, 1, 2], 3, 0, 0, 2),              # both late packets count
    ([1, 2, 5], 5, 2, 0, 0),
    ([1, 3, 2, 3, 2], 3, 0, 2, 1),
    ([5], 1, 0, 0, 0),
])
def test_counts(numbers, expected, lost, duplicates, reordered):
    s = stats(numbers)
    assert (s["packets"], s["expected"], s["lost"], s["duplicates"], s["reordered"]) == \
        (len(numbers), expected, lost, duplicates, reordered)
    assert s["loss_pct"] == pytest.approx(100 * lost / expected)


def test_extend_sequence_wrap_late_and_duplicate():
    seq = [65534, 65535, 1, 0, 2, 2, 3]
    assert extend_sequence(seq).tolist() == [65534, 65535, 65537, 65536, 65538, 65538, 65539]


def test_extend_sequence_late_packet_from_before_a_wrap():
    assert extend_sequence([65535, 0, 1, 65534]).tolist() == [65535, 65536, 65537, 65534]


def test_extend_sequence_restart_is_contiguous_and_keeps_both_packets():
    # the sender restarts at 40000: the jump is confirmed by 40001, so both are kept
    assert extend_sequence([10, 11, 12, 40000, 40001, 40002]).tolist() == [10, 11, 12, 13, 14, 15]


def test_extend_sequence_discards_an_unconfirmed_jump():
    assert extend_sequence([10, 11, 30000, 12, 13]).tolist() == [10, 11, -1, 12, 13]


def test_extend_sequence_late_packet_from_before_the_first_arrivals_wrap():
    # 65535 was sent before 0 but arrives after it: it is late, not a stray, and numbers stay >= 0
    assert extend_sequence([0, 65535, 1]).tolist() == [1, 0, 2]


def test_extend_sequence_of_chunks_discards_a_wild_chunk_without_wrapping():
    assert extend_sequence([1, 2, 10**12, 3, 70000], modulus=None).tolist() == [1, 2, -1, 3, -1]
    assert extend_sequence([1, 2, 65537], modulus=None).tolist() == [1, 2, -1]  # no 16-bit aliasing


@given(st.integers(0, 65535), st.integers(1, 3000))
def test_extend_sequence_in_order_is_a_plain_count(start, n):
    seq = (start + np.arange(n)) & 0xFFFF
    assert extend_sequence(seq).tolist() == list(range(start, start + n))


def reference_jitter(arrival_s, media_s):
    """RFC 3550 6.4.1, literally."""
    j = 0.0
    for i in range(1, len(arrival_s)):
        d = (arrival_s[i] - arrival_s[i - 1]) - (media_s[i] - media_s[i - 1])
        j += (abs(d) - j) / 16
    return j


def test_jitter_is_the_rfc_recursion():
    rng = np.random.default_rng(1)
    media = 0.02 * np.arange(500)
    arrival = media + rng.uniform(0, 0.03, 500)
    order = np.argsort(arrival)
    s = q.sequence_stats(np.arange(500)[order], (arrival[order] * 1e9).astype(np.int64), media[order])
    assert s["jitter_ms"] == pytest.approx(reference_jitter(arrival[order], media[order]) * 1e3, rel=1e-6)
    assert s["max_gap_ms"] == pytest.approx(np.diff(arrival[order]).max() * 1e3, abs=1e-3)


@given(st.lists(st.floats(0, 0.2), min_size=1, max_size=3000))
def test_jitter_at_the_last_packet_is_the_series_last_value(delays):
    """quality()'s jitter (the recursion unrolled into a sum) equals plots' per-packet series, on
    short and long runs (past ~11,000 packets the oldest weights underflow to 0, harmlessly)."""
    media = 0.02 * np.arange(len(delays))
    arrival = media + np.array(delays)
    assert q._jitter(arrival, media) == pytest.approx(q.jitter_series(arrival, media)[-1], rel=1e-9, abs=1e-15)
    assert q._jitter(arrival, media) == pytest.approx(reference_jitter(arrival, media), rel=1e-9, abs=1e-15)


def test_jitter_of_a_perfect_stream_is_zero():
    assert stats(range(1, 100))["jitter_ms"] == pytest.approx(0, abs=1e-9)


def test_mos():
    assert mos(0, 0) == pytest.approx(4.40, abs=0.005)
    assert mos(0, 0) > mos(1, 0) > mos(5, 0) > mos(20, 0) >= 1
    assert mos(0, 0) > mos(0, 40) > mos(0, 200)
    assert mos(100, 500) == 1.0


def test_quality_of_empty_tables_has_the_columns():
    store = Store()
    df = q.quality(store.table("frames"), store.table("rtp"))
    assert list(df.columns) == q.COLUMNS and df.empty


# -- tracks and sources: pandas' grouping, without copying the table per group --------------------

@given(st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3", None]), st.sampled_from(["inbound", "outbound", None])),
                max_size=60))
def test_stream_tracks_are_the_groups_pandas_finds(labels):
    import pandas as pd

    n = len(labels)
    frames = pd.DataFrame({
        "stream_id": pd.Categorical([a for a, _ in labels], categories=["s0", "s1", "s2", "s3"]),
        "track": pd.Categorical([b for _, b in labels]),
        "chunk": np.arange(1, n + 1), "received_at": pd.to_datetime(np.arange(n) * 20_000_000, utc=True),
        "encoding": "PCMU", "sample_rate": 8000, "n_bytes": 160,
    })
    expected = frames.groupby(["stream_id", "track"], sort=False, observed=True).indices
    assert [(t.key, t.rows.tolist()) for t in q.stream_tracks(frames)] == [
        (key, at.tolist()) for key, at in expected.items()]


@given(st.lists(st.tuples(st.sampled_from(["rx", "tx"]), st.integers(1, 9)), max_size=80))
def test_fork_sources_are_the_groups_pandas_finds(sources):
    from telnyx_nb.wire import rtp

    store = Store()
    for k, (target, ssrc) in enumerate(sources):
        packet = rtp.build_rtp(rtp.RtpPacket(0, k, 160 * k, ssrc, bytes(80)))
        store.add_packet(target, rtp.parse_fork_packet(packet), 10**18 + 20_000_000 * k)
    table = store.table("rtp")
    expected = table.groupby(["target", "ssrc"], sort=False, observed=True).indices
    assert [(t.key, t.rows.tolist()) for t in q.fork_sources(table)] == [
        (key, at.tolist()) for key, at in expected.items()]
    assert len(expected) == len(set(sources))


# -- the fork's RTP clock rate: the payload type's, else NaN ------------------------------------------

def fork_row(payload_type, step, payload_types=None, n=100):
    """quality()'s row for one forked source of ``n`` packets of ``payload_type`` arriving
    exactly 20 ms apart, the RTP timestamp advancing ``step`` per packet."""
    from telnyx_nb.session import StoreSession
    from telnyx_nb.wire import rtp

    store = Store(payload_types=payload_types)
    for k in range(n):
        packet = rtp.build_rtp(rtp.RtpPacket(payload_type, 1000 + k, 5000 + step * k, 42, bytes(80)))
        store.add_packet("rx", rtp.parse_fork_packet(packet), 1_700_000_000_000_000_000 + 20_000_000 * k)
    return StoreSession(store).quality().iloc[0]


@pytest.mark.parametrize("payload_type, step, payload_types", [
    (0, 160, None), (8, 160, None),
    (9, 160, None),                        # G722: an 8000 Hz RTP clock (RFC 3551), though it samples at 16 kHz
    (18, 160, None),                       # G729
    (96, 320, {96: "L16"}),                # a dynamic type the receiver was told: L16 at 16 kHz
])
def test_fork_jitter_runs_on_the_payload_types_clock(payload_type, step, payload_types):
    row = fork_row(payload_type, step, payload_types)
    assert row["jitter_ms"] == 0.0 and row["mos"] == pytest.approx(mos(0.0, 0.0))


@pytest.mark.parametrize("payload_type, step", [(111, 960), (112, 320), (96, 320)],
                         ids=["OPUS-48k", "AMR-WB-16k", "unnamed-96"])
def test_fork_jitter_of_an_unknown_clock_is_nan_not_a_guess(payload_type, step):
    row = fork_row(payload_type, step)
    assert np.isnan(row["jitter_ms"]) and np.isnan(row["mos"])
    assert (row["packets"], row["expected"], row["lost"]) == (100, 100, 0)      # counting needs no clock


def test_a_call_summary_skips_a_fork_of_unknown_clock():
    from telnyx_nb.session import StoreSession
    from telnyx_nb.wire import rtp

    store = Store()
    for ssrc, payload_type, step in ((1, 0, 160), (2, 111, 960)):
        for k in range(50):
            packet = rtp.build_rtp(rtp.RtpPacket(payload_type, k, step * k, ssrc, bytes(80)))
            store.add_packet("rx", rtp.parse_fork_packet(packet), 10**18 + 20_000_000 * k + (3_000_000 if k % 2 else 0))
    rows = StoreSession(store).quality()
    known = rows[rows["ssrc"] == 1].iloc[0]
    assert known["jitter_ms"] > 0 and np.isnan(rows[rows["ssrc"] == 2].iloc[0]["jitter_ms"])
    summary = q._by_call(rows).iloc[0]
    assert summary["jitter_ms"] == known["jitter_ms"] and summary["mos"] == known["mos"]


# -- the codec-mismatch scan is bounded on quiet calls too -------------------------------------------

def test_a_quiet_call_is_scanned_for_five_minutes_not_to_its_end():
    from telnyx_nb.sandbox.scenarios import get_scenario
    from telnyx_nb.wire import codecs

    rng = np.random.default_rng(5)
    speech = get_scenario("support_call").pcm(8000)["inbound"]

    def hiss(seconds):               # comfort-noise-level: never loud, so only the block bound stops the scan
        return np.round(rng.normal(0, 20, int(seconds * 8000))).astype(np.int16)

    quiet = codecs.ulaw_encode(hiss(400))
    scan = q._Scan("PCMU")
    scan.feed(np.frombuffer(quiet, np.uint8).reshape(-1, 160))
    assert scan.final and scan.examined == q.MISMATCH_SCAN_BLOCKS == 15_000 and scan.loud == 0
    assert q.codec_mismatch(quiet, "PCMU") == (False, 0)
    # mislabelled speech after four quiet minutes is still decided on its first second; after six, not
    four = codecs.alaw_encode(np.concatenate((hiss(240), speech)))
    assert q.codec_mismatch(four, "PCMU") == (True, q.MISMATCH_BLOCKS)
    six = codecs.alaw_encode(np.concatenate((hiss(360), speech)))
    assert q.codec_mismatch(six, "PCMU") == (False, 0)


# -- reconcile(): a stream or fork that covered only part of the call --------------------------------

T0 = 1_700_000_000_000_000_000


def iso(seconds):
    return (np.datetime64(T0, "ns") + np.timedelta64(int(seconds * 1e9), "ns")).astype(str)[:26] + "Z"


def reconciled_call(source, timeline, packet_count=250, received=75):
    """reconcile()'s inbound row for a call whose ``source`` ("stream" or "fork") delivered
    ``received`` packets, none lost, with webhooks (event type, seconds after T0) ``timeline``
    and a call.hangup whose inbound call_quality_stats count ``packet_count`` packets."""
    from telnyx_nb.session import StoreSession
    from telnyx_nb.wire import media, rtp, webhooks

    store = Store()
    if source == "stream":
        info = store.start_stream(media.Start("s-p", 1, "v3:p", media.MediaFormat("PCMU", 8000)), T0, T0, True)
        for k in range(received):
            store.add_frame(info, "inbound", k + 2, k + 1, 20 * k, bytes(160), T0 + 20_000_000 * k)
    else:
        store.claim_fork("v3:p")
        for k in range(received):
            packet = rtp.build_rtp(rtp.RtpPacket(0, 500 + k, 160 * k, 7, bytes(160)))
            store.add_packet("rx", rtp.parse_fork_packet(packet), T0 + 20_000_000 * k)
    stats = {"inbound": {"packet_count": str(packet_count), "skip_packet_count": "0"}}
    for n, (event_type, at) in enumerate(timeline):
        payload = {"call_control_id": "v3:p", **({"call_quality_stats": stats} if event_type == "call.hangup" else {})}
        store.add_event(webhooks.WebhookEvent(event_type, f"e-{n}", iso(at), payload), True, T0 + int(at * 1e9))
    table = q.reconcile(StoreSession(store))
    return table[table["direction"] == "inbound"].iloc[0]


def test_reconcile_says_a_stream_that_stopped_early_covered_part_of_the_call():
    # the probe's shape: 5 s call leg (250 packets), the stream ran 1.5 s of it, nothing lost
    row = reconciled_call("stream", [("call.answered", 0), ("streaming.started", 0.5), ("streaming.stopped", 2.0),
                                     ("call.hangup", 5.0)])
    assert (row["packets"], row["lost"], row["packets_diff"]) == (75, 0, 175)
    text = row["explanation"]
    assert "the stream covered only part of the call" in text and "cover the whole call leg" in text
    assert "started 0.500 s after the answer" in text and "stopped 3.000 s before the hang-up" in text
    assert "lost on the way" not in text


def test_reconcile_says_a_fork_started_late_covered_part_of_the_call():
    row = reconciled_call("fork", [("call.answered", 0), ("call.fork.started", 3.5), ("call.hangup", 5.0)])
    assert row["sources"] == "fork" and row["packets_diff"] == 175
    assert "the fork covered only part of the call (the fork started 3.500 s after the answer)" in row["explanation"]
    assert "lost on the way" not in row["explanation"]
    paused = reconciled_call("fork", [("call.answered", 0), ("call.fork.started", 0), ("call.fork.stopped", 1),
                                      ("call.fork.started", 4.5), ("call.hangup", 5.0)])
    assert "the fork stopped for 3.500 s" in paused["explanation"] and "lost on the way" not in paused["explanation"]


@pytest.mark.parametrize("source, timeline", [
    ("stream", [("call.answered", 0), ("streaming.started", 0), ("call.hangup", 5.0)]),
    ("stream", [("call.answered", 0), ("streaming.started", 0), ("call.hangup", 5.0), ("streaming.stopped", 5.0)]),
    ("fork", [("call.answered", 0), ("call.fork.started", 0), ("call.hangup", 5.0)]),
], ids=["stream-no-stop", "stream-stopped-by-hangup", "fork"])
def test_reconcile_says_lost_on_the_way_only_when_the_whole_call_was_covered(source, timeline):
    row = reconciled_call(source, timeline)
    assert row["packets_diff"] == 175
    assert "lost on the way" in row["explanation"] and "covered only part" not in row["explanation"]
