"""Causal streaming ECG conditioning (baseline wander, mains, high-frequency noise) with carried state.

One second-order-sections cascade, run with ``scipy.signal.sosfilt`` and its carried ``zi``:

* high-pass 0.5 Hz (Butterworth, order 2): baseline wander (respiration, electrode motion);
* notches at 50 Hz and 60 Hz (Q = 30): mains of either grid;
* low-pass 40 Hz (Butterworth, order 4): muscle and other high-frequency noise.

The cascade is causal, so streaming output equals :func:`condition_offline` for any chunking
(the state after a chunk is exactly the state an offline run has at that sample). Its group
delay around the QRS band (about 10 Hz) is :attr:`EcgConditioner.delay_samples`; beat
windows are taken that many samples after the detector's R peak so they stay centred.

NaN samples (gaps) are held at the last valid value before filtering so the state never
turns NaN, and are NaN again in the output.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal

from gateway.signal._sosfilt import SosState
from gateway.signal.constants import MODEL_FS_HZ


@dataclass(frozen=True)
class ConditionerConfig:
    """Filter settings (Hz). ``mains_hz`` may be empty to skip the notches."""

    highpass_hz: float = 0.5
    highpass_order: int = 2
    lowpass_hz: float = 40.0
    lowpass_order: int = 4
    mains_hz: tuple[float, ...] = (50.0, 60.0)
    notch_q: float = 30.0
    delay_ref_hz: float = 10.0  # frequency at which delay_samples is measured

    def __post_init__(self) -> None:
        if not 0 < self.highpass_hz < self.lowpass_hz:
            raise ValueError("need 0 < highpass_hz < lowpass_hz")
        if self.highpass_order < 1 or self.lowpass_order < 1:
            raise ValueError("filter orders must be >= 1")
        if self.notch_q <= 0:
            raise ValueError("notch_q must be > 0")


def design_conditioner(fs_hz: float, config: ConditionerConfig | None = None) -> npt.NDArray[np.float64]:
    """The conditioning cascade as second-order sections for rate ``fs_hz`` (Hz).

    Notches at or above Nyquist are skipped, the low-pass is clamped below Nyquist.
    """
    return _design(float(fs_hz), config or ConditionerConfig())[0].copy()


@functools.lru_cache(maxsize=32)
def _design(fs: float, cfg: ConditionerConfig) -> tuple[npt.NDArray[np.float64], int]:
    """(read-only sections, group delay in samples at ``delay_ref_hz``): designed once per rate
    and config, since every device join builds a conditioner (~3 ms of scipy design each)."""
    sos = _design_sections(fs, cfg)
    _, gd = signal.group_delay(signal.sos2tf(sos), w=[cfg.delay_ref_hz], fs=fs)
    sos.setflags(write=False)
    return sos, int(round(float(gd[0])))


def _design_sections(fs: float, cfg: ConditionerConfig) -> npt.NDArray[np.float64]:
    if not math.isfinite(fs) or fs < 50.0:
        raise ValueError(f"fs_hz must be finite and >= 50, got {fs!r}")
    nyq = 0.5 * fs
    parts = [signal.butter(cfg.highpass_order, cfg.highpass_hz, "highpass", fs=fs, output="sos")]
    for f0 in cfg.mains_hz:
        if f0 < 0.95 * nyq:
            b, a = signal.iirnotch(f0, cfg.notch_q, fs=fs)
            parts.append(signal.tf2sos(b, a))
    lp = min(cfg.lowpass_hz, 0.45 * fs)
    parts.append(signal.butter(cfg.lowpass_order, lp, "lowpass", fs=fs, output="sos"))
    return np.vstack(parts)


class EcgConditioner:
    """Condition an ECG stream chunk by chunk; output equals :func:`condition_offline`.

    Args:
        fs_hz: sampling rate (Hz); the gateway uses :data:`MODEL_FS_HZ`.
        config: filter settings, defaults when None.

    Example:
        >>> c = EcgConditioner(360.0)
        >>> y = np.concatenate([c.process(np.ones(100)), c.process(np.ones(260))])
        >>> y.shape, c.delay_samples
        ((360,), 4)
    """

    def __init__(self, fs_hz: float = MODEL_FS_HZ, config: ConditionerConfig | None = None) -> None:
        self.fs_hz = float(fs_hz)
        self.config = config or ConditionerConfig()
        self.sos, delay = _design(self.fs_hz, self.config)
        #: group delay (samples) of the cascade near the QRS band
        self.delay_samples = delay
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next sample is sample 0."""
        self._filter: SosState | None = None
        self._hold = math.nan
        self.samples_in = 0

    def process(self, chunk_mv: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Filter one chunk (mV, NaN = gap); returns the same number of conditioned samples (mV)."""
        x = np.asarray(chunk_mv, dtype=np.float64).ravel()
        if x.size == 0:
            return np.empty(0)
        nan = np.isnan(x)
        any_nan = np.count_nonzero(nan) > 0  # cheaper than .any() on a frame-sized array
        if any_nan:
            x = _hold(x, nan, self._hold)
        if np.isnan(x[0]):  # stream starts with a gap: nothing valid yet
            valid = ~np.isnan(x)
            if not valid.any():
                self.samples_in += x.size
                return np.full(x.size, np.nan)
            x = x.copy()
            x[: int(np.argmax(valid))] = x[int(np.argmax(valid))]
        if self._filter is None:
            # start in steady state for the first value: no step transient from a DC offset
            self._filter = SosState(self.sos, x0=float(x[0]))
        y = self._filter(x)
        self._hold = float(x[-1])
        self.samples_in += x.size
        if any_nan:
            y[nan] = np.nan
        return y


def _hold(x: npt.NDArray[np.float64], nan: npt.NDArray[np.bool_], hold: float) -> npt.NDArray[np.float64]:
    """Replace NaNs by the last valid value (``hold`` before the first valid one)."""
    idx = np.where(~nan, np.arange(x.size), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, x[np.maximum(idx, 0)], hold)
    return out


def condition_offline(x_mv: npt.ArrayLike, fs_hz: float = MODEL_FS_HZ, config: ConditionerConfig | None = None) -> npt.NDArray[np.float64]:
    """Condition a whole signal (mV) causally: exactly the streaming path in one call.

    Example:
        >>> condition_offline(np.zeros(0), 360.0).shape
        (0,)
    """
    return EcgConditioner(fs_hz, config).process(x_mv)
