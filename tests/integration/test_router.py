"""Router on the real Kafka and Cassandra: nearest unit, ack timeout, racing routers, queue order.

The dispatch tables live in a throw-away keyspace so the tests never see (or disturb) the
units of a running demo; alerts and positions go through the real Kafka topics with ids
unique to each test run.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Iterator

import pytest

from emon_core.contracts import (
    Alert, Assignment, AssignmentStatus, GeoPoint, Severity, UnitPosition, UnitStatus, decode,
)
from emon_core.settings import CassandraSettings, KafkaSettings, load
from emon_core.topics import KAFKA_ALERTS, KAFKA_ASSIGNMENTS, KAFKA_UNIT_POSITIONS

pytestmark = pytest.mark.services

KEYSPACE = "emon_it_dispatch"
C = (48.2082, 16.3738)


@pytest.fixture(scope="module")
def session(cassandra_settings: CassandraSettings) -> Iterator[Any]:
    from paramedic_router.claims import apply_schema

    cfg = load(CassandraSettings)
    from emon_core.adapters.cassandra import connect as adapter_connect

    _cluster, s = adapter_connect(cfg, keyspace=None, timeout_s=60)
    s.execute(f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = {cfg.replication}")
    s.set_keyspace(KEYSPACE)
    apply_schema(s)
    yield s
    s.cluster.shutdown()


@pytest.fixture()
def clean(session: Any) -> Any:
    for t in ("units", "unit_positions", "unit_status_log", "assignments_by_alert", "assignments_by_unit",
              "dispatch_queue"):
        session.execute(f"TRUNCATE {t}")
    return session


@pytest.fixture(scope="module")
def kafka(kafka_settings: KafkaSettings) -> KafkaSettings:
    return kafka_settings


def register(store: Any, units: dict[str, tuple[float, float]]) -> None:
    for uid, (lat, lon) in units.items():
        assert store.register_unit(uid, lat, lon)


class Watch:
    """Reads assignments from now on, collected in a list."""

    def __init__(self, kafka: KafkaSettings) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.c = Consumer(kafka.consumer_config(f"it-watch-{uuid.uuid4().hex[:8]}"))
        md = self.c.list_topics(KAFKA_ASSIGNMENTS, timeout=10).topics[KAFKA_ASSIGNMENTS]
        parts = []
        for p in md.partitions:
            _lo, hi = self.c.get_watermark_offsets(TopicPartition(KAFKA_ASSIGNMENTS, p), timeout=10)
            parts.append(TopicPartition(KAFKA_ASSIGNMENTS, p, hi))
        self.c.assign(parts)
        self.seen: list[Assignment] = []

    def until(self, pred: Any, timeout: float = 20.0, prefix: str = "") -> list[Assignment]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.c.consume(100, timeout=0.2):
                if m.error() is None:
                    a = decode(m.value(), Assignment)
                    if a.alert_id.startswith(prefix):
                        self.seen.append(a)
            mine = self.seen
            if pred(mine):
                return mine
        raise AssertionError(f"condition not met in {timeout} s; saw {[(a.alert_id, a.unit_id, a.status.value) for a in self.seen]}")

    def close(self) -> None:
        self.c.close()


def producer(kafka: KafkaSettings) -> Any:
    from confluent_kafka import Producer

    return Producer(kafka.producer_config())


def send_alert(p: Any, alert_id: str, sev: Severity, lat: float, lon: float, opened: int | None = None) -> None:
    t = opened or int(time.time() * 1000)
    a = Alert(alert_id=alert_id, patient_id="pat-it", episode_id=alert_id, severity=sev, title="it", opened_at_ms=t,
              updated_at_ms=t, needs_unit=sev.needs_unit, location=GeoPoint(lat=lat, lon=lon),
              trigger_event_id=alert_id)
    p.produce(KAFKA_ALERTS, key=b"pat-it", value=a.encode())
    p.flush(10)


def send_position(p: Any, unit_id: str, status: UnitStatus, lat: float = C[0], lon: float = C[1]) -> None:
    pos = UnitPosition(unit_id=unit_id, lat=lat, lon=lon, status=status, time_ms=int(time.time() * 1000))
    p.produce(KAFKA_UNIT_POSITIONS, key=unit_id.encode(), value=pos.encode())
    p.flush(10)


class RunningRouter:
    def __init__(self, session: Any, kafka: KafkaSettings, **cfg: Any) -> None:
        from paramedic_router.claims import DispatchStore
        from paramedic_router.service import RouterService
        from paramedic_router.settings import RouterSettings

        settings = RouterSettings(group_id=f"it-router-{uuid.uuid4().hex[:8]}", start_latest=True, tick_s=0.1, **cfg)
        self.service = RouterService(settings, kafka, DispatchStore(session))
        self.thread = threading.Thread(target=self.service.run, kwargs={"max_seconds": 120}, daemon=True)

    def __enter__(self) -> "RunningRouter":
        self.thread.start()
        deadline = time.monotonic() + 40
        while not self.service.ready and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.service.ready, "router did not join its consumer group"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.service.stop()
        self.thread.join(15)


def test_nearest_unit_is_claimed_stored_and_published(clean: Any, kafka: KafkaSettings) -> None:
    from paramedic_router.claims import DispatchStore

    store = DispatchStore(clean)
    register(store, {"it-far": (C[0] + 0.05, C[1]), "it-near": (C[0] + 0.004, C[1] + 0.004),
                     "it-mid": (C[0] - 0.02, C[1])})
    run = uuid.uuid4().hex[:8]
    watch = Watch(kafka)
    p = producer(kafka)
    try:
        with RunningRouter(clean, kafka):
            t0 = time.monotonic()
            send_alert(p, f"it-{run}-a", Severity.CRITICAL, *C)
            got = watch.until(lambda s: any(a.status == AssignmentStatus.ASSIGNED for a in s), prefix=f"it-{run}")
            latency = time.monotonic() - t0
    finally:
        watch.close()
    a = got[0]
    assert a.unit_id == "it-near" and a.assignment_id == f"it-{run}-a:a0"
    assert 500 < a.distance_m < 650 and a.eta_s > 0
    assert latency < 5.0
    row = clean.execute("SELECT status, alert_id FROM units WHERE unit_id = 'it-near'").one()
    assert (row.status, row.alert_id) == ("assigned", f"it-{run}-a")
    assert store.assignments_for_alert(f"it-{run}-a")[0].unit_id == "it-near"
    log = list(clean.execute("SELECT new_status FROM unit_status_log WHERE unit_id = 'it-near'"))
    assert [r.new_status for r in log] == ["assigned", "available"]  # newest first


def test_reassigned_to_next_nearest_after_ack_timeout(clean: Any, kafka: KafkaSettings) -> None:
    from paramedic_router.claims import DispatchStore

    store = DispatchStore(clean)
    register(store, {"it-u1": (C[0] + 0.003, C[1]), "it-u2": (C[0] + 0.01, C[1])})
    run = uuid.uuid4().hex[:8]
    aid = f"it-{run}-t"
    watch = Watch(kafka)
    p = producer(kafka)
    try:
        with RunningRouter(clean, kafka, ack_timeout_s=4.0):
            send_alert(p, aid, Severity.CRITICAL, *C)
            watch.until(lambda s: any(a.attempt == 1 and a.status == AssignmentStatus.ASSIGNED for a in s),
                               timeout=20, prefix=aid)
            send_position(p, "it-u2", UnitStatus.ACKNOWLEDGED)
            watch.until(lambda s: any(a.unit_id == "it-u2" and a.status == AssignmentStatus.ACKNOWLEDGED
                                             for a in s), prefix=aid)
            time.sleep(5.0)  # past another timeout: the acknowledged unit keeps the job
            watch.until(lambda s: True, timeout=0.5, prefix=aid)
    finally:
        watch.close()
    steps = [(a.unit_id, a.status.value, a.attempt) for a in watch.seen]
    assert steps == [("it-u1", "assigned", 0), ("it-u1", "timed_out", 0), ("it-u2", "assigned", 1),
                     ("it-u2", "acknowledged", 1)]
    units = {r.unit_id: r.status for r in clean.execute("SELECT unit_id, status FROM units")}
    # it-u1 never reported after its assignment: offline (not sent again) until it reports
    assert units == {"it-u1": "offline", "it-u2": "acknowledged"}


def test_two_routers_racing_never_double_assign(clean: Any, kafka: KafkaSettings) -> None:
    """Two routers (own Cassandra connections) decide at once for 30 alerts at one spot;
    8 units: each unit ends up with exactly one alert and the losers fall back or queue."""
    from paramedic_router.claims import DispatchStore, connect
    from paramedic_router.queue import QueuedAlert
    from paramedic_router.dispatch import Router
    from paramedic_router.settings import RouterSettings

    register(DispatchStore(clean), {f"it-r{i}": (C[0] + 0.001 * i, C[1]) for i in range(8)})
    cfg = load(CassandraSettings).model_copy(update={"keyspace": KEYSPACE})
    sessions = [connect(cfg), connect(cfg)]
    published: list[Assignment] = []
    lock = threading.Lock()

    def pub(a: Assignment) -> None:
        with lock:
            published.append(a)

    routers = [Router(DispatchStore(s), pub, RouterSettings(claim_concurrency=4)) for s in sessions]
    for r in routers:
        r.load()  # both believe all 8 units are free
    barrier = threading.Barrier(2)

    def work(k: int) -> None:
        items = [QueuedAlert(0, i, f"race-{k}-{i}", "pat-it", C[0], C[1], "critical") for i in range(15)]
        barrier.wait()
        for it in items:
            routers[k].dispatch([(it, 0, set())])
        routers[k].flush_writes()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in sessions:
        s.cluster.shutdown()
    assigned = [a for a in published if a.status == AssignmentStatus.ASSIGNED]
    units = [a.unit_id for a in assigned]
    assert len(units) == len(set(units)) == 8, units
    rows = {r.unit_id: r.alert_id for r in clean.execute("SELECT unit_id, alert_id FROM units")}
    assert sorted(rows.values()) == sorted(a.alert_id for a in assigned)
    assert sum(r.counters["claim_lost"] for r in routers) >= 1  # they really raced
    assert sum(len(r.queue) for r in routers) == 30 - 8


def test_queue_drains_by_severity_then_age(clean: Any, kafka: KafkaSettings) -> None:
    from paramedic_router.claims import DispatchStore

    register(DispatchStore(clean), {"it-solo": (C[0] + 0.002, C[1])})
    run = uuid.uuid4().hex[:8]
    pre = f"it-{run}-q"
    watch = Watch(kafka)
    p = producer(kafka)
    now = int(time.time() * 1000)
    try:
        with RunningRouter(clean, kafka, ack_timeout_s=60.0):
            send_alert(p, f"{pre}-first", Severity.CRITICAL, *C, opened=now)
            watch.until(lambda s: len(s) == 1, prefix=pre)
            send_alert(p, f"{pre}-urgent-old", Severity.URGENT, *C, opened=now + 1)
            send_alert(p, f"{pre}-critical-new", Severity.CRITICAL, *C, opened=now + 3)
            send_alert(p, f"{pre}-urgent-new", Severity.URGENT, *C, opened=now + 2)
            time.sleep(1.0)
            n_jobs = 1
            while n_jobs < 4:
                for st in (UnitStatus.ON_SCENE, UnitStatus.AVAILABLE):
                    send_position(p, "it-solo", st)
                    time.sleep(0.3)
                n_jobs += 1
                watch.until(lambda s, n=n_jobs: sum(a.status == AssignmentStatus.ASSIGNED for a in s) == n, prefix=pre)
    finally:
        watch.close()
    order = [a.alert_id[len(pre) + 1:] for a in watch.seen if a.status == AssignmentStatus.ASSIGNED]
    assert order == ["first", "critical-new", "urgent-old", "urgent-new"]
    assert list(clean.execute("SELECT alert_id FROM dispatch_queue")) == []


def test_earlier_load_tests_waiting_alerts_are_resolved_and_dropped(clean: Any) -> None:
    """`emon loadtest` resolves earlier runs' alerts still waiting for a unit; the router
    (restarted on the same tables) then serves only the others."""
    from paramedic_router.claims import DispatchStore
    from paramedic_router.dispatch import Router
    from paramedic_router.queue import QueuedAlert
    from paramedic_router.settings import RouterSettings
    from simulators.loadtest.cleanup import resolve_leftover_queue

    store = DispatchStore(clean)
    run = uuid.uuid4().hex[:8]
    now = int(time.time() * 1000)
    waiting = {f"it-{run}-old-lt": "pat-01234", f"it-{run}-demo": "pat-00042"}
    for k, (aid, pid) in enumerate(waiting.items()):
        store.queue_put(QueuedAlert(Severity.CRITICAL.rank, now + k, aid, pid, *C, "critical")).result()
    # an earlier run's alert with a unit en route to it (a later run reuses that unit id)
    held = f"alert:pat-01235:dev-01235:{run}"
    register(store, {"it-reused": (C[0] + 0.002, C[1])})
    asg = Assignment(assignment_id=f"{held}:a0", alert_id=held, unit_id="it-reused", patient_id="pat-01235",
                     status=AssignmentStatus.EN_ROUTE, severity=Severity.CRITICAL, distance_m=500, eta_s=80,
                     assigned_at_ms=now - 600_000, updated_at_ms=now - 590_000,
                     patient_location=GeoPoint(lat=C[0], lon=C[1]))
    assert store.claim("it-reused", held, asg.assignment_id, now - 600_000)
    assert store.advance("it-reused", asg.assignment_id, UnitStatus.EN_ROUTE, now - 590_000)
    for f in store.write_assignment_async(asg):
        f.result()
    left = resolve_leftover_queue(load(CassandraSettings), 1_000, 3_000, session=clean)
    assert left == {"resolved": 1, "resolved_holding_units": 1, "others_waiting": 1}
    assert store.resolved_by_dispatcher(held)
    assert store.resolved_by_dispatcher(f"it-{run}-old-lt") and not store.resolved_by_dispatcher(f"it-{run}-demo")
    audit = [r for r in clean.execute("SELECT alert_id, username, action FROM map_audit_log")
             if r.alert_id == f"it-{run}-old-lt"]
    assert [(r.username, r.action) for r in audit] == [("loadtest", "resolved")]

    sent: list[Assignment] = []
    router = Router(store, sent.append, RouterSettings())
    router.load()
    register(store, {"it-fresh": (C[0] + 0.001, C[1])})
    router.on_position(UnitPosition(unit_id="it-fresh", lat=C[0] + 0.001, lon=C[1], status=UnitStatus.AVAILABLE,
                                    time_ms=now))
    router.tick()
    router.flush_writes()
    assert [a.alert_id for a in sent] == [f"it-{run}-demo"]
    assert list(clean.execute("SELECT alert_id FROM dispatch_queue")) == []
    # the reused unit reports in, free: released from the old alert, and nobody else is sent there
    router.on_position(UnitPosition(unit_id="it-reused", lat=C[0] + 0.002, lon=C[1], status=UnitStatus.AVAILABLE,
                                    time_ms=now))
    router.flush_writes()
    assert [(a.alert_id, a.status) for a in sent[1:]] == [(held, AssignmentStatus.RELEASED)]
    assert store.unit_status("it-reused")[0] == UnitStatus.AVAILABLE
