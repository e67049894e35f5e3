"""How many concurrent calls × both tracks the sandbox streams in real time, and how well paced.

N calls (default 200) stream both tracks (100 WebSocket frames/s per call) to a sink in a
separate process (a minimal aiohttp WebSocket server on uvloop that counts frames; with
``--fork`` the calls fork RTP to the sink's UDP sockets instead). After every stream is up,
for ``--seconds`` the sandbox records each frame's pacing error (actual send time minus its
20 ms deadline, measured in the sandbox) and its own CPU time. The last line of output is
one JSON object.

    .venv/bin/python benchmarks/bench_sandbox.py [--calls 200] [--seconds 20] [--fork]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request


# --- the sink (separate process) ---------------------------------------------------------
def run_sink() -> None:
    from aiohttp import WSMsgType, web

    counts = {"frames": 0, "connections": 0, "stops": 0, "webhooks": 0, "datagrams": 0}

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        counts["connections"] += 1
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                if message.data.startswith('{"event":"media"'):
                    counts["frames"] += 1
                elif message.data.startswith('{"event":"stop"'):
                    counts["stops"] += 1
        return ws

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        counts["webhooks"] += 1
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**counts, "cpu_s": time.process_time()})

    class Udp(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr) -> None:
            counts["datagrams"] += 1

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/stream", stream)
        app.router.add_post("/webhooks", webhook)
        app.router.add_get("/stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
        udp.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        print(json.dumps({"port": runner.addresses[0][1], "udp": udp.get_extra_info("sockname")[1]}), flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def sink_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as response:
        return json.load(response)


# --- the benchmark ------------------------------------------------------------------------
def run(calls: int, seconds: float, fork: bool, slots: int) -> dict:
    from telnyx_nb.sandbox import Sandbox, Scenario

    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True)
    try:
        ports = json.loads(sink.stdout.readline())
        port = ports["port"]
        scenario = Scenario.tone(seconds + 15.0 + calls * 0.02, 440.0, outbound_frequency=660.0)
        with Sandbox(scenario=scenario, clock_slots=slots) as sb:
            client = sb.client(timeout=30.0)
            webhook_url = f"http://127.0.0.1:{port}/webhooks"
            ccids = []
            media = {} if fork else {"stream_url": f"ws://127.0.0.1:{port}/stream", "stream_track": "both_tracks"}
            for i in range(calls):
                call = client.calls.dial(connection_id=sb.connection_id, to=f"+1555{i:07d}", from_="+15550199",
                                         webhook_url=webhook_url, **media)
                ccids.append(call.data.call_control_id)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if all(sb.call_state(c) == "answered" for c in ccids[-5:]):
                    break
                time.sleep(0.1)
            if fork:
                target = f"udp:127.0.0.1:{ports['udp']}"
                for ccid in ccids:
                    client.calls.actions.start_forking(ccid, rx=target, tx=target)
            else:
                while sink_stats(port)["connections"] < calls and time.monotonic() < deadline:
                    time.sleep(0.1)
            time.sleep(1.0)  # let the start-up burst pass
            sb.pacing(reset=True)
            before = sink_stats(port)
            wall0, cpu0 = time.monotonic(), time.process_time()
            time.sleep(seconds)
            cpu1, wall1 = time.process_time(), time.monotonic()
            pacing = sb.pacing()
            after = sink_stats(port)
            for ccid in ccids:
                client.calls.actions.hangup(ccid)
        key = "datagrams" if fork else "frames"
        wall = wall1 - wall0
        expected = calls * 2 * wall / 0.020
        return {
            "bench": "sandbox", "calls": calls, "tracks": 2, "path": "fork" if fork else "stream",
            "seconds": round(wall, 2), "clock_slots": slots, "loop": _loop_name(),
            "frames_expected": int(expected), "frames_sent": pacing["n"], "frames_received": after[key] - before[key],
            "pacing_p50_ms": round(pacing["p50_ms"], 3), "pacing_p90_ms": round(pacing["p90_ms"], 3),
            "pacing_p99_ms": round(pacing["p99_ms"], 3), "pacing_max_ms": round(pacing["max_ms"], 3),
            "skipped_ticks": pacing["skipped_ticks"],
            "sandbox_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
            "sink_cpu_pct": round(100 * (after["cpu_s"] - before["cpu_s"]) / wall, 1),
            "cores": os.cpu_count(),
        }
    finally:
        sink.terminate()
        sink.wait(10)


def _loop_name() -> str:
    try:
        import uvloop  # noqa: F401
        return "uvloop"
    except ImportError:
        return "asyncio"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--slots", type=int, default=20, help="media clock phases per 20 ms (1 = all calls at once)")
    parser.add_argument("--fork", action="store_true", help="fork RTP over UDP instead of WebSocket streaming")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink()
        return
    print(json.dumps(run(args.calls, args.seconds, args.fork, args.slots)))


if __name__ == "__main__":
    main()
