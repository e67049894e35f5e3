"""``Receiver``: Telnyx webhooks, media-stream WebSockets and forked RTP into DataFrames, live.

The sockets, arrival stamps and recording are a :class:`~telnyx_nb.capture.Capture`, run in
a child process (``process=True``) or on an I/O thread of this process; either way nothing
touches the kernel's event loop. ``rx.on`` callbacks run on a worker thread of their own
(``events``). Public methods are synchronous and thread-safe; the read accessors (``events``,
``frames``, ``audio()``, ``quality()``, ``save()``...) are :class:`Session`'s.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import http.client
import ipaddress
import math
import numbers
import secrets
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from telnyx_nb import defaults
from telnyx_nb.capture import Capture, CaptureError, CaptureProcess
from telnyx_nb.defaults import COUNTERS, Limits
from telnyx_nb.errors import ReceiverNotStartedError, StreamNotOpenError
from telnyx_nb.events import Callback, EventBus
from telnyx_nb.loopthread import LOOP_KINDS
from telnyx_nb.session import StoreSession
from telnyx_nb.store import Store, recording
from telnyx_nb.store.commands import recorded_options
from telnyx_nb.wire import codecs, selftest, telephone_event, webhooks
from telnyx_nb.wire.selftest import SelfTest

__all__ = ["Receiver"]


class Receiver(StoreSession):
    """Collects everything Telnyx sends into DataFrames, captured apart from the notebook.

    ``rx = Receiver(public_key=...).start()`` serves ``POST /webhooks`` and the ``/stream``
    WebSocket on ``host:port`` (0 = ephemeral) and opens two UDP fork ports.

    Addresses: URLs for Telnyx use ``public_url`` when given (``https://`` becomes ``wss://``
    for the stream); ``fork_host`` is the address advertised in ``fork_rx``/``fork_tx``
    (default ``host``); ``fork_ports`` the UDP ports to bind (0 = ephemeral).

    Security: ``public_key`` (base64 Ed25519, Telnyx's or the sandbox's) turns on webhook
    verification, failing closed; ``stream_auth_token`` is required of media WebSockets when
    set (compared in constant time). On loopback (the default host) both are optional. A
    receiver reachable from elsewhere — a ``host`` that is not loopback, or a ``public_url`` (a
    tunnel) — raises ValueError without a ``public_key`` unless ``allow_unverified=True``, and
    gets a random ``stream_auth_token`` (``secrets.token_urlsafe``) when none is given; the
    ``start_streaming`` helper passes it on. After ``signature_failures_warning`` (see
    ``telnyx_nb.defaults``) webhooks in a row fail verification, one UserWarning names
    ``rx.webhook_errors`` and the likely cause (a wrong public key, clock skew). No secret (the
    token) appears in the repr.

    Decoding: ``payload_types`` maps dynamic RTP payload types to encodings (e.g.
    ``{96: "L16"}``, or ``{96: "telephone-event"}`` when RFC 4733 events use another type than
    the default 101; PT 13 is comfort noise); ``l16_byteorder`` is the byte order of L16
    payloads ("big" = RFC 2586).

    Limits, each with its default and unit in ``telnyx_nb.defaults``: ``max_message_size``
    (characters), ``max_webhook_size`` (bytes), ``backlog`` (connections), ``read_size`` and ``udp_rcvbuf``
    (bytes), ``fork_claim_window_s`` (seconds), ``callback_queue_size`` (events),
    ``signature_tolerance_s`` (the webhook replay window), ``stream_silence_s`` (a started
    stream silent this long gets a ``silent`` row in ``stream_errors``), ``header_timeout_s`` and
    ``body_timeout_s`` (a webhook connection slower than this to send its request header, or its
    body, is closed and recorded as a ``timeout`` row of ``webhook_errors``), ``shutdown_timeout_s``
    and ``stop_timeout_s`` (seconds); ValueError for a value out of range. ``loop``: "auto" (uvloop if
    importable), "uvloop" or "asyncio".

    Process model: with ``process=True`` the sockets, arrival stamps and recording live in a
    child process (``telnyx_nb.capture``), so nothing the notebook does can delay a read or
    distort a stamp; this object reads the recording and gets live events and command
    answers over a pipe. Without ``record_to`` the recording then goes to a temporary
    directory, removed when this object is garbage-collected or the interpreter exits.
    ``process=False`` runs the same capture on a thread of this process; the default is
    ``telnyx_nb.defaults.RECEIVER_PROCESS``. ``start_timeout_s``
    bounds how long ``start()`` waits for the sockets (and the child) to be ready.

    Recording: ``record_to`` keeps a continuous, crash-safe recording in that directory
    (``store.recording``), flushed every ``flush_interval_s`` seconds; ``tnb.load(dir)`` opens
    it, finished or cut short by a crash, and a new Receiver with the same ``record_to``
    resumes it (the earlier rows are in its tables). A write that fails (a full disk) stops the
    recording (logged, and ``health()["recording_error"]``, which warns once); ingest goes on,
    and ``health()["unrecorded_rows"]`` counts the rows collected since that the recording does
    not hold: a capture process drops them (its memory stays flat), a thread keeps them in its
    in-memory tables. With a
    capture process, a table read asks it to flush first when the last flush asked for is older
    than ``read_flush_interval_s`` (default 0.2 s): a read sees every row received up to that
    long before it (``wait_for`` and ``save`` always flush first).

    Self-test: ``rx.selftest()`` requests ``<public_url>/selftest?nonce=<random>`` (the base of
    ``webhook_url``; ``url=`` another base) and says whether that URL leads to this receiver —
    the check to run after setting up a tunnel, before placing a real call. The route is
    unsigned and stores nothing (``telnyx_nb.wire.selftest``).

    Misuse: the addresses (``webhook_url``, ``stream_url``, ``fork_rx``, ``fork_tx``) raise
    :class:`~telnyx_nb.errors.ReceiverNotStartedError` (a RuntimeError) unless the receiver
    listens; so do ``send_audio``, ``mark``, ``clear``, ``expect_fork`` and ``withdraw_fork``
    before the first ``start()``. The tables stay readable after ``stop()``. Starting a
    receiver while another one of this process listens (a re-run cell) warns, naming the
    other's addresses. Background messages go to the ``telnyx_nb`` loggers, never to stderr.
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
        stream_silence_s: float = defaults.STREAM_SILENCE_S,
        header_timeout_s: float = defaults.HEADER_TIMEOUT_S,
        body_timeout_s: float = defaults.BODY_TIMEOUT_S,
        stop_timeout_s: float = defaults.STOP_TIMEOUT_S,
        record_to: str | PathLike[str] | None = None,
        flush_interval_s: float = defaults.FLUSH_INTERVAL_S,
        read_flush_interval_s: float = defaults.READ_FLUSH_INTERVAL_S,
        process: bool | None = None,
        start_timeout_s: float = defaults.START_TIMEOUT_S,
        allow_unverified: bool = False,
    ) -> None:
        if l16_byteorder not in ("big", "little"):
            raise ValueError(f"l16_byteorder must be 'big' or 'little', got {l16_byteorder!r}")
        if loop not in LOOP_KINDS:
            raise ValueError(f"loop must be one of {LOOP_KINDS}, got {loop!r}")
        for value, name in ((stop_timeout_s, "stop_timeout_s"), (start_timeout_s, "start_timeout_s")):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for payload_type, codec_name in (payload_types or {}).items():
            if not (isinstance(payload_type, int) and 0 <= payload_type <= 127):
                raise ValueError(f"payload_types keys are RTP payload types 0..127, got {payload_type!r}")
            if not telephone_event.is_non_audio(codec_name):     # telephone events and comfort noise are known
                codecs.get_codec(codec_name)  # UnsupportedCodecError (a ValueError) for a codec we cannot decode
        limits = Limits(max_message_size=max_message_size, max_webhook_size=max_webhook_size, backlog=backlog,
                        read_size=read_size, udp_rcvbuf=udp_rcvbuf, shutdown_timeout_s=shutdown_timeout_s,
                        signature_tolerance_s=signature_tolerance_s, stream_silence_s=stream_silence_s,
                        header_timeout_s=header_timeout_s, body_timeout_s=body_timeout_s)
        if public_key is not None:
            webhooks.load_public_key(public_key)          # a bad key fails here, not in the capture
        exposed = public_url is not None or not _is_loopback(host)
        if exposed and public_key is None and not allow_unverified:
            where = f"public_url {public_url!r}" if public_url is not None else f"host {host!r} (not loopback)"
            raise ValueError(f"a Receiver on {where} can be reached by anyone, and without a public_key every "
                             "webhook would be accepted unverified: pass public_key= (Telnyx portal: Keys & "
                             "Credentials, Public Key; sb.public_key for a Sandbox), or allow_unverified=True")
        if exposed and stream_auth_token is None:
            stream_auth_token = secrets.token_urlsafe(32)  # start_streaming passes it on
        self.process = process = defaults.RECEIVER_PROCESS if process is None else process
        store = Store(payload_types=payload_types, fork_claim_window_s=fork_claim_window_s)
        if record_to is not None and recording.is_recording(record_to) and not process:
            recording.read(record_to, into=store, payloads_in_memory=True)   # resume: the earlier rows stay
        super().__init__(store, l16_byteorder=l16_byteorder)
        self.host, self.port = host, port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.public_key = public_key
        self.stream_auth_token = stream_auth_token
        self.fork_host = fork_host or host
        self.fork_ports = (fork_ports[0], fork_ports[1])
        self.stop_timeout_s = stop_timeout_s
        self.start_timeout_s = start_timeout_s
        self._limits = limits
        self._bus = EventBus(callback_queue_size)
        self._unjoined: list[str] = []
        self._settings: dict[str, Any] = {
            "loop": loop, "public_key": public_key, "stream_auth_token": stream_auth_token,
            "l16_byteorder": l16_byteorder, "flush_interval_s": flush_interval_s,
        }
        self._capture: Capture | None = None
        self._child: CaptureProcess | None = None
        self._started = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._warned_dead = False
        self._warned_unverified = False
        self._warned_recording = False
        self.read_flush_interval_s = read_flush_interval_s
        self._flushed_at = -math.inf
        if process:
            self._tmp = tempfile.TemporaryDirectory(prefix="telnyx_nb-") if record_to is None else None
            self.recording_path: Path | None = Path(self._tmp.name) if self._tmp is not None else Path(str(record_to))
            self._follower = recording.Follower(self.recording_path, store)
            self._callback_queue_size = callback_queue_size
        else:
            self.recording_path = Path(record_to) if record_to is not None else None
            self._capture = Capture(store, self._bus, limits, record_to=record_to, **self._settings)

    @property
    def max_message_size(self) -> int:
        return self._limits.max_message_size

    @property
    def max_webhook_size(self) -> int:
        return self._limits.max_webhook_size

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()`` (False once a capture process has died)."""
        if self._child is not None:
            return self._child.alive
        return self._capture is not None and self._capture.running

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Receiver:
        """Start capturing; returns once every socket listens (no-op when running).

        Raises CaptureError when the capture process does not start within ``start_timeout_s``,
        and OSError (e.g. a port in use) when a socket cannot be opened.
        """
        if self.running:
            return self
        if self.public_key is None and not self._warned_unverified:
            self._warned_unverified = True
            warnings.warn("telnyx_nb.Receiver has no public_key: webhooks will be stored unverified "
                          "(verified=False)", UserWarning, stacklevel=2)
        self._bus.start()
        try:
            if self.process:
                self._start_process()
            else:
                assert self._capture is not None
                self.port, self.fork_ports = self._capture.start(self.host, self.port, self.fork_ports,
                                                                 self.start_timeout_s)
        except BaseException:
            self._bus.close(self.stop_timeout_s)
            raise
        self._started = True
        others = [other for other in _LISTENING if other is not self and other.running]
        _LISTENING.add(self)
        if others:
            warnings.warn("another telnyx_nb.Receiver is still listening in this process ("
                          + "; ".join(", ".join(other._addresses().values()) for other in others)
                          + "): a re-run cell leaves the old one running on its ports; call .stop() on it "
                          "if it is a leftover", UserWarning, stacklevel=2)
        return self

    def _start_process(self) -> None:
        config = {
            **self._settings, "host": self.host, "port": self.port, "fork_ports": list(self.fork_ports),
            "limits": asdict(self._limits), "record_to": str(self.recording_path),
            "payload_types": {str(k): v for k, v in self._store.payload_types.items()},
            "fork_claim_window_s": self._store.attribution.window_ns / 1e9,
            "callback_queue_size": self._callback_queue_size, "stop_timeout_s": self.stop_timeout_s,
        }
        if isinstance(config["public_key"], bytes):
            config["public_key"] = config["public_key"].decode("ascii")
        self._child = CaptureProcess(config, _weak_handler(self), self.start_timeout_s)
        # A Receiver dropped without stop() (a re-run cell) still ends its child, before its
        # temporary recording directory is removed (finalizers run newest first).
        self._finalizer = weakref.finalize(self, self._child.stop)
        self.port, self.fork_ports = self._child.ready["port"], tuple(self._child.ready["fork_ports"])
        self._warned_dead = False
        if self._bus.types:
            self._child.call("listen", types=self._bus.types)

    def _on_child_event(self, event: dict[str, Any]) -> None:
        event_type = event.pop("event_type")
        self._bus.emit(event_type, lambda: event)

    async def astart(self) -> Receiver:
        """``start()`` for asyncio code."""
        return await asyncio.to_thread(self.start)

    def stop(self) -> None:
        """Close every socket (open streams end with reason "receiver_stopped") and the threads
        (or the capture process); the recording is finished.

        A thread that does not end within ``stop_timeout_s`` is reported (a RuntimeWarning,
        and ``health()["unjoined_threads"]``) rather than forgotten.
        """
        _LISTENING.discard(self)
        if self._child is not None:
            if self._finalizer is not None:
                self._finalizer.detach()
            self._child.stop()
            self._refresh()
        elif self._capture is not None and self._capture.running:
            self._capture.stop(self.stop_timeout_s)
            self._unjoined += self._capture.unjoined
        else:
            return
        if not self._bus.close(self.stop_timeout_s):
            self._unjoined.append("telnyx_nb-callbacks")
            warnings.warn(f"telnyx_nb-callbacks: a callback still runs after {self.stop_timeout_s} s; "
                          "the thread is left running (health()['unjoined_threads'])", RuntimeWarning, stacklevel=2)

    async def astop(self) -> None:
        """``stop()`` for asyncio code."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = ", ".join(f"{name} {url}" for name, url in self._addresses().items())
        checks = f"webhooks {'verified' if self.public_key is not None else 'unverified'}, stream token " \
                 f"{'required' if self.stream_auth_token is not None else 'not required'}"
        if self.running:
            capture = f"capture process {self._child.pid}" if self._child is not None else "capture thread"
            return f"<telnyx_nb.Receiver listening: {where}; {checks}; {capture}>"
        if not self._started:
            return f"<telnyx_nb.Receiver never started (host {self.host}); call .start()>"
        return f"<telnyx_nb.Receiver {self._stopped_state()} (was {where}); tables readable>"

    def _repr_rows(self) -> list[tuple[str, object]]:
        rows: list[tuple[str, object]] = list(self._addresses().items()) if self._started else []
        rows.append(("webhooks", "verified (public_key)" if self.public_key is not None else "unverified"))
        rows.append(("recording", self.recording_path or "in memory"))
        return rows

    def _stopped_state(self) -> str:
        child = self._child
        if child is not None and child.stopped_health is None and child.returncode is not None:
            return f"stopped: its capture process died (exit code {child.returncode})"
        return "stopped"

    def _require_running(self) -> None:
        """ReceiverNotStartedError unless the receiver listens."""
        if self.running:
            return
        if not self._started:
            raise ReceiverNotStartedError("receiver not started; call .start()")
        raise ReceiverNotStartedError(f"receiver {self._stopped_state()}; nothing listens at its addresses. "
                                      "Call .start() to listen again (its tables stay readable)")

    def _require_started(self) -> None:
        """ReceiverNotStartedError before the first ``start()`` (later, a stopped capture says why)."""
        if not self._started:
            raise ReceiverNotStartedError("receiver not started; call .start()")

    # -- reads: the recording, up to date ---------------------------------------------------

    def _refresh(self, *, force: bool = False) -> None:
        """In process mode, bring the tables up to what the capture process had received
        ``read_flush_interval_s`` ago (``force``, or a ``commands`` row written since: now)."""
        if not self.process or self.recording_path is None:
            return
        child = self._child
        now = time.monotonic()
        if child is not None and child.alive:
            if force or now - self._flushed_at >= self.read_flush_interval_s:
                self._flushed_at = now
                with contextlib.suppress(CaptureError):      # it died just now: read what it wrote
                    child.call("flush")
        elif child is not None and not self._warned_dead and child.stopped_health is None:
            self._warned_dead = True
            warnings.warn(f"the capture process ended unexpectedly (exit code {child.returncode}); "
                          "tables hold what it recorded", RuntimeWarning, stacklevel=3)
        if (self.recording_path / "manifest.json").exists():
            self._follower.refresh(complete_only=child is not None and child.alive)

    def _table(self, name: str) -> pd.DataFrame:
        self._refresh()
        return super()._table(name)

    def save(self, path: str | PathLike[str], *, overwrite: bool = False, redact: bool = False) -> Path:
        """See :meth:`Session.save`; everything received until now is saved."""
        self._refresh(force=True)
        return super().save(path, overwrite=overwrite, redact=redact)

    # -- addresses ---------------------------------------------------------------------------

    def _addresses(self) -> dict[str, str]:
        """The four addresses as of the last start (unchecked: for messages)."""
        base = self.public_url or _local_base(self.host, self.port)
        parts = urlsplit(base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return {"webhook_url": f"{base}/webhooks", "stream_url": f"{scheme}://{parts.netloc}{parts.path}/stream",
                "fork_rx": f"udp:{self.fork_host}:{self.fork_ports[0]}",
                "fork_tx": f"udp:{self.fork_host}:{self.fork_ports[1]}"}

    @property
    def webhook_url(self) -> str:
        """Where Telnyx should POST webhooks (the call's / connection's ``webhook_url``).

        Raises ReceiverNotStartedError unless the receiver listens (so do the other addresses)."""
        self._require_running()
        return self._addresses()["webhook_url"]

    @property
    def stream_url(self) -> str:
        """The ``stream_url`` for ``streaming_start`` (ws://, or wss:// behind an https public_url)."""
        self._require_running()
        return self._addresses()["stream_url"]

    @property
    def fork_rx(self) -> str:
        """``rx`` target for ``fork_start``: the call's incoming RTP."""
        self._require_running()
        return self._addresses()["fork_rx"]

    @property
    def fork_tx(self) -> str:
        """``tx`` target for ``fork_start``: the call's outgoing RTP."""
        self._require_running()
        return self._addresses()["fork_tx"]

    # -- self-test ----------------------------------------------------------------------------

    def selftest(self, url: str | None = None, *, timeout: float = defaults.SELFTEST_TIMEOUT_S) -> SelfTest:
        """Whether this receiver answers through ``url``: a :class:`~telnyx_nb.wire.selftest.SelfTest`.

        Requests ``<url>/selftest?nonce=<random>`` (``url`` a base URL, or a ``webhook_url``: a
        trailing ``/webhooks`` is dropped; default this receiver's public one: ``public_url``,
        else its local address) and returns ``reachable`` (the answer
        echoed the nonce from this receiver, not from a tunnel's error page, another server or
        another receiver), ``round_trip_ms`` (float, ms; NaN without an answer), ``status``,
        ``error`` (why not reachable, in words) and ``received_at`` (UTC). It sends what Telnyx's
        webhooks would go through (the tunnel, the receiver's HTTP server) from this machine, so
        it shows the URL is right, not that Telnyx's network can reach it. An unreachable URL is
        reported, never raised. Loopback URLs bypass HTTP proxies; others use the environment's.

        Raises ReceiverNotStartedError unless the receiver listens, ValueError for a ``url``
        that is not http(s) or a ``timeout`` that is not positive.
        """
        self._require_running()
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if url is not None and not url.strip():
            raise ValueError("url is empty: give a base URL (https://…), or None for this receiver's public one")
        base = (url or self.public_url or _local_base(self.host, self.port)).rstrip("/")
        for route in ("/webhooks", selftest.PATH):        # rx.webhook_url itself is the natural guess
            base = base.removesuffix(route)
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an http:// or https:// base URL, got {url!r}")
        nonce = selftest.new_nonce()
        target = f"{base}{selftest.PATH}?nonce={nonce}"
        proxies: dict[str, str] | None = {} if _is_loopback(parts.hostname) else None   # None: the environment's
        opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
        request = urllib.request.Request(target, headers={"Accept": "application/json",
                                                          "User-Agent": "telnyx_nb-selftest"})
        start = time.perf_counter()
        try:
            with opener.open(request, timeout=timeout) as answer:
                status, body = answer.status, answer.read(selftest.ANSWER_MAX_BYTES)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read(selftest.ANSWER_MAX_BYTES)
        except (OSError, http.client.HTTPException) as exc:   # refused, reset, timeout, TLS, not HTTP
            return selftest.unreachable(target, exc, timeout)
        round_trip_ms = (time.perf_counter() - start) * 1e3
        return selftest.judge(target, nonce, self.port, status, body, round_trip_ms)

    # -- fork attribution ----------------------------------------------------------------------

    def expect_fork(self, call_control_id: str) -> None:
        """Attribute the next new RTP source on each fork port to this call (start_forking does this)."""
        self._command("expect_fork", call_control_id=call_control_id)

    def withdraw_fork(self, call_control_id: str) -> None:
        """Undo ``expect_fork``: the call's fork did not start (start_forking does this on errors)."""
        self._command("withdraw_fork", call_control_id=call_control_id)

    # -- the commands table ------------------------------------------------------------------------

    def record_command(self, command: str, call_control_id: str | None, options: Mapping[str, Any]) -> int:
        """Add a ``commands`` row for a Call Control command about to be sent (``sent_at`` now,
        ``status`` "sent"); returns its index for :meth:`command_answered`. The helpers of
        ``telnyx_nb.actions`` call this; so may code that sends commands itself. ``command`` is
        Telnyx's action name ("dial", "streaming_start", ...); ``options`` the SDK options,
        recorded with secrets masked (``store.commands.recorded_options``: a secret never
        leaves this process). ReceiverNotStartedError before ``start()``."""
        index: int = self._command("add_command", command=command, call_control_id=call_control_id,
                                   options=recorded_options(options), sent_ns=time.time_ns())
        self._flushed_at = -math.inf        # a row this process wrote: the next read sees it
        return index

    def command_answered(self, index: int, status: str, *, call_control_id: str | None = None,
                         http_status: int | None = None, error: str | None = None) -> None:
        """Complete ``commands`` row ``index`` (``answered_at`` now): ``status`` "ok", "rejected"
        (an HTTP error answer: ``http_status``, ``error``) or "failed" (no answer: ``error``);
        ``call_control_id`` names the call a ``dial`` created."""
        self._command("answer_command", index=index, answered_ns=time.time_ns(), status=status,
                      call_control_id=call_control_id, http_status=http_status, error=error)
        self._flushed_at = -math.inf

    # -- waiting for a webhook -----------------------------------------------------------------------

    def wait_for(self, event_type: str, call_control_id: str | None = None, *,
                 timeout: float = defaults.WAIT_FOR_TIMEOUT_S, progress: bool | None = None) -> pd.Series:
        """The first ``events`` row of ``event_type`` (for ``call_control_id`` when given), as a
        ``pd.Series`` indexed by the ``events`` columns; an event received before the call counts,
        else this blocks until one arrives, at most ``timeout`` seconds.

        For example ``rx.wait_for("call.answered", ccid)`` before ``tnb.start_streaming``:
        Telnyx refuses commands on a call that is not answered yet (422 90034). ``event_type`` is
        a webhook's ``event_type``. Raises TimeoutError saying which events did arrive (for that
        call) and how many webhooks were rejected, ReceiverNotStartedError before ``start()``.
        ``progress``: once the wait passes ``defaults.WAIT_PROGRESS_AFTER_S``, a ``tqdm.auto`` bar
        says what it waits for and counts the seconds, removed when the wait ends (None: in a
        Jupyter kernel only).
        """
        self._require_started()
        if progress is None:
            progress = _in_kernel()
        arrived = threading.Event()

        def on_event(event: dict[str, Any]) -> None:
            if call_control_id is None or event.get("call_control_id") == call_control_id:
                arrived.set()

        unsubscribe = self.on(event_type, on_event)
        begun = time.monotonic()
        deadline, next_read = begun + timeout, begun
        bar = None
        try:
            while True:
                now = time.monotonic()
                if arrived.is_set() or now >= next_read:
                    arrived.clear()                      # an event set after this is seen by the next read
                    self._refresh(force=True)            # what woke it is in the table
                    events = self.events
                    match = events["event_type"] == event_type
                    if call_control_id is not None:
                        match &= events["call_control_id"] == call_control_id
                    if match.any():
                        return events[match].iloc[0]
                    next_read = now + defaults.WAIT_FOR_RECHECK_S
                if now >= deadline or not self.running:
                    break
                if progress and now - begun >= defaults.WAIT_PROGRESS_AFTER_S:
                    bar = bar or _wait_bar(event_type, call_control_id, timeout)
                    bar.update(round(now - begun, 1) - bar.n)
                pause = min(deadline, next_read) - now
                arrived.wait(min(pause, defaults.WAIT_PROGRESS_INTERVAL_S) if progress else pause)
        finally:
            unsubscribe()
            if bar is not None:
                bar.close()
        raise TimeoutError(self._nothing_came(event_type, call_control_id, timeout, events))

    def _nothing_came(self, event_type: str, call_control_id: str | None, timeout: float,
                      events: pd.DataFrame) -> str:
        if call_control_id is not None:
            events = events[events["call_control_id"] == call_control_id]
        counts: dict[str, int] = {}
        for name in events["event_type"]:
            counts[name] = counts.get(name, 0) + 1
        arrived = ", ".join(f"{name} x{n}" for name, n in counts.items()) or "none"
        call = f" for call {call_control_id!r}" if call_control_id is not None else ""
        message = f"no {event_type!r} event{call} within {timeout:g} s; events that arrived{call}: {arrived}"
        if not self.running:
            message += " (the receiver is not running)"
        rejected = len(self.webhook_errors)
        if rejected:
            message += f"; {rejected} webhooks were rejected (rx.webhook_errors)"
        return message

    async def await_for(self, event_type: str, call_control_id: str | None = None, *,
                        timeout: float = defaults.WAIT_FOR_TIMEOUT_S) -> pd.Series:
        """``wait_for`` for asyncio code: ``await rx.await_for("call.answered", ccid)``."""
        return await asyncio.to_thread(self.wait_for, event_type, call_control_id, timeout=timeout)

    def _command(self, op: str, **args: Any) -> Any:
        self._require_started()
        if self._child is not None:
            return self._child.call(op, **args)
        assert self._capture is not None
        return getattr(self._capture, op)(*args.values())

    # -- state ------------------------------------------------------------------------------------

    @property
    def clocks(self) -> dict[str, str]:
        """What stamps each table's ``received_at``: forked RTP gets the kernel's receive time
        where the platform offers it ("kernel"), the rest "socket_read" (see ``telnyx_nb.udp``)."""
        if self._capture is not None:
            return self._capture.clocks()
        if self._child is not None and self._child.alive:
            clocks: dict[str, str] = self._child.call("clocks")
            return clocks
        self._refresh()                                   # the capture is gone: its recording says
        return {**super().clocks, **self._follower.manifest.get("clocks", {})}

    def health(self) -> dict[str, Any]:
        """Counters since start, loop lag p50/p99 (ms, last minute) and the loop in use.

        ``messages``/``bytes``/``errors`` sum webhooks, WebSocket messages and UDP datagrams;
        ``duplicates`` are re-delivered webhooks (stored once); ``webhooks_rejected`` failed
        verification; ``callbacks_dropped`` events a full callback queue could not take;
        ``callbacks`` how many ``rx.on`` callbacks are registered (0 once every widget is closed);
        ``store_bytes`` is the memory of frames, packets and their payloads;
        ``udp_kernel_drops`` datagrams the kernel dropped on the fork ports (receive buffer full;
        None where the platform does not say), ``webhook_timeouts`` connections closed for
        sending a header or body too slowly, ``unrecorded_rows`` rows the recording could not write;
        ``unjoined_threads`` names threads a ``stop()`` could not end; ``capture`` says where
        the capture runs ("thread", "process", or why the process is gone).
        """
        if self._child is not None:
            child = self._child
            if child.alive:
                c = child.call("health")
                capture = f"process {child.pid}"
            else:
                c = dict(child.stopped_health or {})
                capture = "process stopped" if child.stopped_health else f"process died (exit code {child.returncode})"
            c["callbacks_dropped"] = self._bus.dropped + c.pop("events_dropped", 0)
            for lag in ("loop_lag_p50_ms", "loop_lag_p99_ms"):           # NaN travels as null
                c[lag] = float("nan") if c.get(lag) is None else c[lag]
            self._unjoined += [t for t in c.pop("unjoined_threads", []) if t not in self._unjoined]
        else:
            assert self._capture is not None
            c = self._capture.health()
            capture = "thread"
            c["callbacks_dropped"] = self._bus.dropped
        if c.get("recording_error") and not self._warned_recording:      # said here, in the notebook
            self._warned_recording = True
            warnings.warn(c["recording_error"], RuntimeWarning, stacklevel=2)
        c["callback_errors"] = self._bus.errors
        c["callbacks"] = self._bus.listeners
        counters = {name: c.get(name, 0) for name in COUNTERS}
        return {
            "messages": counters["webhooks"] + counters["ws_messages"] + counters["udp_packets"],
            "bytes": counters["webhook_bytes"] + counters["ws_bytes"] + counters["udp_bytes"],
            "errors": counters["webhooks_malformed"] + counters["webhooks_rejected"] + counters["webhook_timeouts"]
            + counters["stream_errors"]
            + counters["udp_errors"] + counters["ws_refused"] + c["callback_errors"],
            "duplicates": c.get("webhook_duplicates", 0),
            **c,
            "capture": capture,
            "capture_pid": self._child.pid if self._child is not None else None,
            "unjoined_threads": list(self._unjoined),
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
        off = self._bus.on(event_type, callback)
        if self._child is not None and self._child.alive:
            self._child.call("listen", types=self._bus.types)

        def unsubscribe() -> None:
            off()
            if self._child is not None and self._child.alive:
                self._child.call("listen", types=self._bus.types)

        return unsubscribe

    # -- bidirectional: application -> Telnyx ------------------------------------------------------

    def send_audio(self, stream_id: str, samples: np.ndarray, rate: int, *, encoding: str | None = None
                   ) -> concurrent.futures.Future[None]:
        """Play audio into the call: resampled, encoded and sent as paced 20 ms ``media`` frames.

        ``samples``: 1-D, int16 or float in [-1, 1], at ``rate`` Hz. They are encoded in the
        codec and rate Telnyx expects audio back in — the stream's ``bidirectional_codec`` and
        ``bidirectional_rate`` (``rx.streams``), from the ``stream_bidirectional_codec`` and
        ``stream_bidirectional_sampling_rate`` its recorded command (``rx.commands``) asked
        for — never the stream's inbound ``media_format`` (a PCMA call streamed with the default
        bidirectional codec PCMU wants PCMU back). A stream no recorded command asked for gets
        Telnyx's defaults, PCMU at 8 kHz (``wire.codecs.BIDIRECTIONAL_DEFAULT``); ``encoding``
        names another codec. Resampling is soxr's (``wire.codecs.resample``, with an anti-alias
        filter). Every chunk is 20 ms (Telnyx takes 20 ms to 30 s): the tail is padded with the
        codec's silence. Returns a Future that completes when the last frame was sent, or is
        cancelled (``.cancelled()`` True) when :meth:`clear` drops what was still queued.
        Raises ValueError for samples that are not 1-D, a rate that is not a positive int, or a
        stream started in ``mp3`` mode (send MP3 files there, not frames), StreamNotOpenError
        for a stream with no open socket here, StreamNotStartedError before the stream's
        ``start`` frame (its call, and so its codec, is unknown), UnsupportedCodecError for a
        codec this toolkit cannot encode (G722, OPUS, AMR-WB), and ReceiverNotStartedError
        before the receiver's first ``start()``.
        """
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono (1-D), got shape {samples.shape}")
        if not (isinstance(rate, numbers.Integral) and rate > 0):
            raise ValueError(f"rate must be a positive number of samples per second, got {rate!r}")
        self._require_started()
        if self._child is not None:
            pcm = codecs.to_int16(samples).astype("<i2").tobytes()
            return self._child.send("send_audio", stream_id=stream_id, samples=base64.b64encode(pcm).decode("ascii"),
                                    rate=int(rate), encoding=encoding)
        if self._capture is None or not self._capture.running:
            raise StreamNotOpenError(f"no open media stream {stream_id!r}")
        return self._capture.send_audio(stream_id, samples, int(rate), encoding)

    async def asend_audio(self, stream_id: str, samples: np.ndarray, rate: int, *, encoding: str | None = None) -> None:
        """``send_audio`` for asyncio code: returns when the last frame was sent."""
        await asyncio.wrap_future(self.send_audio(stream_id, samples, rate, encoding=encoding))

    def mark(self, stream_id: str, name: str) -> concurrent.futures.Future[None]:
        """Send a ``mark`` after the audio queued so far; Telnyx echoes it (``rx.marks``) once played.

        Logged in ``rx.commands`` as command "mark" (options ``stream_id``, ``name``): ``sent_at``
        now, ``answered_at`` when the capture handed the mark frame to the socket (after the
        audio queued before it), with the stream's ``call_control_id`` and status "ok"; "failed"
        when it never went out (a ``clear``, the stream ended, or the error raised here)."""
        self._require_started()
        index = self.record_command("mark", None, {"stream_id": stream_id, "name": name})
        try:
            if self._child is not None:
                return self._child.send("mark", stream_id=stream_id, name=name, command=index)
            if self._capture is None or not self._capture.running:
                raise StreamNotOpenError(f"no open media stream {stream_id!r}")
            return self._capture.mark(stream_id, name, index)
        except Exception as exc:
            self.command_answered(index, "failed", error=repr(exc))
            raise

    def clear(self, stream_id: str) -> concurrent.futures.Future[None]:
        """Drop audio still queued here and send ``clear`` (Telnyx flushes its queue, echoes marks)."""
        self._require_started()
        if self._child is not None:
            return self._child.send("clear", stream_id=stream_id)
        if self._capture is None or not self._capture.running:
            raise StreamNotOpenError(f"no open media stream {stream_id!r}")
        return self._capture.clear(stream_id)


#: Receivers of this process that listen (a second one started warns, naming the others).
_LISTENING: weakref.WeakSet[Receiver] = weakref.WeakSet()


def _is_loopback(host: str) -> bool:
    """True for "localhost" and loopback addresses; any other name or address may be reachable."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_base(host: str, port: int) -> str:
    """The URL this machine reaches a server on ``host:port`` by: a wildcard address (all
    interfaces) through loopback, an IPv6 address in brackets."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _weak_handler(rx: Receiver) -> Callable[[dict[str, Any]], None]:
    """Live events for ``rx`` without keeping it alive (the reader thread outlives nothing)."""
    ref = weakref.ref(rx)

    def handle(event: dict[str, Any]) -> None:
        receiver = ref()
        if receiver is not None:
            receiver._on_child_event(event)

    return handle


def _in_kernel() -> bool:
    """True in a Jupyter (ipykernel) kernel, where a progress bar renders as a widget."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _wait_bar(event_type: str, call_control_id: str | None, timeout: float) -> Any:
    from tqdm.auto import tqdm

    call = f" ({call_control_id[:12]}…)" if call_control_id else ""
    return tqdm(total=timeout, desc=f"waiting for {event_type}{call}", unit="s", leave=False,
                bar_format="{desc}: {n:.1f}/{total:g} s")
