"""``sosfilt`` with carried state, minus scipy's per-call validation overhead (for small chunks).

scipy's public :func:`scipy.signal.sosfilt` spends ~0.2 ms per call on argument checks and axis
shuffling, more than the filtering itself for a 1 s frame at 360 Hz; with one call per device
frame per filter that overhead alone would cap a core well below 1,000 patients. The compiled
routine behind it is used directly when present and verified once against the public function
at import; otherwise the public function is used.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from scipy import signal

try:  # private, present in scipy >= 1.1; checked below
    from scipy.signal._sosfilt import _sosfilt as _impl  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the scipy build
    _impl = None


class SosState:
    """A second-order-sections filter with its state, fed chunk by chunk (float64).

    Example:
        >>> f = SosState(signal.butter(2, 10.0, fs=360.0, output="sos"), x0=0.0)
        >>> f(np.ones(3)).shape
        (3,)
    """

    __slots__ = ("_sos", "_zi")

    def __init__(self, sos: npt.ArrayLike, x0: float = 0.0) -> None:
        self._sos = np.array(sos, dtype=np.float64, order="C")  # own, writable: the compiled routine needs it
        # steady state for a constant input x0 (no start-up transient)
        self._zi = np.ascontiguousarray((_unit_zi(self._sos.tobytes(), len(self._sos)) * x0)[np.newaxis],
                                        dtype=np.float64)

    def __call__(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Filter ``x`` (1-D), carrying the state; returns a new array."""
        if _FAST:
            y = np.array(x, dtype=np.float64, order="C").reshape(1, -1)
            _impl(self._sos, y, self._zi)  # in place on y and the state
            return y[0]
        y, zi = signal.sosfilt(self._sos, x, zi=self._zi[0])
        self._zi = zi[np.newaxis]
        return y


@functools.lru_cache(maxsize=64)
def _unit_zi(sos_bytes: bytes, sections: int) -> npt.NDArray[np.float64]:
    """``sosfilt_zi`` of a cascade, computed once per design (a device join needs it per filter)."""
    zi = signal.sosfilt_zi(np.frombuffer(sos_bytes, dtype=np.float64).reshape(sections, 6))
    zi.setflags(write=False)
    return zi


def _self_test() -> bool:
    if _impl is None:
        return False
    try:
        sos = signal.butter(2, (5.0, 15.0), "bandpass", fs=360.0, output="sos")
        x = np.random.default_rng(0).standard_normal(500)
        zi = signal.sosfilt_zi(sos) * x[0]
        ref, ref_zi = signal.sosfilt(sos, x, zi=zi)
        y, z = np.array(x[np.newaxis]), np.ascontiguousarray(zi[np.newaxis])
        _impl(np.ascontiguousarray(sos), y, z)
        return bool(np.array_equal(y[0], ref) and np.array_equal(z[0], ref_zi))
    except Exception:  # pragma: no cover - any mismatch in the private API
        return False


_FAST = _self_test()


def unit_steady_state(sos: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """A writable copy of ``sosfilt_zi(sos)``: the (sections, 2) state for a constant input of 1."""
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    return np.array(_unit_zi(sos.tobytes(), len(sos)))
