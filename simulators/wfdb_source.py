"""Replay of WFDB records (default: MIT-BIH, lead 0) as endless patients with AAMI ground truth.

Records are read from the shared data directory, never copied; each is loaded once per
process (int16 ADC samples, optionally resampled with ``scipy.signal.resample_poly``)
and shared by every patient replaying it. Patient ``n`` replays record ``n % len(records)``
starting at a per-patient offset and loops at the end of the record.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

from emon_core.contracts import MAX_FS_HZ, MIN_FS_HZ
from emon_core.errors import ConfigError
from simulators.source import AAMI_CLASSES, Chunk, TruthEvent, derive_run_events

MITDB_RECORDS: tuple[str, ...] = (
    "100 101 102 103 104 105 106 107 108 109 111 112 113 114 115 116 117 118 119 121 122 123 124 "
    "200 201 202 203 205 207 208 209 210 212 213 214 215 217 219 220 221 222 223 228 230 231 232 233 234"
).split()
OFFSET_STEP_S = 137.0  # successive patients on the same record start this far apart


@dataclass(frozen=True)
class LoadedRecord:
    """One record's lead at ``fs_hz``: ADC samples, gain/baseline and AAMI beat truth."""

    name: str
    fs_hz: float
    samples: npt.NDArray[np.int16]
    gain_adu_per_mv: float
    baseline_adu: float
    beat_indices: npt.NDArray[np.int64]
    beat_classes: npt.NDArray[np.str_]  # one-character AAMI class per beat
    events: tuple[TruthEvent, ...]


_CACHE: dict[tuple[str, float], LoadedRecord] = {}
_LOCK = threading.Lock()


def load_record(data_dir: Path, name: str, fs_hz: float | None = None, channel: int = 0) -> LoadedRecord:
    """Load (once per process) ``name`` from ``data_dir``, resampled to ``fs_hz`` if given.

    Beat annotations are mapped to AAMI classes; non-beat annotations are ignored.
    """
    import wfdb  # heavy import, only when replaying

    key = (str(Path(data_dir) / name), float(fs_hz or 0.0))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    path = str(Path(data_dir) / name)
    try:
        rec = wfdb.rdrecord(path, channels=[channel], physical=False)
        ann = wfdb.rdann(path, "atr")
    except (OSError, ValueError) as err:
        raise ConfigError(f"WFDB record {path}: {err}") from err
    native = float(rec.fs)
    target = float(fs_hz or native)
    if not MIN_FS_HZ <= target <= MAX_FS_HZ:
        raise ConfigError(f"--fs must be {MIN_FS_HZ:g}..{MAX_FS_HZ:g} Hz, got {target}")
    adc = rec.d_signal[:, 0].astype(np.float64)
    gain, baseline = float(rec.adc_gain[0]), float(rec.baseline[0])
    keep = np.array([s in AAMI_CLASSES for s in ann.symbol], dtype=bool)
    idx = np.asarray(ann.sample, dtype=np.int64)[keep]
    classes = np.array([AAMI_CLASSES[s] for s, k in zip(ann.symbol, keep) if k], dtype="<U1")
    if target != native:
        ratio = Fraction(target / native).limit_denominator(1000)
        from scipy.signal import resample_poly

        adc = resample_poly(adc - baseline, ratio.numerator, ratio.denominator) + baseline
        idx = np.rint(idx * (target / native)).astype(np.int64)
    samples = np.clip(np.rint(adc), -32768, 32767).astype(np.int16)
    ok = (idx >= 0) & (idx < len(samples))
    idx, classes = idx[ok], classes[ok]
    loaded = LoadedRecord(
        name, target, samples, gain, baseline, idx, classes,
        tuple(derive_run_events(idx, list(classes), target)),
    )
    with _LOCK:
        _CACHE.setdefault(key, loaded)
    return loaded


class WfdbSource:
    """An endless replay of one loaded record from ``offset`` (implements ``EcgSource``)."""

    def __init__(self, record: LoadedRecord, offset: int = 0) -> None:
        self.record = record
        self.fs_hz = record.fs_hz
        self.gain_adu_per_mv = record.gain_adu_per_mv
        self.baseline_adu = record.baseline_adu
        self.length = len(record.samples)
        self.offset = int(offset) % self.length
        self._event_onsets = np.array([e.onset_index for e in record.events], dtype=np.int64)

    def read(self, start: int, n: int) -> Chunk:
        pos = (self.offset + start) % self.length
        out = np.empty(n, dtype=np.float64)
        filled = 0
        while filled < n:
            take = min(n - filled, self.length - pos)
            out[filled : filled + take] = self.record.samples[pos : pos + take]
            filled += take
            pos = 0
        return Chunk(start, out)

    def silent(self, start: int, n: int) -> bool:
        return False

    def _laps(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        """Split device range [start, stop) into (record_lo, record_hi, device_base) pieces."""
        pieces = []
        pos = start
        while pos < stop:
            rec_pos = (self.offset + pos) % self.length
            take = min(stop - pos, self.length - rec_pos)
            pieces.append((rec_pos, rec_pos + take, pos - rec_pos))
            pos += take
        return pieces

    def beats(self, start: int, stop: int) -> tuple[npt.NDArray[np.int64], list[str]]:
        rec = self.record
        idx_parts, cls_parts = [], []
        for lo, hi, base in self._laps(start, stop):
            a, b = np.searchsorted(rec.beat_indices, [lo, hi])
            idx_parts.append(rec.beat_indices[a:b] + base)
            cls_parts.extend(rec.beat_classes[a:b].tolist())
        idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, dtype=np.int64)
        return idx, cls_parts

    def events(self, start: int, stop: int) -> list[TruthEvent]:
        out = []
        events = self.record.events
        for lo, hi, base in self._laps(start, stop):
            a, b = np.searchsorted(self._event_onsets, [lo, hi])
            for e in events[a:b]:
                out.append(
                    TruthEvent(e.kind, e.onset_index + base, e.end_index + base, e.beat_count, e.rate_bpm, e.detail)
                )
        return out


def patient_source(
    n: int, data_dir: Path, records: tuple[str, ...] | list[str] = MITDB_RECORDS, fs_hz: float | None = None
) -> WfdbSource:
    """Source of simulated patient ``n``: record ``n % len(records)`` at a per-patient offset."""
    if not records:
        raise ConfigError("no WFDB records given")
    name = records[n % len(records)]
    rec = load_record(data_dir, name, fs_hz)
    lap = n // len(records)
    offset = int((lap * OFFSET_STEP_S + (n % 7) * 11.0) * rec.fs_hz)
    return WfdbSource(rec, offset)
