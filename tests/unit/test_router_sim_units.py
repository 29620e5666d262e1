"""Simulated paramedic units (``emon sim units``): lifecycle, geometry, deterministic bases."""

from __future__ import annotations

import math
import random

from emon_core.contracts import Assignment, AssignmentStatus, GeoPoint, Severity
from simulators.units import SimUnit, base_of, step_towards


def _assignment(status: AssignmentStatus = AssignmentStatus.ASSIGNED, aid: str = "x:a0") -> Assignment:
    return Assignment(assignment_id=aid, alert_id="x", unit_id="unit-0001", patient_id="p", status=status,
                      severity=Severity.CRITICAL, distance_m=1000, eta_s=100, assigned_at_ms=1, updated_at_ms=1,
                      patient_location=GeoPoint(lat=48.21, lon=16.37))


def _run(u: SimUnit, seconds: int, rng: random.Random, start: float = 0.0) -> list[str]:
    seq = []
    for t in range(int(start) + 1, int(start) + seconds + 1):
        u.advance(float(t), 1.0, 12.5, 30.0, rng)
        if not seq or seq[-1] != u.status:
            seq.append(u.status)
    return seq


def test_unit_serves_assignment_and_returns_to_base():
    u = SimUnit("unit-0001", (48.2, 16.37), 48.2, 16.37)
    u.on_assignment(_assignment(), 0.0, 1.0)
    seq = _run(u, 400, random.Random(0))
    assert seq == ["acknowledged", "en_route", "on_scene", "available"]
    assert u.counts == {"positions": 0, "assignments": 1, "acks": 1, "completed": 1, "released": 0}
    assert math.dist((u.lat, u.lon), u.base) < 0.01


def test_unit_that_never_acks_and_release():
    u = SimUnit("unit-0001", (48.2, 16.37), 48.2, 16.37, acks=False)
    u.on_assignment(_assignment(), 0.0, 1.0)
    assert _run(u, 20, random.Random(0)) == ["assigned"]
    u.on_assignment(_assignment(AssignmentStatus.TIMED_OUT), 20.0, 1.0)
    assert u.status == "available" and u.job is None and u.counts["released"] == 1


def test_step_towards_and_bases():
    lat, lon, rem, heading = step_towards(48.2, 16.37, 48.21, 16.37, 500)
    assert 0 < rem < 700 and abs(heading) < 1e-6 and lat > 48.2
    assert step_towards(48.2, 16.37, 48.2001, 16.37, 500)[:3] == (48.2001, 16.37, 0.0)
    assert base_of(5, (48.2, 16.37), 8.0) == base_of(5, (48.2, 16.37), 8.0)
    for n in range(50):
        b = base_of(n, (48.2, 16.37), 8.0)
        assert math.hypot((b[0] - 48.2) * 111.2, (b[1] - 16.37) * 111.2 * math.cos(math.radians(48.2))) <= 8.05
