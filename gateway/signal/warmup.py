"""Compile the signal core's numba kernels ahead of the first frame.

Numba compiles a kernel on its first call and caches the machine code on disk. Without a
cache that first call takes ~10 s; a gateway would spend it on its first device frame while
the others queue. ``scripts/bootstrap.sh``, the container build and the gateway's start-up
call :func:`warm_kernels` (a second of loading when the cache is there).
Run ``python -m gateway.signal.warmup`` to do it by hand.
"""

from __future__ import annotations

import time

import numpy as np

from gateway.signal.beats import BeatFeatureExtractor
from gateway.signal.constants import MODEL_FS_HZ
from gateway.signal.filters import EcgConditioner
from gateway.signal.qrs import detect_qrs


def warm_kernels() -> float:
    """Run every kernel once on a short synthetic signal; returns the seconds it took."""
    t0 = time.perf_counter()
    t = np.arange(int(6 * MODEL_FS_HZ)) / MODEL_FS_HZ
    x = 1.5 * np.exp(-(((t % 0.8) - 0.4) ** 2) / 2e-4) + 0.05 * np.sin(2 * np.pi * t)  # 75 bpm spikes
    r = detect_qrs(x, MODEL_FS_HZ)
    cond = EcgConditioner(MODEL_FS_HZ).process(x)
    ex = BeatFeatureExtractor(MODEL_FS_HZ)
    ex.process(cond, r)
    ex.flush()
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"signal kernels ready in {warm_kernels():.1f} s")
