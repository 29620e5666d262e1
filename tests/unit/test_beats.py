"""Beat windows and RR features: streaming equals batch, bounded memory, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.signal._beat_kernels import beat_update, centred
from gateway.signal.beats import RR_FEATURES, BeatBatch, BeatConfig, BeatFeatureExtractor, extract_beats
from gateway.signal.filters import condition_offline

FS = 360.0
DELAY = 4


def _ecg(seconds: float = 120.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    x = rng.normal(0, 0.02, n) + 0.2 * np.sin(2 * np.pi * 0.25 * np.arange(n) / FS)
    rr = rng.normal(0.8, 0.08, int(seconds / 0.5))
    rr[::7] *= 0.6  # premature beats
    r = (np.cumsum(rr) * FS).astype(np.int64)
    r = r[(r > 50) & (r < n - 50)]
    k = np.arange(-30, 31)
    for i, ri in enumerate(r):
        lo, hi = max(0, ri - 30), min(n, ri + 31)
        x[lo:hi] += (1.0 + 0.5 * (i % 7 == 0)) * np.exp(-0.5 * (k[lo - ri + 30 : hi - ri + 30] / (3.0 + 4 * (i % 7 == 0))) ** 2)
    return condition_offline(x, FS), r


def _stream(cond: np.ndarray, r: np.ndarray, chunk: int, lag: int = 540, config: BeatConfig | None = None) -> BeatBatch:
    ex = BeatFeatureExtractor(FS, DELAY, config)
    outs, fed = [], 0
    for i in range(0, cond.size, chunk):
        end = min(cond.size, i + chunk)
        new = r[(r >= fed) & (r < end - lag)]
        fed = max(fed, end - lag)
        outs.append(ex.process(cond[i:end], new))
    outs.append(ex.process(np.empty(0), r[r >= fed]))
    outs.append(ex.flush())
    return BeatBatch.concat(outs, config)


@pytest.mark.parametrize("chunk", [1, 37, 360, 3600, 10**6])
def test_streaming_equals_batch(chunk: int) -> None:
    cond, r = _ecg(60.0 if chunk == 1 else 120.0)
    ref = extract_beats(cond, r, FS, DELAY)
    got = _stream(cond, r, chunk)
    np.testing.assert_array_equal(got.r_samples, ref.r_samples)
    np.testing.assert_array_equal(got.windows, ref.windows)
    np.testing.assert_array_equal(got.rr, ref.rr)


def test_shapes_and_features() -> None:
    cond, r = _ecg()
    b = extract_beats(cond, r, FS, DELAY)
    cfg = BeatConfig()
    assert b.windows.shape == (r.size, cfg.window_len, 2) and cfg.window_len == 126
    assert b.rr.shape == (r.size, len(RR_FEATURES)) and b.rr.dtype == np.float32
    assert np.isfinite(b.windows).all() and np.isfinite(b.rr).all()
    i = 10
    prev, nxt = (r[i] - r[i - 1]) / FS, (r[i + 1] - r[i]) / FS
    local = np.mean(np.diff(r)[i - 10 : i]) / FS
    np.testing.assert_allclose(b.rr[i, :3], [prev, nxt, local], rtol=1e-6)
    np.testing.assert_allclose(b.rr[i, 9], prev / nxt, rtol=1e-6)
    # premature beats (every 7th interval shortened) have a low prev/local ratio
    premature = np.flatnonzero(b.rr[:, 7] < 0.8)
    assert premature.size > 5


def test_batch_without_final_drops_last_beat() -> None:
    cond, r = _ecg(30.0)
    a = extract_beats(cond, r, FS, DELAY, final=False)
    b = extract_beats(cond, r, FS, DELAY)
    assert len(a) == r.size - 1
    np.testing.assert_array_equal(a.windows, b.windows[:-1])
    np.testing.assert_array_equal(a.rr, b.rr[:-1])


def test_online_emission_waits_for_next_beat() -> None:
    cond, r = _ecg(30.0)
    ex = BeatFeatureExtractor(FS, DELAY)
    b = ex.process(cond[: r[3] + 600], r[:3])
    assert list(b.r_samples) == list(r[:2])  # beat 2 waits for beat 3
    b = ex.process(cond[r[3] + 600 : r[3] + 601], r[3:4])
    assert list(b.r_samples) == [r[2]]


def test_bounded_memory() -> None:
    cond, r = _ecg(600.0)
    cfg = BeatConfig()
    ex = BeatFeatureExtractor(FS, DELAY, cfg)
    fed = 0
    for i in range(0, cond.size, 360):
        end = min(cond.size, i + 360)
        new = r[(r >= fed) & (r < end - 540)]
        fed = max(fed, end - 540)
        ex.process(cond[i:end], new)
        assert ex._buf.size <= cfg.buffer_s * FS
        assert ex._windows.shape[0] == cfg.template_beats and len(ex._rr) <= cfg.patient_rr_beats
        assert len(ex._ready) + len(ex._waiting) <= 5


def test_edge_cases() -> None:
    empty = extract_beats(np.zeros(1000), np.zeros(0, np.int64), FS)
    assert len(empty) == 0 and empty.windows.shape == (0, 126, 2)
    one = extract_beats(np.zeros(1000), [500], FS)
    assert len(one) == 1 and np.isfinite(one.rr).all()
    np.testing.assert_allclose(one.rr[0, :4], 0.8, rtol=1e-6)
    # beats at the very start and end: windows padded, finite
    cond, _ = _ecg(10.0)
    edge = extract_beats(cond, [2, 1800, cond.size - 3], FS, DELAY)
    assert np.isfinite(edge.windows).all()
    # flat signal: no blow-up
    flat = extract_beats(np.zeros(7200), np.arange(200, 7000, 300), FS)
    assert np.abs(flat.windows).max() == 0.0
    # NaN gap inside a window
    cond[1700:1900] = np.nan
    nan = extract_beats(cond, [1000, 1800, 2600], FS, DELAY)
    assert np.isfinite(nan.windows).all()
    with pytest.raises(ValueError):
        extract_beats(cond, [100, 100], FS)
    ex = BeatFeatureExtractor(FS)
    ex.process(np.zeros(1000), [500])
    with pytest.raises(ValueError):
        ex.process(np.zeros(10), [400])
    # flush with nothing pending
    assert len(BeatFeatureExtractor(FS).flush()) == 0


def test_extreme_rr_clipped() -> None:
    cond = np.zeros(36000)
    b = extract_beats(cond, [100, 120, 20000, 20300], FS)
    assert b.rr[:, :4].min() >= 0.15 - 1e-6 and b.rr[:, :4].max() <= 3.0 + 1e-6


def test_beat_update_medians_equal_numpy_over_a_rolling_ring() -> None:
    rng = np.random.default_rng(3)
    K, L = 32, 126
    ring, amps, cols, amps_sorted = np.zeros((K, L)), np.zeros(K), np.zeros((L, K)), np.zeros(K)
    for count in range(80):  # filling, full, and wrapping around twice
        w = np.round(rng.normal(size=L), 1)  # rounded: ties between windows are common
        out, template, scale = beat_update(ring, amps, cols, amps_sorted, count % K, min(count, K), w, 0.05)
        filled = min(count + 1, K)
        assert np.array_equal(ring[count % K], w)
        assert np.array_equal(template, np.median(ring[:filled], axis=0))
        assert scale == np.median(amps[:filled])
        s = max(scale, 0.05)
        assert np.array_equal(out, np.stack([w / s, (w - template) / s], axis=-1).astype(np.float32))
    assert np.array_equal(centred(w), w - np.median(w))