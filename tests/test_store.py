"""telnyx_nb.store and session: append-only tables, snapshots under concurrent appends, assembly, session files."""

import json
import threading

import numpy as np
import pandas as pd
import pytest

import telnyx_nb as tnb
from telnyx_nb.audio import assemble
from telnyx_nb.session import StoreSession
from telnyx_nb.store import Store
from telnyx_nb.store.columns import excerpt, utc
from telnyx_nb.wire import codecs, media

from waiting import timeout


def start(sid="s", ccid="v3:c", encoding="PCMU", rate=8000):
    return media.Start(sid, 1, ccid, media.MediaFormat(encoding, rate))


def test_assemble_orders_dedupes_and_fills_gaps_with_silence():
    payload = b"".join(bytes([n]) * 4 for n in (3, 1, 1, 5))          # arrival order: 3, 1, 1 (dup), 5
    samples = assemble(np.array([3, 1, 1, 5]), np.array([0, 4, 8, 12]), np.array([4, 4, 4, 4]), payload,
                       codecs.get_codec("PCMU"))
    expected = codecs.ulaw_decode(b"\x01" * 4 + b"\xff" * 4 + b"\x03" * 4 + b"\xff" * 4 + b"\x05" * 4)
    np.testing.assert_array_equal(samples, expected)


def test_assemble_l16_silence_is_zero():
    l16 = codecs.get_codec("L16")
    samples = assemble(np.array([1, 3]), np.array([0, 4]), np.array([4, 4]),
                       l16.encode(np.array([1, 2, 3, 4], np.int16)), l16)
    assert samples.tolist() == [1, 2, 0, 0, 3, 4]


def test_utc_is_nanosecond_utc_with_missing_values():
    index = utc([0, np.iinfo(np.int64).min, 1_700_000_000_123_456_789])
    assert str(index.dtype) == "datetime64[ns, UTC]" and index.isna().tolist() == [False, True, False]
    assert index[2].nanosecond == 789


def test_excerpt_is_bounded_text():
    assert excerpt(b"\xff" * 1000) == "\\xff" * 50
    assert len(excerpt("x" * 1000)) == 200


def test_snapshots_are_consistent_while_appending():
    store = Store()
    info = store.start_stream(start(), 1, 0, False)
    stop = threading.Event()

    def writer():
        chunk = 0
        while not stop.is_set() and chunk < 50_000:
            chunk += 1
            store.add_frame(info, "inbound", chunk, chunk, 20 * chunk, bytes([chunk % 256]) * 160, 1_000 + chunk)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        sizes = []
        for _ in range(30):
            frames = store.table("frames")
            sizes.append(len(frames))
            assert frames["chunk"].tolist() == list(range(1, len(frames) + 1))
            assert (frames["_offset"].to_numpy() == 160 * np.arange(len(frames))).all()
            assert len(store.payload("frames", 0)) >= 160 * len(frames)
    finally:
        stop.set()
        thread.join(timeout(10))
    assert not thread.is_alive()
    assert sizes == sorted(sizes) and sizes[-1] > 0


def test_empty_session_saves_and_loads(tmp_path):
    path = StoreSession(Store()).save(tmp_path / "empty")
    loaded = tnb.load(path)
    assert loaded.frames.empty and loaded.quality().empty
    assert str(loaded.events["received_at"].dtype) == "datetime64[ns, UTC]"
    with pytest.raises(LookupError):
        loaded.audio("v3:none")


def test_duplicate_webhook_ids_are_stored_once():
    from telnyx_nb.wire import webhooks

    store = Store()
    event = webhooks.parse_event(webhooks.encode_body(webhooks.build_envelope("call.answered", {}, event_id="e")))
    assert store.add_event(event, False, 1) and not store.add_event(event, False, 2)
    assert len(store.table("events")) == 1 and store.duplicate_events == 1


def test_load_checks_format_and_version(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a telnyx_nb session"):
        tnb.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "telnyx_nb.session", "version": 99}))
    with pytest.raises(ValueError, match="newer"):
        tnb.load(tmp_path)


def test_audio_rejects_unknown_source_and_codec():
    store = Store()
    info = store.start_stream(start(encoding="OPUS", rate=48000), 1, 0, False)
    store.add_frame(info, "inbound", 2, 1, 0, b"\x01\x02", 2)
    session = StoreSession(store)
    with pytest.raises(codecs.UnsupportedCodecError):
        session.audio("v3:c")
    with pytest.raises(ValueError, match="source"):
        session.audio("v3:c", source="carrier-pigeon")
    assert session.frames.loc[0, "encoding"] == "OPUS"
    assert session.quality().loc[0, "packets"] == 1
    assert isinstance(session.streams, pd.DataFrame)


def test_audio_wav_and_notebook_player(tmp_path):
    import wave

    audio = tnb.Audio(np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16), 8000)
    path = audio.to_wav(tmp_path / "a.wav")
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert np.frombuffer(wav.readframes(5), "<i2").tolist() == audio.samples.tolist()
    assert "<audio" in audio._repr_html_() and repr(audio) == "Audio(5 samples, 8000 Hz, 0.00 s)"
