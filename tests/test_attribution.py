"""Fork attribution rules (telnyx_nb.store.attribution), with an injected clock: no waiting."""

from __future__ import annotations

import pytest

from telnyx_nb.store import ForkAttribution, RtpSource, Store
from telnyx_nb.wire import rtp

S = 1_000_000_000  # ns per second


class Clock:
    def __init__(self, now: int = 1_000 * S) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def source(index: int, target: str, first_ns: int, ccid: str | None = None, claimable: bool = True) -> RtpSource:
    return RtpSource(index, target, 1000 + index, ccid, first_ns, claimable)


def test_a_claim_binds_the_next_new_source_on_each_target():
    clock = Clock()
    fa = ForkAttribution(5.0, clock)
    fa.claim("call-A", [])
    assert fa.call_for_new_source("rx", True, clock.now + 1 * S) == "call-A"
    assert fa.call_for_new_source("tx", True, clock.now + 1 * S) == "call-A"
    assert fa.call_for_new_source("rx", True, clock.now + 2 * S) is None     # the claim was taken


def test_claims_are_served_first_come_first_served():
    clock = Clock()
    fa = ForkAttribution(5.0, clock)
    fa.claim("call-A", [])
    fa.claim("call-B", [])
    assert [fa.call_for_new_source("rx", True, clock.now) for _ in range(3)] == ["call-A", "call-B", None]


def test_an_open_claim_lapses_after_the_window():
    clock = Clock()
    fa = ForkAttribution(5.0, clock)
    fa.claim("call-A", [])
    assert fa.call_for_new_source("rx", True, clock.now + 5 * S + 1) is None   # came too late: not call-A's
    assert fa.call_for_new_source("tx", True, clock.now + 4 * S) == "call-A"   # tx came within it: bound


def test_the_window_is_a_parameter():
    clock = Clock()
    fa = ForkAttribution(0.5, clock)
    fa.claim("call-A", [])
    assert fa.call_for_new_source("rx", True, clock.now + S) is None
    with pytest.raises(ValueError, match="fork_claim_window_s"):
        ForkAttribution(0, clock)


def test_a_late_claim_takes_a_recent_orphan_but_not_an_old_one():
    clock = Clock()
    fa = ForkAttribution(5.0, clock)
    recent = source(0, "rx", clock.now - 2 * S)
    old = source(1, "tx", clock.now - 6 * S)
    fa.claim("call-A", [recent, old])
    assert recent.call_control_id == "call-A"
    assert old.call_control_id is None
    assert fa.call_for_new_source("tx", True, clock.now) == "call-A"          # tx still had an open claim
    assert fa.call_for_new_source("rx", True, clock.now) is None              # rx's claim went to the orphan


def test_strep_sources_are_never_claimed():
    clock = Clock()
    fa = ForkAttribution(5.0, clock)
    strep = source(0, "rx", clock.now, claimable=False)
    fa.claim("call-A", [strep])
    assert strep.call_control_id is None
    assert fa.call_for_new_source("rx", False, clock.now) is None
    assert fa.call_for_new_source("rx", True, clock.now) == "call-A"


def test_withdraw_and_fork_stopped_drop_the_claim():
    clock = Clock()
    fa = ForkAttribution(5.0, clock)
    fa.claim("call-A", [])
    fa.withdraw("call-A")
    assert fa.call_for_new_source("rx", True, clock.now) is None
    fa.claim("call-B", [])
    fa.on_webhook("call.fork.stopped", "call-B", [])
    assert fa.call_for_new_source("rx", True, clock.now) is None


def test_fork_started_claims_once_per_call():
    clock = Clock()
    fa = ForkAttribution(5.0, clock)
    fa.claim("call-A", [])                          # start_forking claimed already
    fa.on_webhook("call.fork.started", "call-A", [])  # the webhook does not claim twice
    assert fa.call_for_new_source("rx", True, clock.now) == "call-A"
    assert fa.call_for_new_source("rx", True, clock.now) is None
    fa.on_webhook("call.fork.started", "call-C", [])  # a fork started elsewhere (e.g. at dial) claims
    assert fa.call_for_new_source("rx", True, clock.now) == "call-C"


def test_the_store_applies_the_lapse_to_arrival_stamps():
    """Through the store: a packet stamped after the window is left unattributed."""
    clock = Clock()
    store = Store(fork_claim_window_s=5.0, clock=clock)
    store.claim_fork("call-A")

    def packet(ssrc: int) -> rtp.ForkPacket:
        return rtp.parse_fork_packet(rtp.build_rtp(rtp.RtpPacket(0, 1, 160, ssrc, b"\xff" * 160)))

    store.add_packet("rx", packet(7), clock.now + 6 * S)
    store.add_packet("tx", packet(8), clock.now + 1 * S)
    table = store.table("rtp")
    assert table["call_control_id"].isna().tolist() == [True, False]
    assert table["call_control_id"].iloc[1] == "call-A"


