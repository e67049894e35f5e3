"""How long each step of a call's media took: from a command to what it caused, and delivery lags.

:func:`latency` (``tnb.quality.latency``) reads a Receiver's or a loaded session's tables —
``commands`` (what the ``telnyx_nb`` helpers sent, when, and when Telnyx answered), ``events``,
``streams``, ``frames``, ``rtp``, ``transcripts`` and ``marks`` — and measures every interval it
can as one row: a tidy table to filter, group (``groupby(["call_control_id", "stage"])``) and plot.
Stages are timed from recorded commands, so a stream or fork started by other code has none.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from telnyx_nb.labels import category
from telnyx_nb.talk import Tables, require_tables, script_times

__all__ = ["latency", "STAGES", "COLUMNS"]

#: Values of the ``stage`` column (its categories, in this order).
STAGES = ("rest_answer", "ws_connected", "streaming.started", "ws_start", "first_media", "call.fork.started",
          "first_rtp", "webhook_lag", "transcription_lag", "mark_echo")
#: Columns of latency(), in order.
COLUMNS = ["call_control_id", "stage", "command", "detail", "stream_id", "since", "until", "seconds"]
#: Commands that can ask for a media stream (with a ``stream_url``).
_STREAM_COMMANDS = ("dial", "answer", "streaming_start")
_MEDIA_TRACKS = {"inbound_track": ("inbound",), "outbound_track": ("outbound",), "both_tracks": ("inbound", "outbound")}
_FORK_TARGETS = ("rx", "tx")


def latency(rx_or_session: Tables, call_control_id: str | None = None, *,
            script: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every measured interval of each call, one row each (tidy), in seconds.

    Columns: ``call_control_id``, ``stage``, ``command`` (the command the stage is timed from;
    null for the lags), ``detail``, ``stream_id`` (stream stages), ``since`` and ``until`` (the
    interval's two instants, ``datetime64[ns, UTC]``), ``seconds`` (float64, ``until - since``; NaN
    when either is unknown: a stage that has not happened, or no script). Label and id columns
    are ``category``. Stages (``STAGES``):

    - ``rest_answer``: each command's REST round trip (``sent_at`` → ``answered_at``),
      ``detail`` and ``command`` the command.
    - From each command that asked for a media stream (``dial``/``answer`` with
      ``stream_url``, ``streaming_start``; not refused), to the stream that followed it:
      ``ws_connected`` (the WebSocket opened: ``streams.connected_at``), ``streaming.started``
      (that webhook's arrival), ``ws_start`` (the ``start`` frame), ``first_media`` (the first
      media frame of each track the command asked for; ``detail`` the track). Telnyx sends the
      webhook and the socket's frames independently: each is timed on its own, no order assumed.
    - From each ``fork_start``: ``call.fork.started`` (the webhook's arrival) and
      ``first_rtp`` (the first forked RTP packet on each target, ``detail`` "rx"/"tx").
    - ``webhook_lag``: each webhook, ``occurred_at`` (Telnyx's clock) → arrival (ours);
      ``detail`` its event type. Includes any offset between the two clocks.
    - ``transcription_lag``: each ``call.transcription``, from the audio time of the last word it
      reports to its arrival; ``detail`` "interim" or "final". The audio time comes from
      ``script``, the calls' word timing (the sandbox's ``sb.script(ccid)``; several calls'
      concatenated); without it (real Telnyx) ``since`` is NaT and ``seconds`` NaN.
    - ``mark_echo``: each ``rx.mark`` (a "mark" row of ``commands``), from the moment the mark
      frame went out (its ``answered_at``) to its echo in ``marks``; ``detail`` the mark's name
      (a mark that could not be sent, status "failed", has no row; one not echoed yet, NaN).
      Telnyx echoes a mark once the audio sent before it has played, so this is the playout
      delay of that audio plus the network's round trip.

    ``call_control_id``: one call's rows (else every call's). Rows come stage by stage, in
    the order of the stage's start within a stage. Raises TypeError for anything but a Receiver
    or a session.
    """
    require_tables(rx_or_session)
    commands, events, streams = rx_or_session.commands, rx_or_session.events, rx_or_session.streams
    parts = [
        _rest(commands[commands["command"].astype(object) != "mark"]),
        _streams(commands, streams, events, rx_or_session.frames),
        _forks(commands, events, rx_or_session.rtp),
        _webhooks(events),
        _transcripts(rx_or_session.transcripts, script),
        _marks(commands, rx_or_session.marks, streams),
    ]
    df = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else _rows([])
    if call_control_id is not None:
        df = df[df["call_control_id"].astype(object) == call_control_id].reset_index(drop=True)
    return _typed(df)


def _rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS[:-1])


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for col in ("since", "until"):
        df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[ns, UTC]")
    df["seconds"] = (df["until"] - df["since"]).dt.total_seconds().astype(np.float64)
    for col in ("call_control_id", "command", "detail", "stream_id"):
        df[col] = category(df[col])
    df["stage"] = pd.Categorical(df["stage"], categories=STAGES)
    return df[COLUMNS]


def _ns(value: Any) -> int | None:
    return None if pd.isna(value) else int(pd.Timestamp(value).value)


def _first(times: pd.Series, after: int | None, before: int | None, match: pd.Series | None = None) -> Any:
    """The earliest of ``times`` (where ``match``) in [after, before); NaT when none or ``after`` unknown."""
    if after is None:
        return pd.NaT
    ns = times.array.asi8
    keep = (ns >= after) & ~times.isna().to_numpy()
    if before is not None:
        keep &= ns < before
    if match is not None:
        keep &= match.to_numpy(bool)
    return pd.Timestamp(ns[keep].min(), tz="UTC") if keep.any() else pd.NaT


