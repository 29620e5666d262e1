"""Benchmark of the per-beat stages: conditioner, beat features (streaming) and batched classification."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gateway.signal.constants import MODEL_FS_HZ


def _synthetic_ecg(seconds: float, fs: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-bump ECG at ~75 bpm with jitter, baseline wander and noise (mV) and its R positions."""
    n = int(seconds * fs)
    t = np.arange(n) / fs
    x = 0.15 * np.sin(2 * np.pi * 0.3 * t) + rng.normal(0, 0.02, n)
    rr = rng.normal(0.8, 0.05, int(seconds / 0.6) + 2)
    r = (np.cumsum(rr) * fs).astype(np.int64)
    r = r[(r > 100) & (r < n - 200)]
    k = np.arange(-40, 41)
    for ri in r:
        x[ri + k] += 1.2 * np.exp(-0.5 * (k / 4.0) ** 2)
    return x, r


def bench_classifier(batch_sizes: tuple[int, ...] = (1, 16, 64, 256), seconds: float = 1.0,
                     quick: bool = False) -> dict[str, Any]:
    """Throughput figures: conditioner and streaming beat features in samples/s, classifier in beats/s.

    Prints one line per figure and returns them (``beats_per_s`` keyed by batch size).
    """
    from gateway.classifier import BeatClassifier
    from gateway.signal.beats import BeatFeatureExtractor
    from gateway.signal.filters import EcgConditioner

    if quick:
        seconds = 0.3
    rng = np.random.default_rng(0)
    fs = MODEL_FS_HZ
    x, r = _synthetic_ecg(120.0, fs, rng)
    chunk = int(fs)  # 1 s frames
    out: dict[str, Any] = {}

    cond = EcgConditioner(fs)
    t0 = time.perf_counter()
    y = np.concatenate([cond.process(x[i : i + chunk]) for i in range(0, x.size, chunk)])
    out["conditioner_samples_per_s"] = x.size / (time.perf_counter() - t0)

    ex = BeatFeatureExtractor(fs, cond.delay_samples)
    delay = 540  # R peaks reach the extractor ~1.5 s late, as from the QRS detector
    fed, t0, n_beats = 0, time.perf_counter(), 0
    for i in range(0, y.size, chunk):
        end = min(y.size, i + chunk)
        new = r[(r >= fed) & (r < end - delay)]
        fed = end - delay
        n_beats += len(ex.process(y[i:end], new))
    dt = time.perf_counter() - t0
    out["beat_features_samples_per_s"] = y.size / dt
    out["beat_features_beats_per_s"] = n_beats / dt

    clf = BeatClassifier()
    rng = np.random.default_rng(1)
    out["beats_per_s"] = {}
    for bs in batch_sizes:
        w = rng.normal(0, 0.5, size=(bs, *clf.window_shape)).astype(np.float32)
        rr = rng.uniform(0.5, 1.5, size=(bs, 11)).astype(np.float32)
        clf.classify(w, rr)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            clf.classify(w, rr)
            n += bs
        out["beats_per_s"][bs] = n / (time.perf_counter() - t0)
    out["model"] = clf.model_version
    out["model_bytes"] = clf.size_bytes
    print(f"conditioner (sosfilt, 1 s chunks): {out['conditioner_samples_per_s']:,.0f} samples/s")
    print(f"beat features (streaming, 1 s chunks): {out['beat_features_samples_per_s']:,.0f} samples/s "
          f"({out['beat_features_beats_per_s']:,.0f} beats/s)")
    for bs, v in out["beats_per_s"].items():
        print(f"classifier batch {bs:4d}: {v:,.0f} beats/s  ({1e6 / v:.1f} us/beat)")
    return out
