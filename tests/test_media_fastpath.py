"""The msgspec fast path for ``media`` frames against the general (orjson) parser.

``media.parse_frame`` tries ``_parse_media_fast`` on media-looking text and falls back to
``media._parse_general`` (the parser as it was before the fast path). For every input both
must give an equal frame, or a FrameError with the same reason, detail, event and stream id.
The frames here are written token by token, so keys can repeat, counters can be any JSON
token, and whitespace and escapes vary.
"""

import base64
import dataclasses
import json
import sys

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from telnyx_nb.wire import media
from telnyx_nb.wire.errors import INT64_MAX

SID = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"


def outcome(parse, text):
    """What a parser makes of ``text``: the frame with its field types, or the error's every part."""
    try:
        frame = parse(text)
    except media.FrameError as exc:
        return ("error", exc.reason, exc.detail, exc.event, exc.stream_id)
    except Exception as exc:  # any other exception must match too (none is expected)
        return ("exception", type(exc).__name__, str(exc))
    if dataclasses.is_dataclass(frame):
        types = tuple(type(getattr(frame, f.name)) for f in dataclasses.fields(frame))
    else:  # pragma: no cover - parse_frame returns dataclasses only
        types = ()
    return ("frame", type(frame), frame, types)


def assert_same_as_general(text):
    """parse_frame agrees with the general parser; a fast-path frame is one the general parser gives.

    Returns the general parser's outcome and the fast path's frame (None: it declined).
    """
    general = outcome(media._parse_general, text)
    assert outcome(media.parse_frame, text) == general
    fast = media._parse_media_fast(text) if type(text) is str else None
    if fast is not None:
        assert outcome(lambda _: fast, text) == general
    return general, fast


def label(general, fast):
    """A hypothesis event: which path decided, and what the general parser said."""
    event("fast path" if fast is not None else f"general: {general[0]} {general[1] if general[0] == 'error' else ''}")


# -- token-level JSON ---------------------------------------------------------------------------

def js(value):
    """A Python value as JSON text (non-ASCII characters kept as they are)."""
    return json.dumps(value, ensure_ascii=False)


def escape_all(text):
    """A JSON string literal with every character written as a \\u escape (pairs for astral ones)."""
    units = text.encode("utf-16-be")
    return '"' + "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2)) + '"'


def string_token(text):
    return st.sampled_from([js(text), json.dumps(text), escape_all(text)])


def mostly(usual, unusual, one_in=12):
    """``usual``, except one time in ``one_in``: ``unusual``."""
    return st.integers(1, one_in).flatmap(lambda i: unusual if i == 1 else usual)


INT64_EDGES = [0, 1, 9, 10, 99, 10**18 - 1, 10**18, INT64_MAX - 1, INT64_MAX, INT64_MAX + 1,
               2**64 - 1, 2**64, 2**64 + 1, 10**19]
counter_numbers = mostly(st.integers(0, 10**7), st.sampled_from(INT64_EDGES) | st.integers(0, 2**70), one_in=4)

valid_counter_token = mostly(counter_numbers.map(lambda n: js(str(n))), st.one_of(
    st.builds(lambda n, pad: js("0" * pad + str(n)), counter_numbers, st.integers(1, 25)),  # zero-padded
    counter_numbers.map(str),  # a JSON integer
    counter_numbers.map(lambda n: escape_all(str(n))),  # digits written as \u escapes
))
counter_token = mostly(valid_counter_token, st.one_of(
    st.integers(-(2**70), -1).map(str),
    st.integers(-(2**70), -1).map(lambda n: js(str(n))),
    st.sampled_from([
        '"-1"', '"-0"', '"+1"', '" 1"', '"1 "', '"1.0"', '"1e2"', '"1E2"', '"0x1f"', '"1_0"', '""', '"\u0661\u0662"',
        '"\\u0661"', '"\uff11"', '"\u00b2"', '"٣"', '"true"', '"null"', '"NaN"', '"Infinity"',
        "-0", "-1", "1.0", "-0.0", "0.5", "1e2", "1E2", "100e0", "1e400", "-1e400", "1" * 400, "true", "false", "null",
        "[]", '["1"]', "{}", '{"a":"1"}', '"0000000000000000000000000000000000001"', '"' + "9" * 40 + '"',
        '"09223372036854775807"', '"9223372036854775807"', '"9223372036854775808"', "9223372036854775807",
        "9223372036854775808", "18446744073709551615", "18446744073709551616", '"0"', '"00"', "0",
    ]),
))

