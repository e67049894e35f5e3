"""Timing the notebook cannot distort: stream and fork jitter/gaps while the notebook works.

Two clean sandbox calls at a time (the sandbox in its own process, like real Telnyx), one
streaming both tracks over a WebSocket, one forking its RTP, measured by a Receiver whose capture runs
in a child process (``--capture process``, the default) or on a thread of this process
(``--capture thread``, the old model), while this process's main thread:

- ``idle``: sleeps;
- ``python``: runs a pure-Python loop (the interpreter lock changes hands every 5 ms);
- ``c_calls``: runs back-to-back C calls that hold the interpreter lock ~0.5 s each
  (``sum(range(N))``, as many pandas and numpy operations do);
- ``reads``: re-reads ``rx.frames``/``rx.rtp``/``rx.quality()`` in a loop.

Per load and path: RFC 3550 jitter (ms), the longest arrival gap (ms) and the lost count from
``rx.quality()``. Targets (issue "A capture process"): jitter under load <= 1.5 x idle +
0.2 ms, longest gap <= idle + 5 ms, zero loss. Run both ``--capture`` values to compare the
two models. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import telnyx_nb as tnb
from telnyx_nb.sandbox import Scenario

LOADS = ("idle", "python", "c_calls", "reads")


def _c_call_size() -> int:
    """N such that ``sum(range(N))`` takes ~0.5 s here."""
    n = 1_000_000
    t0 = time.perf_counter()
    sum(range(n))
    return int(n * 0.5 / max(time.perf_counter() - t0, 1e-6))


def work(load: str, rx: tnb.Receiver, seconds: float, c_size: int) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if load == "idle":
            time.sleep(0.05)
        elif load == "python":
            x = 0
            for i in range(200_000):
                x += i * i
        elif load == "c_calls":
            sum(range(c_size))
        else:
            rx.frames, rx.rtp, rx.quality()


def two_calls(sb: tnb.Sandbox, rx: tnb.Receiver, load: str, seconds: float, c_size: int) -> dict[str, dict]:
    """A streamed call and a forked call (Telnyx allows one of the two per call), under ``load``."""
    client = sb.client()
    calls = {source: client.calls.dial(connection_id=sb.connection_id, to="+15550100", from_="+15550199",
                                       webhook_url=rx.webhook_url).data.call_control_id
             for source in ("stream", "fork")}

    def seen(event_type: str, ccid: str) -> bool:
        events = rx.events
        return bool(((events["event_type"] == event_type) & (events["call_control_id"] == ccid)).any())

    def wait(event_type: str) -> None:
        deadline = time.monotonic() + 10
        while not all(seen(event_type, ccid) for ccid in calls.values()) and time.monotonic() < deadline:
            time.sleep(0.02)

    wait("call.answered")
    tnb.start_streaming(client, calls["stream"], rx)
    tnb.start_forking(client, calls["fork"], rx)
    time.sleep(0.5)                                  # let both media paths start before the load does
    work(load, rx, seconds, c_size)
    for ccid in calls.values():
        client.calls.actions.hangup(ccid)
    wait("call.hangup")
    quality = rx.quality()
    result = {}
    for source, ccid in calls.items():
        rows = quality[(quality["call_control_id"] == ccid) & (quality["source"] == source)]
        result[source] = {"jitter_ms": round(float(rows["jitter_ms"].max()), 3),
                          "max_gap_ms": round(float(rows["max_gap_ms"].max()), 1),
                          "lost": int(rows["lost"].sum()), "packets": int(rows["packets"].sum())}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", default="process", choices=["process", "thread"])
    parser.add_argument("--seconds", type=float, default=6.0, help="load time per call")
    args = parser.parse_args()
    c_size = _c_call_size()
    results: dict[str, dict] = {}
    with tnb.Sandbox(scenario=Scenario.silence(args.seconds + 30), ring_s=0.05) as sb, \
            tnb.Receiver(public_key=sb.public_key, process=args.capture == "process") as rx:
        for load in LOADS:
            results[load] = two_calls(sb, rx, load, args.seconds, c_size)
            print(load, results[load], file=sys.stderr)
    idle = results["idle"]
    verdict = {
        f"{load}_{source}_ok": (r[source]["jitter_ms"] <= 1.5 * idle[source]["jitter_ms"] + 0.2
                                and r[source]["max_gap_ms"] <= idle[source]["max_gap_ms"] + 5
                                and r[source]["lost"] == 0)
        for load, r in results.items() for source in ("stream", "fork")
    }
    print(json.dumps({"benchmark": "timing", "capture": args.capture, "seconds": args.seconds,
                      "c_call_n": c_size, "results": results, **verdict}))


if __name__ == "__main__":
    main()
