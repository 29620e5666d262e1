"""Edge path on the real Mosquitto and Kafka: simulator -> gateway -> bridge -> Kafka, as subprocesses.

Devices dev-02800 .. dev-02849 (site-02) are reserved for these tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import pytest

from emon_core.contracts import EcgFrame
from emon_core.registry import sim_device_id, sim_patient_id
from emon_core.settings import KafkaSettings, MqttSettings
from emon_core.topics import KAFKA_FLAGGED, frames_topic
from simulators.ground_truth import load_truth

pytestmark = [pytest.mark.services, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EMON = str(REPO / ".venv" / "bin" / "emon") if (REPO / ".venv" / "bin" / "emon").exists() else "emon"
SITE = "site-02"
TOL = int(0.15 * 360)  # 150 ms at 360 Hz: a detection matches a reference beat


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(port: int, path: str = "/healthz") -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as err:  # 503 carries the JSON too
        return json.loads(err.read())


def clear_session(mqtt_settings: MqttSettings, user: str, client_id: str) -> None:
    """Delete a persistent session a test left on the broker (clean start, expiry 0)."""
    from emon_core.adapters.mqtt import connect_and_wait, create_client

    s = mqtt_settings.with_user(user)
    c = create_client(s, client_id=client_id)
    try:
        connect_and_wait(c, s, clean_start=True, session_expiry_s=0, timeout_s=10)
        c.disconnect()
    finally:
        c.loop_stop()


class Edge:
    """Gateway, bridge and simulator subprocesses of one test, with their logs in ``tmp``."""

    def __init__(self, tmp: Path, tag: str, mqtt_settings: MqttSettings) -> None:
        self.tmp, self.tag, self.mqtt_settings = tmp, tag, mqtt_settings
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gw_port = free_port()
        self.br_port = free_port()
        while self.br_port == self.gw_port:
            self.br_port = free_port()
        self.gateway_id = f"gw-{tag}"
        self.bridge_id = f"br-{tag}"
        self.env = {**os.environ, "EMON_BRIDGE_SHARE_GROUP": f"t{tag}"[:60].replace(".", "-"),
                    "EMON_GATEWAY_SILENT_AFTER_S": "120"}
        self.gateway: subprocess.Popen[bytes] | None = None
        self.bridge: subprocess.Popen[bytes] | None = None

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(["nice", EMON, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(p)
        return p

    def start_gateway(self) -> None:
        registry = self.tmp / "devices.csv"  # only this module's devices: other tests' fleets are "unknown"
        registry.write_text("device_id,patient_id,site_id\n" + "".join(
            f"{sim_device_id(n)},{sim_patient_id(n)},{SITE}\n" for n in range(2800, 2850)))
        self.gateway = self._spawn("gateway", [
            "gateway", "--site", SITE, "--registry", str(registry), "--gateway-id", self.gateway_id,
            "--http-port", str(self.gw_port), "--state-dir", str(self.tmp / "gw-state")])
        self._wait_healthy(self.gw_port, "gateway", self.gateway)

    def start_bridge(self) -> None:
        self.bridge = self._spawn("bridge", ["bridge", "--bridge-id", self.bridge_id, "--http-port", str(self.br_port)])
        self._wait_healthy(self.br_port, "bridge", self.bridge)

    def _wait_healthy(self, port: int, name: str, proc: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}: {(self.tmp / f'{name}.log').read_text()[-2000:]}")
            try:
                if get_json(port).get("ok"):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{name} not healthy after {timeout_s} s: {(self.tmp / f'{name}.log').read_text()[-2000:]}")

    def sim(self, start: int, patients: int, duration_s: float, scenario: str, fast: bool = False,
            name: str = "sim") -> subprocess.Popen[bytes]:
        args = ["sim", "devices", "--source", "synthetic", "--patients", str(patients), "--start-index", str(start),
                "--duration", str(duration_s), "--scenario", scenario, "--hr-bpm", "70",
                "--truth", str(self.tmp / f"{name}.jsonl"), "--status-every", "0"]
        return self._spawn(name, args + (["--fast"] if fast else []))

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for user, cid in (("bridge", self.bridge_id), ("gateway", f"{self.gateway_id}-in")):
            try:
                clear_session(self.mqtt_settings, user, cid)
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass


class KafkaTail:
    """Reads ``emon.flagged`` from its current end in a thread; keeps this test's devices only."""

    def __init__(self, kafka: KafkaSettings, device_prefix: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.prefix = device_prefix
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": f"edge-test-{time.time_ns()}",
                                  "enable.auto.commit": False})
        md = self.consumer.list_topics(KAFKA_FLAGGED, timeout=30)
        parts = []
        for p in md.topics[KAFKA_FLAGGED].partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(KAFKA_FLAGGED, p), timeout=10)
            parts.append(TopicPartition(KAFKA_FLAGGED, p, high))
        self.consumer.assign(parts)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self.consumer.poll(0.2)
            if m is None or m.error():
                continue
            v = json.loads(m.value())
            if str(v.get("device_id", "")).startswith(self.prefix):
                v["_key"] = (m.key() or b"").decode()
                v["_kafka_ms"] = m.timestamp()[1]
                with self.lock:
                    self.messages.append(v)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.consumer.close()


