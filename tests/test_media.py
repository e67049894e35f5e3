"""Media-stream frames: the protocol reference's examples, round trips and fuzzing."""

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telnyx_nb.wire import media

SID = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"

# The frame examples of docs/protocol.md, "Media-stream frames from Telnyx" and "... from the application".
REFERENCE_EXAMPLES = {
    "connected": '{"event":"connected","version":"1.0.0"}',
    "connected_token": '{"event":"connected","version":"1.0.0",'
                       '"connected":{"x-telnyx-streaming-auth-token":"your-auth-token"}}',
    "start": """{"event":"start","sequence_number":"1","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
 "start":{"user_id":"3E6F995F-85F7-4705-9741-53B116D28237",
          "call_control_id":"v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",
          "call_session_id":"ff55a038-6f5d-11ef-9692-02420aeffb1f",
          "from":"+13122010094","to":"+13122123456","tags":["TAG1","TAG2"],
          "client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d",
          "custom_parameters":{"customer_id":"customer_123"},
          "media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}}}""",
    "media": """{"event":"media","sequence_number":"4","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
 "media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"no+JhoaJjpzSHxAKBgYJDhtE"}}""",
    "stop": """{"event":"stop","sequence_number":"5","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
 "stop":{"user_id":"3E6F995F-85F7-4705-9741-53B116D28237",
         "call_control_id":"v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"}}""",
    "dtmf": '{"event":"dtmf","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC",'
            '"occurred_at":"2025-06-05T08:54:19.698408Z",\n'
            ' "sequence_number":"5","dtmf":{"digit":"1"}}',
    "mark": '{"event":"mark","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC","sequence_number":"5",'
            '"mark":{"name":"some_mark_name"}}',
    "error": '{"event":"error","payload":{"code":100003,"title":"malformed_frame",'
             '"detail":"Received frame was not formed correctly"},\n'
             ' "stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC"}',
    "mark_echo": '{"event": "mark", "stream_id": "s", "sequence_number": "12", "mark": {"name": "greeting-done"}}',
}
APP_EXAMPLES = {
    "media": '{"event":"media","media":{"payload":"no+JhoaJjpzSHxAKBgYJDhtE"}}',
    "mark": '{"event":"mark","mark":{"name":"greeting-done"}}',
    "clear": '{"event":"clear"}',
}


@pytest.mark.parametrize("name", sorted(REFERENCE_EXAMPLES))
def test_every_reference_example_parses_and_rebuilds_to_the_same_json(name):
    text = REFERENCE_EXAMPLES[name]
    frame = media.parse_frame(text)
    assert json.loads(media.dumps(frame)) == json.loads(text)


def test_reference_start_fields_are_typed():
    start = media.parse_frame(REFERENCE_EXAMPLES["start"])
    assert isinstance(start, media.Start)
    assert start.sequence_number == 1 and start.stream_id == SID
    assert start.media_format == media.MediaFormat("PCMU", 8000, 1)
    assert start.custom_parameters == {"customer_id": "customer_123"}
    assert start.from_ == "+13122010094" and start.tags == ("TAG1", "TAG2")


def test_reference_media_counters_become_ints_and_payload_bytes():
    frame = media.parse_frame(REFERENCE_EXAMPLES["media"])
    assert (frame.sequence_number, frame.chunk, frame.timestamp, frame.track) == (4, 2, 5, "inbound")
    assert frame.payload == base64.b64decode("no+JhoaJjpzSHxAKBgYJDhtE")


def test_reference_connected_token_and_error_code():
    assert media.parse_frame(REFERENCE_EXAMPLES["connected_token"]).auth_token == "your-auth-token"
    error = media.parse_frame(REFERENCE_EXAMPLES["error"])
    assert (error.code, error.title, error.stream_id) == (100003, "malformed_frame", SID)
    assert media.ErrorFrame.for_code(100004, SID) == media.ErrorFrame(
        SID, 100004, "invalid_media", "Media provided was not base64 encoded")


@pytest.mark.parametrize("name", sorted(APP_EXAMPLES))
def test_app_examples_parse_and_rebuild(name):
    frame = media.parse_app_frame(APP_EXAMPLES[name])
    assert json.loads(media.dumps(frame)) == json.loads(APP_EXAMPLES[name])


counters = st.integers(0, 2**40)
texts = st.text(max_size=30)
media_frames = st.builds(media.Media, texts, counters, st.sampled_from(["inbound", "outbound"]), counters, counters,
                         st.binary(max_size=640))
telnyx_frames = st.one_of(
    st.builds(media.Connected, texts, st.none() | texts),
    st.builds(
        media.Start, texts, counters, texts,
        st.builds(media.MediaFormat, st.sampled_from(["PCMU", "PCMA", "L16"]), st.sampled_from([8000, 16000]),
                  st.integers(1, 2)),
        st.none() | texts, st.none() | texts, st.none() | texts, st.none() | texts,
        st.lists(texts, max_size=3).map(tuple), st.none() | texts, st.dictionaries(texts, texts, max_size=3),
    ),
    media_frames,
    st.builds(media.Stop, texts, counters, texts, st.none() | texts),
    st.builds(media.Dtmf, texts, counters, st.sampled_from(list("0123456789*#ABCD")), st.none() | texts),
    st.builds(media.Mark, texts, counters, texts),
    st.builds(media.ErrorFrame, st.none() | texts, st.sampled_from(sorted(media.ERROR_CODES)), texts, texts),
)
app_frames = st.one_of(st.builds(media.AppMedia, st.binary(max_size=640)), st.builds(media.AppMark, texts),
                       st.just(media.Clear()))


