"""``Receiver``: Telnyx webhooks, media-stream WebSockets and forked RTP into DataFrames, live.

It runs its I/O (``telnyx_nb.ingest``) on its own event loop on a daemon thread of the
kernel process (``loopthread``), so a blocking notebook cell neither delays nor drops
anything and nothing touches the kernel's loop; ``rx.on`` callbacks run on a worker thread of
their own (``events``). Public methods are synchronous and thread-safe; the read accessors
(``events``, ``frames``, ``audio()``, ``quality()``, ``save()``...) are :class:`Session`'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import numbers
import warnings
from collections.abc import Callable, Mapping
from os import PathLike
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from telnyx_nb import defaults
from telnyx_nb.errors import StreamNotOpenError, StreamNotStartedError
from telnyx_nb.events import Callback, EventBus
from telnyx_nb.ingest import Ingest, Limits, Link
from telnyx_nb.loopthread import LOOP_KINDS, LoopThread
from telnyx_nb.session import StoreSession
from telnyx_nb.store import Store, recording
from telnyx_nb.wire import codecs, media, webhooks

__all__ = ["Receiver"]


class Receiver(StoreSession):
    """Collects everything Telnyx sends into DataFrames, on its own I/O thread.

    ``rx = Receiver(public_key=...).start()`` serves ``POST /webhooks`` and the ``/stream``
    WebSocket on ``host:port`` (0 = ephemeral) and opens two UDP fork ports.

    Addresses: URLs for Telnyx use ``public_url`` when given (``https://`` becomes ``wss://``
    for the stream); ``fork_host`` is the address advertised in ``fork_rx``/``fork_tx``
    (default ``host``); ``fork_ports`` the UDP ports to bind (0 = ephemeral).

    Security: ``public_key`` (base64 Ed25519, Telnyx's or the sandbox's) turns on webhook
    verification, failing closed; ``stream_auth_token`` is then required of media WebSockets.

    Decoding: ``payload_types`` maps dynamic RTP payload types to encodings (e.g.
    ``{96: "L16"}``); ``l16_byteorder`` is the byte order of L16 payloads ("big" = RFC 2586).

    Limits, each with its default and unit in ``telnyx_nb.defaults``: ``max_message_size``
    (characters), ``max_webhook_size`` (bytes), ``backlog`` (connections), ``read_size`` and ``udp_rcvbuf``
    (bytes), ``fork_claim_window_s`` (seconds), ``callback_queue_size`` (events),
    ``signature_tolerance_s`` (the webhook replay window), ``shutdown_timeout_s`` and
    ``stop_timeout_s`` (seconds); ValueError for a value out of range. ``loop``: "auto" (uvloop if
    importable), "uvloop" or "asyncio".

    Recording: ``record_to`` keeps a continuous, crash-safe recording in that directory
    (``store.recording``), flushed every ``flush_interval_s`` seconds; ``tnb.load(dir)`` opens
    it, finished or cut short by a crash, and a new Receiver with the same ``record_to``
    resumes it (the earlier rows are in its tables). A write that fails stops the recording
    with a warning and ``health()["recording_error"]``; ingest goes on.
    """

    def __init__(
        self,
        host: str = defaults.HOST,
        port: int = 0,
        *,
        public_url: str | None = None,
        public_key: str | bytes | None = None,
        stream_auth_token: str | None = None,
        max_message_size: int = defaults.MAX_MESSAGE_SIZE,
        max_webhook_size: int = defaults.MAX_WEBHOOK_SIZE,
        fork_host: str | None = None,
        fork_ports: tuple[int, int] = (0, 0),
        payload_types: Mapping[int, str] | None = None,
        l16_byteorder: codecs.ByteOrder = "big",
        loop: str = "auto",
        backlog: int = defaults.BACKLOG,
        read_size: int = defaults.READ_SIZE,
        udp_rcvbuf: int = defaults.UDP_RCVBUF,
        fork_claim_window_s: float = defaults.FORK_CLAIM_WINDOW_S,
        callback_queue_size: int = defaults.CALLBACK_QUEUE_SIZE,
        shutdown_timeout_s: float = defaults.SHUTDOWN_TIMEOUT_S,
        signature_tolerance_s: float = defaults.SIGNATURE_TOLERANCE_S,
        stop_timeout_s: float = defaults.STOP_TIMEOUT_S,
        record_to: str | PathLike[str] | None = None,
        flush_interval_s: float = defaults.FLUSH_INTERVAL_S,
    ) -> None:
        if l16_byteorder not in ("big", "little"):
            raise ValueError(f"l16_byteorder must be 'big' or 'little', got {l16_byteorder!r}")
        if loop not in LOOP_KINDS:
            raise ValueError(f"loop must be one of {LOOP_KINDS}, got {loop!r}")
        if not stop_timeout_s > 0:
            raise ValueError(f"stop_timeout_s must be > 0, got {stop_timeout_s!r}")
        for payload_type, name in (payload_types or {}).items():
            if not (isinstance(payload_type, int) and 0 <= payload_type <= 127):
                raise ValueError(f"payload_types keys are RTP payload types 0..127, got {payload_type!r}")
            codecs.get_codec(name)      # UnsupportedCodecError (a ValueError) for a codec we cannot decode
        store = Store(payload_types=payload_types, fork_claim_window_s=fork_claim_window_s)
        if record_to is not None and recording.is_recording(record_to):
            store, _ = recording.read(record_to, into=store)     # resume: earlier rows stay in the tables
        super().__init__(store, l16_byteorder=l16_byteorder)
        self.host, self.port = host, port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.public_key = public_key
        self.stream_auth_token = stream_auth_token
        self.fork_host = fork_host or host
        self.fork_ports = (fork_ports[0], fork_ports[1])
        self.stop_timeout_s = stop_timeout_s
        self._io = LoopThread("telnyx_nb-receiver", loop)
        self._bus = EventBus(callback_queue_size)
        self._ingest = Ingest(
            self._store, self._bus,
            Limits(max_message_size=max_message_size, max_webhook_size=max_webhook_size, backlog=backlog,
                   read_size=read_size, udp_rcvbuf=udp_rcvbuf, shutdown_timeout_s=shutdown_timeout_s,
                   signature_tolerance_s=signature_tolerance_s),
            verify_key=webhooks.load_public_key(public_key) if public_key is not None else None,
            stream_auth_token=stream_auth_token,
        )
        self._unjoined: list[str] = []
        self._recorder = None if record_to is None else recording.Recorder(
            store, record_to, l16_byteorder=l16_byteorder, clocks=lambda: self.clocks,
            flush_interval_s=flush_interval_s)

    @property
    def max_message_size(self) -> int:
        return self._ingest.limits.max_message_size

    @property
    def max_webhook_size(self) -> int:
        return self._ingest.limits.max_webhook_size

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Receiver:
        """Start the I/O thread; returns once every socket listens (no-op when running)."""
        if self._io.running:
            return self
        self._io.start()
        self._bus.start()
        if self._recorder is not None:
            self._recorder.start()
        try:
            self.port, self.fork_ports = self._io.run(
                self._ingest.open(self.host, self.port, self.fork_ports), self.stop_timeout_s)
        except BaseException:
            self._shutdown()
            raise
        return self

    async def astart(self) -> Receiver:
        """``start()`` for asyncio code."""
        return await asyncio.to_thread(self.start)

    def stop(self) -> None:
        """Close every socket (open streams end with reason "receiver_stopped") and the threads.

        A thread that does not end within ``stop_timeout_s`` is reported (a RuntimeWarning,
        and ``health()["unjoined_threads"]``) rather than forgotten.
        """
        if self._io.running:
            self._shutdown()

    def _shutdown(self) -> None:
        try:
            self._io.run(self._ingest.close(), self.stop_timeout_s)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass    # reported below: the thread will not join either
        finally:
            if not self._io.stop(self.stop_timeout_s):
                self._unjoined.append(self._io.name)
            if self._recorder is not None:
                self._recorder.close(self.stop_timeout_s)
            if not self._bus.close(self.stop_timeout_s):
                self._unjoined.append("telnyx_nb-callbacks")
                warnings.warn(f"telnyx_nb-callbacks: a callback still runs after {self.stop_timeout_s} s; "
                              "the thread is left running (health()['unjoined_threads'])", RuntimeWarning, stacklevel=3)

    async def astop(self) -> None:
        """``stop()`` for asyncio code."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"listening on {self.webhook_url}" if self._io.running else "stopped"
        return f"<telnyx_nb.Receiver {state}>"

    # -- addresses ---------------------------------------------------------------------------

    @property
    def _base(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """Where Telnyx should POST webhooks (the call's / connection's ``webhook_url``)."""
        return f"{self._base}/webhooks"

    @property
    def stream_url(self) -> str:
        """The ``stream_url`` for ``streaming_start`` (ws://, or wss:// behind an https public_url)."""
        parts = urlsplit(self._base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/stream"

    @property
    def fork_rx(self) -> str:
        """``rx`` target for ``fork_start``: the call's incoming RTP."""
        return f"udp:{self.fork_host}:{self.fork_ports[0]}"

    @property
    def fork_tx(self) -> str:
        """``tx`` target for ``fork_start``: the call's outgoing RTP."""
        return f"udp:{self.fork_host}:{self.fork_ports[1]}"

    # -- fork attribution ----------------------------------------------------------------------

    def expect_fork(self, call_control_id: str) -> None:
        """Attribute the next new RTP source on each fork port to this call (start_forking does this)."""
        self._store.claim_fork(call_control_id)

    def withdraw_fork(self, call_control_id: str) -> None:
        """Undo ``expect_fork``: the call's fork did not start (start_forking does this on errors)."""
        self._store.withdraw_fork(call_control_id)

    @property
    def clocks(self) -> dict[str, str]:
        """What stamps each table's ``received_at``: forked RTP gets the kernel's receive time
        where the platform offers it ("kernel"), the rest "socket_read" (see ``telnyx_nb.udp``)."""
        return {**super().clocks, "rtp": self._ingest.rtp_clock, "rtp_errors": self._ingest.rtp_clock}

    # -- state ------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Counters since start, loop lag p50/p99 (ms, last minute) and the loop in use.

        ``messages``/``bytes``/``errors`` sum webhooks, WebSocket messages and UDP datagrams;
        ``duplicates`` are re-delivered webhooks (stored once); ``webhooks_rejected`` failed
        verification; ``callbacks_dropped`` events a full callback queue could not take;
        ``store_bytes`` is the memory of frames, packets and their payloads;
        ``unjoined_threads`` names threads a ``stop()`` could not end.
        """
        c = dict(self._ingest.counters)
        c["webhook_duplicates"] = self._store.duplicate_events
        c["callback_errors"] = self._bus.errors
        c["callbacks_dropped"] = self._bus.dropped
        lags = np.array(self._ingest.lags) * 1e3
        return {
            "messages": c["webhooks"] + c["ws_messages"] + c["udp_packets"],
            "bytes": c["webhook_bytes"] + c["ws_bytes"] + c["udp_bytes"],
            "errors": c["webhooks_malformed"] + c["webhooks_rejected"] + c["stream_errors"] + c["udp_errors"]
            + c["ws_refused"] + c["callback_errors"],
            "duplicates": c["webhook_duplicates"],
            "rejected_webhooks": c["webhooks_rejected"],
            **c,
            "open_streams": len(self._ingest.links),
            "loop": self._io.loop_name,
            "loop_lag_p50_ms": float(np.percentile(lags, 50)) if len(lags) else float("nan"),
            "loop_lag_p99_ms": float(np.percentile(lags, 99)) if len(lags) else float("nan"),
            "udp_rcvbuf": self._ingest.udp_rcvbuf,
            "rtp_clock": self._ingest.rtp_clock,
            "store_bytes": self._store.nbytes(),
            "unjoined_threads": list(self._unjoined),
            "recording": None if self._recorder is None else str(self._recorder.path),
            "recording_error": None if self._recorder is None else self._recorder.error,
            "recording_flushes": 0 if self._recorder is None else self._recorder.flushes,
        }

    # -- callbacks ----------------------------------------------------------------------------

    def on(self, event_type: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event: dict)`` for each matching event; returns an unsubscribe function.

        ``event_type`` is a webhook type ("call.transcription", ...), a stream event
        ("stream.start", "stream.media", "stream.stop", "stream.dtmf", "stream.mark",
        "stream.error", "stream.closed") or "*" for all. Callbacks run in arrival order on one
        worker thread, never on the receiver's loop, each with its own copy of the event; an
        exception is counted and warned about. Events beyond ``callback_queue_size`` waiting
        are dropped and counted (``health()["callbacks_dropped"]``).

        "stream.closed" reports the socket's end ("closed", "error", "message_too_big",
        "auth_failed", "replaced", "receiver_stopped"); a stream that sent ``stop`` first keeps
        ``end_reason`` "stop" in ``streams`` while its socket's end is still reported here.
        """
        return self._bus.on(event_type, callback)

    # -- bidirectional: application -> Telnyx ------------------------------------------------------

    def _link(self, stream_id: str) -> Link:
        link = self._ingest.links.get(stream_id)
        if link is None or not self._io.running:
            raise StreamNotOpenError(f"no open media stream {stream_id!r}")
        return link

    def send_audio(self, stream_id: str, samples: np.ndarray, rate: int, *, encoding: str | None = None
                   ) -> concurrent.futures.Future[None]:
        """Play audio into the call: resampled, encoded and sent as paced 20 ms ``media`` frames.

        ``samples``: int16, or float in [-1, 1]. The codec is the stream's ``media_format``
        unless ``encoding`` names another (Telnyx's ``stream_bidirectional_codec`` must match,
        with ``stream_bidirectional_mode="rtp"``). Resampling is linear interpolation to the
        codec's rate. Returns a Future that completes when the last frame was sent.
        Raises ValueError for samples that are not 1-D or a rate that is not a positive int,
        StreamNotOpenError for a stream with no open socket here, and
        StreamNotStartedError before the stream's ``start`` frame (its codec is unknown).
        """
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono (1-D), got shape {samples.shape}")
        if not (isinstance(rate, numbers.Integral) and rate > 0):
            raise ValueError(f"rate must be a positive number of samples per second, got {rate!r}")
        rate = int(rate)
        link = self._link(stream_id)
        info = link.info
        if encoding is None and (info is None or info.encoding is None):
            raise StreamNotStartedError(f"stream {stream_id!r} has not sent its 'start' frame yet, so its codec "
                                        "is unknown; wait for it (rx.streams) or pass encoding=")
        if encoding is not None:
            codec = codecs.get_codec(encoding, l16_byteorder=self._l16_byteorder)
            target = codec.sample_rate
        else:
            assert info is not None and info.encoding is not None
            codec = codecs.get_codec(info.encoding, l16_byteorder=self._l16_byteorder)
            target = info.sample_rate or codec.sample_rate
        payload = codec.encode(codecs.resample(codecs.to_int16(samples), rate, target))
        step = codec.frame_bytes(media.FRAME_MS, target)
        frames = [media.AppMedia(payload[i : i + step]) for i in range(0, len(payload), step)]
        return self._io.submit(link.outbound.send(frames, paced=True))

    async def asend_audio(self, stream_id: str, samples: np.ndarray, rate: int, *, encoding: str | None = None) -> None:
        """``send_audio`` for asyncio code: returns when the last frame was sent."""
        await asyncio.wrap_future(self.send_audio(stream_id, samples, rate, encoding=encoding))

    def mark(self, stream_id: str, name: str) -> concurrent.futures.Future[None]:
        """Send a ``mark`` after the audio queued so far; Telnyx echoes it (``rx.marks``) once played."""
        return self._io.submit(self._link(stream_id).outbound.send([media.AppMark(name)], paced=False))

    def clear(self, stream_id: str) -> concurrent.futures.Future[None]:
        """Drop audio still queued here and send ``clear`` (Telnyx flushes its queue, echoes marks)."""
        return self._io.submit(self._link(stream_id).outbound.clear())
