"""Load the synthetic population/history (parallel, resumable) and real patients from CSV.

History: patients are split into chunks of ``chunk_patients``; each chunk is generated
(:mod:`hub.population`, seeded per patient) and written by one of ``processes`` worker
processes (the Python driver is CPU bound) with prepared statements, rows of one
``(patient, month)`` partition grouped into UNLOGGED batches and ``concurrency`` requests
in flight. A chunk is recorded in ``ingest_progress`` once all its writes succeeded; a
rerun of the same job (seed, patients, rows) skips recorded chunks.

CSV columns (header required; lists separated by ``;``)::

    patient_id,name,birth_year,sex,conditions,medication,home_lat,home_lon,device_id,site_id,
    baseline_hr_bpm,ectopic_burden_pct,chronic_patterns

``patient_id``, ``home_lat`` and ``home_lon`` are required; every row is validated first
and nothing is written if any row fails (errors name the line and the column).
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, Field, ValidationError, field_validator

from emon_core.contracts import ID_PATTERN, EventKind
from emon_core.errors import EmonError
from emon_core.settings import CassandraSettings
from hub.population import HISTORY_COLUMNS, Patient, population_chunk
from hub.store import batched, run_concurrent

PATIENT_CQL = ("INSERT INTO patients (patient_id, name, birth_year, sex, conditions, medication, home_lat, home_lon, "
               "device_id, site_id, baseline_hr_bpm, ectopic_burden_pct, chronic_patterns, source, updated_at_ms) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
BY_DEVICE_CQL = "INSERT INTO patients_by_device (device_id, patient_id, site_id) VALUES (?, ?, ?)"
BY_SITE_CQL = "INSERT INTO patients_by_site (site_id, patient_id, device_id) VALUES (?, ?, ?)"
KIND_CQL = "INSERT INTO patient_event_kinds (patient_id, event_kind, seen_ms) VALUES (?, ?, ?)"
HISTORY_CQL = (f"INSERT INTO patient_history ({', '.join(HISTORY_COLUMNS)}) "
               f"VALUES ({', '.join('?' for _ in HISTORY_COLUMNS)})")
PROGRESS_CQL = "INSERT INTO ingest_progress (job_id, chunk, rows, done_at_ms) VALUES (?, ?, ?, ?)"


class IngestError(EmonError):
    """The input cannot be loaded (validation errors listed in the message)."""


@dataclass
class Job:
    patients: int
    rows: int
    seed: int = 0
    center: tuple[float, float] = (48.2082, 16.3738)
    radius_km: float = 10.0
    chunk_patients: int = 100
    concurrency: int = 64
    mode: str = "batch"  # batch: UNLOGGED batches per partition; rows: one request per row
    now_ms: int = 1_790_000_000_000

    @property
    def job_id(self) -> str:
        return f"history:s{self.seed}:p{self.patients}:r{self.rows}:c{self.chunk_patients}"

    def chunks(self) -> list[tuple[int, int, int]]:
        return [(i, lo, min(lo + self.chunk_patients, self.patients))
                for i, lo in enumerate(range(0, self.patients, self.chunk_patients))]


class Writer:
    """A connection and the prepared statements (one per worker process)."""

    def __init__(self, settings: CassandraSettings) -> None:
        from emon_core.adapters.cassandra import connect

        self.cluster, self.s = connect(settings, keyspace=settings.keyspace, timeout_s=60)
        p = self.s.prepare
        self.patient, self.by_device, self.by_site = p(PATIENT_CQL), p(BY_DEVICE_CQL), p(BY_SITE_CQL)
        self.kind, self.history, self.progress = p(KIND_CQL), p(HISTORY_CQL), p(PROGRESS_CQL)

    def patient_writes(self, ps: list[Patient], source: str) -> list[tuple[Any, tuple, Any]]:
        now = int(time.time() * 1000)
        out = []
        for p in ps:
            out.append((self.patient, (p.patient_id, p.name, p.birth_year, p.sex, list(p.conditions),
                                       list(p.medication), p.home_lat, p.home_lon, p.device_id, p.site_id,
                                       p.baseline_hr_bpm, p.ectopic_burden_pct, set(p.chronic_patterns), source, now),
                        ("p", p.patient_id)))
            if p.device_id:
                out.append((self.by_device, (p.device_id, p.patient_id, p.site_id), ("d", p.device_id)))
            if p.site_id:
                out.append((self.by_site, (p.site_id, p.patient_id, p.device_id), ("s", p.site_id, p.patient_id)))
        return out

    def write_population(self, ps: list[Patient], hist: Any, mode: str, concurrency: int) -> None:
        """Patients, their first-seen event kinds and history rows (``batch``: history in partition batches)."""
        writes = self.patient_writes(ps, "synthetic")
        writes += [(self.kind, (pid, kind, t), ("k", pid)) for (pid, kind), t in hist.first_seen.items()]
        if mode == "batch":
            writes += [(self.history, r, (r[0], r[1])) for r in hist.rows]
            run_concurrent(self.s, batched(writes), concurrency)
        else:
            run_concurrent(self.s, batched(writes), concurrency)
            run_concurrent(self.s, ((self.history, r) for r in hist.rows), concurrency)

    def chunk(self, job: Job, index: int, lo: int, hi: int) -> int:
        ps, hist = population_chunk(lo, hi, job.patients, job.rows, job.seed, job.center, job.radius_km, job.now_ms)
        self.write_population(ps, hist, job.mode, job.concurrency)
        self.s.execute(self.progress, (job.job_id, index, len(hist.rows), int(time.time() * 1000)))
        return len(hist.rows)

    def register(self, lo: int, hi: int, rows_per_patient: int, seed: int, concurrency: int) -> int:
        """Patients ``lo .. hi-1`` with ``rows_per_patient`` history rows each, not recorded as a job chunk."""
        n = hi - lo
        ps, hist = population_chunk(lo, hi, n, rows_per_patient * n, seed)
        self.write_population(ps, hist, "batch", concurrency)
        return len(ps)

    def close(self) -> None:
        self.cluster.shutdown()


def register_patients(settings: CassandraSettings, first_n: int, last_n: int, rows_per_patient: int = 20,
                      seed: int = 0, concurrency: int = 64) -> int:
    """Registry rows (and a little history) for simulated patients ``first_n .. last_n-1``.

    Idempotent (same seed, same rows), so a load run can call it for its own range whatever was
    loaded before; returns the number of patients written.
    """
    w = Writer(settings)
    try:
        return w.register(first_n, last_n, rows_per_patient, seed, concurrency)
    finally:
        w.close()


_WRITER: Writer | None = None
_JOB: Job | None = None


def _init_worker(settings: CassandraSettings, job: Job) -> None:
    from emon_core.runtime import tune_gc

    global _WRITER, _JOB
    _WRITER, _JOB = Writer(settings), job
    tune_gc()


def _work(chunk: tuple[int, int, int]) -> int:
    assert _WRITER is not None and _JOB is not None
    return _WRITER.chunk(_JOB, *chunk)


def done_chunks(settings: CassandraSettings, job: Job) -> dict[int, int]:
    from emon_core.adapters.cassandra import connect

    cluster, s = connect(settings, keyspace=settings.keyspace, timeout_s=60)
    try:
        return {r.chunk: r.rows for r in s.execute("SELECT chunk, rows FROM ingest_progress WHERE job_id = %s",
                                                   (job.job_id,))}
    finally:
        cluster.shutdown()


def load_history(settings: CassandraSettings, job: Job, processes: int = 2, progress: bool = True
                 ) -> dict[str, Any]:
    """Run (or resume) a history job; returns rows written, rows skipped, seconds, rows/s."""
    from tqdm import tqdm

    done = done_chunks(settings, job)
    todo = [c for c in job.chunks() if c[0] not in done]
    skipped = sum(done.values())
    bar = tqdm(total=job.rows, initial=skipped, unit="row", unit_scale=True, disable=not progress,
               desc="history", smoothing=0.05)
    t0 = time.perf_counter()
    written = 0
    try:
        if processes <= 1:
            w = Writer(settings)
            try:
                for c in todo:
                    n = w.chunk(job, *c)
                    written += n
                    bar.update(n)
            finally:
                w.close()
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(processes, initializer=_init_worker, initargs=(settings, job)) as pool:
                for n in pool.imap_unordered(_work, todo):
                    written += n
                    bar.update(n)
    finally:
        bar.close()
    secs = time.perf_counter() - t0
    return {"job_id": job.job_id, "rows_written": written, "rows_skipped": skipped, "seconds": round(secs, 2),
            "rows_per_s": round(written / secs, 1) if secs > 0 else 0.0, "chunks": len(todo)}


# --- CSV patients ---------------------------------------------------------------------------------
CSV_COLUMNS = ("patient_id", "name", "birth_year", "sex", "conditions", "medication", "home_lat", "home_lon",
               "device_id", "site_id", "baseline_hr_bpm", "ectopic_burden_pct", "chronic_patterns")
_KINDS = {k.value for k in EventKind}


class PatientRow(BaseModel):
    """One CSV row, validated (hub input format, not a message contract)."""

    patient_id: str = Field(pattern=ID_PATTERN)
    name: str = Field("", max_length=200)
    birth_year: int | None = Field(None, ge=1900, le=2030)
    sex: str = Field("", pattern=r"^(|F|M|X)$")
    conditions: list[str] = []
    medication: list[str] = []
    home_lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    home_lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    device_id: str = Field("", pattern=r"^$|" + ID_PATTERN)
    site_id: str = Field("", pattern=r"^$|" + ID_PATTERN)
    baseline_hr_bpm: float | None = Field(None, ge=20, le=250)
    ectopic_burden_pct: float | None = Field(None, ge=0, le=100)
    chronic_patterns: list[str] = []

    @field_validator("conditions", "medication", "chronic_patterns", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [x.strip() for x in v.split(";") if x.strip()] if isinstance(v, str) else v

    @field_validator("birth_year", "baseline_hr_bpm", "ectopic_burden_pct", mode="before")
    @classmethod
    def _empty(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("chronic_patterns")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in _KINDS]
        if bad:
            raise ValueError(f"unknown pattern(s) {bad}; use {sorted(_KINDS)}")
        return v


def parse_patients_csv(path: Path) -> tuple[list[PatientRow], list[str]]:
    """All rows and all errors (``line N, column: message``)."""
    rows: list[PatientRow] = []
    errors: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"patient_id", "home_lat", "home_lon"} - set(reader.fieldnames or ())
            if missing:
                return [], [f"header: missing column(s) {sorted(missing)}"]
            unknown = set(reader.fieldnames or ()) - set(CSV_COLUMNS)
            if unknown:
                errors.append(f"header: unknown column(s) {sorted(unknown)}")
            seen: dict[str, int] = {}
            for line, raw in enumerate(reader, start=2):
                data = {k: (v or "").strip() for k, v in raw.items() if k in CSV_COLUMNS}
                try:
                    row = PatientRow(**data)
                except ValidationError as err:
                    for e in err.errors(include_url=False):
                        col = ".".join(str(x) for x in e.get("loc", ())) or "row"
                        errors.append(f"line {line}, {col}: {e.get('msg')}")
                    continue
                if row.patient_id in seen:
                    errors.append(f"line {line}, patient_id: duplicate of line {seen[row.patient_id]}")
                    continue
                seen[row.patient_id] = line
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return [], [f"{path}: {err}"]
    return rows, errors


def load_patients_csv(settings: CassandraSettings, path: Path, concurrency: int = 64) -> int:
    """Validate every row, then write them all; IngestError (nothing written) on any error."""
    rows, errors = parse_patients_csv(path)
    if errors:
        shown = "\n  ".join(errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise IngestError(f"{path}: {len(errors)} error(s), nothing written:\n  {shown}{more}")
    w = Writer(settings)
    try:
        ps = [Patient(n=-1, patient_id=r.patient_id, name=r.name, birth_year=r.birth_year or 0, sex=r.sex,
                      conditions=tuple(r.conditions), medication=tuple(r.medication), home_lat=r.home_lat,
                      home_lon=r.home_lon, device_id=r.device_id, site_id=r.site_id,
                      baseline_hr_bpm=r.baseline_hr_bpm or 0.0, ectopic_burden_pct=r.ectopic_burden_pct or 0.0,
                      chronic_patterns=tuple(r.chronic_patterns)) for r in rows]
        run_concurrent(w.s, batched(w.patient_writes(ps, "csv")), concurrency)
    finally:
        w.close()
    return len(rows)


def bare_history_loop(settings: CassandraSettings, rows: list[tuple], concurrency: int = 64) -> float:
    """Reference: the driver's execute_concurrent_with_args, one INSERT per row; returns seconds."""
    from cassandra.concurrent import execute_concurrent_with_args

    w = Writer(settings)
    try:
        t0 = time.perf_counter()
        execute_concurrent_with_args(w.s, w.history, rows, concurrency=concurrency, raise_on_first_error=True,
                                     results_generator=False)
        return time.perf_counter() - t0
    finally:
        w.close()


def iter_chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
