"""The dispatcher map in Debian's headless Chromium (Playwright): log in, an alert published to
Kafka appears on the map and in the list within 2 s without a reload, open its ECG strip,
acknowledge it. Screenshots go to artifacts/. No request may leave the app (offline assets)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from emon_core.contracts import Alert, EcgStrip, GeoPoint, Severity, UnitPosition, UnitStatus
from emon_core.settings import CassandraSettings, KafkaSettings, load
from emon_core.topics import KAFKA_ALERTS, KAFKA_UNIT_POSITIONS

pytestmark = [pytest.mark.services, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEYSPACE = "emon_it_map"
PASSWORD = "browser-password-0123456789"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CENTRE = (48.2082, 16.3738)


def _browser_available() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ecg(fs: float = 250.0, seconds: float = 6.0) -> EcgStrip:
    """Sinus rhythm turning into a run of wide ventricular complexes."""
    import math

    out, marks, rr = [], [], int(fs * 0.75)
    for i in range(int(fs * seconds)):
        k, t = divmod(i, rr)
        if k >= 4:  # wide, fast complexes
            t = i % int(fs * 0.36)
            v = 1500 * math.exp(-((t - 30) / 12.0) ** 2) - 650 * math.exp(-((t - 62) / 15.0) ** 2)
        else:
            v = (130 * math.exp(-((t - 20) / 9.0) ** 2) + 1150 * math.exp(-((t - 52) / 3.4) ** 2)
                 - 200 * math.exp(-((t - 58) / 3.0) ** 2) + 280 * math.exp(-((t - 125) / 17.0) ** 2))
        out.append(int(v))
    return EcgStrip(fs_hz=fs, start_sample_index=0, start_time_ms=int(time.time() * 1000), samples_uv=out, marks=marks)


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any, cassandra_settings: CassandraSettings, kafka_settings: KafkaSettings) -> Iterator[str]:
    """The map on a throw-away keyspace with a fleet of 14 units, and the real router beside it."""
    _browser_available()
    import random

    import uvicorn

    from emon_core.adapters.cassandra import connect as adapter_connect
    from map_ui.app import create_app
    from map_ui.auth import hash_password
    from map_ui.repository import Repository
    from map_ui.settings import MapSettings
    from paramedic_router.claims import DispatchStore, apply_schema
    from paramedic_router.service import RouterService
    from paramedic_router.settings import RouterSettings

    env = pytest.MonkeyPatch()  # a private state dir for this module only (undone at teardown)
    if "EMON_STATE_DIR" not in os.environ:
        env.setenv("EMON_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    cfg = load(CassandraSettings)
    _cluster, s = adapter_connect(cfg, keyspace=None, timeout_s=60)
    s.execute(f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = {cfg.replication}")
    s.set_keyspace(KEYSPACE)
    apply_schema(s)
    for t in ("units", "unit_positions", "unit_status_log", "assignments_by_alert", "assignments_by_unit",
              "dispatch_queue"):
        s.execute(f"TRUNCATE {t}")
    repo = Repository(s)
    repo.put_user("it-browser", hash_password(PASSWORD), "dispatcher")
    rng = random.Random(7)
    for i in range(14):
        repo.register_unit(f"unit-{9000 + i}", "", CENTRE[0] + rng.uniform(-0.035, 0.035),
                           CENTRE[1] + rng.uniform(-0.06, 0.06), "it")
    router = RouterService(RouterSettings(group_id=f"it-browser-router-{uuid.uuid4().hex[:6]}", start_latest=True,
                                          ack_timeout_s=120, tick_s=0.1), load(KafkaSettings), DispatchStore(s))
    router_thread = threading.Thread(target=router.run, kwargs={"max_seconds": 300}, daemon=True)
    router_thread.start()
    port = _free_port()
    # only what happens during the test: a lookback of ~1 s hides earlier test alerts
    app = create_app(MapSettings(secret_key="b" * 48, center_lat=CENTRE[0], center_lon=CENTRE[1], zoom=13,
                                 alert_lookback_h=0.0003), repo=repo, kafka=load(KafkaSettings), live=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 40
    while not (server.started and router.ready) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started and router.ready
    yield f"http://localhost:{port}"
    server.should_exit = True
    router.stop()
    thread.join(10)
    router_thread.join(15)
    s.cluster.shutdown()
    env.undo()


def _produce(topic: str, key: str, value: bytes) -> None:
    from confluent_kafka import Producer

    p = Producer(load(KafkaSettings).producer_config())
    p.produce(topic, key=key.encode(), value=value)
    p.flush(10)


def _alert(aid: str, patient: str, sev: Severity, title: str, reasons: list[str], lat: float, lon: float,
           rate: float | None, strip: EcgStrip | None = None, age_s: float = 0.0) -> Alert:
    t = int(time.time() * 1000 - age_s * 1000)
    return Alert(alert_id=aid, patient_id=patient, episode_id=aid, severity=sev, title=title, reasons=reasons,
                 opened_at_ms=t, updated_at_ms=t, needs_unit=sev.needs_unit, rate_bpm=rate,
                 location=GeoPoint(lat=lat, lon=lon), trigger_event_id=aid, event_ids=[aid], strip=strip)


def test_live_alert_strip_and_acknowledge(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    run = uuid.uuid4().hex[:6]
    aid = f"dev-{run}:v_run:48211"
    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server) else None)
        page.goto(f"{server}/")
        expect(page).to_have_url(f"{server}/login?next=/")
        page.fill("#username", "it-browser")
        page.fill("#password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_selector("#live-text:text('Live')", timeout=10_000)
        page.wait_for_function("document.querySelectorAll('.unit-icon').length >= 14", timeout=10_000)

        # the situation before: an urgent pause (the router sends a unit), an advisory, a technical
        background = [
            _alert(f"dev-{run}b:pause:9000", "pat-01733", Severity.URGENT, "Sinus pause 3.2 s",
                   ["pause of 3.2 s", "history: sick sinus syndrome"], CENTRE[0] - 0.018, CENTRE[1] + 0.032,
                   41.0, age_s=190),
            _alert(f"dev-{run}c:frequent_ectopy:1", "pat-00418", Severity.ADVISORY, "Frequent PVCs (14/min)",
                   ["14 ventricular ectopic beats per minute"], CENTRE[0] + 0.021, CENTRE[1] - 0.041, 88.0,
                   age_s=420),
            _alert(f"dev-{run}d:signal_loss:1", "pat-02290", Severity.TECHNICAL, "Signal loss",
                   ["electrodes off for 45 s"], CENTRE[0] - 0.027, CENTRE[1] - 0.022, None, age_s=75),
        ]
        for a in background:
            _produce(KAFKA_ALERTS, a.patient_id, a.encode())
        page.wait_for_function("document.querySelectorAll('.alert-item').length >= 3", timeout=5_000)
        page.wait_for_selector(".alert-item.urgent .ai-unit .status-chip", timeout=5_000)  # the router's unit
        markers_before = page.locator(".alert-icon").count()
        url_before = page.url

        alert = _alert(aid, "pat-04211", Severity.CRITICAL, "Ventricular tachycardia",
                       ["run of 9 ventricular beats at 168 bpm", "history: prior myocardial infarction"],
                       CENTRE[0] + 0.006, CENTRE[1] + 0.011, 168.0, strip=ecg())
        t0 = time.monotonic()
        _produce(KAFKA_ALERTS, alert.patient_id, alert.encode())
        item = page.locator(f".alert-item[data-alert-id='{aid}']")
        item.wait_for(timeout=2_000)
        page.wait_for_function(f"document.querySelectorAll('.alert-icon').length > {markers_before}", timeout=2_000)
        appeared_s = time.monotonic() - t0
        assert appeared_s < 2.0
        assert page.url == url_before  # no reload
        assert page.locator(".alert-item").first.get_attribute("data-alert-id") == aid  # critical on top
        expect(item.locator(".ai-unit .status-chip")).to_be_visible(timeout=5_000)  # nearest unit assigned
        page.screenshot(path=str(ARTIFACTS / "map_live_alert.png"))

        # the crew reports (as `emon sim units` does through MQTT and the bridge): acknowledged, then
        # driving; the router records it and the map moves the unit and updates the job live
        unit_id = item.locator(".ai-unit b").inner_text()
        for st, f in ((UnitStatus.ACKNOWLEDGED, 0.0), (UnitStatus.EN_ROUTE, 0.4)):
            u = page.evaluate("id => fetch('/api/units/' + id).then(r => r.json())", unit_id)  # the page's session
            lat0, lon0 = u["lat"], u["lon"]
            pos = UnitPosition(unit_id=unit_id, lat=lat0 + (alert.location.lat - lat0) * f,
                               lon=lon0 + (alert.location.lon - lon0) * f, status=st,
                               time_ms=int(time.time() * 1000), speed_mps=12.0)
            _produce(KAFKA_UNIT_POSITIONS, unit_id, pos.encode())
        expect(item.locator(".ai-unit .status-chip.st-en_route")).to_be_visible(timeout=5_000)
        page.wait_for_function("document.querySelectorAll('.unit-icon.en_route').length >= 1", timeout=5_000)

        item.click()
        page.wait_for_selector("#ecg-strip svg.ecg-strip", timeout=5_000)
        assert page.locator("#ecg-strip .grid-major").count() == 1
        assert page.locator("#dispatcher-status").inner_text() == "open"
        expect(page.locator("#eta")).to_be_visible()
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "map_alert_detail.png"))
        page.click("#btn-acknowledge")
        expect(page.locator("#dispatcher-status")).to_have_text("acknowledged", timeout=5_000)
        expect(item.locator(".status-chip.st-acknowledged")).to_be_visible(timeout=5_000)
        page.wait_for_timeout(400)
        page.screenshot(path=str(ARTIFACTS / "map_acknowledged.png"))
        browser.close()
    assert outside == [], f"requests left the app: {outside[:5]}"
    print(f"alert visible {appeared_s * 1000:.0f} ms after publish")
