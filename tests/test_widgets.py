"""The notebook widgets through their API, against the sandbox, a live Receiver and the real SDK.

Each test clicks as a person would (``panel.toggles["streaming"].value = True``) and waits for
the state the webhooks produce; nothing of the package is mocked. Timing is in
``benchmarks/bench_widgets.py``; the same panel clicked in a real JupyterLab is in
``test_widgets_browser.py``.
"""

from __future__ import annotations

import itertools

import pytest

import telnyx_nb as tnb
from telnyx_nb.sandbox import Sandbox

from waiting import wait_until

_numbers = (f"+1555020{n:04d}" for n in itertools.count())


@pytest.fixture(scope="module")
def sb():
    with Sandbox(ring_s=0.05, webhook_backoff_s=0.05) as s:       # the default scenario: support_call
        yield s


@pytest.fixture(scope="module")
def rx(sb):
    with tnb.Receiver(public_key=sb.public_key) as r:
        yield r


@pytest.fixture(scope="module")
def client(sb):
    return sb.client()


@pytest.fixture
def call(sb, client, rx):
    """An answered call playing the support-call scenario; hung up afterwards."""
    ccid = tnb.dial(client, rx, connection_id=sb.connection_id, to=next(_numbers),
                    from_="+15550199").data.call_control_id
    rx.wait_for("call.answered", ccid, timeout=10)
    yield ccid
    if sb.call_state(ccid) != "ended":
        sb.hangup(ccid)


@pytest.fixture
def panel_of(client, rx):
    """Open panels on ``rx``; each is closed afterwards and must leave no callback behind."""
    panels = []

    def open_panel(ccid, receiver=rx):
        panels.append(tnb.CallPanel(client, receiver, ccid))
        return panels[-1]

    yield open_panel
    for panel in panels:
        panel.close()
    for panel in panels:
        assert not panel.rx.running or panel.rx.health()["callbacks"] == 0


def phase(panel, name, want, note=None):
    """Wait until the panel's ``name`` action is in phase ``want`` (with ``note``) and drawn so."""
    def drawn():
        action = panel.state.actions[name]
        toggle = panel.toggles[name]
        return (action.phase == want and (note is None or note in action.note) and toggle.value == action.active
                and want in toggle.description.replace("…", "") and (note is None or note in toggle.description))
    wait_until(drawn, timeout=15, what=f"{name} {want} {note or ''} (now {panel.state.actions[name]})")


def test_each_toggle_starts_and_stops_its_action(call, panel_of, rx):
    panel = panel_of(call)
    for name in ("streaming", "forking", "transcription"):
        panel.toggles[name].value = True
        assert "starting" in panel.state.actions[name].phase or panel.state.actions[name].phase == "on"
        phase(panel, name, "on")
        panel.toggles[name].value = False
        phase(panel, name, "off")
        assert panel.state.actions[name].note == ""
    commands = rx.commands[rx.commands["call_control_id"] == call]
    assert {"streaming_start", "streaming_stop", "fork_start", "fork_stop", "transcription_start",
            "transcription_stop"} <= set(commands["command"])
    assert set(commands["status"]) == {"ok"}
    events = rx.events[rx.events["call_control_id"] == call]
    assert {"streaming.started", "streaming.stopped", "call.fork.started", "call.fork.stopped",
            "call.transcription.stopped"} <= set(events["event_type"])


def test_counters_levels_and_transcript_change_while_the_call_runs(call, panel_of):
    panel = panel_of(call)
    panel.options["transcription"].tracks.value = "both"
    panel.toggles["streaming"].value = True
    panel.toggles["transcription"].value = True
    phase(panel, "streaming", "on")
    first = wait_until(lambda: sum(panel.counters.counts()["frames"].values()), what="media frames counted")
    wait_until(lambda: sum(panel.counters.counts()["frames"].values()) > first + 50, what="more frames")
    counts = wait_until(lambda: (c := panel.counters.counts())["frames_per_s"].get("inbound", 0) > 20 and c,
                        what="frames per second")
    assert set(counts["frames"]) == {"inbound", "outbound"}
    assert counts["webhooks"] >= 3 and "frames" in panel.counters.value
    wait_until(lambda: panel.counters.counts()["loop_lag_ms"] is not None, what="loop lag")
    wait_until(lambda: max(panel.levels.levels.values()) > -40, what="a track's level above -40 dBFS")
    lines = wait_until(lambda: len(panel.transcript.lines) >= 2 and panel.transcript.lines, timeout=20,
                       what="two transcript lines")
    wait_until(lambda: len(panel.transcript.lines) > len(lines), timeout=20, what="the transcript growing")
    wait_until(lambda: "outbound (this side)" in panel.transcript.value and "inbound (far end)"
               in panel.transcript.value, timeout=20, what="both tracks labelled")
    finals = [text for _, text, final in panel.transcript.lines if final]
    assert len(finals) == len(set(finals)), "interim results are replaced, and no final line is repeated"


