"""Fuzzing every parse entry point of ``telnyx_nb.wire``: bytes, text and structured-but-hostile input.

The only outcomes allowed are a parsed value whose every number is within its bound, or the
module's documented ProtocolError subclass (FrameError, WebhookError, RtpError) with a
documented reason and a short detail; no other exception type. The StreamConnection state
machine is fed arbitrary message sequences. Profiles: ``tests/fuzzing.py`` (``ci`` is
derandomized; ``HYPOTHESIS_PROFILE=fuzz`` is the longer random search ``.ci/run`` runs).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json

import orjson
import pytest
from fuzzing import EDGE_INTS, counter_tokens, deep_json, fuzz_settings, hostile_text, json_values, nested
from hypothesis import given, note
from hypothesis import strategies as st

from telnyx_nb.wire import media, rtp, stream, telephone_event, webhooks
from telnyx_nb.wire.errors import INT64_MAX, INT64_MIN, ProtocolError, Reason

#: The longest detail an error may carry: it is stored in an errors table and shown to a user.
MAX_DETAIL = 400

FRAME_REASONS = {Reason.MALFORMED_JSON, Reason.NOT_AN_OBJECT, Reason.UNKNOWN_EVENT, Reason.MISSING_FIELD,
                 Reason.BAD_FIELD, Reason.OUT_OF_RANGE, Reason.INVALID_BASE64}
SIGNATURE_REASONS = {Reason.MISSING_HEADER, Reason.BAD_TIMESTAMP, Reason.STALE, Reason.FUTURE, Reason.BAD_BASE64,
                     Reason.BAD_SIGNATURE}
ENVELOPE_REASONS = {Reason.MALFORMED_JSON, Reason.BAD_ENVELOPE, Reason.OUT_OF_RANGE}
RTP_REASONS = {Reason.TRUNCATED, Reason.BAD_VERSION, Reason.BAD_PADDING, Reason.NOT_STREP, Reason.BAD_HEADER_LENGTH}


def outcome(parse, data, error_type, reasons):
    """``parse(data)``: the value, or None after checking the error is the documented kind."""
    try:
        return parse(data)
    except error_type as exc:
        assert exc.reason in reasons, exc.reason
        assert isinstance(exc.detail, str) and len(exc.detail) <= MAX_DETAIL, exc.detail[:100]
        return None


# -- media frames ------------------------------------------------------------------------------

def check_frame(frame: media.TelnyxFrame) -> None:
    """Every number within its bound, every text a str; and the frame survives its own round trip."""
    for f in dataclasses.fields(frame):
        value = getattr(frame, f.name)
        if type(value) is int:
            assert (INT64_MIN if isinstance(frame, media.ErrorFrame) else 0) <= value <= INT64_MAX, f.name
        assert type(value) is not bool and type(value) is not float, f.name
    if isinstance(frame, media.Start):
        fmt = frame.media_format
        assert 0 < fmt.sample_rate <= media.MAX_SAMPLE_RATE and 0 < fmt.channels <= media.MAX_CHANNELS
        assert all(type(k) is str and type(v) is str for k, v in frame.custom_parameters.items())
    if isinstance(frame, media.Media):
        assert frame.track in ("inbound", "outbound") and type(frame.payload) is bytes
    assert media.parse_frame(media.dumps(frame)) == frame


def parse_both(text):
    """parse_frame (with its msgspec fast path) and the general parser agree on every input."""
    results = []
    for parse in (media.parse_frame, media._parse_general):
        try:
            results.append(("frame", parse(text)))
        except media.FrameError as exc:
            assert exc.reason in FRAME_REASONS and len(exc.detail) <= MAX_DETAIL, (exc.reason, exc.detail[:80])
            assert exc.event is None or type(exc.event) is str
            assert exc.stream_id is None or type(exc.stream_id) is str
            results.append(("error", exc.reason, exc.detail, exc.event, exc.stream_id))
    assert results[0] == results[1]
    if results[0][0] == "frame":
        check_frame(results[0][1])
    return results[0]


def js(value) -> str:
    return json.dumps(value, ensure_ascii=False)


@st.composite
def hostile_frames(draw):
    """A frame of each event type, every field either right or replaced by something hostile."""
    event = draw(st.sampled_from(["media", "start", "stop", "dtmf", "mark", "error", "connected",
                                  "clear", "", "MEDIA"]))

    def field(good: str) -> str:
        return draw(st.one_of(st.just(good), counter_tokens, json_values.map(js), deep_json))

    def maybe(key: str, good: str) -> str:
        choice = draw(st.integers(0, 9))
        if choice == 0:
            return ""
        return f'"{key}":{good if choice > 3 else field(good)},'

    payload = base64.b64encode(draw(st.binary(max_size=40))).decode()
    bodies = {
        "media": maybe("track", '"inbound"') + maybe("chunk", '"2"') + maybe("timestamp", '"20"')
        + maybe("payload", js(payload)),
        "start": maybe("call_control_id", '"v3:c"') + maybe("media_format", "{" + (
            maybe("encoding", '"PCMU"') + maybe("sample_rate", "8000") + maybe("channels", "1")).rstrip(",") + "}")
        + maybe("custom_parameters", '{"k":"v"}') + maybe("tags", '["t"]') + maybe("from", '"+1555"'),
        "stop": maybe("call_control_id", '"v3:c"'),
        "dtmf": maybe("digit", '"5"'),
        "mark": maybe("name", '"m"'),
        "error": maybe("code", "100003") + maybe("title", '"t"') + maybe("detail", '"d"'),
        "connected": maybe(media.AUTH_TOKEN_HEADER, '"tok"'),
    }
    body = "{" + bodies.get(event, "").rstrip(",") + "}"
    inner = {"start": "start", "stop": "stop", "dtmf": "dtmf", "mark": "mark", "error": "payload",
             "connected": "connected"}.get(event, "media")
    members = (maybe("event", js(event)) + maybe("sequence_number", '"3"') + maybe("stream_id", '"s-1"')
               + maybe("version", '"1.0.0"') + maybe(inner, body))
    return "{" + members.rstrip(",") + "}"


@fuzz_settings(400)
@given(hostile_frames())
def test_media_frames_with_hostile_fields_parse_or_raise_frame_error(text):
    note(text[:500])
    parse_both(text)
    parse_both(text.encode("utf-8", "surrogatepass"))


@fuzz_settings(400)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300), json_values.map(js), deep_json))
def test_media_frames_from_arbitrary_bytes_and_text(data):
    parse_both(data)
    outcome(media.parse_app_frame, data, media.FrameError, FRAME_REASONS)


@pytest.mark.parametrize("depth", [999, 1000, 1023, 1024, 1025])
@pytest.mark.parametrize("where", ["start", "custom", "track", "code", "chunk", "media"])
def test_deeply_nested_values_are_frame_errors_not_recursion_errors(where, depth):
    """Before: RecursionError out of parse_frame (the error detail took the repr of the value)."""
    deep = nested(depth)
    text = {
        "start": f'{{"event":"start","stream_id":"s","start":{deep}}}',
        "custom": ('{"event":"start","stream_id":"s","start":{"call_control_id":"c","media_format":'
                   f'{{"encoding":"PCMU","sample_rate":"8000"}},"custom_parameters":{{"k":{deep}}}}}}}'),
        "track": f'{{"event":"media","stream_id":"s","media":{{"track":{deep}}}}}',
        "code": f'{{"event":"error","payload":{{"code":{deep}}}}}',
        "chunk": f'{{"event":"media","stream_id":"s","media":{{"track":"inbound","chunk":{deep}}}}}',
        "media": f'{{"event":"media","stream_id":"s","media":{deep}}}',
    }[where]
    result = parse_both(text)
    assert result[0] == "error"
    # orjson parses 1,024 levels in all: past that (with the frame's own levels) it is not JSON
    assert result[1] in ({Reason.BAD_FIELD} if depth <= 1000 else {Reason.BAD_FIELD, Reason.MALFORMED_JSON})


@pytest.mark.parametrize("token", ["9223372036854775808", '"9223372036854775808"', "18446744073709551616",
                                   '"' + "9" * 5000 + '"', "1e400", "-1", '"-1"', "1.5"])
@pytest.mark.parametrize("key", ["sequence_number", "chunk", "timestamp"])
def test_counters_that_do_not_fit_int64_are_refused(key, token):
    fields = {"sequence_number": '"1"', "chunk": '"1"', "timestamp": '"0"', key: token}
    text = (f'{{"event":"media","sequence_number":{fields["sequence_number"]},"stream_id":"s","media":'
            f'{{"track":"inbound","chunk":{fields["chunk"]},"timestamp":{fields["timestamp"]},"payload":""}}}}')
    result = parse_both(text)
    assert result[0] == "error" and result[1] in (Reason.OUT_OF_RANGE, Reason.BAD_FIELD, Reason.MALFORMED_JSON)


@pytest.mark.parametrize("rate", ["0", "384001", "9223372036854775807", "99999999999999999999", "-8000", "8000.0"])
def test_sample_rates_out_of_range_are_refused(rate):
    text = ('{"event":"start","stream_id":"s","start":{"call_control_id":"c","media_format":'
            f'{{"encoding":"PCMU","sample_rate":"{rate}"}}}}}}')
    assert parse_both(text)[0] == "error"


# -- webhooks -------------------------------------------------------------------------------------

SIGNER = webhooks.Signer()
NOW = 1_700_000_000


@st.composite
def hostile_envelopes(draw):
    """Telnyx's envelope with any field replaced by any JSON value, or deep nesting."""
    data = {"event_type": "call.answered", "id": "e-1", "occurred_at": "2026-01-01T00:00:00.000000Z",
            "payload": {"call_control_id": "v3:c", "confidence": 0.5}, "record_type": "event"}
    meta = {"attempt": 1, "delivered_to": "http://x"}
    for part in (data, meta):
        for key in list(part):
            choice = draw(st.integers(0, 5))
            if choice == 0:
                del part[key]
            elif choice == 1:
                part[key] = draw(json_values)
    envelope = {"data": data, "meta": meta}
    text = js(envelope)
    if draw(st.integers(0, 4)) == 0:   # a deep value spliced into the payload
        text = text.replace('"payload": {', '"payload": {"deep": ' + draw(deep_json) + ", ", 1)
    return text


