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
