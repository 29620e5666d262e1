"""Router decisions against the in-memory store: nearest, timeout, queue, release, progress."""

from __future__ import annotations

import pytest

from emon_core.contracts import Alert, AlertStatus, AssignmentStatus, GeoPoint, Severity, UnitPosition, UnitStatus
from paramedic_router.memory_store import MemoryStore
from paramedic_router.dispatch import Router
from paramedic_router.settings import RouterSettings

C_LAT, C_LON = 48.2082, 16.3738


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000_000

    def __call__(self) -> int:
        return self.t


def make(units: dict[str, tuple[float, float]], timeout_s: float = 30.0):
    store = MemoryStore()
    for uid, (lat, lon) in units.items():
        store.add_unit(uid, lat, lon)
    sent = []
    clock = Clock()
    r = Router(store, sent.append, RouterSettings(ack_timeout_s=timeout_s), clock=clock)
    r.load()
    return r, store, sent, clock


def alert(aid: str, sev: Severity = Severity.CRITICAL, lat: float = C_LAT, lon: float = C_LON, version: int = 0,
          status: AlertStatus = AlertStatus.OPEN, opened: int = 1_700_000_000_000) -> Alert:
    return Alert(alert_id=aid, patient_id="pat-1", episode_id=aid, severity=sev, status=status, title="t",
                 version=version, opened_at_ms=opened, updated_at_ms=opened, needs_unit=sev.needs_unit,
                 location=GeoPoint(lat=lat, lon=lon), trigger_event_id=aid)


def pos(uid: str, status: UnitStatus, lat: float = C_LAT, lon: float = C_LON) -> UnitPosition:
    return UnitPosition(unit_id=uid, lat=lat, lon=lon, status=status, time_ms=1_700_000_000_000)


def test_nearest_unit_assigned_and_published():
    r, store, sent, _ = make({"u-far": (C_LAT + 0.05, C_LON), "u-near": (C_LAT + 0.01, C_LON)})
    r.on_alert(alert("a1"))
    assert [a.unit_id for a in sent] == ["u-near"]
    assert sent[0].status == AssignmentStatus.ASSIGNED and sent[0].eta_s > 0
    assert store.units["u-near"].status == "assigned"
    r.on_alert(alert("a1"))  # replay of the same version: nothing new
    assert len(sent) == 1


def test_advisory_not_dispatched():
    r, _, sent, _ = make({"u": (C_LAT, C_LON)})
    r.on_alert(alert("a1", Severity.ADVISORY))
    assert sent == []


def test_timeout_reassigns_to_next_nearest():
    r, store, sent, clock = make({"u1": (C_LAT + 0.01, C_LON), "u2": (C_LAT + 0.02, C_LON)}, timeout_s=5)
    r.on_alert(alert("a1"))
    clock.t += 4_000
    r.tick()
    assert len(sent) == 1
    clock.t += 2_000
    r.tick()
    assert [(a.unit_id, a.status, a.attempt) for a in sent[1:]] == [
        ("u1", AssignmentStatus.TIMED_OUT, 0), ("u2", AssignmentStatus.ASSIGNED, 1)]
    # u1 said nothing since it was assigned: offline (not sent again) until it reports
    assert store.units["u1"].status == "offline" and store.units["u2"].status == "assigned"
    r.on_position(pos("u1", UnitStatus.AVAILABLE))
    assert store.units["u1"].status == "available"


def test_a_unit_that_reports_but_does_not_acknowledge_stays_available():
    r, store, sent, clock = make({"u1": (C_LAT + 0.01, C_LON), "u2": (C_LAT + 0.02, C_LON)}, timeout_s=5)
    r.on_alert(alert("a1"))
    clock.t += 2_000
    r.on_position(pos("u1", UnitStatus.AVAILABLE))  # alive (a crew that did not answer in time)
    clock.t += 4_000
    r.tick()
    assert [(a.unit_id, a.status) for a in sent[1:]] == [("u1", AssignmentStatus.TIMED_OUT),
                                                           ("u2", AssignmentStatus.ASSIGNED)]
    assert store.units["u1"].status == "available"


def test_silent_units_are_not_sent_and_come_back_when_they_report():
    # u-ghost is nearest but stopped reporting (its tablet or simulator is gone)
    r, store, sent, clock = make({"u-ghost": (C_LAT + 0.001, C_LON), "u-live": (C_LAT + 0.03, C_LON)})
    clock.t += 30_000
    r.on_position(pos("u-live", UnitStatus.AVAILABLE, C_LAT + 0.03, C_LON))
    clock.t += 31_000  # 61 s since load: u-ghost past unit_stale_s (60), u-live heard 31 s ago
    r.tick()
    assert store.units["u-ghost"].status == "offline" and store.units["u-live"].status == "available"
    assert ("u-ghost", "available", "offline", "no report for 60 s") in store.status_log
    r.on_alert(alert("a1"))
    assert [a.unit_id for a in sent] == ["u-live"]
    r.on_position(pos("u-ghost", UnitStatus.AVAILABLE, C_LAT + 0.001, C_LON))  # back in service
    assert store.units["u-ghost"].status == "available"
    r.on_alert(alert("a2"))
    assert [a.unit_id for a in sent] == ["u-live", "u-ghost"]


