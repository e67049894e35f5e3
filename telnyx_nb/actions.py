"""Call Control commands as thin helpers over the ``telnyx`` SDK, filled in from a Receiver.

The six call actions call ``client.calls.actions.<name>(call_control_id, **options)``;
:func:`dial` calls ``client.calls.dial(**options)`` and :func:`answer`
``client.calls.actions.answer(call_control_id, **options)``. Each returns the SDK's response
and raises what the SDK raises. Every SDK option passes through unchanged; the helpers only
add what the receiver knows (``webhook_url``, ``stream_url``, ``stream_auth_token``, fork
``rx``/``tx``) and a fresh ``command_id`` (Telnyx ignores a repeated one on the same call),
unless you set them.

With a receiver, every command is recorded in ``rx.commands`` (``store.commands``): the
options sent (secrets masked), when it was sent and answered, and how (``status``). That is
also how ``rx.send_audio`` knows the codec and rate Telnyx expects audio back in on a stream
(``streams.bidirectional_codec``/``bidirectional_rate``). All take ``rx`` so that a control
panel can call them alike. ``client``, ``call_control_id`` and ``rx`` are positional-only, so
that every keyword is an SDK option (``fork_start`` has options named ``rx`` and ``tx``:
``tnb.start_forking(client, ccid, rx, rx="udp:203.0.113.5:5000")`` sends the inbound fork there).

Telnyx refuses commands on a call that is not answered yet (422 90034): wait for it first,
``rx.wait_for("call.answered", ccid)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telnyx_nb.receiver import Receiver

__all__ = [
    "dial", "answer", "hangup", "start_streaming", "stop_streaming", "start_forking", "stop_forking",
    "start_transcription", "stop_transcription",
]


def _sent(rx: Receiver | None, command: str, call_control_id: str | None, options: dict[str, Any],
          send: Callable[[], Any]) -> Any:
    """``send()`` the command, recorded in ``rx.commands`` around it when there is a receiver."""
    if rx is None:
        return send()
    index = rx.record_command(command, call_control_id, options)
    try:
        response = send()
    except Exception as exc:
        status_code = getattr(exc, "status_code", None)         # telnyx.APIStatusError: Telnyx answered
        rx.command_answered(index, "rejected" if isinstance(status_code, int) else "failed",
                            http_status=status_code if isinstance(status_code, int) else None,
                            error=_describe(exc))
        raise
    data = getattr(response, "data", None)
    rx.command_answered(index, "ok", call_control_id=getattr(data, "call_control_id", None) if command == "dial"
                        else None)
    return response


def _describe(exc: Exception) -> str:
    """A Telnyx error answer as ``"90034 Call not answered yet"``, anything else as ``repr``."""
    body = getattr(exc, "body", None)
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return f"{errors[0].get('code')} {errors[0].get('title')}"
    return repr(exc)


def _call(client: Any, action: str, command: str, call_control_id: str, rx: Receiver | None,
          options: dict[str, Any]) -> Any:
    options.setdefault("command_id", str(uuid.uuid4()))
    method = getattr(client.calls.actions, action)
    return _sent(rx, command, call_control_id, options, lambda: method(call_control_id, **options))


def _stream_options(rx: Receiver, options: dict[str, Any], *, token_in_body: bool) -> None:
    """Fill the stream options from ``rx`` (``stream_url``, its token) unless given."""
    options.setdefault("stream_url", rx.stream_url)
    options.setdefault("stream_track", "both_tracks")
    if rx.stream_auth_token is not None and "stream_auth_token" not in options:
        if token_in_body:                           # the SDK's answer() has no stream_auth_token
            options["extra_body"] = {"stream_auth_token": rx.stream_auth_token, **options.get("extra_body", {})}
        else:
            options["stream_auth_token"] = rx.stream_auth_token


def dial(client: Any, rx: Receiver | None = None, /, *, stream: bool = False, **options: Any) -> Any:
    """``client.calls.dial(**options)`` with ``webhook_url=rx.webhook_url`` (unless given).

    ``stream=True`` asks for a media stream to ``rx`` from the answer on (``stream_url``,
    ``stream_auth_token``, ``stream_track="both_tracks"`` unless given); any other streaming
    option (``stream_bidirectional_mode``, ...) passes through. The command is recorded in
    ``rx.commands`` with the new call's ``call_control_id`` once Telnyx answers.
    Example: ``ccid = tnb.dial(client, rx, connection_id=..., to=..., from_=...).data.call_control_id``.
    """
    if rx is not None:
        options.setdefault("webhook_url", rx.webhook_url)
        if stream:
            _stream_options(rx, options, token_in_body=False)
    options.setdefault("command_id", str(uuid.uuid4()))
    method = client.calls.dial       # the SDK imports its resources on first use: not part of sent_at..answered_at
    return _sent(rx, "dial", None, options, lambda: method(**options))


def answer(client: Any, call_control_id: str, rx: Receiver | None = None, /, *, stream: bool = False,
           **options: Any) -> Any:
    """``answer`` an incoming call; ``stream=True`` asks for a media stream to ``rx`` as
    :func:`dial` does (the token goes in ``extra_body``: the SDK's ``answer`` has no
    ``stream_auth_token``)."""
    if rx is not None and stream:
        _stream_options(rx, options, token_in_body=True)
    return _call(client, "answer", "answer", call_control_id, rx, options)


def hangup(client: Any, call_control_id: str, rx: Receiver | None = None, /, **options: Any) -> Any:
    """``hangup`` the call (Telnyx then sends ``call.hangup``, after the stops of its stream,
    fork and transcription)."""
    return _call(client, "hangup", "hangup", call_control_id, rx, options)


def start_streaming(client: Any, call_control_id: str, rx: Receiver | None = None, /, *,
                    stream_track: str = "both_tracks", **options: Any) -> Any:
    """``streaming_start`` to ``rx.stream_url`` (with ``rx.stream_auth_token`` if set).

    ``stream_track`` defaults to "both_tracks" (Telnyx's own default is "inbound_track").
    For audio back into the call (``rx.send_audio``) pass ``stream_bidirectional_mode="rtp"``
    (and ``stream_bidirectional_codec``/``_sampling_rate`` unless PCMU at 8 kHz will do).
    """
    options["stream_track"] = stream_track
    if rx is not None:
        _stream_options(rx, options, token_in_body=False)
    return _call(client, "start_streaming", "streaming_start", call_control_id, rx, options)


def stop_streaming(client: Any, call_control_id: str, rx: Receiver | None = None, /, **options: Any) -> Any:
    """``streaming_stop`` (all streams of the call unless ``stream_id`` is given)."""
    return _call(client, "stop_streaming", "streaming_stop", call_control_id, rx, options)


def start_forking(client: Any, call_control_id: str, rx: Receiver | None = None, /, **options: Any) -> Any:
    """``fork_start`` to ``rx.fork_rx``/``rx.fork_tx`` with ``stream_type="decrypted"`` (unless set).

    Plain RTP carries no call id, so before the request the receiver is told to attribute the
    next new RTP sources on its fork ports to this call (``rx.expect_fork``); the claim is
    withdrawn if the request fails. The legacy ``target`` mode (``extra_body={"target": …}``)
    needs no claim: its STREP header carries the call leg id.
    """
    if rx is None or "target" in options.get("extra_body", {}):
        return _call(client, "start_forking", "fork_start", call_control_id, rx, options)
    options.setdefault("rx", rx.fork_rx)
    options.setdefault("tx", rx.fork_tx)
    options.setdefault("stream_type", "decrypted")
    rx.expect_fork(call_control_id)
    try:
        return _call(client, "start_forking", "fork_start", call_control_id, rx, options)
    except Exception:
        rx.withdraw_fork(call_control_id)
        raise


def stop_forking(client: Any, call_control_id: str, rx: Receiver | None = None, /, **options: Any) -> Any:
    """``fork_stop`` with ``stream_type="decrypted"`` (to match start_forking) unless given."""
    options.setdefault("stream_type", "decrypted")
    return _call(client, "stop_forking", "fork_stop", call_control_id, rx, options)


def start_transcription(client: Any, call_control_id: str, rx: Receiver | None = None, /, **options: Any) -> Any:
    """``transcription_start``; results arrive as ``call.transcription`` webhooks (``rx.transcripts``)."""
    return _call(client, "start_transcription", "transcription_start", call_control_id, rx, options)


def stop_transcription(client: Any, call_control_id: str, rx: Receiver | None = None, /, **options: Any) -> Any:
    """``transcription_stop``. The sandbox then sends ``call.transcription.stopped`` (as it does
    when a transcribed call ends; the protocol reference §2.2, "Transcription stopped"), stored
    in ``rx.events`` like any webhook; the SDK has no model for that event, so code that must
    also work with real Telnyx should rely on this command's 200 answer, not on the webhook.
    """
    return _call(client, "stop_transcription", "transcription_stop", call_control_id, rx, options)
