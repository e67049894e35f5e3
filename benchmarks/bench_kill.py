"""What a crash costs: seconds of media sent before a SIGKILL that the recording does not hold.

``--calls`` two-track calls stream at real-time pace (``loadgen.py paced``) into a Receiver
recording to a directory; after ``--before-s`` seconds the capture process is killed with
SIGKILL (``--kill capture``) or the notebook-side process that owns it is (``--kill
notebook``; the capture then finishes the recording by itself). The recording is loaded and
compared with what was sent before the kill. Target: at most 1 s of media lost (the flush
interval). The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

import telnyx_nb as tnb

LOADGEN = Path(__file__).with_name("loadgen.py")
NOTEBOOK = textwrap.dedent("""
    import json, sys, time
    import telnyx_nb as tnb
    rx = tnb.Receiver(record_to=sys.argv[1]).start()
    print(json.dumps({"stream_url": rx.stream_url, "capture_pid": rx.health()["capture_pid"]}), flush=True)
    time.sleep(3600)
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--before-s", type=float, default=5.0)
    parser.add_argument("--kill", choices=["capture", "notebook"], default="capture")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec"
        notebook = subprocess.Popen([sys.executable, "-c", NOTEBOOK, str(path)], stdout=subprocess.PIPE, text=True)
        assert notebook.stdout is not None
        info = json.loads(notebook.stdout.readline())
        times = Path(tmp) / "sent.npy"
        load = subprocess.Popen([sys.executable, str(LOADGEN), "paced", "--url", info["stream_url"], "--calls",
                                 str(args.calls), "--seconds", str(args.before_s + 3), "--times", str(times)],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(args.before_s)
        killed_ns = time.time_ns()
        os.kill(info["capture_pid"] if args.kill == "capture" else notebook.pid, signal.SIGKILL)
        load.communicate(timeout=60)
        if args.kill == "notebook":
            deadline = time.monotonic() + 15            # the capture finishes the recording, then exits
            while time.monotonic() < deadline:
                try:
                    os.kill(info["capture_pid"], 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        notebook.kill()
        notebook.wait()
        sent = np.load(times)                           # per group of calls: send time of each chunk, ns
        groups = sent.shape[0]
        sent_before = int(sum(((sent[g] > 0) & (sent[g] < killed_ns)).sum() * len(range(g, args.calls, groups))
                              for g in range(groups))) * 2            # both tracks
        recorded = len(tnb.load(path).frames)
    frames_per_second = 100 * args.calls                # 2 tracks x 50 frames/s per call
    print(json.dumps({
        "benchmark": "kill", "kill": args.kill, "calls": args.calls, "before_s": args.before_s,
        "frames_sent_before_kill": sent_before, "frames_recorded": recorded,
        "media_lost_s": round(max(0, sent_before - recorded) / frames_per_second, 3),
    }))


if __name__ == "__main__":
    main()
