"""Cassandra store for dispatch: units claimed with lightweight transactions, assignments, queue."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from emon_core.contracts import Assignment, AssignmentStatus, GeoPoint, Severity, UnitPosition, UnitStatus
from emon_core.settings import CassandraSettings
from paramedic_router.queue import QueuedAlert

log = logging.getLogger(__name__)

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "emon_core" / "migrations" / "cql" / "020_dispatch.cql"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class UnitRow:
    unit_id: str
    crew: str
    base_lat: float
    base_lon: float
    status: UnitStatus
    alert_id: str | None
    assignment_id: str | None
    updated_at_ms: int
    lat: float
    lon: float
    position_time_ms: int | None


def connect(settings: CassandraSettings, *, wait_s: float = 30.0) -> Any:
    """A driver session on the keyspace through the shared adapter (bounded wait)."""
    from emon_core.adapters.cassandra import connect as adapter_connect

    _cluster, session = adapter_connect(settings, keyspace=settings.keyspace, timeout_s=wait_s)
    return session


def apply_schema(session: Any, path: Path = SCHEMA_FILE) -> None:
    """Apply the dispatch tables (idempotent; `emon init` does the same through migrations)."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("--"))
    for stmt in (s.strip() for s in text.split(";")):
        if stmt:
            session.execute(stmt)


def _status(value: str | None) -> UnitStatus:
    try:
        return UnitStatus(value or "offline")
    except ValueError:
        return UnitStatus.OFFLINE


