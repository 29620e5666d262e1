"""Streaming resampling from any device rate (100..1000 Hz) to the gateway's rate, with index mapping.

Why not ``scipy.signal.resample_poly``: device rates are arbitrary (e.g. 257 Hz) so a rational
up/down factor may be huge, and it is a batch function. Here a linear-phase FIR low-pass
(only when downsampling; ``np.convolve`` with a carried tail) is followed by cubic (Catmull-Rom)
interpolation at fractional positions ``k * fs_in / fs_out`` computed from the absolute output
index ``k``. Every output sample is a function of the input samples only, never of how the
stream was chunked, so streaming output equals :func:`resample_offline` exactly.

Time alignment: the FIR delay ``(numtaps - 1) / 2`` is compensated, so output sample ``k``
sits at input time ``k * fs_in / fs_out`` (see :meth:`StreamingResampler.to_input_index`).
The price is an output latency of ``numtaps // 2 + 2`` input samples.

NaN samples are gaps: they are held at the last valid value before filtering (so the filter
state never turns NaN) and an output sample is NaN where its nearest input sample was NaN.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import signal

from gateway.signal.constants import MAX_DEVICE_FS_HZ, MIN_DEVICE_FS_HZ, MODEL_FS_HZ

_PASSBAND_FRACTION = 0.42  # of fs_out: 151 Hz at 360 Hz, the diagnostic ECG band
_STOPBAND_ATTEN_DB = 50.0


def _check_rate(name: str, fs: float) -> float:
    fs = float(fs)
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {fs!r}")
    return fs


def design_antialias(fs_in_hz: float, fs_out_hz: float) -> npt.NDArray[np.float64] | None:
    """FIR taps (odd length, linear phase) of the anti-alias low-pass, or None when upsampling."""
    if fs_in_hz <= fs_out_hz:
        return None
    cutoff = _PASSBAND_FRACTION * fs_out_hz
    width = (0.5 - _PASSBAND_FRACTION) * fs_out_hz
    numtaps, beta = signal.kaiserord(_STOPBAND_ATTEN_DB, width / (0.5 * fs_in_hz))
    numtaps |= 1  # odd: integer delay
    return signal.firwin(numtaps, cutoff + 0.5 * width, window=("kaiser", beta), fs=fs_in_hz)


class StreamingResampler:
    """Resample a stream chunk by chunk; output equals :func:`resample_offline` for any chunking.

    Args:
        fs_in_hz: device rate (Hz); any positive rate works, 100..1000 Hz is the supported range.
        fs_out_hz: output rate (Hz), the gateway's :data:`MODEL_FS_HZ` by default.

    Equal rates are an exact pass-through (a float64 copy, no delay).

    Example:
        >>> r = StreamingResampler(250.0)
        >>> y = np.concatenate([r.process(np.zeros(100)), r.process(np.zeros(150)), r.flush()])
        >>> len(y), r.to_input_index(len(y) - 1)
        (359, 249)
    """

    def __init__(self, fs_in_hz: float, fs_out_hz: float = MODEL_FS_HZ) -> None:
        self.fs_in_hz = _check_rate("fs_in_hz", fs_in_hz)
        self.fs_out_hz = _check_rate("fs_out_hz", fs_out_hz)
        self.passthrough = self.fs_in_hz == self.fs_out_hz
        self._step = self.fs_in_hz / self.fs_out_hz  # input samples per output sample
        self._taps = design_antialias(self.fs_in_hz, self.fs_out_hz)
        self._delay = 0 if self._taps is None else (len(self._taps) - 1) // 2
        self._tail = np.empty(0)  # last numtaps-1 (held) inputs: the FIR state
        self._hold = 0.0  # last valid input value (NaN gaps are held at it)
        self._n_in = 0  # input samples received
        self._n_out = 0  # output samples emitted
        # filtered values and NaN mask, absolute input index of element 0 is _buf_start
        self._buf = np.empty(0)
        self._nan = np.empty(0, dtype=bool)
        self._buf_start = 0
        self._flushed = False

    @property
    def supported(self) -> bool:
        """True when the input rate lies in the supported device range."""
        return MIN_DEVICE_FS_HZ <= self.fs_in_hz <= MAX_DEVICE_FS_HZ

    @property
    def latency_in_samples(self) -> int:
        """Input samples an output sample waits for (FIR half-length + interpolation lookahead)."""
        return 0 if self.passthrough else self._delay + 2

    @property
    def samples_out(self) -> int:
        """Output samples emitted so far (the absolute index of the next output sample)."""
        return self._n_out

    def to_input_index(self, out_index: npt.ArrayLike) -> npt.NDArray[np.int64] | int:
        """Map output sample index(es) to the nearest input (device) sample index."""
        return output_to_input_index(out_index, self.fs_in_hz, self.fs_out_hz)

    def process(self, chunk: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Feed input samples (any length, NaN = gap); return the output samples now complete."""
        if self._flushed:
            raise RuntimeError("StreamingResampler.process() after flush(); create a new one")
        x = np.asarray(chunk, dtype=np.float64).ravel()
        if self.passthrough:
            self._n_in += x.size
            self._n_out += x.size
            return x.copy()
        if x.size == 0:
            return np.empty(0)
        nan = np.isnan(x)
        if np.count_nonzero(nan):
            x = _hold_nans(x, nan, self._hold)
        self._hold = float(x[-1])
        self._append(x, nan)
        return self._emit(final=False)

    def flush(self) -> npt.NDArray[np.float64]:
        """End of stream: emit the remaining outputs up to the last input sample's time."""
        if self._flushed or self.passthrough:
            self._flushed = True
            return np.empty(0)
        self._flushed = True
        if self._n_in == 0:
            return np.empty(0)
        pad = np.full(self._delay + 3, self._hold)
        n_real = self._n_in
        self._append(pad, np.zeros(pad.size, dtype=bool))
        return self._emit(final=True, n_real=n_real)

    # -- internals -------------------------------------------------------------------------

    def _append(self, x: npt.NDArray[np.float64], nan: npt.NDArray[np.bool_]) -> None:
        if self._n_in == 0:
            # one replicated sample before the stream so cubic interpolation has 4 points at k=0
            self._buf = np.array([x[0]])
            self._nan = np.array([bool(nan[0])])
            self._buf_start = -1
            if self._taps is not None:  # steady state as if x[0] had always been there
                self._tail = np.full(self._taps.size - 1, x[0])
        if self._taps is not None:
            # np.convolve over (state + chunk): each output is the same dot product whatever
            # the chunking (lfilter's FIR path is not bit-exact across chunk boundaries)
            seg = np.concatenate([self._tail, x])
            y = np.convolve(seg, self._taps, mode="valid")
            self._tail = seg[seg.size - (self._taps.size - 1) :]
        else:
            y = x
        self._buf = np.concatenate([self._buf, y])
        self._nan = np.concatenate([self._nan, nan])
        self._n_in += x.size

    def _emit(self, final: bool, n_real: int = 0) -> npt.NDArray[np.float64]:
        last = self._buf_start + self._buf.size - 1  # last filtered index available
        # output k needs filtered samples up to floor(k*step + delay) + 2
        k_end = int(math.floor((last - 2 - self._delay) / self._step)) + 1
        while k_end > self._n_out and math.floor((k_end - 1) * self._step + self._delay) + 2 > last:
            k_end -= 1
        while math.floor(k_end * self._step + self._delay) + 2 <= last:
            k_end += 1
        if final:  # outputs only up to the last real input sample's time
            k_end = min(k_end, int(math.floor((n_real - 1) / self._step)) + 1)
            while k_end > self._n_out and (k_end - 1) * self._step > n_real - 1:
                k_end -= 1
        if k_end <= self._n_out:
            return np.empty(0)
        k = np.arange(self._n_out, k_end, dtype=np.float64)
        t_in = k * self._step  # input time of each output sample
        pos = t_in + self._delay  # position in the (delayed) filtered stream
        i0 = np.floor(pos).astype(np.int64)
        frac = pos - i0
        b = i0 - self._buf_start
        p0, p1, p2, p3 = self._buf[b - 1], self._buf[b], self._buf[b + 1], self._buf[b + 2]
        # Catmull-Rom cubic
        out = p1 + 0.5 * frac * (
            p2 - p0 + frac * (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3 + frac * (3.0 * (p1 - p2) + p3 - p0))
        )
        nearest = np.floor(t_in + 0.5).astype(np.int64) - self._buf_start
        out[self._nan[nearest]] = np.nan
        self._n_out = k_end
        # keep what the next outputs may still need
        keep_from = int(math.floor(k_end * self._step)) - 2  # nearest-sample lookup of next k
        keep_from = min(keep_from, int(math.floor(k_end * self._step + self._delay)) - 2)
        drop = keep_from - self._buf_start
        if drop > 4096:
            self._buf = self._buf[drop:]
            self._nan = self._nan[drop:]
            self._buf_start += drop
        return out


