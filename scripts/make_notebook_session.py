#!/usr/bin/env python3
"""Record the small, redacted session that ``notebooks/07-saved-sessions.ipynb`` ships with.

One short sandbox call, driven through the real ``telnyx`` SDK and the package's helpers into a
Receiver, then saved with ``rx.save(OUT, redact=True)``:

1. the "survey" scenario is dialled and answered;
2. transcription of both tracks with interim results runs for the whole call;
3. a WebSocket stream of both tracks runs for ``--stream-s`` seconds (default 3 s), then stops;
4. an RTP fork of both directions runs for ``--fork-s`` seconds (default 2 s) with ``--loss``
   (default 5 %) of the packets dropped by the sandbox under a fixed seed, then stops;
5. transcription stops, the call is hung up, and the session is saved.

Redaction (``telnyx_nb/store/redact.py``) replaces every phone number (``from``/``to`` values and
any E.164 number) by a salted token; the stream's auth token never reaches a saved session
(``rx.commands`` masks it). The script then checks the copy: it loads with ``tnb.load`` (no
sandbox), says ``redacted``, and no file of it contains the dialled numbers, the sandbox's API
key or the stream auth token; it prints the size of the directory.

Deterministic enough: the same scenario, the same action lengths and the same impairment seed
give the same tables up to arrival times, ids (drawn at random by the sandbox, as Telnyx's are)
and the media around each start and stop: four runs had 308-324 frames, 194-211 forked packets,
11-12 transcripts, a loss-free stream, 3.8-4.9 % fork loss and 125-131 kB. Regenerate with::

    .venv/bin/python scripts/make_notebook_session.py          # writes notebooks/data/survey-call

It replaces an earlier copy at ``OUT`` (only a telnyx_nb session or recording is ever removed).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import telnyx_nb as tnb

OUT = Path(__file__).resolve().parent.parent / "notebooks" / "data" / "survey-call"
SCENARIO = "survey"
TO, FROM_ = "+15550100", "+15550199"
SEED = 7
#: An E.164 number, as ``telnyx_nb.store.redact`` finds them.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def record(out: Path, stream_s: float, fork_s: float, loss: float) -> Path:
    """Run the call of the module docstring and save it, redacted, to ``out``; return ``out``."""
    with tnb.Sandbox() as sb, tnb.Receiver(public_key=sb.public_key) as rx:
        client = sb.client()
        sb.route(TO, SCENARIO)
        ccid = tnb.dial(client, rx, connection_id=sb.connection_id, to=TO, from_=FROM_).data.call_control_id
        rx.wait_for("call.answered", ccid)
        tnb.start_transcription(client, ccid, rx, transcription_tracks="both",
                                transcription_engine_config={"transcription_engine": "Google", "language": "en",
                                                             "interim_results": True})
        tnb.start_streaming(client, ccid, rx, stream_track="both_tracks")
        rx.wait_for("streaming.started", ccid)
        time.sleep(stream_s)
        tnb.stop_streaming(client, ccid, rx)
        rx.wait_for("streaming.stopped", ccid)
        sb.impair(ccid, loss=loss, seed=SEED)
        tnb.start_forking(client, ccid, rx)
        rx.wait_for("call.fork.started", ccid)
        time.sleep(fork_s)
        tnb.stop_forking(client, ccid, rx)
        rx.wait_for("call.fork.stopped", ccid)
        tnb.stop_transcription(client, ccid, rx)
        tnb.hangup(client, ccid, rx)
        rx.wait_for("call.hangup", ccid)
        secrets = [TO, FROM_, sb.api_key, rx.stream_auth_token or ""]
        path = rx.save(out, overwrite=True, redact=True)
    check(path, [s for s in secrets if s])
    return path


def texts(path: Path) -> dict[Path, str]:
    """Every text of the session at ``path``: its JSON files, and each Parquet file's string values
    (read with pyarrow, as Parquet pages are compressed), one file -> one string."""
    found = {file: file.read_text() for file in path.rglob("*.json")}
    for file in path.rglob("*.parquet"):
        table = pq.read_table(file)
        found[file] = "\n".join(str(value) for column in table.columns if pa.types.is_string(column.type)
                                for value in column.to_pylist())
    return found


def check(path: Path, secrets: list[str]) -> None:
    """Raise AssertionError unless ``path`` loads without a sandbox, is redacted, holds media and
    transcripts, and no text of it (``texts``) contains one of ``secrets`` or any E.164 number."""
    session = tnb.load(path)
    assert session.redacted, f"{path} is not redacted"
    assert len(session.frames) and len(session.rtp) and len(session.transcripts), repr(session)
    for file, text in texts(path).items():
        leaked = [s for s in secrets if s in text]
        assert not leaked and not E164.search(text), f"{file} still holds a phone number or a secret"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"session directory (default {OUT})")
    parser.add_argument("--stream-s", type=float, default=3.0, help="seconds of WebSocket stream (both tracks)")
    parser.add_argument("--fork-s", type=float, default=2.0, help="seconds of RTP fork (both directions)")
    parser.add_argument("--loss", type=float, default=0.05, help="share of forked packets the sandbox drops")
    args = parser.parse_args()
    path = record(args.out, args.stream_s, args.fork_s, args.loss)
    files = [f for f in path.rglob("*") if f.is_file()]
    size = sum(f.stat().st_size for f in files)
    print(f"saved {path}: {len(files)} files, {size / 1000:.0f} kB; {tnb.load(path)!r}")


if __name__ == "__main__":
    main()
