"""``Dashboard``: every call a receiver has seen, a picker that opens its panel, and Answer."""

from __future__ import annotations

import concurrent.futures
import html
import threading
from typing import Any

import ipywidgets as w

from telnyx_nb import actions
from telnyx_nb.widgets._live import LiveBox
from telnyx_nb.widgets._refresh import REFRESH_INTERVAL_S
from telnyx_nb.widgets.options import OPTIONS
from telnyx_nb.widgets.panel import CallPanel
from telnyx_nb.widgets.states import ACTIONS, CallState, webhooks_in
from telnyx_nb.widgets.status import error_text

__all__ = ["Dashboard"]

#: Seconds the dashboard waits for ``call.answered`` before a fork requested at answer time.
ANSWER_TIMEOUT_S = 10.0


class Dashboard(LiveBox):
    """Every call ``rx`` has seen (from its webhooks, ``rx.events`` first, then live), one row
    each: direction, parties, state (ringing/answered/ended with the hangup cause), webhooks,
    media-stream frames and transcript results received; ``dashboard.calls()`` gives the same
    as a list of dicts.

    ``dashboard.picker`` selects a call and ``dashboard.open_button`` opens its
    :class:`CallPanel` below (``dashboard.panel``; the previous one is closed). When the
    selected call is an incoming one that rings, an Answer row shows what to request at answer
    time: media "stream" (with the stream options: ``answer`` with ``stream_url`` to ``rx``),
    "fork" (``fork_start`` once ``call.answered`` came: Telnyx's ``answer`` takes no fork) or
    none, and transcription (``answer`` with ``transcription_config``). Answering opens the
    call's panel. Errors (Telnyx's code, title and detail) go to ``dashboard.status``.

    Redraws at most every ``refresh_interval_s`` (≥ 0.1 s) on a thread of its own; stops when
    the receiver stops. ``close()`` releases its callbacks, and its panel's.
    """

    def __init__(self, client: Any, rx: Any, *, refresh_interval_s: float = REFRESH_INTERVAL_S) -> None:
        self.client, self.rx = client, rx
        self._calls: dict[str, CallState] = {}
        self._frames: dict[str, int] = {}
        self._transcripts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._changed = True
        self.table = w.HTML()
        self.table.add_class("tnb-calls")
        self.picker = w.Dropdown(description="call", options=[], layout=w.Layout(width="40em"))
        self.open_button = w.Button(description="Open panel", icon="sliders")
        self.open_button.on_click(lambda _: self.open_panel(self.picker.value) if self.picker.value else None)
        self.answer_button = w.Button(description="Answer", button_style="success", icon="phone")
        self.answer_button.on_click(lambda _: self.answer(self.picker.value) if self.picker.value else None)
        self.answer_media = w.Dropdown(options=("stream", "fork", "none"), value="stream", description="media")
        self.answer_transcription = w.Checkbox(value=True, description="transcription", indent=False)
        self.answer_options = {name: OPTIONS[name]() for name in ACTIONS}
        self.answer_row = w.VBox([w.HBox([self.answer_button, self.answer_media, self.answer_transcription]),
                                  *self.answer_options.values()], layout=w.Layout(display="none"))
        self.status = w.HTML()
        self.status.add_class("tnb-status")
        self.area = w.VBox()
        self.panel: CallPanel | None = None
        super().__init__([self.table, w.HBox([self.picker, self.open_button]), self.answer_row, self.status,
                          self.area])
        self.add_class("tnb-dashboard")
        self._commands = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="telnyx_nb-dashboard-commands")
        self._subscribe(rx, None, self._on_event)
        for ccid, event_type, payload, event_id, occurred_at in webhooks_in(rx.events):
            self._webhook(ccid, event_type, payload, event_id, occurred_at)
        for ccid, n in rx.frames["call_control_id"].value_counts().items():
            self._frames[str(ccid)] = self._frames.get(str(ccid), 0) + int(n)
        self._start_refresh(self._render, "telnyx_nb-dashboard-refresh", refresh_interval_s)

    # -- receiver callbacks ----------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        ccid = event.get("call_control_id")
        if not isinstance(ccid, str):
            return
        if event["event_type"] == "stream.media":
            with self._lock:
                self._frames[ccid] = self._frames.get(ccid, 0) + 1
                self._changed = True
        elif "event_id" in event:
            self._webhook(ccid, event["event_type"], event.get("payload") or {}, event["event_id"],
                          event.get("occurred_at"))

    def _webhook(self, ccid: str, event_type: str, payload: dict[str, Any], event_id: str | None,
                 occurred_at: Any = None) -> None:
        with self._lock:
            state = self._calls.get(ccid)
            if state is None:
                state = self._calls[ccid] = CallState(ccid)
            if state.webhook(event_type, payload, event_id, occurred_at) and event_type == "call.transcription":
                self._transcripts[ccid] = self._transcripts.get(ccid, 0) + 1
            self._changed = True

    # -- what it shows -------------------------------------------------------------------------

    def calls(self) -> list[dict[str, Any]]:
        """One dict per call seen, in order of first appearance: ``call_control_id``,
        ``direction``, ``from``, ``to``, ``state``, ``hangup_cause``, ``webhooks``, ``frames``,
        ``transcripts``."""
        with self._lock:
            return [{"call_control_id": ccid, "direction": s.direction, "from": s.from_, "to": s.to,
                     "state": s.call, "hangup_cause": s.hangup_cause, "webhooks": s.webhooks,
                     "frames": self._frames.get(ccid, 0), "transcripts": self._transcripts.get(ccid, 0)}
                    for ccid, s in self._calls.items()]

    def ringing(self, call_control_id: str | None) -> bool:
        """True for an incoming call that rings (the Answer row shows for it)."""
        with self._lock:
            state = self._calls.get(call_control_id or "")
            return state is not None and state.call == "ringing" and state.direction == "incoming"

    def _render(self) -> bool:
        with self._lock:
            changed, self._changed = self._changed, False
        if changed:
            calls = self.calls()
            head = "".join(f"<th style='text-align:left;padding-right:1em'>{h}</th>" for h in
                           ("call", "direction", "from → to", "state", "webhooks", "frames", "transcripts"))
            rows = "".join(
                "<tr class='tnb-call-row'>" + "".join(
                    f"<td style='padding-right:1em'>{html.escape(str(v))}</td>" for v in (
                        c["call_control_id"], c["direction"] or "", f"{c['from'] or '?'} → {c['to'] or '?'}",
                        c["state"] + (f" ({c['hangup_cause']})" if c["hangup_cause"] else ""),
                        c["webhooks"], c["frames"], c["transcripts"])) + "</tr>"
                for c in calls)
            self.table.value = f"<table><tr>{head}</tr>{rows}</table>" if calls else "<i>no calls yet</i>"
            if len(calls) != len(self.picker.options):
                self._set_options([(f"{c['from'] or '?'} → {c['to'] or '?'}  {c['call_control_id']}",
                                    c["call_control_id"]) for c in calls])
        self.answer_row.layout.display = "" if self.ringing(self.picker.value) else "none"
        if not self.rx.running:
            self.status.value = "<span style='color:gray'>the receiver is not running: no more updates</span>"
            return False
        return True

    def _set_options(self, options: list[tuple[str, str]]) -> None:
        """New picker options, keeping the call picked: ipywidgets 8 resets a Dropdown's value to
        its first option when its options change; here the pick stays (and with it the Answer
        row), as a person expects when another call comes in."""
        picked = self.picker.value
        with self.picker.hold_sync():            # one message to the front end, not two
            self.picker.options = options
            if picked is not None and picked in {value for _, value in options}:
                self.picker.value = picked

    # -- actions -------------------------------------------------------------------------------

    def open_panel(self, call_control_id: str) -> CallPanel:
        """Open the panel of ``call_control_id`` below the table (closing the one open before)."""
        if self.panel is not None:
            self.panel.close()
        self.panel = CallPanel(self.client, self.rx, call_control_id)
        self.area.children = (self.panel,)
        return self.panel

    def answer(self, call_control_id: str) -> concurrent.futures.Future[None]:
        """Open the call's panel and answer it on the dashboard's command thread, with what the
        Answer row asks for; the Future completes when Telnyx answered (errors also go to
        ``dashboard.status``)."""
        self.open_panel(call_control_id)
        media, transcription = self.answer_media.value, self.answer_transcription.value
        options: dict[str, Any] = {}
        if media == "stream":
            options.update(self.answer_options["streaming"].kwargs(self.rx))
        if transcription:
            options.update(transcription=True,
                           transcription_config=self.answer_options["transcription"].kwargs(self.rx))

        def run() -> None:
            try:
                actions.answer(self.client, call_control_id, self.rx, stream=media == "stream", **options)
                if media == "fork":
                    self.rx.wait_for("call.answered", call_control_id, timeout=ANSWER_TIMEOUT_S)
                    actions.start_forking(self.client, call_control_id, self.rx,
                                          **self.answer_options["forking"].kwargs(self.rx))
            except Exception as exc:
                self.status.value = f"<span style='color:#b00'>{html.escape(error_text(exc))}</span>"
                raise
            self.status.value = ""

        return self._commands.submit(run)

    def close(self) -> None:
        """Stop refreshing, release the receiver callbacks (the open panel's too), close the widgets."""
        self._commands.shutdown(wait=False, cancel_futures=True)
        if self.panel is not None:
            self.panel.close()
        super().close()
