"""Compiled (numba) inner loops of the streaming QRS detector.

A gateway calls the detector once per device frame (a 1 s frame is 360 samples). Written as
a dozen numpy calls per frame, each costing a few microseconds of dispatch on a few hundred
samples, the detector took ~0.28 ms per frame, the largest share of a gateway's time (see
``gateway/README.md``). These loops do the same arithmetic in one compiled call per stage.
They are pure functions on arrays and scalars: all state lives in the caller, which passes
it in and takes the updated values back.

Compiled on first use and cached on disk (:mod:`gateway.signal._jit`).
"""

from __future__ import annotations

import math

import numpy as np

from gateway.signal._jit import jit
from gateway.signal._sosfilt import sos_inplace

__all__ = ["bp_peak", "find_candidates", "ingest_chunk", "raw_peak", "vf_leakage"]


@jit
def ingest_chunk(
    x: np.ndarray,
    hold: float,
    prev: float,
    run: int,
    flat_run: int,
    sos_bp: np.ndarray,
    zi_bp: np.ndarray,
    sos_vf: np.ndarray,
    zi_vf: np.ndarray,
    der: np.ndarray,
    bp_tail: np.ndarray,
    int_taps: np.ndarray,
    sq_tail: np.ndarray,
    squared: bool,
    fbuf: np.ndarray,
    bbuf: np.ndarray,
    at: int,
) -> tuple[float, float, int]:
    """Run one chunk through the per-chunk stage and write it at column ``at`` of the buffers.

    Rows of ``fbuf``: raw (NaN held at the last value), band-passed, feature (moving integral
    of |derivative| or its square), VF-band; rows of ``bbuf``: bad (NaN or in a flat run of
    ``>= flat_run`` identical samples), NaN. ``zi_*``, ``bp_tail`` and ``sq_tail`` are updated
    in place. Returns the new (hold, previous sample, flat-run length).
    """
    n = x.size
    raw = fbuf[0, at : at + n]
    nan = bbuf[1, at : at + n]
    bad = bbuf[0, at : at + n]
    for i in range(n):
        v = x[i]
        if math.isnan(v):
            nan[i] = True
            v = hold
        else:
            nan[i] = False
            hold = v
        raw[i] = v
        # run = how many previous samples in a row equal this one (across chunks)
        if v == prev:
            run += 1
        else:
            run = 0
        prev = v
        bad[i] = nan[i] or run >= flat_run
    bp = fbuf[1, at : at + n]
    vf = fbuf[3, at : at + n]
    bp[:] = raw
    vf[:] = raw
    sos_inplace(sos_bp, zi_bp, bp)
    sos_inplace(sos_vf, zi_vf, vf)
    # 5-point derivative over the carried tail, then |.| (or squared) and the moving integral
    nd = der.size
    nt = int_taps.size
    feat = fbuf[2, at : at + n]
    dseg = np.empty(nt - 1 + n)
    dseg[: nt - 1] = sq_tail
    for i in range(n):
        acc = 0.0
        for j in range(nd):  # np.convolve: kernel reversed
            k = i + j - (nd - 1)
            s = bp_tail[k + nd - 1] if k < 0 else bp[k]
            acc += s * der[nd - 1 - j]
        dseg[nt - 1 + i] = acc * acc if squared else abs(acc)
    for i in range(n):
        acc = 0.0
        for j in range(nt):
            acc += dseg[i + j] * int_taps[nt - 1 - j]
        feat[i] = acc
    # carry the tails
    if n >= nd - 1:
        bp_tail[:] = bp[n - (nd - 1) :]
    else:
        keep = nd - 1 - n
        bp_tail[:keep] = bp_tail[n:].copy()
        bp_tail[keep:] = bp[:]
    sq_tail[:] = dseg[dseg.size - (nt - 1) :]
    return hold, prev, run


