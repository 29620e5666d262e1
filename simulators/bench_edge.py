"""``emon bench edge``: simulator + gateway + bridge on this machine; capacity, latency and the bare-client ceiling.

Figures only, never assertions. For each patient count (ascending) a fresh gateway and
bridge run as subprocesses while ``emon sim devices`` streams N real-time 360 Hz patients
for ``--step-s`` seconds; the gateway keeps up when it processed >= 98 % of the frames
sent and the age of the frames it processed (device clock at a frame's end to its processing,
``emon_gateway_frame_age_seconds``, sampled each second; a backlog waits on the broker, since
the gateway reads its intake in rounds) stayed below one frame (p99 < 1 s). Latency is from the device clock at
the end of the frame that completed a flagged beat (``trace.device_sent_ms``, the device
publishes then) to the beat being readable from Kafka (consumer receive time, so an upper
bound). CPU (% of one core) and RSS are sampled per process. The same run measures the
ceiling: a bare paho QoS 1 publisher -> subscriber and a bare confluent-kafka idempotent
producer with flagged-beat-sized messages, and the bridge alone on the same messages.

Options after ``emon bench edge`` (``rest``): ``--levels 50,100,200``, ``--step-s 40``,
``--source mitdb|synthetic``, ``--start-index 2000`` (site-02), ``--messages 5000``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from simulators.clock_watch import CLOCK_STEP_TOLERANCE_S, ClockWatch

REPO = Path(__file__).resolve().parent.parent
EMON = str(REPO / ".venv" / "bin" / "emon") if (REPO / ".venv" / "bin" / "emon").exists() else "emon"
BENCH_TOPIC = "emon.bench-edge"


def _options(rest: list[str], quick: bool) -> argparse.Namespace:
    rest = [r for r in rest if r != "--"]
    quick = quick or "--quick" in rest
    p = argparse.ArgumentParser(prog="emon bench edge")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", dest="json_path", default=None)
    p.add_argument("--levels", default="10,25" if quick else "50,100,200,300,400")
    p.add_argument("--step-s", type=float, default=20.0 if quick else 40.0)
    p.add_argument("--source", choices=("mitdb", "synthetic"), default="mitdb")
    p.add_argument("--start-index", type=int, default=2000)
    p.add_argument("--messages", type=int, default=2000 if quick else 5000)
    o = p.parse_args(rest)
    o.quick = quick  # `emon bench edge --quick` sets it before the `--`, not in `rest`
    return o


_USED_PORTS: set[int] = set()


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _USED_PORTS:
            _USED_PORTS.add(port)
            return port


def _get(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.read().decode()
    except urllib.error.HTTPError as err:
        return err.read().decode()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100.0 * (len(v) - 1))))]


class ProcSampler:
    """CPU (% of one core) and RSS (MB) of processes, sampled every second in a thread."""

    def __init__(self, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        import psutil

        self.ps = {name: psutil.Process(p.pid) for name, p in procs.items()}
        self.cpu: dict[str, list[float]] = {n: [] for n in procs}
        self.rss: dict[str, list[float]] = {n: [] for n in procs}
        for proc in self.ps.values():
            proc.cpu_percent(None)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for name, proc in self.ps.items():
                try:
                    self.cpu[name].append(proc.cpu_percent(None))
                    self.rss[name].append(proc.memory_info().rss / 1e6)
                except Exception:  # noqa: BLE001 - the process ended
                    pass

    def stop(self) -> dict[str, dict[str, float]]:
        self._stop.set()
        self._t.join()
        return {n: {"cpu_pct": round(sum(c[2:]) / max(len(c[2:]), 1), 1), "rss_mb": round(max(self.rss[n] or [0]), 1)}
                for n, c in self.cpu.items()}


def _edge_steps() -> tuple[tuple[str, str, str], ...]:
    """The load test's trace steps up to Kafka, then Kafka -> readable by the bench's consumer."""
    from simulators.loadtest.report import TRACE_STEPS

    return (*TRACE_STEPS[:4], ("kafka_to_consumer", "kafka_produced_ms", "consumer_received_ms"))


class FlaggedTail:
    """Latency of flagged beats of the bench's devices as they become readable from Kafka."""

    def __init__(self, bootstrap: str, topic: str = "emon.flagged") -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-edge-{time.time_ns()}",
                           "enable.auto.commit": False, "fetch.wait.max.ms": 5})
        parts = []
        for p in self.c.list_topics(topic, timeout=30).topics[topic].partitions:
            _, high = self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            parts.append(TopicPartition(topic, p, high))
        self.c.assign(parts)
        self.latency_ms: list[float] = []
        self.records: list[dict[str, Any]] = []  # id and trace (+ consumer receive time) per beat
        self.count = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self.c.poll(0.1)
            if m is None or m.error():
                continue
            now = time.time() * 1000
            v = json.loads(m.value())
            sent = (v.get("trace") or {}).get("device_sent_ms")
            if v.get("type") == "flagged_beat" and sent:
                self.count += 1
                self.latency_ms.append(now - sent)
                self.records.append({"id": v.get("id"), "trace": {**v["trace"], "consumer_received_ms": now}})

    def hop_percentiles(self) -> dict[str, Any]:
        """Percentiles (ms) of each hop: device -> gateway intake -> outbox -> bridge -> Kafka -> readable."""
        from simulators.loadtest.report import trace_breakdown

        return trace_breakdown(self.records, [], _edge_steps())

    def close(self) -> None:
        self._stop.set()
        self._t.join()
        self.c.close()


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(_get(port, "/healthz")).get("ok"):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"process {proc.args} not healthy")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def run_level(n: int, o: argparse.Namespace, tmp: Path, bootstrap: str) -> dict[str, Any]:
    """One gateway + bridge + n real-time patients for ``step_s``; its figures."""
    tag = f"bench{os.getpid()}-{n}"
    gw_port, br_port = _free_port(), _free_port()
    env = {**os.environ, "EMON_BRIDGE_SHARE_GROUP": tag}
    logs = tmp / tag
    logs.mkdir(parents=True, exist_ok=True)
    site = f"site-{o.start_index // 1000:02d}"

    def spawn(name: str, args: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen([EMON, *args], stdout=open(logs / f"{name}.log", "wb"), stderr=subprocess.STDOUT, env=env)

    bridge = spawn("bridge", ["bridge", "--bridge-id", f"br-{tag}", "--http-port", str(br_port)])
    gateway = spawn("gateway", ["gateway", "--site", site, "--simulated", str(o.start_index + n),
                                "--gateway-id", f"gw-{tag}", "--http-port", str(gw_port), "--state-dir", str(logs / "gw")])
    procs = [gateway, bridge]
    try:
        _wait_healthy(br_port, bridge)
        _wait_healthy(gw_port, gateway)
        tail = FlaggedTail(bootstrap)
        sim = spawn("sim", ["sim", "devices", "--patients", str(n), "--start-index", str(o.start_index),
                            "--source", o.source, "--duration", str(o.step_s), "--status-every", "0",
                            "--json", str(logs / "sim.json"), "--drain-s", "5"])
        procs.insert(0, sim)
        sampler = ProcSampler({"gateway": gateway, "bridge": bridge, "sim": sim})
        clock = ClockWatch()
        lags: list[float] = []
        t0 = time.monotonic()
        m0 = _get(gw_port, "/metrics")
        while sim.poll() is None and time.monotonic() - t0 < o.step_s + 120:
            time.sleep(1.0)
            # end of a frame on the device to processed: a backlog waits on the broker, not in the gateway
            lags.append(_metric(_get(gw_port, "/metrics"), "emon_gateway_frame_age_seconds"))
        time.sleep(3.0)
        elapsed = time.monotonic() - t0
        m1 = _get(gw_port, "/metrics")
        usage = sampler.stop()
        tail.close()
        sim_summary = json.loads((logs / "sim.json").read_text()) if (logs / "sim.json").exists() else {}
        frames = _metric(m1, "emon_gateway_frames_total") - _metric(m0, "emon_gateway_frames_total")
        beats = sum(_metric(m1, f'emon_gateway_beats_total{{beat_class="{c}"}}') for c in "NSVFQ")
        flagged = _metric(m1, "emon_gateway_flagged_beats_total")
        sent = float(_find(sim_summary, "frames_sent") or 0)
        health = json.loads(_get(gw_port, "/healthz"))
        keeps_up = sent > 0 and frames >= 0.98 * sent and (_pct(lags[2:], 99) or 0) < 1.0
        return {
            "patients": n, "seconds": round(elapsed, 1), "frames_sent": sent, "frames_processed": frames,
            "frames_per_s": round(frames / o.step_s, 1), "beats_per_s": round(beats / o.step_s, 1),
            "flagged_per_s": round(flagged / o.step_s, 2),
            "latency_ms_p50": _round(_pct(tail.latency_ms, 50)), "latency_ms_p99": _round(_pct(tail.latency_ms, 99)),
            "flagged_in_kafka": tail.count, "hops_ms": tail.hop_percentiles(),
            "lag_s_p99": _round(_pct(lags[2:], 99), 3),
            "traffic_reduction": health.get("traffic_reduction"), "keeps_up": keeps_up, "processes": usage,
            "sim_lateness_ms": _find(sim_summary, "lateness_ms"), "clock_step_s": round(clock.step_s(), 3),
        }
    finally:
        _stop(procs)
        from emon_core.settings import MqttSettings

        _clear_sessions(MqttSettings(), [("bridge", f"br-{tag}"), ("gateway", f"gw-{tag}-in")])


def _find(d: Any, key: str) -> Any:
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            r = _find(v, key)
            if r is not None:
                return r
    return None


def _round(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


def _clear_sessions(mqtt_settings: Any, sessions: list[tuple[str, str]]) -> None:
    from emon_core.adapters.mqtt import connect_and_wait, create_client

    for user, cid in sessions:
        s = mqtt_settings.with_user(user)
        c = create_client(s, client_id=cid)
        try:
            connect_and_wait(c, s, clean_start=True, session_expiry_s=0, timeout_s=10)
            c.disconnect()
        except Exception:  # noqa: BLE001 - best effort
            pass
        finally:
            c.loop_stop()


def _sample_payload() -> bytes:
    """A flagged beat of the usual size (2 s strip at 360 Hz)."""
    from emon_core.contracts import BeatClass, EcgStrip, FlaggedBeat, HopTimes

    strip = EcgStrip(fs_hz=360.0, start_sample_index=0, start_time_ms=0, samples_uv=[(i * 37) % 1500 - 400 for i in range(720)])
    return FlaggedBeat(id="dev-02999:1000", site_id="site-02", device_id="dev-02999", patient_id="pat-02999",
                       sample_index=1000, r_time_ms=int(time.time() * 1000), beat_class=BeatClass.V,
                       probabilities={c: 0.2 for c in BeatClass}, model_version="bench", strip=strip,
                       trace=HopTimes()).encode()


def bare_paho(n: int, payload: bytes) -> dict[str, Any]:
    """QoS 1 publisher -> subscriber through Mosquitto (gateway -> bridge accounts)."""
    from emon_core.adapters.mqtt import connect_and_wait, create_client
    from emon_core.settings import MqttSettings

    s = MqttSettings()
    topic = "edge/site-02/dev-02999/events"
    got = threading.Event()
    count = [0]
    lat: list[float] = []

    def on_message(c: Any, u: Any, m: Any) -> None:
        count[0] += 1
        if count[0] >= n:
            got.set()

    sub = create_client(s.with_user("bridge"), client_id=f"bench-sub-{os.getpid()}", subscriptions=[(topic, 1)])
    sub.on_message = on_message
    connect_and_wait(sub, s.with_user("bridge"))
    pub = create_client(s.with_user("gateway"), client_id=f"bench-pub-{os.getpid()}", max_inflight=200)
    connect_and_wait(pub, s.with_user("gateway"))
    time.sleep(0.5)
    t0 = time.perf_counter()
    for _ in range(n):
        pub.publish(topic, payload, qos=1)
    got.wait(120)
    el = time.perf_counter() - t0
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    del lat
    return {"messages": count[0], "msgs_per_s": round(count[0] / el, 1), "mbit_per_s": round(count[0] * len(payload) * 8 / el / 1e6, 2)}


def bare_kafka(n: int, payload: bytes, kafka: Any) -> dict[str, Any]:
    """confluent-kafka idempotent acks=all producer, waiting for every delivery report."""
    from confluent_kafka import Producer

    from emon_core.adapters.kafka import ensure_topics

    ensure_topics(kafka, {BENCH_TOPIC: 6})
    p = Producer(kafka.producer_config())
    done = [0]

    def cb(err: Any, msg: Any) -> None:
        if err is None:
            done[0] += 1

    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                p.produce(BENCH_TOPIC, payload, key=f"pat-{i % 1000:05d}", on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(60)
    el = time.perf_counter() - t0
    return {"messages": done[0], "msgs_per_s": round(done[0] / el, 1)}


def bridge_alone(n: int, payload: bytes, bootstrap: str, tmp: Path) -> dict[str, Any]:
    """The bridge forwarding n flagged-beat messages published as the gateway: msgs/s into Kafka."""
    from emon_core.adapters.mqtt import connect_and_wait, create_client
    from emon_core.settings import MqttSettings

    tag = f"benchbr{os.getpid()}"
    port = _free_port()
    bridge = subprocess.Popen([EMON, "bridge", "--bridge-id", tag, "--http-port", str(port)],
                              stdout=open(tmp / "bridge-alone.log", "wb"), stderr=subprocess.STDOUT,
                              env={**os.environ, "EMON_BRIDGE_SHARE_GROUP": tag})
    try:
        _wait_healthy(port, bridge)
        sampler = ProcSampler({"bridge": bridge})
        s = MqttSettings().with_user("gateway")
        pub = create_client(s, client_id=f"bench-brpub-{os.getpid()}", max_inflight=200)
        connect_and_wait(pub, s)
        m0 = _metric(_get(port, "/metrics"), 'emon_bridge_forwarded_total{kind="flagged_beat"}')
        t0 = time.perf_counter()
        for _ in range(n):
            pub.publish("edge/site-02/dev-02999/events", payload, qos=1)
        while time.perf_counter() - t0 < 120:
            if _metric(_get(port, "/metrics"), 'emon_bridge_forwarded_total{kind="flagged_beat"}') - m0 >= n:
                break
            time.sleep(0.05)
        el = time.perf_counter() - t0
        done = _metric(_get(port, "/metrics"), 'emon_bridge_forwarded_total{kind="flagged_beat"}') - m0
        pub.disconnect()
        pub.loop_stop()
        return {"messages": done, "msgs_per_s": round(done / el, 1), "process": sampler.stop()["bridge"]}
    finally:
        _stop([bridge])
        _clear_sessions(MqttSettings(), [("bridge", tag)])


def replay_frames(devices: int, seconds: int, source: str = "synthetic",
                  encoding: str = "i16") -> tuple[str, list[list[tuple[str, bytes]]]]:
    """Encoded 1 s, 360 Hz frames of ``devices`` simulated patients (``dev-00000`` .., site-00), per second.

    ``source`` is ``synthetic`` or ``mitdb`` (patient ``i`` replays what ``emon sim devices`` would
    give it, falling back to synthetic when the records are absent); returns the source used.
    ``encoding``: samples as base64 int16 (``i16``, what the simulator sends) or JSON numbers."""
    from emon_core.contracts import EcgFrame
    from simulators.synthetic import SyntheticConfig, SyntheticSource

    srcs: list[Any] = [SyntheticSource(SyntheticConfig(fs_hz=360.0, seed=i)) for i in range(devices)]
    if source == "mitdb":
        from simulators.sim_devices import DEFAULT_MITDB
        from simulators.wfdb_source import patient_source

        if (DEFAULT_MITDB / "100.hea").exists():
            srcs = [patient_source(i, DEFAULT_MITDB) for i in range(devices)]
        else:
            source = "synthetic"
    def frame(i: int, src: Any, k: int) -> bytes:
        return EcgFrame.from_adu(
            src.read(360 * k, 360).samples, compact=encoding == "i16",
            device_id=f"dev-{i:05d}", seq=k, device_time_ms=1_700_000_000_000 + 1000 * k, fs_hz=360.0,
            gain_adu_per_mv=src.gain_adu_per_mv, baseline_adu=src.baseline_adu, first_sample_index=360 * k).encode()

    frames = [[(f"ecg/site-00/dev-{i:05d}/frames", frame(i, src, k)) for i, src in enumerate(srcs)] for k in range(seconds)]
    return source, frames


def pipeline_cpu(devices: int = 50, seconds: int = 20, source: str = "synthetic", warmup_s: int = 1) -> dict[str, Any]:
    """CPU time per frame of the gateway pipeline in-process (decode .. outbox), robust to a busy machine.

    ``source`` is ``synthetic`` or ``mitdb`` (patient ``i`` replays what ``emon sim devices`` would
    give it, falling back to synthetic when the records are absent). The first ``warmup_s``
    seconds are not measured: a young session costs less (the detector is still learning, the
    beat template and RR history are filling), about 0.37 ms per frame in its first 15 s against
    0.5-0.6 ms from the first minute on (MIT-BIH, measured here)."""
    from emon_core.registry import DeviceRegistry
    from gateway.outbox import Outbox
    from gateway.service import GatewayPipeline, load_classifier
    from gateway.settings import load_gateway_settings

    import logging

    logging.getLogger("gateway.service").setLevel(logging.WARNING)
    settings = load_gateway_settings(None, simulated=devices)
    source, frames = replay_frames(devices, seconds, source)
    with tempfile.TemporaryDirectory() as d:
        p = GatewayPipeline(settings, DeviceRegistry.simulated(devices), load_classifier(settings), Outbox(Path(d) / "o.db"))
        for batch in frames[:warmup_s]:  # sessions created and warmed up outside the measurement
            for topic, payload in batch:
                p.handle(topic, payload, 0)
            p.tick()
        c0 = time.process_time()
        for batch in frames[warmup_s:]:
            for topic, payload in batch:
                p.handle(topic, payload, 0)
            p.tick()
        cpu = time.process_time() - c0
        p.outbox.close()
    n = devices * (seconds - warmup_s)
    ms = 1000.0 * cpu / n
    return {"frames": n, "source": source, "cpu_ms_per_frame": round(ms, 2), "patients_per_core": int(1000.0 / ms)}


def bench_edge(args: argparse.Namespace) -> int:
    from emon_core.settings import KafkaSettings

    o = _options(list(getattr(args, "rest", []) or []), bool(getattr(args, "quick", False)))
    kafka = KafkaSettings()
    tmp = Path(tempfile.mkdtemp(prefix="emon-bench-edge-"))
    payload = _sample_payload()
    result: dict[str, Any] = {"payload_bytes": len(payload), "cores": os.cpu_count(), "levels": []}
    print(f"emon bench edge: logs in {tmp}; flagged-beat payload {len(payload)} B, {os.cpu_count()} cores")
    warm = 1 if o.quick else 60
    result["pipeline"] = pipeline_cpu(20 if o.quick else 40, 10 if o.quick else 90, o.source, warm)
    print(f"gateway pipeline in-process (1 s frames, 360 Hz, after {warm} s of warm-up): {result['pipeline']}")
    result["bare_paho"] = bare_paho(o.messages, payload)
    print(f"bare paho QoS1 pub->sub: {result['bare_paho']}")
    result["bare_kafka"] = bare_kafka(o.messages, payload, kafka)
    print(f"bare kafka producer (idempotent, acks=all): {result['bare_kafka']}")
    result["bridge"] = bridge_alone(o.messages, payload, kafka.bootstrap_servers, tmp)
    ceiling = min(result["bare_paho"]["msgs_per_s"], result["bare_kafka"]["msgs_per_s"])
    result["bridge"]["vs_ceiling"] = round(result["bridge"]["msgs_per_s"] / ceiling, 2) if ceiling else None
    print(f"bridge MQTT->Kafka alone: {result['bridge']}")
    best = 0
    for n in [int(x) for x in o.levels.split(",") if x.strip()]:
        r = run_level(n, o, tmp, kafka.bootstrap_servers)
        result["levels"].append(r)
        print(f"{n:5d} patients: frames/s {r['frames_per_s']}, beats/s {r['beats_per_s']}, flagged/s {r['flagged_per_s']}, "
              f"latency p50/p99 {r['latency_ms_p50']}/{r['latency_ms_p99']} ms, lag p99 {r['lag_s_p99']} s, "
              f"reduction {r['traffic_reduction']}x, keeps up: {r['keeps_up']}; {r['processes']}")
        print("       hops p50/p99 ms: " + ", ".join(f"{h} {v['p50']}/{v['p99']}" for h, v in r["hops_ms"].items()))
        late = r["sim_lateness_ms"] or {}
        print(f"       simulator behind its schedule p50/p99 {late.get('p50')}/{late.get('p99')} ms")
        if abs(r["clock_step_s"]) > CLOCK_STEP_TOLERANCE_S:
            print(f"       WARNING: the wall clock was stepped by {r['clock_step_s']:+.1f} s: latencies above are void")
        if not r["keeps_up"]:
            break
        best = n
    result["max_patients_real_time"] = best
    print(f"largest patient count one gateway process kept up with: {best}")
    json_path = getattr(args, "json_path", None) or o.json_path
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    return 0