def check_event(event: webhooks.WebhookEvent) -> None:
    assert type(event.event_type) is str and type(event.id) is str and type(event.occurred_at) is str
    assert type(event.record_type) is str and type(event.payload) is dict
    assert type(event.attempt) is int and INT64_MIN <= event.attempt <= INT64_MAX
    assert event.delivered_to is None or type(event.delivered_to) is str
    # What the store does with a payload must work on every accepted one.
    copy.deepcopy(event.payload)
    orjson.dumps(event.payload)


@fuzz_settings(300)
@given(st.one_of(hostile_envelopes(), st.binary(max_size=300), st.text(max_size=300), json_values.map(js),
                 deep_json))
def test_webhook_bodies_parse_or_raise_malformed(body):
    for data in (body, body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body):
        event = outcome(webhooks.parse_event, data, webhooks.MalformedWebhookError, ENVELOPE_REASONS)
        if event is not None:
            check_event(event)


@pytest.mark.parametrize("depth", [64, 65, 254, 255, 1000, 1023])
def test_webhook_payloads_nested_too_deep_are_refused(depth):
    """Before: accepted, and then ``rx.events`` raised RecursionError (deepcopy) and the recording
    could not encode the row (orjson encodes 254 levels)."""
    body = '{"data":{"event_type":"x","id":"i","payload":{"a":' + nested(depth - 3, kind="object") + "}}}"
    if depth <= webhooks.MAX_DEPTH:
        check_event(webhooks.parse_event(body))
    else:
        with pytest.raises(webhooks.MalformedWebhookError) as caught:
            webhooks.parse_event(body)
        assert caught.value.reason is Reason.BAD_ENVELOPE and caught.value.http_status == 400


