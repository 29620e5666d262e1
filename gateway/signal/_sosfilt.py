"""``sosfilt`` with carried state for small chunks: a compiled loop instead of scipy's per-call overhead.

scipy's public :func:`scipy.signal.sosfilt` spends ~0.2 ms per call on argument checks and axis
shuffling, more than the filtering itself for a 1 s frame at 360 Hz; with one call per device
frame that overhead alone would cap a core well below 1,000 patients. :class:`SosState` runs the
cascade in :func:`sos_inplace` (numba, also called by the QRS kernels), in scipy's operation order,
so the values equal ``scipy.signal.sosfilt`` with the same state (``tests/unit/test_filters.py``).
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from scipy import signal

from gateway.signal._jit import jit


@jit
def sos_inplace(sos: np.ndarray, zi: np.ndarray, y: np.ndarray) -> None:
    """Second-order sections, transposed direct form II, in place on ``y`` and the (sections, 2)
    state ``zi``; the same operation order as scipy's compiled ``sosfilt`` (so the same values)."""
    n_sec = sos.shape[0]
    for n in range(y.size):
        x_cur = y[n]
        for s in range(n_sec):
            x_new = sos[s, 0] * x_cur + zi[s, 0]
            zi[s, 0] = sos[s, 1] * x_cur - sos[s, 4] * x_new + zi[s, 1]
            zi[s, 1] = sos[s, 2] * x_cur - sos[s, 5] * x_new
            x_cur = x_new
        y[n] = x_cur


class SosState:
    """A second-order-sections filter with its state, fed chunk by chunk (float64).

    Example:
        >>> f = SosState(signal.butter(2, 10.0, fs=360.0, output="sos"), x0=0.0)
        >>> f(np.ones(3)).shape
        (3,)
    """

    __slots__ = ("_sos", "_zi")

    def __init__(self, sos: npt.ArrayLike, x0: float = 0.0) -> None:
        self._sos = np.ascontiguousarray(sos, dtype=np.float64)
        self._zi = unit_steady_state(self._sos) * x0  # steady state for a constant input x0: no transient

    def __call__(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Filter ``x`` (1-D), carrying the state; returns a new array."""
        y = np.array(x, dtype=np.float64)
        sos_inplace(self._sos, self._zi, y)
        return y


@functools.lru_cache(maxsize=64)
def _unit_zi(sos_bytes: bytes, sections: int) -> npt.NDArray[np.float64]:
    """``sosfilt_zi`` of a cascade, computed once per design (a device join needs it per filter)."""
    zi = signal.sosfilt_zi(np.frombuffer(sos_bytes, dtype=np.float64).reshape(sections, 6))
    zi.setflags(write=False)
    return zi


def unit_steady_state(sos: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """A writable copy of ``sosfilt_zi(sos)``: the (sections, 2) state for a constant input of 1."""
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    return np.array(_unit_zi(sos.tobytes(), len(sos)))
