"""Capture: the receiver's sockets, stamps, store and recording — in a thread or a process of their own.

:class:`Capture` owns the I/O loop (``loopthread``), ``ingest`` (sockets -> ``wire`` ->
store), the recording (``store.recording``) and the commands that act on open streams. A
``Receiver`` runs one in-process (``process=False``) or, by default, in a child process
started with ``python -m telnyx_nb.capture`` (never a ``fork`` of the threaded kernel), so
that nothing the notebook does can delay a socket read or distort an arrival stamp — the way
Wireshark's ``dumpcap`` captures in a process of its own and the UI reads the file.

The child speaks JSON lines over its standard streams. The parent writes one ``config`` line,
then commands ``{"id": N, "op": ..., ...}``; the child answers ``{"type": "ready", ...}`` once
listening, then ``{"type": "reply", "id": N, "result": ...}`` (or ``"error": {"type",
"message"}``) per command, and ``{"type": "event", "event": {...}}`` for each live event the
parent listens to (bounded: events beyond ``callback_queue_size`` waiting are dropped and
counted). Timestamps travel as ``{"$ns": int}``, bytes as ``{"$b64": str}``. The end of its
standard input (the parent went away) makes the child finish the recording and exit.

What the child has to say goes over the same pipe: ``{"type": "warning", "message"}`` (the
parent issues it as a UserWarning, e.g. a run of webhook signature failures) and ``{"type":
"log", "name", "level", "message"}`` for each record of its ``telnyx_nb`` loggers, which the
parent passes to the logger of the same name. Anything the child writes to stderr (warnings,
a crash) is logged by the parent under ``telnyx_nb.capture``, and its last lines are quoted
when the child fails.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import functools
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import orjson
import pandas as pd

from telnyx_nb.defaults import Limits
from telnyx_nb.errors import StreamNotOpenError, StreamNotStartedError, TelnyxNbError
from telnyx_nb.events import EventSink
from telnyx_nb.loopthread import LoopThread
from telnyx_nb.store import Store, recording
from telnyx_nb.store.schema import NAT, TABLES
from telnyx_nb.udp import SOCKET_READ
from telnyx_nb.wire import codecs, media, webhooks

__all__ = ["Capture", "CaptureProcess", "CaptureError", "main"]

log = logging.getLogger(__name__)


class CaptureError(TelnyxNbError, RuntimeError):
    """The capture process failed to start, died, or did not answer."""


class Capture:
    """Sockets, store and recording on an I/O thread; every method is thread-safe.

    ``forget_flushed``: the store drops what the recording has written (the capture process,
    whose tables nobody reads directly), so its memory stays flat over a long run. ``warn``:
    how warnings meant for the user are issued (see ``Ingest``).
    """

    def __init__(self, store: Store, sink: EventSink, limits: Limits, *, loop: str, public_key: str | bytes | None,
                 stream_auth_token: str | None, l16_byteorder: codecs.ByteOrder,
                 record_to: str | os.PathLike[str] | None, flush_interval_s: float,
                 forget_flushed: bool = False, warn: Callable[[str], None] | None = None) -> None:
        from telnyx_nb.ingest import Ingest  # aiohttp: in the capture (child or thread) only

        self.store = store
        if stream_auth_token:                   # never in a stored excerpt (``store.scrub``)
            store.secrets = (*store.secrets, stream_auth_token)
        self._l16_byteorder = l16_byteorder
        self._io = LoopThread("telnyx_nb-capture", loop)
        self.ingest = Ingest(store, sink, limits,
                             verify_key=webhooks.load_public_key(public_key) if public_key is not None else None,
                             stream_auth_token=stream_auth_token, warn=warn)
        self.recorder = None if record_to is None else recording.Recorder(
            store, record_to, l16_byteorder=l16_byteorder, clocks=self.clocks, flush_interval_s=flush_interval_s,
            forget_flushed=forget_flushed)
        self.unjoined: list[str] = []

    @property
    def running(self) -> bool:
        return self._io.running

    @property
    def native_id(self) -> int | None:
        """The I/O thread's OS id (CPU accounting in benchmarks)."""
        return self._io.native_id

    def start(self, host: str, port: int, fork_ports: tuple[int, int], timeout: float) -> tuple[int, tuple[int, int]]:
        """Listen; returns the bound HTTP port and fork ports. Cleans up and raises on failure."""
        self._io.start()
        if self.recorder is not None:
            self.recorder.start()
        try:
            return self._io.run(self.ingest.open(host, port, fork_ports), timeout)
        except BaseException:
            self.stop(timeout)
            raise

    def stop(self, timeout: float) -> None:
        """Close the sockets (open streams end "receiver_stopped"), finish the recording."""
        try:
            if self._io.running:
                self._io.run(self.ingest.close(), timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass    # reported below: the thread will not join either
        finally:
            if not self._io.stop(timeout):
                self.unjoined.append(self._io.name)
            if self.recorder is not None:
                self.recorder.close(timeout)

    def clocks(self) -> dict[str, str]:
        """What stamps each table's ``received_at`` (see ``Session.clocks``)."""
        rtp_clock = self.ingest.rtp_clock
        return {**dict.fromkeys(TABLES, SOCKET_READ), "rtp": rtp_clock, "rtp_errors": rtp_clock}

    def health(self) -> dict[str, Any]:
        """Counters, loop lag (ms, last minute), loop, sockets and recording state."""
        ingest, recorder = self.ingest, self.recorder
        lags = np.array(ingest.lags) * 1e3
        drops = ingest.kernel_drops()
        known = [n for n in drops.values() if n is not None]
        return {
            **ingest.counters,
            "webhook_duplicates": self.store.duplicate_events,
            "open_streams": len(ingest.links),
            "loop": self._io.loop_name,
            # to the microsecond: the loop's clock reads finer than the wake-up it measures
            "loop_lag_p50_ms": round(float(np.percentile(lags, 50)), 3) if len(lags) else float("nan"),
            "loop_lag_p99_ms": round(float(np.percentile(lags, 99)), 3) if len(lags) else float("nan"),
            "udp_rcvbuf": ingest.udp_rcvbuf,
            "udp_kernel_drops": sum(known) if drops and len(known) == len(drops) else None,
            "udp_kernel_drops_by_target": drops,
            "rtp_clock": ingest.rtp_clock,
            "store_bytes": self.store.nbytes(),
            "recording": None if recorder is None else str(recorder.path),
            "recording_error": None if recorder is None else recorder.error,
            "recording_flushes": 0 if recorder is None else recorder.flushes,
            "unrecorded_rows": 0 if recorder is None else recorder.unrecorded_rows,
        }

    def flush(self) -> None:
        """Write what the recording has not yet written (no-op without one)."""
        if self.recorder is not None:
            self.recorder.flush()

    # -- fork attribution and the application -> Telnyx direction -----------------------------------

    def expect_fork(self, call_control_id: str) -> None:
        self.store.claim_fork(call_control_id)

    def withdraw_fork(self, call_control_id: str) -> None:
        self.store.withdraw_fork(call_control_id)

    # -- the commands table (``store.commands``) ---------------------------------------------------

    def add_command(self, command: str, call_control_id: str | None, options: dict[str, Any], sent_ns: int) -> int:
        return self.store.add_command(command, call_control_id, options, sent_ns)

    def answer_command(self, index: int, answered_ns: int, status: str, call_control_id: str | None,
                       http_status: int | None, error: str | None) -> None:
        self.store.answer_command(index, answered_ns, status, call_control_id=call_control_id,
                                  http_status=http_status, error=error)

    def _outbound(self, stream_id: str) -> Any:
        link = self.ingest.links.get(stream_id)
        if link is None or not self._io.running:
            raise StreamNotOpenError(f"no open media stream {stream_id!r}")
        return link

    def send_audio(self, stream_id: str, samples: np.ndarray, rate: int, encoding: str | None
                   ) -> concurrent.futures.Future[None]:
        """See ``Receiver.send_audio``, which has checked ``samples`` (1-D) and ``rate`` (> 0)."""
        link = self._outbound(stream_id)
        info = link.info
        started = info is not None and info.started_ns != NAT
        requested, fmt = self.store.bidirectional(info) if info is not None and started else (False, None)
        if encoding is None:
            if not started:
                raise StreamNotStartedError(f"stream {stream_id!r} has not sent its 'start' frame yet, so its call "
                                            "and the codec Telnyx expects audio back in are unknown; wait for it "
                                            "(rx.streams) or pass encoding=")
            if requested and fmt is None:
                raise ValueError(f"stream {stream_id!r} was started in stream_bidirectional_mode 'mp3' (Telnyx's "
                                 "default), where Telnyx plays MP3 files, not audio frames; start streaming with "
                                 "stream_bidirectional_mode='rtp'")
            # No recorded command asked for the stream: Telnyx's own defaults in rtp mode.
            encoding, target = fmt or codecs.BIDIRECTIONAL_DEFAULT
            codec = codecs.get_codec(encoding, l16_byteorder=self._l16_byteorder)
        else:
            codec = codecs.get_codec(encoding, l16_byteorder=self._l16_byteorder)
            target = fmt[1] if fmt is not None and fmt[0] == codec.name else codec.sample_rate
        payload = codec.encode(codecs.resample(codecs.to_int16(samples), rate, target))
        step = codec.frame_bytes(media.FRAME_MS, target)
        payload += codec.silence * (-len(payload) % step // codec.bytes_per_sample)    # no chunk under 20 ms
        frames = [media.AppMedia(payload[i : i + step]) for i in range(0, len(payload), step)]
        return self._io.submit(link.outbound.send(frames, paced=True))

    def mark(self, stream_id: str, name: str, command: int) -> concurrent.futures.Future[None]:
        """Queue a ``mark``; ``command``: its ``commands`` row, answered here as the frame goes out."""
        return self._io.submit(self._send_mark(self._outbound(stream_id), name, command))

    async def _send_mark(self, link: Any, name: str, command: int) -> None:
        """Send a mark and complete its ``commands`` row: answered the instant before the socket
        took the frame ("ok"), or when it failed to go out ("failed": the stream ended, a ``clear``)."""
        sent: list[int] = []
        try:
            await link.outbound.send([media.AppMark(name)], paced=False, on_last=sent.append)
        except BaseException as exc:
            reason = "cancelled: a clear, or the stream ended" if isinstance(exc, asyncio.CancelledError) else repr(exc)
            self.store.answer_command(command, time.time_ns(), "failed", error=reason)
            raise
        ccid = link.info.call_control_id if link.info is not None else None
        self.store.answer_command(command, sent[0], "ok", call_control_id=ccid)

    def clear(self, stream_id: str) -> concurrent.futures.Future[None]:
        return self._io.submit(self._outbound(stream_id).outbound.clear())


# -- the wire between the two processes ------------------------------------------------------------

#: Exceptions a command may raise, re-raised with the same type in the parent.
_ERRORS: dict[str, type[Exception]] = {cls.__name__: cls for cls in (
    StreamNotOpenError, StreamNotStartedError, codecs.UnsupportedCodecError, ValueError, TypeError, KeyError,
    LookupError, RuntimeError, concurrent.futures.CancelledError)}


def _encode(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return {"$ns": value.value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"cannot send {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$ns" in obj:
            return pd.Timestamp(obj["$ns"], tz="UTC")
        if "$b64" in obj:
            return base64.b64decode(obj["$b64"])
    return obj


def _line(message: Mapping[str, Any]) -> bytes:
    return orjson.dumps(message, default=_encode, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


class _Forwarder:
    """The child's event sink: live events for the parent, through a bounded queue."""

    def __init__(self, out: queue.Queue[bytes | None], queue_size: int) -> None:
        self.active = False
        self.types: frozenset[str] = frozenset()
        self.dropped = 0
        self._out = out
        self._pending = threading.BoundedSemaphore(queue_size)

    def listen(self, types: list[str]) -> None:
        self.types = frozenset(types)
        self.active = bool(self.types)

    def emit(self, event_type: str, build: Callable[[], dict[str, Any]]) -> None:
        if "*" not in self.types and event_type not in self.types:
            return
        if not self._pending.acquire(blocking=False):
            self.dropped += 1
            return
        self._out.put(_line({"type": "event", "event": {"event_type": event_type, **build()}}))

    def sent(self) -> None:
        self._pending.release()


def _report_done(done: Callable[[int, BaseException | None], None], ident: int,
                 future: concurrent.futures.Future[None]) -> None:
    done(ident, concurrent.futures.CancelledError("cleared") if future.cancelled() else future.exception())


class _ToParent(logging.Handler):
    """The child's log records, sent to the parent as ``log`` lines (see the module docstring)."""

    def __init__(self, out: queue.Queue[bytes | None]) -> None:
        super().__init__()
        self._out = out
        self.setFormatter(logging.Formatter("%(message)s"))     # the message, and its traceback if any

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name if record.name.startswith("telnyx_nb") else __name__     # py.warnings
        try:
            self._out.put(_line({"type": "log", "name": name, "level": record.levelno, "message": self.format(record)}))
        except Exception:  # a record that cannot be formatted must not stop the capture
            self.handleError(record)


def _log_to_parent(out: queue.Queue[bytes | None]) -> None:
    """Route the child's ``telnyx_nb`` log records and its Python warnings to the parent."""
    handler = _ToParent(out)
    package = logging.getLogger("telnyx_nb")
    package.setLevel(logging.INFO)
    package.addHandler(handler)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").addHandler(handler)


def main() -> int:
    """``python -m telnyx_nb.capture``: one capture, configured by the first line of stdin."""
    config = json.loads(sys.stdin.readline())
    out: queue.Queue[bytes | None] = queue.Queue()
    forwarder = _Forwarder(out, config.pop("callback_queue_size"))
    stdout = sys.stdout.buffer

    def write() -> None:
        while (line := out.get()) is not None:
            stdout.write(line)
            stdout.flush()
            if line.startswith(b'{"type":"event"'):
                forwarder.sent()

    writer = threading.Thread(target=write, name="telnyx_nb-capture-out", daemon=True)
    writer.start()
    _log_to_parent(out)
    store = Store(payload_types={int(k): v for k, v in config.pop("payload_types").items()},
                  fork_claim_window_s=config.pop("fork_claim_window_s"))
    record_to = config["record_to"]
    if recording.is_recording(record_to):
        recording.read(record_to, into=store, payloads_in_memory=True)   # resume the recording
    address = (config.pop("host"), config.pop("port"), tuple(config.pop("fork_ports")))
    timeout = config.pop("stop_timeout_s")
    # Nothing reads this store but through the recording: it keeps only what is not flushed yet.
    capture = Capture(store, forwarder, Limits(**config.pop("limits")), forget_flushed=True,
                      warn=lambda message: out.put(_line({"type": "warning", "message": message})), **config)
    try:
        port, fork_ports = capture.start(*address, timeout)
    except Exception as exc:  # reported to the parent, which raises it
        out.put(_line({"type": "failed", "error": {"type": type(exc).__name__, "message": str(exc)}}))
        out.put(None)
        writer.join(timeout)
        return 1
    out.put(_line({"type": "ready", "port": port, "fork_ports": fork_ports, "pid": os.getpid()}))
    commands = {
        "flush": lambda c: capture.flush(),
        "health": lambda c: {**capture.health(), "events_dropped": forwarder.dropped},
        "clocks": lambda c: capture.clocks(),
        "expect_fork": lambda c: capture.expect_fork(c["call_control_id"]),
        "withdraw_fork": lambda c: capture.withdraw_fork(c["call_control_id"]),
        "listen": lambda c: forwarder.listen(c["types"]),
        "add_command": lambda c: capture.add_command(c["command"], c["call_control_id"], c["options"], c["sent_ns"]),
        "answer_command": lambda c: capture.answer_command(c["index"], c["answered_ns"], c["status"],
                                                           c["call_control_id"], c["http_status"], c["error"]),
    }
    sends = {
        "send_audio": lambda c: capture.send_audio(
            c["stream_id"], np.frombuffer(base64.b64decode(c["samples"]), dtype="<i2"), c["rate"], c["encoding"]),
        "mark": lambda c: capture.mark(c["stream_id"], c["name"], c["command"]),
        "clear": lambda c: capture.clear(c["stream_id"]),
    }

    def reply(ident: int, result: Any = None, error: BaseException | None = None) -> None:
        message: dict[str, Any] = {"type": "reply", "id": ident}
        if error is not None:
            message["error"] = {"type": type(error).__name__, "message": str(error)}
        else:
            message["result"] = result
        out.put(_line(message))

    def done(ident: int, error: BaseException | None) -> None:
        message: dict[str, Any] = {"type": "done", "id": ident}
        if error is not None:
            message["error"] = {"type": type(error).__name__, "message": str(error)}
        out.put(_line(message))

    for raw in sys.stdin:
        command = json.loads(raw)
        op, ident = command.get("op"), command.get("id", 0)
        if op == "stop":
            break
        try:
            if op in sends:         # accepted now; "done" when the last frame went out
                future = sends[op](command)
                reply(ident, "accepted")
                future.add_done_callback(functools.partial(_report_done, done, ident))
            else:
                reply(ident, commands[op](command))
        except Exception as exc:  # a command's own error goes back to the caller
            reply(ident, error=exc)
    capture.stop(timeout)
    out.put(_line({"type": "stopped", "health": {**capture.health(), "unjoined_threads": capture.unjoined}}))
    out.put(None)
    writer.join(timeout)
    return 0


class CaptureProcess:
    """The parent's handle on a capture child: commands with replies, live events, lifecycle.

    ``on_event(event)`` runs on the reader thread for each live event. ``config`` is what
    :func:`main` reads. Raises CaptureError when the child does not start within ``timeout``.
    """

    def __init__(self, config: Mapping[str, Any], on_event: Callable[[dict[str, Any]], None], timeout: float) -> None:
        self._on_event = on_event
        self._timeout = timeout
        self._replies: dict[int, concurrent.futures.Future[Any]] = {}
        self._done: dict[int, concurrent.futures.Future[Any]] = {}
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()
        self.stopped_health: dict[str, Any] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._child = subprocess.Popen([sys.executable, "-m", "telnyx_nb.capture"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.write(orjson.dumps(config) + b"\n")
        self._child.stdin.flush()
        ready: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._reader = threading.Thread(target=self._read, args=(ready,), name="telnyx_nb-capture-in", daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, name="telnyx_nb-capture-err", daemon=True).start()
        try:
            self.ready = ready.result(timeout)
        except concurrent.futures.TimeoutError:
            self.kill()
            raise CaptureError(f"the capture process did not start within {timeout} s{self._tail()}") from None

    @property
    def alive(self) -> bool:
        return self._child.poll() is None

    @property
    def returncode(self) -> int | None:
        """The child's exit code (negative: the signal that ended it), None while it runs."""
        return self._child.poll()

    @property
    def pid(self) -> int:
        return self._child.pid

    def _tail(self) -> str:
        return (": " + " | ".join(self._stderr)) if self._stderr else ""

    def _read_stderr(self) -> None:
        assert self._child.stderr is not None
        for line in self._child.stderr:
            text = line.decode("utf-8", "replace").rstrip()
            self._stderr.append(text)
            log.warning("capture process %d: %s", self._child.pid, text)

    def _read(self, ready: concurrent.futures.Future[dict[str, Any]]) -> None:
        assert self._child.stdout is not None
        for raw in self._child.stdout:
            message = json.loads(raw, object_hook=_decode)
            kind = message.get("type")
            if kind == "event":
                self._on_event(message["event"])
            elif kind == "log":
                logging.getLogger(message["name"]).log(message["level"], "%s", message["message"])
            elif kind == "warning":         # for the user: a warning in the notebook's process
                warnings.warn(message["message"], UserWarning, stacklevel=1)
            elif kind in ("reply", "done"):
                table = self._replies if kind == "reply" else self._done
                future = table.pop(message["id"], None)
                if future is not None:
                    if "error" in message and message["error"]["type"] == "CancelledError":
                        future.cancel()                 # as the child's future was: .cancelled() here too
                    elif "error" in message:
                        error = message["error"]
                        future.set_exception(_ERRORS.get(error["type"], CaptureError)(error["message"]))
                    else:
                        future.set_result(message.get("result"))
            elif kind == "ready":
                ready.set_result(message)
            elif kind == "failed":
                error = message["error"]
                ready.set_exception(_ERRORS.get(error["type"], OSError)(error["message"]))
            elif kind == "stopped":
                self.stopped_health = message["health"]
        died = CaptureError(f"the capture process ended (exit code {self._child.wait()}){self._tail()}")
        if not ready.done():
            ready.set_exception(died)
        with self._lock:
            pending = [*self._replies.values(), *self._done.values()]
            self._replies, self._done = {}, {}
        for future in pending:
            future.set_exception(died)

    def submit(self, op: str, done: concurrent.futures.Future[Any] | None = None, **args: Any
               ) -> concurrent.futures.Future[Any]:
        """Send a command; the Future holds its result, or the error it raised in the child.
        ``done`` (for sends) is completed when the child reports the send finished."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if not self.alive:
            future.set_exception(CaptureError(f"the capture process is not running{self._tail()}"))
            return future
        with self._lock:
            ident = next(self._ids)
            self._replies[ident] = future
            if done is not None:
                self._done[ident] = done
        try:
            assert self._child.stdin is not None
            self._child.stdin.write(_line({"id": ident, "op": op, **args}))
            self._child.stdin.flush()
        except (BrokenPipeError, OSError):
            self._replies.pop(ident, None)
            future.set_exception(CaptureError(f"the capture process is not running{self._tail()}"))
        return future

    def call(self, op: str, done: concurrent.futures.Future[Any] | None = None, **args: Any) -> Any:
        """``submit`` and wait for the answer (``timeout``); errors re-raise here."""
        try:
            return self.submit(op, done, **args).result(self._timeout)
        except concurrent.futures.TimeoutError:
            raise CaptureError(f"the capture process did not answer {op!r} within {self._timeout} s") from None

    def send(self, op: str, **args: Any) -> concurrent.futures.Future[None]:
        """A send command: raises here if the child refuses it; the Future completes when sent."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.call(op, done, **args)
        return done

    def stop(self) -> None:
        """Ask the child to finish (sockets closed, recording finished) and wait for it."""
        if self.alive:
            try:
                assert self._child.stdin is not None
                self._child.stdin.write(_line({"op": "stop"}))
                self._child.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self._child.wait(self._timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(self._timeout)

    def kill(self) -> None:
        self._child.kill()
        self._child.wait()


if __name__ == "__main__":
    sys.exit(main())
