"""Tiny synthetic ECG for signal tests: a sum of Gaussians (P, Q, R, S, T) per beat, in mV."""

from __future__ import annotations

import numpy as np

# (offset from R in s, amplitude in mV, width in s)
_WAVES = ((-0.20, 0.12, 0.025), (-0.03, -0.10, 0.008), (0.0, 1.2, 0.010), (0.03, -0.25, 0.009), (0.25, 0.30, 0.045))


def synthetic_ecg(
    seconds: float,
    fs_hz: float,
    rr_s: float | np.ndarray = 0.8,
    seed: int = 0,
    noise_mv: float = 0.01,
    wander_mv: float = 0.1,
    amplitude: float = 1.0,
    p_wave: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(signal_mv, r_peak_times_s)``; ``rr_s`` is one RR or a per-beat sequence;
    ``p_wave=False`` leaves the P wave out (atrial fibrillation)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs_hz))
    t = np.arange(n) / fs_hz
    if np.isscalar(rr_s):
        rr = float(rr_s) * (1 + 0.03 * rng.standard_normal(int(seconds / float(rr_s)) + 2))
    else:
        rr = np.asarray(rr_s, dtype=float)
    r_times = 0.5 + np.concatenate([[0.0], np.cumsum(rr)])
    r_times = r_times[r_times < seconds - 0.4]
    x = np.zeros(n)
    for r in r_times:
        for off, amp, width in _WAVES[0 if p_wave else 1 :]:
            c = r + off
            lo, hi = max(0, int((c - 5 * width) * fs_hz)), min(n, int((c + 5 * width) * fs_hz) + 1)
            x[lo:hi] += amplitude * amp * np.exp(-0.5 * ((t[lo:hi] - c) / width) ** 2)
    x += wander_mv * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6.28))
    x += noise_mv * rng.standard_normal(n)
    return x, r_times
