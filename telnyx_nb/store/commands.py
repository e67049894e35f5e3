"""The ``commands`` table: every Call Control command the helpers sent, and what came back.

One row per command (``tnb.dial``, ``tnb.answer``, ``tnb.start_streaming`` and the other
``telnyx_nb.actions`` helpers): ``command`` (Telnyx's action name: "dial", "answer",
"streaming_start", "fork_start", ...), ``call_control_id`` (for ``dial``, the new call's, once
answered), ``options`` (the SDK options sent, as a dict), ``sent_at`` and ``answered_at``
(``datetime64[ns, UTC]``, the notebook's clock just before the request and when its answer
came; NaT while waiting), ``status`` ("sent" while waiting, "ok" for a 2xx, "rejected" for an
HTTP error answer, "failed" when no answer came: a connection error or a timeout),
``command_id``, ``http_status`` (Int64) and ``error`` (the Telnyx error code and title, or the
exception, else null).

Secrets never reach the table: ``stream_auth_token`` and ``sip_auth_password`` are replaced by
``SECRET_MARKER``, and the SDK-only options (``extra_headers``, ``extra_query``, ``timeout``)
are left out; ``extra_body`` is merged in, as the SDK merges it into the request body.

The table is a registry, not an append-only table: a row is completed when its answer comes,
and the recording rewrites it at each flush (``commands.parquet``), like ``streams``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

from telnyx_nb.store.columns import category, utc
from telnyx_nb.store.schema import NAT
from telnyx_nb.wire import codecs

__all__ = ["CommandInfo", "SECRET_MARKER", "STATUSES", "recorded_options", "stream_request", "bidirectional_columns",
           "commands_view"]

#: What replaces a secret option's value in ``options``.
SECRET_MARKER = "<secret: not recorded>"
#: Values of the ``status`` column.
STATUSES = ("sent", "ok", "rejected", "failed")
_SECRETS = ("stream_auth_token", "sip_auth_password")
_SDK_ONLY = ("extra_headers", "extra_query", "extra_body", "timeout")
#: Commands that can request a media stream (with a ``stream_url``).
_STREAM_COMMANDS = ("dial", "answer", "streaming_start")


@dataclass
class CommandInfo:
    """One row of ``commands`` (times in nanoseconds since the epoch, NAT = none yet)."""

    index: int
    command: str
    call_control_id: str | None
    options: dict[str, Any]
    sent_ns: int
    command_id: str | None = None
    answered_ns: int = NAT
    status: str = "sent"
    http_status: int | None = None
    error: str | None = None


def recorded_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a command as recorded: JSON values (others as their ``str``), secrets
    replaced by ``SECRET_MARKER``, SDK-only options left out, ``extra_body`` merged in."""
    body = {key: value for key, value in options.items() if key not in _SDK_ONLY}
    extra = options.get("extra_body")
    if isinstance(extra, Mapping):
        body.update(extra)
    for key in _SECRETS:
        if key in body:
            body[key] = SECRET_MARKER
    recorded: dict[str, Any] = orjson.loads(orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS))
    return recorded


def stream_request(commands: Sequence[CommandInfo], call_control_id: str | None, connected_ns: int
                   ) -> CommandInfo | None:
    """The command that asked for a stream of this call: the latest ``dial``/``answer`` with a
    ``stream_url`` or ``streaming_start`` for ``call_control_id`` that Telnyx did not refuse,
    sent before the stream connected (``connected_ns``; NAT = any time). None when none was
    recorded (the stream was asked for by other code)."""
    if call_control_id is None:
        return None
    found = None
    for command in commands:
        if (command.call_control_id == call_control_id and command.command in _STREAM_COMMANDS
                and "stream_url" in command.options and command.status != "rejected"
                and (connected_ns == NAT or command.sent_ns <= connected_ns)
                and (found is None or command.sent_ns >= found.sent_ns)):
            found = command
    return found


def bidirectional_columns(command: CommandInfo | None) -> tuple[str | None, int | None]:
    """``streams.bidirectional_codec``/``bidirectional_rate`` for a stream asked for by
    ``command``: the codec and rate Telnyx expects audio sent back in
    (``wire.codecs.bidirectional_format``); ("MP3", None) in mp3 mode; (None, None) when no
    command was recorded."""
    if command is None:
        return None, None
    fmt = codecs.bidirectional_format(command.options)
    return fmt if fmt is not None else ("MP3", None)


def commands_view(commands: Sequence[CommandInfo]) -> pd.DataFrame:
    """The public ``commands`` table (see the module docstring)."""
    def col(attribute: str) -> list[Any]:
        return [getattr(c, attribute) for c in commands]

    return pd.DataFrame({
        "command": category(col("command")),
        "call_control_id": category(col("call_control_id")),
        "options": pd.Series(col("options"), dtype=object),
        "sent_at": utc(col("sent_ns")),
        "answered_at": utc(col("answered_ns")),
        "status": category(col("status"), STATUSES),
        "command_id": category(col("command_id")),
        "http_status": pd.array(col("http_status"), dtype="Int64"),
        "error": pd.Series(col("error"), dtype=object),
    })
