"""Beat windows and RR-interval features around R peaks, streaming and batch, equal for the same input.

For beat ``i`` at R peak ``r[i]`` (samples at :data:`MODEL_FS_HZ`) of the *conditioned* signal:

* window: ``cond[c - pre : c + post : step]`` with ``c = r[i] + delay`` (the conditioner's group
  delay), 0.25 s before to 0.45 s after R, every 2nd sample (126 samples at 180 Hz); the
  window's median is subtracted (baseline);
* patient normalisation, causal over the last ``template_beats`` beats (this one included):
  scale = median peak-to-peak amplitude, template = sample-wise median window. The model
  sees two channels: ``window / scale`` and ``(window - template) / scale`` (how this beat
  differs from the patient's dominant beat);
* RR features (:data:`RR_FEATURES`): previous, next, local-average (last 10 RR) and patient
  average (last 256 RR) intervals in seconds, their ratios, and the rhythm's irregularity
  (mean absolute successive difference of the last 16 RR over their mean: high in atrial
  fibrillation, where a short RR is not a premature beat). RR sums are done in integer
  samples so streaming and batch agree bit for bit.

Beat ``i`` needs ``r[i + 1]`` (its next RR): online it is emitted once the next beat is
detected; the last beat of a stream only by :meth:`BeatFeatureExtractor.flush`, with
next RR = previous RR (batch: ``final=True``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from gateway.signal._beat_kernels import beat_update, centred
from gateway.signal.constants import MODEL_FS_HZ

#: Names of the columns of the RR feature matrix, in order.
RR_FEATURES: tuple[str, ...] = (
    "prev_rr_s", "next_rr_s", "local_rr_s", "patient_rr_s",
    "prev_over_patient", "next_over_patient", "local_over_patient",
    "prev_over_local", "next_over_local", "prev_over_next", "irregularity",
)


@dataclass(frozen=True)
class BeatConfig:
    """Window and feature settings (samples at :data:`MODEL_FS_HZ`, counts in beats)."""

    pre_samples: int = 90  # 0.25 s before R
    post_samples: int = 162  # 0.45 s after R
    step: int = 2  # keep every 2nd sample (the conditioner low-passes at 40 Hz)
    template_beats: int = 32
    local_rr_beats: int = 10
    irregularity_beats: int = 16  # RR intervals in the irregularity measure
    patient_rr_beats: int = 256
    rr_min_s: float = 0.15  # RR intervals are clipped to this range for the features
    rr_max_s: float = 3.0
    buffer_s: float = 6.0  # conditioned signal kept by the streaming extractor

    def __post_init__(self) -> None:
        if self.pre_samples < 0 or self.post_samples < 1 or self.step < 1:
            raise ValueError("need pre_samples >= 0, post_samples >= 1, step >= 1")
        if min(self.template_beats, self.local_rr_beats, self.patient_rr_beats) < 1:
            raise ValueError("beat counts must be >= 1")
        if not 0 < self.rr_min_s < self.rr_max_s:
            raise ValueError("need 0 < rr_min_s < rr_max_s")

    @property
    def window_len(self) -> int:
        """Samples per channel of a model window."""
        return len(range(0, self.pre_samples + self.post_samples, self.step))


@dataclass(frozen=True)
class BeatBatch:
    """Features of ``n`` beats: ``r_samples`` (n,) int64, ``windows`` (n, L, 2) and ``rr`` (n, 11) float32."""

    r_samples: npt.NDArray[np.int64]
    windows: npt.NDArray[np.float32]
    rr: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.r_samples.size)

    @staticmethod
    def empty(config: BeatConfig | None = None) -> BeatBatch:
        cfg = config or BeatConfig()
        return BeatBatch(
            np.empty(0, np.int64), np.empty((0, cfg.window_len, 2), np.float32), np.empty((0, len(RR_FEATURES)), np.float32)
        )

    @staticmethod
    def concat(batches: list[BeatBatch], config: BeatConfig | None = None) -> BeatBatch:
        batches = [b for b in batches if len(b)]
        if not batches:
            return BeatBatch.empty(config)
        return BeatBatch(
            np.concatenate([b.r_samples for b in batches]),
            np.concatenate([b.windows for b in batches]),
            np.concatenate([b.rr for b in batches]),
        )


@dataclass(frozen=True)
class ExtractorState:
    """What a streaming extractor carries from beat to beat besides its signal buffer.

    ``count`` beats seen; ``template`` (window_len,) and ``scale``: the patient normalisation;
    ``rr``: the last ``patient_rr_beats`` RR intervals (samples); ``pending``: the beat waiting
    for its next R peak, ``(r, raw window)``, or None.
    """

    count: int
    template: npt.NDArray[np.float32]
    scale: float
    rr: npt.NDArray[np.int64]
    pending: tuple[int, npt.NDArray[np.float32]] | None = None


# -- shared pieces (used by both paths so they agree exactly) ------------------------------


def _raw_windows(cond: npt.NDArray[np.float64], offset: int, centres: npt.NDArray[np.int64], cfg: BeatConfig,
                 first: float, last: float) -> npt.NDArray[np.float64]:
    """Baseline-subtracted windows; ``cond[0]`` is absolute sample ``offset``.

    Samples before the stream start take ``first``, after its end ``last``; NaN become 0
    after the baseline is subtracted.
    """
    idx = centres[:, None] + np.arange(-cfg.pre_samples, cfg.post_samples, cfg.step)[None, :] - offset
    w = cond[np.clip(idx, 0, max(cond.size - 1, 0))] if cond.size else np.full(idx.shape, np.nan)
    w = np.where(idx + offset < 0, first, w)
    w = np.where(idx >= cond.size, last, w)
    base = np.nanmedian(w, axis=1, keepdims=True) if np.isnan(w).any() else np.median(w, axis=1, keepdims=True)
    w = np.nan_to_num(w - np.nan_to_num(base), nan=0.0)
    return w


SCALE_FLOOR_MV = 0.05  # a flat patient's windows are divided by at least this, not blown up


PAUSE_AFTER_S = 2.0  # s: a next RR this long (and > 2x the local mean) is a pause, not a feature


def _rr_row(prev: int, nxt: int, local_sum: int, local_n: int, pat_sum: int, pat_n: int, fs: float,
            irr: float = 0.0) -> list[float]:
    local = local_sum / local_n / fs
    pat = pat_sum / pat_n / fs
    p, n = prev / fs, nxt / fs
    if n >= PAUSE_AFTER_S and n > 2.0 * local:
        # A pause after a beat says nothing about that beat's origin (the rhythm module reports
        # the pause itself); without this, a normal beat before a sinus pause looked premature
        # (next/prev large) and was flagged S. Treat its next RR as unknown: equal to the previous.
        n = p
    return [p, n, local, pat, p / pat, n / pat, local / pat, p / local, n / local, p / n, irr]


def _irregularity(rr: list[int] | npt.NDArray[np.int64]) -> float:
    """Mean absolute successive RR difference over mean RR (0 for fewer than 2 intervals).

    Integer sums, so the batch and streaming paths agree exactly.
    """
    if len(rr) < 2:
        return 0.0
    v = rr.tolist() if isinstance(rr, np.ndarray) else list(rr)  # <= 16 ints: plain Python is faster
    diff = sum(abs(b - a) for a, b in zip(v, v[1:]))
    return float(diff / (len(v) - 1)) / (sum(v) / len(v))


def _clip_rr(rr: npt.NDArray[np.int64], cfg: BeatConfig, fs: float) -> npt.NDArray[np.int64]:
    lo, hi = int(round(cfg.rr_min_s * fs)), int(round(cfg.rr_max_s * fs))
    return np.clip(rr, lo, hi)


# -- batch -------------------------------------------------------------------------------


def extract_beats(
    cond_mv: npt.ArrayLike,
    r_samples: npt.ArrayLike,
    fs_hz: float = MODEL_FS_HZ,
    delay_samples: int = 0,
    config: BeatConfig | None = None,
    final: bool = True,
) -> BeatBatch:
    """Windows and RR features of every beat of a whole conditioned signal.

    Args:
        cond_mv: conditioned ECG (mV) at ``fs_hz`` (:func:`gateway.signal.filters.condition_offline`).
        r_samples: R-peak sample indices, strictly increasing.
        fs_hz: sampling rate (Hz); the window sizes in ``config`` are in samples at this rate.
        delay_samples: the conditioner's group delay (``EcgConditioner.delay_samples``).
        config: window/feature settings.
        final: include the last beat (its next RR taken equal to its previous RR); the
            streaming extractor emits it only on ``flush()``.

    Returns:
        :class:`BeatBatch`, equal to what :class:`BeatFeatureExtractor` emits for the same input.

    Example:
        >>> b = extract_beats(np.zeros(3600), [400, 700, 1000], 360.0)
        >>> b.windows.shape, b.rr.shape
        ((3, 126, 2), (3, 11))
    """
    cfg = config or BeatConfig()
    cond = np.asarray(cond_mv, dtype=np.float64).ravel()
    r = np.asarray(r_samples, dtype=np.int64).ravel()
    if r.size and np.any(np.diff(r) <= 0):
        raise ValueError("r_samples must be strictly increasing")
    n_out = r.size if final else max(r.size - 1, 0)
    if n_out == 0:
        return BeatBatch.empty(cfg)
    fs = float(fs_hz)
    valid = cond[~np.isnan(cond)]
    first = float(valid[0]) if valid.size else 0.0
    last = float(cond[-1]) if cond.size and not np.isnan(cond[-1]) else 0.0
    if cond.size and np.isnan(cond[-1]) and valid.size:
        last = float(valid[-1])
    # the streaming path resolves "after the end" only at flush, so use the last valid value
    w = _raw_windows(cond, 0, r[:n_out] + delay_samples, cfg, first, last)

    # causal medians over the last template_beats windows (this one included)
    k = cfg.template_beats
    amp = w.max(axis=1) - w.min(axis=1)
    templates = np.empty_like(w)
    scales = np.empty(n_out)
    for i in range(min(k - 1, n_out)):
        templates[i] = np.median(w[: i + 1], axis=0)
        scales[i] = np.median(amp[: i + 1])
    if n_out >= k:
        for a in range(k - 1, n_out, 512):
            b = min(a + 512, n_out)
            view = sliding_window_view(w[a - k + 1 : b], k, axis=0)  # (b-a, L, k)
            templates[a:b] = np.median(view, axis=-1)
            scales[a:b] = np.median(sliding_window_view(amp[a - k + 1 : b], k), axis=-1)
    s = np.maximum(scales, SCALE_FLOOR_MV)[:, None]
    windows = np.stack([w / s, (w - templates) / s], axis=-1).astype(np.float32)

    # RR features in integer samples
    rr = _clip_rr(np.diff(r), cfg, fs)  # rr[j] = interval after beat j
    rows = []
    csum = np.concatenate([[0], np.cumsum(rr)])
    for i in range(n_out):
        if r.size == 1:
            d = int(round(0.8 * fs))  # a lone beat: assume 75 bpm
            rows.append(_rr_row(d, d, d, 1, d, 1, fs))
            continue
        prev = int(rr[i - 1]) if i >= 1 else int(rr[0])
        nxt = int(rr[i]) if i < rr.size else prev
        if i == 0:
            ls, ln, ps, pn = nxt, 1, nxt, 1
        else:
            a = max(0, i - cfg.local_rr_beats)
            ls, ln = int(csum[i] - csum[a]), i - a
            a = max(0, i - cfg.patient_rr_beats)
            ps, pn = int(csum[i] - csum[a]), i - a
        irr = _irregularity(rr[max(0, i - cfg.irregularity_beats) : i])
        rows.append(_rr_row(prev, nxt, ls, ln, ps, pn, fs, irr))
    return BeatBatch(r[:n_out].copy(), windows, np.asarray(rows, dtype=np.float32))


# -- streaming ---------------------------------------------------------------------------


class BeatFeatureExtractor:
    """Online beat features: feed conditioned samples and detected R peaks, get finished beats.

    Memory is bounded: the last ``buffer_s`` seconds of signal, ``template_beats`` windows and
    ``patient_rr_beats`` RR intervals. R peaks must arrive in increasing order and no later
    than ``buffer_s`` minus the window length after they happened (the QRS detector's
    1.5 s delay is well inside the default 6 s).

    Example:
        >>> ex = BeatFeatureExtractor(360.0)
        >>> b = ex.process(np.zeros(1200), [400, 700, 1000])
        >>> len(b), len(ex.flush())
        (2, 1)
    """

    def __init__(self, fs_hz: float = MODEL_FS_HZ, delay_samples: int = 0, config: BeatConfig | None = None) -> None:
        self.fs_hz = float(fs_hz)
        self.delay_samples = int(delay_samples)
        self.config = config or BeatConfig()
        self._keep = max(int(self.config.buffer_s * self.fs_hz), self.config.pre_samples + self.config.post_samples + 1)
        self._rr_lo, self._rr_hi = (int(v) for v in _clip_rr(np.array([0, 10**9]), self.config, self.fs_hz))
        self._recent = max(self.config.local_rr_beats, self.config.irregularity_beats)
        self._empty = BeatBatch.empty(self.config)  # returned for chunks that finish no beat (most of them)
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        cfg = self.config
        self._store = np.empty(self._keep + 2048)  # signal buffer; compacted every few chunks, not every one
        self._lo = self._len = 0
        self._buf = self._store[:0]
        self._start = 0  # absolute index of _buf[0]
        self._n = 0
        self._first: float | None = None
        self._last = 0.0
        self._waiting: deque[int] = deque()  # R peaks whose window is not complete yet
        self._ready: deque[tuple[int, npt.NDArray[np.float64]]] = deque()  # (r, raw window) awaiting next R
        # ring buffers of the last template_beats windows and amplitudes (medians ignore order)
        self._windows = np.zeros((cfg.template_beats, cfg.window_len))
        self._amps = np.zeros(cfg.template_beats)
        self._cols = np.zeros((cfg.window_len, cfg.template_beats))  # the ring's values sorted per column
        self._amps_sorted = np.zeros(cfg.template_beats)
        self._rr: deque[int] = deque(maxlen=cfg.patient_rr_beats)
        self._rr_sum = 0  # sum(self._rr), kept as beats come and go (integers: exact)
        self._last_r: int | None = None
        self._count = 0  # beats emitted
        self._pending_out: tuple[int, npt.NDArray[np.float64]] | None = None  # beat waiting for its next RR
        self._template: npt.NDArray[np.float64] | None = None  # the last beat's normalisation (for export_state)
        self._scale = 0.0

    def export_state(self) -> ExtractorState:
        """The patient normalisation and RR history (no signal buffers), for a session checkpoint."""
        cfg = self.config
        if self._template is not None:  # what the last beat was normalised with (its own window included)
            template, scale = self._template.astype(np.float32), self._scale
        else:
            template, scale = np.zeros(cfg.window_len, np.float32), 0.0
        pending = None
        if self._pending_out is not None:
            pending = (int(self._pending_out[0]), self._pending_out[1].astype(np.float32))
        return ExtractorState(self._count, template, scale, np.asarray(self._rr, dtype=np.int64), pending)

    def import_state(self, state: ExtractorState) -> None:
        """Continue from ``state`` (R indices in this extractor's sample numbering) on a fresh signal buffer.

        The template ring is seeded with copies of the saved template (and the amplitudes with
        the saved scale): the first ``template_beats // 2`` beats see the saved template
        exactly, after ``template_beats`` beats it is the plain rolling median again. R peaks
        at or before the saved pending beat must not be passed in again.
        """
        cfg = self.config
        self.reset()
        filled = min(int(state.count), cfg.template_beats)
        if filled:
            self._windows[:filled] = np.asarray(state.template, dtype=np.float64)[None, :]
            self._amps[:filled] = float(state.scale)
            self._cols[:, :filled] = self._windows[0][:, None]  # equal values: already sorted
            self._amps_sorted[:filled] = float(state.scale)
            self._template, self._scale = self._windows[0].copy(), float(state.scale)
        self._count = int(state.count)
        for v in state.rr[-cfg.patient_rr_beats :]:
            self._push_rr(int(v))
        if state.pending is not None:
            r = int(state.pending[0])
            self._pending_out = (r, np.asarray(state.pending[1], dtype=np.float64))
            self._last_r = r

    def process(self, cond_chunk_mv: npt.ArrayLike, r_samples: npt.ArrayLike = ()) -> BeatBatch:
        """Append conditioned samples, then register new R peaks; return beats whose next R is known."""
        x = np.asarray(cond_chunk_mv, dtype=np.float64).ravel()
        if x.size:
            head, tail = float(x[0]), float(x[-1])
            if head != head or tail != tail:  # NaN at an end: look for the valid ones
                valid = x[~np.isnan(x)]
                head = float(valid[0]) if valid.size else None
                tail = float(valid[-1]) if valid.size else None
            if self._first is None and head is not None:
                self._first = head
            if tail is not None:
                self._last = tail
            self._append(x)
        out: list[tuple[int, npt.NDArray[np.float64], list[float]]] = []
        for r in np.asarray(r_samples, dtype=np.int64).ravel().tolist():
            if self._last_r is not None and r <= self._last_r:
                raise ValueError("R peaks must be strictly increasing")
            self._waiting.append(r)
            self._last_r = r
        self._extract(final=False)
        self._emit(out, final=False)
        self._trim()
        return self._pack(out)

    def flush(self) -> BeatBatch:
        """End of stream: complete pending windows (padding with the last value) and emit the last beat."""
        out: list[tuple[int, npt.NDArray[np.float64], list[float]]] = []
        self._extract(final=True)
        self._emit(out, final=True)
        return self._pack(out)

    # -- internals -------------------------------------------------------------------------

    def _append(self, x: npt.NDArray[np.float64]) -> None:
        """Add samples after the kept ones (``_buf`` is a view of ``_store[_lo:_len]``)."""
        n = x.size
        if self._len + n > self._store.size:  # move the kept samples to the front (or to a larger store)
            kept = self._len - self._lo
            store = self._store if kept + n <= self._store.size else np.empty(2 * (kept + n))
            store[:kept] = self._store[self._lo : self._len]
            self._store, self._lo, self._len = store, 0, kept
        self._store[self._len : self._len + n] = x
        self._len += n
        self._n += n
        self._buf = self._store[self._lo : self._len]

    def _trim(self) -> None:
        """Keep the last ``_keep`` samples."""
        cut = self._len - self._lo - self._keep
        if cut > 0:
            self._lo += cut
            self._start += cut
            self._buf = self._store[self._lo : self._len]

    def _push_rr(self, rr: int) -> None:
        if len(self._rr) == self._rr.maxlen:
            self._rr_sum -= self._rr[0]
        self._rr.append(rr)
        self._rr_sum += rr

    def _extract(self, final: bool) -> None:
        cfg = self.config
        while self._waiting:
            r = self._waiting[0]
            c = r + self.delay_samples
            if not final and c + cfg.post_samples > self._n:
                break
            self._waiting.popleft()
            a, b = c - cfg.pre_samples - self._start, c + cfg.post_samples - self._start
            seg = self._buf[a:b:cfg.step] if a >= 0 and b <= self._buf.size else None
            if seg is not None and not np.count_nonzero(np.isnan(seg)):
                w = centred(seg)  # fast path, same values as _raw_windows
            else:
                first = self._first if self._first is not None else 0.0
                w = _raw_windows(self._buf, self._start, np.array([c]), cfg, first, self._last)[0]
            self._ready.append((r, w))

    def _emit(self, out: list, final: bool) -> None:
        fs, lo, hi = self.fs_hz, self._rr_lo, self._rr_hi
        while self._ready:
            if self._pending_out is None:
                self._pending_out = self._ready.popleft()
                continue
            r_prev, w_prev = self._pending_out
            r_next = self._ready[0][0]
            out.append(self._features(r_prev, w_prev, min(max(r_next - r_prev, lo), hi), fs))
            self._pending_out = self._ready.popleft()
        if final and self._pending_out is not None:
            r_prev, w_prev = self._pending_out
            out.append(self._features(r_prev, w_prev, None, fs))
            self._pending_out = None

    def _features(self, r: int, w: npt.NDArray[np.float64], nxt: int | None, fs: float) -> tuple:
        cfg = self.config
        slot = self._count % cfg.template_beats
        normalised, template, scale = beat_update(self._windows, self._amps, self._cols, self._amps_sorted, slot,
                                                  min(self._count, cfg.template_beats), w, SCALE_FLOOR_MV)
        self._template, self._scale = template, scale
        rr = self._rr
        if not rr and nxt is None:
            d = int(round(0.8 * fs))
            row = _rr_row(d, d, d, 1, d, 1, fs)
        else:
            prev = rr[-1] if rr else nxt
            nx = nxt if nxt is not None else prev
            if not rr:
                row = _rr_row(prev, nx, nx, 1, nx, 1, fs)
            else:
                # the last few RR, oldest first (indexing a deque near its end is cheap; copying 256 is not)
                recent = [rr[-k] for k in range(min(len(rr), self._recent), 0, -1)]
                local = recent[-cfg.local_rr_beats :]
                irr = _irregularity(recent[-cfg.irregularity_beats :])
                row = _rr_row(prev, nx, sum(local), len(local), self._rr_sum, len(rr), fs, irr)
        if nxt is not None:
            self._push_rr(nxt)
        self._count += 1
        return r, normalised, row

    def _pack(self, out: list) -> BeatBatch:
        if not out:
            return self._empty
        return BeatBatch(
            np.array([o[0] for o in out], dtype=np.int64),
            np.stack([o[1] for o in out]),
            np.asarray([o[2] for o in out], dtype=np.float32),
        )
