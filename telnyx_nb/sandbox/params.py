"""Request-body validation for every sandbox endpoint, with Telnyx's error codes.

The SDK validates nothing client-side (docs/protocol.md, "REST call-control actions"), so
the emulator must: a wrong enum is 422 ``10032``, a missing required field 422 ``10004``, a
bad URL 422 ``10003``, a value out of range 422 ``10033``, a wrong JSON type 400 ``10015`` —
each with ``source.pointer``.
Fields the sandbox does not act on are still type- and enum-checked, then ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from telnyx_nb.sandbox.errors import ApiError

__all__ = ["validate", "parse_udp_target", "SCHEMAS", "ENGINES"]

Check = Callable[[Any, str], Any]

ENGINES = ("Google", "Telnyx", "Deepgram", "Azure", "xAI", "AssemblyAI", "Speechmatics", "Soniox",
           "Parakeet", "Humain", "Reson8", "Cohere", "A", "B")
_CODECS = ("PCMU", "PCMA", "G722", "OPUS", "AMR-WB", "L16")
_GOOGLE_MODELS = ("latest_long", "latest_short", "command_and_search", "phone_call", "video", "default",
                  "medical_conversation", "medical_dictation")
_MODELS = ("openai/whisper-tiny", "openai/whisper-large-v3-turbo", "deepgram/nova-2", "deepgram/nova-3")
MAX_URL = 2000
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})")
MAX_STRING = 4000


def _type_error(pointer: str, expected: str) -> ApiError:
    return ApiError("10015", f"The value at {pointer} must be {expected}.", pointer=pointer)


def string(max_len: int = MAX_STRING) -> Check:
    def check(value: Any, pointer: str) -> str:
        if not isinstance(value, str):
            raise _type_error(pointer, "a string")
        if len(value) > max_len:
            raise ApiError("10033", f"The value at {pointer} is longer than {max_len} characters.", pointer=pointer)
        return value
    return check


def boolean(value: Any, pointer: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error(pointer, "a boolean")
    return value


def integer(low: int, high: int) -> Check:
    def check(value: Any, pointer: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _type_error(pointer, "an integer")
        if not low <= value <= high:
            raise ApiError("10033", f"The value is outside of allowed range {low} to {high}", pointer=pointer)
        return value
    return check


def enum(*allowed: Any) -> Check:
    def check(value: Any, pointer: str) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise ApiError("10032", f"The value must be one of: {', '.join(map(str, allowed))}.", pointer=pointer)
        return value
    return check


def url(*schemes: str) -> Check:
    def check(value: Any, pointer: str) -> str:
        if not isinstance(value, str):
            raise _type_error(pointer, "a string")
        parts = urlsplit(value) if len(value) <= MAX_URL else None
        if parts is None or parts.scheme.lower() not in schemes or not parts.hostname:
            raise ApiError("10003", f"{pointer[1:]} must be a {'/'.join(schemes)} URL of at most {MAX_URL} characters.",
                           pointer=pointer)
        return value
    return check


def parse_udp_target(value: str) -> tuple[str, int] | None:
    """``"udp:host:port"`` -> ``(host, port)``, or None when it is not one."""
    scheme, _, rest = value.partition(":")
    host, _, port = rest.rpartition(":")
    if scheme.lower() != "udp" or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            return None
    return host, int(port)


def udp_target(value: Any, pointer: str) -> str:
    if not isinstance(value, str):
        raise _type_error(pointer, "a string")
    if parse_udp_target(value) is None:
        raise ApiError("10003", f"{pointer[1:]} must look like udp:host:port.", pointer=pointer)
    return value


def obj(schema: Mapping[str, Check], *, required: tuple[str, ...] = ()) -> Check:
    def check(value: Any, pointer: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _type_error(pointer or "/", "an object")
        for name in required:
            if value.get(name) is None:
                raise ApiError("10004", f"The '{name}' parameter is required and cannot be blank.",
                               pointer=f"{pointer}/{name}")
        out = dict(value)
        for name, field_check in schema.items():
            if value.get(name) is not None:
                out[name] = field_check(value[name], f"{pointer}/{name}")
        return out
    return check


def array(item: Check) -> Check:
    def check(value: Any, pointer: str) -> list[Any]:
        if not isinstance(value, list):
            raise _type_error(pointer, "an array")
        return [item(element, f"{pointer}/{i}") for i, element in enumerate(value)]
    return check


def string_or_strings(value: Any, pointer: str) -> Any:
    return array(string())(value, pointer) if isinstance(value, list) else string()(value, pointer)


_COMMON = {"client_state": string(), "command_id": string()}
_NAME_VALUE = obj({"name": string(), "value": string()}, required=("name",))
_ENGINE_CONFIG = obj({
    "transcription_engine": enum(*ENGINES, *_MODELS),
    "transcription_model": enum(*_MODELS),
    "model": enum(*_GOOGLE_MODELS),
    "language": string(),
    "interim_results": boolean,
    "enable_speaker_diarization": boolean,
    "profanity_filter": boolean,
    "use_enhanced": boolean,
    "smart_format": boolean,
    "hints": array(string()),
    "min_speaker_count": integer(1, 100),
    "max_speaker_count": integer(1, 100),
})
_TRANSCRIPTION = {
    "transcription_engine": enum(*ENGINES),
    "transcription_tracks": enum("inbound", "outbound", "both"),
    "transcription_engine_config": _ENGINE_CONFIG,
}
_STREAMING = {
    "stream_url": url("ws", "wss"),
    "stream_track": enum("inbound_track", "outbound_track", "both_tracks"),
    "stream_codec": enum(*_CODECS, "default"),
    "stream_bidirectional_mode": enum("mp3", "rtp"),
    "stream_bidirectional_codec": enum(*_CODECS),
    "stream_bidirectional_sampling_rate": enum(8000, 16000, 22050, 24000, 48000),
    "stream_bidirectional_target_legs": enum("both", "self", "opposite"),
    "stream_auth_token": string(MAX_STRING),
    "custom_parameters": array(_NAME_VALUE),
    "enable_dialogflow": boolean,
    "dialogflow_config": obj({"analyze_sentiment": boolean, "partial_automated_agent_reply": boolean}),
}
_CALL_SETUP = {
    **_STREAMING,
    "webhook_url": url("http", "https"),
    "webhook_url_method": enum("POST", "GET"),
    "webhook_urls_method": enum("POST", "GET"),
    "transcription": boolean,
    "transcription_config": obj({**_COMMON, **_TRANSCRIPTION}),
    "send_silence_when_idle": boolean,
    "record": enum("record-from-answer"),
    "record_channels": enum("single", "dual"),
    "record_format": enum("wav", "mp3"),
    "record_track": enum("both", "inbound", "outbound"),
    "record_trim": enum("trim-silence"),
    "custom_headers": array(_NAME_VALUE),
}

#: endpoint -> body check (the top-level object)
SCHEMAS: dict[str, Check] = {
    "dial": obj({
        **_COMMON, **_CALL_SETUP,
        "connection_id": string(), "from": string(), "to": string_or_strings,
        "answering_machine_detection": enum("premium", "premium_ios_call_screening_detection", "detect",
                                            "detect_beep", "detect_words", "greeting_end", "disabled"),
        "media_encryption": enum("disabled", "SRTP", "DTLS"),
        "privacy": enum("id", "none"),
        "sip_region": enum("US", "Europe", "Canada", "Australia", "Middle East"),
        "sip_transport_protocol": enum("UDP", "TCP", "TLS"),
        "supervisor_role": enum("barge", "whisper", "monitor"),
        "stream_establish_before_call_originate": boolean,
        "timeout_secs": integer(5, 600),
        "time_limit_secs": integer(30, 14400),
    }, required=("connection_id", "to", "from")),
    "answer": obj({**_COMMON, **_CALL_SETUP, "preferred_codecs": enum("G722,PCMU,PCMA,G729,OPUS,VP8,H264")}),
    "hangup": obj({**_COMMON, "custom_headers": array(_NAME_VALUE), "reason": string()}),
    "streaming_start": obj({**_COMMON, **_STREAMING}, required=("stream_url",)),
    "streaming_stop": obj({**_COMMON, "stream_id": string()}),
    "fork_start": obj({**_COMMON, "rx": udp_target, "tx": udp_target, "target": udp_target,
                       "stream_type": enum("decrypted")}),
    "fork_stop": obj({**_COMMON, "stream_type": enum("raw", "decrypted")}),
    "transcription_start": obj({**_COMMON, **_TRANSCRIPTION}),
    "transcription_stop": obj(_COMMON),
}


def validate(endpoint: str, body: Any) -> dict[str, Any]:
    """Check ``body`` for ``endpoint``; return it (a new dict) or raise ApiError."""
    checked = SCHEMAS[endpoint](body, "")
    if endpoint == "fork_start" and checked.get("target") is None:
        for side in ("rx", "tx"):
            if checked.get(side) is None:
                raise ApiError("10004", f"Either 'target' or both 'rx' and 'tx' are required; '{side}' is missing.",
                               pointer=f"/{side}")
    return checked
