"""Cassandra statements of the hub: reads for enrichment/episodes, idempotent writes, bounded concurrency.

Every write is an upsert keyed by deterministic ids, so retrying a whole round after a
failure (or replaying Kafka) rewrites the same rows. Writes of one round are grouped per
partition into UNLOGGED batches (one request per partition, no batch log) and run with a
bounded number of requests in flight (:func:`run_concurrent`).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Any, Iterable, Sequence

from cassandra.connection import ConnectionBusy
from cassandra.query import BatchStatement, BatchType, PreparedStatement

from emon_core.contracts import Alert, FlaggedBeat, PatientSummary, RhythmEvent
from hub.episodes import Episode

DAY_MS = 86_400_000
MAX_BATCH = 40  # statements per UNLOGGED batch (same partition)

Write = tuple[PreparedStatement, Sequence[Any], Any]  # statement, params, partition key


def day_of(ms: int) -> int:
    return ms // DAY_MS


class WriteFailed(Exception):
    """A round of writes did not complete (the caller retries the whole round)."""


def _busy(exc: BaseException) -> bool:
    """The driver refused the request because its connection's send buffer is full (backpressure)."""
    errors = getattr(exc, "errors", None)  # NoHostAvailable: {host: error}
    return bool(errors) and all(isinstance(e, ConnectionBusy) for e in errors.values())


def run_concurrent(session: Any, requests: Iterable[tuple[Any, Sequence[Any] | None]], concurrency: int,
                   latencies: list[float] | None = None, timeout_s: float = 60.0, busy_retries: int = 10_000) -> int:
    """Execute ``(statement, params)`` with at most ``concurrency`` in flight; raise on the first error.

    A request the driver refuses with ``ConnectionBusy`` (its socket buffer is full: large
    strip batches, many in flight) is submitted again after a short pause instead of failing
    the round; at most ``busy_retries`` times per call. Returns how many requests ran.
    ``latencies`` (seconds) is appended per request.
    """
    sem = threading.BoundedSemaphore(concurrency)
    lock = threading.Lock()
    errors: list[BaseException] = []
    again: deque[tuple[Any, Sequence[Any] | None]] = deque()
    count = 0

    def _ok(_rows: Any, t0: float, _req: Any) -> None:
        if latencies is not None:
            latencies.append(time.perf_counter() - t0)
        sem.release()

    def _err(exc: BaseException, _t0: float, req: Any) -> None:
        with lock:
            if _busy(exc):
                again.append(req)
            else:
                errors.append(exc)
        sem.release()

    def _submit(req: tuple[Any, Sequence[Any] | None]) -> None:
        t0 = time.perf_counter()
        fut = session.execute_async(req[0], req[1])
        fut.add_callbacks(_ok, _err, callback_args=(t0, req), errback_args=(t0, req))

    it = iter(requests)
    while True:
        if again:
            if busy_retries <= 0:
                raise WriteFailed("cassandra: connection still busy after many retries")
            busy_retries -= 1
            time.sleep(0.005)  # let the driver's socket drain
            with lock:
                req = again.popleft()
        else:
            nxt = next(it, None)
            if nxt is None:
                # wait for everything in flight; refused ones come back in `again`
                for _ in range(concurrency):
                    if not sem.acquire(timeout=timeout_s):
                        raise WriteFailed(f"cassandra: writes still in flight after {timeout_s:.0f} s")
                for _ in range(concurrency):
                    sem.release()
                if not again or errors:
                    break
                continue
            req = nxt
            count += 1
        if not sem.acquire(timeout=timeout_s):
            raise WriteFailed(f"cassandra: no write completed within {timeout_s:.0f} s")
        if errors:
            sem.release()
            break
        _submit(req)
    if errors:
        raise WriteFailed(f"cassandra write failed: {errors[0]!r}") from errors[0]
    return count


def batched(writes: Sequence[Write], consistency: int | None = None, max_batch: int = MAX_BATCH
            ) -> list[tuple[Any, Sequence[Any] | None]]:
    """Group writes by partition into UNLOGGED batches; single writes stay plain statements."""
    groups: dict[Any, list[Write]] = defaultdict(list)
    for w in writes:
        groups[w[2]].append(w)
    out: list[tuple[Any, Sequence[Any] | None]] = []
    for group in groups.values():
        for i in range(0, len(group), max_batch):
            part = group[i:i + max_batch]
            if len(part) == 1:
                out.append((part[0][0], part[0][1]))
                continue
            b = BatchStatement(batch_type=BatchType.UNLOGGED)
            if consistency is not None:
                b.consistency_level = consistency
            for stmt, params, _key in part:
                b.add(stmt, params)
            out.append((b, None))
    return out


