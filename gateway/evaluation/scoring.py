"""EC57-style beat-by-beat QRS scoring (150 ms match window, first 5 minutes excluded) and WFDB reading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: WFDB annotation symbols that are beats (ANSI/AAMI EC57; wfdb's ``is_qrs`` set).
BEAT_SYMBOLS: frozenset[str] = frozenset("NLRBAaJSVrFejnE/fQ?")


@dataclass(frozen=True)
class MatchResult:
    """Beat-by-beat comparison of reference and detected beats.

    ``pairs`` is an ``(k, 2)`` int64 array of (reference index, detection index) into the
    arrays given to :func:`match_beats`, for every matched reference beat inside the scored
    interval.
    """

    tp: int
    fn: int
    fp: int
    pairs: npt.NDArray[np.int64]

    @property
    def se(self) -> float:
        """Sensitivity TP / (TP + FN), NaN when there is no reference beat."""
        return se(self.tp, self.fn)

    @property
    def ppv(self) -> float:
        """Positive predictivity TP / (TP + FP), NaN when nothing was detected."""
        return ppv(self.tp, self.fp)

    def __add__(self, other: MatchResult) -> MatchResult:
        """Pool counts over records (``pairs`` are per record and are not pooled)."""
        return MatchResult(
            self.tp + other.tp, self.fn + other.fn, self.fp + other.fp, np.empty((0, 2), np.int64)
        )


def se(tp: int, fn: int) -> float:
    """Sensitivity TP / (TP + FN) as a fraction; NaN when TP + FN == 0."""
    return tp / (tp + fn) if tp + fn else float("nan")


def ppv(tp: int, fp: int) -> float:
    """Positive predictivity TP / (TP + FP) as a fraction; NaN when TP + FP == 0."""
    return tp / (tp + fp) if tp + fp else float("nan")


def match_beats(
    ref_samples: npt.ArrayLike,
    det_samples: npt.ArrayLike,
    fs_hz: float,
    window_s: float = 0.150,
    start_s: float = 300.0,
    exclude: npt.ArrayLike | None = None,
) -> MatchResult:
    """Match detections to reference beats one-to-one within ``window_s`` seconds (EC57 style).

    Pairs are formed closest first (greedy on |ref - det|, ties to the earlier detection).
    Only reference beats at or after ``start_s`` count (TP/FN) and only unmatched detections
    at or after ``start_s`` count as FP: EC57 excludes the first 5 minutes as the detector's
    learning period. Matching itself uses all beats, so nothing at the boundary is double-counted.

    Args:
        ref_samples: reference beat sample indices (at ``fs_hz``), any order.
        det_samples: detected beat sample indices (at ``fs_hz``), any order.
        fs_hz: the sampling rate both index arrays refer to.
        window_s: match tolerance in seconds (inclusive).
        start_s: beats before this time are not scored.
        exclude: optional ``(k, 2)`` sample intervals ``[start, end]`` whose reference beats
            and detections are ignored altogether, e.g. :func:`vf_intervals` (EC57 scores
            ventricular flutter/fibrillation separately from QRS detection). Default: none,
            every beat counts.

    Example:
        >>> r = match_beats([400, 800, 1200], [402, 1230, 1500], fs_hz=360.0, start_s=0.0)
        >>> (r.tp, r.fn, r.fp)
        (2, 1, 1)
    """
    if fs_hz <= 0:
        raise ValueError(f"fs_hz must be > 0, got {fs_hz!r}")
    ref = np.asarray(ref_samples, dtype=np.int64).ravel()
    det = np.asarray(det_samples, dtype=np.int64).ravel()
    if exclude is not None:
        ref_keep = ~_inside(ref, exclude)
        det_keep = ~_inside(det, exclude)
        res = match_beats(ref[ref_keep], det[det_keep], fs_hz, window_s, start_s)
        ref_ids, det_ids = np.flatnonzero(ref_keep), np.flatnonzero(det_keep)
        pairs = np.stack([ref_ids[res.pairs[:, 0]], det_ids[res.pairs[:, 1]]], axis=1)
        return MatchResult(res.tp, res.fn, res.fp, pairs.reshape(-1, 2).astype(np.int64))
    ref_order = np.argsort(ref, kind="stable")
    det_order = np.argsort(det, kind="stable")
    r, d = ref[ref_order], det[det_order]
    tol = int(np.floor(window_s * fs_hz + 1e-9))
    start = int(np.ceil(start_s * fs_hz - 1e-9))

    # all candidate pairs within the window
    lo = np.searchsorted(d, r - tol, side="left")
    hi = np.searchsorted(d, r + tol, side="right")
    counts = hi - lo
    ri = np.repeat(np.arange(r.size), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    di = np.repeat(lo, counts) + offsets
    dist = np.abs(r[ri] - d[di])
    order = np.lexsort((di, dist))
    ref_used = np.zeros(r.size, dtype=bool)
    det_used = np.zeros(d.size, dtype=bool)
    pairs = []
    for k in order.tolist():
        a, b = ri[k], di[k]
        if not ref_used[a] and not det_used[b]:
            ref_used[a] = det_used[b] = True
            pairs.append((a, b))
    pr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    scored_ref = r >= start
    tp_mask = scored_ref[pr[:, 0]] if pr.size else np.zeros(0, dtype=bool)
    tp = int(tp_mask.sum())
    fn = int(scored_ref.sum()) - tp
    fp = int(((~det_used) & (d >= start)).sum())
    out_pairs = np.stack([ref_order[pr[tp_mask, 0]], det_order[pr[tp_mask, 1]]], axis=1) if pr.size else pr
    return MatchResult(tp=tp, fn=fn, fp=fp, pairs=out_pairs.astype(np.int64).reshape(-1, 2))


def _inside(samples: npt.NDArray[np.int64], intervals: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    iv = np.asarray(intervals, dtype=np.int64).reshape(-1, 2)
    mask = np.zeros(samples.size, dtype=bool)
    for a, b in iv:
        mask |= (samples >= a) & (samples <= b)
    return mask


def vf_intervals(ann_samples: npt.ArrayLike, ann_symbols: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """``(k, 2)`` sample intervals of ventricular flutter/fibrillation, from ``[`` to ``]`` annotations.

    An episode still open at the end of the annotations runs to the last annotation.

    Example:
        >>> vf_intervals([10, 50, 90, 120], ["N", "[", "!", "]"]).tolist()
        [[50, 120]]
    """
    samples = np.asarray(ann_samples, dtype=np.int64)
    symbols = np.asarray(ann_symbols, dtype=str)
    out: list[tuple[int, int]] = []
    start: int | None = None
    for t, sym in zip(samples.tolist(), symbols.tolist()):
        if sym == "[" and start is None:
            start = t
        elif sym == "]" and start is not None:
            out.append((start, t))
            start = None
    if start is not None and samples.size:
        out.append((start, int(samples[-1])))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def load_record(
    directory: str | Path, name: str, channel: int = 0
) -> tuple[npt.NDArray[np.float64], float, npt.NDArray[np.int64], npt.NDArray[np.str_]]:
    """Read a WFDB record and its ``.atr`` annotations with wfdb.

    Returns:
        ``(signal_mv, fs_hz, ann_samples, ann_symbols)``: channel ``channel`` in millivolts
        (float64, NaN where the record marks invalid samples), the record's rate, and *all*
        annotation sample indices and symbols (filter beats with :data:`BEAT_SYMBOLS` or
        :func:`beat_annotations`).

    Example:
        >>> sig, fs, ann, sym = load_record("../shared/data/mitdb", "100")  # doctest: +SKIP
    """
    import wfdb  # evaluation-only dependency

    path = str(Path(directory) / name)
    rec = wfdb.rdrecord(path, channels=[channel])
    ann = wfdb.rdann(path, "atr")
    sig = np.asarray(rec.p_signal[:, 0], dtype=np.float64)
    return sig, float(rec.fs), np.asarray(ann.sample, dtype=np.int64), np.asarray(ann.symbol, dtype=str)


def beat_annotations(
    ann_samples: npt.ArrayLike, ann_symbols: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.str_]]:
    """Keep only beat annotations (symbols in :data:`BEAT_SYMBOLS`)."""
    samples = np.asarray(ann_samples, dtype=np.int64)
    symbols = np.asarray(ann_symbols, dtype=str)
    keep = np.isin(symbols, list(BEAT_SYMBOLS))
    return samples[keep], symbols[keep]
