"""The call state machine and the Call Control commands that drive it.

A call is ``ringing`` → ``answered`` → ``ended``. A dialled call rings ``ring_s`` and is
answered by the far end; an incoming call (``Sandbox.incoming_call``) rings until the
application answers it through the API. From the answer on, the media clock ticks the call
every 20 ms: frame ``i`` of its scenario goes to the active stream or fork, due DTMF digits
and transcription results are sent, and after the scenario's last frame the far end hangs
up. Everything here runs on the sandbox loop; commands raise :class:`ApiError`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import numpy as np

from telnyx_nb.sandbox.errors import ApiError
from telnyx_nb.sandbox.forker import Fork
from telnyx_nb.sandbox.ground_truth import GroundTruth
from telnyx_nb.sandbox.impairments import Channel, Impairment
from telnyx_nb.sandbox.media_clock import PERIOD_S, MediaClock
from telnyx_nb.sandbox.params import parse_udp_target, validate
from telnyx_nb.sandbox.quality_stats import call_quality_stats
from telnyx_nb.sandbox.scenarios import Scenario
from telnyx_nb.sandbox.streamer import CLOSE_TIMEOUT_S, MediaStream
from telnyx_nb.sandbox.transcription import Transcriber
from telnyx_nb.sandbox.webhook_sender import WebhookSender
from telnyx_nb.wire import codecs, webhooks

__all__ = ["Call", "CallControl", "Route", "COMMAND_WINDOW_S", "ACTIONS", "MAX_RECEIVED_S"]

COMMAND_WINDOW_S = 60.0
#: Application audio kept per stream for ``Sandbox.received_audio``, in seconds; later audio
#: is still played, not kept.
MAX_RECEIVED_S = 600.0
ACTIONS = ("answer", "hangup", "streaming_start", "streaming_stop", "fork_start", "fork_stop",
           "transcription_start", "transcription_stop")
_OTHER_LAW = {"PCMU": "PCMA", "PCMA": "PCMU"}


@dataclass(frozen=True)
class Route:
    """What a number plays: its scenario and the call's codec (PCMU or PCMA)."""

    scenario: Scenario
    codec: Literal["PCMU", "PCMA"] = "PCMU"

    def prepare(self) -> Route:
        """Render and encode the audio now (in the caller's thread), not on the media clock."""
        self.scenario.encoded(self.codec)
        return self


def new_call_control_id() -> str:
    """``v3:`` + base64url token, like Telnyx's."""
    return "v3:" + base64.urlsafe_b64encode(os.urandom(39)).decode("ascii").rstrip("=")


def _now_iso() -> str:
    return webhooks.format_occurred_at()


