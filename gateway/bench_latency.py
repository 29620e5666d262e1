"""``emon bench signal --latency``: the edge's share of VT onset -> V-run event, in signal time.

Figures only, never assertions; offline and in-process (no broker, no services):

* **QRS release lag** (:func:`release_lags`): the detector fed one sample at a time; a peak's
  lag is the index of the last sample fed when it was returned minus its R sample. Pooled
  over the first ``seconds`` of MIT-BIH records (default 100, 119, 201, 203, 208, 2 min).
* **VT onset -> V-run event** (:func:`vt_onset_latency`): a synthetic patient
  (:mod:`simulators.synthetic`, the load test's default ``vt@20:k=8,rate=180`` at 70 bpm,
  360 Hz) replayed through :class:`gateway.service.GatewayPipeline` in device frames
  (1 s), with a tick (classification) after every frame. The time is counted in samples fed:
  from the first V beat's R peak (the scripted onset) to the end of the frame after which
  the pipeline emitted the first ``v_run`` revision with >= ``run_confirm_beats`` beats.
  Split into onset -> the run's 5th R peak, 5th -> 6th R (the 5th beat's features need the
  next RR), the detector's release lag of the 5th and 6th beats (one-sample feed of the same
  signal), and the wait for the end of the frame that carries the release (of the 5th beat
  when the revision went out on its provisional class, see :mod:`gateway.rhythm`).
* **V runs on MIT-BIH** (:func:`count_v_runs`, ``--latency-vruns DS2``): records replayed
  through the pipeline with the provisional 5th beat off and on; events of >= 5 beats
  against the reference runs.

Units: seconds of signal unless the name says samples.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.signal.constants import MODEL_FS_HZ
from gateway.signal.qrs import QrsConfig, StreamingQrsDetector

LAG_RECORDS = ("100", "119", "201", "203", "208")
SITE, DEVICE = "site-00", "dev-00000"
T0_MS = 1_700_000_000_000


def release_lags(x_mv: npt.ArrayLike, fs_hz: float = MODEL_FS_HZ, config: QrsConfig | None = None,
                 chunk: int = 1) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """R-peak indices and their release lags (samples): the detector fed ``chunk`` samples a call.

    The lag of a peak at ``r`` returned by the call that brought the stream to ``samples_in``
    samples is ``samples_in - 1 - r`` (0: released with its own sample). Peaks only returned
    by :meth:`StreamingQrsDetector.flush` are left out.
    """
    x = np.asarray(x_mv, dtype=np.float64).ravel()
    det = StreamingQrsDetector(fs_hz, config)
    peaks: list[int] = []
    lags: list[int] = []
    for i in range(0, x.size, chunk):
        for d in det.process(x[i : i + chunk]):
            peaks.append(d.sample_index)
            lags.append(det.samples_in - 1 - d.sample_index)
    return np.asarray(peaks, dtype=np.int64), np.asarray(lags, dtype=np.int64)


def mitdb_release_lags(mitdb: Path, records: Iterable[str] = LAG_RECORDS, seconds: float = 120.0,
                       config: QrsConfig | None = None) -> dict[str, Any]:
    """Release lag (s) pooled and per record over the first ``seconds`` of each record (1-sample feed)."""
    from gateway.evaluation.scoring import load_record

    per: dict[str, Any] = {}
    pooled: list[npt.NDArray[np.int64]] = []
    fs = MODEL_FS_HZ
    for rec in records:
        x, fs, _, _ = load_record(mitdb, rec)
        _, lags = release_lags(x[: int(seconds * fs)], fs, config)
        pooled.append(lags)
        per[rec] = _stats(lags / fs)
    allp = np.concatenate(pooled) if pooled else np.empty(0)
    return {"records": list(records), "seconds": seconds, "pooled": _stats(allp / fs), "per_record": per,
            "bound_s": StreamingQrsDetector(fs, config).delay_samples / fs}


def _stats(v: npt.ArrayLike) -> dict[str, float]:
    a = np.asarray(v, dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "max": float("nan"), "min": float("nan")}
    return {"n": int(a.size), "p50": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "max": float(a.max()), "min": float(a.min())}


@dataclass(frozen=True)
class VtLatency:
    """One scripted VT through the gateway pipeline (seconds of signal, device rate ``fs_hz``)."""

    seed: int
    onset_phase: float  # onset's position within its device frame (0: the frame's first sample)
    onset_to_5th_r: float  # first V R peak -> R peak of the run's 5th beat
    rr_5_6: float  # the run's 5th beat -> the next R peak (its next-RR feature)
    lag5: float  # detector release lag of the run's 5th beat (one-sample feed)
    lag6: float  # ... of the beat after it
    frame_wait: float  # the releasing beat (the 5th when provisional, else the 6th) out of the pipeline
    # (end of its frame) - (its R + its release lag)
    total: float | None  # onset -> end of the frame after which the >= 5-beat V-run revision was out
    beats: int  # beat_count of that revision
    first_v_called: int  # which scripted V beat the event's run starts at (1: the first)
    provisional: bool  # the revision was sent on the 5th beat's provisional class (rhythm.py)


def _pipeline(tmp: Path, classifier: Any) -> Any:
    from emon_core.registry import DeviceRegistry
    from gateway.outbox import Outbox
    from gateway.service import GatewayPipeline
    from gateway.settings import load_gateway_settings

    settings = load_gateway_settings(None, simulated=1)
    return GatewayPipeline(settings, DeviceRegistry.simulated(1), classifier, Outbox(tmp / "outbox.db"))


def replay_frames(pipeline: Any, samples_adu: npt.ArrayLike, fs_hz: float, gain: float, baseline: float,
                  frame_s: float = 1.0, device: str = DEVICE, kinds: tuple[str, ...] | None = None
                  ) -> Iterable[tuple[int, list[Any]]]:
    """Feed ``samples_adu`` to ``pipeline`` in ``frame_s`` frames, a tick after each; yields
    ``(samples fed, messages committed by that frame and tick)`` (decoded edge messages; only
    outbox entries of ``kinds``, e.g. ``("event",)``, when given)."""
    from emon_core.contracts import EcgFrame, decode_edge

    x = np.asarray(samples_adu, dtype=np.float64)
    n = max(1, int(round(frame_s * fs_hz)))
    last_id = 0
    topic = f"ecg/{SITE}/{device}/frames"
    for seq, i in enumerate(range(0, x.size, n)):
        chunk = x[i : i + n]
        t_ms = T0_MS + int(round(i * 1000.0 / fs_hz))
        frame = EcgFrame(device_id=device, seq=seq, device_time_ms=t_ms, fs_hz=fs_hz, gain_adu_per_mv=gain,
                         baseline_adu=baseline, first_sample_index=i, samples=chunk.tolist())
        pipeline.handle(topic, frame.encode(), t_ms + int(frame_s * 1000), now_mono=float(seq))
        pipeline.tick(now_mono=float(seq))
        entries = pipeline.outbox.peek(last_id, 100_000)
        if entries:
            last_id = entries[-1].id
        yield i + chunk.size, [decode_edge(e.payload) for e in entries if kinds is None or e.kind in kinds]


def vt_onset_latency(seed: int, classifier: Any, fs_hz: float = 360.0, hr_bpm: float = 70.0, vt_at_s: float = 20.0,
                     k: int = 8, rate_bpm: float = 180.0, frame_s: float = 1.0, confirm_beats: int = 5) -> VtLatency:
    """Replay one synthetic VT patient through the gateway pipeline; see the module docstring."""
    from gateway.signal.units import adu_to_mv
    from simulators.scenario import parse_scenario
    from simulators.synthetic import SyntheticConfig, generate

    ecg = generate(vt_at_s + 12.0, SyntheticConfig(fs_hz=fs_hz, hr_bpm=hr_bpm, seed=seed),
                   parse_scenario(f"vt@{vt_at_s:g}:k={k},rate={rate_bpm:g}"))
    v = np.asarray([r for r, c in zip(ecg.beat_indices, ecg.classes) if c == "V"], dtype=np.int64)
    onset = int(v[0])
    # intrinsic release lags of the V beats (one-sample feed of the pipeline's 360 Hz input)
    from gateway.signal.resample import StreamingResampler

    res = StreamingResampler(fs_hz, MODEL_FS_HZ)
    y = res.process(adu_to_mv(ecg.samples, ecg.gain_adu_per_mv, ecg.baseline_adu))
    peaks, lags = release_lags(y, MODEL_FS_HZ)
    dev_peaks = np.asarray(res.to_input_index(peaks), dtype=np.int64)

    def lag_of(r: int) -> float:
        j = int(np.argmin(np.abs(dev_peaks - r))) if dev_peaks.size else -1
        if j < 0 or abs(int(dev_peaks[j]) - r) > 0.15 * fs_hz:
            return float("nan")
        return float(lags[j]) / MODEL_FS_HZ

    released_at: dict[int, int] = {}  # device R index -> samples fed when the pipeline's detector released it
    total: float | None = None
    beats = 0
    run_onset = onset
    provisional = False
    with tempfile.TemporaryDirectory() as tmp:
        p = _pipeline(Path(tmp), classifier)
        for fed, msgs in replay_frames(p, ecg.samples, fs_hz, ecg.gain_adu_per_mv, ecg.baseline_adu, frame_s):
            s = p.sessions.get(DEVICE)
            if s is not None:
                for r in _detected_so_far(s):
                    released_at.setdefault(int(s.to_device_index(r)), fed)
            for m in msgs:
                if (total is None and m.type == "rhythm_event" and m.kind.value == "v_run"
                        and m.beat_count >= confirm_beats and m.onset_sample_index >= onset - int(0.5 * fs_hz)):
                    total = (fed - onset) / fs_hz
                    beats = m.beat_count
                    run_onset = int(m.onset_sample_index)
                    provisional = "provisional" in m.detail
            if total is not None:
                break
        p.outbox.close()
    # the run's 5th beat and the beat after it (the first V beat may not be called V)
    j0 = int(np.argmin(np.abs(v - run_onset)))
    fifth = int(v[min(j0 + confirm_beats - 1, v.size - 1)])
    after = ecg.beat_indices[ecg.beat_indices > fifth]
    sixth = int(after[0]) if after.size else fifth
    trigger = fifth if provisional else sixth
    rel = next((t for d, t in released_at.items() if abs(d - trigger) <= 0.15 * fs_hz), None)
    lag_trigger = lag_of(trigger)
    return VtLatency(
        seed=seed, onset_phase=(onset % max(1, int(round(frame_s * fs_hz)))) / fs_hz,
        onset_to_5th_r=(fifth - onset) / fs_hz, rr_5_6=(sixth - fifth) / fs_hz,
        lag5=lag_of(fifth), lag6=lag_of(sixth),
        frame_wait=(rel / fs_hz - trigger / fs_hz - lag_trigger) if rel is not None else float("nan"),
        total=total, beats=beats, first_v_called=j0 + 1, provisional=provisional,
    )


def count_v_runs(mitdb: Path, records: Iterable[str], classifier: Any, provisional: bool,
                 min_beats: int = 5, frame_s: float = 1.0) -> dict[str, Any]:
    """V-run events reaching ``min_beats`` beats (in any revision) against the reference runs.

    Each record (lead 0, native rate, ADC units) is replayed through a fresh
    :class:`GatewayPipeline` in ``frame_s`` frames with ``rhythm.run_confirm_provisional`` =
    ``provisional``. The whole record counts (no learning period excluded). An event matches a
    reference run of >= ``min_beats`` V beats when their spans overlap (0.15 s tolerance);
    events matching no such run are counted against reference runs of >= 3 V beats too.
    ``latency_s``: first >= ``min_beats`` revision (end of its frame) - reference run onset.
    """
    from emon_core.registry import DeviceRegistry
    from gateway.outbox import Outbox
    from gateway.service import GatewayPipeline
    from gateway.settings import load_gateway_settings
    from simulators.source import derive_run_events
    from simulators.wfdb_source import load_record as load_adc

    settings = load_gateway_settings(None, simulated=1, rhythm={"run_confirm_provisional": provisional})
    out: dict[str, Any] = {"provisional": provisional, "min_beats": min_beats, "per_record": {}}
    tot = {"reference": 0, "reference_3": 0, "events": 0, "matched": 0, "unmatched": 0, "in_3_to_4_run": 0,
           "missed": 0, "provisional_sent": 0, "taken_back": 0}
    lat: list[float] = []
    for rec in records:
        r = load_adc(mitdb, rec)
        fs = r.fs_hz
        tol = int(0.15 * fs)
        runs3 = [e for e in derive_run_events(r.beat_indices, list(r.beat_classes), fs, min_run=3)
                 if e.kind.value == "v_run"]
        ref = [(e.onset_index, e.end_index) for e in runs3 if (e.beat_count or 0) >= min_beats]
        events: dict[str, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            p = GatewayPipeline(settings, DeviceRegistry.simulated(1), classifier, Outbox(Path(tmp) / "o.db"))
            for fed, msgs in replay_frames(p, r.samples, fs, r.gain_adu_per_mv, r.baseline_adu, frame_s,
                                           kinds=("event",)):
                for m in msgs:
                    if m.type != "rhythm_event" or m.kind.value != "v_run":
                        continue
                    e = events.setdefault(m.id, {"onset": m.onset_sample_index, "max": 0, "first_at": None,
                                                 "provisional": False, "last_beats": 0})
                    e["max"] = max(e["max"], m.beat_count)
                    e["last_beats"] = m.beat_count  # the last revision (the final one once the run ended)
                    e["end"] = m.onset_sample_index + int(round((m.end_time_ms - m.onset_time_ms) * fs / 1000.0))
                    if m.beat_count >= min_beats and e["first_at"] is None:
                        e["first_at"] = fed
                    if "provisional" in m.detail:
                        e["provisional"] = True
            p.close_all()
            p.outbox.close()
        big = [e for e in events.values() if e["max"] >= min_beats]
        hit_ref: set[int] = set()
        rec_out = {"reference": len(ref), "events": len(big), "matched": 0, "unmatched": 0, "in_3_to_4_run": 0,
                   "taken_back": 0, "provisional_sent": 0}
        for e in big:
            a, b = e["onset"], max(e["onset"], e.get("end", e["onset"]))
            j = next((k for k, (ra, rb) in enumerate(ref) if a <= rb + tol and b >= ra - tol), None)
            if j is not None:
                rec_out["matched"] += 1
                if j not in hit_ref:
                    lat.append((e["first_at"] - ref[j][0]) / fs)
                hit_ref.add(j)
            else:
                rec_out["unmatched"] += 1
                if any(a <= rb + tol and b >= ra - tol for ra, rb in ((x.onset_index, x.end_index) for x in runs3)):
                    rec_out["in_3_to_4_run"] += 1
            rec_out["provisional_sent"] += int(e["provisional"])
            if e["provisional"] and e["last_beats"] < min_beats:
                rec_out["taken_back"] += 1
        rec_out["missed"] = len(ref) - len(hit_ref)
        out["per_record"][rec] = rec_out
        for k in ("events", "matched", "unmatched", "in_3_to_4_run", "missed", "provisional_sent", "taken_back"):
            tot[k] += rec_out[k]
        tot["reference"] += len(ref)
        tot["reference_3"] += len(runs3)
    out["total"] = tot
    out["latency_s"] = _stats(lat)
    return out


def _detected_so_far(session: Any) -> list[int]:
    """R peaks (360 Hz pipeline samples) the session's detector has released so far."""
    return list(getattr(session.detector, "_bench_released", ()))