payload_token = mostly(st.binary(max_size=700).map(lambda b: js(base64.b64encode(b).decode())), st.one_of(
    st.binary(min_size=1, max_size=60).map(lambda b: js(base64.b64encode(b).decode().rstrip("="))),  # unpadded
    st.binary(max_size=60).map(lambda b: js(base64.urlsafe_b64encode(b).decode())),  # - and _ are not base64
    st.binary(min_size=3, max_size=60).map(lambda b: js(base64.b64encode(b).decode()[:-1])),  # truncated
    st.binary(min_size=3, max_size=60).map(lambda b: js(" " + base64.b64encode(b).decode())),
    st.binary(min_size=3, max_size=60).map(lambda b: js(base64.b64encode(b).decode() + "\n")),
    st.binary(min_size=3, max_size=60).map(lambda b: escape_all(base64.b64encode(b).decode())),
    st.sampled_from(['""', '"="', '"===="', '"AA=="', '"AA=A"', '"AAA=="', '"QQ"', '"@@@"', '"!!"', '"AAAA\u00e9"',
                     '"no+JhoaJjpzSHxAKBgYJDhtE"', '"no+Jho\\/aJjpzS"', '"AAAA\\u0000"', "null", "1", "[]", "{}",
                     '"\\ud800"', '"\ud800AA"']),
))

track_token = mostly(st.sampled_from(['"inbound"', '"outbound"']), st.sampled_from(
    ['"both"', '"Inbound"', '"inbound "', '""', '"inb\\u006fund"', '"\\u006futbound"', "null", "1", "true",
     '["inbound"]']))

text_values = mostly(st.sampled_from([SID, "bench-1", "s"]), st.text(max_size=40) | st.sampled_from(
    ["", "é", "😀", "\x00", "\x7f", "\u2028"]), one_in=2)
stream_id_token = mostly(text_values.map(js), st.one_of(
    text_values.map(json.dumps),
    text_values.map(escape_all),
    st.sampled_from(["null", "1", "true", "[]", "{}", '"\\ud800"', '"\\udc00\\ud800"', '"\\ud83d\\ude00"',
                     '"\\x"', '"\t"', '"\ud800"', '"\udfff"', '"a"b"', "1e400"]),
))

event_token = mostly(st.just('"media"'), st.sampled_from([
    '"medi\\u0061"', '"\\u006dedia"', '"Media"', '"media "', '"dtmf"', '"start"', '"stop"', '"mark"', '"error"',
    '"connected"', '"clear"', "null", "1", '["media"]']), one_in=12)

# Values for keys nobody expects, including what msgspec would skip but orjson refuses.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
).map(js)
extra_value_token = mostly(json_values, st.sampled_from([
    "1e400", "-1e400", "1" * 400, '"\\ud800"', "NaN", "[1,]", "01", '"\x01"',
    "[" * 1100 + "]" * 1100, "[" * 1000 + "]" * 1000, "[" * 1023 + "]" * 1023, '"media"',
]), one_in=3)
extra_key_token = st.sampled_from(['"x"', '"extra"', '"Event"', '"media_format"', '"payload"', '""', '"\\u0078"',
                                   '"seq\\u0075ence_number"', '"stream_id "'])

# The last two are not JSON whitespace.
separators = mostly(st.sampled_from(["", " "]), st.sampled_from(["\n", "\t", "\r\n ", "\x0c", "\u00a0"]), one_in=16)


@st.composite
def json_object(draw, members):
    """``members`` (key token, value token) written as a JSON object with drawn whitespace."""
    sep = draw(separators)
    if draw(st.integers(0, 9)) == 0:
        members = draw(st.permutations(members))
    body = ("," + sep).join(f"{sep}{key}{sep}:{sep}{value}" for key, value in members)
    return "{" + body + sep + "}"


@st.composite
def members_of(draw, fields):
    """(key, value) tokens of ``fields`` with some left out, some repeated and some unknown ones added."""
    members = []
    for key, value_strategy, keep in fields:
        if draw(st.floats(0, 1)) < keep:
            members.append((js(key), draw(value_strategy)))
    if members and draw(st.integers(0, 7)) == 0:
        # repeat keys, each with a value of its own kind
        for _ in range(draw(st.integers(1, 2))):
            key = members[draw(st.integers(0, len(members) - 1))][0]
            strategy = next(s for k, s, _ in fields if js(k) == key)
            members.insert(draw(st.integers(0, len(members))), (key, draw(strategy)))
    if draw(st.integers(0, 7)) == 0:
        members.insert(draw(st.integers(0, len(members))), (draw(extra_key_token), draw(extra_value_token)))
    return members


