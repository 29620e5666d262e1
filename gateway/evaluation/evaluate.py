"""EC57-style evaluation of the gateway's own chain (resample -> QRS -> conditioner -> beats -> classifier) on WFDB data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import numpy.typing as npt

from gateway.evaluation.aami import ALL_MITDB, CLASS_NAMES, DS1, DS2, PACED_RECORDS, labels_of
from gateway.evaluation.scoring import MatchResult, beat_annotations, load_record, match_beats
from gateway.signal.beats import BeatBatch, extract_beats
from gateway.signal.constants import MODEL_FS_HZ
from gateway.signal.filters import EcgConditioner
from gateway.signal.qrs import detect_qrs
from gateway.signal.resample import input_to_output_index, resample_offline

START_S = 300.0  # EC57: the first 5 minutes are the detector's learning period, not scored
WINDOW_S = 0.150
K = len(CLASS_NAMES)


@dataclass(frozen=True)
class ChainOutput:
    """What the gateway computes for one recording, at :data:`MODEL_FS_HZ`."""

    x_mv: npt.NDArray[np.float64]  # resampled raw signal
    cond_mv: npt.NDArray[np.float64]  # conditioned signal
    delay_samples: int  # conditioner group delay
    r_detected: npt.NDArray[np.int64]


def run_chain(x_mv: npt.ArrayLike, fs_hz: float) -> ChainOutput:
    """Resample to :data:`MODEL_FS_HZ`, detect R peaks on the raw signal, condition it (offline == streaming)."""
    x = np.asarray(x_mv, dtype=np.float64)
    if fs_hz != MODEL_FS_HZ:
        x = resample_offline(x, fs_hz, MODEL_FS_HZ)
    det = detect_qrs(x, MODEL_FS_HZ)
    cond_filter = EcgConditioner(MODEL_FS_HZ)
    cond = cond_filter.process(x)
    return ChainOutput(x, cond, cond_filter.delay_samples, det)


def beats_for(chain: ChainOutput, r_samples: npt.ArrayLike) -> BeatBatch:
    """Beat windows and RR features at the given R positions (samples at :data:`MODEL_FS_HZ`)."""
    return extract_beats(chain.cond_mv, np.unique(np.asarray(r_samples, dtype=np.int64)), MODEL_FS_HZ, chain.delay_samples)


@dataclass
class RecordResult:
    name: str
    qrs: MatchResult
    classified: bool
    conf_detected: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((K, K), np.int64))
    conf_reference: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((K, K), np.int64))


def confusion(true: npt.ArrayLike, pred: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """K x K counts, rows = reference class, columns = predicted class."""
    m = np.zeros((K, K), np.int64)
    t, p = np.asarray(true, np.int64), np.asarray(pred, np.int64)
    ok = (t >= 0) & (p >= 0)
    np.add.at(m, (t[ok], p[ok]), 1)
    return m


def evaluate_record(directory: str | Path, name: str, classifier: Any | None) -> RecordResult:
    """QRS match and (unless paced or ``classifier`` is None) confusion matrices for one record."""
    x, fs, ann, sym = load_record(directory, name)
    ref, ref_sym = beat_annotations(ann, sym)
    ref360 = np.asarray(input_to_output_index(ref, fs, MODEL_FS_HZ), dtype=np.int64).reshape(-1)
    labels = labels_of(ref_sym)
    chain = run_chain(x, fs)
    qrs = match_beats(ref360, chain.r_detected, MODEL_FS_HZ, WINDOW_S, START_S)
    paced = name in PACED_RECORDS or bool(np.isin(ref_sym, ["/"]).any())
    res = RecordResult(name, qrs, classified=classifier is not None and not paced)
    if not res.classified:
        return res
    start = int(np.ceil(START_S * MODEL_FS_HZ))
    # detected beats: classes of the matched reference beats (scored interval only)
    if chain.r_detected.size and qrs.pairs.size:
        bd = beats_for(chain, chain.r_detected)
        pred = classifier.predict(bd.windows, bd.rr)
        res.conf_detected = confusion(labels[qrs.pairs[:, 0]], pred[qrs.pairs[:, 1]])
    # reference positions (unique positions; annotations are sorted)
    uniq, first = np.unique(ref360, return_index=True)
    br = beats_for(chain, uniq)
    pred_ref = classifier.predict(br.windows, br.rr)
    keep = uniq >= start
    res.conf_reference = confusion(labels[first][keep], pred_ref[keep])
    return res


def class_metrics(conf: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Per-class Se, +P, F1 (fractions, NaN when undefined) and the matrix itself."""
    out: dict[str, Any] = {}
    for k, name in enumerate(CLASS_NAMES):
        tp = int(conf[k, k])
        row, col = int(conf[k].sum()), int(conf[:, k].sum())
        se = tp / row if row else float("nan")
        ppv = tp / col if col else float("nan")
        f1 = 2 * tp / (row + col) if row + col else float("nan")
        out[name] = {"se": se, "ppv": ppv, "f1": f1, "n": row}
    total = int(conf.sum())
    out["accuracy"] = float(np.trace(conf) / total) if total else float("nan")
    out["confusion"] = conf.astype(int).tolist()
    return out