class Call:
    """One call leg: identity, state, media position, and what is attached to it."""

    def __init__(self, control: CallControl, *, direction: str, to: str, from_: str, webhook_url: str | None,
                 route: Route, client_state: str | None) -> None:
        self.control = control
        self.clock: MediaClock = control.clock
        self.ccid = new_call_control_id()
        self.leg_id = str(uuid.uuid1())
        self.session_id = str(uuid.uuid1())
        self.user_id = control.user_id
        self.direction = direction
        self.to, self.from_ = to, from_
        self.webhook_url = webhook_url
        self.scenario = route.scenario
        self.codec = route.codec
        self.client_state = client_state
        self.state: Literal["ringing", "answered", "ended"] = "ringing"
        self.start_time = _now_iso()
        self.started_mono = time.monotonic()
        self.end_time: str | None = None
        self.ended_mono: float | None = None
        self.first_tick: int | None = None
        #: When frame 0 of the call's media went out (unix ns on the media clock): call media time 0.
        self.media_origin_ns: int | None = None
        self.last_frame: int | None = None
        self.frames_played = 0
        self.stream: MediaStream | None = None
        self.fork: Fork | None = None
        self.transcriber: Transcriber | None = None
        self.impairment: Impairment | None = None
        self._channels: dict[str, Channel] = {}
        self._frames: dict[str, tuple[dict[str, bytes], int]] = {}  # wire encoding -> (payload tracks, frame size)
        self._webhook_rng: random.Random | None = None
        self.ground_truth = GroundTruth()
        self.commands: dict[str, float] = {}
        self._scripted_dtmf = deque(self.scenario.dtmf)
        self.pending_dtmf: deque[str] = deque()
        #: stream id -> (rate, int16 little-endian PCM): the application's audio as decoded.
        self.received: dict[str, tuple[int, bytearray]] = {}

    def record_app_audio(self, stream_id: str, rate: int, samples: np.ndarray) -> None:
        """Keep the application's audio (decoded, at its bidirectional ``rate``), up to MAX_RECEIVED_S."""
        rate, pcm = self.received.setdefault(stream_id, (rate, bytearray()))
        room = int(MAX_RECEIVED_S * rate) * 2 - len(pcm)
        if room > 0:
            pcm += samples.astype("<i2").tobytes()[:room]

    def stop_transcription(self) -> None:
        """End the transcription, if one runs: ``call.transcription.stopped`` (protocol
        reference §2.2, "Transcription stopped": the call's ids, ``connection_id``, ``client_state``)."""
        if self.transcriber is not None:
            self.transcriber = None
            self.webhook("call.transcription.stopped")

    # --- webhooks --------------------------------------------------------------------
    @property
    def app_side(self) -> str:
        return "caller" if self.direction == "outgoing" else "callee"

    @property
    def far_side(self) -> str:
        return "callee" if self.direction == "outgoing" else "caller"

    def payload(self, **extra: Any) -> dict[str, Any]:
        base = {"call_control_id": self.ccid, "call_leg_id": self.leg_id, "call_session_id": self.session_id,
                "connection_id": self.control.connection_id, "client_state": self.client_state}
        base.update(extra)
        return base

    def webhook(self, event_type: str, **extra: Any) -> None:
        duplicate = hold = False
        imp = self.impairment
        if imp is not None and (imp.webhook_duplicate or imp.webhook_reorder):
            if self._webhook_rng is None:
                self._webhook_rng = imp.webhook_rng(self.ccid)
            duplicate = self._webhook_rng.random() < imp.webhook_duplicate
            hold = self._webhook_rng.random() < imp.webhook_reorder
        self.control.sender.send(self.ccid, self.webhook_url, event_type, self.payload(**extra),
                                 duplicate=duplicate, hold=hold)

    # --- media ---------------------------------------------------------------------
    @property
    def media_s(self) -> float:
        return self.frames_played * PERIOD_S

    def impair(self, impairment: Impairment) -> None:
        self.impairment = impairment
        self._channels = {}
        self._frames = {}
        self._webhook_rng = None
        if impairment.drop_ws_after_s is not None and self.stream is not None and self.stream.live:
            self.stream.schedule_drop(impairment.drop_ws_after_s)

    def channel(self, path: str, track: str) -> Channel | None:
        if self.impairment is None or not self.impairment.affects_media:
            return None
        key = f"{path}/{track}"
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = self.impairment.channel(key)
        return channel

    def _payload_encoding(self, encoding: str) -> str:
        if self.impairment is not None and self.impairment.codec_mismatch:
            return _OTHER_LAW.get(encoding, encoding)
        return encoding

    def frame_source(self, encoding: str) -> tuple[dict[str, bytes], int]:
        """The script's tracks as payload bytes for a wire encoding (the other law when
        mismatched), and the frame size: frame ``i`` is ``tracks[track][i*size:(i+1)*size]``."""
        source = self._frames.get(encoding)
        if source is None:
            size = codecs.get_codec(encoding).frame_bytes()
            source = self._frames[encoding] = (self.scenario.encoded(self._payload_encoding(encoding)), size)
        return source

    def mixed_frame(self, encoding: str, i: int, app_samples: np.ndarray) -> bytes:
        """Outbound frame ``i`` with the application's audio mixed over the script."""
        codec = codecs.get_codec(encoding)
        n = len(app_samples)
        script = self.scenario.pcm(codec.sample_rate)["outbound"][i * n:(i + 1) * n].astype(np.int32)
        mixed = np.clip(script + app_samples, -32768, 32767).astype(np.int16)
        return codecs.get_codec(self._payload_encoding(encoding)).encode(mixed)

    def tick(self, k: int, deadline: float) -> None:
        """Media clock callback: emit frame ``i`` of the call and whatever falls due."""
        if self.first_tick is None:
            self.first_tick = k
            self.media_origin_ns = self.clock.wall_ns(deadline)
        i = k - self.first_tick
        if self.last_frame is not None and i > self.last_frame + 1:  # the clock skipped ticks: say so
            media = self.stream if self.stream is not None else self.fork
            if media is not None:
                for missed in range(self.last_frame + 1, min(i, self.scenario.n_frames)):
                    media.skip(missed, deadline - (i - missed) * PERIOD_S)
        self.last_frame = i
        if i >= self.scenario.n_frames:
            self.control.far_end_hangup(self)
            return
        self.frames_played = i + 1
        if self.stream is not None:
            self.stream.emit(i, deadline)
        elif self.fork is not None:
            self.fork.emit(i, deadline)
        now_s = i * PERIOD_S
        while self._scripted_dtmf and self._scripted_dtmf[0][0] <= now_s:
            self._dtmf(self._scripted_dtmf.popleft()[1])
        if self.pending_dtmf:
            self._dtmf(self.pending_dtmf.popleft())
        if self.transcriber is not None:
            for result in self.transcriber.due(now_s):
                self.webhook("call.transcription", transcription_data=result.transcription_data())

    def _dtmf(self, digit: str) -> None:
        occurred_at = _now_iso()
        if self.stream is not None:
            self.stream.send_dtmf(digit, occurred_at)
        elif self.fork is not None:
            self.fork.send_dtmf(digit)        # RFC 4733 telephone events on rx (``forker``)
        self.webhook("call.dtmf.received", digit=digit, **{"from": self.from_, "to": self.to})

    # --- stream callbacks -------------------------------------------------------------
    def stream_started(self, stream: MediaStream) -> None:
        self.webhook("streaming.started", stream_url=stream.url, stream_id=stream.stream_id)

    def stream_failed(self, stream: MediaStream) -> None:
        if self.stream is stream:
            self.stream = None
        self.webhook("streaming.failed", failure_reason="connection_failed", stream_id=stream.stream_id,
                     stream_params={"stream_url": stream.url, "track": stream.track_param}, stream_type="websocket")

    def stream_ended(self, stream: MediaStream) -> None:
        """The socket ended without a stop (peer closed, or dropped by impairment)."""
        if self.stream is stream:
            self.stream = None
        self.webhook("streaming.stopped", stream_url=stream.url, stream_id=stream.stream_id)

    def stop_stream(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None and not stream.closed:
            stream.stop()
            self.webhook("streaming.stopped", stream_url=stream.url, stream_id=stream.stream_id)

    def stop_fork(self) -> None:
        fork, self.fork = self.fork, None
        if fork is not None:
            fork.stop()
            self.webhook("call.fork.stopped", stream_type=fork.stream_type or "decrypted")


class CallControl:
    """All calls of one sandbox, and the commands of the Call Control API."""

    def __init__(self, *, host: str, connection_id: str, clock: MediaClock, sender: WebhookSender, ring_s: float,
                 default_route: Route, default_webhook_url: str | None) -> None:
        self.host = host  # the fork's sending socket binds here too, like every other sandbox socket
        self.connection_id = connection_id
        self.user_id = str(uuid.uuid4())
        self.clock = clock
        self.sender = sender
        self.ring_s = ring_s
        self.default_route = default_route
        self.default_webhook_url = default_webhook_url
        self.routes: dict[str, Route] = {}
        self.calls: dict[str, Call] = {}
        self.stream_session: aiohttp.ClientSession | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.stream_session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=5.0),
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
        )
        self.udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, family=socket.AF_INET,
                                                          local_addr=(self.host, 0))
        self.udp.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)

    async def close(self) -> None:
        for call in list(self.calls.values()):
            if call.state != "ended":
                self._end(call, "normal_clearing", "unknown")
        if self._tasks:  # streams flush their stop frames and close their sockets
            await asyncio.wait(list(self._tasks), timeout=CLOSE_TIMEOUT_S)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.stream_session is not None:
            await self.stream_session.close()
        if self.udp is not None:
            self.udp.close()

    def get(self, ccid: str) -> Call:
        call = self.calls.get(ccid)
        if call is None:
            raise ApiError("90015", pointer="/call_control_id")
        return call

    # --- call creation ---------------------------------------------------------------
    def dial(self, body: Any) -> dict[str, Any]:
        params = validate("dial", body)
        to = params["to"] if isinstance(params["to"], str) else params["to"][0]
        route = self.routes.get(to, self.default_route)
        call = Call(self, direction="outgoing", to=to, from_=params["from"],
                    webhook_url=params.get("webhook_url") or self.default_webhook_url, route=route,
                    client_state=params.get("client_state"))
        self.calls[call.ccid] = call
        call.webhook("call.initiated", direction="outgoing", state="bridging", to=call.to, start_time=call.start_time,
                     connection_codecs="PCMU,PCMA", offered_codecs=call.codec, **{"from": call.from_})
        asyncio.get_running_loop().call_later(self.ring_s, self._far_end_answers, call, params)
        data = {"call_control_id": call.ccid, "call_leg_id": call.leg_id, "call_session_id": call.session_id,
                "is_alive": False, "record_type": "call", "start_time": call.start_time}
        if call.client_state is not None:
            data["client_state"] = call.client_state
        return {"data": data}

    def incoming(self, *, to: str, from_: str, webhook_url: str | None, route: Route | None) -> str:
        call = Call(self, direction="incoming", to=to, from_=from_, webhook_url=webhook_url or self.default_webhook_url,
                    route=route or self.routes.get(to, self.default_route), client_state=None)
        self.calls[call.ccid] = call
        call.webhook("call.initiated", direction="incoming", state="parked", to=call.to, start_time=call.start_time,
                     connection_codecs="PCMU,PCMA", offered_codecs=call.codec, caller_id_name=from_,
                     **{"from": call.from_})
        return call.ccid

    def _far_end_answers(self, call: Call, params: dict[str, Any]) -> None:
        if call.state == "ringing":
            self._answer(call, params)

    def _answer(self, call: Call, params: dict[str, Any]) -> None:
        call.state = "answered"
        call.webhook("call.answered", state="answered", to=call.to, start_time=call.start_time, **{"from": call.from_})
        self.clock.subscribe(id(call), call.tick)
        if params.get("stream_url"):
            self._start_stream(call, params)
        if params.get("transcription"):
            self._start_transcription(call, params.get("transcription_config") or {})

    # --- hangup ----------------------------------------------------------------------
    def far_end_hangup(self, call: Call) -> None:
        """The scenario is over: the far end hangs up."""
        self._end(call, "normal_clearing", call.far_side)

    def _end(self, call: Call, cause: str, source: str) -> None:
        if call.state == "ended":
            return
        was_answered = call.state == "answered"
        call.state = "ended"
        call.end_time = _now_iso()
        call.ended_mono = time.monotonic()
        self.clock.unsubscribe(id(call))
        call.stop_stream()
        call.stop_fork()
        call.stop_transcription()
        stats = call_quality_stats(call.ground_truth, call.frames_played) if was_answered else None
        call.webhook("call.hangup", hangup_cause=cause, hangup_source=source,
                     sip_hangup_cause="200" if was_answered else "487", state="hangup", to=call.to,
                     start_time=call.start_time, call_quality_stats=stats, **{"from": call.from_})

    # --- commands --------------------------------------------------------------------
    async def command(self, ccid: str, action: str, body: Any) -> dict[str, Any]:
        """Run one ``/calls/{ccid}/actions/{action}`` command; the 200 body or ApiError."""
        params = validate(action, body)
        call = self.get(ccid)
        command_id = params.get("command_id")
        now = time.monotonic()
        if command_id is not None:
            call.commands = {cid: t for cid, t in call.commands.items() if now - t < COMMAND_WINDOW_S}
            if command_id in call.commands:
                return _ok()
        if call.state == "ended":
            raise ApiError("90018")
        if call.state == "ringing" and action not in ("answer", "hangup"):
            raise ApiError("90034")
        await self._run(call, action, params)
        if command_id is not None:
            call.commands[command_id] = now
        return _ok()

    async def _run(self, call: Call, action: str, params: dict[str, Any]) -> None:
        if action == "fork_stop" and call.fork is None:
            raise ApiError("90031")
        if action == "transcription_start" and call.transcriber is not None:
            raise ApiError("90054")
        addresses = await self._fork_addresses(params) if action == "fork_start" else None
        if params.get("client_state") is not None:
            call.client_state = params["client_state"]
        if action == "answer":
            if call.state == "ringing":
                if params.get("webhook_url"):
                    call.webhook_url = params["webhook_url"]
                self._answer(call, params)
        elif action == "hangup":
            self._end(call, "normal_clearing" if call.state == "answered" else
                      ("originator_cancel" if call.direction == "outgoing" else "call_rejected"), call.app_side)
        elif action == "streaming_start":
            self._start_stream(call, params)
        elif action == "streaming_stop":
            if call.stream is not None and params.get("stream_id") in (None, call.stream.stream_id):
                call.stop_stream()
        elif action == "fork_start":
            if call.state == "ended":  # it ended while the targets were being resolved
                raise ApiError("90018")
            call.stop_stream()
            call.stop_fork()
            assert self.udp is not None and addresses is not None
            call.fork = Fork(call, self.udp, addresses, strep=params.get("target") is not None,
                             stream_type=params.get("stream_type"))
            call.webhook("call.fork.started", stream_type=params.get("stream_type") or "decrypted")
        elif action == "fork_stop":
            call.stop_fork()
        elif action == "transcription_start":
            self._start_transcription(call, params)
        elif action == "transcription_stop":
            call.stop_transcription()

    async def _fork_addresses(self, params: dict[str, Any]) -> dict[str, tuple[str, int]]:
        if params.get("target") is not None:
            wanted = {"rx": params["target"], "tx": params["target"]}
        else:
            wanted = {"rx": params["rx"], "tx": params["tx"]}
        loop = asyncio.get_running_loop()
        resolved: dict[str, tuple[str, int]] = {}
        for side, target in wanted.items():
            pointer = "/target" if params.get("target") is not None else f"/{side}"
            parsed = parse_udp_target(target)
            if parsed is None:  # not reached: validate() has checked every target
                raise ApiError("10003", f"{pointer[1:]} must look like udp:host:port.", pointer=pointer)
            host, port = parsed
            try:
                infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
            except OSError:
                infos = []
            if not infos:
                raise ApiError("10003", f"Cannot resolve {host!r} to an IPv4 address.", pointer=pointer)
            address = infos[0][4]  # AF_INET: (host, port)
            resolved[side] = (str(address[0]), int(address[1]))
        return resolved

    def _start_stream(self, call: Call, params: dict[str, Any]) -> None:
        call.stop_fork()
        call.stop_stream()
        assert self.stream_session is not None
        call.stream = MediaStream(call, params, self.stream_session)
        task = asyncio.get_running_loop().create_task(call.stream.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_transcription(self, call: Call, params: dict[str, Any]) -> None:
        config = params.get("transcription_engine_config") or {}
        call.transcriber = Transcriber(call.scenario, params.get("transcription_tracks") or "inbound",
                                       interim=bool(config.get("interim_results")), start_s=call.media_s)

    def status(self, ccid: str) -> dict[str, Any]:
        """``GET /calls/{ccid}``: the SDK's ``retrieve_status`` shape."""
        call = self.get(ccid)
        end = call.ended_mono if call.ended_mono is not None else time.monotonic()
        data = {"call_control_id": call.ccid, "call_leg_id": call.leg_id, "call_session_id": call.session_id,
                "is_alive": call.state != "ended", "record_type": "call", "client_state": call.client_state,
                "start_time": call.start_time, "call_duration": int(end - call.started_mono)}
        if call.end_time is not None:
            data["end_time"] = call.end_time
        return {"data": data}


def _ok() -> dict[str, Any]:
    return {"data": {"result": "ok"}}
