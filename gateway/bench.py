"""``emon bench signal``: per-device chain throughput and QRS accuracy against wfdb XQRS and NeuroKit2.

Figures only, never assertions. Throughput is measured on one core: each stage of
:data:`STAGES` processes the output of the previous one in device-sized frames, and the
figure reported is input (device) samples/s and 360 Hz samples/s, i.e. how many 360 Hz
patients one core carries in real time. Accuracy is scored by
:func:`gateway.evaluation.scoring.match_beats` (channel 0, 150 ms, first 5 minutes excluded)
over MIT-BIH (all 48 records, 5 with ``--quick``) and per noise level on the noise stress
test records 118e*/119e*.

Options after ``emon bench signal`` (``rest``): ``--mitdb DIR``, ``--nstdb DIR``,
``--records 100,101``, ``--frame-s 1.0``, ``--no-baselines``, ``--seconds 600``;
``--latency`` prints only the QRS release lag and the VT onset -> V-run event figures
(:mod:`gateway.bench_latency`; ``--latency-seeds 20``, ``--latency-seconds 120``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.signal.constants import MODEL_FS_HZ
from gateway.signal.qrs import StreamingQrsDetector, detect_qrs
from gateway.signal.resample import StreamingResampler, resample_offline

_REPO = Path(__file__).resolve().parent.parent
_DEFAULT_MITDB = Path(os.environ.get("EMON_MITDB_DIR", _REPO.parent / "shared" / "data" / "mitdb"))
_DEFAULT_NSTDB = Path(os.environ.get("EMON_NSTDB_DIR", _REPO.parent / "shared" / "data" / "nstdb"))
_QUICK_RECORDS = ["100", "105", "108", "203", "208"]
_NST_LEVELS = ["24", "18", "12", "06", "00", "_6"]


@dataclass(frozen=True)
class Stage:
    """One per-device processing stage: ``make(fs_in_hz)`` returns ``process(chunk) -> output``.

    Stages run in list order, each fed the previous stage's output; a stage's output must be
    what the next stage takes (the resampler turns device samples into 360 Hz mV samples).
    """

    name: str
    make: Callable[[float], Callable[[np.ndarray], Any]]


def _resample_stage(fs_in_hz: float) -> Callable[[np.ndarray], Any]:
    return StreamingResampler(fs_in_hz, MODEL_FS_HZ).process


def _qrs_stage(fs_in_hz: float) -> Callable[[np.ndarray], Any]:
    return StreamingQrsDetector(MODEL_FS_HZ).process


#: The per-device chain, in order. Filter and classifier stages are appended here by their owners.
STAGES: list[Stage] = [
    Stage("resample", _resample_stage),
    Stage("qrs", _qrs_stage),
]


def _parse_rest(rest: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="emon bench signal", add_help=False)
    p.add_argument("--mitdb", type=Path, default=_DEFAULT_MITDB)
    p.add_argument("--nstdb", type=Path, default=_DEFAULT_NSTDB)
    p.add_argument("--records", default=None, help="comma-separated MIT-BIH record names")
    p.add_argument("--frame-s", type=float, default=1.0, help="device frame length for throughput")
    p.add_argument("--seconds", type=float, default=None, help="signal length for throughput")
    p.add_argument("--no-baselines", action="store_true", help="skip wfdb XQRS and NeuroKit2")
    # the dispatcher's own options land here too when given after the benchmark name
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", dest="json_path", default=None)
    p.add_argument("--plot", default=None)
    from gateway.bench_latency import add_options

    add_options(p)
    return p.parse_args([a for a in (rest or []) if a != "--"])


def _progress(iterable: Any, desc: str, total: int | None = None) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the evaluate extra
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _throughput_signal(mitdb: Path, seconds: float) -> np.ndarray:
    """A real ECG at 360 Hz (record 100, repeated to length) or a synthetic one without data."""
    n = int(seconds * MODEL_FS_HZ)
    if (mitdb / "100.hea").exists():
        from gateway.evaluation.scoring import load_record

        x = load_record(mitdb, "100")[0]
    else:
        t = np.arange(n) / MODEL_FS_HZ
        x = 1.2 * np.exp(-0.5 * ((t % 0.8) - 0.4) ** 2 / 0.01**2) + 0.05 * np.sin(2 * np.pi * 0.3 * t)
    reps = int(np.ceil(n / x.size))
    return np.tile(x, reps)[:n]


def measure_chain(x_360: np.ndarray, fs_in_hz: float, frame_s: float, stages: list[Stage]) -> dict[str, Any]:
    """Samples/s per stage and for the whole chain (process CPU time), one device, ``frame_s`` frames."""
    from gateway.signal.warmup import warm_kernels

    warm_kernels()  # numba's one-off cache load (or compilation) is not per-sample cost
    x = x_360 if fs_in_hz == MODEL_FS_HZ else resample_offline(x_360, MODEL_FS_HZ, fs_in_hz)
    frame = max(1, int(round(frame_s * fs_in_hz)))
    procs = [s.make(fs_in_hz) for s in stages]
    spent = [0.0] * len(stages)
    n_out = 0
    for i in range(0, x.size, frame):
        data: Any = x[i : i + frame]
        for k, proc in enumerate(procs):
            t0 = time.process_time()  # CPU time: robust to other processes on the box
            data = proc(data)
            spent[k] += time.process_time() - t0
            if k == 0:
                n_out += len(data)
    total = sum(spent)
    return {
        "fs_in_hz": fs_in_hz,
        "frame_s": frame_s,
        "device_samples": int(x.size),
        "samples_per_s": x.size / total,
        "samples_360_per_s": n_out / total,
        "patients_360hz_per_core": n_out / total / MODEL_FS_HZ,
        "stage_seconds": {s.name: t for s, t in zip(stages, spent)},
    }


# -- accuracy ---------------------------------------------------------------------------------


def _ours(x: np.ndarray, fs: float) -> np.ndarray:
    if fs != MODEL_FS_HZ:
        r = StreamingResampler(fs)
        det = detect_qrs(np.concatenate([r.process(x), r.flush()]), MODEL_FS_HZ)
        return np.asarray(r.to_input_index(det), dtype=np.int64)
    return detect_qrs(x, fs)


def _xqrs(x: np.ndarray, fs: float) -> np.ndarray:
    import logging

    from wfdb import processing

    logging.getLogger("wfdb").setLevel(logging.ERROR)
    xq = processing.XQRS(sig=np.nan_to_num(x), fs=fs)
    xq.detect(verbose=False)
    return np.asarray(xq.qrs_inds, dtype=np.int64)


def _neurokit(x: np.ndarray, fs: float) -> np.ndarray:
    import warnings

    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = nk.ecg_clean(np.nan_to_num(x), sampling_rate=int(fs))
        _, info = nk.ecg_peaks(clean, sampling_rate=int(fs))
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


DETECTORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "ours": _ours,
    "wfdb XQRS": _xqrs,
    "NeuroKit2": _neurokit,
}


def score_detectors(
    directory: Path, records: list[str], detectors: dict[str, Callable[[np.ndarray, float], np.ndarray]]
) -> dict[str, dict[str, Any]]:
    """Pooled TP/FN/FP (all beats, and VF episodes excluded) and samples/s per detector."""
    from gateway.evaluation.scoring import beat_annotations, load_record, match_beats, vf_intervals

    out: dict[str, dict[str, Any]] = {
        name: {"tp": 0, "fn": 0, "fp": 0, "tp_novf": 0, "fn_novf": 0, "fp_novf": 0, "seconds": 0.0,
               "samples": 0, "per_record": {}}
        for name in detectors
    }
    for rec in _progress(records, f"QRS {directory.name}"):
        x, fs, ann, sym = load_record(directory, rec)
        ref, _ = beat_annotations(ann, sym)
        vf = vf_intervals(ann, sym)
        for name, fn in detectors.items():
            t0 = time.perf_counter()
            det = fn(x, fs)
            dt = time.perf_counter() - t0
            m = match_beats(ref, det, fs)
            mv = match_beats(ref, det, fs, exclude=vf)
            o = out[name]
            o["tp"] += m.tp
            o["fn"] += m.fn
            o["fp"] += m.fp
            o["tp_novf"] += mv.tp
            o["fn_novf"] += mv.fn
            o["fp_novf"] += mv.fp
            o["seconds"] += dt
            o["samples"] += int(x.size)
            o["per_record"][rec] = {"tp": m.tp, "fn": m.fn, "fp": m.fp}
    for o in out.values():
        o["se"] = _frac(o["tp"], o["fn"])
        o["ppv"] = _frac(o["tp"], o["fp"])
        o["se_novf"] = _frac(o["tp_novf"], o["fn_novf"])
        o["ppv_novf"] = _frac(o["tp_novf"], o["fp_novf"])
        o["samples_per_s"] = o["samples"] / o["seconds"] if o["seconds"] else float("nan")
    return out


def _frac(tp: int, other: int) -> float:
    return tp / (tp + other) if tp + other else float("nan")


def score_nstdb(
    directory: Path, quick: bool, detectors: dict[str, Callable[[np.ndarray, float], np.ndarray]] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per detector, per SNR level (dB): TP/FN/FP, Se, +P on 118e*/119e* pooled."""
    from gateway.evaluation.scoring import beat_annotations, load_record, match_beats

    detectors = detectors or {"ours": _ours}
    levels = _NST_LEVELS[::2] if quick else _NST_LEVELS
    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in detectors}
    jobs = [(lvl, f"{base}e{lvl}") for lvl in levels for base in ("118", "119")]
    for lvl, rec in _progress(jobs, "QRS nstdb"):
        if not (directory / f"{rec}.hea").exists():
            continue
        x, fs, ann, sym = load_record(directory, rec)
        ref, _ = beat_annotations(ann, sym)
        for name, fn in detectors.items():
            m = match_beats(ref, fn(x, fs), fs)
            o = out[name].setdefault(lvl.replace("_", "-"), {"tp": 0, "fn": 0, "fp": 0})
            o["tp"] += m.tp
            o["fn"] += m.fn
            o["fp"] += m.fp
    for per_level in out.values():
        for o in per_level.values():
            o["se"] = _frac(o["tp"], o["fn"])
            o["ppv"] = _frac(o["tp"], o["fp"])
    return out


