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


def _reachable() -> None:
    for port in (9042, 9092):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            pytest.skip(f"127.0.0.1:{port} not reachable: start the services (`emon services up`)")
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
def server(tmp_path_factory: Any) -> Iterator[str]:
    _reachable()
    import uvicorn

    from map_ui.app import create_app
    from map_ui.auth import hash_password
    from map_ui.repository import Repository
    from map_ui.settings import MapSettings
    from paramedic_router.claims import apply_schema

    os.environ.setdefault("EMON_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    cfg = load(CassandraSettings)
    from emon_core.adapters.cassandra import connect as adapter_connect

    _cluster, s = adapter_connect(cfg, keyspace=None, timeout_s=60)
    s.execute(f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = {cfg.replication}")
    s.set_keyspace(KEYSPACE)
    apply_schema(s)
    repo = Repository(s)
    repo.put_user("it-browser", hash_password(PASSWORD), "dispatcher")
    for i in range(12):  # a few units around the centre so the map shows a fleet
        uid = f"unit-{9000 + i}"
        repo.register_unit(uid, "", CENTRE[0] + 0.03 * ((i % 4) - 1.5), CENTRE[1] + 0.045 * ((i // 4) - 1), "it")
    port = _free_port()
    app = create_app(MapSettings(secret_key="b" * 48, center_lat=CENTRE[0], center_lon=CENTRE[1], zoom=13),
                     repo=repo, kafka=load(KafkaSettings), live=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started
    yield f"http://localhost:{port}"
    server.should_exit = True
    thread.join(10)
    s.cluster.shutdown()


def _produce(topic: str, key: str, value: bytes) -> None:
    from confluent_kafka import Producer

    p = Producer(load(KafkaSettings).producer_config())
    p.produce(topic, key=key.encode(), value=value)
    p.flush(10)


def test_live_alert_strip_and_acknowledge(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    aid = f"dev-{uuid.uuid4().hex[:6]}:v_run:48211"
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
        page.wait_for_function("document.querySelectorAll('.unit-icon').length >= 12", timeout=10_000)
        markers_before = page.locator(".alert-icon").count()
        url_before = page.url
        for i, st in enumerate((UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE)):
            pos = UnitPosition(unit_id=f"unit-{9000 + i}", lat=CENTRE[0] + 0.01 * (i + 1), lon=CENTRE[1] - 0.02,
                               status=st, time_ms=int(time.time() * 1000))
            _produce(KAFKA_UNIT_POSITIONS, pos.unit_id, pos.encode())

        t = int(time.time() * 1000)
        alert = Alert(alert_id=aid, patient_id="pat-04211", episode_id=aid, severity=Severity.CRITICAL,
                      title="Ventricular tachycardia", reasons=["run of 9 ventricular beats at 168 bpm",
                                                                "history: prior myocardial infarction"],
                      opened_at_ms=t, updated_at_ms=t, needs_unit=True, rate_bpm=168.0,
                      location=GeoPoint(lat=CENTRE[0] + 0.006, lon=CENTRE[1] + 0.011), trigger_event_id=aid,
                      event_ids=[aid], strip=ecg())
        t0 = time.monotonic()
        _produce(KAFKA_ALERTS, alert.patient_id, alert.encode())
        item = page.locator(f".alert-item[data-alert-id='{aid}']")
        item.wait_for(timeout=2_000)
        page.wait_for_function(f"document.querySelectorAll('.alert-icon').length > {markers_before}", timeout=2_000)
        appeared_s = time.monotonic() - t0
        assert appeared_s < 2.0
        assert page.url == url_before  # no reload
        page.screenshot(path=str(ARTIFACTS / "map_live_alert.png"))

        item.click()
        page.wait_for_selector("#ecg-strip svg.ecg-strip", timeout=5_000)
        assert page.locator("#ecg-strip .grid-major").count() == 1
        assert page.locator("#dispatcher-status").inner_text() == "open"
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "map_alert_detail.png"))
        page.click("#btn-acknowledge")
        expect(page.locator("#dispatcher-status")).to_have_text("acknowledged", timeout=5_000)
        expect(item.locator(".status-chip.st-acknowledged")).to_be_visible(timeout=5_000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "map_acknowledged.png"))
        browser.close()
    assert outside == [], f"requests left the app: {outside[:5]}"
    print(f"alert visible {appeared_s * 1000:.0f} ms after publish")