def test_a_stream_replaced_by_a_fork_shows_as_such(call, panel_of):
    panel = panel_of(call)
    panel.toggles["streaming"].value = True
    phase(panel, "streaming", "on")
    panel.toggles["forking"].value = True
    phase(panel, "forking", "on")
    phase(panel, "streaming", "off", note="replaced by fork")
    wait_until(lambda: sum(p for p, _ in panel.counters.counts()["rtp"].values()) > 0, what="RTP packets counted")
    panel.toggles["streaming"].value = True                  # and back: the fork is replaced by the stream
    phase(panel, "streaming", "on")
    phase(panel, "forking", "off", note="replaced by stream")


@pytest.mark.filterwarnings("ignore:another telnyx_nb.Receiver is still listening")
def test_streaming_failed_shows_its_failure_reason(sb, client, panel_of):
    # A receiver behind a tunnel that is down: nothing listens at its public stream URL.
    with tnb.Receiver(public_url="http://127.0.0.1:9", public_key=sb.public_key) as behind:
        ccid = tnb.dial(client, connection_id=sb.connection_id, to=next(_numbers), from_="+15550199",
                        webhook_url=f"http://127.0.0.1:{behind.port}/webhooks").data.call_control_id
        behind.wait_for("call.answered", ccid, timeout=10)
        panel = panel_of(ccid, behind)
        panel.toggles["streaming"].value = True
        phase(panel, "streaming", "off", note="failed: connection_failed")
        assert panel.toggles["streaming"].button_style == "danger"
        sb.hangup(ccid)


def test_an_sdk_error_lands_in_the_status_line(sb, rx, panel_of):
    ccid = sb.incoming_call(to=next(_numbers), webhook_url=rx.webhook_url)     # rings until answered
    rx.wait_for("call.initiated", ccid, timeout=10)
    panel = panel_of(ccid)
    panel.toggles["streaming"].value = True
    wait_until(lambda: "90034" in panel.status.value, what="422 90034 in the status line")
    assert "422 90034 Call not answered yet: This call can" in panel.status.value
    assert "Traceback" not in panel.status.value
    phase(panel, "streaming", "off")
    sb.hangup(ccid)
    wait_until(lambda: not panel.refreshing, what="the panel to stop refreshing after the call ended")
    assert "the call ended: this panel no longer refreshes" in panel.status.value
    assert all(toggle.disabled for toggle in panel.toggles.values())


def test_close_releases_every_callback(call, client, rx):
    assert rx.health()["callbacks"] == 0
    panels = [tnb.CallPanel(client, rx, call) for _ in range(2)]
    panels[0].toggles["streaming"].value = True
    phase(panels[1], "streaming", "on")                 # the other panel follows Telnyx, not its own clicks
    assert rx.health()["callbacks"] == 1               # one per receiver, however many widgets
    for panel in panels:
        panel.close()
    assert rx.health()["callbacks"] == 0
    assert not any(panel.refreshing for panel in panels)


def test_dashboard_lists_calls_and_answers_a_ringing_one(sb, client, rx, call):
    dashboard = tnb.Dashboard(client, rx)
    try:
        assert call in [c["call_control_id"] for c in dashboard.calls()]
        ccid = sb.incoming_call(to=next(_numbers), from_="+15550123", webhook_url=rx.webhook_url)
        row = wait_until(lambda: next((c for c in dashboard.calls() if c["call_control_id"] == ccid
                                       and c["state"] == "ringing"), None), what="the ringing call listed")
        assert row["direction"] == "incoming" and row["from"] == "+15550123"
        wait_until(lambda: ccid in [value for _, value in dashboard.picker.options], what="the call in the picker")
        dashboard.picker.value = ccid
        wait_until(lambda: dashboard.answer_row.layout.display == "", what="the Answer row shown")
        dashboard.answer_media.value = "stream"
        dashboard.answer_transcription.value = True
        dashboard.answer(ccid).result(timeout=10)
        panel = dashboard.panel
        assert panel is not None and panel.call_control_id == ccid
        phase(panel, "streaming", "on")
        wait_until(lambda: panel.transcript.lines, timeout=20, what="a transcript of the answered call")
        wait_until(lambda: (c := next(c for c in dashboard.calls() if c["call_control_id"] == ccid))["frames"] > 0
                   and c["state"] == "answered", what="frames counted for the answered call")
        wait_until(lambda: dashboard.answer_row.layout.display == "none", what="the Answer row hidden")
        assert ccid in dashboard.table.value
        sb.hangup(ccid)
    finally:
        dashboard.close()
    assert rx.health()["callbacks"] == 0


