"""`emon services` itself: status, pid files that point at our processes, a fast second `up`."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from emon_core.cli import main
from emon_core.devservices import procs
from emon_core.settings import credentials_file

pytestmark = pytest.mark.services

NAMES = ("mosquitto", "kafka", "cassandra")


@pytest.fixture(scope="module")
def all_up(mqtt_settings, kafka_settings, cassandra_settings) -> None:  # noqa: ANN001
    """Every service reachable (skips, or fails under CI, otherwise)."""


def test_status_reports_all_up(all_up: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["services", "status", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in NAMES:
        assert rows[name]["up"], rows[name]
        assert rows[name]["pid"] and rows[name]["rss_bytes"] > 0


def test_pid_files_identify_our_processes(all_up: None) -> None:
    for name in NAMES:
        rec = procs.running(name)
        assert rec is not None, f"{name}: no live pid file"
        assert rec.marker in procs.cmdline(rec.pid)


def test_second_up_is_fast(all_up: None, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    assert main(["services", "up"]) == 0
    assert time.monotonic() - t0 < 20
    assert capsys.readouterr().out.count("already running") == 3


def test_credentials_are_private(all_up: None) -> None:
    mode = stat.S_IMODE(os.stat(credentials_file()).st_mode)
    assert mode == 0o600
    data = json.loads(credentials_file().read_text())
    assert {"gateway", "bridge"} <= set(data["mqtt"])
    assert data["device_secret"] and data["web"]["admin"]["username"]


@pytest.mark.skipif(
    not (os.environ.get("CI") or os.environ.get("EMON_FAULT_TESTS")),
    reason="kills the shared broker: runs under CI or with EMON_FAULT_TESTS=1",
)
def test_kill_and_start_mosquitto(mqtt_settings, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    from emon_core.adapters import mqtt as adapter

    before = procs.running("mosquitto")
    assert main(["services", "kill", "mosquitto"]) == 0
    assert procs.running("mosquitto") is None and not procs.is_ours(before)
    assert not procs.port_open("127.0.0.1", mqtt_settings.port)
    assert main(["services", "start", "mosquitto"]) == 0
    assert "started" in capsys.readouterr().out
    client = adapter.service_client(mqtt_settings, "gateway", "it-after-restart")
    try:
        adapter.connect_and_wait(client, mqtt_settings, timeout_s=10)
    finally:
        client.disconnect()
        client.loop_stop()
