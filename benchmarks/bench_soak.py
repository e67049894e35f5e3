"""Soak: ``--calls`` concurrent two-track calls for ``--seconds`` into a recording Receiver.

The calls come from ``loadgen.py paced`` in a separate process (real-time pace, 20 ms
frames). Memory (RSS) of the capture process and of this (the notebook's) process is sampled
every ``--sample-s`` seconds; the first sample is taken after ``--warmup-s`` seconds of load.
Flat means the capture's memory does not grow with the data: its store forgets what the
recording holds, and the notebook side keeps rows, not audio. Reports frames sent, stored and
lost, the RSS at the first and last sample and the growth per minute, as the last line (JSON).
The issue's run is ``--calls 50 --seconds 1800``; CI runs ``--seconds 60``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

import telnyx_nb as tnb

LOADGEN = Path(__file__).with_name("loadgen.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--warmup-s", type=float, default=10)
    parser.add_argument("--sample-s", type=float, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, tnb.Receiver(record_to=Path(tmp) / "rec") as rx:
        capture = psutil.Process(rx.health()["capture_pid"])
        notebook = psutil.Process()
        load = subprocess.Popen([sys.executable, str(LOADGEN), "paced", "--url", rx.stream_url, "--calls",
                                 str(args.calls), "--seconds", str(args.seconds), "--times", str(Path(tmp) / "t.npy")],
                                stdout=subprocess.PIPE, text=True)
        started = time.monotonic()
        samples = []
        while load.poll() is None:
            time.sleep(args.sample_s)
            elapsed = time.monotonic() - started
            if elapsed >= args.warmup_s:
                len(rx.frames)                          # the notebook reads, as a user would
                samples.append((elapsed, capture.memory_info().rss, notebook.memory_info().rss))
                print(f"{elapsed:7.0f} s  capture {samples[-1][1] / 1e6:7.1f} MB  "
                      f"notebook {samples[-1][2] / 1e6:7.1f} MB", file=sys.stderr)
        report = json.loads(load.communicate()[0].strip().splitlines()[-1])
        deadline = time.monotonic() + 30
        while len(rx.frames) < report["frames"] and time.monotonic() < deadline:
            time.sleep(0.2)
        stored = len(rx.frames)
        health = rx.health()
    if len(samples) < 2:
        raise SystemExit("run longer than --warmup-s + 2 * --sample-s to get two memory samples")
    (t0, cap0, nb0), (t1, cap1, nb1) = samples[0], samples[-1]
    minutes = (t1 - t0) / 60
    print(json.dumps({
        "benchmark": "soak", "calls": args.calls, "seconds": args.seconds,
        "frames_sent": report["frames"], "frames_stored": stored, "lost": report["frames"] - stored,
        "capture_rss_mb": [round(cap0 / 1e6, 1), round(cap1 / 1e6, 1)],
        "capture_growth_mb_per_min": round((cap1 - cap0) / 1e6 / minutes, 2),
        "notebook_rss_mb": [round(nb0 / 1e6, 1), round(nb1 / 1e6, 1)],
        "notebook_growth_mb_per_min": round((nb1 - nb0) / 1e6 / minutes, 2),
        "recording_flushes": health["recording_flushes"], "recording_error": health["recording_error"],
    }))


if __name__ == "__main__":
    main()
