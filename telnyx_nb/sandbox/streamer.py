"""Media streaming: the sandbox dials ``stream_url`` as a WebSocket client, as Telnyx does.

Order on the socket: ``connected`` (with the auth token if one was set; it also goes in the
``x-telnyx-streaming-auth-token`` upgrade header) → [``streaming.started`` webhook] →
``start`` → ``media`` every 20 ms per streamed track (+ ``dtmf``, ``mark``, ``error``) →
``stop`` → close. Counters: ``sequence_number`` across all frames from 1 (``start`` is 1);
``chunk`` per track from 1; ``timestamp`` = milliseconds of media since the stream began,
``20·(chunk-1)``. The numbering, the frames and the error codes for bad application frames
are ``wire.stream.StreamSender``'s; the media clock calls :meth:`emit`, and a per-stream
writer task does the socket writes, so a slow peer never stalls the clock. The writer stamps
each media frame's ground-truth row when it hands the frame to the socket (``sent_at``); frames
still queued when the socket ends are ``unsent``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import aiohttp

from telnyx_nb.sandbox.playback import Playback
from telnyx_nb.wire import codecs, media
from telnyx_nb.wire.stream import StreamSender

if TYPE_CHECKING:
    from telnyx_nb.sandbox.calls import Call
    from telnyx_nb.sandbox.ground_truth import Source

__all__ = ["MediaStream", "wire_encoding", "TRACKS_FOR"]

log = logging.getLogger(__name__)

TRACKS_FOR: dict[str, tuple[media.Track, ...]] = {
    "inbound_track": ("inbound",), "outbound_track": ("outbound",), "both_tracks": ("inbound", "outbound")}
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
        app_format = codecs.bidirectional_format(params)      # None: mp3 mode
        self.bidirectional = app_format is not None
        self.app_codec, self.app_rate = app_format or ("PCMU", 8000)
        self.playback = Playback(self.codec.sample_rate, self.codec.frame_bytes() // self.codec.bytes_per_sample,
                                 self.app_rate)
        self.ws: aiohttp.ClientWebSocketResponse[bool] | None = None
        self.live = False
        self.closed = False
        self.sender = StreamSender(self.stream_id, call.ccid, user_id=call.user_id, auth_token=self.auth_token)
        self._out: deque[tuple[Any, int, float | None, int]] = deque()  # (text, copies, due, ground-truth row)
        self._wake: asyncio.Future | None = None
        self._delayed: dict[int, tuple[asyncio.TimerHandle, str, int, int]] = {}
        self._writer: asyncio.Task | None = None
        self._drop_handle: asyncio.TimerHandle | None = None

    # --- lifecycle -----------------------------------------------------------------
    async def run(self) -> None:
        """Connect, announce, then read the application's frames until the socket ends."""
        headers = {media.AUTH_TOKEN_HEADER: self.auth_token} if self.auth_token else {}
        try:
            ws = self.ws = await self.session.ws_connect(self.url, headers=headers, autoping=True,
                                                         max_msg_size=MAX_APP_MESSAGE, autoclose=True)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            log.info("stream %s to %s failed: %s", self.stream_id, self.url, exc)
            self.closed = True
            self.call.stream_failed(self)
            return
        if self.closed:  # stopped while connecting
            await ws.close()
            return
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write())
        self._enqueue(media.dumps(self.sender.connected()))
        self.call.stream_started(self)
        self._enqueue(media.dumps(self.sender.start(
            media.MediaFormat(self.encoding, self.codec.sample_rate, 1),
            call_session_id=self.call.session_id, from_=self.call.from_, to=self.call.to,
            client_state=self.call.client_state, custom_parameters=self.custom_parameters,
        )))
        self.live = True
        if self.call.impairment is not None and self.call.impairment.drop_ws_after_s is not None:
            self.schedule_drop(self.call.impairment.drop_ws_after_s)
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._on_app_frame(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    self._enqueue(media.dumps(self.sender.receive_binary(message.data)))
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
            self._enqueue(media.dumps(self.sender.stop()))
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
        for handle, text, copies, row in self._delayed.values():
            handle.cancel()
            if flush:
                self._enqueue(text, copies, None, row)
            else:
                self.call.ground_truth.unsent(row)
        self._delayed.clear()

    # --- media clock side ---------------------------------------------------------------
    def emit(self, i: int, deadline: float) -> None:
        """Frame ``i`` of the call's media (20 ms each) for every streamed track."""
        if not self.live:
            return
        sender = self.sender
        chunk = sender.chunk(i)
        app_samples, marks = self.playback.pop_frame()
        call = self.call
        wall_ns = call.clock.wall_ns(deadline)
        script_source = call.frame_source(self.encoding)  # one shared object: no per-row allocation
        script, size = script_source
        source: Source  # the script's tracks, or the mixed bytes themselves
        for track in self.tracks:
            if track == "outbound" and app_samples is not None:
                payload = source = call.mixed_frame(self.encoding, i, app_samples)
            else:
                payload, source = script[track][i * size:(i + 1) * size], script_source
            frame = sender.media(track, chunk, payload)  # numbered even if dropped: a real gap
            channel = call.channel("stream", track)
            fate, delay = channel.next() if channel is not None else ("delivered", 0.0)
            row = call.ground_truth.add_stream(track, chunk, frame.sequence_number, frame.timestamp, wall_ns, fate,
                                               delay, self.stream_id, i, source, len(payload))
            if fate == "dropped":
                continue
            text = media.dumps(frame)
            copies = 2 if fate == "duplicated" else 1
            if delay > 0:
                self._send_later(text, copies, deadline + delay, row)
            else:
                self._enqueue(text, copies, deadline, row)
        for name in marks:
            self._echo_mark(name)

    def skip(self, i: int, deadline: float) -> None:
        """The media clock skipped frame ``i``'s tick: record it (its chunk is used up, no
        sequence number is) as ``skipped``; nothing goes on the wire."""
        if not self.live:
            return
        chunk = self.sender.chunk(i)
        call = self.call
        wall_ns = call.clock.wall_ns(deadline)
        source = call.frame_source(self.encoding)
        for track in self.tracks:
            call.ground_truth.add_stream(track, chunk, -1, media.FRAME_MS * (chunk - 1), wall_ns, "skipped", 0.0,
                                         self.stream_id, i, source, source[1])

    def send_dtmf(self, digit: str, occurred_at: str) -> None:
        if self.live:
            self._enqueue(media.dumps(self.sender.dtmf(digit, occurred_at)))

    def _send_later(self, text: str, copies: int, due: float, row: int) -> None:
        key = id(text)
        handle = self.call.clock.call_at(due, self._fire_delayed, key, due)
        self._delayed[key] = (handle, text, copies, row)

    def _fire_delayed(self, key: int, due: float) -> None:
        entry = self._delayed.pop(key, None)
        if entry is not None:
            self._enqueue(entry[1], entry[2], due, entry[3])

    # --- writer ---------------------------------------------------------------------
    def _enqueue(self, text: Any, copies: int = 1, due: float | None = None, row: int = -1) -> None:
        """Queue ``text`` for the writer; ``row`` is the media frame's ground-truth row (-1: none)."""
        self._out.append((text, copies, due, row))
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        ws = self.ws
        assert ws is not None  # the writer task is only started once the socket is open
        clock = self.call.clock
        truth = self.call.ground_truth
        row = -1  # the frame being written, until its row is stamped
        try:
            while True:
                if not self._out:
                    self._wake = loop.create_future()
                    await self._wake
                text, copies, due, row = self._out.popleft()
                if text is _CLOSE:
                    await ws.close()
                    return
                if text is _DROP:
                    self._shutdown_socket()
                    return
                now = time.monotonic()  # aiohttp writes to the transport before any await
                for _ in range(copies):
                    await ws.send_str(text)
                if row >= 0:
                    truth.sent(row, clock.wall_ns(now))
                    row = -1
                if due is not None:
                    clock.record_send(due, now)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            log.info("stream %s: socket write failed: %s", self.stream_id, exc)
        finally:  # what never reached the socket
            if row >= 0:
                truth.unsent(row)
            for item in self._out:
                if item[3] >= 0:
                    truth.unsent(item[3])
            self._out.clear()

    # --- application frames (bidirectional) ------------------------------------------------
    def _on_app_frame(self, data: str) -> None:
        frame = self.sender.receive_text(data)
        if isinstance(frame, media.ErrorFrame):  # 100004 for bad base64, else 100003
            self._enqueue(media.dumps(frame))
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
        if not self.playback.push_audio(samples):
            self._app_error(100005, "playback queue is full")
        else:
            self.call.record_app_audio(self.stream_id, self.app_rate, samples)

    def _echo_mark(self, name: str) -> None:
        self._enqueue(media.dumps(self.sender.mark(name)))

    def _app_error(self, code: int, detail: str) -> None:
        self._enqueue(media.dumps(self.sender.error(code, detail)))
