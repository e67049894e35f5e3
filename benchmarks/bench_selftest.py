"""``rx.selftest()`` round trip on loopback, against the same request to a bare aiohttp server.

``--n`` self-tests (after 5 warm-up ones) against a Receiver capturing in a child process
(``--capture process``, the default) or on a thread of this process (``--capture thread``),
and the same urllib GET against a bare aiohttp server on a thread of this process that answers
the same JSON: what the receiver's route adds to the request (its middleware, the capture's
loop) and what urllib itself costs. Round trips are request sent to answer read, in ms. The
last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
import warnings

import numpy as np
from aiohttp import web

import telnyx_nb as tnb
from telnyx_nb.loopthread import LoopThread
from telnyx_nb.wire import selftest

WARM_UP = 5


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(ms), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "max_ms": round(max(ms), 3)}


def receiver_round_trips(n: int, process: bool) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # no public_key: fine on loopback
        rx = tnb.Receiver(process=process).start()
    try:
        results = [rx.selftest() for _ in range(WARM_UP + n)][WARM_UP:]
    finally:
        rx.stop()
    if not all(r.reachable for r in results):
        raise RuntimeError(f"a self-test failed: {next(r for r in results if not r.reachable)}")
    return [r.round_trip_ms for r in results]


def bare_round_trips(n: int) -> list[float]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(selftest.answer(request.query["nonce"], time.time_ns(), 0))

    io = LoopThread("bench-bare", kind="asyncio")
    io.start()
    app = web.Application()
    app.router.add_get(selftest.PATH, answer)
    runner = web.AppRunner(app, access_log=None)
    io.run(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    io.run(site.start())
    port = runner.addresses[0][1]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    out = []
    try:
        for k in range(WARM_UP + n):
            t0 = time.perf_counter()
            with opener.open(f"http://127.0.0.1:{port}{selftest.PATH}?nonce=n{k}", timeout=5) as reply:
                reply.read()
            out.append((time.perf_counter() - t0) * 1e3)
    finally:
        io.run(runner.cleanup())
        io.stop(5)
    return out[WARM_UP:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--capture", choices=("process", "thread"), default="process")
    args = parser.parse_args()
    receiver = summary(receiver_round_trips(args.n, args.capture == "process"))
    bare = summary(bare_round_trips(args.n))
    print(f"rx.selftest ({args.capture}): p50 {receiver['p50_ms']:.3f} ms  p99 {receiver['p99_ms']:.3f} ms")
    print(f"bare aiohttp + urllib:       p50 {bare['p50_ms']:.3f} ms  p99 {bare['p99_ms']:.3f} ms")
    print(json.dumps({"benchmark": "selftest", "capture": args.capture, "n": args.n, "selftest": receiver,
                      "bare_aiohttp": bare, "p50_ratio": round(receiver["p50_ms"] / bare["p50_ms"], 2)}))


if __name__ == "__main__":
    main()
