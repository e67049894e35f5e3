"""quality() against the sandbox's ground truth, in both capture modes and after save/load.

Every impairment kind (random loss, Gilbert–Elliott burst loss, duplicates, reordering,
jitter) on a WebSocket stream (both tracks) and on forked RTP (rx and tx): lost, duplicate and
reordered counts and the lost-run histogram exactly as ``sb.ground_truth()`` implies them; RFC
3550 jitter within 0.5 ms of the plain A.8 loop written here. Codec mismatch: caught for A-law
labelled PCMU and µ-law labelled PCMA, live and on every library scenario; never raised on a clean
scenario, tones, white noise or silence. Plus the per-call summary, the tidy loss-burst table,
arrival bursts and reconciliation with ``call_quality_stats``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

import telnyx_nb as tnb
from telnyx_nb import quality as q
from telnyx_nb.emodel import e_model_mos, mos
from telnyx_nb.sandbox import Scenario
from telnyx_nb.sandbox.scenarios import get_scenario, library_names
from telnyx_nb.session import StoreSession
from telnyx_nb.store import Store
from telnyx_nb.wire import codecs, media, rtp, webhooks
from telnyx_nb.wire import telephone_event as te

from waiting import timeout, wait_until

COPIES = {"delivered": 1, "duplicated": 2}
ENCODE = {"PCMU": codecs.ulaw_encode, "PCMA": codecs.alaw_encode}
OTHER = {"PCMU": "PCMA", "PCMA": "PCMU"}
IMPAIRMENTS = {
    "loss": dict(loss=0.12, seed=11),
    "burst": dict(burst={"p": 0.06, "r": 0.15}, seed=12),
    "duplicate": dict(duplicate=0.12, seed=13),
    "reorder": dict(reorder=0.12, seed=14),
    "jitter": dict(jitter_ms=15, seed=15),
}
_numbers = itertools.count(1)


# -- ground truth, computed independently of telnyx_nb.quality ---------------------------------------

def unwrap16(seq: list[int]) -> list[int]:
    """16-bit RTP sequence numbers in send order, unwrapped."""
    out = [seq[0]]
    for s in seq[1:]:
        out.append(out[-1] + ((s - out[-1] + 32768) % 65536) - 32768)
    return out


def truth_of_track(rows: pd.DataFrame, path: str) -> dict:
    """What quality() must say for one track, from its ground-truth rows."""
    rows = rows.sort_values("frame", kind="stable")
    if path == "stream":
        rows = rows[rows["chunk"].notna()]
        numbers = rows["chunk"].astype(int).tolist()
    else:
        rows = rows[rows["seq"].notna()]
        numbers = unwrap16(rows["seq"].astype(int).tolist())
    fates = rows["fate"].tolist()
    copies = [COPIES.get(f, 0) for f in fates]
    received = {n for n, c in zip(numbers, copies, strict=True) if c}
    lo, hi = min(received), max(received)
    fate_of = dict(zip(numbers, fates, strict=True))
    runs = []
    for absent, run in itertools.groupby(range(lo, hi + 1), key=lambda n: n not in received):
        run = list(run)
        if absent:
            assert all(fate_of.get(n, "skipped") in ("dropped", "skipped") for n in run)   # the truth's lost runs
            runs.append(len(run))
    sent = rows.assign(number=numbers, copies=copies)
    sent = sent[sent["copies"] > 0].sort_values(["sent_at", "number"], kind="stable")
    order = sent["number"].tolist()
    reordered = sum(1 for i in range(1, len(order)) if order[i] < max(order[:i]))
    return {
        "packets": sum(copies), "expected": hi - lo + 1, "lost": sum(runs),
        "duplicates": fates.count("duplicated"), "reordered": reordered,
        "bursts": [runs.count(k) for k in range(1, 10)] + [sum(1 for r in runs if r >= 10)],
    }


def a8_jitter_ms(table: pd.DataFrame, number: str, timestamp: str, units_per_s: int, ts_scale: int = 1) -> float:
    """RFC 3550 A.8, a plain loop over the packets in arrival order (first copies), in timestamp
    units; ``timestamp * ts_scale`` is the media time in units of 1/units_per_s s."""
    rows = table.sort_values("received_at", kind="stable")
    arrivals = rows["received_at"].to_numpy(dtype="datetime64[ns]").view(np.int64).tolist()
    seen, jitter, last_transit, last_ts, ts_unwrapped = set(), 0.0, None, None, 0
    for arrival_ns, n, ts in zip(arrivals, rows[number].tolist(), rows[timestamp].tolist(), strict=True):
        if n in seen:
            continue
        seen.add(n)
        ts = int(ts) * ts_scale
        if last_ts is None:
            ts_unwrapped = ts
        else:
            ts_unwrapped += ((ts - last_ts + 2**31) % 2**32) - 2**31
        last_ts = ts
        arrival = int(arrival_ns) * units_per_s // 1_000_000_000
        transit = arrival - ts_unwrapped
        if last_transit is not None:
            d = abs(transit - last_transit)
            jitter += (1.0 / 16.0) * (d - jitter)
        last_transit = transit
    return jitter * 1000.0 / units_per_s


def arrival_bursts(arrivals_ns: list[int]) -> tuple[float, int]:
    """(% of frames < 2 ms after the previous one, most frames in one such burst), by hand."""
    if not arrivals_ns:
        return 0.0, 0
    bunched, run, longest = 0, 1, 1
    for previous, now in itertools.pairwise(arrivals_ns):
        if now - previous < 2_000_000:
            bunched += 1
            run += 1
            longest = max(longest, run)
        else:
            run = 1
    return 100.0 * bunched / len(arrivals_ns), longest


# -- live calls ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sb():
    with tnb.Sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module", params=["process", "thread"])
def rx(request, sb):
    with tnb.Receiver(public_key=sb.public_key, process=request.param == "process") as receiver:
        yield receiver


def dial(sb, rx, scenario: Scenario, codec: str = "PCMU", **impairment) -> str:
    to = f"+1555077{next(_numbers):04d}"
    sb.route(to, scenario, codec=codec)
    ccid = sb.client().calls.dial(connection_id=sb.connection_id, to=to, from_="+15550199",
                                  webhook_url=rx.webhook_url).data.call_control_id
    if impairment:
        sb.impair(ccid, **impairment)
    return ccid


def run_pair(sb, rx, scenario: Scenario, codec: str = "PCMU", **impairment) -> dict[str, tuple[str, pd.DataFrame]]:
    """Two calls at once with the same scenario and impairment (the sandbox runs one stream or
    fork per call): one streamed on both tracks, one forked. Returns path -> (ccid, its truth),
    once every frame and packet the truth says was sent is in the receiver's tables."""
    client = sb.client()
    calls = {"stream": dial(sb, rx, scenario, codec, **impairment), "fork": dial(sb, rx, scenario, codec, **impairment)}
    wait_until(lambda: all(sb.call_state(c) == "answered" for c in calls.values()), what="both calls answered")
    tnb.start_streaming(client, calls["stream"], rx, stream_track="both_tracks")
    tnb.start_forking(client, calls["fork"], rx)
    wait_until(lambda: all(sb.call_state(c) == "ended" for c in calls.values()), timeout=30, what="both calls ended")
    sb.wait_webhooks(timeout(10))
    out = {}
    for path, ccid in calls.items():
        truth = sb.ground_truth(ccid)
        truth = truth[truth["path"] == path]
        sent = int(truth["fate"].map(COPIES).fillna(0).sum())
        table = "frames" if path == "stream" else "rtp"
        wait_until(lambda t=table, c=ccid, n=sent: (getattr(rx, t)["call_control_id"] == c).sum() == n,
                   what=f"{sent} {table} rows of {ccid}")
        out[path] = (ccid, truth)
    wait_until(lambda: (rx.events["event_type"] == "call.hangup").sum() >= 2 and
               set(calls.values()) <= set(rx.events.query("event_type == 'call.hangup'")["call_control_id"]),
               what="both call.hangup webhooks")
    return out


