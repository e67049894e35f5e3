"""Load generator for bench_receiver.py: Telnyx-like media WebSockets, run as a separate process.

Frames are built with ``telnyx_nb.wire.media`` like the sandbox's; the WebSocket layer is a
minimal client (upgrade handshake, masked text frames with a zero mask key, never reads) so
that the generator stays cheap and is not the bottleneck. Two modes:

- ``paced``: N calls x both tracks, one 20 ms frame per track per call at real-time pace;
  calls are spread over ``--groups`` phases of the 20 ms tick (as independent calls would
  be). Writes each group's send times (ns, shape groups x chunks) to ``--times`` (.npy).
- ``blast``: C connections writing prebuilt frames back to back (flow-controlled by TCP)
  for ``--seconds``; the server side counts what it sustains.

Prints one JSON line: frames sent, CPU seconds of this process, wall seconds, worst tick lag.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import struct
import time
from urllib.parse import urlsplit

import numpy as np
import orjson

from telnyx_nb.wire import codecs, media

TONE = codecs.ulaw_encode((8000 * np.sin(2 * np.pi * 440 * np.arange(160) / 8000)).astype(np.int16))


def ws_text(text: str) -> bytes:
    """One masked (zero key) WebSocket text frame."""
    data = text.encode()
    n = len(data)
    if n < 126:
        header = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return header + b"\x00\x00\x00\x00" + data


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    status = await reader.readuntil(b"\r\n\r\n")
    if not status.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(status.split(b"\r\n")[0].decode())
    return reader, writer


def media_frames(sid: str, chunk: int) -> bytes:
    seq = 2 * chunk
    return ws_text(media.dumps(media.Media(sid, seq, "inbound", chunk, 20 * (chunk - 1), TONE))) + \
        ws_text(media.dumps(media.Media(sid, seq + 1, "outbound", chunk, 20 * (chunk - 1), TONE)))


async def paced(url: str, calls: int, seconds: float, groups: int, times_path: str) -> dict:
    writers = []
    for c in range(calls):                              # sequential connects: no SYN burst
        _, writer = await connect(url)
        start = media.Start(f"bench-{c}", 1, f"v3:bench-{c}", media.MediaFormat("PCMU", 8000))
        writer.write(ws_text(media.dumps(start)))
        writers.append(writer)
    chunks = int(seconds * 50)
    sent = np.zeros((groups, chunks), dtype=np.int64)
    members = [list(range(g, calls, groups)) for g in range(groups)]
    loop = asyncio.get_running_loop()
    cpu0, t0 = time.process_time(), loop.time() + 0.1
    worst = 0.0
    for k in range(chunks):
        for g in range(groups):
            target = t0 + 0.020 * k + 0.020 * g / groups
            delay = target - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            worst = max(worst, loop.time() - target)
            sent[g, k] = time.time_ns()
            for c in members[g]:
                if not writers[c].is_closing():         # the receiver may be gone (bench_kill.py)
                    writers[c].write(media_frames(f"bench-{c}", k + 1))
    cpu = time.process_time() - cpu0
    wall = loop.time() - t0
    np.save(times_path, sent)
    for c, writer in enumerate(writers):
        if writer.is_closing():
            continue
        writer.write(ws_text(media.dumps(media.Stop(f"bench-{c}", 2 * chunks + 2, f"v3:bench-{c}"))))
        with contextlib.suppress(ConnectionError):     # the receiver may be gone (bench_kill.py)
            await writer.drain()
        writer.close()
    return {"frames": 2 * calls * chunks, "cpu_s": cpu, "wall_s": wall, "worst_tick_lag_ms": worst * 1e3}


async def blast(url: str, connections: int, seconds: float) -> dict:
    batch = 1000
    counts = [0] * connections

    async def one(i: int) -> None:
        _, writer = await connect(url)
        sid = f"blast-{i}"
        writer.write(ws_text(media.dumps(media.Start(sid, 1, f"v3:{sid}", media.MediaFormat("PCMU", 8000)))))
        buffer = b"".join(media_frames(sid, k) for k in range(1, batch // 2 + 1))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            writer.write(buffer)
            await writer.drain()
            counts[i] += batch
        writer.close()

    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(one(i) for i in range(connections)))
    return {"frames": sum(counts), "cpu_s": time.process_time() - cpu0, "wall_s": time.monotonic() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["paced", "blast"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--times", default="sent.npy")
    args = parser.parse_args()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.mode == "paced":
        result = runner(paced(args.url, args.calls, args.seconds, args.groups, args.times))
    else:
        result = runner(blast(args.url, args.connections, args.seconds))
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
