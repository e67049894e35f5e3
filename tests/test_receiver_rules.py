"""Receiver rules added by the restructuring: one stream per socket, a clear error for audio
sent before ``start``, bounded callbacks with copies, threads that do not end are reported."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from test_receiver import media_frame, start_frame, wait_until, ws_send

import telnyx_nb as tnb
from telnyx_nb.errors import StreamNotOpenError, StreamNotStartedError, TelnyxNbError
from telnyx_nb.events import EventBus

from waiting import timeout


@pytest.fixture
def rx():
    with tnb.Receiver() as receiver:
        yield receiver


def test_a_frame_naming_another_stream_is_rejected_not_a_second_stream(rx):
    messages = [start_frame("s1"), media_frame("s1", 2, "inbound", 1, b"\xff" * 160),
                media_frame("intruder", 3, "inbound", 2, b"\x00" * 160),
                media_frame("s1", 4, "inbound", 2, b"\xff" * 160)]
    asyncio.run(ws_send(rx.stream_url, messages))
    wait_until(lambda: rx.streams["ended_at"].notna().all() and len(rx.streams) == 1)
    assert rx.streams["stream_id"].tolist() == ["s1"]
    assert rx.frames["chunk"].tolist() == [1, 2]
    errors = rx.stream_errors
    assert errors["reason"].tolist() == ["stream_mismatch"]
    assert errors["stream_id"].tolist() == ["s1"]


def test_send_audio_before_start_names_the_missing_start(rx):
    ready, release = threading.Event(), threading.Event()

    async def media_only() -> None:
        import aiohttp
        async with aiohttp.ClientSession() as session, session.ws_connect(rx.stream_url) as ws:
            await ws.send_str(media_frame("early", 1, "inbound", 1, b"\xff" * 160))
            ready.set()
            await asyncio.to_thread(release.wait, timeout(10))

    thread = threading.Thread(target=asyncio.run, args=(media_only(),))
    thread.start()
    try:
        assert ready.wait(timeout(10))
        wait_until(lambda: len(rx.frames) == 1)
        with pytest.raises(StreamNotStartedError, match="'start' frame"):
            rx.send_audio("early", np.zeros(160, np.int16), 8000)
    finally:
        release.set()
        thread.join(timeout(10))
    with pytest.raises(StreamNotOpenError):
        rx.send_audio("never-seen", np.zeros(160, np.int16), 8000)
    assert issubclass(StreamNotStartedError, TelnyxNbError) and issubclass(StreamNotOpenError, LookupError)


def test_event_bus_is_bounded_and_counts_what_it_drops():
    bus = EventBus(queue_size=2)
    seen = []
    bus.on("x", seen.append)
    for i in range(5):                          # no worker yet: the queue fills
        bus.emit("x", lambda i=i: {"i": i})
    assert bus.dropped == 3
    bus.start()
    assert bus.close(timeout(5))
    assert [event["i"] for event in seen] == [0, 1]


def test_each_callback_gets_its_own_copy_and_errors_are_counted(caplog):
    bus = EventBus()
    payload = {"nested": {"k": 1}}
    got = []

    def mutate(event):
        event["payload"]["nested"]["k"] = 99
        raise RuntimeError("boom")

    bus.on("x", mutate)
    bus.on("*", got.append)
    bus.start()
    bus.emit("x", lambda: {"payload": payload})
    assert bus.close(timeout(5))
    assert got[0]["payload"] == {"nested": {"k": 1}}     # the second listener saw an untouched copy
    assert bus.errors == 1
    (record,) = [r for r in caplog.records if r.name == "telnyx_nb.events"]     # logged, with its traceback
    assert "boom" in record.getMessage() and record.exc_info[0] is RuntimeError


def test_unsubscribe_removes_the_listener():
    bus = EventBus()
    seen = []
    off = bus.on("x", seen.append)
    assert bus.active
    off()
    assert not bus.active
    bus.start()
    bus.emit("x", lambda: {})
    assert bus.close(timeout(5)) and seen == []


def test_a_thread_that_does_not_end_is_reported_not_forgotten():
    from telnyx_nb.loopthread import LoopThread

    io = LoopThread("telnyx_nb-test")
    io.start()
    release = threading.Event()

    async def stuck() -> None:
        release.wait(timeout(10))                        # blocks the loop itself, as a misbehaving callback would

    io.submit(stuck())
    with pytest.warns(RuntimeWarning, match="did not end"):
        assert io.stop(0.2) is False
    assert io.alive
    release.set()
    assert io.stop(timeout(5)) is True and not io.alive


def test_receiver_health_counts_dropped_callbacks_and_unjoined_threads():
    release = threading.Event()
    rx = tnb.Receiver(callback_queue_size=1, stop_timeout_s=0.3).start()
    rx.on("stream.start", lambda event: release.wait(timeout(10)))     # a callback that blocks
    asyncio.run(ws_send(rx.stream_url, [start_frame(f"s{i}") for i in range(4)]))
    wait_until(lambda: rx.health()["callbacks_dropped"] >= 1)
    with pytest.warns(RuntimeWarning, match="callback still runs"):
        rx.stop()
    assert rx.health()["unjoined_threads"] == ["telnyx_nb-callbacks"]
    release.set()


def test_webhook_callbacks_get_a_copy_never_the_stored_payload():
    from telnyx_nb.wire import webhooks

    rx = tnb.Receiver().start()
    seen = threading.Event()

    def vandal(event):
        event["payload"]["call_control_id"] = "changed"
        event["payload"]["extra"] = 1
        seen.set()

    rx.on("call.answered", vandal)
    body = webhooks.encode_body(webhooks.build_envelope("call.answered", {"call_control_id": "v3:c"}))
    try:
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(rx.webhook_url, data=body), timeout=timeout(5)).close()
        assert seen.wait(timeout(5))
    finally:
        rx.stop()
    payload = rx.events["payload"].iloc[0]
    assert payload == {"call_control_id": "v3:c"}
    payload["x"] = 2                                   # a snapshot is the user's: the store is untouched
    assert rx.events["payload"].iloc[0] == {"call_control_id": "v3:c"}


def test_stop_from_a_callback_ends_cleanly():
    rx = tnb.Receiver().start()
    done = threading.Event()

    def stop_here(event):
        rx.stop()
        done.set()

    rx.on("stream.start", stop_here)
    asyncio.run(ws_send(rx.stream_url, [start_frame("s")]))
    assert done.wait(timeout(10))
    assert rx.health()["unjoined_threads"] == [] and rx.health()["callback_errors"] == 0


def test_limits_out_of_range_are_refused_at_construction():
    for bad in ({"max_message_size": -1}, {"max_webhook_size": 0}, {"backlog": -5}, {"read_size": 0},
                {"stop_timeout_s": -1}, {"fork_claim_window_s": 0}, {"callback_queue_size": 0},
                {"payload_types": {300: "PCMU"}}, {"payload_types": {96: "NOPE"}}, {"signature_tolerance_s": 0}):
        with pytest.raises(ValueError):
            tnb.Receiver(**bad)
    with pytest.raises(TypeError, match="callable"):
        tnb.Receiver().on("x", 42)


def test_send_audio_refuses_stereo_and_bad_rates(rx):
    for samples, rate in ((np.zeros((160, 2), np.int16), 8000), (np.zeros(160, np.int16), 0),
                          (np.zeros(160, np.int16), -8000), (np.zeros(160, np.int16), 8000.5)):
        with pytest.raises(ValueError):
            rx.send_audio("any", samples, rate)


def test_a_restarted_receiver_records_ordinary_ends_again():
    rx = tnb.Receiver().start()
    rx.stop()
    rx.start()
    try:
        asyncio.run(ws_send(rx.stream_url, [start_frame("after-restart")]))
        wait_until(lambda: rx.streams["ended_at"].notna().all() and len(rx.streams) == 1)
        assert rx.streams["end_reason"].tolist() == ["closed"]
    finally:
        rx.stop()