def the_row(quality: pd.DataFrame, ccid: str, source: str, track: str) -> pd.Series:
    rows = quality[(quality["call_control_id"] == ccid) & (quality["source"] == source) & (quality["track"] == track)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


@pytest.mark.parametrize("kind", list(IMPAIRMENTS))
def test_counts_bursts_and_jitter_match_the_ground_truth(sb, rx, kind, tmp_path):
    calls = run_pair(sb, rx, Scenario.tone(3.0, outbound_frequency=660), **IMPAIRMENTS[kind])
    quality = rx.quality()
    frames, packets = rx.frames, rx.rtp
    for path, (ccid, truth) in calls.items():
        for track in (("inbound", "outbound") if path == "stream" else ("rx", "tx")):
            expected = truth_of_track(truth[truth["track"] == track], path)
            row = the_row(quality, ccid, path, track)
            assert row[["packets", "expected", "lost", "duplicates", "reordered"]].tolist() == \
                [expected[k] for k in ("packets", "expected", "lost", "duplicates", "reordered")], (path, track)
            assert row[q.LOSS_BURST_COLUMNS].tolist() == expected["bursts"], (path, track)
            assert row["direction"] == {"rx": "inbound", "tx": "outbound"}.get(track, track)
            assert (row["target"] == track) if path == "fork" else pd.isna(row["target"])
            assert not row["codec_mismatch"]
            if path == "stream":
                mine = frames[(frames["call_control_id"] == ccid) & (frames["track"] == track)]
                reference = a8_jitter_ms(mine, "chunk", "timestamp", 8000, ts_scale=8)    # timestamp is in ms
            else:
                mine = packets[(packets["call_control_id"] == ccid) & (packets["target"] == track)]
                reference = a8_jitter_ms(mine, "seq", "rtp_timestamp", 8000)
            assert row["jitter_ms"] == pytest.approx(reference, abs=0.5), (path, track)
            firsts = mine.sort_values("received_at", kind="stable").drop_duplicates(
                "chunk" if path == "stream" else "seq")
            stamps = firsts["received_at"].to_numpy(dtype="datetime64[ns]").view(np.int64).tolist()
            pct, longest = arrival_bursts(stamps)
            assert (row["arrival_burst_pct"], row["arrival_burst_max"]) == (pytest.approx(pct), longest)
        # the impairment really impaired (each kind shows in its own count)
        rows = quality[quality["call_control_id"] == ccid]
        shows = {"loss": rows["lost"].sum(), "burst": rows[q.LOSS_BURST_COLUMNS[1:]].to_numpy().sum(),
                 "duplicate": rows["duplicates"].sum(), "reorder": rows["reordered"].sum(),
                 "jitter": (rows["jitter_ms"] > 3).sum()}
        assert shows[kind] > 0, (kind, path)

    saved = tnb.load(rx.save(tmp_path / "saved"))
    pd.testing.assert_frame_equal(saved.quality(), rx.quality())
    pd.testing.assert_frame_equal(saved.quality(by="call"), rx.quality(by="call"))
    pd.testing.assert_frame_equal(q.reconcile(saved), q.reconcile(rx))


def test_reconcile_explains_the_difference_with_call_quality_stats(sb, rx):
    calls = run_pair(sb, rx, Scenario.tone(3.0, outbound_frequency=660), loss=0.2, seed=21)
    table = q.reconcile(rx)
    assert list(table.columns) == q.RECONCILE_COLUMNS
    for path, (ccid, truth) in calls.items():
        hangup = rx.events.query("event_type == 'call.hangup' and call_control_id == @ccid").iloc[0]["payload"]
        stats = hangup["call_quality_stats"]
        for direction, track in (("inbound", "inbound" if path == "stream" else "rx"),
                                 ("outbound", "outbound" if path == "stream" else "tx")):
            row = table[(table["call_control_id"] == ccid) & (table["direction"] == direction)].iloc[0]
            assert row["sources"] == path
            assert row["telnyx_packet_count"] == int(stats[direction]["packet_count"])
            assert row["telnyx_skip_packet_count"] == int(stats[direction]["skip_packet_count"])
            assert row["packets_diff"] == 0                                 # everything sent was received
            rows = truth[truth["track"] == track].sort_values("frame")
            fates = rows["fate"].tolist()
            got = [i for i, f in enumerate(fates) if f in COPIES]
            edges = got[0] + (len(fates) - 1 - got[-1])                     # lost before the first / after the last
            assert row["lost_diff"] == edges == row["edges"]
            if path == "stream" or got[0] == 0:                         # a fork's head shows by its marker bit
                assert (row["edges_before"], row["edges_after"]) == (got[0], len(fates) - 1 - got[-1])
            else:
                assert pd.isna(row["edges_before"]) and pd.isna(row["edges_after"])
            assert ("edges" in row["explanation"]) == (edges > 0)
            assert "unexplained" not in row["explanation"]
            assert ("counts agree" in row["explanation"]) == (edges == 0)
            if direction == "inbound":
                assert row["telnyx_mos"] == pytest.approx(float(stats["inbound"]["mos"]))
                assert row["mos_diff"] == pytest.approx(row["telnyx_mos"] - row["mos"])
            else:
                assert pd.isna(row["telnyx_mos"]) and pd.isna(row["mos_diff"])


def test_fork_dtmf_with_duplicates_matches_the_ground_truth(sb, rx):
    """RFC 4733 telephone-event packets have ground-truth rows of their own (path "fork_event"),
    duplicated like the audio: quality() counts them as packets and duplicates, rx.dtmf has each
    digit once."""
    ccid = dial(sb, rx, Scenario.tone(3.5, dtmf=[(1.6, "7"), (2.2, "*"), (2.8, "0")]), duplicate=0.3, seed=31)
    wait_until(lambda: sb.call_state(ccid) == "answered", what="the call answered")
    tnb.start_forking(sb.client(), ccid, rx)
    wait_until(lambda: sb.call_state(ccid) == "ended", timeout=30, what="the call ended")
    sb.wait_webhooks(timeout(10))
    truth = sb.ground_truth(ccid, payloads=True)
    truth = truth[truth["path"].isin(["fork", "fork_event"]) & truth["seq"].notna()]
    sent = int(truth["fate"].map(COPIES).fillna(0).sum())
    wait_until(lambda: (rx.rtp["call_control_id"] == ccid).sum() == sent, what=f"{sent} rtp rows")
    events = truth[truth["path"] == "fork_event"]
    assert set(events["fate"]) <= set(COPIES) and (events["fate"] == "duplicated").any()   # the impairment reached them
    digits = events.drop_duplicates("rtp_timestamp")["payload"].map(lambda b: te.parse(b).digit).tolist()
    assert digits == ["7", "*", "0"][-len(digits):] and len(digits) >= 2    # those after the fork started
    assert len(events) == 7 * len(digits) and set(events["track"]) == {"rx"} and events["n_bytes"].eq(4).all()
    assert events[["ssrc", "seq", "rtp_timestamp", "due_at", "sent_at"]].notna().all().all()
    assert set(events["ssrc"]) == set(truth[(truth["path"] == "fork") & (truth["track"] == "rx")]["ssrc"])
    quality = rx.quality()
    for track in ("rx", "tx"):
        expected = truth_of_track(truth[truth["track"] == track], "fork")
        row = the_row(quality, ccid, "fork", track)
        assert row[["packets", "expected", "lost", "duplicates", "reordered"]].tolist() == \
            [expected[k] for k in ("packets", "expected", "lost", "duplicates", "reordered")], track
    got = rx.rtp[(rx.rtp["call_control_id"] == ccid) & (rx.rtp["target"] == "rx")]
    assert int((got["payload_type"] == 101).sum()) == int(events["fate"].map(COPIES).sum())
    dtmf = rx.dtmf[rx.dtmf["call_control_id"] == ccid]
    assert dtmf["digit"].tolist() == digits and (dtmf["source"] == "fork").all() and dtmf["end"].all()


def reconciled(chunks: list[int], duplicate: tuple[int, ...], stats: dict) -> pd.Series:
    """reconcile()'s inbound row for one stream track that received ``chunks`` (each once, those
    in ``duplicate`` twice) and a call.hangup carrying ``stats`` as its inbound call_quality_stats."""
    store = Store()
    info = store.start_stream(media.Start("s-rec", 1, "v3:rec", media.MediaFormat("PCMU", 8000)), 10**18, 10**18,
                              True)
    for n, chunk in enumerate(chunks):
        for _ in range(2 if chunk in duplicate else 1):
            store.add_frame(info, "inbound", n + 2, chunk, 20 * (chunk - 1), bytes(160), 10**18 + chunk * 20_000_000)
    hangup = {"call_control_id": "v3:rec", "call_quality_stats": {"inbound": {k: str(v) for k, v in stats.items()}}}
    store.add_event(webhooks.WebhookEvent("call.hangup", "e-1", "2026-01-01T00:00:00.000000Z", hangup), True, 10**18)
    table = q.reconcile(StoreSession(store))
    return table[table["direction"] == "inbound"].iloc[0]


def test_reconcile_says_edges_only_when_the_counts_account_for_the_difference():
    # chunks 3..100 less 50, one duplicate; Telnyx: 2 skipped before, 1 in the middle, 4 after
    row = reconciled([c for c in range(3, 101) if c != 50], (7,), {"packet_count": 98, "skip_packet_count": 7})
    assert (row["lost"], row["lost_diff"], row["packets_diff"]) == (1, 6, 0)
    assert (row["edges"], row["edges_before"], row["edges_after"]) == (6, 2, 4)
    assert "edges, 2 before our first packet and 4 after our last" in row["explanation"]
    assert "unexplained" not in row["explanation"]
    # the same, but Telnyx sent 3 packets that did not arrive: the numbers do not tell edges from them
    row = reconciled([c for c in range(3, 101) if c != 50], (7,), {"packet_count": 101, "skip_packet_count": 4})
    assert (row["lost_diff"], row["packets_diff"], row["edges"]) == (3, 3, 6)
    assert "unexplained" in row["explanation"] and "edges" not in row["explanation"]
    # our first chunk is 11 (10 before it), but Telnyx's counts leave room for only 6 outside first..last
    row = reconciled(list(range(11, 101)), (), {"packet_count": 90, "skip_packet_count": 6})
    assert (row["lost_diff"], row["packets_diff"], row["edges"], row["edges_before"]) == (6, 0, 6, 10)
    assert row["edges_after"] == -4
    assert "unexplained" in row["explanation"] and "edges" not in row["explanation"]
    # all received, nothing skipped: counts agree
    row = reconciled(list(range(1, 51)), (), {"packet_count": 50, "skip_packet_count": 0})
    assert (row["edges"], row["edges_before"], row["edges_after"]) == (0, 0, 0)
    assert "counts agree" in row["explanation"] and "edges" not in row["explanation"]


SPEECH = Scenario("support_call_4s", 4.0, get_scenario("support_call").utterances[:2])


@pytest.mark.parametrize("codec, mismatch", [("PCMU", True), ("PCMA", True), ("PCMU", False)],
                         ids=["PCMA-as-PCMU", "PCMU-as-PCMA", "clean"])
def test_codec_mismatch_live(sb, rx, codec, mismatch, tmp_path):
    calls = run_pair(sb, rx, SPEECH, codec, codec_mismatch=True) if mismatch else run_pair(sb, rx, SPEECH, codec)
    quality = rx.quality()
    for path, (ccid, _) in calls.items():
        rows = quality[quality["call_control_id"] == ccid]
        assert len(rows) == 2 and (rows["codec_mismatch"] == mismatch).all(), rows
        if path == "stream":
            assert set(rx.streams.query("call_control_id == @ccid")["encoding"]) == {codec}
        else:
            assert set(rx.rtp.query("call_control_id == @ccid")["encoding"]) == {codec}
        by_call = rx.quality(by="call").set_index("call_control_id")
        assert by_call.loc[ccid, "codec_mismatch"] == mismatch
    saved = tnb.load(rx.save(tmp_path / "saved"))
    pd.testing.assert_frame_equal(saved.quality(), quality)


# -- codec mismatch on every scenario, tones and noise (no sockets) -----------------------------------

def session_of(tracks: dict[str, bytes], declared: str) -> StoreSession:
    """A session with one stream (both tracks) and one fork (rx, tx) carrying ``tracks``'
    bytes in 160-byte frames 20 ms apart, labelled ``declared``."""
    store = Store()
    info = store.start_stream(media.Start("s-1", 1, "v3:call", media.MediaFormat(declared, 8000)), 1, 0, False)
    store.claim_fork("v3:call")
    pt = {"PCMU": 0, "PCMA": 8}[declared]
    t0 = 1_700_000_000_000_000_000
    for (track, data), target, ssrc in zip(tracks.items(), ("rx", "tx"), (1111, 2222), strict=True):
        for k in range(len(data) // 160):
            frame = data[160 * k:160 * (k + 1)]
            at = t0 + 20_000_000 * k
            store.add_frame(info, track, k + 2, k + 1, 20 * k, frame, at)
            packet = rtp.build_rtp(rtp.RtpPacket(pt, (40000 + k) & 0xFFFF, 160 * k, ssrc, frame))
            store.add_packet(target, rtp.parse_fork_packet(packet), at + 1000)
    return StoreSession(store)


@pytest.mark.parametrize("name", library_names())
@pytest.mark.parametrize("law", ["PCMU", "PCMA"])
def test_every_scenario_is_clean_and_its_speech_caught_when_mislabelled(name, law):
    pcm = get_scenario(name).pcm(8000)
    encoded = {track: ENCODE[law](samples) for track, samples in pcm.items()}
    clean = session_of(encoded, law).quality()
    assert len(clean) == 4 and not clean["codec_mismatch"].any()
    swapped = session_of(encoded, OTHER[law]).quality()
    has_signal = {track: bool(np.abs(samples).max() > 1000) for track, samples in pcm.items()}
    for _, row in swapped.iterrows():
        track = row["track"] if row["source"] == "stream" else {"rx": "inbound", "tx": "outbound"}[row["track"]]
        assert row["codec_mismatch"] == has_signal[track], (name, law, row["source"], row["track"])
    assert swapped["codec_mismatch"].any() == (name != "silence")


TONES = [50, 300, 440, 697, 1000, 1209, 1633, 2000, 3000, 3400, 3900]


@pytest.mark.parametrize("law", ["PCMU", "PCMA"])
def test_no_false_alarm_on_tones_noise_and_silence(law):
    rng = np.random.default_rng(3)
    t = np.arange(3 * 8000) / 8000
    signals = {f"tone {hz} Hz {level}": (level * np.sin(2 * np.pi * hz * t))
               for hz in TONES for level in (300, 9830, 30000)}
    signals.update({f"white noise σ={s}": rng.normal(0, s, len(t)) for s in (30, 300, 3000, 10000, 30000)})
    signals["dual tone 697+1209 Hz"] = 8000 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1209 * t))
    signals["square wave 500 Hz"] = 20000 * np.sign(np.sin(2 * np.pi * 500 * t))
    signals["silence"] = np.zeros(len(t))
    signals["dither ±2"] = rng.integers(-2, 3, len(t)).astype(float)
    for name, x in signals.items():
        data = ENCODE[law](np.clip(x, -32768, 32767).astype(np.int16))
        assert q.codec_mismatch(data, law)[0] is False, name
    # the same path through quality(): a tone labelled right, then with the other law
    tone = ENCODE[law]((9830 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))
    noise = ENCODE[law](np.clip(rng.normal(0, 3000, len(t)), -32768, 32767).astype(np.int16))
    assert not session_of({"inbound": tone, "outbound": noise}, law).quality()["codec_mismatch"].any()
    mislabelled = session_of({"inbound": tone, "outbound": noise}, OTHER[law]).quality().set_index(["source", "track"])
    assert mislabelled["codec_mismatch"].to_dict() == {("stream", "inbound"): True, ("stream", "outbound"): False,
                                                       ("fork", "rx"): True, ("fork", "tx"): False}


