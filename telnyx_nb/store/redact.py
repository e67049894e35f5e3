"""Phone numbers out of a saved recording, for ``save(path, redact=True)``.

Every text value in the recording's Parquet files (event payloads, stream custom parameters,
the options of recorded commands, excerpts of refused input, transcripts, ...) is rewritten:

- the value of a ``"from"``, ``"to"`` or ``"from_"`` key in JSON text (whatever its form: E.164,
  a SIP URI, a bare number), and
- any E.164 number (``+`` and 7 to 15 digits) anywhere in text

become ``redacted:<16 hex digits>``, the first 64 bits of HMAC-SHA256 of the original value
under a salt drawn at random for each save and kept nowhere. The same number gives the same
token throughout one saved session, so equality joins and group-bys still hold; without the
salt a token cannot be matched to a list of candidate numbers (the E.164 space is small enough
to enumerate, which a plain hash would allow). Payload files (audio bytes) are left as they
are. The manifest says ``"redacted": true``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["PREFIX", "Redactor", "redact_recording"]

#: What every replaced value starts with.
PREFIX = "redacted:"
#: An E.164 number: "+", a non-zero digit, then 6 to 14 digits, not inside a longer run of digits.
_E164 = re.compile(r"(?<![\w+])\+[1-9][0-9]{6,14}(?![0-9])")
#: A "from"/"to"/"from_" key of JSON text and its string value (unescaped characters only).
_PARTY = re.compile(r'("(?:from|to|from_)"\s*:\s*")([^"\\]*)(")')


class Redactor:
    """Replaces phone numbers in text with salted tokens; one instance per saved session."""

    def __init__(self, salt: bytes | None = None) -> None:
        self._salt = salt if salt is not None else secrets.token_bytes(32)

    def token(self, value: str) -> str:
        """The stand-in for ``value`` (a token is never redacted twice)."""
        if value.startswith(PREFIX) or not value:
            return value
        digest = hmac.new(self._salt, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return PREFIX + digest[:16]

    def text(self, value: str) -> str:
        """``value`` with its from/to values and every E.164 number replaced."""
        value = _PARTY.sub(lambda m: m.group(1) + self.token(m.group(2)) + m.group(3), value)
        return _E164.sub(lambda m: self.token(m.group(0)), value)


def redact_recording(root: Path, redactor: Redactor | None = None) -> None:
    """Rewrite the recording at ``root`` in place (see the module docstring).

    Meant for a fresh copy (``save`` writes one to a temporary directory first): a failure
    part-way leaves some files redacted and others not. Raises OSError or
    ``pyarrow.ArrowException`` when a file cannot be read or written.
    """
    redactor = redactor or Redactor()
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        columns = {name: _redact_column(table.column(name), redactor.text) for name in table.column_names}
        pq.write_table(pa.table(columns), path)
    manifest_path = root / "manifest.json"
    manifest = orjson.loads(manifest_path.read_bytes())
    manifest["redacted"] = True
    manifest_path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))


def _redact_column(column: pa.ChunkedArray, text: Callable[[str], str]) -> pa.ChunkedArray:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    return pa.chunked_array([pa.array([None if v is None else text(v) for v in chunk.to_pylist()], type=column.type)
                             for chunk in column.chunks], type=column.type)
