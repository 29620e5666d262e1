"""EcgConditioner: streaming equals offline for any chunking, removes baseline and mains, handles gaps."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.signal.filters import ConditionerConfig, EcgConditioner, condition_offline, design_conditioner

FS = 360.0


def _signal(seconds: float = 20.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    x = 0.8 * np.sin(2 * np.pi * 0.2 * t) + 0.2 * np.sin(2 * np.pi * 60 * t) + rng.normal(0, 0.05, t.size)
    x[(np.arange(t.size) % 288) < 10] += 1.5  # crude QRS spikes
    return x + 0.7  # DC offset


@pytest.mark.parametrize("chunk", [1, 7, 100, 360, 3600, 100000])
def test_streaming_equals_offline(chunk: int) -> None:
    x = _signal()
    ref = condition_offline(x, FS)
    c = EcgConditioner(FS)
    got = np.concatenate([c.process(x[i : i + chunk]) for i in range(0, x.size, chunk)])
    np.testing.assert_array_equal(got, ref)
    assert c.samples_in == x.size


def test_random_chunking_equals_offline() -> None:
    x = _signal(seed=3)
    rng = np.random.default_rng(5)
    cuts = np.sort(rng.choice(np.arange(1, x.size), size=40, replace=False))
    c = EcgConditioner(FS)
    got = np.concatenate([c.process(p) for p in np.split(x, cuts)])
    np.testing.assert_array_equal(got, condition_offline(x, FS))


def test_removes_baseline_and_mains() -> None:
    t = np.arange(int(60 * FS)) / FS
    wander = condition_offline(1.0 * np.sin(2 * np.pi * 0.1 * t) + 2.0, FS)
    mains50 = condition_offline(0.5 * np.sin(2 * np.pi * 50 * t), FS)
    mains60 = condition_offline(0.5 * np.sin(2 * np.pi * 60 * t), FS)
    qrs_band = condition_offline(0.5 * np.sin(2 * np.pi * 10 * t), FS)
    tail = slice(int(20 * FS), None)
    assert np.abs(wander[tail]).max() < 0.1
    assert np.abs(mains50[tail]).max() < 0.02
    assert np.abs(mains60[tail]).max() < 0.02
    assert 0.4 < np.abs(qrs_band[tail]).max() < 0.6


def test_nan_gap_kept_and_state_finite() -> None:
    x = _signal()
    x[1000:1200] = np.nan
    c = EcgConditioner(FS)
    y = np.concatenate([c.process(x[i : i + 50]) for i in range(0, x.size, 50)])
    assert np.isnan(y[1000:1200]).all()
    assert np.isfinite(y[:1000]).all() and np.isfinite(y[1200:]).all()
    np.testing.assert_array_equal(y, condition_offline(x, FS))


def test_empty_flat_and_leading_gap() -> None:
    assert condition_offline(np.zeros(0), FS).shape == (0,)
    flat = condition_offline(np.full(3600, 2.5), FS)
    assert np.abs(flat).max() < 1e-9  # starts in steady state: no transient from the offset
    y = condition_offline(np.concatenate([np.full(10, np.nan), np.ones(100)]), FS)
    assert np.isnan(y[:10]).all() and np.isfinite(y[10:]).all()


@pytest.mark.parametrize("fs", [100.0, 250.0, 360.0, 1000.0])
def test_designs_at_device_rates(fs: float) -> None:
    sos = design_conditioner(fs)
    assert np.isfinite(sos).all()
    assert EcgConditioner(fs).delay_samples >= 0


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ConditionerConfig(highpass_hz=50.0, lowpass_hz=40.0)
    with pytest.raises(ValueError):
        EcgConditioner(10.0)


def test_sos_state_equals_scipy_sosfilt_chunk_by_chunk() -> None:
    from scipy import signal as sp

    from gateway.signal._sosfilt import SosState

    sos = sp.butter(2, (0.5, 40.0), "bandpass", fs=360.0, output="sos")
    x = np.random.default_rng(7).normal(size=2000)
    ref, _ = sp.sosfilt(sos, x, zi=sp.sosfilt_zi(sos) * x[0])
    f = SosState(sos, x0=float(x[0]))
    got = np.concatenate([f(x[i : i + k]) for i, k in zip(range(0, 2000, 37), [37] * 55)])
    assert np.array_equal(got, ref)  # the same values, not just close


def test_jit_cache_falls_back_to_a_temp_dir_when_nothing_is_writable(tmp_path) -> None:
    from gateway.signal._jit import cache_dir_for

    blocker = tmp_path / "a-file"
    blocker.write_text("")  # nothing can be created below a regular file, not even by root
    fallback = tmp_path / "fallback"
    assert cache_dir_for(blocker / "in-tree", blocker / "user", fallback) == str(fallback)
    assert cache_dir_for(tmp_path / "in-tree", blocker / "user", fallback) is None
    assert cache_dir_for(blocker / "in-tree", tmp_path / "user", fallback) is None
