"""In-memory stand-in for :class:`DispatchStore` with the same compare-and-set semantics
(unit tests and the decision-only part of the benchmark)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from emon_core.contracts import Assignment, UnitPosition, UnitStatus
from paramedic_router.claims import UnitRow
from paramedic_router.queue import QueuedAlert


@dataclass
class _Row:
    status: str
    alert_id: str | None = None
    assignment_id: str | None = None


class _Done:
    def __init__(self, applied: bool = True, row: Any = None) -> None:
        self.was_applied = applied
        self._row = row

    def result(self) -> "_Done":
        return self

    def one(self) -> Any:
        return self._row


class MemoryStore:
    def __init__(self) -> None:
        self.units: dict[str, _Row] = {}
        self.base: dict[str, tuple[float, float]] = {}
        self.positions: dict[str, tuple[float, float]] = {}
        self.position_time: dict[str, int] = {}
        self.updated_at: dict[str, int] = {}  # last status change (0: unknown)
        self.assignments: dict[str, dict[str, Assignment]] = {}
        self.status_log: list[tuple[str, str | None, str, str]] = []
        self.queue: dict[str, QueuedAlert] = {}
        self.homes: dict[str, tuple[float, float]] = {}
        self.resolved: set[str] = set()  # alerts a dispatcher resolved
        self._lock = threading.Lock()

    def add_unit(self, unit_id: str, lat: float, lon: float, status: UnitStatus = UnitStatus.AVAILABLE,
                 at_ms: int | None = None) -> None:
        self.units[unit_id] = _Row(status.value)
        self.base[unit_id] = (lat, lon)
        if at_ms is not None:
            self.updated_at[unit_id] = at_ms

    def load_units(self) -> list[UnitRow]:
        out = []
        for uid, r in self.units.items():
            lat, lon = self.positions.get(uid, self.base[uid])
            out.append(UnitRow(uid, "", *self.base[uid], UnitStatus(r.status), r.alert_id, r.assignment_id,
                               self.updated_at.get(uid, 0), lat, lon, self.position_time.get(uid)))
        return out

    def register_unit(self, unit_id: str, lat: float, lon: float, crew: str = "", at_ms: int | None = None) -> bool:
        with self._lock:
            if unit_id in self.units:
                return False
            self.add_unit(unit_id, lat, lon)
            return True

    def unit_status(self, unit_id: str) -> tuple[UnitStatus, str | None, str | None] | None:
        r = self.units.get(unit_id)
        return None if r is None else (UnitStatus(r.status), r.alert_id, r.assignment_id)

    def claim_async(self, unit_id: str, alert_id: str, assignment_id: str, at_ms: int) -> _Done:
        with self._lock:
            r = self.units[unit_id]
            if r.status != "available":
                return _Done(False, _Row(r.status, r.alert_id, r.assignment_id))
            r.status, r.alert_id, r.assignment_id = "assigned", alert_id, assignment_id
            return _Done(True)

    def claim(self, unit_id: str, alert_id: str, assignment_id: str, at_ms: int) -> bool:
        return self.claim_async(unit_id, alert_id, assignment_id, at_ms).was_applied

    def advance(self, unit_id: str, assignment_id: str, status: UnitStatus, at_ms: int) -> bool:
        with self._lock:
            r = self.units[unit_id]
            if r.assignment_id != assignment_id:
                return False
            r.status = status.value
            return True

    def release(self, unit_id: str, assignment_id: str, at_ms: int) -> bool:
        with self._lock:
            r = self.units[unit_id]
            if r.assignment_id != assignment_id:
                return False
            r.status, r.alert_id, r.assignment_id = "available", None, None
            return True

    def set_idle_status(self, unit_id: str, old: UnitStatus, new: UnitStatus, at_ms: int) -> bool:
        r = self.units[unit_id]
        if r.status != old.value:
            return False
        r.status = new.value
        return True

    def log_status(self, unit_id, old, new, alert_id, assignment_id, reason, at_ms) -> _Done:  # noqa: ANN001
        self.status_log.append((unit_id, old.value if old else None, new.value, reason))
        return _Done()

    def write_position(self, pos: UnitPosition) -> _Done:
        self.positions[pos.unit_id] = (pos.lat, pos.lon)
        self.position_time[pos.unit_id] = pos.time_ms
        return _Done()

    def write_assignment_async(self, a: Assignment) -> list[_Done]:
        self.assignments.setdefault(a.alert_id, {})[a.assignment_id] = a
        return [_Done()]

    def write_assignment(self, a: Assignment) -> None:
        self.write_assignment_async(a)

    def assignments_for_alert(self, alert_id: str) -> list[Assignment]:
        return list(self.assignments.get(alert_id, {}).values())

    def patient_home(self, patient_id: str) -> tuple[float, float] | None:
        return self.homes.get(patient_id)

    def queue_put(self, q: QueuedAlert) -> _Done:
        self.queue[q.alert_id] = q
        return _Done()

    def queue_delete(self, alert_id: str) -> _Done:
        self.queue.pop(alert_id, None)
        return _Done()

    def resolved_by_dispatcher(self, alert_id: str) -> bool:
        return alert_id in self.resolved

    def queue_load(self) -> list[QueuedAlert]:
        return list(self.queue.values())