@pytest.mark.parametrize("last_sign", ["report", "status_change"])
def test_after_a_restart_units_silent_since_long_before_are_offline_at_once(last_sign: str):
    # u-old: last report an hour before the restart, or (an earlier test's unit) never reported
    # and registered 10 minutes before; u-new reported a second before the restart
    clock = Clock()
    store = MemoryStore()
    if last_sign == "report":
        store.add_unit("u-old", C_LAT + 0.001, C_LON)
        store.position_time["u-old"] = clock.t - 3_600_000
    else:
        store.add_unit("u-old", C_LAT + 0.001, C_LON, at_ms=clock.t - 600_000)
    store.add_unit("u-new", C_LAT + 0.02, C_LON)
    store.position_time["u-new"] = clock.t - 1_000
    sent: list = []
    r = Router(store, sent.append, RouterSettings(), clock=clock)
    r.load()
    r.tick()
    assert store.units["u-old"].status == "offline"
    r.on_alert(alert("a1"))
    assert [a.unit_id for a in sent] == ["u-new"]


def test_a_unit_en_route_that_reports_available_is_replaced():
    r, store, sent, clock = make({"u1": (C_LAT + 0.01, C_LON), "u2": (C_LAT + 0.02, C_LON)})
    r.on_alert(alert("a1"))
    r.on_position(pos("u1", UnitStatus.ACKNOWLEDGED))
    r.on_position(pos("u1", UnitStatus.EN_ROUTE))
    clock.t += 1_000
    r.on_position(pos("u1", UnitStatus.AVAILABLE))  # its app restarted: the job is gone
    assert [(a.unit_id, a.status, a.attempt) for a in sent[3:]] == [
        ("u1", AssignmentStatus.RELEASED, 0), ("u2", AssignmentStatus.ASSIGNED, 1)]
    assert store.units["u1"].status == "available" and store.units["u2"].status == "assigned"


def test_a_just_assigned_unit_reporting_available_keeps_the_job():
    # its periodic report left before it saw the assignment: the ack timeout decides, not this
    r, store, sent, _ = make({"u1": (C_LAT + 0.01, C_LON), "u2": (C_LAT + 0.02, C_LON)})
    r.on_alert(alert("a1"))
    r.on_position(pos("u1", UnitStatus.AVAILABLE))
    assert [a.status for a in sent] == [AssignmentStatus.ASSIGNED] and store.units["u1"].status == "assigned"


def test_no_next_unit_for_an_alert_resolved_while_the_router_could_not_hear_it():
    r, store, sent, clock = make({"u1": (C_LAT + 0.01, C_LON), "u2": (C_LAT + 0.02, C_LON)}, timeout_s=5)
    r.on_alert(alert("a1"))
    store.resolved.add("a1")  # resolved on the map through Cassandra only (router down at the time)
    clock.t += 6_000
    r.tick()
    assert [(a.unit_id, a.status) for a in sent] == [("u1", AssignmentStatus.ASSIGNED), ("u1", AssignmentStatus.TIMED_OUT)]
    assert store.units["u2"].status == "available"


def test_ack_stops_timeout_and_lifecycle_completes():
    r, store, sent, clock = make({"u1": (C_LAT, C_LON)}, timeout_s=5)
    r.on_alert(alert("a1"))
    r.on_position(pos("u1", UnitStatus.ACKNOWLEDGED))
    clock.t += 60_000
    r.tick()
    assert sent[-1].status == AssignmentStatus.ACKNOWLEDGED
    r.on_position(pos("u1", UnitStatus.EN_ROUTE))
    r.on_position(pos("u1", UnitStatus.ACKNOWLEDGED))  # stale report: never backwards
    r.on_position(pos("u1", UnitStatus.ON_SCENE))
    r.on_position(pos("u1", UnitStatus.AVAILABLE))
    assert [a.status for a in sent] == [AssignmentStatus.ASSIGNED, AssignmentStatus.ACKNOWLEDGED,
                                        AssignmentStatus.EN_ROUTE, AssignmentStatus.ON_SCENE,
                                        AssignmentStatus.COMPLETED]
    assert store.units["u1"].status == "available"
    assert [s[2] for s in store.status_log] == ["assigned", "acknowledged", "en_route", "on_scene", "available"]
    r.on_alert(alert("a1", version=3))  # later update of a served alert: no second unit
    assert len(sent) == 5