@st.composite
def media_like(draw):
    inner = draw(members_of([("track", track_token, 0.98), ("chunk", counter_token, 0.98),
                             ("timestamp", counter_token, 0.98), ("payload", payload_token, 0.98)]))
    media_token = draw(mostly(json_object(inner), st.sampled_from(["null", "[]", '"media"', "1", "{}"]), one_in=30))
    outer = draw(members_of([("event", event_token, 0.99), ("sequence_number", counter_token, 0.9),
                             ("stream_id", stream_id_token, 0.98), ("media", st.just(media_token), 0.98)]))
    text = draw(json_object(outer))
    mutation = draw(st.integers(0, 39))
    if mutation == 0:  # not an object
        text = "[" + text + "]"
    elif mutation == 1:  # cut short
        text = text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    elif mutation == 2:  # trailing content
        text = text + draw(st.sampled_from([" ", "\n", " x", "}", "\x00", ",{}"]))
    elif mutation == 3:  # a character inserted anywhere
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(list('{}[],:"\\ 0-.eE\x00\ud800é'))) + text[at:]
    elif mutation == 4:
        text = draw(st.sampled_from(["\ufeff", " ", "\n"])) + text
    return text


def valid_media():
    """Well-formed media frames in the documented shape (the fast path must take every one)."""
    return st.builds(media.Media, text_values, st.integers(0, INT64_MAX), st.sampled_from(["inbound", "outbound"]),
                     st.integers(0, INT64_MAX), st.integers(0, INT64_MAX), st.binary(max_size=700))


# -- the differential tests --------------------------------------------------------------------

@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(media_like())
def test_fast_path_agrees_with_the_general_parser(text):
    label(*assert_same_as_general(text))
    assert_same_as_general(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), json_values, st.text(max_size=200)))
def test_fast_path_agrees_on_arbitrary_input(data):
    label(*assert_same_as_general(data))


@settings(max_examples=500, deadline=None)
@given(valid_media())
def test_documented_media_frames_take_the_fast_path(frame):
    text = media.dumps(frame)
    fast = media._parse_media_fast(text)
    if frame.sequence_number < 10**18 and frame.chunk < 10**18 and frame.timestamp < 10**18:
        assert fast == frame
    else:  # 19 digits: the int64 bound is the general parser's
        assert fast is None
    assert media.parse_frame(text) == frame == media._parse_general(text)


# -- explicit examples --------------------------------------------------------------------------

def frame_text(seq='"4"', sid=f'"{SID}"', track='"inbound"', chunk='"2"', ts='"5"',
               payload='"no+JhoaJjpzSHxAKBgYJDhtE"', extra="", media_extra=""):
    seq_member = "" if seq is None else f'"sequence_number":{seq},'
    return (f'{{"event":"media",{seq_member}"stream_id":{sid},"media":{{"track":{track},"chunk":{chunk},'
            f'"timestamp":{ts},"payload":{payload}{media_extra}}}{extra}}}')


