"""Ground truth file and end-to-end accounting: expected, delivered, lost, duplicates."""

from __future__ import annotations

from pathlib import Path

from emon_core.contracts import BeatClass, EventKind, FlaggedBeat, RhythmEvent
from simulators.accounting import account, account_frames
from simulators.ground_truth import TruthRecorder, device_clock_start_ms, load_truth

FS = 360.0
T0 = 1_700_000_000_000


def _frame(dev: str, seq: int, beats: list[tuple[int, str]], sent: bool = True) -> dict:
    rec = {
        "t": "frame" if sent else "drop",
        "device": dev, "site": "site-00", "patient": "pat-" + dev[4:], "seq": seq,
        "first": seq * 360, "n": 360, "fs_hz": FS, "device_time_ms": T0 + seq * 1000,
        "lead_off": False, "beats": [[i, c] for i, c in beats],
    }
    if sent:
        rec["sent_ms"] = T0 + (seq + 1) * 1000
    else:
        rec["reason"], rec["due_ms"] = "dropout", T0 + (seq + 1) * 1000
    return rec


def _truth(tmp_path: Path) -> Path:
    path = tmp_path / "truth.jsonl"
    rec = TruthRecorder(path)
    rec.write({"t": "run", "schema": 1, "patients": 2})
    rec.write(_frame("dev-00000", 0, [(100, "N"), (400, "V")]))
    rec.write(_frame("dev-00000", 1, [(700, "V"), (1000, "S")]))
    rec.write(_frame("dev-00000", 2, [(1100, "N")], sent=False))  # never sent: not expected
    rec.write(_frame("dev-00000", 3, [(1150, "V")]))
    rec.write(_frame("dev-00001", 0, [(200, "N"), (300, "F")]))
    rec.write({"t": "event", "device": "dev-00000", "site": "site-00", "patient": "pat-00000",
               "kind": "v_run", "onset": 400, "end": 701, "beat_count": 2, "due_ms": T0})
    rec.write({"t": "event", "device": "dev-00001", "site": "site-00", "patient": "pat-00001",
               "kind": "pause", "onset": 300, "end": 1800, "due_ms": T0})
    rec.write({"t": "event", "device": "dev-00001", "site": "site-00", "patient": "pat-00001",
               "kind": "signal_loss", "onset": 72000, "end": 73800, "due_ms": T0})
    rec.write({"t": "summary", "frames_sent": 5})
    rec.close()
    return path


def _beat(dev: str, index: int, cls: str = "V") -> FlaggedBeat:
    return FlaggedBeat(
        id=FlaggedBeat.make_id(dev, index), site_id="site-00", device_id=dev, patient_id="pat-" + dev[4:],
        sample_index=index, r_time_ms=T0 + int(index / FS * 1000), beat_class=BeatClass(cls),
        probabilities={BeatClass(cls): 0.9}, model_version="test",
    )


def _event(dev: str, kind: EventKind, onset: int, seconds: float = 1.0, revision: int = 0) -> RhythmEvent:
    start = T0 + int(onset / FS * 1000)
    return RhythmEvent(
        id=RhythmEvent.make_id(dev, kind, onset), site_id="site-00", device_id=dev,
        patient_id="pat-" + dev[4:], kind=kind, onset_sample_index=onset, onset_time_ms=start,
        end_time_ms=start + int(seconds * 1000), revision=revision,
    )


def test_load_truth(tmp_path: Path) -> None:
    truth = load_truth(_truth(tmp_path))
    dev = truth.devices["dev-00000"]
    assert truth.run["patients"] == 2 and truth.summary == {"t": "summary", "frames_sent": 5}
    assert dev.frames_sent == 3 and dev.frames_dropped == 1
    assert [b[:2] for b in dev.beats] == [(100, "N"), (400, "V"), (700, "V"), (1000, "S"), (1150, "V")]
    assert dev.unsent_beats == [(1100, "N")]
    assert dev.was_sent(719) and not dev.was_sent(800) and dev.was_sent(1080) and not dev.was_sent(1440)
    assert dev.beats[1][2] == T0 + 1000