# -- entry point ------------------------------------------------------------------------------


def bench_signal(args: argparse.Namespace) -> int:
    """Print chain throughput and QRS accuracy; write JSON/PNG when asked. Returns 0."""
    opts = _parse_rest(getattr(args, "rest", None))
    quick = bool(getattr(args, "quick", False)) or opts.quick
    json_path = getattr(args, "json_path", None) or opts.json_path
    plot_path = getattr(args, "plot", None) or opts.plot
    seconds = opts.seconds or (120.0 if quick else 1800.0)
    if opts.latency:
        from gateway.bench_latency import print_latency

        lat = print_latency(opts.mitdb, seeds=opts.latency_seeds, seconds=opts.latency_seconds,
                            records=opts.records.split(",") if opts.records else None)
        if opts.latency_vruns:
            from gateway.bench_latency import print_v_runs

            lat["v_runs"] = print_v_runs(opts.mitdb, opts.latency_vruns)
        if json_path:
            Path(json_path).write_text(json.dumps(lat, indent=2, default=float))
        return 0
    figures: dict[str, Any] = {"stages": [s.name for s in STAGES]}

    x = _throughput_signal(opts.mitdb, seconds)
    print(f"== Throughput, one core, {seconds:.0f} s of ECG per device rate, {opts.frame_s:g} s frames")
    print(f"   stages: {' -> '.join(s.name for s in STAGES)}")
    rows = []
    for fs_in in (250.0, 360.0, 500.0):
        r = measure_chain(x, fs_in, opts.frame_s, STAGES)
        rows.append(r)
        parts = ", ".join(f"{k} {1e3 * v / (r['device_samples'] / fs_in):.3f} ms/s" for k, v in r["stage_seconds"].items())
        print(
            f"   {fs_in:5.0f} Hz in: {r['samples_per_s']:12,.0f} device samples/s  "
            f"{r['samples_360_per_s']:12,.0f} samples/s at 360 Hz  "
            f"= {r['patients_360hz_per_core']:7,.0f} patients/core   ({parts} of signal)"
        )
    figures["throughput"] = rows

    from gateway.bench_classifier import bench_classifier

    print("\n== Conditioning, beat features and classification, one core")
    clf = bench_classifier(quick=quick)
    figures["classifier"] = clf
    # Whole per-device chain at 360 Hz: resample+QRS (measured above) + conditioner + beat
    # features + classification at batch 64 for ~1.2 beats per second of ECG.
    at_360 = next(r for r in rows if r["fs_in_hz"] == MODEL_FS_HZ)
    cpu_per_ecg_s = (
        MODEL_FS_HZ / at_360["samples_360_per_s"]
        + MODEL_FS_HZ / clf["conditioner_samples_per_s"]
        + MODEL_FS_HZ / clf["beat_features_samples_per_s"]
        + 1.2 / clf["beats_per_s"][64]
    )
    figures["whole_chain"] = {
        "cpu_s_per_ecg_s": cpu_per_ecg_s,
        "samples_per_s": MODEL_FS_HZ / cpu_per_ecg_s,
        "patients_360hz_per_core": 1.0 / cpu_per_ecg_s,
    }
    print(
        f"   whole chain (resample+QRS+conditioner+features+classifier@64, 1.2 beats/s): "
        f"{MODEL_FS_HZ / cpu_per_ecg_s:,.0f} samples/s = {1.0 / cpu_per_ecg_s:,.0f} patients at 360 Hz per core"
    )

    dets = {"ours": _ours} if opts.no_baselines else dict(DETECTORS)
    if "NeuroKit2" in dets:
        try:
            import neurokit2  # noqa: F401
        except ImportError:
            print("   (NeuroKit2 not installed: skipped; pip install neurokit2)")
            dets.pop("NeuroKit2")
    if (opts.mitdb / "100.hea").exists():
        recs = opts.records.split(",") if opts.records else (
            _QUICK_RECORDS if quick else [r.strip() for r in (opts.mitdb / "RECORDS").read_text().split() if r.strip()]
        )
        acc = score_detectors(opts.mitdb, recs, dets)
        figures["mitdb"] = {"records": recs, "detectors": acc}
        print(f"\n== QRS detection on MIT-BIH, {len(recs)} records, channel 0, 150 ms window, "
              "first 5 min excluded (EC57)")
        print(f"   {'detector':<11} {'TP':>7} {'FN':>5} {'FP':>5} {'Se %':>7} {'+P %':>7}   "
              f"{'Se % *':>7} {'+P % *':>7}  {'samples/s':>12}")
        for name, o in acc.items():
            print(f"   {name:<11} {o['tp']:>7} {o['fn']:>5} {o['fp']:>5} {100 * o['se']:7.2f} {100 * o['ppv']:7.2f}   "
                  f"{100 * o['se_novf']:7.2f} {100 * o['ppv_novf']:7.2f}  {o['samples_per_s']:12,.0f}")
        print("   * ventricular flutter/fibrillation episodes ([ .. ]) excluded, as EC57 does for QRS detection")
    else:
        print(f"\n(MIT-BIH not found at {opts.mitdb}: accuracy skipped)")

    if (opts.nstdb / "118e00.hea").exists():
        nst = score_nstdb(opts.nstdb, quick, dets)
        figures["nstdb"] = nst
        print("\n== Noise stress test: 118e*, 119e* pooled per SNR, first 5 min excluded; Se % / +P %")
        names = list(nst)
        print(f"   {'SNR dB':>6} " + " ".join(f"{n:>17}" for n in names) + f"   {'ours TP/FN/FP':>16}")
        for lvl, o in nst["ours"].items():
            cells = " ".join(f"{100 * nst[n][lvl]['se']:7.2f} / {100 * nst[n][lvl]['ppv']:6.2f}" for n in names)
            print(f"   {lvl:>6} {cells}   {o['tp']:>6}/{o['fn']}/{o['fp']}")

    det = StreamingQrsDetector(MODEL_FS_HZ)
    figures["qrs_delay"] = {"samples": det.delay_samples, "ms": det.delay_ms}
    print(f"\nQRS reporting delay: at most {det.delay_samples} samples at 360 Hz = {det.delay_ms:.0f} ms "
          "(each R peak is released as soon as no earlier one can be found: `--latency` measures it)")

    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2, default=float))
    if plot_path and "nstdb" in figures:
        _plot_nstdb(figures["nstdb"]["ours"], Path(plot_path))
    return 0


def _plot_nstdb(nst: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(nst)
    pos = list(range(len(levels)))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(pos, [100 * nst[k]["se"] for k in levels], "o-", label="Se")
    ax.plot(pos, [100 * nst[k]["ppv"] for k in levels], "s-", label="+P")
    ax.set_xticks(pos, levels)
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("%")
    ax.set_title("QRS detection, MIT-BIH noise stress test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
