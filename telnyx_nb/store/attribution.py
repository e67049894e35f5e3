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

**SSRC changes.** A media server changes a call's SSRC mid-call (at answer, on re-INVITE)
and goes on numbering packets where the old SSRC stopped (RFC 3550 §8.2 and §5.1 leave the
numbering to it; the servers measured continue it). A new source no claim is waiting for
*inherits* the call of an attributed source when all of these hold, so that one call's SSRC
change is followed without stealing another call's RTP (a media server sends every call's
fork from one address):

1. same fork target and same sender address (host and UDP port);
2. its first sequence number is 1 to ``seq_window`` after that source's newest one (mod 2^16);
3. no open claim is waiting on that target (a claim would take it first);
4. that call's fork has not stopped (``call.fork.stopped`` / ``withdraw``), and that source was
   not inherited already (one successor per source);
5. that source has gone quiet: if it sends a packet numbered at or after the successor's first
   one (not a late packet from before the change), both were live at once, so they are two
   calls whose numbers happened to meet, and the inheritance is undone (``overlap``), with
   that of the successor's own successors. Undone sources are unattributed again.

Among several candidates, the one heard from last wins. A source a late claim adopts does not
pass its call to successors that arrived before the claim.

Not thread-safe: the store calls it under its lock. The clock is injected (``clock()`` returns
UTC nanoseconds, the unit of arrival stamps) so the rules can be tested without waiting.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from telnyx_nb.defaults import FORK_CLAIM_WINDOW_S, FORK_SSRC_SEQ_WINDOW
from telnyx_nb.store.schema import NAT, TARGETS

__all__ = ["RtpSource", "ForkAttribution", "CLAIM", "LATE_CLAIM", "SSRC_CHANGE", "CALL_LEG"]

#: How a source got its call (``RtpSource.attributed_by``, the ``sources`` table's ``attributed_by``):
#: an open claim, a claim made after its first packet, an SSRC change it continues, STREP's call leg id.
CLAIM, LATE_CLAIM, SSRC_CHANGE, CALL_LEG = "claim", "late_claim", "ssrc_change", "call_leg_id"

_SEQ_MOD = 1 << 16
_HALF = 1 << 15


@dataclass
class RtpSource:
    """One forked RTP source: a (target, SSRC) pair and the call it is attributed to.

    ``first_ns``/``last_ns``: arrival (UTC ns) of its first packet and of its newest one by
    sequence number (``first_seq``/``last_seq``). ``src_host``/``src_port``: the sender of its
    first packet; ``dst_host``/``dst_port``: the fork port it arrived on (None when unknown:
    sources recorded before these were kept). ``heir``: index of the source that continues it
    after an SSRC change.
    """

    index: int
    target: str
    ssrc: int
    call_control_id: str | None
    first_ns: int
    claimable: bool = True      # False for STREP sources, attributed by call_leg_id
    first_seq: int = -1
    last_seq: int = -1
    last_ns: int = NAT
    src_host: str | None = None
    src_port: int | None = None
    dst_host: str | None = None
    dst_port: int | None = None
    attributed_by: str | None = None
    heir: int | None = None


class ForkAttribution:
    """Open claims per fork target and SSRC-change successors; see the module docstring.

    ``window_s``: how long a claim stays open, in seconds. ``seq_window``: the largest step, in
    packets, from an old SSRC's newest sequence number to a successor's first (rule 2).
    Raises ValueError for a window that is not positive.
    """

    def __init__(self, window_s: float = FORK_CLAIM_WINDOW_S, clock: Callable[[], int] = time.time_ns,
                 seq_window: int = FORK_SSRC_SEQ_WINDOW) -> None:
        if not window_s > 0:
            raise ValueError(f"fork_claim_window_s must be > 0, got {window_s!r}")
        if not (isinstance(seq_window, int) and 1 <= seq_window < _HALF):
            raise ValueError(f"seq_window must be an int in 1..{_HALF - 1}, got {seq_window!r}")
        self.window_ns = int(window_s * 1e9)
        self.seq_window = seq_window
        self.clock = clock
        self._claims: dict[str, deque[tuple[str, int]]] = {target: deque() for target in TARGETS}
        self._forked: set[str] = set()
        self._stopped: set[str] = set()

    def call_for_new_source(self, target: str, claimable: bool, first_ns: int) -> str | None:
        """The call whose open claim on ``target`` a source first seen at ``first_ns`` takes, if any."""
        claims = self._claims[target]
        while claims and first_ns - claims[0][1] > self.window_ns:
            claims.popleft()
        return claims.popleft()[0] if claimable and claims else None

    def attribute(self, source: RtpSource, sources: Sequence[RtpSource]) -> None:
        """Give a new ``source`` its call: the oldest open claim on its target, else the call of
        a quiet source it continues (rules 1-4); ``sources`` are the ones seen before it."""
        ccid = self.call_for_new_source(source.target, source.claimable, source.first_ns)
        if ccid is not None:
            source.call_control_id, source.attributed_by = ccid, CLAIM
        elif source.claimable and source.src_host is not None:
            self._inherit(source, sources)

    def _inherit(self, source: RtpSource, sources: Sequence[RtpSource]) -> None:
        best: RtpSource | None = None
        for old in sources:
            if (old.call_control_id is not None and old.heir is None and old.claimable
                    and old.target == source.target and old.src_host == source.src_host
                    and old.src_port == source.src_port and old.call_control_id not in self._stopped
                    and 1 <= (source.first_seq - old.last_seq) % _SEQ_MOD <= self.seq_window
                    and (best is None or old.last_ns > best.last_ns)):
                best = old
        if best is not None:
            best.heir = source.index
            source.call_control_id, source.attributed_by = best.call_control_id, SSRC_CHANGE

    def overlap(self, source: RtpSource, seq: int, sources: Sequence[RtpSource]) -> None:
        """``source`` (which has an heir) sent packet ``seq``: undo the inheritance if ``seq``
        is at or after the heir's first (rule 5). The store calls this for in-order packets."""
        if source.heir is None:
            return
        heir = sources[source.heir]
        if (seq - heir.first_seq) % _SEQ_MOD >= _HALF:
            return      # a late packet from before the change: still quiet
        source.heir = None
        while True:
            heir.call_control_id = heir.attributed_by = None
            successor, heir.heir = heir.heir, None
            if successor is None:
                return
            heir = sources[successor]

    def claim(self, call_control_id: str, sources: Iterable[RtpSource]) -> None:
        """Bind the next new source on each target to this call, or a recent orphan."""
        now = self.clock()
        self._forked.add(call_control_id)
        self._stopped.discard(call_control_id)
        self._drop(call_control_id)
        sources = list(sources)
        for target, claims in self._claims.items():
            orphan = next((s for s in sources if s.target == target and s.claimable
                           and s.call_control_id is None and now - s.first_ns < self.window_ns), None)
            if orphan is not None:
                orphan.call_control_id, orphan.attributed_by = call_control_id, LATE_CLAIM
            else:
                claims.append((call_control_id, now))

    def withdraw(self, call_control_id: str) -> None:
        """Forget this call's open claims (its fork_start failed, or its fork stopped); its
        sources pass their call to no new SSRC after this."""
        self._forked.discard(call_control_id)
        self._stopped.add(call_control_id)
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
