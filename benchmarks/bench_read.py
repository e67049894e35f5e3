"""The read path on a long recording: ``load()``, ``frames``, ``audio()``, ``quality()`` and ``save()``.

For each length in ``--hours`` (default 1 and 10) a recording of one two-track call is written
the way the capture process writes it: a :class:`~telnyx_nb.store.Store` fed through its
``add_frame`` hot path (PCMU, 20 ms frames, 100 frames per second of call) and a
:class:`~telnyx_nb.store.recording.Recorder` that flushes once per second of call and forgets
what it wrote (``forget_flushed``, as the capture does): one segment per table per second,
payload bytes in ``payloads/``. It is written as fast as the machine goes, not in real time.
One hour is 360,000 frames in 3,600 flushes, merged by the recorder into 57 files
(``recording.COMPACT_PARTS``; 3,600 files before recording version 3).

Each operation is timed against a baseline, "the bare work over the same data" (numpy/pyarrow
with nothing of ours), in the same run, interleaved, median of ``--repeats``:

- ``load``: ``tnb.load(path)`` vs ``pq.read_table(path / "frames")``: pyarrow reading the
  frames segments (the bulk of the recording) as one dataset into one Arrow table.
- ``frames``: ``session.frames`` vs building a DataFrame of the stored columns:
  ``pd.DataFrame`` of every field of the stored ``FRAME_DTYPE`` rows (a copy of each column).
  ``frames_first``: the same on a session just loaded (its first read decodes the packed rows,
  which later reads reuse: ``Store._frame_fields``); the loading is not timed.
- ``audio``: ``session.audio(ccid)`` (inbound track, half the frames) vs reading that track's
  payload file and decoding it with the mu-law lookup table (``np.take``, the fastest numpy
  lookup: indexing the table with the bytes takes about twice as long).
- ``quality``: ``session.quality()`` on a session just loaded (the figure a user sees on the
  first call: codec-mismatch scan included; the loading is not timed) vs RFC 3550 counting over
  the stored columns per track: ``np.unique`` of the chunks by sorting (``return_index``: the
  fastest path in numpy 2 for this, as ``quality()`` uses) (expected/lost/duplicates), late
  arrivals from a running maximum, the longest arrival gap and the A.8 jitter as
  ``Series.ewm(alpha=1/16, adjust=False)``. ``quality_warm``: called again on the same session
  (its codec-mismatch scans are remembered), same baseline.
- ``save``: ``session.save(dir)`` vs ``pq.write_table`` of the stored frame columns plus a copy
  of the payload files.
- ``refresh``: a :class:`~telnyx_nb.store.recording.Follower` refreshing a recording it has
  read already (what each live read does when nothing new came); no baseline, it must not grow
  with the recording.

Targets (issue 11): ratio <= 2 for ``frames``, ``quality`` and ``load``, <= 3 for ``audio``, and
cost linear in rows: ``ratios`` gives each length's ratios side by side; ``linearity`` is
(time at the longest / time at the shortest) divided by the length ratio, ~1 when linear (for
``refresh``, which must not grow, ~1 / the length ratio or less).
Run: ``python benchmarks/bench_read.py [--hours 1 10]``; progress goes to stderr, the last line
printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import telnyx_nb as tnb
from telnyx_nb.session import Session
from telnyx_nb.store import Store, recording
from telnyx_nb.store.schema import FRAME_DTYPE
from telnyx_nb.wire import codecs
from telnyx_nb.wire.media import MediaFormat, Start

CCID = "v3:bench-read-call"
T0 = 1_767_225_600_000_000_000          # 2026-01-01T00:00:00Z
FRAME_NS = 20_000_000
FRAMES_PER_S = 50                       # per track
#: G.711 mu-law: each byte's int16 sample.
ULAW_TABLE = codecs.ulaw_decode(bytes(range(256)))


def write_recording(path: Path, hours: float) -> None:
    """One two-track PCMU call of ``hours``, written as the capture process writes it."""
    store = Store()
    recorder = recording.Recorder(store, path, l16_byteorder="big", clocks=lambda: {}, forget_flushed=True)
    info = store.start_stream(Start("bench-stream", 1, CCID, MediaFormat("PCMU", 8000)), T0, T0, True)
    rng = np.random.default_rng(1)
    payloads = [rng.integers(0, 256, 160, dtype=np.uint8).tobytes() for _ in range(64)]
    add = store.add_frame
    for second in range(int(hours * 3600)):
        for k in range(FRAMES_PER_S):
            chunk = second * FRAMES_PER_S + k + 1
            ns = T0 + chunk * FRAME_NS
            payload = payloads[chunk % 64]
            add(info, "inbound", 2 * chunk, chunk, (chunk - 1) * 20, payload, ns + 1_000_000)
            add(info, "outbound", 2 * chunk + 1, chunk, (chunk - 1) * 20, payload, ns + 1_500_000)
        recorder.flush()
    recorder.close(1.0)


# -- baselines: the bare numpy/pyarrow work over the same data ------------------------------------

def bare_load(path: Path) -> object:
    return pq.read_table(path / "frames")


def bare_frames(rows: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({name: rows[name] for name in FRAME_DTYPE.names or ()})


def bare_audio(path: Path) -> np.ndarray:
    return np.take(ULAW_TABLE, np.frombuffer((path / "payloads" / "frames-0.bin").read_bytes(), dtype=np.uint8))


def bare_quality(rows: np.ndarray) -> list[tuple[float, ...]]:
    out: list[tuple[float, ...]] = []
    for track in (0, 1):
        mine = rows[rows["track"] == track]
        chunk, arrival = mine["chunk"], mine["received_ns"]
        unique = np.unique(chunk, return_index=True)[0]   # the sorting path (numpy 2's hash path is far slower here)
        expected = int(unique[-1] - unique[0] + 1)
        late = int((chunk[1:] < np.maximum.accumulate(chunk)[:-1]).sum())
        gap = int(np.diff(arrival).max())
        transit = (arrival - T0) / 1e9 - (chunk - 1) * 0.02
        jitter = pd.Series(np.abs(np.diff(transit))).ewm(alpha=1 / 16, adjust=False).mean().iloc[-1]
        out.append((expected, expected - len(unique), len(chunk) - len(unique), late, gap, jitter))
    return out


def bare_save(rows: np.ndarray, path: Path, out: Path) -> None:
    out.mkdir()
    pq.write_table(pa.table({name: rows[name] for name in FRAME_DTYPE.names or ()}), out / "frames.parquet")
    shutil.copytree(path / "payloads", out / "payloads")


# -- timing -------------------------------------------------------------------------------------

def timed(work: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def measure(path: Path, repeats: int, scratch: Path) -> dict[str, dict[str, float]]:
    session = tnb.load(path)
    store, _ = recording.read(path)
    rows = np.frombuffer(bytes(store.frames), dtype=FRAME_DTYPE)
    assert len(rows) == len(session.frames)
    follower = recording.Follower(path, Store())
    follower.refresh()
    saves = iter(range(10 * repeats))

    def ours_save(of: Session) -> None:
        of.save(scratch / f"ours-{next(saves)}")

    def their_save() -> None:
        bare_save(rows, path, scratch / f"bare-{next(saves)}")

    session.quality()
    #: name -> (ours, over a session, the bare work, whether ours gets a session just loaded)
    pairs: dict[str, tuple[Callable[[Session], object], Callable[[], object] | None, bool]] = {
        "load": (lambda _: tnb.load(path), lambda: bare_load(path), False),
        "frames": (lambda of: of.frames, lambda: bare_frames(rows), False),
        "frames_first": (lambda of: of.frames, lambda: bare_frames(rows), True),
        "audio": (lambda of: of.audio(CCID), lambda: bare_audio(path), False),
        "quality": (lambda of: of.quality(), lambda: bare_quality(rows), True),
        "quality_warm": (lambda of: of.quality(), lambda: bare_quality(rows), False),
        "save": (ours_save, their_save, False),
        "refresh": (lambda _: follower.refresh(), None, False),
    }
    results = {}
    for name, (ours, bare, fresh) in pairs.items():
        ours_s, bare_s = [], []
        for _ in range(repeats):
            of = tnb.load(path) if fresh else session
            ours_s.append(timed(partial(ours, of)))
            if bare is not None:
                bare_s.append(timed(bare))
        entry = {"ms": round(statistics.median(ours_s) * 1e3, 2)}
        if bare_s:
            entry["baseline_ms"] = round(statistics.median(bare_s) * 1e3, 2)
            entry["ratio"] = round(entry["ms"] / entry["baseline_ms"], 2)
        results[name] = entry
        print(name, entry, file=sys.stderr, flush=True)
        for leftover in scratch.iterdir():
            shutil.rmtree(leftover)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="write the recordings to DIR/rec-<hours>h and keep them; reuse those already there "
                             "(10 h takes minutes to write)")
    args = parser.parse_args()
    runs: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_read-") as tmp:
        for hours in args.hours:
            path = (args.keep or Path(tmp)) / f"rec-{hours:g}h"
            if not (args.keep and recording.is_recording(path)
                    and json.loads((path / "manifest.json").read_bytes()).get("finished")):
                t0 = time.perf_counter()
                write_recording(path, hours)
                print(f"{hours:g} h written in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            scratch = Path(tmp) / "scratch"
            scratch.mkdir()
            runs[f"{hours:g}h"] = measure(path, args.repeats, scratch)
            if not args.keep:
                shutil.rmtree(path)
            shutil.rmtree(scratch)
    short, long = min(args.hours), max(args.hours)
    ratios = {length: {name: entry["ratio"] for name, entry in run.items() if "ratio" in entry}
              for length, run in runs.items()}
    linearity = {}
    if long > short:
        a, b = runs[f"{short:g}h"], runs[f"{long:g}h"]
        linearity = {name: round(b[name]["ms"] / a[name]["ms"] / (long / short), 2) for name in a}
    print(json.dumps({"benchmark": "read", "repeats": args.repeats, "frames_per_hour": 3600 * 2 * FRAMES_PER_S,
                      "ratios": ratios, "runs": runs, "linearity": linearity}))


if __name__ == "__main__":
    main()
