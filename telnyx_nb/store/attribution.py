"""Fork attribution: which call a forked RTP source belongs to.

Plain RTP carries no call id, so a call *claims* the fork ports (``claim``: done by
``tnb.start_forking`` and by each ``call.fork.started`` webhook for a call not already
claimed) and the first new SSRC on each target is bound to the oldest open claim, first come
first served. An open claim lapses ``window_s`` after it was made if no new source came, on
``call.fork.stopped``, and on ``withdraw`` (a ``fork_start`` that failed), so it cannot capture
a later call's fork. A claim that comes after its packets (the webhook is often slower than
the RTP) takes the oldest unattributed source first seen on that target within ``window_s``
before it. Two calls starting forks to the same ports at the same instant may swap. STREP
sources are not claimable: their packets carry a ``call_leg_id``, matched through the
webhooks instead.

Not thread-safe: the store calls it under its lock. The clock is injected (``clock()`` returns
UTC nanoseconds, the unit of arrival stamps) so the rules can be tested without waiting.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from telnyx_nb.defaults import FORK_CLAIM_WINDOW_S
from telnyx_nb.store.schema import TARGETS

__all__ = ["RtpSource", "ForkAttribution"]


@dataclass
class RtpSource:
    """One forked RTP source: a (target, SSRC) pair and the call it is attributed to."""

    index: int
    target: str
    ssrc: int
    call_control_id: str | None
    first_ns: int
    claimable: bool = True      # False for STREP sources, attributed by call_leg_id


class ForkAttribution:
    """Open claims per fork target; see the module docstring for the rules."""

    def __init__(self, window_s: float = FORK_CLAIM_WINDOW_S, clock: Callable[[], int] = time.time_ns) -> None:
        if not window_s > 0:
            raise ValueError(f"fork_claim_window_s must be > 0, got {window_s!r}")
        self.window_ns = int(window_s * 1e9)
        self.clock = clock
        self._claims: dict[str, deque[tuple[str, int]]] = {target: deque() for target in TARGETS}
        self._forked: set[str] = set()

    def call_for_new_source(self, target: str, claimable: bool, first_ns: int) -> str | None:
        """The call a source first seen on ``target`` at ``first_ns`` belongs to; takes its claim."""
        claims = self._claims[target]
        while claims and first_ns - claims[0][1] > self.window_ns:
            claims.popleft()
        return claims.popleft()[0] if claimable and claims else None

    def claim(self, call_control_id: str, sources: Iterable[RtpSource]) -> None:
        """Bind the next new source on each target to this call, or a recent orphan."""
        now = self.clock()
        self._forked.add(call_control_id)
        self._drop(call_control_id)
        sources = list(sources)
        for target, claims in self._claims.items():
            orphan = next((s for s in sources if s.target == target and s.claimable
                           and s.call_control_id is None and now - s.first_ns < self.window_ns), None)
            if orphan is not None:
                orphan.call_control_id = call_control_id
            else:
                claims.append((call_control_id, now))

    def withdraw(self, call_control_id: str) -> None:
        """Forget this call's open claims (its fork_start failed, or its fork stopped)."""
        self._forked.discard(call_control_id)
        self._drop(call_control_id)

    def on_webhook(self, event_type: str, call_control_id: str, sources: Iterable[RtpSource]) -> None:
        """``call.fork.started`` claims for a call not claimed yet; ``call.fork.stopped`` withdraws."""
        if event_type == "call.fork.stopped":
            self.withdraw(call_control_id)
        elif event_type == "call.fork.started" and call_control_id not in self._forked:
            self.claim(call_control_id, sources)

    def _drop(self, call_control_id: str) -> None:
        for target, claims in self._claims.items():
            self._claims[target] = deque(claim for claim in claims if claim[0] != call_control_id)
