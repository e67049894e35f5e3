"""Media streaming: the sandbox dials ``stream_url`` as a WebSocket client, as Telnyx does.

Order on the socket: ``connected`` (with the auth token if one was set; it also goes in the
``x-telnyx-streaming-auth-token`` upgrade header) → [``streaming.started`` webhook] →
``start`` → ``media`` every 20 ms per streamed track (+ ``dtmf``, ``mark``, ``error``) →
``stop`` → close. Counters: ``sequence_number`` across all frames from 1 (``start`` is 1);
``chunk`` per track from 1; ``timestamp`` = milliseconds of media since the stream began,
``20·(chunk-1)``. Frames are built by ``wire.media``; the media clock calls :meth:`emit`, and
a per-stream writer task does the socket writes, so a slow peer never stalls the clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import aiohttp

from telnyx_nb.sandbox.playback import Playback
from telnyx_nb.wire import codecs, media

if TYPE_CHECKING:
    from telnyx_nb.sandbox.calls import Call

__all__ = ["MediaStream", "wire_encoding", "TRACKS_FOR"]

log = logging.getLogger(__name__)

TRACKS_FOR = {"inbound_track": ("inbound",), "outbound_track": ("outbound",), "both_tracks": ("inbound", "outbound")}
_DECODABLE = ("PCMU", "PCMA", "L16")
_CLOSE = object()  # writer sentinel: close the socket gracefully
_DROP = object()  # writer sentinel: drop the connection (impairment)
MAX_APP_MESSAGE = 4 * 1024 * 1024
#: How long a stopped stream waits for its writer to flush ``stop`` and close the socket.
CLOSE_TIMEOUT_S = 2.0


def wire_encoding(stream_codec: str, call_codec: str) -> str:
    """The stream's encoding: ``default`` and codecs the sandbox cannot produce (G722, OPUS,
    AMR-WB) fall back to the call's codec, as Telnyx does when it cannot transcode."""
    return stream_codec if stream_codec in _DECODABLE else call_codec


