"""What the live widgets cost: receiver CPU per media frame with call panels open vs without,
and the kernel CPU of the panels' live views (their refresh threads).

Two rounds against the sandbox (its own process) and a process-mode Receiver: ``--calls``
calls streaming both tracks (100 frames/s each) for ``--seconds``, first with no widget (the
streams started with ``tnb.start_streaming``), then with a ``tnb.CallPanel`` per call, its
streaming and transcription toggles on. Measured with psutil over the same window in each round:

* ``receiver_cpu_us_per_frame``: CPU of the capture process plus this process's threads
  except the main thread and the panels' refresh threads (the pipe reader and the callback
  worker, which feed the views), per frame received; ``of_which_in_the_kernel_process`` the
  part of this process. With panels, every media frame also travels to this process as a
  live event (``rx.on("*")``); that is the difference between the two rounds.
* ``views_cpu_pct``: CPU of the panels' refresh threads (drawing at most 10 times a second,
  ``fork`` counters from ``rx.quality()`` and ``rx.health()`` once a second), % of one core,
  in total and per panel.

Outside a kernel the widgets' comm messages are not sent (no front end), so the drawing cost
here is building the widget state, not the ZeroMQ send. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time

import psutil

import telnyx_nb as tnb

_numbers = (f"+1555030{n:04d}" for n in itertools.count())


def _thread_cpu(native_ids: set[int]) -> float:
    """CPU seconds of this process's threads with these native ids."""
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in native_ids)


def _process_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _dial(sb, client, rx, n: int) -> list[str]:
    calls = [tnb.dial(client, rx, connection_id=sb.connection_id, to=next(_numbers),
                      from_="+15550199").data.call_control_id for _ in range(n)]
    for ccid in calls:
        rx.wait_for("call.answered", ccid, timeout=10)
    return calls


def _round(sb, client, rx, calls: int, seconds: float, panels: bool) -> dict[str, float]:
    ccids = _dial(sb, client, rx, calls)
    opened = []
    if panels:
        for ccid in ccids:
            panel = tnb.CallPanel(client, rx, ccid)
            panel.toggles["streaming"].value = True
            panel.toggles["transcription"].value = True
            opened.append(panel)
    else:
        for ccid in ccids:
            tnb.start_streaming(client, ccid, rx)
            tnb.start_transcription(client, ccid, rx)
    deadline = time.monotonic() + 10
    while not set(ccids) <= set(rx.streams["call_control_id"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)                                        # streams running at pace
    capture = psutil.Process(rx.health()["capture_pid"])
    me = psutil.Process()
    refreshers = {t.native_id for t in threading.enumerate() if t.name == "telnyx_nb-panel-refresh"}
    main = {threading.main_thread().native_id}
    frames0 = len(rx.frames)
    cap0, me0, views0, main0 = _process_cpu(capture), _process_cpu(me), _thread_cpu(refreshers), _thread_cpu(main)
    time.sleep(seconds)
    cap1, me1, views1, main1 = _process_cpu(capture), _process_cpu(me), _thread_cpu(refreshers), _thread_cpu(main)
    frames = len(rx.frames) - frames0
    for panel in opened:
        panel.close()
    for ccid in ccids:
        sb.hangup(ccid)
    views = views1 - views0
    kernel_side = (me1 - me0) - views - (main1 - main0)
    return {"frames": frames, "receiver_cpu_us_per_frame": 1e6 * (cap1 - cap0 + kernel_side) / max(frames, 1),
            "kernel_side_us_per_frame": 1e6 * kernel_side / max(frames, 1),
            "views_cpu_pct": 100 * views / seconds, "views_cpu_pct_per_panel": 100 * views / seconds / calls
            if panels else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tnb.Sandbox() as sb, tnb.Receiver(public_key=sb.public_key) as rx:
        client = sb.client()
        bare = _round(sb, client, rx, args.calls, args.seconds, panels=False)
        with_panels = _round(sb, client, rx, args.calls, args.seconds, panels=True)
    print(json.dumps({
        "bench": "widgets", "calls": args.calls, "seconds": args.seconds,
        "frames_without_panel": bare["frames"], "frames_with_panel": with_panels["frames"],
        "receiver_cpu_us_per_frame_without_panel": round(bare["receiver_cpu_us_per_frame"], 1),
        "receiver_cpu_us_per_frame_with_panel": round(with_panels["receiver_cpu_us_per_frame"], 1),
        "of_which_in_the_kernel_process_us_without_panel": round(bare["kernel_side_us_per_frame"], 1),
        "of_which_in_the_kernel_process_us_with_panel": round(with_panels["kernel_side_us_per_frame"], 1),
        "views_kernel_cpu_pct": round(with_panels["views_cpu_pct"], 2),
        "views_kernel_cpu_pct_per_panel": round(with_panels["views_cpu_pct_per_panel"], 2),
    }))


if __name__ == "__main__":
    main()
