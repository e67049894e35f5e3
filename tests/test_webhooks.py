"""Webhook envelope and Ed25519 signatures, cross-checked with the telnyx SDK's own verifier."""

import base64
import json
import time

import pytest
import telnyx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from telnyx_nb.wire import webhooks

PAYLOAD = {"call_control_id": "v3:abc", "client_state": None, "stream_url": "ws://127.0.0.1:8765/stream"}


@pytest.fixture(scope="module")
def signer():
    return webhooks.Signer()


def signed(signer, event_type="streaming.started", timestamp=None):
    body = webhooks.encode_body(webhooks.build_envelope(event_type, PAYLOAD, delivered_to="http://127.0.0.1/webhooks"))
    return body, signer.sign(body, timestamp)


def test_envelope_has_telnyx_shape():
    envelope = webhooks.build_envelope("call.fork.started", {"a": 1}, attempt=2, delivered_to="http://x/webhooks")
    assert set(envelope) == {"data", "meta"}
    assert set(envelope["data"]) == {"event_type", "id", "occurred_at", "payload", "record_type"}
    assert envelope["data"]["record_type"] == "event"
    assert envelope["meta"] == {"attempt": 2, "delivered_to": "http://x/webhooks"}
    occurred = envelope["data"]["occurred_at"]
    assert occurred.endswith("Z") and len(occurred.split(".")[1]) == 7  # microseconds + Z


def test_our_signature_verifies_with_the_sdk(signer):
    body, headers = signed(signer)
    client = telnyx.Telnyx(api_key="KEY_TEST", public_key=signer.public_key)
    event = client.webhooks.unwrap(body.decode("utf-8"), headers=headers)
    assert event.data.event_type == "streaming.started"


def test_sdk_rejects_our_signature_over_another_body(signer):
    body, headers = signed(signer)
    client = telnyx.Telnyx(api_key="KEY_TEST", public_key=signer.public_key)
    with pytest.raises(ValueError):
        client.webhooks.unwrap(body.decode("utf-8").replace("started", "stopped"), headers=headers)