class MediaStream:
    """One WebSocket media stream of one call."""

    def __init__(self, call: Call, params: dict[str, Any], session: aiohttp.ClientSession) -> None:
        self.call = call
        self.session = session
        self.stream_id = str(uuid.uuid4())
        self.url: str = params["stream_url"]
        self.track_param: str = params.get("stream_track") or "inbound_track"
        self.tracks = TRACKS_FOR[self.track_param]
        self.encoding = wire_encoding(params.get("stream_codec") or "default", call.codec)
        self.codec = codecs.get_codec(self.encoding)
        self.auth_token: str | None = params.get("stream_auth_token")
        self.custom_parameters = {p["name"]: str(p.get("value") or "") for p in params.get("custom_parameters") or []}
        self.bidirectional = params.get("stream_bidirectional_mode") == "rtp"
        self.app_codec: str = params.get("stream_bidirectional_codec") or "PCMU"
        self.app_rate: int = params.get("stream_bidirectional_sampling_rate") or (16000 if self.app_codec == "L16" else 8000)
        self.playback = Playback(self.codec.sample_rate, self.codec.frame_bytes() // self.codec.bytes_per_sample)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.live = False
        self.closed = False
        self.first_frame: int | None = None
        self.sequence_number = 0
        self._out: deque[tuple[Any, int, float | None]] = deque()
        self._wake: asyncio.Future | None = None
        self._delayed: dict[int, tuple[asyncio.TimerHandle, str, int]] = {}
        self._writer: asyncio.Task | None = None
        self._drop_handle: asyncio.TimerHandle | None = None

    # --- lifecycle -----------------------------------------------------------------
    async def run(self) -> None:
        """Connect, announce, then read the application's frames until the socket ends."""
        headers = {media.AUTH_TOKEN_HEADER: self.auth_token} if self.auth_token else {}
        try:
            self.ws = await self.session.ws_connect(self.url, headers=headers, autoping=True,
                                                    max_msg_size=MAX_APP_MESSAGE, autoclose=True)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            log.info("stream %s to %s failed: %s", self.stream_id, self.url, exc)
            self.closed = True
            self.call.stream_failed(self)
            return
        if self.closed:  # stopped while connecting
            await self.ws.close()
            return
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write())
        self._enqueue(media.dumps(media.Connected(auth_token=self.auth_token)))
        self.call.stream_started(self)
        self._enqueue(media.dumps(media.Start(
            stream_id=self.stream_id, sequence_number=self._next_seq(), call_control_id=self.call.ccid,
            media_format=media.MediaFormat(self.encoding, self.codec.sample_rate, 1),
            call_session_id=self.call.session_id, user_id=self.call.user_id, from_=self.call.from_,
            to=self.call.to, client_state=self.call.client_state, custom_parameters=self.custom_parameters,
        )))
        self.live = True
        if self.call.impairment is not None and self.call.impairment.drop_ws_after_s is not None:
            self.schedule_drop(self.call.impairment.drop_ws_after_s)
        try:
            async for message in self.ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._on_app_frame(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    self._app_error(100003, "binary frames are not accepted; send JSON text frames")
        finally:
            if not self.closed:  # the application closed the socket (or the connection died)
                self.closed = True
                self.live = False
                self._cancel_timers()
                self._writer.cancel()
                self.call.stream_ended(self)
            await asyncio.wait([self._writer], timeout=CLOSE_TIMEOUT_S)
            self._writer.cancel()

    def stop(self) -> None:
        """Graceful end: flush delayed frames, send ``stop``, close the socket."""
        if self.closed:
            return
        self.closed = True
        self.live = False
        self._cancel_timers(flush=True)
        if self.ws is not None:
            self._enqueue(media.dumps(media.Stop(self.stream_id, self._next_seq(), self.call.ccid, self.call.user_id)))
            self._enqueue(_CLOSE)

    def schedule_drop(self, after_s: float) -> None:
        """Impairment: close the TCP connection abruptly ``after_s`` from now."""
        if self._drop_handle is not None:
            self._drop_handle.cancel()
        self._drop_handle = asyncio.get_running_loop().call_later(after_s, self._drop)

    def _drop(self) -> None:
        if self.closed or self.ws is None:
            return
        self.live = False
        self._cancel_timers(flush=True)  # frames already generated go out first, as the ground truth says
        self._enqueue(_DROP)

    def _shutdown_socket(self) -> None:
        """Shut the connection down under the transport: the peer sees EOF with no close
        frame (1006), and our reader loop ends, which reports the stream ended."""
        sock = self.ws.get_extra_info("socket") if self.ws is not None else None
        if sock is not None:
            dup = socket.socket(fileno=os.dup(sock.fileno()))
            try:
                dup.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                dup.close()

    def _cancel_timers(self, flush: bool = False) -> None:
        """Cancel the drop and the delayed frames; with ``flush`` send those frames now."""
        if self._drop_handle is not None:
            self._drop_handle.cancel()
        for handle, text, copies in self._delayed.values():
            handle.cancel()
            if flush:
                self._enqueue(text, copies)
        self._delayed.clear()

    # --- media clock side ---------------------------------------------------------------
    def emit(self, i: int, deadline: float) -> None:
        """Frame ``i`` of the call's media (20 ms each) for every streamed track."""
        if not self.live:
            return
        if self.first_frame is None:
            self.first_frame = i
        chunk = i - self.first_frame + 1
        app_samples, marks = self.playback.pop_frame()
        call = self.call
        wall_ns = call.clock.wall_ns(deadline)
        script_source = call.frame_source(self.encoding)  # one shared object: no per-row allocation
        script, size = script_source
        for track in self.tracks:
            if track == "outbound" and app_samples is not None:
                payload = source = call.mixed_frame(self.encoding, i, app_samples)
            else:
                payload, source = script[track][i * size:(i + 1) * size], script_source
            seq = self._next_seq()
            channel = call.channel("stream", track)
            fate, delay = channel.next() if channel is not None else ("delivered", 0.0)
            call.ground_truth.add_stream(track, chunk, seq, 20 * (chunk - 1), wall_ns, fate, delay, self.stream_id,
                                         i, source, len(payload))
            if fate == "dropped":
                continue
            text = media.dumps(media.Media(self.stream_id, seq, track, chunk, 20 * (chunk - 1), payload))
            copies = 2 if fate == "duplicated" else 1
            if delay > 0:
                self._send_later(text, copies, deadline + delay)
            else:
                self._enqueue(text, copies, deadline)
        for name in marks:
            self._echo_mark(name)

    def send_dtmf(self, digit: str, occurred_at: str) -> None:
        if self.live:
            self._enqueue(media.dumps(media.Dtmf(self.stream_id, self._next_seq(), digit, occurred_at)))

    def _send_later(self, text: str, copies: int, due: float) -> None:
        key = id(text)
        handle = self.call.clock.call_at(due, self._fire_delayed, key, due)
        self._delayed[key] = (handle, text, copies)

    def _fire_delayed(self, key: int, due: float) -> None:
        entry = self._delayed.pop(key, None)
        if entry is not None:
            self._enqueue(entry[1], entry[2], due)

    def _next_seq(self) -> int:
        self.sequence_number += 1
        return self.sequence_number

    # --- writer ---------------------------------------------------------------------
    def _enqueue(self, text: Any, copies: int = 1, due: float | None = None) -> None:
        self._out.append((text, copies, due))
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        ws = self.ws
        record = self.call.clock.record_send
        try:
            while True:
                if not self._out:
                    self._wake = loop.create_future()
                    await self._wake
                text, copies, due = self._out.popleft()
                if text is _CLOSE:
                    await ws.close()
                    return
                if text is _DROP:
                    self._shutdown_socket()
                    return
                for _ in range(copies):
                    await ws.send_str(text)
                if due is not None:
                    record(due)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            log.info("stream %s: socket write failed: %s", self.stream_id, exc)

    # --- application frames (bidirectional) ------------------------------------------------
    def _on_app_frame(self, data: str) -> None:
        try:
            frame = media.parse_app_frame(data)
        except media.FrameError as exc:
            self._app_error(100004 if exc.reason == "invalid_base64" else 100003, exc.detail)
            return
        if isinstance(frame, media.AppMedia):
            self._on_app_media(frame.payload)
        elif isinstance(frame, media.AppMark):
            for name in self.playback.push_mark(frame.name):
                self._echo_mark(name)
        else:
            for name in self.playback.clear():
                self._echo_mark(name)

    def _on_app_media(self, payload: bytes) -> None:
        if not self.bidirectional:
            return  # mp3 mode: Telnyx plays MP3 files; the sandbox accepts and ignores them
        if self.app_codec not in _DECODABLE:
            self._app_error(100002, f"the sandbox cannot decode {self.app_codec} audio")
            return
        try:
            samples = codecs.get_codec(self.app_codec).decode(payload)
        except ValueError as exc:
            self._app_error(100003, str(exc))
            return
        rate = 8000 if self.app_codec in ("PCMU", "PCMA") else self.app_rate
        if not self.playback.push_audio(codecs.resample(samples, rate, self.codec.sample_rate)):
            self._app_error(100005, "playback queue is full")

    def _echo_mark(self, name: str) -> None:
        self._enqueue(media.dumps(media.Mark(self.stream_id, self._next_seq(), name)))

    def _app_error(self, code: int, detail: str) -> None:
        self._enqueue(media.dumps(media.ErrorFrame.for_code(code, self.stream_id, detail)))
