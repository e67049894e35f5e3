"""Call timing on this machine: every ``tnb.quality.latency`` stage against the sandbox, in ms.

``--calls`` sandbox calls (the sandbox in its own process, like real Telnyx), one after the
other, each: dialled, answered, transcribed with interim results, streamed (both tracks,
bidirectional ``rtp``) with 0.2 s of audio and a ``mark`` sent back, then forked; the Receiver
captures in a child process (``--capture process``, the default) or on a thread of this
process (``--capture thread``). The sandbox's word timing (``sb.script``) gives the audio time
of each transcript, so transcription lag is measured from the end of the last word it reports.

Per stage (and per detail where it names a command, a track, a target or interim/final): n, median, p90
and max in ms, over all calls; plus how long ``latency()`` itself took on the finished session.
The sandbox sends a transcript at the 20 ms tick after its last word and echoes a mark at the
tick after the audio before it has played, so those two stages are bounded below by its
clock, not by the network. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

import telnyx_nb as tnb
from telnyx_nb.sandbox import Scenario

SCENARIO = Scenario.tone(4.0, transcript=[("inbound", 0.6, 1.2, "hello there friend"),
                                          ("inbound", 1.4, 2.0, "good bye")])
#: Stages whose ``detail`` is worth keeping apart (a command, a track, a target, interim/final).
BY_DETAIL = ("rest_answer", "first_media", "first_rtp", "transcription_lag")


def one_call(sb: tnb.Sandbox, client, rx: tnb.Receiver, to: str) -> tuple[str, pd.DataFrame]:
    ccid = tnb.dial(client, rx, connection_id=sb.connection_id, to=to, from_="+15550199").data.call_control_id
    rx.wait_for("call.answered", ccid)
    tnb.start_transcription(client, ccid, rx, transcription_engine_config={
        "transcription_engine": "Google", "interim_results": True})
    tnb.start_streaming(client, ccid, rx, stream_bidirectional_mode="rtp")
    stream_id = None
    while stream_id is None:
        streams = rx.streams
        started = streams[(streams.call_control_id == ccid) & streams.started_at.notna()]
        stream_id = started.stream_id.iloc[0] if len(started) else None
        time.sleep(0.01)
    rx.send_audio(stream_id, np.zeros(1600, np.int16), 8000)
    rx.mark(stream_id, "after-audio").result(10)
    while not (rx.marks.stream_id == stream_id).any():          # a fork would stop the stream before the echo
        time.sleep(0.01)
    tnb.start_forking(client, ccid, rx)
    rx.wait_for("call.hangup", ccid, timeout=30)
    return ccid, sb.script(ccid)


def summarise(lat: pd.DataFrame) -> dict[str, dict[str, float]]:
    lat = lat.dropna(subset=["seconds"])
    key = np.where(lat["stage"].astype(str).isin(BY_DETAIL), lat["stage"].astype(str) + ":" + lat["detail"].astype(str),
                   lat["stage"].astype(str))
    out = {}
    for name, ms in (lat["seconds"] * 1e3).groupby(key):
        out[str(name)] = {"n": len(ms), "median_ms": round(float(ms.median()), 3),
                          "p90_ms": round(float(ms.quantile(0.9)), 3), "max_ms": round(float(ms.max()), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--capture", choices=("process", "thread"), default="process")
    args = parser.parse_args()
    with tnb.Sandbox() as sb, tnb.Receiver(public_key=sb.public_key, process=args.capture == "process") as rx:
        client = sb.client()
        sb.route("+15550150", SCENARIO)
        scripts = [one_call(sb, client, rx, "+15550150")[1] for _ in range(args.calls)]
        sb.wait_webhooks()
        time.sleep(0.5)                           # the last webhooks reach the tables
        t0 = time.perf_counter()
        lat = tnb.quality.latency(rx, script=pd.concat(scripts, ignore_index=True))
        compute_ms = (time.perf_counter() - t0) * 1e3
    stages = summarise(lat)
    for name, s in stages.items():
        print(f"{name:32s} n={s['n']:3d} median {s['median_ms']:9.3f} ms  p90 {s['p90_ms']:9.3f}  "
              f"max {s['max_ms']:9.3f}")
    print(json.dumps({"benchmark": "latency", "capture": args.capture, "calls": args.calls, "stages": stages,
                      "latency_compute_ms": round(compute_ms, 1)}))


if __name__ == "__main__":
    main()