def _hold_nans(
    x: npt.NDArray[np.float64], nan: npt.NDArray[np.bool_], hold: float
) -> npt.NDArray[np.float64]:
    """Replace NaNs by the last valid value (``hold`` before the first valid one)."""
    idx = np.where(~nan, np.arange(x.size), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, x[np.maximum(idx, 0)], hold)
    return out


def output_to_input_index(
    out_index: npt.ArrayLike, fs_in_hz: float, fs_out_hz: float = MODEL_FS_HZ
) -> npt.NDArray[np.int64] | int:
    """Nearest input (device) sample index of output sample index(es): ``round(k * fs_in / fs_out)``.

    Example:
        >>> output_to_input_index(360, 250.0)
        250
    """
    if type(out_index) is int:  # the per-beat case: plain float arithmetic, same IEEE result
        if fs_in_hz == fs_out_hz:
            return out_index
        return int(math.floor(out_index * (float(fs_in_hz) / float(fs_out_hz)) + 0.5))
    k = np.asarray(out_index)
    if fs_in_hz == fs_out_hz:
        res = k.astype(np.int64)
    else:
        res = np.floor(k.astype(np.float64) * (float(fs_in_hz) / float(fs_out_hz)) + 0.5).astype(np.int64)
    return int(res) if res.ndim == 0 else res


def input_to_output_index(
    in_index: npt.ArrayLike, fs_in_hz: float, fs_out_hz: float = MODEL_FS_HZ
) -> npt.NDArray[np.int64] | int:
    """Nearest output sample index of input sample index(es) (for scoring annotations)."""
    i = np.asarray(in_index)
    if fs_in_hz == fs_out_hz:
        res = i.astype(np.int64)
    else:
        res = np.floor(i.astype(np.float64) * (float(fs_out_hz) / float(fs_in_hz)) + 0.5).astype(np.int64)
    return int(res) if res.ndim == 0 else res


def resample_offline(
    x: npt.ArrayLike, fs_in_hz: float, fs_out_hz: float = MODEL_FS_HZ
) -> npt.NDArray[np.float64]:
    """Resample a whole signal; identical to streaming it through :class:`StreamingResampler`.

    Output length is ``floor((n - 1) * fs_out / fs_in) + 1`` (0 for empty input).

    Example:
        >>> resample_offline(np.ones(1000), 1000.0).shape
        (360,)
    """
    r = StreamingResampler(fs_in_hz, fs_out_hz)
    return np.concatenate([r.process(x), r.flush()])
