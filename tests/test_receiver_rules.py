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
            await asyncio.to_thread(release.wait, 10)

    thread = threading.Thread(target=asyncio.run, args=(media_only(),))
    thread.start()
    try:
        assert ready.wait(10)
        wait_until(lambda: len(rx.frames) == 1)
        with pytest.raises(StreamNotStartedError, match="'start' frame"):
            rx.send_audio("early", np.zeros(160, np.int16), 8000)
    finally:
        release.set()
        thread.join(10)
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
    assert bus.close(5)
    assert [event["i"] for event in seen] == [0, 1]


def test_each_callback_gets_its_own_copy_and_errors_are_counted():
    bus = EventBus()
    payload = {"nested": {"k": 1}}
    got = []

    def mutate(event):
        event["payload"]["nested"]["k"] = 99
        raise RuntimeError("boom")

    bus.on("x", mutate)
    bus.on("*", got.append)
    bus.start()
    with pytest.warns(RuntimeWarning, match="boom"):
        bus.emit("x", lambda: {"payload": payload})
        assert bus.close(5)
    assert got[0]["payload"] == {"nested": {"k": 1}}     # the second listener saw an untouched copy
    assert bus.errors == 1


def test_unsubscribe_removes_the_listener():
    bus = EventBus()
    seen = []
    off = bus.on("x", seen.append)
    assert bus.active
    off()
    assert not bus.active
    bus.start()
    bus.emit("x", lambda: {})
    assert bus.close(5) and seen == []


def test_a_thread_that_does_not_end_is_reported_not_forgotten():
    from telnyx_nb.loopthread import LoopThread

    io = LoopThread("telnyx_nb-test")
    io.start()
    release = threading.Event()

    async def stuck() -> None:
        release.wait(10)                        # blocks the loop itself, as a misbehaving callback would

    io.submit(stuck())
    with pytest.warns(RuntimeWarning, match="did not end"):
        assert io.stop(0.2) is False
    assert io.alive
    release.set()
    assert io.stop(5) is True and not io.alive
