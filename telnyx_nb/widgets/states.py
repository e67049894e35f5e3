"""What Telnyx said about one call and its three media actions: a state machine without widgets.

A panel's toggles show these states; they follow Telnyx's webhooks, not the clicks:

* ``starting``: a start command was sent; until ``streaming.started`` / ``call.fork.started`` /
  the first ``call.transcription`` arrives (Telnyx sends no "transcription started").
* ``on``: that webhook came.
* ``stopping``: a stop command was sent; until ``streaming.stopped`` / ``call.fork.stopped`` /
  ``call.transcription.stopped``. Real Telnyx's SDK has no model for the last one, so the
  stop command's 200 stands for the webhook when none came within ``stop_grace_s`` seconds
  (any of the three: a ``streaming_stop`` with nothing left to stop is also a 200 and no webhook).
* ``off``, with a ``note`` saying why when it was not asked for: ``failed: <failure_reason>``
  (``streaming.failed``), ``replaced by fork`` / ``replaced by stream``, ``call ended``.

Streams: each ``streaming.*`` webhook names its ``stream_id``. A stop or failure of the stream
being started (an id not seen in a ``streaming.started``, or none) ends a start; a stop of an
earlier stream arriving late (an id that started before and is not the current one) changes
nothing, whatever the phase.

Replacement (Telnyx keeps one stream or fork per call: ``fork_start`` stops the stream, and
``streaming_start`` the fork) is read from the webhooks alone, so every panel of a call, and one
that replays ``rx.events``, shows the same whoever sent the command: a ``streaming.stopped``
and a ``call.fork.started`` next to each other in the call's stream/fork webhooks (either order:
delivery order is not guaranteed) and at most ``REPLACED_WITHIN_S`` apart by ``occurred_at``
mean "stream replaced by fork"; a ``call.fork.stopped`` next to a ``streaming.started`` means
"fork replaced by stream". The sandbox sends the stop first, as Telnyx's guide describes. A stop
asked for and a start sent more than ``REPLACED_WITHIN_S`` later is no replacement; within
that time the webhooks cannot tell the two apart, and it shows as one.

A rejected command leaves the action as it was before the click (``off`` for a start) and its
error in ``status``. The call itself is ``unknown`` (no event seen yet), ``ringing``,
``answered`` or ``ended`` (with ``hangup_cause``). Every method is thread-safe: webhooks come
from the receiver's callback thread, command outcomes from the panel's command thread, and
the panel's refresh thread reads :meth:`CallState.snapshot`.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["ACTIONS", "ActionState", "CallState", "STOP_GRACE_S", "REPLACED_WITHIN_S"]

#: The three media actions a panel toggles, in display order.
ACTIONS = ("streaming", "forking", "transcription")
#: Seconds a stop command's 200 waits for its webhook before it counts as the stop.
STOP_GRACE_S = 2.0
#: Seconds (``occurred_at``) within which a stop and the rival's start count as a replacement.
REPLACED_WITHIN_S = 2.0

_STARTED = {"streaming.started": "streaming", "call.fork.started": "forking", "call.transcription": "transcription"}
_STOPPED = {"streaming.stopped": "streaming", "call.fork.stopped": "forking",
            "call.transcription.stopped": "transcription"}
#: Pairs of webhooks that mean a replacement: {stop, rival's start} -> (action replaced, note).
_REPLACED = {frozenset({"streaming.stopped", "call.fork.started"}): ("streaming", "replaced by fork"),
             frozenset({"call.fork.stopped", "streaming.started"}): ("forking", "replaced by stream")}
_MEDIA = ("streaming.started", "streaming.stopped", "streaming.failed", "call.fork.started", "call.fork.stopped")


def _seconds(occurred_at: Any) -> float | None:
    """``occurred_at`` (an ISO 8601 string as webhooks carry it, or a parsed timestamp as in
    ``rx.events``) as POSIX seconds; None when missing or unreadable."""
    try:
        if isinstance(occurred_at, str):
            return datetime.fromisoformat(occurred_at.replace("Z", "+00:00")).timestamp()
        if isinstance(occurred_at, datetime):
            return occurred_at.timestamp()
    except (ValueError, OverflowError):
        pass
    return None


@dataclass
class ActionState:
    """One action: ``phase`` (off/starting/on/stopping), and ``note`` (why it is off)."""

    phase: str = "off"
    note: str = ""
    #: monotonic time after which a stop's 200 counts as the stop (None: no stop answered)
    stop_deadline: float | None = None
    #: the phase before a stop was sent (restored if Telnyx rejects the stop)
    before_stop: str = "off"

    @property
    def active(self) -> bool:
        """True while starting or on: the toggle is pressed."""
        return self.phase in ("starting", "on")


@dataclass
class CallState:
    """One call as its webhooks and the panel's commands describe it (see the module docstring)."""

    call_control_id: str
    stop_grace_s: float = STOP_GRACE_S
    call: str = "unknown"
    direction: str | None = None
    from_: str | None = None
    to: str | None = None
    hangup_cause: str | None = None
    #: the last command error (Telnyx's code, title and detail), or "" after a success
    status: str = ""
    #: the stream that last reported ``streaming.started``
    stream_id: str | None = None
    webhooks: int = 0
    actions: dict[str, ActionState] = field(default_factory=lambda: {a: ActionState() for a in ACTIONS})
    #: bumped on every change; a renderer redraws when it differs from the one it drew
    version: int = 0
    _seen: set[str] = field(default_factory=set, repr=False)
    #: every stream that reported ``streaming.started``
    _started_streams: set[str] = field(default_factory=set, repr=False)
    #: the last stream/fork webhook applied, and when it occurred (POSIX s, or None)
    _last_media: tuple[str, float | None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- inputs ---------------------------------------------------------------------------------

    def webhook(self, event_type: str, payload: dict[str, Any], event_id: str | None = None,
                occurred_at: Any = None) -> bool:
        """Apply one webhook of this call (``occurred_at``: its envelope's, a string or a
        timestamp); False (nothing done) for an ``event_id`` seen before (a re-delivery, or an
        event both in ``rx.events`` and live when a panel opens)."""
        with self._lock:
            if event_id is not None:
                if event_id in self._seen:
                    return False
                self._seen.add(event_id)
            self.webhooks += 1
            if self._apply(event_type, payload) and event_type in _MEDIA:
                self._replaced(event_type, _seconds(occurred_at))
            self.version += 1
            return True

    def _replaced(self, event_type: str, at: float | None) -> None:
        """Mark a replacement when this stream/fork webhook and the one before make a pair."""
        last, self._last_media = self._last_media, (event_type, at)
        if last is None:
            return
        pair = _REPLACED.get(frozenset({last[0], event_type}))
        if pair is None or (at is not None and last[1] is not None and abs(at - last[1]) > REPLACED_WITHIN_S):
            return
        action = self.actions[pair[0]]
        if action.phase == "off" and not action.note:
            action.note = pair[1]

    def _apply(self, event_type: str, payload: dict[str, Any]) -> bool:
        """Apply the webhook; False when it changed nothing (a late stop of an earlier stream)."""
        if event_type == "call.initiated":
            self.direction = payload.get("direction", self.direction)
            self.from_, self.to = payload.get("from", self.from_), payload.get("to", self.to)
            if self.call == "unknown":
                self.call = "ringing"
        elif event_type == "call.answered" and self.call != "ended":
            self.call = "answered"
        elif event_type == "call.hangup":
            self.call, self.hangup_cause = "ended", payload.get("hangup_cause")
            for action in self.actions.values():
                if action.phase != "off":
                    action.phase, action.note, action.stop_deadline = "off", "call ended", None
        elif event_type in _STARTED:
            return self._started(_STARTED[event_type], payload)
        elif event_type in _STOPPED:
            return self._stopped(_STOPPED[event_type], payload, note="")
        elif event_type == "streaming.failed":
            return self._stopped("streaming", payload,
                                 note=f"failed: {payload.get('failure_reason', 'unknown reason')}")
        return True

    def _started(self, name: str, payload: dict[str, Any]) -> bool:
        action = self.actions[name]
        if name == "transcription" and action.phase not in ("off", "starting"):
            return False            # one more transcript; a late one while stopping changes nothing
        if name == "streaming":
            stream_id = payload.get("stream_id")
            if isinstance(stream_id, str):
                if stream_id in self._started_streams and stream_id != self.stream_id:
                    return False    # a re-sent start of an earlier stream
                self._started_streams.add(stream_id)
                self.stream_id = stream_id
        action.phase, action.note, action.stop_deadline = "on", "", None
        return True

    def _stopped(self, name: str, payload: dict[str, Any], note: str) -> bool:
        action = self.actions[name]
        if name == "streaming" and not self._ends_the_stream(payload.get("stream_id")):
            return False            # the late end of an earlier stream, not of this one
        if action.phase == "off":
            if not note:
                return False        # already off (a stop after the call's end, say): keep why
            action.note = note      # a stream started elsewhere (a cell) that failed
            return True
        action.phase, action.note, action.stop_deadline = "off", note, None
        return True

    def _ends_the_stream(self, stream_id: Any) -> bool:
        """Whether a stop or failure of ``stream_id`` ends the streaming shown: one of the
        stream being started (an id never started, or none), or of the current stream."""
        if not isinstance(stream_id, str) or stream_id not in self._started_streams:
            return True
        return stream_id == self.stream_id and self.actions["streaming"].phase != "starting"

    def command_sent(self, name: str, start: bool) -> None:
        """A start (``starting``) or stop (``stopping``) command of ``name`` is being sent."""
        with self._lock:
            action = self.actions[name]
            if start:
                action.phase, action.note = "starting", ""
            else:
                action.before_stop, action.phase = action.phase, "stopping"
            action.stop_deadline = None
            self.version += 1

    def command_answered(self, name: str, start: bool, error: str | None = None) -> None:
        """Telnyx answered the command: ``error`` is None for a 200, else the status text.

        A 200 to a start changes nothing (the webhook says when it starts); a 200 to a stop
        arms the ``stop_grace_s`` fallback. An error puts the action back and shows ``error``."""
        with self._lock:
            action = self.actions[name]
            self.status = error or ""
            if error is not None:
                if start and action.phase == "starting":
                    action.phase = "off"
                elif not start and action.phase == "stopping":
                    action.phase = action.before_stop
            elif not start and action.phase == "stopping":
                action.stop_deadline = time.monotonic() + self.stop_grace_s
            self.version += 1

    def say(self, status: str) -> None:
        """Show ``status`` in the status line (an error of a command that is no toggle's)."""
        with self._lock:
            self.status = status
            self.version += 1

    def expire(self, now: float | None = None) -> list[str]:
        """Stops whose 200 came ``stop_grace_s`` ago with no webhook since: now ``off``;
        returns the names of the actions it turned off."""
        now = time.monotonic() if now is None else now
        with self._lock:
            expired = [name for name, a in self.actions.items()
                       if a.phase == "stopping" and a.stop_deadline is not None and a.stop_deadline <= now]
            for name in expired:
                action = self.actions[name]
                action.phase, action.note, action.stop_deadline = "off", "", None
            if expired:
                self.version += 1
            return expired

    def snapshot(self) -> CallState:
        """A consistent copy to render from (no lock held while drawing)."""
        with self._lock:
            copied = copy.copy(self)
            copied.actions = {name: copy.copy(a) for name, a in self.actions.items()}
            copied._seen, copied._started_streams, copied._lock = set(), set(), threading.Lock()
            return copied


def webhooks_in(events: Any, call_control_id: str | None = None
                ) -> list[tuple[str, str, dict[str, Any], str | None, Any]]:
    """The webhooks of an ``rx.events`` table (of one call when given), in arrival order, as
    ``(call_control_id, event_type, payload, event_id, occurred_at)``: what a widget replays
    when it opens."""
    if call_control_id is not None:
        events = events[events["call_control_id"] == call_control_id]
    return [(str(ccid), str(event_type), payload if isinstance(payload, dict) else {}, event_id, occurred_at)
            for ccid, event_type, payload, event_id, occurred_at in zip(
                events["call_control_id"], events["event_type"], events["payload"], events["event_id"],
                events["occurred_at"], strict=True)
            if isinstance(ccid, str)]
