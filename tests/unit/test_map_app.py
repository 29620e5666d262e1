"""Map app with an in-memory repository: auth (401/403/redirect), CSRF, sorting, actions, assets."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from emon_core.contracts import Assignment, AssignmentStatus, GeoPoint, Severity
from map_ui.app import create_app
from map_ui.auth import hash_password
from map_ui.settings import MapSettings
from test_map_fakes import FakeRepo, sample_alert

PASSWORD = "correct horse battery"


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[Assignment] = []

    def assignment(self, a: Assignment) -> None:
        self.sent.append(a)

    def close(self) -> None:
        pass


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("EMON_STATE_DIR", str(tmp_path))
    repo = FakeRepo()
    repo.create_user("ada", hash_password(PASSWORD), "dispatcher")
    repo.create_user("root", hash_password(PASSWORD), "admin")
    app = create_app(MapSettings(secret_key="k" * 40, idle_timeout_s=60), repo=repo, live=False)
    ctx = app.state.ctx
    ctx.publisher = FakePublisher()
    with TestClient(app, base_url="https://testserver") as client:
        yield client, repo, ctx


def login(client: TestClient, user: str = "ada", password: str = PASSWORD) -> str:
    r = client.post("/login", data={"username": user, "password": password, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client.get("/api/me").json()["csrf_token"]


API_ROUTES = [("GET", "/api/me"), ("GET", "/api/alerts"), ("GET", "/api/alerts/a1"), ("GET", "/api/alerts/a1/strip"),
              ("GET", "/api/alerts/a1/strip.svg"), ("POST", "/api/alerts/a1/acknowledge"),
              ("POST", "/api/alerts/a1/resolve"), ("POST", "/api/alerts/a1/reassign"), ("GET", "/api/patients"),
              ("GET", "/api/patients/p1"), ("GET", "/api/units"), ("GET", "/api/units/u1"), ("POST", "/api/units"),
              ("POST", "/api/units/u1/status"), ("GET", "/api/assignments"), ("GET", "/api/users"),
              ("POST", "/api/users"), ("GET", "/api/audit"), ("GET", "/api/stream"), ("GET", "/openapi.json"),
              ("GET", "/docs")]
PAGES = ["/", "/alerts", "/alerts/a1", "/alerts/a1/panel", "/admin/users", "/admin/units", "/admin/audit"]


def test_every_api_route_needs_a_session(env):
    client, _, _ = env
    for method, path in API_ROUTES:
        r = client.request(method, path)
        assert r.status_code == 401, (method, path, r.status_code)


def test_every_api_route_is_listed():
    app = create_app(MapSettings(secret_key="k" * 40), repo=FakeRepo(), live=False)
    paths = {(m, r.path) for r in app.routes if hasattr(r, "methods") for m in r.methods}
    api = {(m, p) for m, p in paths if p.startswith("/api/")}
    listed = {(m, re.sub(r"a1|u1|p1", "X", p)) for m, p in API_ROUTES}
    normalised = {(m, re.sub(r"\{[a-z_]+\}", "X", p)) for m, p in api}
    assert normalised - {(m, p.replace("/acknowledge", "/X").replace("/resolve", "/X").replace("/reassign", "/X"))
                         for m, p in listed} == set()


def test_pages_redirect_to_login(env):
    client, _, _ = env
    for path in PAGES:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path


def test_login_sets_secure_httponly_strict_cookie_and_wrong_password_fails(env):
    client, repo, _ = env
    r = client.post("/login", data={"username": "ada", "password": "nope"}, follow_redirects=False)
    assert r.status_code == 401 and "emon_session" not in r.headers.get("set-cookie", "")
    r = client.post("/login", data={"username": "ada", "password": PASSWORD}, follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    assert [a["action"] for a in repo.audits] == ["login_failed", "login"]
    assert repo.users["ada"].password_hash.startswith("$argon2")


def test_login_throttled_after_failures(env):
    client, _, _ = env
    for _ in range(5):
        client.post("/login", data={"username": "root", "password": "bad"})
    r = client.post("/login", data={"username": "root", "password": PASSWORD})
    assert r.status_code == 429


def test_cross_origin_login_refused(env):
    client, _, _ = env
    r = client.post("/login", data={"username": "ada", "password": PASSWORD},
                    headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert r.status_code == 403


def test_open_redirect_refused(env):
    client, _, _ = env
    r = client.post("/login", data={"username": "ada", "password": PASSWORD, "next": "//evil.example/x"},
                    follow_redirects=False)
    assert r.headers["location"] == "/"


def test_dispatcher_gets_403_on_admin_routes(env):
    client, _, _ = env
    csrf = login(client)
    h = {"X-CSRF-Token": csrf}
    assert client.get("/api/users").status_code == 403
    assert client.post("/api/users", json={"username": "eve", "password": "x" * 12, "role": "admin"},
                       headers=h).status_code == 403
    assert client.get("/api/audit").status_code == 403
    assert client.post("/api/units", json={"unit_id": "u9", "base_lat": 1, "base_lon": 1}, headers=h).status_code == 403
    assert client.post("/api/units/u1/status", json={"status": "offline"}, headers=h).status_code == 403
    for page in ("/admin/users", "/admin/units", "/admin/audit"):
        assert client.get(page).status_code == 403


def test_admin_can_manage_users_and_units(env):
    client, repo, _ = env
    csrf = login(client, "root")
    h = {"X-CSRF-Token": csrf}
    r = client.post("/api/users", json={"username": "bob", "password": "x" * 12, "role": "dispatcher"}, headers=h)
    assert r.status_code == 201
    assert client.post("/api/users", json={"username": "bob", "password": "x" * 12, "role": "dispatcher"},
                       headers=h).status_code == 409
    assert client.post("/api/units", json={"unit_id": "unit-0100", "crew": "A", "base_lat": 48.2, "base_lon": 16.3},
                       headers=h).status_code == 201
    r = client.post("/api/units/unit-0100/status", json={"status": "offline"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "offline"
    assert client.get("/admin/users").status_code == 200


def test_bad_input_is_422_never_500(env):
    client, _, _ = env
    csrf = login(client, "root")
    h = {"X-CSRF-Token": csrf}
    bad = [
        client.get("/api/alerts/bad id with spaces"),
        client.get("/api/alerts", params={"limit": "-1"}),
        client.get("/api/alerts", params={"limit": "abc"}),
        client.get("/api/units/" + "x" * 80),
        client.get("/api/assignments", params={"alert_id": "a b"}),
        client.post("/api/users", json={"username": "A", "password": "short", "role": "god"}, headers=h),
        client.post("/api/users", content=b"{not json", headers={**h, "content-type": "application/json"}),
        client.post("/api/units", json={"unit_id": "u/1", "base_lat": 91, "base_lon": 0}, headers=h),
        client.post("/api/units/u1/status", json={"status": "on_scene"}, headers=h),
        client.post("/api/alerts/a1/explode", headers=h),
    ]
    assert [r.status_code for r in bad] == [422] * len(bad)
    assert client.get("/api/alerts/unknown").status_code == 404


def test_csrf_required_for_actions(env):
    client, _, ctx = env
    ctx.state.apply_alert(sample_alert("a1"))
    login(client)
    assert client.post("/api/alerts/a1/acknowledge").status_code == 403
    assert client.post("/api/alerts/a1/acknowledge", headers={"X-CSRF-Token": "wrong"}).status_code == 403


def test_alerts_sorted_by_severity_then_age_and_actions(env):
    client, repo, ctx = env
    ctx.state.apply_alert(sample_alert("u-old", Severity.URGENT, opened=1_000))
    ctx.state.apply_alert(sample_alert("c-new", Severity.CRITICAL, opened=3_000))
    ctx.state.apply_alert(sample_alert("c-old", Severity.CRITICAL, opened=2_000))
    ctx.state.apply_alert(sample_alert("adv", Severity.ADVISORY, opened=500))
    asg = Assignment(assignment_id="c-old:a0", alert_id="c-old", unit_id="unit-0001", patient_id="pat-00001",
                     status=AssignmentStatus.ASSIGNED, severity=Severity.CRITICAL, distance_m=1200, eta_s=180,
                     assigned_at_ms=2_100, updated_at_ms=2_100, patient_location=GeoPoint(lat=48.21, lon=16.37))
    ctx.state.apply_assignment(asg)
    csrf = login(client)
    got = client.get("/api/alerts").json()
    assert [v["alert"]["alert_id"] for v in got] == ["c-old", "c-new", "u-old", "adv"]
    assert got[0]["alert"]["strip"] is None and got[0]["has_strip"] is True
    h = {"X-CSRF-Token": csrf}
    assert client.post("/api/alerts/c-old/acknowledge", headers=h).json()["ok"] is True
    r = client.post("/api/alerts/c-old/reassign", headers=h)
    assert r.status_code == 200 and ctx.publisher.sent[-1].status == AssignmentStatus.RELEASED
    assert client.post("/api/alerts/u-old/reassign", headers=h).status_code == 409
    client.post("/api/alerts/c-old/resolve", headers=h)
    assert ctx.publisher.sent[-1].status == AssignmentStatus.COMPLETED
    assert [v["alert"]["alert_id"] for v in client.get("/api/alerts").json()] == ["c-new", "u-old", "adv"]
    actions = [(a["action"], a["alert_id"]) for a in repo.audits if a["alert_id"]]
    assert actions == [("acknowledged", "c-old"), ("reassigned", "c-old"), ("resolved", "c-old")]
    client.get("/api/alerts/c-new")
    assert repo.audits[-1]["action"] == "viewed" and repo.audits[-1]["username"] == "ada"


def test_strip_and_pages_render(env):
    client, _, ctx = env
    ctx.state.apply_alert(sample_alert("a1"))
    login(client)
    svg = client.get("/api/alerts/a1/strip.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert client.get("/api/alerts/a1/strip").json()["fs_hz"] == 250
    for page in ("/", "/alerts", "/alerts/a1", "/alerts/a1/panel"):
        r = client.get(page)
        assert r.status_code == 200, page
    panel = client.get("/alerts/a1/panel").text
    assert 'class="ecg-strip"' in panel and 'id="btn-acknowledge"' in panel


def test_dashboard_loads_no_external_assets(env):
    client, _, _ = env
    login(client)
    html = client.get("/").text
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(r.startswith("/") for r in refs), [r for r in refs if not r.startswith("/")]
    assert "cdn" not in html.lower()
    for ref in refs:
        if ref.startswith("/static/"):
            assert client.get(ref).status_code == 200, ref


def test_logout_revokes_session(env):
    client, _, _ = env
    csrf = login(client)
    token = client.cookies.get("emon_session")
    r = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.set("emon_session", token, domain="testserver")
    assert client.get("/api/me").status_code == 401


def test_idle_session_expires(env, monkeypatch):
    import time as _time

    client, _, _ = env
    login(client)
    real = _time.time
    monkeypatch.setattr(_time, "time", lambda: real() + 120)  # idle timeout is 60 s
    assert client.get("/api/me").status_code == 401


def test_health_is_public(env):
    client, _, _ = env
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["cassandra"] is True
