"""Conversion from device units (ADC counts) to millivolts."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def adu_to_mv(
    samples: npt.ArrayLike, gain_adu_per_mv: float, baseline_adu: float = 0.0
) -> npt.NDArray[np.float32]:
    """Scale raw ADC samples to millivolts: ``(samples - baseline_adu) / gain_adu_per_mv``.

    Args:
        samples: ADC values (any numeric dtype); NaN stays NaN (a gap).
        gain_adu_per_mv: ADC units per millivolt (WFDB ``adc_gain``), must be finite and > 0.
        baseline_adu: the ADC value that means 0 mV (WFDB ``baseline``).

    Returns:
        float32 array in mV, same shape as ``samples`` (empty in, empty out).

    Example:
        >>> adu_to_mv([1224, 1024], gain_adu_per_mv=200.0, baseline_adu=1024)
        array([1., 0.], dtype=float32)
    """
    gain = float(gain_adu_per_mv)
    if not math.isfinite(gain) or gain <= 0.0:
        raise ValueError(f"gain_adu_per_mv must be finite and > 0, got {gain_adu_per_mv!r}")
    base = float(baseline_adu)
    if not math.isfinite(base):
        raise ValueError(f"baseline_adu must be finite, got {baseline_adu!r}")
    x = np.array(samples, dtype=np.float64)  # a copy: the arithmetic below is in place
    x -= base
    x /= gain
    return x.astype(np.float32)