def test_mismatch_is_decided_on_the_first_second_of_speech():
    """Speech after a long silence: the decision uses the first 50 signal blocks, wherever they are;
    a mismatch that only starts later (clean first second) is not reported."""
    speech = get_scenario("support_call").pcm(8000)["inbound"]
    silence = np.zeros(60 * 8000, np.int16)
    late = ENCODE["PCMA"](np.concatenate((silence, speech)))
    assert q.codec_mismatch(late, "PCMU") == (True, q.MISMATCH_BLOCKS)
    first_clean = ENCODE["PCMU"](speech[:8000 * 10]) + ENCODE["PCMA"](speech[8000 * 10:])
    assert q.codec_mismatch(first_clean, "PCMU")[0] is False
    onset = 160 * int(np.argmax(speech[:len(speech) // 160 * 160].reshape(-1, 160).std(axis=1) > 100))
    assert onset > 0                                                         # it starts with a pause
    assert q.codec_mismatch(ENCODE["PCMA"](speech[:onset + 8000]), "PCMU") == (True, pytest.approx(25, abs=15))


def test_a_minute_of_noise_ends_the_search():
    """After MISMATCH_GIVE_UP_BLOCKS loud blocks without a second of signal the answer is final:
    False, even if mislabelled speech follows (a long noisy recording is not read to its end)."""
    rng = np.random.default_rng(4)
    noise = np.clip(rng.normal(0, 3000, 70 * 8000), -32768, 32767).astype(np.int16)
    speech = get_scenario("support_call").pcm(8000)["inbound"]
    assert q.codec_mismatch(ENCODE["PCMA"](np.concatenate((noise, speech))), "PCMU") == (False, 0)
    assert q.codec_mismatch(ENCODE["PCMA"](np.concatenate((noise[:8000 * 30], speech))), "PCMU")[0] is True


def test_a_live_session_scans_each_block_once_and_keeps_the_decision():
    """Polling quality() while frames arrive: undecided (False) until a second of speech, then
    final; blocks already scanned are not scanned again."""
    speech = get_scenario("support_call").pcm(8000)["inbound"][:8000 * 12]
    data = ENCODE["PCMA"](speech)
    store = Store()
    info = store.start_stream(media.Start("s-2", 1, "v3:live", media.MediaFormat("PCMU", 8000)), 1, 0, False)
    session = StoreSession(store)
    seen = []
    for k in range(len(data) // 160):
        store.add_frame(info, "inbound", k + 2, k + 1, 20 * k, data[160 * k:160 * (k + 1)], 1_000 + 20_000_000 * k)
        if k % 25 == 24:
            seen.append(bool(session.quality().loc[0, "codec_mismatch"]))
    assert seen[0] is False and seen[-1] is True and seen == sorted(seen)    # False, then True for good
    (scan,) = q._SCANS[session].values()
    assert scan.final and scan.done < len(data) // 160                      # stopped scanning once decided
    assert session.quality().loc[0, "codec_mismatch"]


# -- loss bursts, arrival bursts, the per-call summary and the E-model (known inputs) -----------------

def test_loss_burst_histogram_of_known_runs():
    runs = [1, 1, 2, 3, 5, 9, 10, 14, 1]
    numbers, n = [0], 0
    for run in runs:
        n += run + 1
        numbers.append(n)
    numbers.extend([n + 1, n + 2])
    s = q.sequence_stats(np.array(numbers), 20_000_000 * np.arange(len(numbers)), 0.02 * np.array(numbers))
    assert [s[c] for c in q.LOSS_BURST_COLUMNS] == [3, 1, 1, 0, 1, 0, 0, 0, 1, 2]
    assert s["lost"] == sum(runs)


def test_loss_bursts_is_the_tidy_form_of_the_columns():
    store = Store()
    info = store.start_stream(media.Start("s-3", 1, "v3:c", media.MediaFormat("PCMU", 8000)), 1, 0, False)
    for k, chunk in enumerate([1, 2, 4, 5, 8, 20, 21]):            # runs of 1, 2 and 11
        store.add_frame(info, "inbound", k + 2, chunk, 20 * (chunk - 1), b"\xff" * 160, 20_000_000 * k)
    session = StoreSession(store)
    row = session.quality().iloc[0]
    assert row[q.LOSS_BURST_COLUMNS].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    tidy = q.loss_bursts(session)
    assert list(tidy.columns) == ["source", "stream_id", "ssrc", "call_control_id", "track", "direction", "target",
                                  "run", "runs", "lost"]
    assert tidy["run"].tolist() == list(range(1, 11)) and tidy["runs"].tolist() == row[q.LOSS_BURST_COLUMNS].tolist()
    assert tidy.loc[tidy["run"] < 10, "lost"].sum() == 3
    pd.testing.assert_frame_equal(q.loss_bursts(session.quality()), tidy)


def test_arrival_bursts_of_a_stalled_websocket():
    """20 ms pacing, a 100 ms stall, then five frames at once (TCP releasing a queue)."""
    arrivals = [20 * k for k in range(10)] + [280, 280.3, 280.6, 281.0, 281.5] + [300 + 20 * k for k in range(5)]
    ns = (np.array(arrivals) * 1e6).astype(np.int64)
    s = q.sequence_stats(np.arange(len(ns)), ns, 0.02 * np.arange(len(ns)))
    assert s["arrival_burst_max"] == 5 and s["arrival_burst_pct"] == pytest.approx(100 * 4 / 20)
    assert arrival_bursts(ns.tolist()) == (pytest.approx(20.0), 5)
    assert q.sequence_stats(np.arange(5), 20_000_000 * np.arange(5), 0.02 * np.arange(5))["arrival_burst_max"] == 1


def test_quality_columns_labels_and_the_per_call_summary():
    rng = np.random.default_rng(9)
    speech = ENCODE["PCMU"](get_scenario("survey").pcm(8000)["outbound"][8000 * 2:8000 * 5])
    session = session_of({"inbound": speech, "outbound": speech}, "PCMU")
    store = session._store
    info = store.start_stream(media.Start("s-other", 1, "v3:other", media.MediaFormat("PCMU", 8000)), 1, 0, False)
    for k, chunk in enumerate(sorted(rng.choice(np.arange(1, 200), 150, replace=False))):
        store.add_frame(info, "inbound", k + 2, int(chunk), 0, b"\xff" * 160, 20_000_000 * k)
    table = session.quality()
    assert list(table.columns) == q.COLUMNS
    for col in ("source", "stream_id", "call_control_id", "track", "direction", "target"):
        assert isinstance(table[col].dtype, pd.CategoricalDtype), col
        assert all(isinstance(c, str) for c in table[col].cat.categories), col
    assert str(table["ssrc"].dtype) == "Int64" and table["codec_mismatch"].dtype == bool
    assert table[["source", "track", "direction", "target"]].astype(object).where(table.notna(), None).values.tolist() \
        == [["stream", "inbound", "inbound", None], ["stream", "outbound", "outbound", None],
            ["stream", "inbound", "inbound", None], ["fork", "rx", "inbound", "rx"], ["fork", "tx", "outbound", "tx"]]

    calls = session.quality(by="call")
    assert list(calls.columns) == q.CALL_COLUMNS
    assert isinstance(calls["call_control_id"].dtype, pd.CategoricalDtype)
    for ccid, rows in table.groupby("call_control_id", observed=True):
        summary = calls.set_index("call_control_id").loc[ccid]
        for col in ("packets", "expected", "lost", "duplicates", "reordered", "discarded", *q.LOSS_BURST_COLUMNS):
            assert summary[col] == rows[col].sum(), col
        assert summary["loss_pct"] == pytest.approx(100 * rows["lost"].sum() / rows["expected"].sum())
        assert summary["jitter_ms"] == rows["jitter_ms"].max() and summary["mos"] == rows["mos"].min()
        assert summary["max_gap_ms"] == rows["max_gap_ms"].max()
        assert summary["codec_mismatch"] == rows["codec_mismatch"].any()
        assert summary["streams"] == rows["stream_id"].nunique() and summary["ssrcs"] == rows["ssrc"].nunique()
    with pytest.raises(ValueError, match="by"):
        session.quality(by="track")
    empty = StoreSession(Store())
    assert list(empty.quality(by="call").columns) == q.CALL_COLUMNS and empty.quality(by="call").empty
    assert list(q.reconcile(empty).columns) == q.RECONCILE_COLUMNS and q.reconcile(empty).empty


def test_tnb_quality_is_the_module():
    assert tnb.quality is q and callable(tnb.quality.reconcile) and "quality" in dir(tnb)


def test_e_model_formula_and_parameters():
    def by_hand(ppl, d, ie=0.0, bpl=4.3, burst_r=1.0):
        ie_eff = ie + (95 - ie) * ppl / (ppl / burst_r + bpl)
        i_d = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
        r = 93.2 - i_d - ie_eff
        return 1.0 if r < 0 else 4.5 if r > 100 else 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)

    for ppl, d in [(0, 0), (1, 50), (5, 150), (10, 200), (30, 400)]:
        assert e_model_mos(ppl, d) == pytest.approx(by_hand(ppl, d))
        assert e_model_mos(ppl, d, ie=10, bpl=25.1, burst_r=2.0) == pytest.approx(by_hand(ppl, d, 10, 25.1, 2.0))
    assert mos(2.0, 15.0) == pytest.approx(by_hand(2.0, 2 * 15.0 + 10))
    assert mos(0, 0) == pytest.approx(4.40, abs=0.005) and math.isclose(e_model_mos(100, 1000), 1.0)
