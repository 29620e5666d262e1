"""Signal states reported by the QRS detector, and the VF-filter leakage used to spot flutter/fibrillation."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.signal._qrs_kernels import vf_leakage


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


def vf_filter_leakage(x: npt.ArrayLike) -> float:
    """Kuo & Dillman's VF-filter leakage of a (1-30 Hz band-passed) segment: near 0 for a sinusoid.

    The half period N is estimated as ``pi * sum|x| / sum|dx|``; the leakage is
    ``sum|x[i] + x[i-N]| / sum(|x[i]| + |x[i-N]|)``. Ventricular flutter/fibrillation gives
    values below about 0.4, sinus rhythm with QRS complexes well above 0.5.
    Returns 1.0 for segments too short or flat to tell.
    """
    return float(vf_leakage(np.ascontiguousarray(x, dtype=np.float64)))
