"""The control endpoint: how ``Sandbox`` drives the emulator in the sandbox's own process.

The child (``child``) serves, besides the Telnyx REST API, a second aiohttp app on
``127.0.0.1`` only (whatever host the REST API listens on) with one route,
``POST /_sandbox/{command}``: the command is one of ``engine.COMMANDS``, the body its keyword
arguments as JSON. Every request carries the control token, a random secret the parent hands
the child on its stdin (never on the command line, in the environment or in any output), in
the ``X-Telnyx-Nb-Control`` header; a wrong or missing token is 401 and nothing runs.

Answers: ``200`` with ``{"result": ...}`` (JSON; NaN allowed, as Python's ``json`` writes it), or
for ``ground_truth`` the snapshot's columns as one binary blob (``pack_snapshot``: a JSON header
naming each column's ``array`` type code and length, then the raw columns, then the payloads
when asked for; the parent rebuilds the DataFrame with the same ``GroundTruth.to_frame`` as the
in-process mode, so the dtypes are the same). ``422`` with ``{"error": {"type", "args",
"message"}}`` when the command raised: the parent raises the same built-in exception type with
the same arguments (``KeyError`` for an unknown call, ``ValueError`` for a bad value, ...), or a
``RuntimeError`` naming any other type. pandas is not needed on the child's side.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import http.client
import json
import logging
import socket
import struct
import threading
from array import array
from typing import TYPE_CHECKING, Any

from telnyx_nb.sandbox.ground_truth import ARRAY_COLUMNS, GroundTruth, Snapshot

if TYPE_CHECKING:
    from aiohttp import web

    from telnyx_nb.sandbox.engine import Engine

__all__ = ["PREFIX", "TOKEN_HEADER", "SandboxProcessError", "ControlClient", "start_control", "pack_snapshot",
           "unpack_snapshot", "encode_error", "decode_error"]

log = logging.getLogger(__name__)

PREFIX = "/_sandbox"
TOKEN_HEADER = "X-Telnyx-Nb-Control"
_MAGIC = b"TNBGT\x01"
#: Exceptions a command may raise that the parent re-raises as themselves.
_BUILTIN_ERRORS: dict[str, type[Exception]] = {cls.__name__: cls for cls in (
    KeyError, IndexError, LookupError, ValueError, TypeError, RuntimeError, TimeoutError, NotImplementedError,
    OverflowError, ZeroDivisionError)}
#: Idle control connections are never closed by the child (the parent pools them).
_KEEPALIVE_S = 10 * 365 * 86400.0


class SandboxProcessError(RuntimeError):
    """The sandbox's process failed to start, or has exited; the message says how, with the
    last lines it wrote to stderr. ``stop()`` and ``start()`` run a new one."""


# --- errors ---------------------------------------------------------------------------------
def encode_error(exc: BaseException) -> dict[str, Any]:
    args: list[Any] = list(exc.args)
    try:
        json.dumps(args)
    except (TypeError, ValueError):
        args = [str(exc)]
    return {"type": type(exc).__name__, "args": args, "message": str(exc)}


def decode_error(error: dict[str, Any]) -> Exception:
    """The exception to raise in the parent for an ``encode_error`` body."""
    cls = _BUILTIN_ERRORS.get(str(error.get("type")))
    if cls is not None:
        return cls(*error.get("args", ()))
    return RuntimeError(f"the sandbox process raised {error.get('type')}: {error.get('message')}")


# --- ground truth across the boundary ----------------------------------------------------------
def pack_snapshot(snap: Snapshot, payloads: bool = False) -> bytes:
    """One blob for a snapshot (see the module docstring); ``payloads`` slices them out first."""
    columns: list[list[Any]] = []
    blobs: list[bytes] = []
    for name in ARRAY_COLUMNS:
        if name == "source":
            continue
        column = snap[name]  # type: ignore[literal-required]
        raw = column.tobytes()
        columns.append([name, column.typecode, len(raw)])
        blobs.append(raw)
    header: dict[str, Any] = {"columns": columns, "stream_ids": snap["stream_ids"]}
    if payloads:
        rows = GroundTruth.payloads(snap)
        lengths = array("i", map(len, rows)).tobytes()
        header["payloads"] = [len(lengths), sum(map(len, rows))]
        blobs += [lengths, *rows]
    head = json.dumps(header).encode()
    return b"".join([_MAGIC, struct.pack("<I", len(head)), head, *blobs])


def unpack_snapshot(data: bytes) -> Snapshot:
    if not data.startswith(_MAGIC):
        raise ValueError("not a ground-truth snapshot from the sandbox process")
    offset = len(_MAGIC) + 4
    (n,) = struct.unpack_from("<I", data, len(_MAGIC))
    header = json.loads(data[offset:offset + n])
    offset += n
    view = memoryview(data)
    snap = Snapshot(stream_ids=header["stream_ids"], sources=[])
    for name, typecode, size in header["columns"]:
        column = array(typecode)
        column.frombytes(view[offset:offset + size])
        snap[name] = column  # type: ignore[literal-required]
        offset += size
    if "payloads" in header:
        lengths_size, _total = header["payloads"]
        lengths = array("i")
        lengths.frombytes(view[offset:offset + lengths_size])
        offset += lengths_size
        rows = []
        for length in lengths:
            rows.append(bytes(view[offset:offset + length]))
            offset += length
        snap["payloads"] = rows
    return snap


# --- the child's side -----------------------------------------------------------------------
async def start_control(engine: Engine, token: str, sock: socket.socket) -> web.AppRunner:
    """Serve the control endpoint for ``engine`` on ``sock`` (a listening TCP socket the
    parent bound on 127.0.0.1 and handed over); returns the runner. aiohttp is imported here,
    in the child: the parent only needs ``ControlClient``."""
    from aiohttp import web

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post(PREFIX + "/{command}", functools.partial(_handle, engine, token))
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=_KEEPALIVE_S)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


async def _handle(engine: Engine, token: str, request: web.Request) -> web.Response:
    from aiohttp import web

    if not hmac.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), token.encode()):
        return web.Response(status=401, text="bad control token")
    name = request.match_info["command"]
    try:
        args = json.loads(await request.read() or b"{}")
        if not isinstance(args, dict):
            raise TypeError("a command's arguments are a JSON object")
        payloads = bool(args.pop("payloads", False)) if name == "ground_truth" else False
        result = await engine.command(name, args)
        if name == "ground_truth":  # slicing payloads out of a long call: off the media clock's loop
            body = await asyncio.get_running_loop().run_in_executor(None, pack_snapshot, result, payloads)
            return web.Response(body=body, content_type="application/octet-stream")
        body = json.dumps({"result": result}).encode()
    except Exception as exc:
        if type(exc).__name__ not in _BUILTIN_ERRORS:
            log.exception("sandbox command %s failed", name)
        return web.Response(status=422, body=json.dumps({"error": encode_error(exc)}).encode(),
                            content_type="application/json")
    return web.Response(body=body, content_type="application/json")


# --- the parent's side ----------------------------------------------------------------------
class ControlClient:
    """Synchronous, thread-safe client of one child's control endpoint (pooled keep-alive
    connections from ``http.client``; a connection is used by one thread at a time)."""

    def __init__(self, port: int, token: str, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self._token = token
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def call(self, name: str, args: dict[str, Any], timeout: float) -> Any:
        """Run ``name`` in the child; its JSON result, or ``bytes`` for a binary answer. Raises
        what the command raised (``decode_error``), or ``OSError``/``http.client.HTTPException``
        when the endpoint cannot be reached."""
        conn = self._connection(timeout)
        body = json.dumps(args).encode()
        try:
            conn.request("POST", f"{PREFIX}/{name}", body=body,
                         headers={TOKEN_HEADER: self._token, "Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            raise
        self._release(conn)
        if response.status == 200:
            if response.getheader("Content-Type", "").startswith("application/octet-stream"):
                return data
            return json.loads(data)["result"]
        if response.status == 422:
            raise decode_error(json.loads(data)["error"])
        raise http.client.HTTPException(f"sandbox control endpoint answered {response.status}: {data[:200]!r}")

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        else:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
        return conn

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
