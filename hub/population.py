"""Synthetic patient population and history, pure and seeded (same seed -> same rows).

Each patient draws from its own generator ``default_rng([seed, n])``, so any chunk of
patients can be generated alone (resumable, parallel ingest) and still match a full run.

Distributions (MIT-BIH Arrhythmia Database-like, adults monitored at home):

* age 45-95 (mean ~72), sex about 50/50;
* usual heart rate ~ N(74, 11) bpm clipped to 45-115 (MIT-BIH record means span ~50-110);
* ectopic (PVC) burden: most records have almost none, a third some, a few many:
  60 % uniform 0-0.5 %, 30 % 0.5-5 %, 10 % 5-25 % of beats;
* conditions with their usual medication; chronic patterns follow from them (AF -> S runs,
  beta blocker with a slow usual rate -> bradycardia, burden >= 5 % -> frequent ectopy);
* home coordinates uniform over a disk of ``radius_km`` around ``center``.

History rows over the past ``days`` days: ~90 % hourly beat summaries, ~8 % rhythm events
(kinds weighted by the patient's pattern), ~2 % prior alerts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from emon_core.contracts import EventKind, Severity
from emon_core.registry import sim_device_id, sim_patient_id, sim_site_id

FIRST_NAMES = ("Anna", "Maria", "Elisabeth", "Johanna", "Eva", "Helga", "Ingrid", "Gertrude", "Monika", "Ursula",
               "Josef", "Johann", "Franz", "Karl", "Peter", "Michael", "Wolfgang", "Herbert", "Walter", "Gerhard")
LAST_NAMES = ("Gruber", "Huber", "Bauer", "Wagner", "Müller", "Pichler", "Steiner", "Moser", "Mayer", "Hofer",
              "Leitner", "Berger", "Fuchs", "Eder", "Fischer", "Schmid", "Winkler", "Weber", "Schwarz", "Maier")
# condition -> (prevalence, medication it brings)
CONDITIONS: dict[str, tuple[float, tuple[str, ...]]] = {
    "hypertension": (0.55, ("ace_inhibitor",)),
    "coronary_artery_disease": (0.30, ("statin", "aspirin")),
    "prior_myocardial_infarction": (0.15, ("beta_blocker", "statin")),
    "heart_failure": (0.18, ("beta_blocker", "diuretic")),
    "atrial_fibrillation": (0.20, ("anticoagulant", "beta_blocker")),
    "diabetes": (0.22, ("metformin",)),
    "copd": (0.10, ("bronchodilator",)),
    "sick_sinus_syndrome": (0.04, ()),
    "ventricular_arrhythmia": (0.06, ("amiodarone",)),
}
ROW_KINDS = ("summary", "event", "alert")
ROW_KIND_P = (0.90, 0.08, 0.02)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Patient:
    """One registry row (the ``patients`` table)."""

    n: int
    patient_id: str
    name: str
    birth_year: int
    sex: str
    conditions: tuple[str, ...]
    medication: tuple[str, ...]
    home_lat: float
    home_lon: float
    device_id: str
    site_id: str
    baseline_hr_bpm: float
    ectopic_burden_pct: float
    chronic_patterns: tuple[str, ...]


@dataclass
class HistoryChunk:
    """History rows of some patients as column lists, plus first occurrence per event kind."""

    rows: list[tuple] = field(default_factory=list)  # see HISTORY_COLUMNS
    first_seen: dict[tuple[str, str], int] = field(default_factory=dict)  # (patient, kind) -> ms


HISTORY_COLUMNS = ("patient_id", "bucket", "time_ms", "row_id", "kind", "event_kind", "severity",
                   "heart_rate_bpm", "beat_count", "v_count", "s_count", "duration_ms", "detail")


def month_bucket(time_ms: int) -> int:
    """History partition bucket: ``yyyymm`` of a UTC epoch-ms time."""
    d = datetime.fromtimestamp(time_ms / 1000, tz=timezone.utc)
    return d.year * 100 + d.month


def _disk_point(rng: np.random.Generator, center: tuple[float, float], radius_km: float) -> tuple[float, float]:
    r = radius_km * math.sqrt(rng.random())
    theta = 2 * math.pi * rng.random()
    dlat = (r * math.cos(theta)) / EARTH_RADIUS_KM
    dlon = (r * math.sin(theta)) / (EARTH_RADIUS_KM * math.cos(math.radians(center[0])))
    return round(center[0] + math.degrees(dlat), 6), round(center[1] + math.degrees(dlon), 6)


def make_patient(n: int, seed: int = 0, center: tuple[float, float] = (48.2082, 16.3738),
                 radius_km: float = 10.0, this_year: int = 2026, patients_per_site: int = 1000) -> Patient:
    """Patient ``n`` of the synthetic population (simulator naming: pat-/dev-/site-)."""
    rng = np.random.default_rng([seed, n, 1])
    age = int(np.clip(rng.normal(72, 10), 45, 95))
    sex = "F" if rng.random() < 0.5 else "M"
    conditions = tuple(c for c, (p, _) in CONDITIONS.items() if rng.random() < p)
    meds = tuple(sorted({m for c in conditions for m in CONDITIONS[c][1]}))
    hr = float(np.clip(rng.normal(74, 11), 45, 115))
    if "beta_blocker" in meds:
        hr = max(42.0, hr - 8.0)
    u = rng.random()
    if u < 0.6:
        burden = rng.uniform(0, 0.5)
    elif u < 0.9:
        burden = rng.uniform(0.5, 5.0)
    else:
        burden = rng.uniform(5.0, 25.0)
    if "ventricular_arrhythmia" in conditions:
        burden = max(burden, rng.uniform(3.0, 15.0))
    chronic: list[str] = []
    if burden >= 5.0:
        chronic.append(EventKind.FREQUENT_ECTOPY.value)
    if "atrial_fibrillation" in conditions:
        chronic.append(EventKind.S_RUN.value)
    if hr < 52 or "sick_sinus_syndrome" in conditions:
        chronic.append(EventKind.BRADYCARDIA.value)
    if "ventricular_arrhythmia" in conditions and rng.random() < 0.5:
        chronic.append(EventKind.V_RUN.value)
    lat, lon = _disk_point(rng, center, radius_km)
    name = f"{FIRST_NAMES[int(rng.integers(len(FIRST_NAMES)))]} {LAST_NAMES[int(rng.integers(len(LAST_NAMES)))]}"
    return Patient(n=n, patient_id=sim_patient_id(n), name=name, birth_year=this_year - age, sex=sex,
                   conditions=conditions, medication=meds, home_lat=lat, home_lon=lon,
                   device_id=sim_device_id(n), site_id=sim_site_id(n, patients_per_site),
                   baseline_hr_bpm=round(hr, 1), ectopic_burden_pct=round(float(burden), 3),
                   chronic_patterns=tuple(chronic))


def rows_for(n: int, patients: int, rows: int) -> int:
    """How many of ``rows`` history rows patient ``n`` of ``patients`` gets."""
    base, extra = divmod(rows, patients)
    return base + (1 if n < extra else 0)


def _event_kinds(p: Patient) -> tuple[list[str], np.ndarray]:
    kinds = [EventKind.V_RUN.value, EventKind.S_RUN.value, EventKind.PAUSE.value, EventKind.BRADYCARDIA.value,
             EventKind.TACHYCARDIA.value, EventKind.FREQUENT_ECTOPY.value, EventKind.SIGNAL_LOSS.value]
    w = np.array([0.05 + p.ectopic_burden_pct / 50, 0.05, 0.02, 0.05, 0.05, 0.02 + p.ectopic_burden_pct / 25, 0.3])
    for c in p.chronic_patterns:
        if c in kinds:
            w[kinds.index(c)] += 1.0
    return kinds, w / w.sum()


_SEV_OF = {"v_run": Severity.URGENT.value, "s_run": Severity.URGENT.value, "pause": Severity.CRITICAL.value,
           "bradycardia": Severity.ADVISORY.value, "tachycardia": Severity.ADVISORY.value,
           "frequent_ectopy": Severity.ADVISORY.value, "signal_loss": Severity.TECHNICAL.value}


def history_for(p: Patient, count: int, seed: int = 0, now_ms: int = 1_790_000_000_000, days: int = 365,
                out: HistoryChunk | None = None) -> HistoryChunk:
    """``count`` history rows of patient ``p`` over the ``days`` before ``now_ms`` (deterministic)."""
    out = out if out is not None else HistoryChunk()
    if count <= 0:
        return out
    rng = np.random.default_rng([seed, p.n, 2])
    start = now_ms - days * DAY_MS
    times = np.sort(rng.integers(start // HOUR_MS, now_ms // HOUR_MS, size=count)) * HOUR_MS
    times = np.sort(times + rng.integers(0, HOUR_MS, size=count))
    kind_idx = rng.choice(3, size=count, p=ROW_KIND_P)
    hr = np.clip(rng.normal(p.baseline_hr_bpm, 6.0, size=count), 30, 200).round(1)
    beats = (hr * 60).astype(np.int64)
    v = rng.binomial(beats, min(0.9, p.ectopic_burden_pct / 100))
    s = rng.binomial(beats, 0.004 if "atrial_fibrillation" not in p.conditions else 0.03)
    kinds, kind_p = _event_kinds(p)
    ev_idx = rng.choice(len(kinds), size=count, p=kind_p)
    dur = rng.integers(2_000, 60_000, size=count)
    months = times.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
    buckets = ((1970 + months // 12) * 100 + months % 12 + 1).tolist()
    pid = p.patient_id
    first = out.first_seen
    append = out.rows.append
    t_l, k_l, hr_l, b_l, v_l, s_l = times.tolist(), kind_idx.tolist(), hr.tolist(), beats.tolist(), v.tolist(), s.tolist()
    ev_l, dur_l = ev_idx.tolist(), dur.tolist()
    for i in range(count):
        k = ROW_KINDS[k_l[i]]
        if k == "summary":
            append((pid, buckets[i], t_l[i], f"h{i}", k, None, None, hr_l[i], b_l[i], v_l[i], s_l[i], HOUR_MS, None))
            continue
        t, ek = t_l[i], kinds[ev_l[i]]
        append((pid, buckets[i], t, f"h{i}", k, ek, _SEV_OF[ek] if k == "alert" else None, hr_l[i],
                int(dur_l[i] // 1000 * hr_l[i] / 60) if ek in ("v_run", "s_run") else 0, 0, 0, dur_l[i],
                "prior alert" if k == "alert" else "history"))
        if ek != "signal_loss":
            key = (pid, ek)
            if key not in first or t < first[key]:
                first[key] = t
    return out


def population_chunk(first_n: int, last_n: int, patients: int, rows: int, seed: int = 0,
                     center: tuple[float, float] = (48.2082, 16.3738), radius_km: float = 10.0,
                     now_ms: int = 1_790_000_000_000) -> tuple[list[Patient], HistoryChunk]:
    """Patients ``first_n .. last_n-1`` and their history rows (share of ``rows``)."""
    ps = [make_patient(n, seed, center, radius_km) for n in range(first_n, last_n)]
    hist = HistoryChunk()
    for p in ps:
        history_for(p, rows_for(p.n, patients, rows), seed, now_ms, out=hist)
    return ps, hist
