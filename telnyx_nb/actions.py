"""The six call actions as thin helpers over the ``telnyx`` SDK, filled in from a Receiver.

Each helper calls ``client.calls.actions.<name>(call_control_id, **options)`` and returns the
SDK's response. Every SDK option passes through unchanged; the helpers only add what the
receiver knows (``stream_url``, ``stream_auth_token``, fork ``rx``/``tx``) and a fresh
``command_id`` (Telnyx ignores a repeated one on the same call), unless you set them.
All six take ``rx`` so that a control panel can call them alike; only the two start
helpers for streaming and forking use it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telnyx_nb.receiver import Receiver

__all__ = [
    "start_streaming", "stop_streaming", "start_forking", "stop_forking",
    "start_transcription", "stop_transcription",
]


def _call(client: Any, action: str, call_control_id: str, options: dict[str, Any]) -> Any:
    options.setdefault("command_id", str(uuid.uuid4()))
    return getattr(client.calls.actions, action)(call_control_id, **options)


def start_streaming(client: Any, call_control_id: str, rx: Receiver | None = None, *,
                    stream_track: str = "both_tracks", **options: Any) -> Any:
    """``streaming_start`` to ``rx.stream_url`` (with ``rx.stream_auth_token`` if set).

    ``stream_track`` defaults to "both_tracks" (Telnyx's own default is "inbound_track").
    """
    if rx is not None:
        options.setdefault("stream_url", rx.stream_url)
        if rx.stream_auth_token is not None:
            options.setdefault("stream_auth_token", rx.stream_auth_token)
    return _call(client, "start_streaming", call_control_id, {"stream_track": stream_track, **options})


def stop_streaming(client: Any, call_control_id: str, rx: Receiver | None = None, **options: Any) -> Any:
    """``streaming_stop`` (all streams of the call unless ``stream_id`` is given)."""
    return _call(client, "stop_streaming", call_control_id, options)


def start_forking(client: Any, call_control_id: str, rx: Receiver | None = None, **options: Any) -> Any:
    """``fork_start`` to ``rx.fork_rx``/``rx.fork_tx`` with ``stream_type="decrypted"`` (unless set).

    Plain RTP carries no call id, so before the request the receiver is told to attribute the
    next new RTP sources on its fork ports to this call (``rx.expect_fork``); the claim is
    withdrawn if the request fails. The legacy ``target`` mode (``extra_body={"target": …}``)
    needs no claim: its STREP header carries the call leg id.
    """
    if rx is None or "target" in options.get("extra_body", {}):
        return _call(client, "start_forking", call_control_id, options)
    options.setdefault("rx", rx.fork_rx)
    options.setdefault("tx", rx.fork_tx)
    options.setdefault("stream_type", "decrypted")
    rx.expect_fork(call_control_id)
    try:
        return _call(client, "start_forking", call_control_id, options)
    except Exception:
        rx.withdraw_fork(call_control_id)
        raise


def stop_forking(client: Any, call_control_id: str, rx: Receiver | None = None, **options: Any) -> Any:
    """``fork_stop`` with ``stream_type="decrypted"`` (to match start_forking) unless given."""
    options.setdefault("stream_type", "decrypted")
    return _call(client, "stop_forking", call_control_id, options)


def start_transcription(client: Any, call_control_id: str, rx: Receiver | None = None, **options: Any) -> Any:
    """``transcription_start``; results arrive as ``call.transcription`` webhooks (``rx.transcripts``)."""
    return _call(client, "start_transcription", call_control_id, options)


def stop_transcription(client: Any, call_control_id: str, rx: Receiver | None = None, **options: Any) -> Any:
    """``transcription_stop`` (Telnyx sends no webhook for it)."""
    return _call(client, "stop_transcription", call_control_id, options)