class HubStore:
    """Prepared statements on the hub's tables (keyspace already set on ``session``)."""

    def __init__(self, session: Any, store_strips: bool = True) -> None:
        self.s = session
        self.store_strips = store_strips
        p = session.prepare
        self.q_patient = p("SELECT patient_id, home_lat, home_lon, chronic_patterns, baseline_hr_bpm, "
                           "ectopic_burden_pct, device_id, site_id FROM patients WHERE patient_id = ?")
        self.q_kinds = p("SELECT event_kind, min(seen_ms) AS first_ms FROM patient_event_kinds "
                         "WHERE patient_id = ? GROUP BY event_kind")
        self.q_episode = p("SELECT state_json, published_version FROM episodes WHERE patient_id = ? LIMIT 1")
        self.q_alert_json = p("SELECT alert_json, version FROM alerts WHERE alert_id = ?")
        self.q_by_device = p("SELECT patient_id FROM patients_by_device WHERE device_id = ?")
        self.q_by_site = p("SELECT patient_id FROM patients_by_site WHERE site_id = ?")
        self.w_beat = p("INSERT INTO flagged_beats_by_patient_day (patient_id, day, r_time_ms, beat_id, device_id, "
                        "site_id, sample_index, beat_class, probabilities, rr_prev_ms, rr_next_ms, model_version, "
                        "strip_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self.w_event = p("INSERT INTO rhythm_events_by_patient_day (patient_id, day, onset_time_ms, event_id, kind, "
                         "end_time_ms, revision, beat_count, rate_bpm, detail, device_id, site_id, strip_json) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self.w_vitals = p("INSERT INTO vitals_by_patient_day (patient_id, day, window_start_ms, summary_id, "
                          "window_end_ms, device_id, site_id, heart_rate_bpm, beat_counts, signal_quality, "
                          "frames_received, frames_invalid, model_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self.w_alert = p("INSERT INTO alerts (alert_id, patient_id, episode_id, severity, status, title, version, "
                         "needs_unit, patient_known, lat, lon, opened_at_ms, updated_at_ms, alert_json) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self.w_alert_day = p("INSERT INTO alerts_by_day (day, opened_at_ms, alert_id, patient_id, severity, status, "
                             "title, version, needs_unit, patient_known, lat, lon, updated_at_ms) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self.w_alert_patient = p("INSERT INTO alerts_by_patient (patient_id, opened_at_ms, alert_id, severity, "
                                 "title, version) VALUES (?, ?, ?, ?, ?, ?)")
        self.w_alert_closed = p("UPDATE alerts SET closed_at_ms = ? WHERE alert_id = ?")
        self.w_alert_day_closed = p("UPDATE alerts_by_day SET closed_at_ms = ? WHERE day = ? AND opened_at_ms = ? "
                                    "AND alert_id = ?")
        self.w_episode = p("INSERT INTO episodes (patient_id, opened_at_ms, episode_id, alert_id, last_event_ms, "
                           "closed_at_ms, version, state_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        self.w_published = p("UPDATE episodes SET published_version = ? WHERE patient_id = ? AND opened_at_ms = ? "
                             "AND episode_id = ?")
        self.w_kind = p("INSERT INTO patient_event_kinds (patient_id, event_kind, seen_ms) VALUES (?, ?, ?)")

    # --- reads (async futures; the caller waits) -------------------------------------------
    def read_async(self, stmt: PreparedStatement, params: Sequence[Any]) -> Any:
        return self.s.execute_async(stmt, params)

    def last_episode(self, patient_id: str) -> tuple[Episode | None, int]:
        row = self.s.execute(self.q_episode, (patient_id,)).one()
        if row is None:
            return None, -1
        return Episode.from_json(row.state_json), -1 if row.published_version is None else row.published_version

    def alert_json(self, alert_id: str) -> tuple[str | None, int | None]:
        row = self.s.execute(self.q_alert_json, (alert_id,)).one()
        return (None, None) if row is None else (row.alert_json, row.version)

    def patients_for_devices(self, device_ids: Sequence[str]) -> dict[str, str]:
        futs = {d: self.s.execute_async(self.q_by_device, (d,)) for d in device_ids}
        out = {}
        for d, f in futs.items():
            row = f.result().one()
            if row is not None:
                out[d] = row.patient_id
        return out

    def patients_for_site(self, site_id: str) -> list[str]:
        return [r.patient_id for r in self.s.execute(self.q_by_site, (site_id,))]

    # --- writes ----------------------------------------------------------------------------
    def beat(self, b: FlaggedBeat) -> Write:
        day = day_of(b.r_time_ms)
        strip = b.strip.model_dump_json() if (b.strip is not None and self.store_strips) else None
        probs = {k.value: float(v) for k, v in b.probabilities.items()}
        return (self.w_beat, (b.patient_id, day, b.r_time_ms, b.id, b.device_id, b.site_id, b.sample_index,
                              b.beat_class.value, probs, b.rr_prev_ms, b.rr_next_ms, b.model_version, strip),
                ("b", b.patient_id, day))

    def event(self, e: RhythmEvent) -> Write:
        day = day_of(e.onset_time_ms)
        strip = e.strip.model_dump_json() if (e.strip is not None and self.store_strips) else None
        return (self.w_event, (e.patient_id, day, e.onset_time_ms, e.id, e.kind.value, e.end_time_ms, e.revision,
                               e.beat_count, e.rate_bpm, e.detail, e.device_id, e.site_id, strip),
                ("e", e.patient_id, day))

    def vitals(self, s: PatientSummary) -> Write:
        day = day_of(s.window_start_ms)
        counts = {k.value: int(v) for k, v in s.beat_counts.items()}
        return (self.w_vitals, (s.patient_id, day, s.window_start_ms, s.id, s.window_end_ms, s.device_id, s.site_id,
                                s.heart_rate_bpm, counts, s.signal_quality, s.frames_received, s.frames_invalid,
                                s.model_version), ("v", s.patient_id, day))

    def alert(self, a: Alert, alert_json: str) -> list[Write]:
        lat = a.location.lat if a.location else None
        lon = a.location.lon if a.location else None
        day = day_of(a.opened_at_ms)
        return [
            (self.w_alert, (a.alert_id, a.patient_id, a.episode_id, a.severity.value, a.status.value, a.title,
                            a.version, a.needs_unit, a.patient_known, lat, lon, a.opened_at_ms, a.updated_at_ms,
                            alert_json), ("a", a.alert_id)),
            (self.w_alert_day, (day, a.opened_at_ms, a.alert_id, a.patient_id, a.severity.value, a.status.value,
                                a.title, a.version, a.needs_unit, a.patient_known, lat, lon, a.updated_at_ms),
             ("ad", day, a.alert_id)),
            (self.w_alert_patient, (a.patient_id, a.opened_at_ms, a.alert_id, a.severity.value, a.title, a.version),
             ("ap", a.patient_id)),
        ]

    def episode(self, ep: Episode) -> Write:
        return (self.w_episode, (ep.patient_id, ep.opened_at_ms, ep.episode_id, ep.alert_id if ep.has_alert else None,
                                 ep.last_event_ms, ep.closed_at_ms, ep.version, ep.to_json()),
                ("ep", ep.patient_id))

    def episode_closed(self, ep: Episode) -> list[Write]:
        out = [self.episode(ep)]
        if ep.has_alert and ep.closed_at_ms is not None:
            out.append((self.w_alert_closed, (ep.closed_at_ms, ep.alert_id), ("a", ep.alert_id)))
            out.append((self.w_alert_day_closed, (ep.closed_at_ms, day_of(ep.opened_at_ms), ep.opened_at_ms,
                                                  ep.alert_id), ("ad", day_of(ep.opened_at_ms), ep.alert_id)))
        return out

    def published(self, ep: Episode, version: int) -> Write:
        return (self.w_published, (version, ep.patient_id, ep.opened_at_ms, ep.episode_id), ("ep", ep.patient_id))

    def kind_seen(self, patient_id: str, kind: str, seen_ms: int) -> Write:
        return (self.w_kind, (patient_id, kind, seen_ms), ("k", patient_id))

    def write(self, writes: Sequence[Write], concurrency: int, latencies: list[float] | None = None) -> int:
        """Run one round of writes (batched per partition); WriteFailed on any failure."""
        return run_concurrent(self.s, batched(writes), concurrency, latencies)


def apply_schema(session: Any, keyspace: str, replication: str) -> None:
    """Create ``keyspace`` and apply every migration (tests and benches on throw-away keyspaces)."""
    from emon_core.migrations.runner import migrate

    migrate(session, keyspace, replication, reapply_changed=True)
