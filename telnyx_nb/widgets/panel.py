"""``CallPanel``: start and stop a call's stream, fork and transcription, and watch it live."""

from __future__ import annotations

import concurrent.futures
import html
import threading
import time
from typing import Any

import ipywidgets as w

from telnyx_nb import actions
from telnyx_nb.widgets._live import LiveBox
from telnyx_nb.widgets._refresh import REFRESH_INTERVAL_S
from telnyx_nb.widgets.options import OPTIONS
from telnyx_nb.widgets.states import ACTIONS, STOP_GRACE_S, CallState, webhooks_in
from telnyx_nb.widgets.status import error_text
from telnyx_nb.widgets.views import CountersView, LevelMeter, TranscriptView

__all__ = ["CallPanel"]

_LABEL = {"streaming": "Streaming", "forking": "Forking", "transcription": "Transcription"}
_COMMANDS = {
    ("streaming", True): actions.start_streaming, ("streaming", False): actions.stop_streaming,
    ("forking", True): actions.start_forking, ("forking", False): actions.stop_forking,
    ("transcription", True): actions.start_transcription, ("transcription", False): actions.stop_transcription,
}
_STYLE = {"off": "", "starting": "warning", "on": "success", "stopping": "warning"}
#: Seconds a panel keeps drawing after its call's ``call.hangup`` (late webhooks of the call).
ENDED_GRACE_S = 1.0
#: Seconds between two reads of the slow counters (frames/s, fork RTP, loop lag).
SLOW_INTERVAL_S = 1.0


