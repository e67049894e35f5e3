"""Every exception telnyx_nb raises on purpose, under one base class, :class:`TelnyxNbError`.

Input the receiver refuses is not raised to the user: it is recorded in an errors table with
a :class:`Reason` (the table's ``reason`` column holds the member's value). The protocol
errors below are what ``telnyx_nb.wire`` raises for such input; the others are misuse of
the public API.
"""

from __future__ import annotations

from telnyx_nb.wire.codecs import UnsupportedCodecError
from telnyx_nb.wire.errors import ProtocolError, Reason, TelnyxNbError
from telnyx_nb.wire.media import FrameError
from telnyx_nb.wire.rtp import RtpError
from telnyx_nb.wire.webhooks import (
    MalformedWebhookError,
    SignatureVerificationError,
    WebhookError,
    WebhookTooLargeError,
)

__all__ = [
    "TelnyxNbError", "Reason", "ProtocolError", "FrameError", "RtpError", "WebhookError",
    "MalformedWebhookError", "SignatureVerificationError", "WebhookTooLargeError",
    "UnsupportedCodecError", "StreamNotOpenError", "StreamNotStartedError", "ReceiverNotStartedError",
]


class StreamNotOpenError(TelnyxNbError, LookupError):
    """``send_audio``/``mark``/``clear`` named a stream that has no open WebSocket here."""


class StreamNotStartedError(TelnyxNbError, RuntimeError):
    """Audio was sent on a stream whose ``start`` frame has not arrived: its codec is unknown."""


class ReceiverNotStartedError(TelnyxNbError, RuntimeError):
    """A Receiver's addresses or sending methods were used while it does not listen: before
    ``.start()``, after ``.stop()``, or once its capture process has died (its tables stay readable)."""