@pytest.fixture
def edge(tmp_path: Path, mqtt_settings: MqttSettings, kafka_settings: KafkaSettings) -> Iterator[Edge]:
    e = Edge(tmp_path, f"{os.getpid()}-{time.time_ns() % 10**8}", mqtt_settings)
    try:
        yield e
    finally:
        e.stop()


def wait_for(pred: Any, timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every_s)
    return bool(pred())


def match(found: list[int], truth: list[int], tol: int = TOL) -> tuple[list[int], list[int]]:
    """(truth beats not found, found beats matching no truth beat)."""
    missed = [t for t in truth if not any(abs(f - t) <= tol for f in found)]
    extra = [f for f in found if not any(abs(f - t) <= tol for t in truth)]
    return missed, extra


def final_events(msgs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Latest revision of each rhythm event id."""
    out: dict[str, dict[str, Any]] = {}
    for m in msgs:
        if m["type"] == "rhythm_event" and m["revision"] >= out.get(m["id"], {"revision": -1})["revision"]:
            out[m["id"]] = m
    return out


def offline_flagged(n: int, duration_s: int, scenario: str) -> set[str]:
    """Ids of the beats the gateway pipeline flags for simulated patient ``n`` (as `emon sim devices` renders it)."""
    from emon_core.contracts import decode_edge
    from emon_core.registry import DeviceRegistry
    from gateway.outbox import Outbox
    from gateway.service import GatewayPipeline, load_classifier
    from gateway.settings import load_gateway_settings
    from simulators.scenario import parse_scenario
    from simulators.synthetic import SyntheticConfig, SyntheticSource
    import tempfile

    src = SyntheticSource(SyntheticConfig(fs_hz=360.0, hr_bpm=70.0, seed=n), parse_scenario(scenario))
    settings = load_gateway_settings(None, simulated=3000, site_id=SITE)
    with tempfile.TemporaryDirectory() as d:
        p = GatewayPipeline(settings, DeviceRegistry.simulated(3000), load_classifier(settings), Outbox(Path(d) / "o.db"))
        dev = sim_device_id(n)
        for k in range(duration_s):
            chunk = src.read(k * 360, 360)
            f = EcgFrame(device_id=dev, seq=k, device_time_ms=1_700_000_000_000 + 1000 * k, fs_hz=360.0,
                         gain_adu_per_mv=src.gain_adu_per_mv, baseline_adu=src.baseline_adu,
                         first_sample_index=360 * k, samples=chunk.samples.tolist())
            p.handle(frames_topic(SITE, dev), f.encode(), 0)
            p.tick()
        msgs = [decode_edge(e.payload) for e in p.outbox.peek(0, 100_000)]
        p.outbox.close()
    return {m.id for m in msgs if m.type == "flagged_beat"}


# -- tests ---------------------------------------------------------------------------------------


def test_vt_run_and_pause_yield_exactly_the_expected_beats_and_events(edge: Edge, kafka_settings: KafkaSettings) -> None:
    dev = sim_device_id(2800)
    tail = KafkaTail(kafka_settings, dev)
    try:
        edge.start_bridge()
        edge.start_gateway()
        sim = edge.sim(2800, 1, 60, "vt@20:k=8,pause@40:s=4", fast=True)
        assert sim.wait(timeout=120) == 0
        truth = load_truth(edge.tmp / "sim.jsonl").devices[dev]
        v_truth = [i for i, c, _ in truth.beats if c == "V"]
        assert len(v_truth) == 8

        def done() -> bool:
            ev = final_events(tail.snapshot())
            return any(e["kind"] == "pause" and e["revision"] >= 1 for e in ev.values()) and any(
                e["kind"] == "v_run" and e["beat_count"] == 8 for e in ev.values())

        assert wait_for(done, 60), tail.snapshot()
        time.sleep(2.0)
        msgs = tail.snapshot()
    finally:
        tail.close()
    beats = [m for m in msgs if m["type"] == "flagged_beat"]
    assert all(m["beat_class"] != "N" for m in beats)  # normal beats never leave the edge
    missed, extra = match([m["sample_index"] for m in beats], v_truth)
    assert not missed and not extra, (missed, extra)
    assert {m["beat_class"] for m in beats} == {"V"}
    assert len({m["id"] for m in beats}) == 8
    for m in beats:
        assert m["_key"] == "pat-02800" and m["id"] == f"{dev}:{m['sample_index']}"
        assert m["strip"] and m["strip"]["marks"] == [m["sample_index"]] and m["model_version"]
        t = m["trace"]
        assert t["device_sent_ms"] <= t["gateway_received_ms"] + 5 <= t["gateway_published_ms"] + 5
        assert t["gateway_published_ms"] <= t["bridge_received_ms"] <= t["kafka_produced_ms"]
    events = final_events(msgs)
    assert sorted(e["kind"] for e in events.values()) == ["pause", "v_run"]
    truth_ev = {e["kind"]: e for e in truth.events}
    run = next(e for e in events.values() if e["kind"] == "v_run")
    assert abs(run["onset_sample_index"] - truth_ev["v_run"]["onset"]) <= TOL
    assert run["beat_count"] == 8 and abs(run["rate_bpm"] - 180) < 10 and run["detail"].startswith("VT")
    pause = next(e for e in events.values() if e["kind"] == "pause")
    assert abs(pause["onset_sample_index"] - truth_ev["pause"]["onset"]) <= TOL
    assert abs((pause["end_time_ms"] - pause["onset_time_ms"]) - 4000) <= 200
    assert pause["strip"] and len(pause["strip"]["samples_uv"]) > 360


def test_bridge_kill9_mid_stream_loses_nothing(edge: Edge, kafka_settings: KafkaSettings,
                                                mqtt_settings: MqttSettings, mqtt_clients: list[Any]) -> None:
    start, n = 2810, 4
    published: dict[tuple[str, int], bytes] = {}
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:  # what the gateway published
        v = json.loads(msg.payload)
        if v["type"] in ("flagged_beat", "rhythm_event"):
            with lock:
                published[(v["id"], v.get("revision", 0))] = msg.payload

    from emon_core.adapters.mqtt import connect_and_wait, create_client

    s = mqtt_settings.with_user("bridge")
    watcher = create_client(s, client_id=f"watch-{edge.tag}", subscriptions=[(f"edge/{SITE}/+/events", 1)])
    watcher.on_message = on_message
    mqtt_clients.append(watcher)
    connect_and_wait(watcher, s)
    tail = KafkaTail(kafka_settings, "dev-0281")
    try:
        edge.start_bridge()
        edge.start_gateway()
        scenario = ",".join(f"vt@{t}:k=6" for t in range(6, 40, 5))
        sim = edge.sim(start, n, 42, scenario)
        time.sleep(16)
        assert edge.bridge is not None
        edge.bridge.send_signal(signal.SIGKILL)  # mid-stream, un-acked messages in flight
        edge.bridge.wait(timeout=10)
        time.sleep(5)
        edge.start_bridge()  # same bridge id: the broker redelivers what was never acked
        assert sim.wait(timeout=120) == 0

        def all_arrived() -> bool:
            got = {(m["id"], m.get("revision", 0)) for m in tail.snapshot()}
            with lock:
                return bool(published) and set(published) <= got

        assert wait_for(all_arrived, 60)
        msgs = tail.snapshot()
    finally:
        tail.close()
    with lock:
        want = dict(published)
    got: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for m in msgs:
        got[(m["id"], m.get("revision", 0))].append(m)
    assert set(want) <= set(got)
    assert set(got) <= set(want)  # duplicates only with the same id (and revision)
    assert len({k for k in want if k[0].count(":") == 1}) >= n * 6  # flagged beats of every patient
    dups = sum(len(v) - 1 for v in got.values())
    print(f"bridge kill -9: {len(want)} published, {len(msgs)} in Kafka, {dups} duplicates")


def mosquitto_save() -> None:
    """Make Mosquitto write its persistence file now (SIGUSR1), as its autosave would.

    Stands for a broker that has run longer than ``autosave_interval`` (60 s): the sessions
    this test just created (gateway intake, bridge) are on disk before the broker is killed.
    """
    from emon_core.devservices import procs

    assert procs.signal_service("mosquitto", signal.SIGUSR1)
    time.sleep(1.0)


def outage_nothing_lost(edge: Edge, kafka_settings: KafkaSettings, start: int, how: str) -> None:
    """Stream 3 patients with VT runs, take Mosquitto away mid-stream (``down``: SIGTERM, it saves
    its sessions; ``kill``: SIGKILL, it loses what it had not saved), bring it back, and check
    that every beat the undisturbed pipeline flags reaches Kafka and nothing else does."""
    n = 3
    prefix = sim_device_id(start)[:-1]
    tail = KafkaTail(kafka_settings, prefix)
    try:
        edge.start_bridge()
        edge.start_gateway()
        scenario = ",".join(f"vt@{t}:k=5" for t in range(8, 40, 6))
        sim = edge.sim(start, n, 45, scenario)
        if how == "kill":
            time.sleep(4)
            mosquitto_save()
            time.sleep(8)
            subprocess.run([EMON, "services", "kill", "mosquitto"], check=True, timeout=60)
        else:
            time.sleep(12)
            subprocess.run([EMON, "services", "down", "mosquitto"], check=True, timeout=60)
        try:
            time.sleep(10)
        finally:
            subprocess.run([EMON, "services", "start", "mosquitto"], check=True, timeout=60)
        assert sim.wait(timeout=180) == 0
        truth = load_truth(edge.tmp / "sim.jsonl")
        assert all(t.frames_sent == 45 for t in truth.devices.values())
        # reference: the same deterministic streams through the gateway pipeline in-process, no outage
        expected = {d: offline_flagged(int(d[4:]), 45, scenario) for d in truth.devices}
        # the last beats of a stream wait for a next beat that never comes
        last_ok = {d: max(i for i, _, _ in t.beats) - 2 * 360 for d, t in truth.devices.items()}

        def missing() -> dict[str, list[str]]:
            found = {m["id"] for m in tail.snapshot() if m["type"] == "flagged_beat"}
            return {d: sorted(i for i in ids if int(i.split(":")[1]) < last_ok[d] and i not in found)
                    for d, ids in expected.items()}

        assert wait_for(lambda: not any(missing().values()), 90), (missing(), get_json(edge.gw_port))
        assert wait_for(lambda: get_json(edge.gw_port)["outbox_depth"] == 0, 30), get_json(edge.gw_port)
        found = {m["id"] for m in tail.snapshot() if m["type"] == "flagged_beat"}
        h = get_json(edge.gw_port)
    finally:
        tail.close()
    extra = {i for i in found if i not in set().union(*expected.values())}
    assert not extra, extra  # and nothing the undisturbed pipeline would not have flagged
    assert sum(len(v) for v in expected.values()) >= n * 5 * 4
    assert h["upstream_replays"] >= 1  # the gateway re-published what the broker had acknowledged
    print(f"mosquitto {how}: {sum(len(v) for v in expected.values())} flagged beats expected, all in Kafka; "
          f"{h['upstream_replayed']} messages replayed")


def test_mosquitto_outage_outbox_drains_nothing_lost(edge: Edge, kafka_settings: KafkaSettings) -> None:
    # a broker stop (SIGTERM: Mosquitto saves its sessions, but after the restart it routes nothing to
    # a shared subscription until its member resubscribes: the gateway's replay covers that)
    outage_nothing_lost(edge, kafka_settings, 2820, "down")


def test_mosquitto_kill9_mid_stream_nothing_lost(edge: Edge, kafka_settings: KafkaSettings) -> None:
    # SIGKILL: whatever the broker acknowledged after its last save is gone with it
    outage_nothing_lost(edge, kafka_settings, 2830, "kill")


def test_bad_frames_counted_rejected_no_crash(edge: Edge, mqtt_settings: MqttSettings, mqtt_clients: list[Any]) -> None:
    from simulators.mqtt_client import connect, new_device_client

    edge.start_gateway()
    good_dev, bad_dev = sim_device_id(2840), sim_device_id(2841)
    clients = {}
    for d in (good_dev, bad_dev):
        c = new_device_client(d, mqtt_settings)
        connect(c, mqtt_settings, 60)
        c.loop_start()
        mqtt_clients.append(c)
        clients[d] = c
    time.sleep(1.0)

    def frame(dev: str, k: int, **kw: Any) -> dict[str, Any]:
        f = dict(device_id=dev, seq=k, device_time_ms=1_700_000_000_000 + 1000 * k, fs_hz=360.0,
                 first_sample_index=360 * k, samples=[1024.0 + (i % 7) for i in range(360)])
        f.update(kw)
        return json.loads(EcgFrame(**f).encode()) if "samples" not in kw else f

    def pub(dev: str, payload: bytes, topic: str | None = None) -> None:
        clients[dev].publish(topic or frames_topic(SITE, dev), payload, qos=1).wait_for_publish(10)

    good_sent = 0
    pub(bad_dev, json.dumps(frame(bad_dev, 0)).encode())
    nan = frame(bad_dev, 1)
    nan["samples"][5] = float("nan")
    bad = {
        "malformed": [b"{nope", b'{"type":"ecg_frame"}'],
        "oversized": [b"[" + b"0," * 150_000 + b"0]"],
        "nan": [json.dumps(nan).encode()],
        "wrong_rate": [json.dumps({**frame(bad_dev, 1), "fs_hz": 5000.0}).encode(),
                       json.dumps({**frame(bad_dev, 1), "fs_hz": 250.0, "samples": [1.0] * 250}).encode()],
        "replay": [json.dumps(frame(bad_dev, 0)).encode()],
        "device_mismatch": [json.dumps(frame(good_dev, 50)).encode()],  # bad device speaks for another
    }
    for payloads in bad.values():
        for p in payloads:
            pub(bad_dev, p)
            pub(good_dev, json.dumps(frame(good_dev, good_sent)).encode())
            good_sent += 1
    pub(bad_dev, json.dumps(frame(bad_dev, 1, device_id=bad_dev)).encode(), topic=frames_topic("site-03", bad_dev))

    def counted() -> bool:
        h = get_json(edge.gw_port)
        inv = h.get("frames_invalid", {})
        return all(inv.get(r, 0) >= len(p) for r, p in bad.items()) and h["frames"] >= good_sent + 1

    assert wait_for(counted, 30), get_json(edge.gw_port)
    h = get_json(edge.gw_port)
    assert h["ok"] and h["frames"] == good_sent + 1  # every good frame processed, the gateway alive
    assert {r: h["frames_invalid"].get(r, 0) for r in bad} == {r: len(p) for r, p in bad.items()}
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{edge.gw_port}/metrics", timeout=5).read().decode()
    assert 'emon_gateway_frames_invalid_total{reason="nan"} 1.0' in metrics
    assert edge.gateway is not None and edge.gateway.poll() is None


def test_bridge_dead_letters_invalid_messages(edge: Edge, kafka_settings: KafkaSettings,
                                              mqtt_settings: MqttSettings, mqtt_clients: list[Any]) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from emon_core.adapters.mqtt import connect_and_wait, create_client
    from emon_core.topics import KAFKA_DEADLETTER

    c = Consumer({"bootstrap.servers": kafka_settings.bootstrap_servers, "group.id": f"dl-{time.time_ns()}"})
    edge.start_bridge()
    parts = []
    for p in c.list_topics(KAFKA_DEADLETTER, timeout=30).topics[KAFKA_DEADLETTER].partitions:
        _, high = c.get_watermark_offsets(TopicPartition(KAFKA_DEADLETTER, p), timeout=10)
        parts.append(TopicPartition(KAFKA_DEADLETTER, p, high))
    c.assign(parts)
    s = mqtt_settings.with_user("gateway")
    pub = create_client(s, client_id=f"dl-pub-{edge.tag}")
    mqtt_clients.append(pub)
    connect_and_wait(pub, s)
    topic = f"edge/{SITE}/dev-02845/events"
    marker = f"not json {edge.tag}".encode()
    pub.publish(topic, marker, qos=1).wait_for_publish(10)
    found = None
    deadline = time.monotonic() + 30
    while found is None and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            v = json.loads(m.value())
            if v["payload_excerpt"] == marker.decode():
                found = v
    c.close()
    assert found is not None
    assert found["source"] == f"mqtt:{topic}" and found["reason"].startswith("invalid")
    assert get_json(edge.br_port)["deadlettered"] >= 1



def test_gateway_kill9_during_a_pause_resumes_it_from_the_checkpoint(edge: Edge, mqtt_settings: MqttSettings,
                                                                     mqtt_clients: list[Any]) -> None:
    """kill -9 the gateway 3.6 s after a pause's last beat (the session checkpoints at every frame from
    ~2.2 s; the gateway would raise the pause at ~4.7 s: the detector's horizon lags 1.7 s in a pause),
    start it again on the same state dir: the restored session raises the pause with its true onset."""
    from emon_core.adapters.mqtt import connect_and_wait, create_client
    from simulators.scenario import parse_scenario
    from simulators.synthetic import SyntheticConfig, SyntheticSource

    n, scenario = 2846, "pause@20:s=4"
    dev = sim_device_id(n)
    # what `emon sim devices --source synthetic --hr-bpm 70` renders for patient n (seed n)
    truth = SyntheticSource(SyntheticConfig(fs_hz=360.0, hr_bpm=70.0, seed=n), parse_scenario(scenario))
    onset = next(e.onset_index for e in truth.events(0, 40 * 360) if e.kind.value == "pause")
    received: list[tuple[float, dict[str, Any]]] = []
    clock: list[int] = []  # device time of sample 0 (from its seq-0 frame)
    lock = threading.Lock()

    def on_event(client: Any, userdata: Any, msg: Any) -> None:
        v = json.loads(msg.payload)
        if v.get("type") == "rhythm_event":
            with lock:
                received.append((time.time(), v))

    def on_frame(client: Any, userdata: Any, msg: Any) -> None:
        f = json.loads(msg.payload)
        if f.get("seq") == 0:
            clock.append(int(f["device_time_ms"]) - int(f["first_sample_index"] * 1000 / f["fs_hz"]))

    for user, topic, handler in (("bridge", f"edge/{SITE}/{dev}/events", on_event),
                                 ("gateway", f"ecg/{SITE}/{dev}/frames", on_frame)):
        s = mqtt_settings.with_user(user)
        c = create_client(s, client_id=f"watch-{user}-{edge.tag}", subscriptions=[(topic, 1)])
        c.on_message = handler
        mqtt_clients.append(c)
        connect_and_wait(c, s)
    edge.start_gateway()
    sim = edge.sim(n, 1, 36, scenario)
    assert wait_for(lambda: bool(clock), 30), "no frame from the simulator"
    t0 = clock[0]
    kill_at = (t0 + onset / 360.0 * 1000.0 + 3600.0) / 1000.0
    assert kill_at > time.time() + 1.0, "the simulator started too late to time the kill"
    time.sleep(kill_at - time.time())
    assert edge.gateway is not None
    edge.gateway.send_signal(signal.SIGKILL)
    edge.gateway.wait(timeout=10)
    killed = time.time()
    with lock:
        before = [v for _, v in received if v["kind"] == "pause"]
    assert before == [], f"mistimed: the pause was raised before the kill ({before})"
    edge.start_gateway()  # same state dir: sessions.db has the device's checkpoint

    def pause_final() -> list[dict[str, Any]]:
        with lock:
            return [v for _, v in received if v["kind"] == "pause" and v["revision"] >= 1]

    assert wait_for(lambda: bool(pause_final()), 45), [v for _, v in received]
    assert sim.wait(timeout=60) == 0
    health = get_json(edge.gw_port)
    with lock:
        events = [v for _, v in received]
    pauses = [v for v in events if v["kind"] == "pause"]
    print(f"pause onset truth {onset}, reported {sorted({v['onset_sample_index'] for v in pauses})}; "
          f"revisions {[v['revision'] for v in pauses]}, first {min(t for t, v in received if v['kind'] == 'pause') - killed:.1f} s "
          f"after the kill; restores {health.get('session_restores')}")
    assert {v["id"] for v in pauses} == {f"{dev}:pause:{pauses[0]['onset_sample_index']}"}
    assert abs(pauses[0]["onset_sample_index"] - onset) <= TOL
    final = pause_final()[-1]
    assert abs((final["end_time_ms"] - final["onset_time_ms"]) - 4000) <= 200
    assert health.get("session_restores") == {"restored": 1}
    assert all(v["kind"] != "signal_loss" for v in events)


def test_a_bridge_stopped_cleanly_leaves_the_share_group(edge: Edge, kafka_settings: KafkaSettings,
                                                        mqtt_settings: MqttSettings, mqtt_clients: list[Any]) -> None:
    """Two bridges share the load; one stops (SIGTERM) and stays down. Everything published after
    that reaches Kafka through the other at once: the stopped one's session does not keep a share."""
    from confluent_kafka import Consumer, TopicPartition

    from emon_core.adapters.mqtt import connect_and_wait, create_client
    from emon_core.topics import KAFKA_DEADLETTER

    c = Consumer({"bootstrap.servers": kafka_settings.bootstrap_servers, "group.id": f"leave-{time.time_ns()}"})
    parts = []
    for p in c.list_topics(KAFKA_DEADLETTER, timeout=30).topics[KAFKA_DEADLETTER].partitions:
        _, high = c.get_watermark_offsets(TopicPartition(KAFKA_DEADLETTER, p), timeout=10)
        parts.append(TopicPartition(KAFKA_DEADLETTER, p, high))
    c.assign(parts)
    edge.start_bridge()
    other_id, other_port = f"{edge.bridge_id}-b", free_port()
    other = edge._spawn("bridge-b", ["bridge", "--bridge-id", other_id, "--http-port", str(other_port)])
    edge._wait_healthy(other_port, "bridge-b", other)
    try:
        assert edge.bridge is not None
        edge.bridge.send_signal(signal.SIGTERM)
        assert edge.bridge.wait(timeout=30) == 0
        s = mqtt_settings.with_user("gateway")
        pub = create_client(s, client_id=f"leave-pub-{edge.tag}", max_inflight=100)
        mqtt_clients.append(pub)
        connect_and_wait(pub, s)
        n = 60
        markers = {f"leave {edge.tag} {i}" for i in range(n)}  # not JSON: each lands in the dead-letter topic
        for m in sorted(markers):
            pub.publish(f"edge/{SITE}/dev-02846/events", m.encode(), qos=1).wait_for_publish(10)
        found: set[str] = set()
        deadline = time.monotonic() + 30
        while found != markers and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                excerpt = json.loads(msg.value()).get("payload_excerpt", "")
                if excerpt in markers:
                    found.add(excerpt)
        assert len(found) == n, f"{n - len(found)} of {n} held for the stopped bridge's session"
        log = (edge.tmp / "bridge.log").read_text()
        assert "could not leave" not in log and "session stays" not in log
    finally:
        c.close()
        other.send_signal(signal.SIGTERM)
        other.wait(timeout=30)
        clear_session(mqtt_settings, "bridge", other_id)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v", "-s"]))