def test_queue_drains_by_severity_then_age():
    r, store, sent, clock = make({"u1": (C_LAT, C_LON)})
    r.on_alert(alert("first", Severity.CRITICAL))
    r.on_alert(alert("urgent-old", Severity.URGENT, opened=1))
    r.on_alert(alert("critical-late", Severity.CRITICAL, opened=5))
    r.on_alert(alert("urgent-new", Severity.URGENT, opened=2))
    assert len(r.queue) == 3 and len(store.queue) == 3
    order = []
    for _ in range(3):
        a = sent[-1]
        order.append(a.alert_id)
        for st in (UnitStatus.ON_SCENE, UnitStatus.AVAILABLE):
            r.on_position(pos("u1", st))
        r.tick()
    order.append(sent[-1].alert_id)
    assert order == ["first", "critical-late", "urgent-old", "urgent-new"]
    assert len(r.queue) == 0 and store.queue == {}


def test_queued_alert_resolved_on_the_map_is_dropped_not_served():
    r, store, sent, _ = make({"u1": (C_LAT, C_LON)})
    r.on_alert(alert("first"))
    r.on_alert(alert("waiting-resolved", opened=2))
    r.on_alert(alert("waiting", opened=3))
    store.resolved.add("waiting-resolved")  # a dispatcher resolved it while no unit was free
    for st in (UnitStatus.ON_SCENE, UnitStatus.AVAILABLE):
        r.on_position(pos("u1", st))
    r.tick()
    assert [a.alert_id for a in sent if a.status == AssignmentStatus.ASSIGNED] == ["first", "waiting"]
    assert "waiting-resolved" not in store.queue and r.counters["dropped_resolved"] == 1


def test_resolve_and_downgrade_release_the_unit():
    r, store, sent, _ = make({"u1": (C_LAT, C_LON), "u2": (C_LAT + 0.1, C_LON)})
    r.on_alert(alert("a1"))
    r.on_alert(alert("a2"))
    r.on_alert(alert("a1", status=AlertStatus.RESOLVED, version=1))
    r.on_alert(alert("a2", Severity.ADVISORY, version=1))
    ends = [(a.alert_id, a.status) for a in sent if a.status == AssignmentStatus.RELEASED]
    assert ends == [("a1", AssignmentStatus.RELEASED), ("a2", AssignmentStatus.RELEASED)]
    assert all(u.status == "available" for u in store.units.values())


def test_lost_claim_falls_back_to_next_unit():
    r, store, sent, _ = make({"u1": (C_LAT, C_LON), "u2": (C_LAT + 0.01, C_LON)})
    store.units["u1"].status = "assigned"  # another router won u1 meanwhile
    r.on_alert(alert("a1"))
    assert sent[0].unit_id == "u2" and r.counters["claim_lost"] == 1


def test_dispatcher_release_request_reassigns():
    r, store, sent, _ = make({"u1": (C_LAT, C_LON), "u2": (C_LAT + 0.01, C_LON)})
    r.on_alert(alert("a1"))
    req = sent[0].model_copy(update={"status": AssignmentStatus.RELEASED})
    r.on_assignment_event(req)
    assert [(a.unit_id, a.status) for a in sent[1:]] == [("u1", AssignmentStatus.RELEASED),
                                                         ("u2", AssignmentStatus.ASSIGNED)]
    r.on_assignment_event(sent[1])  # our own echo: ignored
    assert len(sent) == 3


def test_unknown_unit_registers_from_first_report():
    r, store, sent, _ = make({})
    r.on_position(pos("unit-0001", UnitStatus.AVAILABLE))
    r.on_alert(alert("a1"))
    assert sent[0].unit_id == "unit-0001"


def test_dispatcher_resolve_request_frees_unit_without_reassign():
    r, store, sent, _ = make({"u1": (C_LAT, C_LON), "u2": (C_LAT + 0.01, C_LON)})
    r.on_alert(alert("a1"))
    r.on_assignment_event(sent[0].model_copy(update={"status": AssignmentStatus.COMPLETED}))
    assert [(a.unit_id, a.status) for a in sent[1:]] == [("u1", AssignmentStatus.COMPLETED)]
    assert store.units["u1"].status == "available" and "a1" not in r.active
    r.on_alert(alert("a1", version=2))
    assert len(sent) == 2


def test_metrics_and_health_endpoints():
    import json
    import time
    import urllib.request
    from types import SimpleNamespace

    from paramedic_router.http import serve

    r, _, _, _ = make({"u1": (C_LAT, C_LON)})
    r.on_alert(alert("a1"))
    svc = SimpleNamespace(ready=True, last_loop=time.monotonic(), router=r)
    srv = serve("127.0.0.1", 0, r, lambda: (svc.ready, r.stats()))
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        text = urllib.request.urlopen(base + "/metrics").read().decode()
        assert 'emon_router_events_total{event="assigned"} 1.0' in text
        assert "emon_router_queue_length 0.0" in text and "emon_router_decision_seconds_count 1.0" in text
        health = json.loads(urllib.request.urlopen(base + "/healthz").read())
        assert health["ok"] is True and health["active"] == 1
    finally:
        srv.shutdown()
