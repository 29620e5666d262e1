"""Session checkpoints, pure parts: extractor/tracker state round trips, the binary record, restore rules, the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emon_core.contracts import BeatClass, EventKind
from gateway.checkpoint import CheckpointError, SessionCheckpoint, decode, encode, refusal
from gateway.checkpoint_store import CheckpointStore
from gateway.rhythm import RhythmTracker
from gateway.signal.beats import BeatFeatureExtractor, ExtractorState
from gateway.signal.filters import condition_offline
from tests.unit._synthetic_ecg import synthetic_ecg

FS = 360.0


def _beats(seconds: float = 40.0, seed: int = 1) -> tuple[np.ndarray, list[int]]:
    x, r_t = synthetic_ecg(seconds, FS, rr_s=0.8, seed=seed)
    return condition_offline(x, FS), [int(round(t * FS)) for t in r_t]


def test_extractor_state_round_trip_continues_rr_features_exactly() -> None:
    cond, r = _beats(80.0)
    cut = 60 * 360
    a = BeatFeatureExtractor(FS)
    a.process(cond[:cut], [i for i in r if i < cut - 200])
    st = a.export_state()
    assert st.count > 32 and st.pending is not None and st.rr.size == min(st.count, 256)
    b = BeatFeatureExtractor(FS)
    b.import_state(st)
    st2 = b.export_state()
    assert st2.count == st.count and st2.scale == pytest.approx(st.scale)
    np.testing.assert_allclose(st2.template, st.template, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(st2.rr, st.rr)
    assert st2.pending is not None and st2.pending[0] == st.pending[0]
    # both go on with the same signal and peaks: RR features agree exactly, the windows closely
    rest = [i for i in r if i >= cut - 200]
    out_a = a.process(cond[cut:], rest)
    b_buf_start = cut - 3000  # b has no signal yet: give it the last seconds, as a restored session's tail does
    b2 = BeatFeatureExtractor(FS)
    shifted = ExtractorState(st.count, st.template, st.scale, st.rr, (st.pending[0] - b_buf_start, st.pending[1]))
    b2.import_state(shifted)
    b2.process(cond[b_buf_start:cut], [])
    out_b = b2.process(cond[cut:], [i - b_buf_start for i in rest])
    assert len(out_a) == len(out_b) > 10
    np.testing.assert_array_equal(out_a.rr, out_b.rr)
    np.testing.assert_allclose(out_a.windows[..., 0], out_b.windows[..., 0], rtol=0.01, atol=1e-3)  # scale: seeded ring
    assert np.abs(out_a.windows[..., 1] - out_b.windows[..., 1]).max() < 0.1  # seeded template vs real ring


def test_extractor_import_seeds_the_template() -> None:
    t = np.linspace(-1, 1, BeatFeatureExtractor(FS).config.window_len).astype(np.float32)
    ex = BeatFeatureExtractor(FS)
    ex.import_state(ExtractorState(100, t, 1.5, np.full(20, 300), None))
    st = ex.export_state()
    np.testing.assert_allclose(st.template, t, atol=1e-7)
    assert st.scale == pytest.approx(1.5) and st.count == 100 and st.pending is None


def _tracker_with_history() -> RhythmTracker:
    t = RhythmTracker(FS)
    i = 1000
    for _ in range(20):
        t.on_detection(i)
        t.on_beat(i, BeatClass.N)
        i += 300
    for _ in range(4):  # an open V run
        t.on_detection(i)
        t.on_beat(i, BeatClass.V)
        i += 120
    t.signal("lead_off", i, True, "lead off")
    return t


def test_tracker_state_round_trip_through_json_behaves_the_same() -> None:
    a = _tracker_with_history()
    b = RhythmTracker(FS)
    b.import_state(json.loads(json.dumps(a.export_state())))
    assert b.export_state() == a.export_state()
    seq = [("signal", 9000), ("det", 9100), ("beat", 9100), ("det", 9400), ("beat", 9400), ("adv", 11000)]
    for what, i in seq:
        if what == "signal":
            ua, ub = a.signal("lead_off", i, False), b.signal("lead_off", i, False)
        elif what == "det":
            ua, ub = a.on_detection(i), b.on_detection(i)
        elif what == "beat":
            ua, ub = a.on_beat(i, BeatClass.N), b.on_beat(i, BeatClass.N)
        else:
            ua, ub = a.advance(i), b.advance(i)
        assert ua == ub
    assert a.export_state() == b.export_state()


def test_unobserved_span_claims_no_pause_and_closes_a_sent_one() -> None:
    t = RhythmTracker(FS)
    for i in range(0, 3600, 300):
        t.on_detection(i)
    assert t.advance(3300 + 2 * 360) == []  # 2 s without a beat: not a pause yet
    ups = t.advance(3300 + 4 * 360)
    assert [u.kind for u in ups] == [EventKind.PAUSE] and ups[0].onset_index == 3300
    ups = t.unobserved(3300 + 5 * 360, 3300 + 8 * 360)
    assert len(ups) == 1 and ups[0].final and ups[0].end_index == 3300 + 5 * 360
    assert "not observed (gateway restart)" in ups[0].detail
    # a peak from before the span, released late, does not restart the pause clock
    assert t.on_detection(3300 + 5 * 360 - 10) == []
    assert t.advance(3300 + 12 * 360) == []
    assert t.on_detection(3300 + 12 * 360) == []  # first beat after the span: no pause across it
    ups = t.advance(3300 + 16 * 360)  # from here on, pauses again
    assert [u.kind for u in ups] == [EventKind.PAUSE] and ups[0].onset_index == 3300 + 12 * 360


def test_unobserved_span_ends_an_open_run() -> None:
    t = RhythmTracker(FS)
    ups = [u for i in range(5) for u in t.on_beat(1000 + 120 * i, BeatClass.V)]
    assert ups and ups[-1].beat_count == 5
    ups = t.unobserved(2000, 4000)
    assert len(ups) == 1 and ups[0].final and ups[0].beat_count == 5 and "gateway restart" in ups[0].detail
    ups = [u for i in range(2) for u in t.on_beat(4100 + 120 * i, BeatClass.V)]
    assert ups == []  # two V beats after the span do not continue the old run


def _checkpoint(**kw: object) -> SessionCheckpoint:
    t = _tracker_with_history()
    tail = np.sin(np.arange(1440) / 20.0).astype(np.float32)
    tail[100:110] = np.nan
    base = dict(device_id="dev-00001", fs_hz=360.0, valid_index=100_000, written_ms=1_700_000_000_000,
                model_version="m1", last_seq=277, last_device_time_ms=1_699_999_999_000, anchor_index=99_640,
                anchor_ms=1_699_999_999_000, lead_off=False, silent=False, beat_floor=99_500,
                extractor=ExtractorState(300, np.linspace(0, 1, 126).astype(np.float32), 1.25,
                                         np.arange(256, dtype=np.int64) + 250,
                                         (99_500, np.linspace(1, 2, 126).astype(np.float32))),
                tracker=t.export_state(), tail=tail)
    base.update(kw)
    return SessionCheckpoint(**base)  # type: ignore[arg-type]


def test_record_round_trip_and_size() -> None:
    c = _checkpoint()
    blob = encode(c)
    d = decode(blob)
    assert len(blob) < 6000
    for f in ("device_id", "fs_hz", "valid_index", "written_ms", "model_version", "last_seq", "last_device_time_ms",
              "anchor_index", "anchor_ms", "lead_off", "silent", "beat_floor", "tracker"):
        assert getattr(d, f) == getattr(c, f), f
    np.testing.assert_array_equal(d.extractor.template, c.extractor.template)
    np.testing.assert_array_equal(d.extractor.rr, c.extractor.rr)
    assert d.extractor.count == 300 and d.extractor.scale == 1.25
    assert d.extractor.pending is not None and d.extractor.pending[0] == 99_500
    np.testing.assert_array_equal(d.extractor.pending[1], c.extractor.pending[1])  # type: ignore[index]
    assert np.isnan(d.tail[100:110]).all() and not np.isnan(d.tail[:100]).any()
    np.testing.assert_allclose(d.tail[:100], c.tail[:100], atol=0.0006)  # microvolt resolution
    assert d.tail_start == 100_000 - 1440


def test_record_without_pending_beat_or_tail() -> None:
    c = _checkpoint(beat_floor=None, tail=np.empty(0, np.float32),
                    extractor=ExtractorState(0, np.zeros(126, np.float32), 0.0, np.empty(0, np.int64), None))
    d = decode(encode(c))
    assert d.beat_floor is None and d.extractor.pending is None and d.tail.size == 0 and d.extractor.rr.size == 0


@pytest.mark.parametrize("mangle", [lambda b: b[:-3], lambda b: b"XXXX" + b[4:], lambda b: b[:5] + b"\x00" + b[6:],
                                    lambda b: b + b"\x00", lambda b: b[:12]])
def test_unreadable_records_are_refused(mangle: object) -> None:
    with pytest.raises(CheckpointError):
        decode(mangle(encode(_checkpoint())))  # type: ignore[operator]


@pytest.mark.parametrize(("change", "reason"), [
    ({}, None),
    ({"device_id": "dev-00002"}, "device"),
    ({"now_ms": 1_700_000_000_000 + 601_000}, "expired"),
    ({"fs_hz": 250.0}, "rate"),
    ({"seq": 277}, "seq"),
    ({"seq": 3}, "seq"),
    ({"first": 99_999}, "behind"),
    ({"first": 100_000 + 30 * 360 + 1}, "gap"),
    ({"first": 100_000 + 30 * 360}, None),
])
def test_restore_rules(change: dict[str, object], reason: str | None) -> None:
    args = {"device_id": "dev-00001", "fs_hz": 360.0, "seq": 278, "first": 100_000, "now_ms": 1_700_000_005_000}
    args.update(change)
    got = refusal(_checkpoint(), str(args["device_id"]), float(args["fs_hz"]), int(args["seq"]),  # type: ignore[arg-type]
                  int(args["first"]), int(args["now_ms"]), max_age_s=600.0, max_gap_s=30.0)  # type: ignore[arg-type]
    assert got == reason


def test_store_upserts_expires_and_deletes(tmp_path: Path) -> None:
    st = CheckpointStore(tmp_path / "sessions.db", max_age_s=600)
    now = 1_700_000_000_000
    st.put_many([("dev-1", now, 10, b"a"), ("dev-2", now - 700_000, 20, b"b")])
    st.put_many([("dev-1", now, 30, b"c")])
    assert len(st) == 2 and st.get("dev-1") == b"c" and st.get("dev-3") is None
    assert st.prune(now) == 1 and st.get("dev-2") is None
    st.delete("dev-1")
    assert len(st) == 0
    st.put_many([("dev-4", 2**52, 40, b"d")])  # far future: kept; survives reopening
    st.close()
    st = CheckpointStore(tmp_path / "sessions.db", max_age_s=600)
    assert st.get("dev-4") == b"d" and st.size_bytes() > 0
    st.close()


def test_periodic_checkpoints_are_staggered_across_devices() -> None:
    from collections import Counter

    from emon_core.contracts import EcgFrame
    from emon_core.registry import DeviceEntry
    from gateway.device_session import DeviceSession
    from gateway.settings import load_gateway_settings

    settings = load_gateway_settings(None, simulated=1000, checkpoint_every_s=10.0)
    per_second: Counter[int] = Counter()
    per_device: Counter[str] = Counter()
    for i in range(300):
        dev = f"dev-{i:05d}"
        f = EcgFrame(device_id=dev, seq=0, device_time_ms=1_700_000_000_000, fs_hz=360.0, gain_adu_per_mv=200.0,
                     baseline_adu=0.0, first_sample_index=0, samples=[0.0] * 360)
        s = DeviceSession(DeviceEntry(dev, f"pat-{i:05d}", "site-00"), f, settings, 0.0)
        for k in range(1, 41):  # 40 one-second frames, no beats (so never hot)
            s.expected_index = 360 * k
            if s.checkpoint_due():
                per_second[k] += 1
                per_device[dev] += 1
                s.mark_checkpointed()
    assert set(per_device.values()) == {4}  # every 10 s of signal, each device
    assert max(per_second.values()) <= 3 * 300 / 10  # spread over the period, not all at once
    assert len(per_second) == 40


def test_tracker_round_trip_keeps_a_provisional_v_beat() -> None:
    """A 5-beat VT revision sent on a provisional beat is confirmed after a restore as without one."""
    a = RhythmTracker(FS)
    i = 1000
    for _ in range(12):  # sinus
        a.on_detection(i)
        a.on_beat(i, BeatClass.N)
        i += 300
    for _ in range(4):  # four V beats at 180 bpm: one short of the VT rule
        a.on_detection(i)
        a.on_beat(i, BeatClass.V)
        i += 120
    assert a.wants_provisional
    a.on_detection(i)
    sent = a.on_provisional_beat(i, BeatClass.V)
    assert sent and sent[-1].beat_count == 5
    b = RhythmTracker(FS)
    b.import_state(json.loads(json.dumps(a.export_state())))
    assert b.export_state() == a.export_state() and not b.wants_provisional
    assert a.on_beat(i, BeatClass.V) == b.on_beat(i, BeatClass.V)
    assert a.export_state() == b.export_state()
