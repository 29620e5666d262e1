"""Compiled (numba) per-beat arithmetic of the streaming beat extractor.

Each beat takes three medians: its window's baseline, the template (the column-wise median
of the last 32 windows) and the scale (the median of their amplitudes), and a normalisation.
As numpy calls they cost ~120 us per beat, mostly sorting 32 x 126 values and call dispatch.
Here the template's columns are kept sorted: a new beat removes the value of the window it
replaces and inserts its own, 126 x 32 moves at most. The medians are exact (the middle
value, or the mean of the two middle values, as ``np.median``), so the output is the same.
"""

from __future__ import annotations

import numpy as np

from gateway.signal._jit import jit

__all__ = ["beat_update", "centred"]


@jit
def _sorted_median(s: np.ndarray, n: int) -> float:
    h = n // 2
    return s[h] if n % 2 else 0.5 * (s[h - 1] + s[h])


@jit
def _replace_sorted(s: np.ndarray, n: int, old: float, has_old: bool, new: float) -> int:
    """In the sorted ``s[:n]``, drop one ``old`` (when ``has_old``) and insert ``new``; returns the new length."""
    if has_old:
        k = 0
        while k < n - 1 and s[k] != old:
            k += 1
        for i in range(k, n - 1):
            s[i] = s[i + 1]
        n -= 1
    j = n
    while j > 0 and s[j - 1] > new:
        s[j] = s[j - 1]
        j -= 1
    s[j] = new
    return n + 1


@jit
def centred(seg: np.ndarray) -> np.ndarray:
    """``seg - median(seg)`` (a new float64 array)."""
    s = np.sort(seg)
    return seg - _sorted_median(s, s.size)


@jit
def beat_update(ring: np.ndarray, amps: np.ndarray, cols: np.ndarray, amps_sorted: np.ndarray,
                slot: int, held: int, w: np.ndarray, floor_mv: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Put window ``w`` in ``slot`` of the ring of the last K windows, then normalise it.

    ``ring`` (K, L) and ``amps`` (K,) hold the last windows and their peak-to-peak amplitudes,
    ``held`` of them before this call (a full ring: ``w`` replaces the one in ``slot``);
    ``cols`` (L, K) and ``amps_sorted`` (K,) are the same values sorted per column, updated
    here. Returns (normalised (L, 2) float32: ``w / s`` and ``(w - template) / s``, the
    template: the column-wise median, the scale: the amplitudes' median), ``s = max(scale, floor_mv)``.
    """
    K, L = ring.shape
    full = held >= K
    n_old = K if full else held
    amp = w.max() - w.min()
    template = np.empty(L)
    for j in range(L):
        n = _replace_sorted(cols[j], n_old, ring[slot, j], full, w[j])
        template[j] = _sorted_median(cols[j], n)
        ring[slot, j] = w[j]
    n = _replace_sorted(amps_sorted, n_old, amps[slot], full, amp)
    amps[slot] = amp
    scale = _sorted_median(amps_sorted, n)
    s = max(scale, floor_mv)
    out = np.empty((L, 2), dtype=np.float32)
    for j in range(L):
        out[j, 0] = w[j] / s
        out[j, 1] = (w[j] - template[j]) / s
    return out, template, scale