@jit
def find_candidates(f: np.ndarray, w: int, first_rising: bool, floor: float, lo: int, hi: int) -> np.ndarray:
    """Indices ``i`` in ``[lo, hi)`` of ``f`` that are rising (``f[i] > f[i-1]``; ``first_rising``
    for ``i == 0``), above ``floor`` and the maximum of ``f`` within ``+/- w`` (the window clipped
    to ``f``): scipy's ``maximum_filter1d(f, 2 w + 1, mode="nearest")`` test, without the filter."""
    out = np.empty(max(hi - lo, 0), dtype=np.int64)
    m = 0
    n = f.size
    for i in range(max(lo, 0), min(hi, n)):
        v = f[i]
        if not v > floor:
            continue
        if i == 0:
            if not first_rising:
                continue
        elif not v > f[i - 1]:
            continue
        if i + 1 < n and f[i + 1] > v:  # cheap reject before the window scan
            continue
        ok = True
        for k in range(max(i - w, 0), min(i + w + 1, n)):
            if f[k] > v:
                ok = False
                break
        if ok:
            out[m] = i
            m += 1
    return out[:m]


@jit
def vf_leakage(x: np.ndarray) -> float:
    """Kuo & Dillman's VF-filter leakage (see :func:`gateway.signal.signal_state.vf_filter_leakage`)."""
    n = x.size
    if n < 8:
        return 1.0
    asum = 0.0
    dsum = 0.0
    for i in range(n):
        asum += abs(x[i])
        if i:
            dsum += abs(x[i] - x[i - 1])
    if dsum <= 1e-9 or asum <= 1e-9:
        return 1.0
    half = int(math.floor(math.pi * asum / dsum + 0.5))
    if half < 1 or half >= n // 2:
        return 1.0
    num = 0.0
    den = 0.0
    for i in range(half, n):
        num += abs(x[i] + x[i - half])
        den += abs(x[i]) + abs(x[i - half])
    return num / den if den > 0 else 1.0


@jit
def bp_peak(bp: np.ndarray, s0: int, c: int, n_int: int, rw: int) -> tuple[int, float]:
    """Largest band-passed deflection within ``n_int + 4`` samples before candidate ``c`` (first
    of equals), and the largest sample-to-sample slope within ``[k - rw, k + rw)``.
    ``bp[0]`` is absolute sample ``s0``; returns the absolute index ``k``."""
    a = max(c - n_int - 4, s0)
    k = a
    best = -1.0
    for i in range(a, c + 1):
        v = abs(bp[i - s0])
        if v > best:
            best = v
            k = i
    b0 = max(k - rw, s0)
    end = min(k + rw, s0 + bp.size)
    slope = 0.0
    for i in range(b0 + 1, end):
        d = abs(bp[i - s0] - bp[i - 1 - s0])
        if d > slope:
            slope = d
    return k, slope


@jit
def raw_peak(raw: np.ndarray, s0: int, n: int, est: int, rw: int) -> tuple[int, float]:
    """R peak on the raw signal near ``est``: the largest deviation from the median of
    ``[est - 3 rw, est + 3 rw)`` (upper median for even sizes) within ``[est - rw, est + rw]``,
    the middle one of equal maxima (a clipped, flat top). Returns (absolute index, signed mV)."""
    a, b = max(est - 3 * rw, s0), min(est + 3 * rw, n)
    ctx = np.sort(raw[a - s0 : b - s0])
    base = ctx[ctx.size // 2]
    a, b = max(est - rw, s0), min(est + rw + 1, n)
    top = 0.0
    for i in range(a, b):
        v = abs(raw[i - s0] - base)
        if v > top:
            top = v
    count = 0
    for i in range(a, b):
        if abs(raw[i - s0] - base) == top:
            count += 1
    want = count // 2
    for i in range(a, b):
        if abs(raw[i - s0] - base) == top:
            if want == 0:
                return i, raw[i - s0] - base
            want -= 1
    return a, 0.0