@pytest.mark.parametrize("text, fast", [
    (frame_text(), True),
    (frame_text(seq=None), True),  # sequence_number absent: 0
    (frame_text(seq="7", chunk="0", ts=str(INT64_MAX)), True),  # JSON ints in range
    (frame_text(seq='"007"', chunk='"000000000000000002"'), True),  # leading zeros, 18 characters
    (frame_text(seq='"0000000000000000000000007"'), False),  # 25 characters: general parser (accepts it)
    (frame_text(seq='"9223372036854775807"'), False),  # 19 digits: general parser (accepts it)
    (frame_text(seq='"9223372036854775808"'), False),  # out_of_range
    (frame_text(seq="9223372036854775808"), False),  # out_of_range
    (frame_text(seq="18446744073709551616"), False),  # orjson: a float, bad_field
    (frame_text(seq="-0"), True),  # the JSON integer -0 is 0 for orjson too
    (frame_text(seq='"-0"'), False), (frame_text(seq='"-1"'), False), (frame_text(seq='"+1"'), False),
    (frame_text(seq='" 1"'), False), (frame_text(seq='"1.0"'), False), (frame_text(seq='"1e2"'), False),
    (frame_text(seq='"\u0661"'), False), (frame_text(seq='"\\u0661"'), False), (frame_text(seq='""'), False),
    (frame_text(seq="1.0"), False), (frame_text(seq="1e2"), False), (frame_text(seq="true"), False),
    (frame_text(seq="null"), False), (frame_text(seq="-1"), False),
    (frame_text(track='"both"'), False), (frame_text(track='"inb\\u006fund"'), True),
    (frame_text(payload='"QQ"'), False), (frame_text(payload='"@@@"'), False), (frame_text(payload='""'), True),
    (frame_text(payload='"AAAA\\n"'), False),
    (frame_text(sid="1"), False), (frame_text(sid='"\\ud800"'), False), (frame_text(sid='"\ud800"'), False),
    (frame_text(sid='"\\ud83d\\ude00"'), True), (frame_text(sid='"\\u0000"'), True),
    (frame_text(extra=',"x":1'), False),  # unknown keys: general parser (which ignores them)
    (frame_text(extra=',"x":1e400'), False),  # orjson refuses an infinite number that msgspec would skip
    (frame_text(extra=',"x":' + "[" * 1100 + "]" * 1100), False),  # and nesting past 1024 levels
    (frame_text(media_extra=',"y":null'), False),
    (frame_text(extra=',"stream_id":"other"'), True),  # a repeated key: the last one wins, as with orjson
    (frame_text(extra=',"event":"dtmf"'), False),
    (frame_text(media_extra=',"track":"outbound"'), True),
    (frame_text(media_extra=',"chunk":"x"'), False),
    # An earlier occurrence of a repeated counter must be valid too: orjson refuses an integer
    # too long for a double even when a later occurrence would override it.
    (frame_text(seq="1" * 400, extra=',"sequence_number":"1"'), False),
    (frame_text(chunk="1" * 400, media_extra=',"chunk":"1"'), False),
    (frame_text(seq="18446744073709551616", extra=',"sequence_number":"1"'), False),  # general: a frame
    (frame_text(seq="-1", extra=',"sequence_number":"1"'), False),  # general: a frame
    (frame_text(seq="7", extra=',"sequence_number":"1"'), True),
    (frame_text(extra=',"media":{"track":"outbound"}'), False),
    (frame_text().replace('"event":"media"', '"event":"medi\\u0061"'), True),
    (frame_text() + " x", False), ("[" + frame_text() + "]", False), ("\ufeff" + frame_text(), False),
    (" \n" + frame_text() + "\t\r\n", True),
    (frame_text().replace(",", "\x0c,", 1), False),
])
def test_examples(text, fast):
    _, fast_frame = assert_same_as_general(text)
    assert (fast_frame is not None) is fast
    assert_same_as_general(text.encode("utf-8", "surrogatepass"))


def test_fast_path_frame_equals_the_reference_example():
    text = ('{"event":"media","sequence_number":"4","stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC",'
            '"media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"no+JhoaJjpzSHxAKBgYJDhtE"}}')
    expected = media.Media(SID, 4, "inbound", 2, 5, base64.b64decode("no+JhoaJjpzSHxAKBgYJDhtE"))
    assert media._parse_media_fast(text) == expected == media.parse_frame(text)


def test_non_media_frames_skip_the_fast_decoder(monkeypatch):
    calls = []
    real = media._parse_media_fast
    monkeypatch.setattr(media, "_parse_media_fast", lambda text: calls.append(text) or real(text))
    media.parse_frame('{"event":"dtmf","stream_id":"s","sequence_number":"5","dtmf":{"digit":"1"}}')
    media.parse_frame('{"event":"start","sequence_number":"1","stream_id":"s","start":{"call_control_id":"c",'
                      '"media_format":{"encoding":"PCMU","sample_rate":8000}}}')
    assert calls == []
    media.parse_frame(frame_text())
    assert len(calls) == 1


@pytest.mark.parametrize("limit", [1200, 5000])
def test_deep_nesting_agrees_whatever_the_recursion_limit(limit):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        for depth in (1000, 1022, 1023, 1024, 1100):
            nested = "[" * depth + "]" * depth
            assert_same_as_general(frame_text(extra=',"x":' + nested))
            assert_same_as_general(frame_text(sid=nested))
    finally:
        sys.setrecursionlimit(old)
