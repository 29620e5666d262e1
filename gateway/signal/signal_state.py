"""Signal states reported by the QRS detector, and the VF-filter leakage used to spot flutter/fibrillation."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


class SignalState(enum.Enum):
    """Signal condition of a block of samples."""

    OK = "ok"
    FLAT = "flat"  # flat line: lead off or no signal from the electrode
    SATURATED = "saturated"  # pinned at a rail
    NOISY = "noisy"  # too many feature peaks to trust detections
    LOSS = "loss"  # NaN gap: samples missing
    VF_LIKE = "vf_like"  # sinusoidal ventricular flutter/fibrillation-like: no QRS to report


@dataclass(frozen=True)
class SignalStateEvent:
    """The signal state changed to ``state`` at absolute ``sample_index`` (detector rate)."""

    sample_index: int
    state: SignalState


def vf_filter_leakage(x: npt.NDArray[np.float64]) -> float:
    """Kuo & Dillman's VF-filter leakage of a (1-30 Hz band-passed) segment: near 0 for a sinusoid.

    The half period N is estimated as ``pi * sum|x| / sum|dx|``; the leakage is
    ``sum|x[i] + x[i-N]| / sum(|x[i]| + |x[i-N]|)``. Ventricular flutter/fibrillation gives
    values below about 0.4, sinus rhythm with QRS complexes well above 0.5.
    Returns 1.0 for segments too short or flat to tell.
    """
    if x.size < 8:
        return 1.0
    ax = np.abs(x)
    dsum = float(np.abs(x[1:] - x[:-1]).sum())
    asum = float(ax.sum())
    if dsum <= 1e-9 or asum <= 1e-9:
        return 1.0
    half = int(math.floor(math.pi * asum / dsum + 0.5))
    if half < 1 or half >= x.size // 2:
        return 1.0
    a, b = x[half:], x[:-half]
    den = float(ax[half:].sum() + ax[:-half].sum())
    return float(np.abs(a + b).sum()) / den if den > 0 else 1.0
