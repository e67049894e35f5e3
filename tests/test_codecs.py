"""G.711 and L16 codecs against the ITU-T reference as CPython's audioop implements it."""

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from telnyx_nb.wire import codecs

if sys.version_info >= (3, 13):
    import audioop  # provided by audioop-lts, the test-only oracle
else:
    with pytest.warns(DeprecationWarning):
        import audioop

ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


def test_every_mulaw_code_decodes_like_the_reference():
    assert codecs.ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


def test_every_alaw_code_decodes_like_the_reference():
    assert codecs.alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_every_sample_encodes_to_mulaw_like_the_reference():
    assert codecs.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)


def test_every_sample_encodes_to_alaw_like_the_reference():
    assert codecs.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_g711_code_round_trip_is_identity_up_to_alias(name):
    """Decoding then re-encoding every code gives the code the reference gives."""
    codec = codecs.get_codec(name)
    reference_encode = audioop.lin2ulaw if name == "PCMU" else audioop.lin2alaw
    decoded = codec.decode(ALL_CODES)
    assert codec.encode(decoded) == reference_encode(decoded.tobytes(), 2)
    # Only mu-law's two zero codes (0x7F and 0xFF) alias; every other code survives.
    assert codec.decode(codec.encode(decoded)).tolist() == decoded.tolist()


@given(arrays(np.int16, st.integers(0, 400)))
def test_encode_decode_matches_reference_for_random_audio(samples):
    raw = samples.tobytes()
    assert codecs.ulaw_decode(codecs.ulaw_encode(samples)).tobytes() == audioop.ulaw2lin(audioop.lin2ulaw(raw, 2), 2)
    assert codecs.alaw_decode(codecs.alaw_encode(samples)).tobytes() == audioop.alaw2lin(audioop.lin2alaw(raw, 2), 2)


@pytest.mark.parametrize("byteorder", ["big", "little"])
def test_l16_round_trip_and_byte_order(byteorder):
    samples = np.array([0, 1, -1, 0x1234, -32768, 32767], dtype=np.int16)
    data = codecs.l16_encode(samples, byteorder)
    assert codecs.l16_decode(data, byteorder).tolist() == samples.tolist()
    expected_first = b"\x12\x34" if byteorder == "big" else b"\x34\x12"
    assert data[6:8] == expected_first


def test_l16_default_is_network_order_and_rejects_odd_length():
    assert codecs.get_codec("L16").encode(np.array([1], dtype=np.int16)) == b"\x00\x01"
    assert codecs.get_codec("L16", l16_byteorder="little").encode(np.array([1], dtype=np.int16)) == b"\x01\x00"
    with pytest.raises(ValueError, match="odd"):
        codecs.l16_decode(b"\x00\x01\x02")


def test_encoders_reject_non_int16_input():
    with pytest.raises(TypeError, match="int16"):
        codecs.ulaw_encode(np.zeros(4, dtype=np.float32))


def test_registry_names_and_frame_sizes():
    assert codecs.get_codec("pcmu").frame_bytes() == 160
    assert codecs.get_codec("PCMA").frame_bytes() == 160
    assert codecs.get_codec("L16").frame_bytes() == 640
    assert codecs.get_codec("PCMU").decode(codecs.get_codec("PCMU").silence * 4).tolist() == [0, 0, 0, 0]
    assert codecs.get_codec("PCMA").decode(codecs.get_codec("PCMA").silence).tolist() == [8]  # A-law has no zero


@pytest.mark.parametrize("name", ["OPUS", "G722", "AMR-WB", "bogus"])
def test_unknown_or_undecodable_encodings_raise_a_clear_error(name):
    with pytest.raises(codecs.UnsupportedCodecError, match=name):
        codecs.get_codec(name)