header_names = st.sampled_from([webhooks.SIGNATURE_HEADER, webhooks.TIMESTAMP_HEADER, "Telnyx-Timestamp",
                                "TELNYX-SIGNATURE-ED25519", "content-type", "x"])
header_values = st.one_of(
    hostile_text,
    st.sampled_from(EDGE_INTS).map(str),
    st.integers(NOW - 400, NOW + 400).map(str),
    st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=80).map(lambda b: b.decode("utf-8", "surrogateescape")),  # as aiohttp gives bytes
)


@fuzz_settings(300)
@given(st.dictionaries(header_names, header_values, max_size=4), st.binary(max_size=100),
       st.sampled_from([None, "good", "swap"]))
def test_signature_headers_of_any_content_verify_or_raise(headers, body, real):
    if real is not None:   # start from a real signature, then let hypothesis's headers override some
        signed = SIGNER.sign(body, NOW)
        if real == "swap":
            signed = {k: v[::-1] for k, v in signed.items()}
        headers = {**signed, **headers}
    try:
        webhooks.verify(body, headers, SIGNER.public_key, now=NOW)
    except webhooks.SignatureVerificationError as exc:
        assert exc.reason in SIGNATURE_REASONS and len(exc.detail) <= MAX_DETAIL
        assert exc.http_status == 401
    else:   # accepted: only the signer's signature of this body and timestamp, within the window
        def header(name):
            return next(v for k, v in headers.items() if k.lower() == name)
        timestamp = header(webhooks.TIMESTAMP_HEADER).strip()
        assert abs(int(timestamp) - NOW) <= webhooks.TOLERANCE_SECONDS
        expected = SIGNER._private_key.sign(timestamp.encode("ascii") + b"|" + body)   # Ed25519 is deterministic
        assert base64.b64decode(header(webhooks.SIGNATURE_HEADER)) == expected


