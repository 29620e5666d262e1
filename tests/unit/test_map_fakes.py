"""In-memory stand-ins for the map's Cassandra repository (no tests here: helpers for test_map_*)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from emon_core.contracts import Alert, Assignment, EcgStrip, GeoPoint, Severity, UnitStatus


class FakeRepo:
    def __init__(self) -> None:
        self.users: dict[str, SimpleNamespace] = {}
        self.audits: list[dict[str, Any]] = []
        self.states: dict[str, dict[str, Any]] = {}
        self.assignments: dict[str, list[Assignment]] = {}
        self.unit_rows: dict[str, dict[str, Any]] = {}
        self.patient_rows: dict[str, dict[str, Any]] = {}

    def ping(self) -> bool:
        return True

    def get_user(self, username: str) -> Any:
        return self.users.get(username)

    def create_user(self, username: str, password_hash: str, role: str) -> bool:
        if username in self.users:
            return False
        self.users[username] = SimpleNamespace(username=username, password_hash=password_hash, role=role,
                                               disabled=False)
        return True

    def list_users(self) -> list[dict[str, Any]]:
        return [{"username": u.username, "role": u.role, "disabled": u.disabled, "created_at_ms": 0}
                for u in self.users.values()]

    def audit(self, username: str, role: str, action: str, alert_id: str | None, detail: str = "") -> None:
        self.audits.append({"at_ms": 0, "username": username, "role": role, "action": action, "alert_id": alert_id,
                            "detail": detail})

    def audit_recent(self, limit: int = 200) -> list[dict[str, Any]]:
        return list(reversed(self.audits))[:limit]

    def alert_state(self, alert_id: str) -> dict[str, Any] | None:
        return self.states.get(alert_id)

    def all_alert_states(self) -> dict[str, dict[str, Any]]:
        return dict(self.states)

    def acknowledge(self, alert_id: str, username: str) -> None:
        self.states.setdefault(alert_id, {}).update(dispatcher_status="acknowledged", acknowledged_by=username,
                                                    acknowledged_at_ms=1)

    def resolve(self, alert_id: str, username: str) -> None:
        self.states.setdefault(alert_id, {}).update(dispatcher_status="resolved", resolved_by=username,
                                                    resolved_at_ms=2)

    def assignments_for_alert(self, alert_id: str) -> list[Assignment]:
        return list(self.assignments.get(alert_id, []))

    def assignments_for_unit(self, unit_id: str, limit: int = 50) -> list[Assignment]:
        return [a for lst in self.assignments.values() for a in lst if a.unit_id == unit_id][:limit]

    def units(self) -> list[dict[str, Any]]:
        return list(self.unit_rows.values())

    def unit(self, unit_id: str) -> dict[str, Any] | None:
        return self.unit_rows.get(unit_id)

    def register_unit(self, unit_id: str, crew: str, lat: float, lon: float, username: str) -> bool:
        if unit_id in self.unit_rows:
            return False
        self.unit_rows[unit_id] = {"unit_id": unit_id, "crew": crew, "status": UnitStatus.AVAILABLE, "lat": lat,
                                   "lon": lon, "base_lat": lat, "base_lon": lon}
        return True

    def set_unit_idle_status(self, unit_id: str, old: UnitStatus, new: UnitStatus, username: str) -> bool:
        u = self.unit_rows.get(unit_id)
        if u is None or u["status"] != old:
            return False
        u["status"] = new
        return True

    def patient(self, patient_id: str) -> dict[str, Any] | None:
        return self.patient_rows.get(patient_id)

    def patients(self, limit: int = 5000) -> list[dict[str, Any]]:
        return list(self.patient_rows.values())[:limit]


def sample_strip(fs: float = 250.0, seconds: float = 6.0) -> EcgStrip:
    """A synthetic, clinically plausible strip (sinus with a run of wide beats)."""
    import math

    n = int(fs * seconds)
    out, marks = [], []
    beat_every = int(fs * 0.8)
    for i in range(n):
        t = i % beat_every
        wide = (i // beat_every) in (3, 4, 5)
        v = 0.0
        if wide:
            v += 1400 * math.exp(-((t - 40) / 14.0) ** 2) - 500 * math.exp(-((t - 75) / 18.0) ** 2)
        else:
            v += 120 * math.exp(-((t - 10) / 8.0) ** 2) + 1100 * math.exp(-((t - 40) / 3.2) ** 2) \
                - 180 * math.exp(-((t - 46) / 3.0) ** 2) + 260 * math.exp(-((t - 110) / 16.0) ** 2)
        out.append(int(v))
        if t == 40:
            marks.append(i)
    return EcgStrip(fs_hz=fs, start_sample_index=0, start_time_ms=1_700_000_000_000, samples_uv=out, marks=marks)


def sample_alert(alert_id: str = "dev-00001:v_run:1000", severity: Severity = Severity.CRITICAL,
                 lat: float = 48.2100, lon: float = 16.3700, opened: int = 1_700_000_000_000,
                 strip: bool = True, version: int = 0, patient: str = "pat-00001") -> Alert:
    return Alert(alert_id=alert_id, patient_id=patient, episode_id=alert_id, severity=severity,
                 title="Ventricular tachycardia" if severity == Severity.CRITICAL else "Frequent ectopy",
                 reasons=["run of 8 ventricular beats at 176 bpm", "history: prior MI"], version=version,
                 opened_at_ms=opened, updated_at_ms=opened, needs_unit=severity.needs_unit,
                 location=GeoPoint(lat=lat, lon=lon), trigger_event_id=alert_id, event_ids=[alert_id],
                 rate_bpm=176.0, strip=sample_strip() if strip else None)