class CallPanel(LiveBox):
    """A control panel and live views for one call: ``tnb.CallPanel(client, rx, call_control_id)``.

    Controls: for each of streaming, forking and transcription a toggle,
    ``panel.toggles["streaming"|"forking"|"transcription"]`` (an ``ipywidgets.ToggleButton``:
    True starts the action, False stops it) with that action's options (``panel.options[...]``,
    see ``widgets.options``), and a hang-up button. Commands go through ``telnyx_nb.actions``
    (recorded in ``rx.commands``) with the real SDK ``client``, on a thread of the panel: a click
    never waits for Telnyx.

    States follow Telnyx, not the clicks (``widgets.states``): a toggle reads "starting…" until
    Telnyx says the action started and goes back to off on its stop, failure (with
    ``failure_reason``), replacement (one stream or fork per call) or the call's end. A command
    Telnyx refuses (422 90018 call ended, 90034 not answered yet, 90054 transcription already
    running, ...) puts the toggle back and shows the HTTP status, Telnyx's code, title and
    detail in the status line (``panel.status``), never a traceback.

    Live views: ``panel.transcript`` (both tracks, labelled; interim text replaced by the final),
    ``panel.counters`` (media frames and frames/s per track since the panel opened, lost chunks,
    forked RTP packets and losses per target, the call's webhooks, the receiver's loop lag in ms)
    and ``panel.levels`` (RMS level per track, dBFS). The receiver's callbacks only count; one
    thread per panel redraws what changed every ``refresh_interval_s`` (≥ 0.1 s: at most 10
    updates per second; ``widgets._refresh`` says how updates reach the notebook).

    A panel opened mid-call replays the call's webhooks from ``rx.events`` first. When its call
    ends (``call.hangup``) or its receiver stops, it says so, stops refreshing and releases its
    receiver callbacks; ``close()`` does that at once and closes the widgets. Once the receiver
    stopped, the toggles read "? (receiver stopped)": what Telnyx does since is unknown. A toggle
    set from Python on such a frozen panel still sends its command; the panel then draws the
    answer once (the toggle back as it was, Telnyx's error in the status line).

    When a transcription ends (``call.transcription.stopped``, the stop's 200 standing for it,
    or the call's end) between an interim result and its final one, the interim text stays in
    the transcript, no longer in italics, marked "(interim, no final)": the last words heard,
    which no final result will replace.
    """

    def __init__(self, client: Any, rx: Any, call_control_id: str, *,
                 refresh_interval_s: float = REFRESH_INTERVAL_S, stop_grace_s: float = STOP_GRACE_S) -> None:
        self.client, self.rx, self.call_control_id = client, rx, call_control_id
        self.state = CallState(call_control_id, stop_grace_s=stop_grace_s)
        self.options = {name: OPTIONS[name]() for name in ACTIONS}
        self.toggles: dict[str, w.ToggleButton] = {}
        for name in ACTIONS:
            toggle = w.ToggleButton(value=False, description=f"{_LABEL[name]}: off", layout=w.Layout(width="22em"))
            toggle.add_class(f"tnb-toggle-{name}")
            toggle.observe(lambda change, name=name: self._toggled(name, change["new"]), "value")
            self.toggles[name] = toggle
        self.hangup_button = w.Button(description="Hang up", button_style="danger", icon="phone")
        self.hangup_button.on_click(lambda _: self._submit(self._hangup))
        self.header = w.HTML()
        self.status = w.HTML()
        self.status.add_class("tnb-status")
        self.transcript = TranscriptView()
        self.counters = CountersView()
        self.levels = LevelMeter()
        rows = [w.HBox([self.toggles[name], self.options[name]]) for name in ACTIONS]
        super().__init__([self.header, *rows, self.hangup_button, self.status, self.counters, self.levels,
                          self.transcript])
        self.add_class("tnb-call-panel")
        self._syncing = threading.local()
        self._draw_lock = threading.Lock()
        self._frozen = False
        self._closed = False
        self._drawn_version = -1
        self._ended_at: float | None = None
        self._next_slow = 0.0
        self._forked = False
        self._unknown_streams: set[str] = set()
        self._commands = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="telnyx_nb-panel-commands")
        self._subscribe(rx, call_control_id, self._on_event)
        for _, event_type, payload, event_id, occurred_at in webhooks_in(rx.events, call_control_id):
            self._webhook(event_type, payload, event_id, occurred_at)
        self._start_refresh(self._render, "telnyx_nb-panel-refresh", refresh_interval_s)

    # -- receiver callbacks (the receiver's callback thread) -----------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        event_type = event["event_type"]
        if event_type == "stream.media":
            track, stream_id = event.get("track", ""), event.get("stream_id", "")
            self.counters.feed_media(track, event.get("chunk"), stream_id)
            if self.levels.knows(stream_id):
                self.levels.feed(stream_id, track, event.get("payload") or b"")
            else:
                self._unknown_streams.add(stream_id)
        elif event_type == "stream.start":
            self.levels.set_encoding(event["stream_id"], event["media_format"]["encoding"])
        elif "event_id" in event:                                 # a webhook
            self._webhook(event_type, event.get("payload") or {}, event["event_id"], event.get("occurred_at"))

    def _webhook(self, event_type: str, payload: dict[str, Any], event_id: str | None, occurred_at: Any) -> None:
        if not self.state.webhook(event_type, payload, event_id, occurred_at):
            return
        if event_type == "call.transcription":
            self.transcript.feed(payload.get("transcription_data") or {})
        elif event_type in ("call.transcription.stopped", "call.hangup"):
            self.transcript.end_interims()
        elif event_type == "call.fork.started":
            self._forked = True

    # -- commands (the panel's command thread) -------------------------------------------------

    def _toggled(self, name: str, pressed: bool) -> None:
        if getattr(self._syncing, "on", False) or self._closed:
            return                                   # the panel drawing a state, not a click
        if pressed != self.state.actions[name].active:
            self.state.command_sent(name, start=pressed)
            self._submit(self._command, name, pressed)
        elif self._frozen:
            self._submit(self._draw_if_frozen)       # nothing to send: put the toggle back

    def _submit(self, fn: Any, *args: Any) -> None:
        if not self._closed:
            self._commands.submit(fn, *args)

    def _command(self, name: str, start: bool) -> None:
        try:
            options = self.options[name].kwargs(self.rx) if start else {}
            _COMMANDS[name, start](self.client, self.call_control_id, self.rx, **options)
        except Exception as exc:
            self.state.command_answered(name, start, error_text(exc))
        else:
            self.state.command_answered(name, start)
            if name == "forking" and start:
                self._forked = True
        self._draw_if_frozen()

    def _hangup(self) -> None:
        try:
            actions.hangup(self.client, self.call_control_id, self.rx)
        except Exception as exc:
            self.state.say(error_text(exc))
        else:
            self.state.say("")
        self._draw_if_frozen()

    def _draw_if_frozen(self) -> None:
        """A command answered after the panel stopped refreshing: draw its outcome once."""
        if self._frozen and not self._closed:
            if self.state.actions["transcription"].phase == "off":
                self.transcript.end_interims()
            self._draw_state(None, self.rx.running, done=True)
            self.transcript.render()

    # -- drawing (the refresh thread) ----------------------------------------------------------

    def _render(self) -> bool:
        now = time.monotonic()
        if "transcription" in self.state.expire(now):
            self.transcript.end_interims()
        snap = self.state.snapshot()
        running = self.rx.running
        ended = snap.call == "ended"
        if ended and self._ended_at is None:
            self._ended_at = now
        done = not running or (ended and self._ended_at is not None and now - self._ended_at >= ENDED_GRACE_S)
        if done:
            self._frozen = True         # from now on a command's answer is drawn by _draw_if_frozen
            self._draw_state(None, running, done)
        elif snap.version != self._drawn_version:
            self._draw_state(snap, running, done)
        self.counters.set_webhooks(snap.webhooks)
        if now >= self._next_slow and running:
            self._next_slow = now + SLOW_INTERVAL_S
            self._slow_counters(now)
        self.transcript.render()
        self.counters.render()
        self.levels.render()
        return not done

    def _slow_counters(self, now: float) -> None:
        self.counters.update_rates(now)
        try:
            health = self.rx.health()
        except Exception:
            if self.rx.running:
                raise
            return                  # the receiver stopped since ``running`` was read: the next draw says so
        self.counters.set_lag(health.get("loop_lag_p50_ms", float("nan")), health.get("loop_lag_p99_ms", float("nan")))
        if self._unknown_streams:
            streams = self.rx.streams
            for stream_id, encoding in zip(streams["stream_id"], streams["encoding"], strict=True):
                if stream_id in self._unknown_streams and isinstance(encoding, str):
                    self.levels.set_encoding(stream_id, encoding)
                    self._unknown_streams.discard(stream_id)
        if self._forked:
            quality = self.rx.quality()
            fork = quality[(quality["source"] == "fork") & (quality["call_control_id"] == self.call_control_id)]
            counts: dict[str, tuple[int, int]] = {}
            for target, packets, lost in zip(fork["track"], fork["packets"], fork["lost"], strict=True):
                before = counts.get(str(target), (0, 0))
                counts[str(target)] = (before[0] + int(packets), before[1] + int(lost))
            self.counters.set_fork(counts)

    def _draw_state(self, snap: CallState | None, running: bool, done: bool) -> None:
        """Draw ``snap`` (None: the state as it is now, read under the draw lock, so that of
        two draws racing, the last one drawn is the newest)."""
        with self._draw_lock:
            self._draw_state_locked(snap or self.state.snapshot(), running, done)

    def _draw_state_locked(self, snap: CallState, running: bool, done: bool) -> None:
        self._drawn_version = snap.version
        call = snap.call + (f" ({snap.hangup_cause})" if snap.hangup_cause else "")
        parties = f", {snap.from_} → {snap.to}" if snap.from_ or snap.to else ""
        direction = f", {snap.direction}" if snap.direction else ""
        self.header.value = (f"<b>Call</b> <code>{html.escape(self.call_control_id)}</code>: "
                             f"<span class='tnb-call-state'>{html.escape(call + direction + parties)}</span>")
        frozen = snap.call == "ended" or not running
        self._syncing.on = True
        try:
            for name, toggle in self.toggles.items():
                action = snap.actions[name]
                text = {"starting": "starting…", "stopping": "stopping…"}.get(action.phase, action.phase)
                description = f"{_LABEL[name]}: {text}" + (f" ({action.note})" if action.note else "")
                style = "danger" if action.note.startswith("failed") else _STYLE[action.phase]
                if not running and snap.call != "ended":    # nothing heard from Telnyx any more
                    description, style = f"{_LABEL[name]}: ? (receiver stopped)", ""
                with toggle.hold_sync():
                    toggle.value = action.active and running
                    toggle.description = toggle.tooltip = description
                    toggle.button_style = style
                    toggle.disabled = frozen
                self.options[name].set_disabled(frozen or action.phase != "off")
        finally:
            self._syncing.on = False
        self.hangup_button.disabled = frozen
        notes = [(snap.status, "#b00")] if snap.status else []
        if done:
            why = "the call ended" if snap.call == "ended" else "the receiver is not running"
            notes.append((f"{why}: this panel no longer refreshes", "gray"))
        self.status.value = "<br>".join(f"<span style='color:{color}'>{html.escape(text)}</span>"
                                        for text, color in notes)

    def close(self) -> None:
        """Stop refreshing and sending commands, release every receiver callback, close the widgets."""
        self._closed = True
        self._commands.shutdown(wait=False, cancel_futures=True)
        super().close()
