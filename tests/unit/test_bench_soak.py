"""The soak benchmark's memory-trend verdict (pure arithmetic)."""

import numpy as np
import pytest

from simulators.bench_soak import rss_trend


def test_flat_memory_with_noise_is_flat() -> None:
    t = np.arange(0, 1800, 10.0)
    rng = np.random.default_rng(0)
    r = rss_trend(t, 150.0 + rng.normal(0, 0.5, t.size))
    assert r["flat"] and abs(r["slope_mib_per_h"]) < 2.0


def test_steady_leak_is_not_flat_and_slope_is_per_hour() -> None:
    t = np.arange(0, 1800, 10.0)
    r = rss_trend(t, 150.0 + t / 60.0)  # 1 MiB per minute
    assert not r["flat"]
    assert r["slope_mib_per_h"] == pytest.approx(60.0, rel=1e-6)
    assert r["growth_mib"] > 20


def test_too_few_samples_refused() -> None:
    with pytest.raises(ValueError):
        rss_trend(np.arange(3.0), np.ones(3))