class DispatchStore:
    """All router reads and writes; every unit status change is a lightweight transaction."""

    def __init__(self, session: Any) -> None:
        self.s = session
        p = session.prepare
        self._register = p(
            "INSERT INTO units (unit_id, crew, base_lat, base_lon, status, updated_at_ms) "
            "VALUES (?, ?, ?, ?, 'available', ?) IF NOT EXISTS"
        )
        self._claim = p(
            "UPDATE units SET status = 'assigned', alert_id = ?, assignment_id = ?, updated_at_ms = ? "
            "WHERE unit_id = ? IF status = 'available'"
        )
        self._advance = p("UPDATE units SET status = ?, updated_at_ms = ? WHERE unit_id = ? IF assignment_id = ?")
        self._release = p(
            "UPDATE units SET status = 'available', alert_id = null, assignment_id = null, updated_at_ms = ? "
            "WHERE unit_id = ? IF assignment_id = ?"
        )
        self._set_idle = p("UPDATE units SET status = ?, updated_at_ms = ? WHERE unit_id = ? IF status = ?")
        from cassandra import ConsistencyLevel

        for lwt in (self._register, self._claim, self._advance, self._release, self._set_idle):
            lwt.serial_consistency_level = ConsistencyLevel.LOCAL_SERIAL
        self._log = p(
            "INSERT INTO unit_status_log (unit_id, changed_at, changed_at_ms, old_status, new_status, alert_id, "
            "assignment_id, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        cols = (
            "assignment_id, alert_id, attempt, unit_id, patient_id, status, severity, distance_m, eta_s, "
            "assigned_at_ms, updated_at_ms, patient_lat, patient_lon, unit_lat, unit_lon"
        )
        self._asg_alert = p(f"INSERT INTO assignments_by_alert ({cols}) VALUES ({', '.join('?' * 15)})")
        self._asg_unit = p(f"INSERT INTO assignments_by_unit ({cols}) VALUES ({', '.join('?' * 15)})")
        self._asg_for_alert = p(f"SELECT {cols} FROM assignments_by_alert WHERE alert_id = ?")
        self._position = p(
            "INSERT INTO unit_positions (unit_id, lat, lon, reported_status, speed_mps, heading_deg, time_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self._q_put = p(
            "INSERT INTO dispatch_queue (alert_id, patient_id, severity, severity_rank, opened_at_ms, "
            "enqueued_at_ms, lat, lon) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._q_del = p("DELETE FROM dispatch_queue WHERE alert_id = ?")
        self._unit_get = p("SELECT status, alert_id, assignment_id FROM units WHERE unit_id = ?")
        # the map's dispatcher state: an alert a dispatcher resolved while it waited is not served
        self._resolved = p("SELECT dispatcher_status FROM dispatch_alert_state WHERE alert_id = ?")
        self._patient_home = None
        if self._has_table("patients"):  # the hub's registry: home of alerts without a location
            self._patient_home = p("SELECT home_lat, home_lon FROM patients WHERE patient_id = ?")
        else:
            log.info("patients table not available; alerts without a location cannot be dispatched")

    def _has_table(self, name: str) -> bool:
        ks = self.s.keyspace
        row = self.s.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
                             (ks, name)).one()
        return row is not None

    # --- units -----------------------------------------------------------------------
    def load_units(self) -> list[UnitRow]:
        positions = {
            r.unit_id: r for r in self.s.execute("SELECT unit_id, lat, lon, time_ms FROM unit_positions")
        }
        out = []
        for r in self.s.execute(
            "SELECT unit_id, crew, base_lat, base_lon, status, alert_id, assignment_id, updated_at_ms FROM units"
        ):
            pos = positions.get(r.unit_id)
            lat = pos.lat if pos is not None and pos.lat is not None else r.base_lat
            lon = pos.lon if pos is not None and pos.lon is not None else r.base_lon
            out.append(
                UnitRow(
                    r.unit_id, r.crew or "", r.base_lat or 0.0, r.base_lon or 0.0, _status(r.status), r.alert_id,
                    r.assignment_id, r.updated_at_ms or 0, lat or 0.0, lon or 0.0, pos.time_ms if pos else None,
                )
            )
        return out

    def register_unit(self, unit_id: str, lat: float, lon: float, crew: str = "", at_ms: int | None = None) -> bool:
        """Create an available unit based at (lat, lon) unless it exists; True if created."""
        at = at_ms or now_ms()
        applied = self.s.execute(self._register, (unit_id, crew, lat, lon, at)).was_applied
        if applied:
            self.log_status(unit_id, None, UnitStatus.AVAILABLE, None, None, "registered", at)
        return bool(applied)

    def unit_status(self, unit_id: str) -> tuple[UnitStatus, str | None, str | None] | None:
        row = self.s.execute(self._unit_get, (unit_id,)).one()
        return None if row is None else (_status(row.status), row.alert_id, row.assignment_id)

    def claim_async(self, unit_id: str, alert_id: str, assignment_id: str, at_ms: int) -> Any:
        """Start the atomic claim ``available -> assigned``; ``.result().was_applied`` says who won."""
        return self.s.execute_async(self._claim, (alert_id, assignment_id, at_ms, unit_id))

    def claim(self, unit_id: str, alert_id: str, assignment_id: str, at_ms: int) -> bool:
        return bool(self.claim_async(unit_id, alert_id, assignment_id, at_ms).result().was_applied)

    def advance(self, unit_id: str, assignment_id: str, status: UnitStatus, at_ms: int) -> bool:
        """Move a unit along its lifecycle while it still holds ``assignment_id``."""
        return bool(self.s.execute(self._advance, (status.value, at_ms, unit_id, assignment_id)).was_applied)

    def release(self, unit_id: str, assignment_id: str, at_ms: int) -> bool:
        """Make the unit available again if it still holds ``assignment_id``."""
        return bool(self.s.execute(self._release, (at_ms, unit_id, assignment_id)).was_applied)

    def set_idle_status(self, unit_id: str, old: UnitStatus, new: UnitStatus, at_ms: int) -> bool:
        """available <-> offline for a unit without an assignment."""
        return bool(self.s.execute(self._set_idle, (new.value, at_ms, unit_id, old.value)).was_applied)

    def log_status(
        self, unit_id: str, old: UnitStatus | None, new: UnitStatus, alert_id: str | None,
        assignment_id: str | None, reason: str, at_ms: int,
    ) -> Any:
        return self.s.execute_async(
            self._log,
            (unit_id, uuid.uuid1(), at_ms, old.value if old else None, new.value, alert_id, assignment_id, reason),
        )

    def write_position(self, pos: UnitPosition) -> Any:
        # USING TIMESTAMP = report time: a late, older report never overwrites a newer one
        fut = self.s.execute_async(
            self._position,
            (pos.unit_id, pos.lat, pos.lon, pos.status.value, pos.speed_mps, pos.heading_deg, pos.time_ms,
             pos.time_ms * 1000),
        )
        fut.add_errback(lambda err: log.warning("position of %s not stored: %s", pos.unit_id, err))
        return fut

    # --- assignments ---------------------------------------------------------------------
    @staticmethod
    def _asg_values(a: Assignment) -> tuple:
        pl, ul = a.patient_location, a.unit_location
        return (
            a.assignment_id, a.alert_id, a.attempt, a.unit_id, a.patient_id, a.status.value, a.severity.value,
            a.distance_m, a.eta_s, a.assigned_at_ms, a.updated_at_ms, pl.lat if pl else None,
            pl.lon if pl else None, ul.lat if ul else None, ul.lon if ul else None,
        )

    def write_assignment_async(self, a: Assignment) -> list[Any]:
        v = self._asg_values(a)
        return [self.s.execute_async(self._asg_alert, v), self.s.execute_async(self._asg_unit, v)]

    def write_assignment(self, a: Assignment) -> None:
        for f in self.write_assignment_async(a):
            f.result()

    def assignments_for_alert(self, alert_id: str) -> list[Assignment]:
        return [row_to_assignment(r) for r in self.s.execute(self._asg_for_alert, (alert_id,))]

    def patient_home(self, patient_id: str) -> tuple[float, float] | None:
        if self._patient_home is None:
            return None
        row = self.s.execute(self._patient_home, (patient_id,)).one()
        if row is None or row.home_lat is None or row.home_lon is None:
            return None
        return float(row.home_lat), float(row.home_lon)

    # --- queue -------------------------------------------------------------------------
    def queue_put(self, q: QueuedAlert) -> Any:
        return self.s.execute_async(
            self._q_put, (q.alert_id, q.patient_id, q.severity, q.severity_rank, q.opened_at_ms, q.enqueued_at_ms,
                          q.lat, q.lon),
        )

    def queue_delete(self, alert_id: str) -> Any:
        return self.s.execute_async(self._q_del, (alert_id,))

    def resolved_by_dispatcher(self, alert_id: str) -> bool:
        """True when a dispatcher resolved the alert on the map."""
        row = self.s.execute(self._resolved, (alert_id,)).one()
        return row is not None and row.dispatcher_status == "resolved"

    def queue_load(self) -> list[QueuedAlert]:
        return [
            QueuedAlert(r.severity_rank, r.opened_at_ms, r.alert_id, r.patient_id, r.lat, r.lon, r.severity,
                        r.enqueued_at_ms or 0)
            for r in self.s.execute("SELECT * FROM dispatch_queue")
        ]


def row_to_assignment(r: Any) -> Assignment:
    pl = GeoPoint(lat=r.patient_lat, lon=r.patient_lon) if r.patient_lat is not None else None
    ul = GeoPoint(lat=r.unit_lat, lon=r.unit_lon) if r.unit_lat is not None else None
    return Assignment(
        assignment_id=r.assignment_id, alert_id=r.alert_id, unit_id=r.unit_id, patient_id=r.patient_id,
        status=AssignmentStatus(r.status), severity=Severity(r.severity), distance_m=r.distance_m or 0.0,
        eta_s=r.eta_s or 0.0, assigned_at_ms=r.assigned_at_ms, updated_at_ms=r.updated_at_ms,
        attempt=r.attempt or 0, patient_location=pl, unit_location=ul,
    )


def wait_all(futures: Iterable[Any]) -> None:
    for f in futures:
        f.result()
