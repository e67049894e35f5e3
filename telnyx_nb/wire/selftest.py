"""The receiver's self-test, sans-I/O: does a URL lead to this receiver?

A receiver behind a tunnel cannot see from the inside whether its public URL reaches it.
``Receiver.selftest()`` asks through that URL: it requests ``<base>/selftest?nonce=<random>``
(``GET``; ``POST`` is answered the same way), and the receiver's HTTP server answers
``200 {"nonce": ..., "received_at": ..., "receiver": "telnyx_nb", "port": ...}``:
``received_at`` is its arrival (ISO 8601, UTC) and ``port`` the local port that took the
request. The route is unsigned (nothing but the nonce travels, so a signature would prove
nothing) and is not a webhook: it is neither stored in ``events`` nor refused into
``webhook_errors``. A missing nonce, or one that is not 1 to ``NONCE_MAX_CHARS`` URL-safe
base64 characters (``secrets.token_urlsafe``), gets ``400 {"error": "bad_nonce", "detail": ...}``.

Only an answer that echoes the nonce, names ``telnyx_nb`` and the port of the receiver that
asked proves the URL leads to it: another server answering 200 (a tunnel's error page, some
other service on that port) is "answered but not this receiver", and so is another
``telnyx_nb`` receiver (a leftover of a re-run cell on another port).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import re
import secrets
import socket
import ssl
from dataclasses import dataclass
from typing import Any

__all__ = ["PATH", "RECEIVER", "NONCE_MAX_CHARS", "ANSWER_MAX_BYTES", "SelfTest", "new_nonce", "nonce_error",
           "answer", "judge", "unreachable"]

#: The route, under the receiver's base URL.
PATH = "/selftest"
#: What the answer's ``receiver`` field says.
RECEIVER = "telnyx_nb"
#: Longest nonce the route echoes, in characters.
NONCE_MAX_CHARS = 64
#: At most this much of an answer is read, in bytes (the real answer is about 150).
ANSWER_MAX_BYTES = 4096
_NONCE = re.compile(r"[A-Za-z0-9_-]+")
#: Characters of a foreign answer quoted in the verdict.
_EXCERPT_CHARS = 120


@dataclass(frozen=True)
class SelfTest:
    """What a self-test found: whether ``url`` leads to the receiver that asked.

    ``reachable``: the answer echoed the nonce, from this receiver. ``round_trip_ms``: request
    sent to answer read (connection and TLS set-up included), in milliseconds; NaN when nothing
    answered. ``status``: the HTTP status of the answer (None without one). ``error``: why it is
    not reachable (None when it is). ``received_at``: the receiver's arrival stamp of the request
    (UTC; None unless reachable). ``str()`` gives the verdict in one line.
    """

    url: str
    reachable: bool
    round_trip_ms: float
    status: int | None
    error: str | None
    received_at: dt.datetime | None = None

    def __str__(self) -> str:
        where = self.url.partition("?")[0]              # without the nonce
        if self.reachable:
            return f"reachable: this receiver answered at {where} in {self.round_trip_ms:.1f} ms"
        return f"NOT reachable at {where}: {self.error}"


def new_nonce() -> str:
    """A fresh random nonce (22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


def nonce_error(nonce: str | None) -> str | None:
    """Why the route refuses ``nonce`` (None: it is fine). The nonce itself is never quoted."""
    if not nonce:
        return "the nonce query parameter is missing or empty: request /selftest?nonce=<1 to " \
               f"{NONCE_MAX_CHARS} URL-safe characters>"
    if len(nonce) > NONCE_MAX_CHARS:
        return f"the nonce is {len(nonce)} characters long; at most {NONCE_MAX_CHARS} are echoed"
    if not _NONCE.fullmatch(nonce):
        return "the nonce may contain only the URL-safe characters A-Z, a-z, 0-9, '-' and '_'"
    return None


def answer(nonce: str, received_ns: int, port: int) -> dict[str, Any]:
    """The route's JSON answer to a valid ``nonce`` that arrived at ``received_ns`` (UTC ns) on ``port``."""
    received = dt.datetime.fromtimestamp(received_ns / 1e9, dt.timezone.utc)
    return {"nonce": nonce, "received_at": received.isoformat().replace("+00:00", "Z"), "receiver": RECEIVER,
            "port": port}


def judge(url: str, nonce: str, port: int, status: int, body: bytes, round_trip_ms: float) -> SelfTest:
    """The verdict on an HTTP answer (``status``, ``body``) to ``url``, which asked with
    ``nonce`` on behalf of the receiver listening on ``port``."""
    def foreign(why: str) -> SelfTest:
        return SelfTest(url, False, round_trip_ms, status, f"answered but not this receiver: {why}")

    if status != 200:
        return foreign(f"HTTP {status} ({_excerpt(body)}){_hint(status)}")
    try:
        data = json.loads(body)
    except ValueError:
        return foreign(f"the answer is not JSON ({_excerpt(body)})")
    if not isinstance(data, dict) or data.get("receiver") != RECEIVER:
        return foreign(f"the answer does not come from a {RECEIVER} receiver ({_excerpt(body)})")
    if data.get("nonce") != nonce:
        return foreign("a telnyx_nb receiver answered with another nonce (a proxy's cached answer?)")
    if data.get("port") != port:
        return foreign(f"another telnyx_nb receiver answered, listening on port {data.get('port')} and not on this "
                       f"one's {port} (a leftover of a re-run cell? point the tunnel at port {port})")
    try:
        received = dt.datetime.fromisoformat(str(data.get("received_at")).replace("Z", "+00:00"))
    except ValueError:
        received = None
    return SelfTest(url, True, round_trip_ms, status, None, received)


def unreachable(url: str, exc: BaseException, timeout: float) -> SelfTest:
    """The verdict when requesting ``url`` failed with ``exc`` before any HTTP answer."""
    reason = getattr(exc, "reason", exc)     # urllib's URLError wraps the socket's error
    if isinstance(reason, ConnectionRefusedError):
        why = "connection refused: nothing listens at that host and port"
    elif isinstance(reason, TimeoutError):
        why = f"no answer within {timeout:g} s"
    elif isinstance(reason, socket.gaierror):
        why = f"the host name does not resolve ({reason.strerror})"
    elif isinstance(reason, ssl.SSLError):
        why = f"the TLS handshake failed ({reason})"
    elif isinstance(reason, http.client.HTTPException) and not isinstance(reason, ConnectionError):
        why = f"answered but not this receiver: the answer is not HTTP ({type(reason).__name__})"
    elif isinstance(reason, ConnectionError):
        why = f"the connection was closed without an answer ({type(reason).__name__})"
    else:
        why = f"the request failed ({reason!r})"
    return SelfTest(url, False, math.nan, None, why)


def _excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    if not text:
        return "empty body"
    return repr(text[:_EXCERPT_CHARS] + ("…" if len(text) > _EXCERPT_CHARS else ""))


def _hint(status: int) -> str:
    if status == 404:
        return "; a server without the /selftest route: a tunnel whose agent is offline, or another service"
    if status in (502, 503, 504, 530):
        return "; a tunnel or proxy that could not reach its origin: is the tunnel pointed at this receiver's port?"
    return ""