def resolve_records(directory: str | Path, spec: str) -> list[str]:
    """``DS1``, ``DS2``, ``all`` (every record with .hea and .atr in ``directory``) or ``100,101,...``."""
    d = Path(directory)
    key = spec.strip()
    if key.upper() == "DS1":
        return list(DS1)
    if key.upper() == "DS2":
        return list(DS2)
    if key.lower() == "all":
        names = sorted(p.stem for p in d.glob("*.hea") if (d / f"{p.stem}.atr").exists())
        return names or list(ALL_MITDB)
    return [s.strip() for s in key.split(",") if s.strip()]


def evaluate(directory: str | Path, records: Iterable[str], classifier: Any | None, progress: bool = False) -> dict[str, Any]:
    """Evaluate records; returns the JSON-ready report (fractions 0..1)."""
    names = list(records)
    it: Iterable[str] = names
    if progress:
        from tqdm import tqdm

        it = tqdm(names, desc="records", unit="rec")
    results = [evaluate_record(directory, n, classifier) for n in it]
    qrs = MatchResult(0, 0, 0, np.empty((0, 2), np.int64))
    cd = np.zeros((K, K), np.int64)
    cr = np.zeros((K, K), np.int64)
    per_record = []
    for r in results:
        qrs = qrs + r.qrs
        cd += r.conf_detected
        cr += r.conf_reference
        per_record.append({"name": r.name, "tp": r.qrs.tp, "fn": r.qrs.fn, "fp": r.qrs.fp,
                           "classified": r.classified,
                           "detected_confusion": r.conf_detected.astype(int).tolist()})
    return {
        "qrs": {"se": qrs.se, "ppv": qrs.ppv, "tp": qrs.tp, "fn": qrs.fn, "fp": qrs.fp,
                "window_s": WINDOW_S, "start_s": START_S},
        "detected": class_metrics(cd),
        "reference": class_metrics(cr),
        "records": [r.name for r in results],
        "classified_records": [r.name for r in results if r.classified],
        "per_record": per_record,
        "model": getattr(classifier, "model_version", None),
        "model_sha256": getattr(classifier, "sha256", None),
        "classes": list(CLASS_NAMES),
    }


def _pct(v: float) -> str:
    return "   n/a" if v != v else f"{100 * v:6.2f}"


def format_report(report: dict[str, Any]) -> str:
    """Human-readable EC57-style report."""
    q = report["qrs"]
    lines = [
        f"model {report['model']}  records: {' '.join(report['records'])}",
        "",
        f"QRS detection ({len(report['records'])} records; match window {1000 * q['window_s']:.0f} ms; "
        f"first {q['start_s'] / 60:.0f} minutes of each record excluded, as EC57 does)",
        f"  TP {q['tp']}  FN {q['fn']}  FP {q['fp']}  Se {_pct(q['se'])}%  +P {_pct(q['ppv'])}%",
    ]
    paced = [r for r in report["records"] if r not in report["classified_records"]]
    for key, title in (("detected", "beats found by the gateway's own detector (matched to reference)"),
                       ("reference", "reference beat positions (for comparison with the literature)")):
        m = report[key]
        lines += ["", f"Beat classes on {title}; classification excludes paced records"
                  f"{' (' + ' '.join(paced) + ')' if paced else ''} and the first 5 minutes",
                  "  rows = reference, columns = predicted",
                  "        " + "".join(f"{c:>8}" for c in CLASS_NAMES)]
        for k, c in enumerate(CLASS_NAMES):
            lines.append(f"  {c:>5} " + "".join(f"{v:8d}" for v in m["confusion"][k]))
        lines.append(f"  {'class':>5} {'n':>7} {'Se %':>7} {'+P %':>7} {'F1 %':>7}")
        for c in CLASS_NAMES:
            lines.append(f"  {c:>5} {m[c]['n']:7d} {_pct(m[c]['se']):>7} {_pct(m[c]['ppv']):>7} {_pct(m[c]['f1']):>7}")
        lines.append(f"  accuracy {_pct(m['accuracy'])}%")
    return "\n".join(lines)