def _record_releases(det: StreamingQrsDetector) -> None:
    """Make ``det`` remember the R peaks it returns (for :func:`_detected_so_far`)."""
    released: list[int] = []
    orig_process, orig_flush = det.process, det.flush

    def process(chunk: npt.ArrayLike) -> list[Any]:
        out = orig_process(chunk)
        released.extend(d.sample_index for d in out)
        return out

    def flush() -> list[Any]:
        out = orig_flush()
        released.extend(d.sample_index for d in out)
        return out

    det.process = process  # type: ignore[method-assign]
    det.flush = flush  # type: ignore[method-assign]
    det._bench_released = released  # type: ignore[attr-defined]


def vt_latency_figures(seeds: Iterable[int], classifier: Any, **kw: Any) -> dict[str, Any]:
    """:func:`vt_onset_latency` over seeds, with p50/p95/max per component.

    Even seeds script the VT at 20 s, like the load test (frames from sample 0, so the onset is
    a frame's first sample unless the last sinus beat pushes it later); odd seed ``s`` at
    ``20 + 0.1 * ((s // 2) % 10)`` s, so the onset falls at every tenth of its 1 s frame.
    ``aligned`` summarises the runs whose onset is a frame's first sample."""
    import gateway.device_session as ds

    orig = ds.StreamingQrsDetector

    class _Recording(orig):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            _record_releases(self)

    ds.StreamingQrsDetector = _Recording  # type: ignore[misc]
    try:
        runs = [vt_onset_latency(s, classifier, vt_at_s=20.0 + (0.1 * ((s // 2) % 10) if s % 2 else 0.0), **kw) for s in seeds]
    finally:
        ds.StreamingQrsDetector = orig  # type: ignore[misc]
    fields = ("onset_to_5th_r", "rr_5_6", "lag5", "lag6", "frame_wait", "total")
    summary = {f: _stats([getattr(r, f) for r in runs if getattr(r, f) is not None]) for f in fields}
    aligned = [r.total for r in runs if r.total is not None and r.onset_phase == 0.0]
    return {"runs": [r.__dict__ for r in runs], "summary": summary, "aligned": _stats(aligned),
            "missed": [r.seed for r in runs if r.total is None]}


def print_latency(mitdb: Path, seeds: int = 20, seconds: float = 120.0, records: Iterable[str] | None = None,
                  config: QrsConfig | None = None) -> dict[str, Any]:
    """Print (and return) the release-lag and VT-latency figures."""
    from gateway.service import load_classifier
    from gateway.settings import load_gateway_settings

    out: dict[str, Any] = {}
    bound = StreamingQrsDetector(MODEL_FS_HZ, config).delay_samples
    if (mitdb / "100.hea").exists():
        lag = mitdb_release_lags(mitdb, records or LAG_RECORDS, seconds, config)
        out["release_lag"] = lag
        print(f"== QRS release lag, 1-sample chunks, first {seconds:g} s of {', '.join(lag['records'])} (s)")
        print(f"   {'record':>8} {'beats':>6} {'p50':>7} {'p95':>7} {'max':>7}")
        for rec, st in [*lag["per_record"].items(), ("pooled", lag["pooled"])]:
            print(f"   {rec:>8} {st['n']:>6} {st['p50']:7.3f} {st['p95']:7.3f} {st['max']:7.3f}")
        print(f"   bound (delay_samples): {bound} samples = {bound / MODEL_FS_HZ:.3f} s")
    else:
        print(f"(MIT-BIH not found at {mitdb}: release lag skipped)")
    clf = load_classifier(load_gateway_settings(None, simulated=1))
    vt = vt_latency_figures(range(seeds), clf)
    out["vt"] = vt
    print(f"\n== Scripted VT (vt@20 and vt@20.1..20.9:k=8,rate=180, 70 bpm, 360 Hz, 1 s frames) -> first v_run revision with >= 5 beats,"
          f" gateway pipeline in-process, {seeds} seeds, model {clf.model_version} (s of signal)")
    print(f"   {'component':<34} {'p50':>7} {'p95':>7} {'max':>7}")
    names = {"onset_to_5th_r": "onset -> run's 5th R peak", "rr_5_6": "5th -> 6th R (next-RR feature)",
             "lag5": "release lag, 5th beat (1-sample)", "lag6": "release lag, 6th beat (1-sample)",
             "frame_wait": "release -> end of its frame", "total": "onset -> V-run event (>= 5 beats)"}
    for key, label in names.items():
        st = vt["summary"][key]
        print(f"   {label:<34} {st['p50']:7.3f} {st['p95']:7.3f} {st['max']:7.3f}")
    st = vt["aligned"]
    print(f"   {'... onset at a frame start (' + str(st['n']) + ' runs)':<34} {st['p50']:7.3f} {st['p95']:7.3f} {st['max']:7.3f}")
    n_prov = sum(1 for r in vt["runs"] if r["provisional"])
    print(f"   sent on the 5th beat's provisional class in {n_prov} of {len(vt['runs'])} runs"
          " (else on its own class, i.e. when the 6th beat was released)")
    late = [(r["seed"], r["first_v_called"]) for r in vt["runs"] if r["first_v_called"] > 1]
    if late:
        print(f"   runs starting after the first V beat (seed, first beat of the run): {late}")
    if vt["missed"]:
        print(f"   no >= 5-beat V-run event for seeds {vt['missed']}")
    return out


def add_options(p: argparse.ArgumentParser) -> None:
    """``emon bench signal`` options of this benchmark."""
    p.add_argument("--latency", action="store_true", help="only the QRS release lag and VT onset -> V-run figures")
    p.add_argument("--latency-seeds", type=int, default=20, help="synthetic VT patients (seeds 0..n-1)")
    p.add_argument("--latency-seconds", type=float, default=120.0, help="MIT-BIH seconds per record for the lag")
    p.add_argument("--latency-vruns", default=None, metavar="RECORDS",
                   help="also count V-run events on MIT-BIH records (DS1, DS2, all or names), provisional off and on")


def print_v_runs(mitdb: Path, spec: str) -> dict[str, Any]:
    """Print (and return) :func:`count_v_runs` with ``run_confirm_provisional`` off and on."""
    from gateway.evaluation.evaluate import resolve_records
    from gateway.service import load_classifier
    from gateway.settings import load_gateway_settings

    records = resolve_records(mitdb, spec)
    if spec.strip().lower() == "all":
        from gateway.evaluation.aami import PACED_RECORDS

        records = [r for r in records if r not in PACED_RECORDS]
    clf = load_classifier(load_gateway_settings(None, simulated=1))
    out = {}
    print(f"\n== V-run events of >= 5 beats, MIT-BIH {spec} ({len(records)} records, whole records, 1 s frames)")
    print(f"   {'provisional':<12} {'ref >=5':>8} {'events':>7} {'outside':>8} {'missed':>7} {'prov.':>6} {'back':>5}"
          f"  {'onset->event p50 / max s':>25}")
    for prov in (False, True):
        r = count_v_runs(mitdb, records, clf, prov)
        out["on" if prov else "off"] = r
        t, lat = r["total"], r["latency_s"]
        print(f"   {'on' if prov else 'off':<12} {t['reference']:>8} {t['events']:>7} {t['unmatched']:>8} {t['missed']:>7}"
              f" {t['provisional_sent']:>6} {t['taken_back']:>5}  {lat['p50']:>12.2f} / {lat['max']:.2f}")
    print("   outside: events overlapping no reference run of >= 5 V beats; back: provisional 5th beat taken back")
    return out
