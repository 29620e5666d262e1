"""The whole pipeline as processes for a load or fault run, isolated from other users of the services.

Isolation on the shared Mosquitto/Kafka/Cassandra:
* own device numbers (``start_index``) and a registry CSV per site: a gateway accepts only them;
* own hub and router consumer groups, committed at the end of their input topics before they
  start (a new group would otherwise replay the whole topic history);
* the map on its own port, reading alerts from a short lookback;
* the bridge joins the default shared subscription group, so a bridge already running (the demo)
  shares the messages instead of forwarding them twice;
* own paramedic unit numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emon_core.supervisor import Supervisor
from emon_core.registry import sim_device_id, sim_patient_id, sim_site_id
from emon_core.settings import KafkaSettings
from emon_core import topics


def emon_exe() -> list[str]:
    exe = Path(sys.executable).with_name("emon")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "emon_core.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout_s: float = 3.0) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as err:  # 503 carries the JSON too
        try:
            return json.loads(err.read())
        except ValueError:
            return {"ok": False}


@dataclass
class PipelineConfig:
    workdir: Path
    tag: str
    start_index: int = 1000
    patients: int = 100
    site_size: int = 1000
    units: int = 20
    unit_start: int = 800
    map_lookback_h: float = 0.05
    gateway_silent_after_s: float = 3600.0
    extra_env: dict[str, str] = field(default_factory=dict)


class Pipeline:
    """Gateways (one per site), bridge, hub, router, map and units; each a named process."""

    COMPONENTS = ("bridge", "hub", "router", "map")

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self.tag = cfg.tag
        self.logs = cfg.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs = Supervisor(self.logs, stop_timeout_s=30.0)
        self.emon = emon_exe()
        self.kafka = KafkaSettings()
        self.devices = {sim_device_id(n): (sim_patient_id(n), sim_site_id(n, cfg.site_size))
                        for n in range(cfg.start_index, cfg.start_index + cfg.patients)}
        self.patients = {p for p, _ in self.devices.values()}
        self.sites = sorted({s for _, s in self.devices.values()})
        self.ports: dict[str, int] = {}
        used: set[int] = set()
        for name in [f"gateway-{s}" for s in self.sites] + list(self.COMPONENTS):
            port = free_port()
            while port in used:
                port = free_port()
            used.add(port)
            self.ports[name] = port
        self.hub_group = f"lt-hub-{self.tag}"
        self.router_group = f"lt-router-{self.tag}"
        self.env = {**os.environ, **cfg.extra_env,
                    "EMON_GATEWAY_SILENT_AFTER_S": str(cfg.gateway_silent_after_s),
                    "EMON_HUB_GROUP_ID": self.hub_group,
                    "EMON_ROUTER_GROUP_ID": self.router_group, "EMON_ROUTER_START_LATEST": "true",
                    "EMON_MAP_ALERT_LOOKBACK_H": str(cfg.map_lookback_h),
                    "EMON_MAP_PORT": str(self.ports["map"]), "PYTHONUNBUFFERED": "1"}
        self.argv: dict[str, list[str]] = {}
        for site in self.sites:
            reg = cfg.workdir / f"devices-{site}.csv"
            reg.write_text("device_id,patient_id,site_id\n" + "".join(
                f"{d},{p},{s}\n" for d, (p, s) in sorted(self.devices.items()) if s == site))
            self.argv[f"gateway-{site}"] = [
                *self.emon, "gateway", "--site", site, "--registry", str(reg), "--gateway-id", f"gw-lt-{self.tag}-{site}",
                "--http-port", str(self.ports[f"gateway-{site}"]), "--state-dir", str(cfg.workdir / f"gw-{site}")]
        self.argv["bridge"] = [*self.emon, "bridge", "--bridge-id", f"br-lt-{self.tag}", "--http-port",
                               str(self.ports["bridge"])]
        self.argv["hub"] = [*self.emon, "hub", "--wait", "120", "--http-port", str(self.ports["hub"])]
        self.argv["router"] = [*self.emon, "router", "--http-port", str(self.ports["router"])]
        self.argv["map"] = [*self.emon, "map", "--port", str(self.ports["map"])]
        self.argv["units"] = [*self.emon, "sim", "units", "--count", str(cfg.units), "--start-index",
                              str(cfg.unit_start), "--seed", str(cfg.start_index), "--scene-s", "20"]

    @property
    def gateways(self) -> list[str]:
        return [f"gateway-{s}" for s in self.sites]

    def health_url(self, name: str) -> str | None:
        if name not in self.ports:
            return None
        return f"http://127.0.0.1:{self.ports[name]}/healthz"

    # --- lifecycle ---------------------------------------------------------------------------------
    def commit_groups_at_end(self) -> None:
        """Start the hub's and router's fresh groups at the current end of their inputs."""
        from confluent_kafka import Consumer, TopicPartition

        for group, names in ((self.hub_group, (topics.KAFKA_FLAGGED, topics.KAFKA_SUMMARIES,
                                               topics.KAFKA_GATEWAY_STATUS)),
                             (self.router_group, (topics.KAFKA_ALERTS,))):
            c = Consumer(self.kafka.consumer_config(group))
            try:
                offsets = []
                for t in names:
                    md = c.list_topics(t, timeout=30)
                    for p in md.topics[t].partitions:
                        _, high = c.get_watermark_offsets(TopicPartition(t, p), timeout=30)
                        offsets.append(TopicPartition(t, p, high))
                c.commit(offsets=offsets, asynchronous=False)
            finally:
                c.close()

    def start(self, name: str) -> None:
        self.procs.start(name, self.argv[name], self.env)

    def register_patients(self) -> int:
        """The run's patients in the registry (home, baseline, history), as ``emon ingest history`` writes them.

        Without them the hub marks every alert "unknown patient" with no location and the
        router has nowhere to send a unit.
        """
        from emon_core.settings import CassandraSettings
        from hub.ingest import register_patients

        return register_patients(CassandraSettings(), self.cfg.start_index, self.cfg.start_index + self.cfg.patients)

    def start_all(self, timeout_s: float = 180.0) -> None:
        self.register_patients()
        self.commit_groups_at_end()
        names = [*self.COMPONENTS, *self.gateways]
        for name in names:
            self.start(name)
        for name in names:
            self.wait_healthy(name, timeout_s)
        self.start("units")

    def wait_healthy(self, name: str, timeout_s: float = 180.0) -> float:
        """Seconds until ``name`` answers /healthz with ok (raises with the log tail otherwise)."""
        t0 = time.monotonic()
        url = self.health_url(name)
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            if not self.procs.alive(name):
                raise RuntimeError(f"{name} exited: {self.log_tail(name)}")
            try:
                body = get_json(url) if url else {"ok": True}
                if body.get("ok") or body.get("status") == "ok":
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{name} not healthy after {timeout_s:.0f} s: {self.log_tail(name)}")

    def healthy(self, name: str) -> bool:
        url = self.health_url(name)
        try:
            body = get_json(url, 2.0) if url else {}
            return bool(body.get("ok") or body.get("status") == "ok")
        except OSError:
            return False

    def kill(self, name: str) -> None:
        self.procs.kill(name)

    def restart(self, name: str) -> None:
        self.procs.restart(name)

    def pids(self) -> dict[str, int]:
        return {n: pid for n in self.procs.names() if self.procs.alive(n) and (pid := self.procs.pid(n)) is not None}

    def log_tail(self, name: str, n: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"

    def log_files(self) -> list[Path]:
        return sorted(self.logs.glob("*.log"))

    def stop(self) -> None:
        self.procs.stop_all()
        self.clear_sessions()

    def clear_sessions(self) -> None:
        """Delete the persistent MQTT sessions of this run's gateway intakes and bridge."""
        from emon_core.adapters.mqtt import connect_and_wait, create_client
        from emon_core.settings import MqttSettings

        ids = [("bridge", f"br-lt-{self.tag}")] + [("gateway", f"gw-lt-{self.tag}-{s}-in") for s in self.sites]
        for user, cid in ids:
            try:
                s = MqttSettings().with_user(user)
                c = create_client(s, client_id=cid)
                try:
                    connect_and_wait(c, s, clean_start=True, session_expiry_s=0, timeout_s=10)
                    c.disconnect()
                finally:
                    c.loop_stop()
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass

    def sim_argv(self, duration_s: float, truth: Path, scenario: str | None, source: str = "synthetic",
                 fast: bool = False, fs_hz: float = 360.0, scenario_patients: int | None = None,
                 hr_bpm: float | None = None, seed: int = 0, summary: Path | None = None) -> list[str]:
        argv = [*self.emon, "sim", "devices", "--patients", str(self.cfg.patients), "--start-index",
                str(self.cfg.start_index), "--site-size", str(self.cfg.site_size), "--duration", str(duration_s),
                "--source", source, "--truth", str(truth), "--status-every", "0", "--seed", str(seed)]
        if source == "synthetic":
            argv += ["--fs", str(fs_hz)]
        if scenario:
            argv += ["--scenario", scenario]
        if scenario_patients is not None:
            argv += ["--scenario-patients", str(scenario_patients)]
        if hr_bpm is not None:
            argv += ["--hr-bpm", str(hr_bpm)]
        if fast:
            argv.append("--fast")
        if summary is not None:
            argv += ["--json", str(summary)]
        return argv

    def cleanup_state(self) -> None:
        for site in self.sites:
            shutil.rmtree(self.cfg.workdir / f"gw-{site}", ignore_errors=True)
