"""Cassandra reads and writes for the map: users, audit log, units, assignments, patients."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from emon_core.contracts import Assignment, AssignmentStatus, GeoPoint, Severity, UnitStatus
from emon_core.settings import CassandraSettings

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


def connect(settings: CassandraSettings, *, wait_s: float = 30.0) -> Any:
    """A driver session on the keyspace through the shared adapter (bounded wait)."""
    from emon_core.adapters.cassandra import connect as adapter_connect

    _cluster, session = adapter_connect(settings, keyspace=settings.keyspace, timeout_s=wait_s)
    return session


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


class Repository:
    """Everything the map reads from or writes to Cassandra."""

    def __init__(self, session: Any) -> None:
        self.s = session
        p = session.prepare
        self._user_get = p("SELECT username, password_hash, role, disabled FROM map_users WHERE username = ?")
        self._user_put = p("INSERT INTO map_users (username, password_hash, role, disabled, created_at_ms) "
                           "VALUES (?, ?, ?, ?, ?)")
        self._user_new = p("INSERT INTO map_users (username, password_hash, role, disabled, created_at_ms) "
                           "VALUES (?, ?, ?, false, ?) IF NOT EXISTS")
        self._audit = p("INSERT INTO map_audit_log (day, at, at_ms, username, role, action, alert_id, detail) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        self._audit_day = p("SELECT at_ms, username, role, action, alert_id, detail FROM map_audit_log "
                            "WHERE day = ? LIMIT ?")
        self._state_get = p("SELECT * FROM dispatch_alert_state WHERE alert_id = ?")
        self._ack = p("UPDATE dispatch_alert_state SET dispatcher_status = 'acknowledged', acknowledged_by = ?, "
                      "acknowledged_at_ms = ?, updated_at_ms = ? WHERE alert_id = ?")
        self._resolve = p("UPDATE dispatch_alert_state SET dispatcher_status = 'resolved', resolved_by = ?, "
                          "resolved_at_ms = ?, updated_at_ms = ? WHERE alert_id = ?")
        self._asg_alert = p("SELECT * FROM assignments_by_alert WHERE alert_id = ?")
        self._asg_unit = p("SELECT * FROM assignments_by_unit WHERE unit_id = ? LIMIT ?")
        self._unit_get = p("SELECT * FROM units WHERE unit_id = ?")
        self._pos_get = p("SELECT * FROM unit_positions WHERE unit_id = ?")
        self._unit_new = p("INSERT INTO units (unit_id, crew, base_lat, base_lon, status, updated_at_ms) "
                           "VALUES (?, ?, ?, ?, 'available', ?) IF NOT EXISTS")
        self._unit_idle = p("UPDATE units SET status = ?, updated_at_ms = ? WHERE unit_id = ? IF status = ?")
        self._unit_log = p("INSERT INTO unit_status_log (unit_id, changed_at, changed_at_ms, old_status, new_status, "
                           "alert_id, assignment_id, reason) VALUES (?, ?, ?, ?, ?, null, null, ?)")
        self._unit_history = p("SELECT changed_at_ms, old_status, new_status, alert_id, reason FROM unit_status_log "
                               "WHERE unit_id = ? LIMIT ?")
        self._patients_ok = self._probe("SELECT * FROM patients LIMIT 1")
        self._alerts_ok = self._probe("SELECT alert_id FROM alerts_by_day WHERE day = 0 LIMIT 1")
        if self._alerts_ok:
            self._alerts_day = p("SELECT alert_id FROM alerts_by_day WHERE day = ? LIMIT ?")
            self._alert_json = p("SELECT alert_json FROM alerts WHERE alert_id = ?")
        self._patient_get = p("SELECT * FROM patients WHERE patient_id = ?") if self._patients_ok else None

    def _probe(self, cql: str) -> bool:
        try:
            self.s.execute(cql)
            return True
        except Exception:  # table of another component not there yet
            return False

    def ping(self) -> bool:
        try:
            self.s.execute("SELECT release_version FROM system.local")
            return True
        except Exception:  # noqa: BLE001 - health check reports, never raises
            return False

    # --- users & audit ---------------------------------------------------------------------
    def get_user(self, username: str) -> Any:
        return self.s.execute(self._user_get, (username,)).one()

    def create_user(self, username: str, password_hash: str, role: str) -> bool:
        return bool(self.s.execute(self._user_new, (username, password_hash, role, now_ms())).was_applied)

    def put_user(self, username: str, password_hash: str, role: str, disabled: bool = False) -> None:
        self.s.execute(self._user_put, (username, password_hash, role, disabled, now_ms()))

    def list_users(self) -> list[dict[str, Any]]:
        rows = self.s.execute("SELECT username, role, disabled, created_at_ms FROM map_users")
        return sorted(({"username": r.username, "role": r.role, "disabled": bool(r.disabled),
                        "created_at_ms": r.created_at_ms} for r in rows), key=lambda u: u["username"])

    def audit(self, username: str, role: str, action: str, alert_id: str | None, detail: str = "") -> None:
        at = now_ms()
        self.s.execute_async(self._audit, (_day(at), uuid.uuid1(), at, username, role, action, alert_id, detail[:500]))

    def audit_recent(self, limit: int = 200) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        day_ms = now_ms()
        for _ in range(7):
            rows = self.s.execute(self._audit_day, (_day(day_ms), limit - len(out)))
            out += [dict(r._asdict()) for r in rows]
            if len(out) >= limit:
                break
            day_ms -= 86_400_000
        return out

    # --- dispatcher state on alerts -------------------------------------------------------------
    def alert_state(self, alert_id: str) -> dict[str, Any] | None:
        row = self.s.execute(self._state_get, (alert_id,)).one()
        return None if row is None else dict(row._asdict())

    def all_alert_states(self) -> dict[str, dict[str, Any]]:
        return {r.alert_id: dict(r._asdict()) for r in self.s.execute("SELECT * FROM dispatch_alert_state")}

    def acknowledge(self, alert_id: str, username: str) -> None:
        t = now_ms()
        self.s.execute(self._ack, (username, t, t, alert_id))

    def resolve(self, alert_id: str, username: str) -> None:
        t = now_ms()
        self.s.execute(self._resolve, (username, t, t, alert_id))

    # --- assignments & units -------------------------------------------------------------------
    def assignments_for_alert(self, alert_id: str) -> list[Assignment]:
        rows = sorted(self.s.execute(self._asg_alert, (alert_id,)), key=lambda r: (r.attempt or 0, r.updated_at_ms))
        return [row_to_assignment(r) for r in rows]

    def assignments_for_unit(self, unit_id: str, limit: int = 50) -> list[Assignment]:
        return [row_to_assignment(r) for r in self.s.execute(self._asg_unit, (unit_id, limit))]

    def units(self) -> list[dict[str, Any]]:
        positions = {r.unit_id: r for r in self.s.execute("SELECT * FROM unit_positions")}
        return [self._unit_view(r, positions.get(r.unit_id)) for r in self.s.execute("SELECT * FROM units")]

    def unit(self, unit_id: str) -> dict[str, Any] | None:
        r = self.s.execute(self._unit_get, (unit_id,)).one()
        if r is None:
            return None
        return self._unit_view(r, self.s.execute(self._pos_get, (unit_id,)).one())

    def unit_history(self, unit_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return [dict(r._asdict()) for r in self.s.execute(self._unit_history, (unit_id, limit))]

    @staticmethod
    def _unit_view(r: Any, pos: Any) -> dict[str, Any]:
        lat = pos.lat if pos is not None and pos.lat is not None else r.base_lat
        lon = pos.lon if pos is not None and pos.lon is not None else r.base_lon
        try:
            status = UnitStatus(r.status or "offline")
        except ValueError:
            status = UnitStatus.OFFLINE
        return {"unit_id": r.unit_id, "crew": r.crew or "", "status": status, "lat": lat, "lon": lon,
                "base_lat": r.base_lat, "base_lon": r.base_lon, "alert_id": r.alert_id,
                "assignment_id": r.assignment_id, "updated_at_ms": r.updated_at_ms,
                "position_time_ms": pos.time_ms if pos is not None else None,
                "speed_mps": pos.speed_mps if pos is not None else None}

    def register_unit(self, unit_id: str, crew: str, lat: float, lon: float, username: str) -> bool:
        t = now_ms()
        ok = bool(self.s.execute(self._unit_new, (unit_id, crew, lat, lon, t)).was_applied)
        if ok:
            self.s.execute(self._unit_log, (unit_id, uuid.uuid1(), t, None, "available", f"registered by {username}"))
        return ok

    def set_unit_idle_status(self, unit_id: str, old: UnitStatus, new: UnitStatus, username: str) -> bool:
        """available <-> offline (a unit with an assignment is the router's)."""
        t = now_ms()
        ok = bool(self.s.execute(self._unit_idle, (new.value, t, unit_id, old.value)).was_applied)
        if ok:
            self.s.execute(self._unit_log, (unit_id, uuid.uuid1(), t, old.value, new.value, f"set by {username}"))
        return ok

    # --- alerts (hub's tables, when they exist) ---------------------------------------------------
    def recent_alerts(self, lookback_h: float, limit: int = 2000) -> list[Any]:
        """The hub's latest version of alerts opened within ``lookback_h`` (newest first)."""
        from emon_core.contracts import Alert, decode
        from emon_core.errors import ContractError

        if not self._alerts_ok:
            return []
        out: list[Any] = []
        today = now_ms() // 86_400_000
        for day in range(today, today - int(lookback_h // 24) - 2, -1):
            for r in self.s.execute(self._alerts_day, (day, limit - len(out))):
                row = self.s.execute(self._alert_json, (r.alert_id,)).one()
                if row is None or not row.alert_json:
                    continue
                try:
                    out.append(decode(row.alert_json, Alert))
                except ContractError as err:
                    log.warning("alert %s: stored JSON invalid: %s", r.alert_id, err)
            if len(out) >= limit:
                break
        return out

    # --- patients (hub's table, when it exists) --------------------------------------------------
    def patient(self, patient_id: str) -> dict[str, Any] | None:
        if self._patient_get is None:
            return None
        row = self.s.execute(self._patient_get, (patient_id,)).one()
        return None if row is None else patient_view(row._asdict())

    def patients(self, limit: int = 5000) -> list[dict[str, Any]]:
        if not self._patients_ok:
            return []
        return [patient_view(r._asdict()) for r in self.s.execute(f"SELECT * FROM patients LIMIT {int(limit)}")]


_LAT_KEYS = ("home_lat", "lat", "latitude")
_LON_KEYS = ("home_lon", "lon", "longitude")


_HIDDEN = ("source", "updated_at_ms")


def patient_view(row: dict[str, Any]) -> dict[str, Any]:
    """A patient row as plain JSON-able values, with ``home_lat``/``home_lon`` found by name."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if "password" in k or "secret" in k or k in _HIDDEN:
            continue
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, set, tuple)):
            out[k] = [str(x) for x in v]
        elif isinstance(v, dict):
            out[k] = {str(a): str(b) for a, b in v.items()}
        else:
            out[k] = str(v)
    if isinstance(row.get("birth_year"), int):
        out["age"] = time.gmtime().tm_year - row["birth_year"]
    out["home_lat"] = next((row[k] for k in _LAT_KEYS if row.get(k) is not None), None)
    out["home_lon"] = next((row[k] for k in _LON_KEYS if row.get(k) is not None), None)
    return out


def row_to_assignment(r: Any) -> Assignment:
    pl = GeoPoint(lat=r.patient_lat, lon=r.patient_lon) if r.patient_lat is not None else None
    ul = GeoPoint(lat=r.unit_lat, lon=r.unit_lon) if r.unit_lat is not None else None
    return Assignment(
        assignment_id=r.assignment_id, alert_id=r.alert_id, unit_id=r.unit_id, patient_id=r.patient_id,
        status=AssignmentStatus(r.status), severity=Severity(r.severity), distance_m=r.distance_m or 0.0,
        eta_s=r.eta_s or 0.0, assigned_at_ms=r.assigned_at_ms, updated_at_ms=r.updated_at_ms,
        attempt=r.attempt or 0, patient_location=pl, unit_location=ul,
    )
