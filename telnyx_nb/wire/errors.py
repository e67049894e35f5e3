"""The package's one error hierarchy and the rejection reasons it records.

It lives in ``wire`` (the lowest layer) so that every layer can raise it; the public names
are re-exported by :mod:`telnyx_nb.errors`.

Every input the project refuses is refused with a :class:`Reason`: the member's value is
what the receiver writes to the ``reason`` column of ``stream_errors`` (rows with origin
"receiver"), ``webhook_errors`` and ``rtp_errors``. Rows with origin "telnyx" in
``stream_errors`` are Telnyx's own ``error`` frames and keep Telnyx's code and title.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["TelnyxNbError", "TextEnum", "Reason", "ProtocolError", "INT64_MIN", "INT64_MAX"]

#: Bounds of every counter the project stores (columns are int64).
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class TelnyxNbError(Exception):
    """Base class of every exception telnyx_nb raises on purpose."""


class TextEnum(str, Enum):
    """A ``str``-valued Enum whose ``str()`` is its value: Python 3.10's stand-in for ``StrEnum``."""

    def __str__(self) -> str:
        return str(self.value)


class Reason(TextEnum):
    """Why an input was refused (``str``-valued: ``Reason.STALE == "stale"``)."""

    # -- JSON text (media-stream frames, webhook bodies) ----------------------------------
    #: Not JSON at all.
    MALFORMED_JSON = "malformed_json"
    #: JSON, but not an object.
    NOT_AN_OBJECT = "not_an_object"
    #: A media-stream frame whose ``event`` Telnyx does not send.
    UNKNOWN_EVENT = "unknown_event"
    #: A required field is absent.
    MISSING_FIELD = "missing_field"
    #: A field has the wrong type, an unknown value, or a value out of its documented range.
    BAD_FIELD = "bad_field"
    #: A counter (``sequence_number``, ``chunk``, ``timestamp``, ``meta.attempt``) outside int64.
    OUT_OF_RANGE = "out_of_range"
    #: ``media.payload`` is not valid base64.
    INVALID_BASE64 = "invalid_base64"

    # -- media-stream connections -----------------------------------------------------------
    #: A text message longer than the receiver's ``max_message_size``.
    OVERSIZED = "oversized"
    #: A binary WebSocket message (Telnyx sends text only).
    BINARY_FRAME = "binary_frame"
    #: The stream auth token was missing or wrong; the connection is refused or closed (1008).
    AUTH_FAILED = "auth_failed"
    #: A frame naming another ``stream_id`` than the one this connection carries.
    STREAM_MISMATCH = "stream_mismatch"
    #: A started stream sent nothing for longer than the receiver's ``stream_silence_s``.
    SILENT = "silent"
    #: A message beyond the hard limit: the connection was closed (1009).
    MESSAGE_TOO_BIG = "message_too_big"
    #: The connection failed (reset, protocol error).
    CONNECTION_ERROR = "error"

    # -- webhooks -------------------------------------------------------------------------------
    #: A signature or timestamp header is absent.
    MISSING_HEADER = "missing_header"
    #: ``telnyx-timestamp`` is not unix seconds.
    BAD_TIMESTAMP = "bad_timestamp"
    #: The timestamp is older than the replay window.
    STALE = "stale"
    #: The timestamp is further ahead than the replay window.
    FUTURE = "future"
    #: ``telnyx-signature-ed25519`` is not valid base64.
    BAD_BASE64 = "bad_base64"
    #: The Ed25519 signature does not match ``timestamp|body``.
    BAD_SIGNATURE = "bad_signature"
    #: JSON, but not Telnyx's ``{"data": {...}}`` envelope.
    BAD_ENVELOPE = "bad_envelope"
    #: A body larger than the receiver's ``max_webhook_size``.
    TOO_LARGE = "too_large"
    #: An HTTP request the server could not parse (a header line too long, a character HTTP
    #: does not allow in a header, a bad request line): answered 400 before any route sees it.
    BAD_REQUEST = "bad_request"
    #: A client too slow to send its request header (``header_timeout_s``) or its body
    #: (``body_timeout_s``): the connection was closed (slowloris).
    TIMEOUT = "timeout"

    # -- RTP and STREP datagrams --------------------------------------------------------------
    #: Shorter than its headers say.
    TRUNCATED = "truncated"
    #: RTP version other than 2.
    BAD_VERSION = "bad_version"
    #: Padding count that does not fit the packet.
    BAD_PADDING = "bad_padding"
    #: More than 15 CSRCs (building only).
    TOO_MANY_CSRCS = "too_many_csrcs"
    #: Header extension not 32-bit aligned (building only).
    BAD_EXTENSION = "bad_extension"
    #: Not a STREP packet (first two bits are not 11).
    NOT_STREP = "not_strep"
    #: A STREP header length other than 24 bytes.
    BAD_HEADER_LENGTH = "bad_header_length"


class ProtocolError(TelnyxNbError, ValueError):
    """Input that cannot be accepted: ``reason`` (a :class:`Reason`) and a human ``detail``."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
