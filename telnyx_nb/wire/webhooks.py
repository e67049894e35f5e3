"""Telnyx webhooks: the JSON envelope and its Ed25519 signature, no I/O.

Telnyx signs ``f"{timestamp}|{raw_body}"`` with Ed25519, sends the base64
signature in ``telnyx-signature-ed25519`` and unix seconds in
``telnyx-timestamp``, and receivers reject timestamps more than 300 s away
from their clock. Verification works on the exact raw body bytes:
re-serialised JSON does not verify.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from telnyx_nb.wire.errors import INT64_MAX, INT64_MIN, ProtocolError, Reason

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "WebhookError",
    "MalformedWebhookError",
    "WebhookTooLargeError",
    "SignatureVerificationError",
    "WebhookEvent",
    "Signer",
    "build_envelope",
    "encode_body",
    "format_occurred_at",
    "load_public_key",
    "verify",
    "parse_event",
]

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
TOLERANCE_SECONDS = 300
#: The deepest nesting of arrays and objects a body may have (Telnyx's envelopes nest about 5
#: levels). Stored payloads are deep-copied on read, JSON-encoded by the recording and walked by
#: ``redact``; orjson parses up to 1,024 levels but encodes only 254, and ``copy.deepcopy``
#: runs out of stack before that.
MAX_DEPTH = 64


class WebhookError(ProtocolError):
    """Base class: a webhook that must not be accepted; ``http_status`` is the answer to send."""

    http_status = 400


class MalformedWebhookError(WebhookError):
    """The body is not a Telnyx event envelope (``MALFORMED_JSON``, ``BAD_ENVELOPE``,
    ``OUT_OF_RANGE``; nesting deeper than ``MAX_DEPTH`` is ``BAD_ENVELOPE``)."""


class WebhookTooLargeError(WebhookError):
    """The body is larger than the receiver accepts (``TOO_LARGE``)."""

    http_status = 413


class SignatureVerificationError(WebhookError):
    """The signature check failed closed.

    Reasons: ``MISSING_HEADER``, ``BAD_TIMESTAMP``, ``STALE``, ``FUTURE``, ``BAD_BASE64``,
    ``BAD_SIGNATURE``.
    """

    http_status = 401


@dataclass(frozen=True)
class WebhookEvent:
    """A parsed webhook envelope: ``data`` fields plus ``meta``."""

    event_type: str
    id: str
    occurred_at: str
    payload: dict[str, Any]
    record_type: str = "event"
    attempt: int = 1
    delivered_to: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def format_occurred_at(when: dt.datetime | None = None) -> str:
    """Telnyx's timestamp format: UTC, microseconds, ``Z`` suffix."""
    when = when or dt.datetime.now(dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_envelope(
    event_type: str,
    payload: Mapping[str, Any],
    *,
    event_id: str | None = None,
    occurred_at: str | None = None,
    attempt: int = 1,
    delivered_to: str | None = None,
) -> dict[str, Any]:
    """The ``{"data": {...}, "meta": {...}}`` envelope Telnyx POSTs."""
    meta: dict[str, Any] = {"attempt": attempt}
    if delivered_to is not None:
        meta["delivered_to"] = delivered_to
    return {
        "data": {
            "event_type": event_type,
            "id": event_id or str(uuid.uuid4()),
            "occurred_at": occurred_at or format_occurred_at(),
            "payload": dict(payload),
            "record_type": "event",
        },
        "meta": meta,
    }


def encode_body(envelope: Mapping[str, Any]) -> bytes:
    """Serialise an envelope to the exact bytes that get signed and sent."""
    return orjson.dumps(envelope)


def load_public_key(key: str | bytes | Ed25519PublicKey) -> Ed25519PublicKey:
    """Accept the Mission Control form (base64 of the raw 32-byte key) or raw bytes."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, str):
        try:
            raw = base64.b64decode(key, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"public key is not valid base64: {exc}") from None
    else:
        raw = key
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


class Signer:
    """Signs webhook bodies the way Telnyx does; used by the sandbox and tests."""

    def __init__(self, private_key: Ed25519PrivateKey | None = None) -> None:
        self._private_key = private_key or Ed25519PrivateKey.generate()

    @property
    def public_key(self) -> str:
        """Base64 of the raw 32-byte public key, as ``TELNYX_PUBLIC_KEY`` expects."""
        raw = self._private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode("ascii")

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The two signature headers for ``body`` at ``timestamp`` (default: now)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._private_key.sign(ts.encode("ascii") + b"|" + body)
        return {SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"), TIMESTAMP_HEADER: ts}


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise SignatureVerificationError(Reason.MISSING_HEADER, f"no {name} header")


def verify(
    body: bytes,
    headers: Mapping[str, str],
    public_key: str | bytes | Ed25519PublicKey,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
) -> None:
    """Check a webhook's signature and timestamp; raise SignatureVerificationError if either fails.

    ``body`` must be the raw request bytes. Header names are case-insensitive.
    """
    signature_b64 = _header(headers, SIGNATURE_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER).strip()
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise SignatureVerificationError(Reason.BAD_TIMESTAMP,
                                         f"{TIMESTAMP_HEADER} {timestamp!r:.40} is not unix seconds")
    skew = int(timestamp) - (time.time() if now is None else now)
    if skew < -tolerance:
        raise SignatureVerificationError(Reason.STALE, f"timestamp is {-skew:.0f} s old (limit {tolerance} s)")
    if skew > tolerance:
        raise SignatureVerificationError(Reason.FUTURE, f"timestamp is {skew:.0f} s ahead (limit {tolerance} s)")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise SignatureVerificationError(Reason.BAD_BASE64, f"{SIGNATURE_HEADER} is not valid base64") from None
    try:
        load_public_key(public_key).verify(signature, timestamp.encode("ascii") + b"|" + bytes(body))
    except InvalidSignature:
        raise SignatureVerificationError(Reason.BAD_SIGNATURE, "signature does not match body and timestamp") from None


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels (iterative: no stack)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if type(node) is dict else node
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def parse_event(body: bytes | str) -> WebhookEvent:
    """Parse a webhook body into a WebhookEvent; raise MalformedWebhookError if it is not one.

    Fields beside ``payload`` that are not of their documented type are taken as absent
    (``occurred_at``, ``record_type`` and ``meta.delivered_to`` strings, ``meta.attempt`` an
    integer); the raw envelope keeps them.
    """
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedWebhookError(Reason.MALFORMED_JSON, str(exc)) from None
    if (type(envelope) is dict or type(envelope) is list) and _too_deep(envelope, MAX_DEPTH):
        raise MalformedWebhookError(Reason.BAD_ENVELOPE, f"body nests deeper than {MAX_DEPTH} levels")
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, dict):
        raise MalformedWebhookError(Reason.BAD_ENVELOPE, "body has no 'data' object")
    event_type, event_id = data.get("event_type"), data.get("id")
    if not isinstance(event_type, str) or not isinstance(event_id, str):
        raise MalformedWebhookError(Reason.BAD_ENVELOPE, "data.event_type and data.id must be strings")
    payload = data.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise MalformedWebhookError(Reason.BAD_ENVELOPE, "data.payload must be an object")
    meta = envelope.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    attempt = meta.get("attempt", 1)
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        attempt = 1
    elif not INT64_MIN <= attempt <= INT64_MAX:
        raise MalformedWebhookError(Reason.OUT_OF_RANGE, "meta.attempt does not fit in int64")
    occurred_at, record_type, delivered_to = data.get("occurred_at"), data.get("record_type"), meta.get("delivered_to")
    return WebhookEvent(
        event_type=event_type,
        id=event_id,
        occurred_at=occurred_at if type(occurred_at) is str else "",
        payload=payload,
        record_type=record_type if type(record_type) is str and record_type else "event",
        attempt=attempt,
        delivered_to=delivered_to if type(delivered_to) is str else None,
        raw=envelope,
    )
