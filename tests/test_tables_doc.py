"""docs/tables.md against the real tables: every documented column, in order, with its dtype.

One short sandbox session fills every table: call A streams both tracks (bidirectional, a
mark echoed), is transcribed and sends a DTMF digit on the stream; call B is forked and sends
an RFC 4733 telephone event; a rogue WebSocket message, an unsigned webhook and a non-RTP
datagram fill the three errors tables. Each section of the document names its DataFrame in
its heading (a backticked expression such as ``rx.events``); its table's rows are
``| `column` | `dtype` | meaning |``, the dtype as pandas prints it (``str(df[col].dtype)``).
The receiver tables and ``quality()`` are also checked on the session saved and loaded back.
"""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import pytest

import telnyx_nb as tnb
from telnyx_nb.sandbox import Scenario
from telnyx_nb.store.schema import TABLES

from waiting import timeout, wait_until

DOC = Path(__file__).resolve().parents[1] / "docs" / "tables.md"
_NAME = re.compile(r"`([^`]+)`")
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*`([^`]+)`\s*\|(.*)\|\s*$")


def documented(text: str) -> dict[str, list[tuple[str, str, str]]]:
    """Section name (the heading's first backticked text) -> its table's (column, dtype, meaning)
    rows; a heading without a name (``## Analytics``) ends the section before it."""
    sections: dict[str, list[tuple[str, str, str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("#"):
            name = _NAME.search(line)
            current = name[1] if name else None
            if current is not None:
                sections[current] = []
        elif current is not None and (row := _ROW.match(line)):
            sections[current].append((row[1], row[2], row[3].strip()))
    return {name: rows for name, rows in sections.items() if rows}


SECTIONS = documented(DOC.read_text(encoding="utf-8"))


def columns(name: str) -> list[tuple[str, str]]:
    """The (column, dtype) pairs section ``name`` documents, in order."""
    return [(column, dtype) for column, dtype, _ in SECTIONS[name]]


#: The receiver tables, named as in the document (``rx.<table>``).
RECEIVER_TABLES = (*TABLES, "sources", "commands")
#: The sections whose DataFrame a saved and loaded session must give the same way.
SESSION_SECTIONS = (*(f"rx.{t}" for t in RECEIVER_TABLES), "rx.quality()", 'rx.quality(by="call")')
_TALK = "tnb.quality.talk_time(rx, ccid, script=sb.script(ccid))"


def _session_tables(s: Any) -> dict[str, Callable[[], pd.DataFrame]]:
    return {**{f"rx.{t}": (lambda t=t: getattr(s, t)) for t in RECEIVER_TABLES},
            "rx.quality()": s.quality, 'rx.quality(by="call")': lambda: s.quality(by="call")}


async def _rogue_message(url: str) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str("not json")


def _call(sb: tnb.Sandbox, rx: tnb.Receiver, client: Any, to: str, scenario: Scenario) -> str:
    sb.route(to, scenario)
    call = tnb.dial(client, rx, connection_id=sb.connection_id, to=to, from_="+15550199", webhook_url=rx.webhook_url)
    ccid: str = call.data.call_control_id
    return ccid


def _started_stream(rx: tnb.Receiver, call_control_id: str) -> str | None:
    streams = rx.streams
    started = streams[(streams["call_control_id"] == call_control_id) & streams["started_at"].notna()]
    return str(started["stream_id"].iloc[0]) if len(started) else None


@dataclass(repr=False)          # a failure's report shows the argument: not every table
class Built:
    """Every DataFrame the document describes, by section name, and ``rx.health()``'s keys."""

    tables: dict[str, pd.DataFrame]
    health: list[str]


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Built:
    # The live receiver captures on a thread (tables built from its store); the loaded session
    # reads the recording, as a receiver with a capture process does: both read paths are checked.
    with tnb.Sandbox(ring_s=0.05, webhook_backoff_s=0.05) as sb, \
            tnb.Receiver(public_key=sb.public_key, process=False) as rx:
        asyncio.run(_rogue_message(rx.stream_url))
        with pytest.raises(urllib.error.HTTPError):          # unsigned: refused, kept in webhook_errors
            urllib.request.urlopen(urllib.request.Request(rx.webhook_url, data=b"{}"), timeout=timeout(5))
        host, port = rx.fork_rx.removeprefix("udp:").rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"not rtp", (host, int(port)))

        client = sb.client()
        streamed = _call(sb, rx, client, "+15550700001", Scenario.tone(
            seconds=3, transcript=[("inbound", 0.2, 1.2, "hello from the sandbox")], dtmf=[(0.6, "4")]))
        forked = _call(sb, rx, client, "+15550700002", Scenario.tone(seconds=3, dtmf=[(0.6, "7")]))
        wait_until(lambda: sb.call_state(streamed) == sb.call_state(forked) == "answered")
        tnb.start_streaming(client, streamed, rx, stream_track="both_tracks", stream_bidirectional_mode="rtp")
        tnb.start_transcription(client, streamed, rx)
        tnb.start_forking(client, forked, rx)
        started = wait_until(lambda: _started_stream(rx, streamed), what="the stream's start frame")
        rx.mark(started, "tables-doc").result(timeout(10))
        wait_until(lambda: sb.call_state(streamed) == sb.call_state(forked) == "ended", timeout=20)
        sb.wait_webhooks(timeout(10))
        wait_until(lambda: (rx.events["event_type"] == "call.hangup").sum() == 2)
        wait_until(lambda: len(rx.stream_errors) and len(rx.rtp_errors) and len(rx.webhook_errors))

        script = sb.script(streamed)
        talk = tnb.quality.talk_time(rx, streamed, script=script)
        saved = tnb.load(rx.save(tmp_path_factory.mktemp("tables-doc") / "session"))
        makers: dict[str, Callable[[], pd.DataFrame]] = {
            **_session_tables(rx),
            "tnb.quality.loss_bursts(rx)": lambda: tnb.quality.loss_bursts(rx),
            "tnb.quality.latency(rx, script=sb.script(ccid))": lambda: tnb.quality.latency(rx, script=script),
            "tnb.quality.reconcile(rx)": lambda: tnb.quality.reconcile(rx),
            f"{_TALK}.summary": lambda: talk.summary,
            f"{_TALK}.segments": lambda: talk.segments,
            f"{_TALK}.utterances": lambda: talk.utterances,
            "sb.ground_truth(ccid, payloads=True)": lambda: sb.ground_truth(streamed, payloads=True),
            "sb.script(ccid)": lambda: script,
        }
        tables = {name: make() for name, make in makers.items()}
        tables.update({f"load(...).{name.removeprefix('rx.')}": make()
                       for name, make in _session_tables(saved).items()})
        health = list(rx.health())
    return Built(tables, health)


def test_the_document_covers_every_receiver_table_and_nothing_unchecked(session):
    names = set(SECTIONS)
    assert {f"rx.{t}" for t in RECEIVER_TABLES} <= names, "a receiver table has no section in docs/tables.md"
    unchecked = names - set(session.tables) - {"rx.health()"}
    assert not unchecked, f"sections of docs/tables.md no test builds: {sorted(unchecked)}"


@pytest.mark.parametrize("name", sorted(set(SECTIONS) - {"rx.health()"}))
def test_documented_columns_and_dtypes(session, name):
    df = session.tables[name]
    assert len(df), f"{name} came back empty: its dtypes would not be those of real rows"
    real = [(str(col), str(dtype)) for col, dtype in df.dtypes.items()]
    assert real == columns(name), f"docs/tables.md, {name}: documented != real (column, dtype)"
    unexplained = [column for column, _, meaning in SECTIONS[name] if not meaning]
    assert not unexplained, f"docs/tables.md, {name}: no meaning given for {unexplained}"


@pytest.mark.parametrize("name", SESSION_SECTIONS)
def test_a_loaded_session_has_the_documented_columns(session, name):
    loaded = session.tables[f"load(...).{name.removeprefix('rx.')}"]
    assert [(str(c), str(d)) for c, d in loaded.dtypes.items()] == columns(name)


def test_health_keys(session):
    assert sorted(session.health) == sorted(key for key, _ in columns("rx.health()"))
