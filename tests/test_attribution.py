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