@pytest.mark.parametrize("timestamp", ["9" * 13, "9" * 5000, "1" + "0" * 400, "-1", "1e9", "\u0661" * 10,
                                       "1700000000.0", " 1700000000 ", ""])
def test_timestamps_of_any_length_are_refused_with_a_short_detail(timestamp):
    body = b"{}"
    headers = {**SIGNER.sign(body, NOW), webhooks.TIMESTAMP_HEADER: timestamp}
    if timestamp.strip() == str(NOW):
        webhooks.verify(body, headers, SIGNER.public_key, now=NOW)
        return
    with pytest.raises(webhooks.SignatureVerificationError) as caught:
        webhooks.verify(body, headers, SIGNER.public_key, now=NOW)
    assert len(caught.value.detail) <= MAX_DETAIL     # before: the whole header, 5,000 characters


# -- RTP and STREP ----------------------------------------------------------------------------------

def check_packet(packet: rtp.ForkPacket, size: int) -> None:
    p = packet.rtp
    assert 0 <= p.payload_type < 128 and 0 <= p.sequence_number < 1 << 16
    assert 0 <= p.timestamp < 1 << 32 and 0 <= p.ssrc < 1 << 32
    assert 0 <= p.padding <= 255 and len(p.csrcs) <= 15 and len(p.payload) <= size
    if packet.strep is not None:
        assert packet.strep.leg in ("A", "B") and packet.strep.direction in ("received", "transmitted")
        assert rtp.STREP_HEADER_SIZE <= packet.strep.header_length <= size


