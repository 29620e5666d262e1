"""Streaming resampler and unit conversion: exactness across chunkings, alignment, gaps, edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.signal.constants import MODEL_FS_HZ
from gateway.signal.resample import (
    StreamingResampler,
    input_to_output_index,
    output_to_input_index,
    resample_offline,
)
from gateway.signal.units import adu_to_mv
from tests.unit._synthetic_ecg import synthetic_ecg

RATES = [100.0, 128.0, 250.0, 257.0, 360.0, 500.0, 1000.0]


def _stream(x: np.ndarray, fs: float, sizes: list[int]) -> np.ndarray:
    r = StreamingResampler(fs)
    out, i, k = [], 0, 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        out.append(r.process(x[i : i + n]))
        i, k = i + n, k + 1
    out.append(r.flush())
    return np.concatenate(out)


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("sizes", [[1], [7, 1, 300], [10_000]])
def test_streaming_equals_offline_exactly(fs: float, sizes: list[int]) -> None:
    x, _ = synthetic_ecg(6.0, fs, seed=1)
    x[100:130] = np.nan
    assert np.array_equal(_stream(x, fs, sizes), resample_offline(x, fs), equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(fs=st.sampled_from(RATES), cuts=st.lists(st.integers(1, 900), min_size=1, max_size=8))
def test_any_chunking_is_exact(fs: float, cuts: list[int]) -> None:
    x, _ = synthetic_ecg(4.0, fs, seed=2)
    assert np.array_equal(_stream(x, fs, cuts), resample_offline(x, fs))


@pytest.mark.parametrize("fs", RATES)
def test_output_length_and_index_map(fs: float) -> None:
    x = np.zeros(1234)
    y = resample_offline(x, fs)
    assert y.size == int(np.floor((x.size - 1) * MODEL_FS_HZ / fs)) + 1
    assert output_to_input_index(y.size - 1, fs) <= x.size - 1
    k = np.arange(y.size)
    back = input_to_output_index(output_to_input_index(k, fs), fs)
    assert np.abs(back - k).max() <= max(1, int(np.ceil(0.5 * MODEL_FS_HZ / fs)))


@pytest.mark.parametrize("fs", [100.0, 250.0, 500.0, 1000.0])
def test_r_peaks_stay_in_place(fs: float) -> None:
    """The FIR delay is compensated: an R peak keeps its time after resampling."""
    x, r_times = synthetic_ecg(10.0, fs, seed=3, noise_mv=0.0, wander_mv=0.0)
    y = resample_offline(x, fs)
    for r in r_times[1:-1]:
        k = int(round(r * MODEL_FS_HZ))
        lo = k - 10
        peak = lo + int(np.argmax(y[lo : k + 11]))
        assert abs(peak - k) <= 1, (fs, r)
        assert abs(output_to_input_index(peak, fs) - r * fs) <= 1 + fs / MODEL_FS_HZ


@pytest.mark.parametrize("fs", [100.0, 1000.0])
def test_sine_is_preserved(fs: float) -> None:
    t = np.arange(int(5 * fs)) / fs
    y = resample_offline(np.sin(2 * np.pi * 7.0 * t), fs)
    ref = np.sin(2 * np.pi * 7.0 * np.arange(y.size) / MODEL_FS_HZ)
    assert np.abs(y - ref)[50:-50].max() < 0.01


def test_downsampling_removes_content_above_output_nyquist() -> None:
    fs = 1000.0
    t = np.arange(int(5 * fs)) / fs
    y = resample_offline(np.sin(2 * np.pi * 300.0 * t), fs)  # would alias to 60 Hz
    assert np.abs(y[100:-100]).max() < 0.01


def test_passthrough_is_exact_copy() -> None:
    x = np.array([0.1, np.nan, -0.3])
    r = StreamingResampler(MODEL_FS_HZ)
    y = r.process(x)
    assert np.array_equal(y, x, equal_nan=True) and y is not x
    assert r.latency_in_samples == 0 and r.flush().size == 0


def test_nan_gap_is_marked_and_filter_recovers() -> None:
    fs = 500.0
    x, _ = synthetic_ecg(8.0, fs, seed=4)
    x[1000:1500] = np.nan
    y = resample_offline(x, fs)
    nan = np.isnan(y)
    gap = np.flatnonzero(nan)
    assert gap.min() == pytest.approx(1000 * MODEL_FS_HZ / fs, abs=1)
    assert gap.max() == pytest.approx(1499 * MODEL_FS_HZ / fs, abs=1)
    assert nan.sum() == gap.max() - gap.min() + 1
    assert np.isfinite(y[gap.max() + 1 :]).all()


def test_empty_and_leading_nan() -> None:
    r = StreamingResampler(250.0)
    assert r.process([]).size == 0
    assert r.flush().size == 0
    assert resample_offline(np.empty(0), 500.0).size == 0
    y = resample_offline(np.array([np.nan] * 10 + [1.0] * 10), 250.0)
    assert np.isnan(y[:3]).all() and np.isfinite(y[-3:]).all()


def test_process_after_flush_raises_and_bad_rate() -> None:
    r = StreamingResampler(250.0)
    r.flush()
    with pytest.raises(RuntimeError):
        r.process([1.0])
    with pytest.raises(ValueError):
        StreamingResampler(0.0)


def test_adu_to_mv() -> None:
    y = adu_to_mv(np.array([1224, 1024, 824], dtype=np.int16), 200.0, 1024)
    assert y.dtype == np.float32 and y.tolist() == [1.0, 0.0, -1.0]
    assert adu_to_mv([], 200.0).size == 0
    assert np.isnan(adu_to_mv([np.nan], 200.0)[0])
    with pytest.raises(ValueError):
        adu_to_mv([1], 0.0)
