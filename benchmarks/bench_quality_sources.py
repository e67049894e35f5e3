"""``quality()`` on the same number of rows split over few or many tracks: its cost per row
should not grow with the number of stream tracks or forked RTP sources.

For each split in ``--sources`` (default 10, 100, 1000), a store is filled with ``--rows``
rows (default 100,000) of PCMU in 20 ms packets, interleaved as they arrive from concurrent
calls: forked RTP, one SSRC per source (half on rx, half on tx), or WebSocket streams, one
inbound track each. ``first`` is the first ``quality()`` on the session (with the
codec-mismatch scan of every source), ``warm`` a second call (scans remembered); medians of
``--repeats`` fresh sessions, in ms. 500 concurrent two-track calls are 1,000 sources. The last
line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from telnyx_nb.session import StoreSession
from telnyx_nb.store import Store
from telnyx_nb.wire import media, rtp

T0 = 1_767_225_600_000_000_000
FRAME_NS = 20_000_000


def payloads() -> list[bytes]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, 160, dtype=np.uint8).tobytes() for _ in range(8)]


def fork_store(sources: int, per_source: int) -> Store:
    store, audio = Store(), payloads()
    for k in range(per_source):
        for source in range(sources):
            packet = rtp.build_rtp(rtp.RtpPacket(0, k, 160 * k, 1000 + source, audio[k % 8]))
            store.add_packet("rx" if source % 2 else "tx", rtp.parse_fork_packet(packet),
                             T0 + k * FRAME_NS + source, ("127.0.0.1", 4000 + source))
    return store


def stream_store(sources: int, per_source: int) -> Store:
    store, audio = Store(), payloads()
    streams = [store.start_stream(media.Start(f"stream-{s}", 1, f"v3:call-{s}", media.MediaFormat("PCMU", 8000)),
                                  T0, T0, True) for s in range(sources)]
    for chunk in range(1, per_source + 1):
        for s, info in enumerate(streams):
            store.add_frame(info, "inbound", chunk + 1, chunk, chunk * 20, audio[chunk % 8], T0 + chunk * FRAME_NS + s)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sources", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, dict[str, dict[str, float]]] = {}
    for kind, build in (("fork", fork_store), ("stream", stream_store)):
        runs[kind] = {}
        for sources in args.sources:
            first, warm = [], []
            for _ in range(args.repeats):
                session = StoreSession(build(sources, args.rows // sources))
                t0 = time.perf_counter()
                session.quality()
                t1 = time.perf_counter()
                session.quality()
                first.append(t1 - t0)
                warm.append(time.perf_counter() - t1)
            runs[kind][str(sources)] = {"first_ms": round(statistics.median(first) * 1e3, 1),
                                        "warm_ms": round(statistics.median(warm) * 1e3, 1)}
            print(kind, sources, runs[kind][str(sources)], file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "quality_sources", "rows": args.rows, "repeats": args.repeats, "runs": runs}))


if __name__ == "__main__":
    main()