@st.composite
def rtp_like(draw):
    """Datagrams that start like RTP or STREP (so parsing gets past the first byte), then anything."""
    first = draw(st.integers(0, 255)) | draw(st.sampled_from([0x80, 0xC0, 0x00]))
    rest = draw(st.binary(max_size=200))
    data = bytes([first]) + rest
    if first >> 6 == 0b11 and draw(st.booleans()):   # STREP with a plausible header, then RTP-ish
        header = bytes([first, draw(st.sampled_from([0, 23, 24, 25, 255]))]) + bytes(22)
        data = header + bytes([0x80 | draw(st.integers(0, 0x3F))]) + rest
    return data


@fuzz_settings(500)
@given(st.one_of(st.binary(max_size=1600), rtp_like()))
def test_datagrams_of_any_length_parse_or_raise_rtp_error(data):
    packet = outcome(rtp.parse_fork_packet, data, rtp.RtpError, RTP_REASONS)
    if packet is not None:
        check_packet(packet, len(data))
    outcome(rtp.parse_rtp, data, rtp.RtpError, RTP_REASONS)
    outcome(rtp.parse_strep, memoryview(data), rtp.RtpError, RTP_REASONS)


@fuzz_settings(300)
@given(st.builds(rtp.RtpPacket, st.integers(0, 127), st.integers(0, 65535), st.integers(0, 2**32 - 1),
                 st.integers(0, 2**32 - 1), st.binary(max_size=200), st.booleans(),
                 st.lists(st.integers(0, 2**32 - 1), max_size=15).map(tuple),
                 st.none() | st.builds(rtp.RtpExtension, st.integers(0, 65535),
                                       st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
                 st.integers(0, 255)))
def test_built_packets_parse_back(packet):
    data = rtp.build_rtp(packet)
    assert rtp.parse_rtp(data) == packet
    for cut in (0, 1, 11, len(data) - 1):   # and every truncation is an RtpError, not an IndexError
        outcome(rtp.parse_rtp, data[:cut], rtp.RtpError, RTP_REASONS)


# -- the media-stream state machine ------------------------------------------------------------

TOKEN = "tok-\u00e9"
SIDS = ["s-1", "s-2", "\U0001f600", ""]


def good_frames(sid: str) -> list[str]:
    fmt = media.MediaFormat("PCMU", 8000)
    return [
        media.dumps(media.Connected(auth_token=TOKEN)), media.dumps(media.Connected(auth_token="wrong")),
        media.dumps(media.Connected()),
        media.dumps(media.Start(sid, 1, "v3:c", fmt)),
        media.dumps(media.Media(sid, 2, "inbound", 1, 0, b"\xff" * 160)),
        media.dumps(media.Dtmf(sid, 3, "1")), media.dumps(media.Mark(sid, 4, "m")),
        media.dumps(media.Stop(sid, 5, "v3:c")), media.dumps(media.ErrorFrame.for_code(100003, sid)),
    ]


messages = st.one_of(
    st.tuples(st.just("text"), st.sampled_from(SIDS).flatmap(lambda sid: st.sampled_from(good_frames(sid)))),
    st.tuples(st.just("text"), st.one_of(hostile_frames(), st.text(max_size=60))),
    st.tuples(st.just("text"), st.integers(0, 3).map(lambda n: " " * (64 + n))),   # around the size limit
    st.tuples(st.just("binary"), st.binary(max_size=20)),
)


@fuzz_settings(250)
@given(st.sampled_from([None, TOKEN]), st.sampled_from([None, TOKEN, "wrong", "", "\udcff"]),
       st.lists(messages, max_size=25), st.sampled_from(list(stream.EndReason)))
def test_stream_connection_fed_any_sequence(token, header, sequence, end):
    conn = stream.StreamConnection(auth_token=token, max_message_size=66)
    refused = conn.open(header)
    assert refused is None or isinstance(refused, stream.Refused)
    allowed = (media.Media, media.Dtmf, media.Mark, media.ErrorFrame, media.Connected, stream.Started,
               stream.Stopped, stream.Rejected, stream.Refused)
    was_refused = refused is not None
    for kind, data in sequence:
        event = conn.receive_text(data) if kind == "text" else conn.receive_binary(data)
        assert isinstance(event, allowed), event
        if was_refused:     # refusal is final
            assert isinstance(event, stream.Refused)
        if token is not None and not conn.authenticated:   # nothing gets through without the token
            assert isinstance(event, stream.Refused)
        if kind == "text" and len(data) > 66 and not isinstance(event, stream.Refused):
            assert isinstance(event, stream.Rejected) and event.reason is Reason.OVERSIZED
        if isinstance(event, stream.Rejected):
            assert event.stream_id is None or type(event.stream_id) is str
        if isinstance(event, (media.Media, media.Dtmf, media.Mark, stream.Stopped)):
            assert conn.stream_id == (event.frame if isinstance(event, stream.Stopped) else event).stream_id
        was_refused = was_refused or isinstance(event, stream.Refused)
    carried, ended = conn.stream_id, conn.ended
    closing = conn.close(end)
    assert closing == (None if carried is None or ended else stream.Ended(carried, end))
    assert conn.close(end) is None
    with pytest.raises(RuntimeError):   # a caller bug, not input: the one other exception
        conn.receive_text("{}")


@fuzz_settings(200)
@given(st.one_of(hostile_frames(), st.text(max_size=200), json_values.map(js), deep_json,
                 st.binary(max_size=100).map(lambda b: b.decode("latin-1"))))
def test_the_sandbox_side_answers_any_application_frame(text):
    sender = stream.StreamSender("s", "v3:c")
    answer = sender.receive_text(text)
    assert isinstance(answer, (media.AppMedia, media.AppMark, media.Clear, media.ErrorFrame))
    if isinstance(answer, media.ErrorFrame):
        assert answer.code in media.ERROR_CODES


# -- long counters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    '{"event":"media","stream_id":"s","media":{"track":"inbound","chunk":"' + "9" * 100_000 + '"}}',
    '{"event":"start","stream_id":"s","start":{"call_control_id":"c","media_format":{"encoding":"PCMU",'
    '"sample_rate":"' + "0" * 100_000 + '8000"}}}',
])
def test_a_long_counter_is_refused_or_read_without_converting_all_of_it(text):
    """No string of any length reaches ``int()`` (Python refuses more than 4,300 digits with
    ValueError): the leading-zero counter is read, the long one refused."""
    result = parse_both(text)
    assert result[0] == ("error" if '"9' in text else "frame")
    with pytest.raises(ProtocolError):
        media.parse_frame(text.replace("inbound", "sideways").replace('"PCMU"', "1"))