# -- SSRC changes (rules 1-5 of store.attribution) ------------------------------------------------------

MEDIA_SERVER = ("192.0.2.10", 30000)


def send(store: Store, ssrc: int, seqs, at: int, target: str = "rx", sender=MEDIA_SERVER) -> None:
    for seq in seqs:
        packet = rtp.parse_fork_packet(rtp.build_rtp(rtp.RtpPacket(0, seq & 0xFFFF, 160 * seq, ssrc, b"\xff" * 160)))
        store.add_packet(target, packet, at, sender)


def calls(store: Store) -> dict[int, str | None]:
    return {s.ssrc: s.call_control_id for s in store.sources}


def claimed_store() -> tuple[Store, Clock]:
    clock = Clock()
    store = Store(clock=clock)
    store.claim_fork("call-A")
    send(store, 1, range(100, 110), clock.now)
    return store, clock


@pytest.mark.parametrize(("first", "inherits"), [(110, True), (117, True), (118, False), (109, False)])
def test_a_new_ssrc_inherits_only_within_the_sequence_window(first, inherits):
    store, clock = claimed_store()                      # SSRC 1's newest is 109; the window is 8
    send(store, 2, [first], clock.now + S)
    assert calls(store)[2] == ("call-A" if inherits else None)


def test_the_sequence_window_wraps_and_is_a_parameter():
    clock = Clock()
    store = Store(clock=clock)
    store.claim_fork("call-A")
    send(store, 1, [65534, 65535], clock.now)
    send(store, 2, [65536 + 2], clock.now)              # seq 2 after 65535: 3 later, across the wrap
    assert calls(store)[2] == "call-A"
    narrow = ForkAttribution(5.0, clock, seq_window=1)
    old = RtpSource(0, "rx", 1, "call-A", clock.now, last_seq=10, src_host="h", src_port=1)
    new = RtpSource(1, "rx", 2, None, clock.now, first_seq=12, src_host="h", src_port=1)
    narrow.attribute(new, [old])
    assert new.call_control_id is None
    with pytest.raises(ValueError, match="seq_window"):
        ForkAttribution(5.0, clock, seq_window=0)


def test_an_ssrc_change_needs_the_same_target_and_sender():
    store, clock = claimed_store()
    send(store, 9, [1], clock.now, target="tx")         # takes call-A's tx claim
    send(store, 2, [110], clock.now + S, target="tx")   # continues SSRC 1, but on tx
    send(store, 3, [110], clock.now + S, sender=("192.0.2.10", 30001))
    send(store, 4, [110], clock.now + S, sender=None)   # sender unknown: never inherits
    assert calls(store) == {1: "call-A", 9: "call-A", 2: None, 3: None, 4: None}


def test_a_source_passes_its_call_once_and_the_latest_candidate_wins():
    clock = Clock()
    store = Store(clock=clock)
    store.claim_fork("call-A")
    store.claim_fork("call-B")
    send(store, 1, range(100, 110), clock.now)          # call-A
    send(store, 2, range(100, 110), clock.now + S)      # call-B, heard from later
    send(store, 3, [110], clock.now + 2 * S)            # continues both: the latest, call-B's
    send(store, 4, [110], clock.now + 2 * S)            # call-A's 1 is left
    send(store, 5, [110], clock.now + 2 * S)            # nothing left to continue
    assert calls(store) == {1: "call-A", 2: "call-B", 3: "call-B", 4: "call-A", 5: None}


def test_an_old_ssrc_that_keeps_sending_undoes_the_change_with_its_successors():
    store, clock = claimed_store()
    send(store, 2, range(110, 120), clock.now + S)      # inherits call-A from 1...
    send(store, 3, range(120, 125), clock.now + S)      # ...and 3 from 2
    send(store, 1, [108, 105], clock.now + 2 * S)       # late packets from before the change: still quiet
    assert calls(store) == {1: "call-A", 2: "call-A", 3: "call-A"}
    send(store, 1, [110], clock.now + 2 * S)            # 1 is live alongside 2: two streams, not a change
    assert calls(store) == {1: "call-A", 2: None, 3: None}
    assert [s.heir for s in store.sources] == [None, None, None]


def test_no_change_after_the_fork_stopped_and_a_waiting_claim_comes_first():
    store, clock = claimed_store()
    store.claim_fork("call-B")
    send(store, 2, [110], clock.now + S)                # a claim waits: call-B's, not an inheritance
    store.withdraw_fork("call-A")
    send(store, 3, [111], clock.now + S)                # continues 2 (call-B): inherited
    send(store, 4, range(130, 135), clock.now + S)
    assert calls(store) == {1: "call-A", 2: "call-B", 3: "call-B", 4: None}
    store.withdraw_fork("call-B")
    send(store, 5, [112], clock.now + S)                # call-B's fork stopped
    assert calls(store)[5] is None
    assert [s.attributed_by for s in store.sources] == ["claim", "claim", "ssrc_change", None, None]
