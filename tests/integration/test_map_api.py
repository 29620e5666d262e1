"""Map REST API against the real Cassandra and Kafka: 401/403 on every route, bad input,
live alerts from Kafka, dispatcher actions stored, audited and sent to the router."""

from __future__ import annotations

import time
import uuid
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from emon_core.contracts import (
    Alert, Assignment, AssignmentStatus, EcgStrip, GeoPoint, Severity, decode,
)
from emon_core.settings import CassandraSettings, KafkaSettings, load
from emon_core.topics import KAFKA_ALERTS, KAFKA_ASSIGNMENTS

pytestmark = pytest.mark.services

KEYSPACE = "emon_it_map"
PASSWORD = "it-password-0123456789"


@pytest.fixture(scope="module")
def repo(cassandra_settings: CassandraSettings, kafka_settings: KafkaSettings) -> Iterator[Any]:
    from map_ui.auth import hash_password
    from map_ui.repository import Repository
    from paramedic_router.claims import apply_schema

    cfg = load(CassandraSettings)
    from emon_core.adapters.cassandra import connect as adapter_connect

    _cluster, s = adapter_connect(cfg, keyspace=None, timeout_s=60)
    s.execute(f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = {cfg.replication}")
    s.set_keyspace(KEYSPACE)
    apply_schema(s)
    r = Repository(s)
    for name, role in (("it-disp", "dispatcher"), ("it-admin", "admin")):
        r.put_user(name, hash_password(PASSWORD), role)
    yield r
    s.cluster.shutdown()


@pytest.fixture(scope="module")
def client(repo: Any, tmp_path_factory: Any) -> Iterator[TestClient]:
    import os

    from map_ui.app import create_app
    from map_ui.settings import MapSettings

    # a private state dir for this module only (restored after: later tests use the real one)
    with pytest.MonkeyPatch.context() as mp:
        if "EMON_STATE_DIR" not in os.environ:
            mp.setenv("EMON_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        app = create_app(MapSettings(secret_key="s" * 48, idle_timeout_s=300), repo=repo, kafka=load(KafkaSettings),
                         live=True)
        with TestClient(app, base_url="https://testserver") as c:
            yield c


def login(c: TestClient, user: str) -> dict[str, str]:
    c.cookies.clear()
    r = c.post("/login", data={"username": user, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    return {"X-CSRF-Token": c.get("/api/me").json()["csrf_token"]}


def publish_alert(alert_id: str, severity: Severity = Severity.CRITICAL) -> Alert:
    from confluent_kafka import Producer

    t = int(time.time() * 1000)
    a = Alert(alert_id=alert_id, patient_id="pat-it", episode_id=alert_id, severity=severity, title="VT run",
              opened_at_ms=t, updated_at_ms=t, needs_unit=True, location=GeoPoint(lat=48.21, lon=16.37),
              trigger_event_id=alert_id, strip=EcgStrip(fs_hz=250, start_sample_index=0, start_time_ms=t,
                                                          samples_uv=[0, 500, 1000, 500, 0] * 100))
    p = Producer(load(KafkaSettings).producer_config())
    p.produce(KAFKA_ALERTS, key=b"pat-it", value=a.encode())
    p.flush(10)
    return a


def wait_for(c: TestClient, alert_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for v in c.get("/api/alerts", params={"limit": 5000}).json():  # a dev Kafka may hold 500+ older open alerts
            if v["alert"]["alert_id"] == alert_id:
                return v
        time.sleep(0.1)
    raise AssertionError(f"{alert_id} not listed within {timeout} s")


ROUTES = [("GET", "/api/me"), ("GET", "/api/alerts"), ("GET", "/api/alerts/x1"), ("GET", "/api/alerts/x1/strip"),
          ("GET", "/api/alerts/x1/strip.svg"), ("POST", "/api/alerts/x1/acknowledge"),
          ("POST", "/api/alerts/x1/resolve"), ("POST", "/api/alerts/x1/reassign"), ("GET", "/api/patients"),
          ("GET", "/api/patients/p1"), ("GET", "/api/units"), ("GET", "/api/units/u1"), ("POST", "/api/units"),
          ("POST", "/api/units/u1/status"), ("GET", "/api/assignments"), ("GET", "/api/users"),
          ("POST", "/api/users"), ("GET", "/api/audit"), ("GET", "/api/stream"), ("GET", "/openapi.json"),
          ("GET", "/docs")]
ADMIN_ONLY = [("GET", "/api/users", None), ("POST", "/api/users", {"username": "zed", "password": "x" * 12,
                                                                 "role": "admin"}),
              ("GET", "/api/audit", None), ("POST", "/api/units", {"unit_id": "it-u", "base_lat": 1, "base_lon": 1}),
              ("POST", "/api/units/it-u/status", {"status": "offline"})]


def test_unauthenticated_gets_401_everywhere(client: TestClient) -> None:
    client.cookies.clear()
    bad = [(m, p, client.request(m, p).status_code) for m, p in ROUTES]
    assert [b for b in bad if b[2] != 401] == []
    for page in ("/", "/alerts", "/admin/users", "/admin/units", "/admin/audit", "/alerts/x1"):
        r = client.get(page, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_dispatcher_gets_403_on_admin_actions(client: TestClient) -> None:
    h = login(client, "it-disp")
    for method, path, body in ADMIN_ONLY:
        assert client.request(method, path, json=body, headers=h).status_code == 403, path
    for page in ("/admin/users", "/admin/units", "/admin/audit"):
        assert client.get(page).status_code == 403


def test_admin_allowed(client: TestClient) -> None:
    h = login(client, "it-admin")
    uid = f"it-{uuid.uuid4().hex[:6]}"
    assert client.post("/api/units", json={"unit_id": uid, "base_lat": 48.2, "base_lon": 16.3}, headers=h).status_code == 201
    r = client.post(f"/api/units/{uid}/status", json={"status": "offline"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "offline"
    assert any(u["username"] == "it-disp" for u in client.get("/api/users").json())
    assert client.get("/openapi.json").json()["info"]["title"] == "E-Monitor dispatcher API"
    assert "swagger-ui-bundle.js" in client.get("/docs").text


def test_bad_input_is_4xx_never_5xx(client: TestClient) -> None:
    h = login(client, "it-admin")
    cases = [
        ("GET", "/api/alerts/has space", None, None),
        ("GET", "/api/alerts?limit=0", None, None),
        ("GET", "/api/alerts?limit=ten", None, None),
        ("GET", "/api/assignments?unit_id=%2F%2F", None, None),
        ("GET", "/api/units/" + "u" * 70, None, None),
        ("POST", "/api/users", {"username": "X", "password": "1", "role": "root"}, None),
        ("POST", "/api/units", {"unit_id": "bad id", "base_lat": 100, "base_lon": 0}, None),
        ("POST", "/api/units", None, b"\xff\xfe not json"),
        ("POST", "/api/units/it-u/status", {"status": "en_route"}, None),
        ("POST", "/api/alerts/x1/launch", None, None),
    ]
    for method, path, body, raw in cases:
        kw: dict[str, Any] = {"headers": {**h, "content-type": "application/json"}} if raw else {"headers": h}
        r = client.request(method, path, json=body, content=raw, **kw) if raw else client.request(method, path, json=body, **kw)
        assert r.status_code in (400, 422), (path, r.status_code, r.text[:200])
    assert client.get("/api/alerts/no-such-alert").status_code == 404
    assert client.get("/api/units/no-such-unit").status_code == 404


def test_alert_from_kafka_listed_and_actions_audited(client: TestClient, repo: Any) -> None:
    from confluent_kafka import Consumer, TopicPartition

    h = login(client, "it-disp")
    aid = f"it-map-{uuid.uuid4().hex[:8]}"
    publish_alert(aid)
    v = wait_for(client, aid)
    assert v["has_strip"] and v["alert"]["strip"] is None and v["dispatcher"]["status"] == "open"
    assert client.get(f"/api/alerts/{aid}/strip").json()["fs_hz"] == 250
    assert client.get(f"/api/alerts/{aid}/strip.svg").text.startswith("<svg")
    assert client.get(f"/api/alerts/{aid}").json()["alert"]["alert_id"] == aid

    # a router assignment, then the dispatcher's actions
    c = Consumer(load(KafkaSettings).consumer_config(f"it-map-watch-{aid}"))
    md = c.list_topics(KAFKA_ASSIGNMENTS, timeout=10).topics[KAFKA_ASSIGNMENTS]
    c.assign([TopicPartition(KAFKA_ASSIGNMENTS, p, c.get_watermark_offsets(TopicPartition(KAFKA_ASSIGNMENTS, p))[1])
              for p in md.partitions])
    from confluent_kafka import Producer

    t = int(time.time() * 1000)
    asg = Assignment(assignment_id=f"{aid}:a0", alert_id=aid, unit_id="unit-0001", patient_id="pat-it",
                     status=AssignmentStatus.ASSIGNED, severity=Severity.CRITICAL, distance_m=900, eta_s=140,
                     assigned_at_ms=t, updated_at_ms=t)
    p = Producer(load(KafkaSettings).producer_config())
    p.produce(KAFKA_ASSIGNMENTS, key=aid.encode(), value=asg.encode())
    p.flush(10)
    deadline = time.monotonic() + 10
    while wait_for(client, aid)["assignment"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.post(f"/api/alerts/{aid}/acknowledge").status_code == 403  # no CSRF token
    assert client.post(f"/api/alerts/{aid}/acknowledge", headers=h).status_code == 200
    assert client.post(f"/api/alerts/{aid}/reassign", headers=h).status_code == 200
    requests = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not requests:
        requests = [decode(m.value(), Assignment) for m in c.consume(100, timeout=0.3) if m.error() is None]
        requests = [a for a in requests if a.alert_id == aid and a.status == AssignmentStatus.RELEASED]
    c.close()
    assert requests and requests[0].unit_id == "unit-0001"
    assert client.post(f"/api/alerts/{aid}/resolve", headers=h).status_code == 200
    state = repo.alert_state(aid)
    assert state["dispatcher_status"] == "resolved" and state["acknowledged_by"] == "it-disp"
    assert all(v["alert"]["alert_id"] != aid for v in client.get("/api/alerts").json())
    h = login(client, "it-admin")
    audit = [(e["username"], e["action"]) for e in client.get("/api/audit?limit=500").json() if e["alert_id"] == aid]
    for action in ("viewed", "acknowledged", "reassigned", "resolved"):
        assert ("it-disp", action) in audit
