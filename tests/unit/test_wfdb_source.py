"""MIT-BIH replay: ADC units, AAMI ground truth, offsets, looping and resampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emon_core.contracts import EventKind
from simulators.source import AAMI_CLASSES
from simulators.wfdb_source import MITDB_RECORDS, WfdbSource, load_record, patient_source

pytestmark = pytest.mark.mitdb


def test_default_list_is_all_48_records(mitdb_dir: Path) -> None:
    assert len(MITDB_RECORDS) == 48 and len(set(MITDB_RECORDS)) == 48
    assert all((mitdb_dir / f"{r}.hea").exists() for r in MITDB_RECORDS)


def test_record_loads_in_adc_units_with_aami_truth(mitdb_dir: Path) -> None:
    import wfdb

    rec = load_record(mitdb_dir, "119")
    raw = wfdb.rdrecord(str(mitdb_dir / "119"), channels=[0], physical=False)
    ann = wfdb.rdann(str(mitdb_dir / "119"), "atr")
    assert rec.fs_hz == 360.0 and rec.gain_adu_per_mv == 200.0 and rec.baseline_adu == 1024.0
    assert np.array_equal(rec.samples, raw.d_signal[:, 0])
    beats = [(s, AAMI_CLASSES[sym]) for s, sym in zip(ann.sample, ann.symbol) if sym in AAMI_CLASSES]
    assert rec.beat_indices.tolist() == [s for s, _ in beats]
    assert rec.beat_classes.tolist() == [c for _, c in beats]
    # record 119 has ventricular bigeminy and trigeminy, but no run of 3 or more
    assert (rec.beat_classes == "V").sum() > 400
    assert not any(e.kind is EventKind.V_RUN for e in rec.events)
    # record 203 has many ventricular runs; each run event covers >= 3 consecutive V beats
    runs = [e for e in load_record(mitdb_dir, "203").events if e.kind is EventKind.V_RUN]
    assert len(runs) > 10 and all(e.beat_count >= 3 for e in runs)


def test_aami_mapping() -> None:
    assert {AAMI_CLASSES[s] for s in "NLRej"} == {"N"}
    assert {AAMI_CLASSES[s] for s in "AaJS"} == {"S"}
    assert {AAMI_CLASSES[s] for s in "VE"} == {"V"}
    assert AAMI_CLASSES["F"] == "F" and {AAMI_CLASSES[s] for s in "/fQ"} == {"Q"}
    assert "+" not in AAMI_CLASSES and "~" not in AAMI_CLASSES


def test_patients_start_at_different_offsets(mitdb_dir: Path) -> None:
    a = patient_source(0, mitdb_dir, ("100",))
    b = patient_source(1, mitdb_dir, ("100",))
    assert a.offset != b.offset
    assert not np.array_equal(a.read(0, 360).samples, b.read(0, 360).samples)
    c = patient_source(1, mitdb_dir, ("100", "101"))
    assert c.record.name == "101"


def test_replay_wraps_around_with_truth(mitdb_dir: Path) -> None:
    rec = load_record(mitdb_dir, "100")
    src = WfdbSource(rec, offset=len(rec.samples) - 360)
    chunk = src.read(0, 720)
    assert np.array_equal(chunk.samples[:360], rec.samples[-360:])
    assert np.array_equal(chunk.samples[360:], rec.samples[:360])
    idx, cls = src.beats(0, 720)
    expected = [i - (len(rec.samples) - 360) for i in rec.beat_indices if i >= len(rec.samples) - 360]
    expected += [i + 360 for i in rec.beat_indices if i < 360]
    assert idx.tolist() == expected and len(cls) == len(expected)
    # truth beats agree with the signal: an R peak near each annotation
    src0 = WfdbSource(rec, 0)
    idx, _ = src0.beats(3600, 7200)
    sig = src0.read(0, 7200).samples
    for i in idx:
        seg = np.abs(sig[i - 20 : i + 20] - np.median(sig))
        assert seg.max() > 100


def test_resampled_record_keeps_gain_and_beat_positions(mitdb_dir: Path) -> None:
    native = load_record(mitdb_dir, "100")
    rec = load_record(mitdb_dir, "100", fs_hz=250.0)
    assert rec.fs_hz == 250.0 and rec.gain_adu_per_mv == native.gain_adu_per_mv
    assert abs(len(rec.samples) - len(native.samples) * 250 / 360) <= 1
    assert len(rec.beat_indices) == len(native.beat_indices)
    # R peaks stay where the annotations say (within 2 samples at the new rate)
    sig = rec.samples.astype(float)
    for i in rec.beat_indices[10:40]:
        assert abs(int(np.argmax(sig[i - 10 : i + 10])) - 10) <= 4
    assert np.allclose(np.median(sig), np.median(native.samples), atol=10)