def test_everything_delivered_with_tolerance_and_duplicates(tmp_path: Path) -> None:
    truth = load_truth(_truth(tmp_path))
    received = [
        _beat("dev-00000", 410),  # 10 samples late: within 150 ms
        _beat("dev-00000", 690),
        _beat("dev-00000", 690),  # redelivered: a duplicate, not a second beat
        _beat("dev-00000", 1000, "S"),
        _beat("dev-00000", 1150),
        _beat("dev-00001", 300, "F").model_dump(mode="json", by_alias=True),  # dicts accepted
        _event("dev-00000", EventKind.V_RUN, 405),
        _event("dev-00000", EventKind.V_RUN, 405, revision=1),  # a growing event: not a duplicate
        _event("dev-00000", EventKind.V_RUN, 405, revision=1),  # same revision again: duplicate
        _event("dev-00001", EventKind.ASYSTOLE, 700),  # equivalent kind, inside the pause
        _event("dev-00001", EventKind.SIGNAL_LOSS, 72500).encode(),  # JSON bytes accepted
    ]
    acc = account(truth, received)
    assert (acc.beats.expected, acc.beats.delivered, acc.beats.lost) == (5, 5, 0)
    assert acc.beats.duplicates == 1 and acc.beats.unexpected == 0 and acc.beats.received == 6
    assert (acc.events.expected, acc.events.delivered, acc.events.lost) == (3, 3, 0)
    assert acc.events.duplicates == 1 and acc.events.unexpected == 0
    assert acc.beats.by_kind["V"] == {"expected": 3, "delivered": 3, "lost": 0}
    assert "lost 0" in str(acc)


def test_lost_and_unexpected(tmp_path: Path) -> None:
    truth = load_truth(_truth(tmp_path))
    received = [
        _beat("dev-00000", 400 + 60),  # 167 ms off: outside tolerance -> V at 400 lost
        _beat("dev-00000", 100),  # a normal beat flagged: unexpected
        _beat("dev-00000", 1300),  # no truth beat within 150 ms: unexpected
        _beat("dev-00099", 5),  # unknown device: unexpected
        _event("dev-00000", EventKind.PAUSE, 400),  # wrong kind
    ]
    acc = account(truth, received)
    assert acc.beats.expected == 5 and acc.beats.delivered == 0 and acc.beats.lost == 5
    assert acc.beats.unexpected == 4
    assert "dev-00000:400" in acc.lost_beat_ids
    assert acc.events.lost == 3 and acc.events.unexpected == 1
    assert "dev-00000:v_run:400" in acc.lost_events
    d = acc.to_dict()
    assert d["beats"]["lost"] == 5 and d["events"]["expected"] == 3


def test_nearest_truth_beat_wins(tmp_path: Path) -> None:
    truth = load_truth(_truth(tmp_path))
    # 1150 (V) and 1000 (S) are 150 samples apart; 1140 belongs to 1150, 1010 to 1000
    acc = account(truth, [_beat("dev-00000", 1140), _beat("dev-00000", 1010, "S")])
    assert acc.beats.delivered == 2 and acc.beats.unexpected == 0
    assert acc.beats.by_kind["S"]["delivered"] == 1 and acc.beats.by_kind["V"]["delivered"] == 1


def test_disabled_recorder_is_a_no_op() -> None:
    rec = TruthRecorder(None)
    rec.write({"t": "run"})
    rec.close()
    assert not rec.enabled


def test_frame_accounting(tmp_path: Path) -> None:
    truth = load_truth(_truth(tmp_path))
    # sent: dev-00000 seq 0, 1, 3 (2 was dropped) and dev-00001 seq 0
    got = [("dev-00000", 0), ("dev-00000", 1), ("dev-00000", 1), ("dev-00001", 0), ("dev-00001", 7)]
    t = account_frames(truth, got)
    assert (t.expected, t.delivered, t.lost, t.duplicates, t.unexpected) == (4, 3, 1, 1, 1)
    assert truth.devices["dev-00000"].sent_seqs == [0, 1, 3]


def test_device_clock_start_from_a_truth_file_still_being_written(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    rec = TruthRecorder(path)
    rec.write({"t": "run", "schema": 1, "started_ms": 900, "patients": 2})
    for dev, t0 in (("dev-00002", 1_000_500), ("dev-00001", 1_000_000)):
        for seq in (0, 1):
            rec.write({"device": dev, "seq": seq, "first": 250 * seq, "n": 250, "fs_hz": 250.0,
                       "device_time_ms": t0 + 1000 * seq, "beats": [], "t": "frame", "sent_ms": t0 + 1000 * (seq + 1)})
    rec.close()
    assert device_clock_start_ms(path) == 1_000_000
    with path.open("a") as fh:
        fh.write('{"device":"dev-00003","seq":0,"first":0,"device_time_ms":5')  # a line still being written
    assert device_clock_start_ms(path) == 1_000_000
    empty = tmp_path / "empty.jsonl"
    TruthRecorder(empty).close()
    assert device_clock_start_ms(empty) is None
