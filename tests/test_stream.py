"""The media-stream state machines (wire.stream), both sides, driven with plain strings and bytes."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telnyx_nb.wire import media
from telnyx_nb.wire.errors import INT64_MAX, Reason
from telnyx_nb.wire.stream import (
    Ended,
    EndReason,
    Refused,
    Rejected,
    Started,
    Stopped,
    StreamConnection,
    StreamSender,
    same_token,
)

SID = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
OTHER = "7F1C2B3A-0000-4000-8000-000000000002"
CCID = "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"
PCMU = media.MediaFormat("PCMU", 8000, 1)
NO_TOKEN = "no matching auth token in the upgrade header or connected frame"


def start_text(stream_id=SID, seq=1):
    return media.dumps(media.Start(stream_id, seq, CCID, PCMU))


def media_text(stream_id=SID, seq=2, chunk=1, payload=b"\x7f" * 160, track="inbound"):
    return media.dumps(media.Media(stream_id, seq, track, chunk, 20 * (chunk - 1), payload))


def raw_media(**fields):
    """A media frame with counters exactly as given (strings or ints)."""
    inner = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": ""}
    top = {"event": "media", "sequence_number": "2", "stream_id": SID}
    for key, value in fields.items():
        (top if key == "sequence_number" else inner)[key] = value
    return json.dumps({**top, "media": inner})


def connected_text(token=None):
    return media.dumps(media.Connected(auth_token=token))


def started(conn):
    event = conn.receive_text(start_text())
    assert type(event) is Started
    return event


# -- auth ----------------------------------------------------------------------------------


def test_no_token_configured_accepts_everything_unauthenticated():
    conn = StreamConnection()
    assert conn.open("whatever") is None
    assert conn.receive_text(connected_text()) == media.Connected("1.0.0", None)
    event = started(conn)
    assert (event.authenticated, conn.authenticated, conn.stream_id) == (False, False, SID)


def test_matching_upgrade_header_authenticates():
    conn = StreamConnection(auth_token="s3cret")
    assert conn.open("s3cret") is None
    assert conn.authenticated is True
    # The first message need not be `connected` once the header matched.
    event = started(conn)
    assert event.authenticated is True and event.replaced is None
    assert type(conn.receive_text(media_text())) is media.Media


def test_wrong_upgrade_header_is_refused_at_open():
    conn = StreamConnection(auth_token="s3cret")
    refused = conn.open("guess")
    assert refused == Refused(Reason.AUTH_FAILED, "upgrade header token does not match")
    assert (conn.ended, conn.authenticated) == (True, False)
    # Whatever the caller does next is refused the same way, and there is no stream to end.
    assert conn.receive_text(connected_text("s3cret")) == refused
    assert conn.receive_binary(b"x") == refused
    assert conn.close(EndReason.AUTH_FAILED) is None


def test_token_comparison_is_over_utf8_bytes_and_survives_surrogates():
    assert same_token("s3cret", "s3cret") and not same_token("s3cre", "s3cret")
    assert same_token("caf\u00e9", "caf\u00e9")
    header = b"bad\xff".decode("utf-8", "surrogateescape")   # undecodable header bytes
    assert same_token(header, header) and not same_token(header, "bad")
    conn = StreamConnection(auth_token="s3cret")
    assert conn.open(header) == Refused(Reason.AUTH_FAILED, "upgrade header token does not match")


def test_token_in_connected_frame_authenticates_without_header():
    conn = StreamConnection(auth_token="s3cret")
    assert conn.open(None) is None and conn.authenticated is False
    assert conn.receive_text(connected_text("s3cret")) == media.Connected("1.0.0", "s3cret")
    assert conn.authenticated is True
    assert started(conn).authenticated is True


@pytest.mark.parametrize("first", [
    connected_text("wrong"),            # wrong token
    connected_text(None),               # connected, no token
    start_text(),                       # not a connected frame
    "{oops",                            # not even JSON
    "x" * 101,                          # oversized (limit 100 below)
])
def test_locked_connection_refuses_a_first_message_without_the_token(first):
    conn = StreamConnection(auth_token="s3cret", max_message_size=100)
    assert conn.open(None) is None
    refused = Refused(Reason.AUTH_FAILED, NO_TOKEN)
    assert conn.receive_text(first) == refused
    assert (conn.ended, conn.authenticated, conn.stream_id) == (True, False, None)
    # The connection is over: even the right token now gets the same refusal.
    assert conn.receive_text(connected_text("s3cret")) == refused
    assert conn.close(EndReason.AUTH_FAILED) is None


def test_locked_connection_refuses_a_binary_first_message():
    conn = StreamConnection(auth_token="s3cret")
    conn.open(None)
    assert conn.receive_binary(b"\x00\x01") == Refused(Reason.AUTH_FAILED, NO_TOKEN)
    assert conn.receive_text(connected_text("s3cret")) == Refused(Reason.AUTH_FAILED, NO_TOKEN)


def test_connection_without_open_call_is_locked_when_a_token_is_configured():
    conn = StreamConnection(auth_token="s3cret")
    assert conn.receive_text(start_text()) == Refused(Reason.AUTH_FAILED, NO_TOKEN)


# -- one stream per socket ---------------------------------------------------------------


def test_media_on_the_carried_stream_is_the_parsed_frame_itself():
    conn = StreamConnection()
    started(conn)
    event = conn.receive_text(media_text(seq=7, chunk=3, payload=b"\x01\x02"))
    assert event == media.Media(SID, 7, "inbound", 3, 40, b"\x01\x02")


def test_media_before_start_adopts_the_stream_id():
    conn = StreamConnection()
    first = conn.receive_text(media_text(seq=5, chunk=2))
    assert type(first) is media.Media and first.chunk == 2
    assert conn.stream_id == SID
    # ... and then another stream's media is a mismatch, not a second stream.
    rejected = conn.receive_text(media_text(OTHER, seq=6, chunk=3))
    assert type(rejected) is Rejected
    assert (rejected.reason, rejected.stream_id) == (Reason.STREAM_MISMATCH, SID)
    assert conn.close(EndReason.CLOSED) == Ended(SID, EndReason.CLOSED)


@pytest.mark.parametrize("make", [
    lambda sid: media_text(sid),
    lambda sid: media.dumps(media.Dtmf(sid, 3, "1", "2025-06-05T08:54:19.698408Z")),
    lambda sid: media.dumps(media.Mark(sid, 3, "greeting-done")),
    lambda sid: media.dumps(media.Stop(sid, 3, CCID)),
])
def test_frames_naming_another_stream_are_rejected(make):
    conn = StreamConnection()
    started(conn)
    event = conn.receive_text(make(OTHER))
    event_name = json.loads(make(OTHER))["event"]
    assert event == Rejected(Reason.STREAM_MISMATCH,
                             f"{event_name} frame names stream {OTHER!r}; this connection carries {SID!r}", SID)
    assert (conn.stream_id, conn.ended) == (SID, False)     # the carried stream goes on
    own, expected = conn.receive_text(make(SID)), media.parse_frame(make(SID))
    assert own == (Stopped(expected) if type(expected) is media.Stop else expected)


def test_dtmf_and_mark_on_the_carried_stream_pass_through():
    conn = StreamConnection()
    started(conn)
    dtmf = conn.receive_text(media.dumps(media.Dtmf(SID, 3, "7", "2025-06-05T08:54:19.698408Z")))
    mark = conn.receive_text(media.dumps(media.Mark(SID, 4, "greeting-done")))
    assert dtmf == media.Dtmf(SID, 3, "7", "2025-06-05T08:54:19.698408Z")
    assert mark == media.Mark(SID, 4, "greeting-done")


def test_error_frames_pass_through_whatever_stream_they_name():
    conn = StreamConnection()
    started(conn)
    own = media.ErrorFrame.for_code(100003, SID)
    other = media.ErrorFrame.for_code(100002, OTHER, "far away")
    anonymous = media.ErrorFrame(None, 100005, "rate_limit_reached", "Too many requests")
    for frame in (own, other, anonymous):
        assert conn.receive_text(media.dumps(frame)) == frame
    assert conn.stream_id == SID


def test_a_second_start_replaces_the_stream():
    conn = StreamConnection()
    started(conn)
    second = conn.receive_text(start_text(OTHER))
    assert type(second) is Started
    assert second.frame.stream_id == OTHER
    assert second.replaced == Ended(SID, EndReason.REPLACED)
    assert (conn.stream_id, conn.ended) == (OTHER, False)
    # Media of the replaced stream is now the mismatch.
    assert conn.receive_text(media_text(SID)).reason is Reason.STREAM_MISMATCH
    assert conn.close(EndReason.CLOSED) == Ended(OTHER, EndReason.CLOSED)


def test_a_repeated_start_of_the_same_stream_replaces_nothing():
    conn = StreamConnection()
    started(conn)
    again = conn.receive_text(start_text(SID, seq=9))
    assert type(again) is Started and again.replaced is None and again.frame.sequence_number == 9


def test_start_after_media_adopted_a_stream_replaces_it():
    conn = StreamConnection()
    conn.receive_text(media_text(OTHER))
    event = conn.receive_text(start_text(SID))
    assert event.replaced == Ended(OTHER, EndReason.REPLACED) and conn.stream_id == SID


def test_a_new_start_after_stop_replaces_nothing():
    conn = StreamConnection()
    started(conn)
    assert type(conn.receive_text(media.dumps(media.Stop(SID, 3, CCID)))) is Stopped
    event = conn.receive_text(start_text(OTHER))
    assert event.replaced is None                  # the first stream already ended with "stop"
    assert conn.ended is False
    assert conn.close(EndReason.CLOSED) == Ended(OTHER, EndReason.CLOSED)


# -- ends ------------------------------------------------------------------------------------


def test_stop_then_close_ends_the_stream_once():
    conn = StreamConnection()
    started(conn)
    stop = media.Stop(SID, 3, CCID, "user-1")
    event = conn.receive_text(media.dumps(stop))
    assert event == Stopped(stop)
    assert conn.ended is True
    assert conn.close(EndReason.CLOSED) is None
    assert conn.close(EndReason.CLOSED) is None


def test_stop_before_start_adopts_and_ends_the_stream():
    conn = StreamConnection()
    event = conn.receive_text(media.dumps(media.Stop(SID, 1, CCID)))
    assert type(event) is Stopped and conn.stream_id == SID and conn.ended is True
    assert conn.close(EndReason.CLOSED) is None


@pytest.mark.parametrize("reason", list(EndReason))
def test_close_reports_the_callers_reason(reason):
    conn = StreamConnection()
    started(conn)
    ended = conn.close(reason)
    assert ended == Ended(SID, reason)
    assert str(ended.reason) == reason.value and conn.ended is True
    assert conn.close(EndReason.CLOSED) is None       # closing twice reports nothing


def test_end_reason_values_are_the_store_strings():
    assert {str(r) for r in EndReason} == {"stop", "closed", "error", "message_too_big", "auth_failed",
                                           "replaced", "receiver_stopped"}
    assert EndReason.CLOSED == "closed"


def test_close_without_a_stream_reports_nothing():
    conn = StreamConnection()
    assert conn.receive_text(connected_text()) == media.Connected()
    assert conn.close(EndReason.CLOSED) is None and conn.ended is True


def test_messages_after_close_are_a_caller_bug():
    conn = StreamConnection()
    conn.close(EndReason.CLOSED)
    with pytest.raises(RuntimeError):
        conn.receive_text(media_text())
    with pytest.raises(RuntimeError):
        conn.receive_binary(b"")


# -- bad input: rejected, the stream goes on -----------------------------------------------


def test_oversized_text_is_rejected_and_the_stream_goes_on():
    conn = StreamConnection(max_message_size=400)
    started(conn)
    big = media_text(payload=b"\x00" * 400)
    assert conn.receive_text(big) == Rejected(Reason.OVERSIZED, f"{len(big)} characters, limit 400", SID)
    assert type(conn.receive_text(media_text())) is media.Media
    assert len(media_text()) <= 400 and conn.max_message_size == 400


def test_message_of_exactly_the_limit_is_accepted():
    text = media_text()
    conn = StreamConnection(max_message_size=len(text))
    assert type(conn.receive_text(text)) is media.Media


def test_binary_message_is_rejected():
    conn = StreamConnection()
    assert conn.receive_binary(b"\x01\x02\x03") == Rejected(
        Reason.BINARY_FRAME, "3-byte binary message; Telnyx sends text", None)
    started(conn)
    assert conn.receive_binary(bytearray(10)).stream_id == SID
    assert type(conn.receive_text(media_text())) is media.Media


@pytest.mark.parametrize("text, reason, stream_id", [
    ("{oops", Reason.MALFORMED_JSON, SID),
    ("[1, 2]", Reason.NOT_AN_OBJECT, SID),
    ('{"stream_id": "x"}', Reason.MISSING_FIELD, SID),                        # the carried stream owns it,
    ('{"event": "hello", "stream_id": "x"}', Reason.UNKNOWN_EVENT, SID),      # whatever id the frame names
    (raw_media(track="both"), Reason.BAD_FIELD, SID),
    (raw_media(chunk="-1"), Reason.BAD_FIELD, SID),
    (raw_media(payload="@@@"), Reason.INVALID_BASE64, SID),
    (raw_media(chunk="1" * 20), Reason.OUT_OF_RANGE, SID),                     # a 20-digit counter
    (raw_media(timestamp=str(2**63)), Reason.OUT_OF_RANGE, SID),
    (raw_media(sequence_number=2**63), Reason.OUT_OF_RANGE, SID),              # a JSON integer, too
    (raw_media(chunk="9" * 5000), Reason.OUT_OF_RANGE, SID),
])
def test_frame_errors_are_rejected_with_their_reason(text, reason, stream_id):
    conn = StreamConnection()
    started(conn)
    event = conn.receive_text(text)
    assert type(event) is Rejected
    assert (event.reason, event.stream_id) == (reason, stream_id)
    with pytest.raises(media.FrameError) as error:
        media.parse_frame(text)
    assert event.detail == error.value.detail
    assert conn.ended is False and type(conn.receive_text(media_text())) is media.Media


def test_frame_error_before_any_stream_has_no_stream_id():
    assert StreamConnection().receive_text("{oops").stream_id is None


def test_counters_at_the_int64_bounds():
    conn = StreamConnection()
    top = conn.receive_text(raw_media(sequence_number=str(INT64_MAX), chunk=str(INT64_MAX), timestamp="0" * 25 + "7"))
    assert (top.sequence_number, top.chunk, top.timestamp) == (INT64_MAX, INT64_MAX, 7)
    over = conn.receive_text(raw_media(chunk=str(INT64_MAX + 1)))
    assert over.reason is Reason.OUT_OF_RANGE and "chunk" in over.detail
    twenty = conn.receive_text(raw_media(chunk="1" * 20))
    assert twenty.reason is Reason.OUT_OF_RANGE


# -- sender side -----------------------------------------------------------------------------


def make_sender(token=None):
    return StreamSender(SID, CCID, user_id="user-1", auth_token=token)


def test_sender_numbering():
    sender = make_sender()
    assert sender.connected() == media.Connected("1.0.0", None)   # connected carries no number
    start = sender.start(PCMU, call_session_id="sess", custom_parameters={"k": "v"})
    assert (start.sequence_number, start.stream_id, start.call_control_id, start.user_id) == (1, SID, CCID, "user-1")
    assert start.custom_parameters == {"k": "v"} and start.media_format == PCMU
    frames = []
    for tick in (500, 501, 502):                      # the media clock's tick numbers: chunk is relative
        chunk = sender.chunk(tick)
        for track in ("inbound", "outbound"):
            frames.append(sender.media(track, chunk, bytes([tick % 256]) * 160))
    assert [(f.track, f.sequence_number, f.chunk, f.timestamp) for f in frames] == [
        ("inbound", 2, 1, 0), ("outbound", 3, 1, 0),
        ("inbound", 4, 2, 20), ("outbound", 5, 2, 20),
        ("inbound", 6, 3, 40), ("outbound", 7, 3, 40),
    ]
    assert sender.first_tick == 500 and sender.chunk(510) == 11
    dtmf = sender.dtmf("5", "2025-06-05T08:54:19.698408Z")
    mark = sender.mark("greeting-done")
    frame = sender.media("inbound", sender.chunk(503), b"")
    stop = sender.stop()
    assert [dtmf.sequence_number, mark.sequence_number, frame.sequence_number, stop.sequence_number] == [8, 9, 10, 11]
    assert (frame.chunk, frame.timestamp) == (4, 60)
    assert (dtmf.digit, mark.name, stop.call_control_id, stop.user_id) == ("5", "greeting-done", CCID, "user-1")
    assert sender.sequence_number == 11
    assert media.FRAME_MS == 20


def test_sender_error_frames_carry_no_number():
    sender = make_sender()
    sender.start(PCMU)
    error = sender.error(100005)
    assert error == media.ErrorFrame(SID, 100005, "rate_limit_reached", "Too many requests")
    assert sender.error(100002, "no G722").detail == "no G722"
    assert sender.sequence_number == 1
    with pytest.raises(KeyError):
        sender.error(42)


def test_sender_connected_carries_the_token():
    frame = make_sender("s3cret").connected()
    assert json.loads(media.dumps(frame)) == {"event": "connected", "version": "1.0.0",
                                              "connected": {"x-telnyx-streaming-auth-token": "s3cret"}}


@pytest.mark.parametrize("text, expected", [
    ('{"event":"media","media":{"payload":"AAEC"}}', media.AppMedia(b"\x00\x01\x02")),
    ('{"event":"mark","mark":{"name":"greeting-done"}}', media.AppMark("greeting-done")),
    ('{"event":"clear"}', media.Clear()),
])
def test_sender_parses_application_frames(text, expected):
    assert make_sender().receive_text(text) == expected


@pytest.mark.parametrize("text, code, title", [
    ('{"event":"media","media":{"payload":"@@@"}}', 100004, "invalid_media"),
    ('{"event":"media","media":{"payload":"QQ"}}', 100004, "invalid_media"),
    ("{oops", 100003, "malformed_frame"),
    ("[]", 100003, "malformed_frame"),
    ('{"event":"dance"}', 100003, "malformed_frame"),
    ('{"event":"mark","mark":{}}', 100003, "malformed_frame"),
    ('{"event":"media"}', 100003, "malformed_frame"),
])
def test_sender_maps_bad_application_frames_to_telnyx_error_codes(text, code, title):
    sender = make_sender()
    error = sender.receive_text(text)
    assert type(error) is media.ErrorFrame
    assert (error.code, error.title, error.stream_id) == (code, title, SID)
    with pytest.raises(media.FrameError) as parse_error:
        media.parse_app_frame(text)
    assert error.detail == parse_error.value.detail
    assert sender.sequence_number == 0


def test_sender_answers_binary_with_malformed_frame():
    error = make_sender().receive_binary(b"\x00\x01")
    assert (error.code, error.title, error.stream_id) == (100003, "malformed_frame", SID)
    assert error.detail == "binary frames are not accepted; send JSON text frames"


# -- round trip ---------------------------------------------------------------------------


def test_round_trip_sender_to_connection():
    sender = make_sender("s3cret")
    conn = StreamConnection(auth_token="s3cret")
    assert conn.open(None) is None                    # token only in the connected frame
    sent = [sender.connected(), sender.start(PCMU, from_="+15550199", to="+15550100", tags=["a"])]
    for tick in range(100, 103):
        chunk = sender.chunk(tick)
        sent += [sender.media("inbound", chunk, b"\x01" * 160), sender.media("outbound", chunk, b"\x02" * 160)]
    sent += [sender.dtmf("9", "2025-06-05T08:54:19.698408Z"), sender.mark("m1"), sender.error(100003), sender.stop()]

    events = [conn.receive_text(media.dumps(frame)) for frame in sent]

    assert events[0] == sent[0] and conn.authenticated
    assert events[1] == Started(sent[1], True, None)
    assert events[2:8] == sent[2:8]                   # media: the frames themselves, equal field by field
    assert events[8:11] == sent[8:11]                 # dtmf, mark, error
    assert events[11] == Stopped(sent[11])
    assert [e.sequence_number for e in events[2:8]] == [2, 3, 4, 5, 6, 7]
    assert [e.chunk for e in events[2:8]] == [1, 1, 2, 2, 3, 3]
    assert [e.timestamp for e in events[2:8]] == [0, 0, 20, 20, 40, 40]
    assert conn.close(EndReason.CLOSED) is None       # stopped: no second end


def test_round_trip_application_frames_to_sender():
    sender = make_sender()
    for frame in (media.AppMedia(b"\x00" * 160), media.AppMark("m"), media.Clear()):
        assert sender.receive_text(media.dumps(frame)) == frame


# -- fuzz: any message sequence yields one event per message and keeps the invariants ----------

MESSAGES = st.one_of(
    st.sampled_from([
        start_text(), start_text(OTHER), media_text(), media_text(OTHER), connected_text("s3cret"),
        connected_text("nope"), media.dumps(media.Stop(SID, 9, CCID)), media.dumps(media.Stop(OTHER, 9, CCID)),
        media.dumps(media.Mark(OTHER, 3, "m")), media.dumps(media.ErrorFrame.for_code(100002, None)),
    ]),
    st.text(max_size=60),
    st.binary(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(token=st.sampled_from([None, "s3cret"]), header=st.sampled_from([None, "s3cret", "nope"]),
       messages=st.lists(MESSAGES, max_size=12))
def test_any_message_sequence_keeps_the_invariants(token, header, messages):
    conn = StreamConnection(auth_token=token, max_message_size=300)
    refused = conn.open(header) is not None
    carried, stopped = None, False                    # the test's own model of the carried stream
    for message in messages:
        event = conn.receive_binary(message) if isinstance(message, bytes) else conn.receive_text(message)
        if refused:
            assert type(event) is Refused
        refused = refused or type(event) is Refused
        if type(event) in (media.Media, media.Dtmf, media.Mark, Stopped):
            stream_id = event.frame.stream_id if type(event) is Stopped else event.stream_id
            assert carried in (None, stream_id)       # never a second stream on one socket
            carried = stream_id
            stopped = stopped or type(event) is Stopped
        if type(event) is Started:
            new = event.frame.stream_id
            expected = Ended(carried, EndReason.REPLACED) if carried not in (None, new) and not stopped else None
            assert event.replaced == expected
            stopped = stopped and new == carried
            carried = new
        assert conn.stream_id == carried
    closed = conn.close(EndReason.CLOSED)
    assert closed == (Ended(carried, EndReason.CLOSED) if carried is not None and not stopped else None)
    assert conn.ended is True