def test_signature_made_as_the_protocol_reference_describes_verifies_with_ours():
    private_key = Ed25519PrivateKey.generate()
    public_b64 = base64.b64encode(
        private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    body = json.dumps({"data": {"event_type": "call.transcription", "id": "1",
                                "occurred_at": "2026-01-01T12:00:00.000000Z",
                                "payload": {"call_control_id": "v3:abc"}, "record_type": "event"},
                       "meta": {"attempt": 1}})
    ts = str(int(time.time()))
    headers = {"Telnyx-Signature-Ed25519": base64.b64encode(private_key.sign(f"{ts}|{body}".encode())).decode(),
               "Telnyx-Timestamp": ts}
    webhooks.verify(body.encode(), headers, public_b64)
    webhooks.verify(body.encode(), headers, base64.b64decode(public_b64))  # raw 32-byte key too
    assert webhooks.parse_event(body.encode()).event_type == "call.transcription"


def reason_for(body, headers, key, **kwargs):
    with pytest.raises(webhooks.SignatureVerificationError) as info:
        webhooks.verify(body, headers, key, **kwargs)
    return info.value.reason


def test_tampered_body_is_rejected(signer):
    body, headers = signed(signer)
    assert reason_for(body.replace(b"v3:abc", b"v3:abd"), headers, signer.public_key) == "bad_signature"


def test_wrong_key_is_rejected(signer):
    body, headers = signed(signer)
    assert reason_for(body, headers, webhooks.Signer().public_key) == "bad_signature"


def test_changed_timestamp_breaks_the_signature(signer):
    body, headers = signed(signer)
    headers = {**headers, webhooks.TIMESTAMP_HEADER: str(int(headers[webhooks.TIMESTAMP_HEADER]) + 1)}
    assert reason_for(body, headers, signer.public_key) == "bad_signature"


def test_stale_and_future_timestamps_are_rejected_at_the_300_s_window(signer):
    now = 1_800_000_000
    body, headers = signed(signer, timestamp=now - 301)
    assert reason_for(body, headers, signer.public_key, now=now) == "stale"
    body, headers = signed(signer, timestamp=now + 301)
    assert reason_for(body, headers, signer.public_key, now=now) == "future"
    for edge in (now - 299, now + 299):
        body, headers = signed(signer, timestamp=edge)
        webhooks.verify(body, headers, signer.public_key, now=now)


@pytest.mark.parametrize("missing", [webhooks.SIGNATURE_HEADER, webhooks.TIMESTAMP_HEADER])
def test_missing_headers_are_rejected(signer, missing):
    body, headers = signed(signer)
    del headers[missing]
    assert reason_for(body, headers, signer.public_key) == "missing_header"


@pytest.mark.parametrize("signature", ["not base64!", "é", "\u0661\u0662"])
def test_bad_base64_signature_is_rejected(signer, signature):
    body, headers = signed(signer)
    assert reason_for(body, {**headers, webhooks.SIGNATURE_HEADER: signature}, signer.public_key) == "bad_base64"


@pytest.mark.parametrize("timestamp", ["12.5", "", "-5", "\u00b2", "\u0661\u0662\u0663", "1e9"])
def test_bad_timestamp_is_rejected(signer, timestamp):
    body, headers = signed(signer)
    assert reason_for(body, {**headers, webhooks.TIMESTAMP_HEADER: timestamp}, signer.public_key) == "bad_timestamp"


@given(st.dictionaries(st.sampled_from([webhooks.SIGNATURE_HEADER, webhooks.TIMESTAMP_HEADER, "x"]),
                       st.text(max_size=100)))
def test_arbitrary_header_values_fail_closed_with_a_reason(headers):
    with pytest.raises(webhooks.SignatureVerificationError) as info:
        webhooks.verify(b"{}", headers, webhooks.Signer().public_key)
    assert info.value.reason in {"missing_header", "bad_timestamp", "stale", "future", "bad_base64", "bad_signature"}


def test_header_names_are_case_insensitive(signer):
    body, headers = signed(signer)
    webhooks.verify(body, {k.upper(): v for k, v in headers.items()}, signer.public_key)


def test_verification_error_is_a_value_error_with_a_message(signer):
    body, headers = signed(signer, timestamp=1)
    with pytest.raises(ValueError, match="stale: timestamp is"):
        webhooks.verify(body, headers, signer.public_key)


def test_bad_public_key_is_a_configuration_error():
    with pytest.raises(ValueError, match="32 bytes"):
        webhooks.load_public_key(base64.b64encode(b"short").decode())


def test_parse_event_reads_data_and_meta():
    body = webhooks.encode_body(webhooks.build_envelope("call.hangup", {"x": 1}, event_id="e1", attempt=3))
    event = webhooks.parse_event(body)
    assert (event.event_type, event.id, event.payload, event.attempt) == ("call.hangup", "e1", {"x": 1}, 3)


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "bad_envelope"),
        (b'{"data": 5}', "bad_envelope"),
        (b'{"data": {"event_type": "x"}}', "bad_envelope"),
        (b'{"data": {"event_type": "x", "id": "1", "payload": [1]}}', "bad_envelope"),
    ],
)
def test_malformed_bodies_raise_malformed_webhook_error(body, reason):
    with pytest.raises(webhooks.MalformedWebhookError) as info:
        webhooks.parse_event(body)
    assert info.value.reason == reason


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bodies_raise_only_malformed_webhook_error(body):
    try:
        event = webhooks.parse_event(body)
    except webhooks.MalformedWebhookError as exc:
        assert exc.reason in {"malformed_json", "bad_envelope"}
    else:
        assert isinstance(event.event_type, str) and isinstance(event.payload, dict)