# -- RFC 4733 telephone events and RFC 3389 comfort noise ----------------------------------------

@fuzz_settings(300)
@given(st.binary(max_size=40))
def test_telephone_event_payloads_of_any_length(payload):
    event = outcome(telephone_event.parse, payload, telephone_event.TelephoneEventError, {Reason.TRUNCATED})
    assert (event is None) == (len(payload) < 4)
    if event is not None:
        assert 0 <= event.event <= 255 and 0 <= event.volume <= 63 and 0 <= event.duration <= 0xFFFF
        assert event.digit is None or event.digit in telephone_event.DIGITS
        assert telephone_event.parse(telephone_event.build(event)) == event
    assert 0 <= telephone_event.comfort_noise_level(payload) <= 127


@fuzz_settings(300)
@given(st.one_of(hostile_text, st.builds(lambda s: "telephone-event/" + s, hostile_text),
                 st.sampled_from(["telephone-event/\u00b2", "telephone-event/" + "9" * 5000,
                                  "telephone-event/" + "0" * 7 + "1" + "0" * 5000, "TELEPHONE-EVENT/16000"])))
def test_payload_type_names_of_any_content_give_a_clock_rate_or_none(name):
    """Before: ValueError out of int() for "telephone-event/²" and for 4,301 digits."""
    rate = telephone_event.event_clock_rate(name)
    assert rate is None or 0 < rate <= 1_000_000