@given(telnyx_frames)
def test_build_parse_round_trip(frame):
    assert media.parse_frame(media.dumps(frame)) == frame
    assert media.parse_frame(media.dumps(frame).encode()) == frame


@given(app_frames)
def test_app_build_parse_round_trip(frame):
    assert media.parse_app_frame(media.dumps(frame)) == frame


def test_wire_counters_are_strings():
    frame = json.loads(media.dumps(media.Media("s", 7, "outbound", 3, 40, b"\xff" * 160)))
    assert frame["sequence_number"] == "7" and frame["media"]["chunk"] == "3" and frame["media"]["timestamp"] == "40"


def reason(text, parse=media.parse_frame):
    with pytest.raises(media.FrameError) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{oops", "malformed_json"),
        (b"\xff\xfe\x00", "malformed_json"),
        ("[1]", "not_an_object"),
        ('{"no_event": 1}', "missing_field"),
        ('{"event": "hello", "stream_id": "s"}', "unknown_event"),
        ('{"event": "media", "stream_id": "s"}', "missing_field"),
        ('{"event": "media", "stream_id": "s", "media": {"track": "inbound", "chunk": "x1", "timestamp": "0", '
         '"payload": ""}}', "bad_field"),
        ('{"event": "media", "stream_id": "s", "media": {"track": "inbound", "chunk": "-1", "timestamp": "0", '
         '"payload": ""}}', "bad_field"),
        ('{"event": "media", "stream_id": "s", "media": {"track": "inbound", "chunk": "' + "9" * 5000 + '", '
         '"timestamp": "0", "payload": ""}}', "out_of_range"),
        ('{"event": "media", "stream_id": "s", "media": {"track": "both", "chunk": "1", "timestamp": "0", '
         '"payload": ""}}', "bad_field"),
        ('{"event": "media", "stream_id": "s", "media": {"track": "inbound", "chunk": "1", "timestamp": "0", '
         '"payload": "@@@"}}', "invalid_base64"),
        ('{"event": "media", "stream_id": "s", "media": {"track": "inbound", "chunk": "1", "timestamp": "0", '
         '"payload": "QQ"}}', "invalid_base64"),
        ('{"event": "start", "stream_id": "s", "start": {"call_control_id": "c"}}', "missing_field"),
        ('{"event": "start", "stream_id": "s", "start": {"call_control_id": "c", '
         '"media_format": {"encoding": "PCMU", "sample_rate": "0"}}}', "bad_field"),
        ('{"event": "start", "stream_id": "s", "start": {"call_control_id": "c", '
         '"media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 0}}}', "bad_field"),
        ('{"event": "start", "stream_id": "s", "start": {"call_control_id": "c", '
         '"media_format": {"encoding": "PCMU", "sample_rate": "99999999999"}}}', "bad_field"),
        ('{"event": "error", "payload": {"code": "100003"}}', "bad_field"),
    ],
)
def test_malformed_frames_raise_frame_error_with_reason(text, expected):
    assert reason(text).reason == expected


def test_frame_error_keeps_the_event_and_stream_id_it_could_read():
    error = reason('{"event": "media", "stream_id": "abc", "media": {"track": "inbound", "chunk": "9", '
                   '"timestamp": "0", "payload": "!!"}}')
    assert (error.reason, error.event, error.stream_id) == ("invalid_base64", "media", "abc")


def test_app_frame_errors_match_telnyx_error_codes():
    assert reason('{"event": "media", "media": {"payload": "%%"}}', media.parse_app_frame).reason == "invalid_base64"
    assert reason('{"event": "start"}', media.parse_app_frame).reason == "unknown_event"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
frame_like = st.fixed_dictionaries(
    {"event": st.sampled_from(["connected", "start", "media", "stop", "dtmf", "mark", "error", "clear", "x"])},
    optional={"stream_id": json_values, "sequence_number": json_values, "media": json_values, "start": json_values,
              "stop": json_values, "dtmf": json_values, "mark": json_values, "payload": json_values,
              "connected": json_values},
)


@given(st.binary(max_size=300) | json_values.map(json.dumps) | frame_like.map(json.dumps))
def test_random_input_raises_only_frame_error(data):
    for parse in (media.parse_frame, media.parse_app_frame):
        try:
            frame = parse(data)
        except media.FrameError as exc:
            assert exc.reason in {"malformed_json", "not_an_object", "unknown_event", "missing_field", "bad_field",
                                  "invalid_base64"}
        else:
            assert isinstance(frame.to_dict()["event"], str)