def test_rich_reprs_show_state_urls_and_table_sizes(sb, rx, tmp_path):
    html = rx._repr_html_()
    assert "listening" in html and rx.webhook_url in html and rx.stream_url in html and "events rows" in html
    assert sb.base_url in sb._repr_html_() and "running" in repr(sb)
    saved = tnb.load(rx.save(tmp_path / "session"))
    assert "frames rows" in saved._repr_html_() and str(tmp_path) in saved._repr_html_()


def _events_of(rx, ccid, event_type):
    events = rx.events
    return int(((events["call_control_id"] == ccid) & (events["event_type"] == event_type)).sum())


@pytest.mark.filterwarnings("ignore:another telnyx_nb.Receiver is still listening")
def test_a_stream_that_fails_after_an_earlier_one_ends_the_start(sb, client, panel_of):
    # The stream URL is another receiver's port: the first stream reaches it; once it stopped,
    # nothing listens there and the next stream fails (a tunnel that went down).
    tunnel_end = tnb.Receiver(public_key=sb.public_key).start()
    with tunnel_end, tnb.Receiver(public_url=f"http://127.0.0.1:{tunnel_end.port}", public_key=sb.public_key) as behind:
        ccid = tnb.dial(client, connection_id=sb.connection_id, to=next(_numbers), from_="+15550199",
                        webhook_url=f"http://127.0.0.1:{behind.port}/webhooks").data.call_control_id
        behind.wait_for("call.answered", ccid, timeout=10)
        panel = panel_of(ccid, behind)
        panel.toggles["streaming"].value = True
        phase(panel, "streaming", "on")
        panel.toggles["streaming"].value = False
        phase(panel, "streaming", "off")
        tunnel_end.stop()
        panel.toggles["streaming"].value = True
        wait_until(lambda: _events_of(behind, ccid, "streaming.failed"), what="streaming.failed")
        phase(panel, "streaming", "off", note="failed: connection_failed")
        assert panel.toggles["streaming"].button_style == "danger"
        sb.hangup(ccid)


def test_replaced_by_fork_follows_the_webhooks_in_every_panel(sb, client, rx, call, panel_of):
    clicked, watching = panel_of(call), panel_of(call)
    clicked.toggles["streaming"].value = True
    phase(watching, "streaming", "on")
    clicked.toggles["forking"].value = True
    for panel in (clicked, watching):
        phase(panel, "forking", "on")
        phase(panel, "streaming", "off", note="replaced by fork")
    replayed = panel_of(call)                                # opened afterwards: from rx.events
    phase(replayed, "streaming", "off", note="replaced by fork")
    tnb.start_streaming(client, call, rx)                    # from a cell: the stream replaces the fork
    for panel in (clicked, watching, replayed):
        phase(panel, "streaming", "on")
        phase(panel, "forking", "off", note="replaced by stream")
    tnb.start_forking(client, call, rx)                      # and a fork from a cell replaces the stream
    for panel in (clicked, watching, replayed):
        phase(panel, "streaming", "off", note="replaced by fork")
    tnb.stop_forking(client, call, rx)                       # a stop asked for is no replacement
    for panel in (clicked, watching, replayed):
        phase(panel, "forking", "off")
        assert panel.state.actions["forking"].note == ""


def test_lost_counts_each_stream_apart_and_agrees_with_quality(sb, client, rx, call, panel_of):
    sb.impair(call, loss=0.05, seed=7)
    panel = panel_of(call)                                   # open before any stream: it sees every frame

    def stream_frames(n):
        tnb.start_streaming(client, call, rx)
        before = _events_of(rx, call, "streaming.stopped")
        mark = sum(panel.counters.counts()["frames"].values())
        wait_until(lambda: sum(panel.counters.counts()["frames"].values()) > mark + n, what=f"{n} more frames")
        return before

    stopped = stream_frames(300)
    late = panel_of(call)                                    # opened mid-stream: sees part of the first stream
    wait_until(lambda: sum(late.counters.counts()["frames"].values()) > 20, what="frames in the late panel")
    tnb.stop_streaming(client, call, rx)
    wait_until(lambda: _events_of(rx, call, "streaming.stopped") > stopped, what="the first stream stopped")
    stopped = stream_frames(60)                              # chunks restart at 1: a shorter second stream
    tnb.stop_streaming(client, call, rx)
    wait_until(lambda: _events_of(rx, call, "streaming.stopped") > stopped, what="the second stream stopped")

    def quality_lost():
        quality = rx.quality()
        rows = quality[(quality["source"] == "stream") & (quality["call_control_id"] == call)]
        return int(rows["lost"].sum())

    truth = wait_until(quality_lost, what="losses in rx.quality()")
    wait_until(lambda: sum(panel.counters.counts()["lost"].values()) == quality_lost(),
               what=f"the panel's lost = rx.quality()'s ({panel.counters.counts()['lost']} vs {truth})")
    assert 0 <= sum(late.counters.counts()["lost"].values()) <= truth   # fewer frames seen, fewer gaps


