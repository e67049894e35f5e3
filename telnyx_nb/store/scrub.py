"""Secrets out of the excerpts of refused input, before they are stored.

The error tables (``stream_errors``, ``webhook_errors``, ``rtp_errors``) keep an excerpt of
each input the receiver refused, and so do the recording and saved sessions. A refused input
may carry a secret: a ``connected`` frame with the right stream auth token but invalid JSON, a
slow request's header with an ``Authorization`` line. :func:`scrub` replaces

- every configured secret (the receiver's ``stream_auth_token``), wherever it appears, and
- the value of any auth-token, ``authorization`` or API-key field, whatever its value: a JSON
  string (``"x-telnyx-streaming-auth-token": "..."``), a header line (``Authorization: ...``)
  or a query parameter (``auth_token=...``)

by :data:`REDACTED`, in text or bytes. Only the start of the input is scrubbed (``window``):
an excerpt keeps at most its first few hundred characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "scrub", "scrub_text", "scrub_bytes"]

#: What replaces a secret.
REDACTED = "[redacted]"

_KEY = r"(?:[\w-]*auth[\w-]*token[\w-]*|authorization|[\w-]*api[_-]?key)"
_PATTERNS = (
    (rf'("{_KEY}"\s*:\s*")(?:[^"\\]|\\.)*', r"\1" + REDACTED),             # JSON string value
    (rf"(?m)^([ \t]*{_KEY}[ \t]*:[ \t]*)[^\r\n]*", r"\1" + REDACTED),       # header line
    (rf"((?<![\w-]){_KEY}=)[^&\s\"']*", r"\1" + REDACTED),                  # query parameter
)
_TEXT = [(re.compile(p, re.IGNORECASE), r) for p, r in _PATTERNS]
_BYTES = [(re.compile(p.encode(), re.IGNORECASE), r.encode()) for p, r in _PATTERNS]

def scrub_text(text: str, secrets: Iterable[str] = (), window: int = 4096) -> str:
    """The first ``window`` characters of ``text`` with every secret replaced (see the module docstring)."""
    text = text[:window]
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _TEXT:
        text = pattern.sub(replacement, text)
    return text


def scrub_bytes(raw: bytes | bytearray | memoryview, secrets: Iterable[str] = (), window: int = 4096) -> bytes:
    """The first ``window`` bytes of ``raw`` with every secret replaced (see the module docstring)."""
    data = bytes(raw[:window])
    for secret in secrets:
        if secret:
            data = data.replace(secret.encode("utf-8", "surrogateescape"), REDACTED.encode())
    for pattern, replacement in _BYTES:
        data = pattern.sub(replacement, data)
    return data


def scrub(raw: str | bytes | bytearray | memoryview, secrets: Iterable[str] = (), window: int = 4096) -> str | bytes:
    """:func:`scrub_text` or :func:`scrub_bytes`, by the type of ``raw``."""
    return scrub_text(raw, secrets, window) if isinstance(raw, str) else scrub_bytes(raw, secrets, window)
