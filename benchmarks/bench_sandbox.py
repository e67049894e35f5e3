"""How many concurrent calls × both tracks the sandbox streams in real time, and how well paced.

N calls (default 200) stream both tracks (100 WebSocket frames/s per call) to a sink in a
separate process (a minimal aiohttp WebSocket server on uvloop that counts frames; with
``--fork`` the calls fork RTP to the sink's UDP sockets instead). After every stream is up,
for ``--seconds`` the sandbox records each frame's pacing error (actual send time minus its
20 ms deadline, measured in the sandbox) and its CPU time (the sandbox's own process by default;
with ``--thread`` the sandbox runs on a thread of this process, ``Sandbox(process=False)``, and
this process's CPU time is reported). The last line of output is one JSON object.

``--startup`` measures instead how long ``Sandbox().start()`` takes in each mode, and the
quickstart's time to its first live frame: a fresh interpreter runs the README's first cell
(``import telnyx_nb``, ``Sandbox().start()``, a Receiver, a dial, ``start_streaming``) and
reports when ``rx.frames`` first has a row (target: within 3 s of the cell's start), with the
time of each step, and ``sdk_import_s``, what importing the telnyx SDK's calls API alone takes
in a fresh interpreter: the notebook's own floor, which the children's start-up runs behind
(``Sandbox().start()`` returns before its child is ready; the capture child boots while the
SDK is imported).

    .venv/bin/python benchmarks/bench_sandbox.py [--calls 200] [--seconds 20] [--fork] [--thread]
    .venv/bin/python benchmarks/bench_sandbox.py --startup [--rounds 5]
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
def run(calls: int, seconds: float, fork: bool, slots: int, process: bool = True) -> dict:
    from telnyx_nb.sandbox import Sandbox, Scenario

    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True)
    try:
        ports = json.loads(sink.stdout.readline())
        port = ports["port"]
        scenario = Scenario.tone(seconds + 15.0 + calls * 0.02, 440.0, outbound_frequency=660.0)
        with Sandbox(scenario=scenario, clock_slots=slots, process=process) as sb:
            cpu_time = _cpu_clock(sb.pid)
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
            wall0, cpu0 = time.monotonic(), cpu_time()
            time.sleep(seconds)
            cpu1, wall1 = cpu_time(), time.monotonic()
            pacing = sb.pacing()
            after = sink_stats(port)
            for ccid in ccids:
                client.calls.actions.hangup(ccid)
        key = "datagrams" if fork else "frames"
        wall = wall1 - wall0
        expected = calls * 2 * wall / 0.020
        return {
            "bench": "sandbox", "calls": calls, "tracks": 2, "path": "fork" if fork else "stream",
            "sandbox": "process" if process else "thread",
            "seconds": round(wall, 2), "clock_slots": slots, "loop": _loop_name(),
            "frames_expected": int(expected), "frames_sent": pacing["n"], "frames_received": after[key] - before[key],
            "pacing_p50_ms": round(pacing["p50_ms"], 3), "pacing_p90_ms": round(pacing["p90_ms"], 3),
            "pacing_p99_ms": round(pacing["p99_ms"], 3), "pacing_max_ms": round(pacing["max_ms"], 3),
            "skipped_ticks": pacing["skipped_ticks"], "clock_late_max_ms": round(pacing["clock_late_max_ms"], 3),
            "sandbox_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
            "sink_cpu_pct": round(100 * (after["cpu_s"] - before["cpu_s"]) / wall, 1),
            "cores": os.cpu_count(),
        }
    finally:
        sink.terminate()
        sink.wait(10)


def _cpu_clock(pid: int | None):
    """CPU seconds of the sandbox: its own process (psutil), or this one's with process=False."""
    if pid is None:
        return time.process_time
    import psutil

    proc = psutil.Process(pid)

    def cpu() -> float:
        times = proc.cpu_times()
        return times.user + times.system
    return cpu


# --- start-up -------------------------------------------------------------------------------
_QUICKSTART = """
import json, time
t0 = time.perf_counter()
import telnyx_nb as tnb
sb = tnb.Sandbox().start()
t_sandbox = time.perf_counter()
rx = tnb.Receiver(public_key=sb.public_key).start()
t_receiver = time.perf_counter()
client = sb.client()
t_client = time.perf_counter()
ccid = client.calls.dial(connection_id=sb.connection_id, to="+15550100", from_="+15550199",
                         webhook_url=rx.webhook_url).data.call_control_id
while sb.call_state(ccid) != "answered":
    time.sleep(0.005)
tnb.start_streaming(client, ccid, rx)
while not len(rx.frames):
    time.sleep(0.005)
t_frame = time.perf_counter()
print(json.dumps({"sandbox_start_s": t_sandbox - t0, "receiver_start_s": t_receiver - t_sandbox,
                  "client_s": t_client - t_receiver, "call_to_frame_s": t_frame - t_client,
                  "first_frame_s": t_frame - t0}))
rx.stop(); sb.stop()
"""

_SDK_IMPORT = "import time; t0 = time.perf_counter(); import telnyx.resources.calls; print(time.perf_counter() - t0)"


def run_startup(rounds: int) -> dict:
    from telnyx_nb.sandbox import Sandbox

    result: dict = {"bench": "sandbox_startup", "rounds": rounds, "cores": os.cpu_count()}
    for mode in ("process", "thread"):
        walls = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            sb = Sandbox(process=mode == "process").start()
            walls.append(time.perf_counter() - t0)
            sb.stop()
        result[f"start_{mode}_s"] = {"min": round(min(walls), 3), "median": round(sorted(walls)[len(walls) // 2], 3),
                                     "max": round(max(walls), 3)}
    sdk = []
    for _ in range(rounds):  # the floor no child can lower: this process imports the telnyx SDK
        out = subprocess.run([sys.executable, "-c", _SDK_IMPORT], capture_output=True, text=True, check=True)
        sdk.append(float(out.stdout))
    result["sdk_import_s"] = {"min": round(min(sdk), 3), "median": round(sorted(sdk)[len(sdk) // 2], 3),
                              "max": round(max(sdk), 3)}
    firsts = []
    for _ in range(rounds):
        out = subprocess.run([sys.executable, "-c", _QUICKSTART], capture_output=True, text=True, check=True)
        firsts.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for key in ("sandbox_start_s", "receiver_start_s", "client_s", "call_to_frame_s", "first_frame_s"):
        values = sorted(f[key] for f in firsts)
        result[f"quickstart_{key}"] = {"min": round(values[0], 3), "median": round(values[len(values) // 2], 3),
                                       "max": round(values[-1], 3)}
    return result


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
    parser.add_argument("--thread", action="store_true", help="run the sandbox on a thread of this process")
    parser.add_argument("--startup", action="store_true", help="measure start-up instead (see the docstring)")
    parser.add_argument("--rounds", type=int, default=5, help="--startup: repetitions")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink()
        return
    if args.startup:
        print(json.dumps(run_startup(args.rounds)))
        return
    print(json.dumps(run(args.calls, args.seconds, args.fork, args.slots, process=not args.thread)))


if __name__ == "__main__":
    main()