def test_dashboard_picker_keeps_its_call_when_another_arrives(sb, client, rx):
    dashboard = tnb.Dashboard(client, rx)
    try:
        first = sb.incoming_call(to=next(_numbers), from_="+15550124", webhook_url=rx.webhook_url)
        wait_until(lambda: first in [value for _, value in dashboard.picker.options], what="the call in the picker")
        dashboard.picker.value = first
        wait_until(lambda: dashboard.answer_row.layout.display == "", what="the Answer row shown")
        second = sb.incoming_call(to=next(_numbers), from_="+15550125", webhook_url=rx.webhook_url)
        wait_until(lambda: second in [value for _, value in dashboard.picker.options], what="the next call listed")
        wait_until(lambda: second in dashboard.table.value, what="the next call in the table")
        assert dashboard.picker.value == first
        sb.hangup(second)                                   # one more change drawn after the new option
        wait_until(lambda: any(c["call_control_id"] == second and c["state"] == "ended" for c in dashboard.calls())
                   and "ended" in dashboard.table.value, what="the next call ended in the table")
        assert dashboard.picker.value == first and dashboard.ringing(first)
        assert dashboard.answer_row.layout.display == ""
        sb.hangup(first)
    finally:
        dashboard.close()


def test_an_interim_left_without_its_final_is_no_longer_shown_pending(call, panel_of):
    panel = panel_of(call)
    panel.options["transcription"].interim.value = True
    for _ in range(5):            # until a stop lands between an interim and its final
        panel.toggles["transcription"].value = True
        wait_until(lambda: "tnb-interim" in panel.transcript.value, timeout=20, what="an interim result drawn")
        panel.toggles["transcription"].value = False
        phase(panel, "transcription", "off")
        wait_until(lambda: "tnb-interim" not in panel.transcript.value and "<i>" not in panel.transcript.value,
                   what="no interim in italics once the transcription stopped")
        if "(interim, no final)" in panel.transcript.value:
            break
    else:
        pytest.fail("every stop came after the interim's final result")
    assert not panel.transcript.pending
    assert any(not final for _, _, final in panel.transcript.lines)


def test_hang_up_goes_through_the_helper_into_rx_commands(call, panel_of, rx):
    panel = panel_of(call)
    panel.hangup_button.click()
    wait_until(lambda: not panel.refreshing, what="the panel frozen after the hang-up")
    commands = rx.commands[(rx.commands["call_control_id"] == call) & (rx.commands["command"] == "hangup")]
    assert list(commands["status"]) == ["ok"]
    assert panel.state.call == "ended" and "ended (normal_clearing)" in panel.header.value


@pytest.mark.filterwarnings("ignore:another telnyx_nb.Receiver is still listening")
def test_toggles_read_unknown_once_the_receiver_stopped(sb, client, panel_of):
    with tnb.Receiver(public_key=sb.public_key) as own:
        ccid = tnb.dial(client, own, connection_id=sb.connection_id, to=next(_numbers),
                        from_="+15550199").data.call_control_id
        own.wait_for("call.answered", ccid, timeout=10)
        panel = panel_of(ccid, own)
        panel.toggles["streaming"].value = True
        phase(panel, "streaming", "on")
    wait_until(lambda: not panel.refreshing, what="the panel frozen after rx.stop()")
    for toggle in panel.toggles.values():
        assert toggle.description.endswith(": ? (receiver stopped)"), toggle.description
        assert toggle.disabled and not toggle.value
    assert "the receiver is not running" in panel.status.value
    sb.hangup(ccid)


def test_a_toggle_set_on_a_frozen_panel_is_put_back_with_telnyx_error(sb, call, panel_of):
    panel = panel_of(call)
    sb.hangup(call)
    wait_until(lambda: not panel.refreshing, what="the panel frozen after the call ended")
    panel.toggles["forking"].value = True                      # from Python: a disabled button takes it
    wait_until(lambda: "90018" in panel.status.value, what="422 90018 in the status line")
    wait_until(lambda: not panel.toggles["forking"].value, what="the toggle put back")
    assert panel.toggles["forking"].description == "Forking: off"
    assert "the call ended: this panel no longer refreshes" in panel.status.value