def _windows(requests: pd.DataFrame) -> list[tuple[Any, int | None, int | None]]:
    """Each command with the instant it was sent and the next one's of the same call (or None)."""
    out = []
    for _, group in requests.sort_values("sent_at", kind="stable").groupby("call_control_id", observed=True,
                                                                          sort=False):
        sent = [_ns(t) for t in group["sent_at"]]
        for k, row in enumerate(group.itertuples(index=False)):
            out.append((row, sent[k], sent[k + 1] if k + 1 < len(sent) else None))
    return out


def _rest(commands: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"call_control_id": commands["call_control_id"], "stage": "rest_answer",
                         "command": commands["command"], "detail": commands["command"], "stream_id": None,
                         "since": commands["sent_at"], "until": commands["answered_at"]})


def _accepted(commands: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    kind = commands["command"].astype(object)
    return commands[kind.isin(names) & (commands["status"].astype(object) != "rejected")
                    & commands["call_control_id"].notna()]


def _streams(commands: pd.DataFrame, streams: pd.DataFrame, events: pd.DataFrame, frames: pd.DataFrame
             ) -> pd.DataFrame:
    requests = _accepted(commands, _STREAM_COMMANDS)
    asked = np.fromiter((isinstance(o, dict) and "stream_url" in o for o in requests["options"]), bool, len(requests))
    requests = requests[asked]                    # a mask, also when empty (a [] list would select no columns)
    first_media = frames.groupby(["stream_id", "track"], observed=True)["received_at"].min()
    started = events[events["event_type"].astype(object) == "streaming.started"]
    rows: list[dict[str, Any]] = []
    for command, sent, before in _windows(requests):
        ccid = command.call_control_id
        mine = streams[streams["call_control_id"].astype(object) == ccid]
        connected = _first(mine["connected_at"], sent, before)
        stream = mine[mine["connected_at"] == connected].iloc[0] if pd.notna(connected) else None
        sid = None if stream is None else stream["stream_id"]
        of_call = started["call_control_id"].astype(object) == ccid
        said = started["payload"].map(lambda p: p.get("stream_id") if isinstance(p, dict) else None)
        webhook = _first(started["received_at"], sent, before, of_call & (said.isna() | (said == sid)))
        base = dict(call_control_id=ccid, command=command.command, stream_id=sid, since=command.sent_at)
        rows += [dict(base, stage="ws_connected", detail=None, until=connected),
                 dict(base, stage="streaming.started", detail=None, until=webhook),
                 dict(base, stage="ws_start", detail=None, until=pd.NaT if stream is None else stream["started_at"])]
        for track in _MEDIA_TRACKS.get(command.options.get("stream_track", "inbound_track"), ("inbound",)):
            rows.append(dict(base, stage="first_media", detail=track, until=first_media.get((sid, track), pd.NaT)))
    return _rows(rows)


def _forks(commands: pd.DataFrame, events: pd.DataFrame, rtp: pd.DataFrame) -> pd.DataFrame:
    started = events[events["event_type"].astype(object) == "call.fork.started"]
    rows: list[dict[str, Any]] = []
    for command, sent, before in _windows(_accepted(commands, ("fork_start",))):
        ccid = command.call_control_id
        base = dict(call_control_id=ccid, command=command.command, stream_id=None, since=command.sent_at)
        webhook = _first(started["received_at"], sent, before, started["call_control_id"].astype(object) == ccid)
        rows.append(dict(base, stage="call.fork.started", detail=None, until=webhook))
        of_call = rtp["call_control_id"].astype(object) == ccid
        for target in _FORK_TARGETS:
            at = _first(rtp["received_at"], sent, before, of_call & (rtp["target"].astype(object) == target))
            rows.append(dict(base, stage="first_rtp", detail=target, until=at))
    return _rows(rows)


def _webhooks(events: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"call_control_id": events["call_control_id"], "stage": "webhook_lag", "command": None,
                         "detail": events["event_type"], "stream_id": None, "since": events["occurred_at"],
                         "until": events["received_at"]})


def _transcripts(transcripts: pd.DataFrame, script: pd.DataFrame | None) -> pd.DataFrame:
    final = transcripts["is_final"].astype(bool).to_numpy()
    return pd.DataFrame({"call_control_id": transcripts["call_control_id"], "stage": "transcription_lag",
                         "command": None, "detail": np.where(final, "final", "interim"), "stream_id": None,
                         "since": script_times(transcripts, script)["end"], "until": transcripts["received_at"]})


def _marks(commands: pd.DataFrame, marks: pd.DataFrame, streams: pd.DataFrame) -> pd.DataFrame:
    sent = commands[(commands["command"].astype(object) == "mark") & (commands["status"].astype(object) != "failed")]
    calls = dict(zip(streams["stream_id"].astype(object), streams["call_control_id"].astype(object), strict=True))
    rows = []
    for command in sent.itertuples(index=False):
        sid, name = command.options.get("stream_id"), command.options.get("name")
        echo = (marks["stream_id"].astype(object) == sid) & (marks["name"].astype(object) == name)
        ccid = command.call_control_id if pd.notna(command.call_control_id) else calls.get(sid)
        rows.append(dict(call_control_id=ccid, stage="mark_echo", command="mark", detail=name, stream_id=sid,
                         since=command.answered_at, until=_first(marks["received_at"], _ns(command.answered_at), None,
                                                              echo)))
    return _rows(rows)
