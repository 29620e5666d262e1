"""What the load test watches: Kafka tails, a logged-in SSE session of the map, process CPU/memory."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from emon_core.settings import KafkaSettings


def now_ms() -> int:
    return int(time.time() * 1000)


class KafkaTail:
    """Reads ``topic`` from its current end with an own group; keeps the values ``keep`` accepts.

    Each kept record is the decoded JSON value plus ``_arrived_ms`` (our clock on receipt) and
    ``_kafka_ts`` (the record's timestamp).
    """

    def __init__(self, kafka: KafkaSettings, topic: str, keep: Callable[[dict[str, Any]], bool],
                 group_prefix: str = "lt-tail") -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.topic = topic
        self.keep = keep
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.consumer = Consumer(kafka.consumer_config(f"{group_prefix}-{uuid.uuid4().hex[:8]}",
                                                       **{"fetch.wait.max.ms": 50, "log_level": 2}))
        md = self.consumer.list_topics(topic, timeout=30)
        parts = []
        for p in md.topics[topic].partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            parts.append(TopicPartition(topic, p, high))
        self.consumer.assign(parts)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"tail-{topic}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = self.consumer.consume(500, 0.2)
            except Exception:  # noqa: BLE001 - broker down during a fault: keep polling
                time.sleep(0.5)
                continue
            arrived = now_ms()
            kept = []
            for m in msgs:
                if m.error() is not None:
                    continue
                try:
                    v = json.loads(m.value())
                except ValueError:
                    continue
                if isinstance(v, dict) and self.keep(v):
                    v["_arrived_ms"] = arrived
                    v["_kafka_ts"] = m.timestamp()[1]
                    kept.append(v)
            if kept:
                with self.lock:
                    self.records.extend(kept)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.consumer.close()
        except Exception:  # noqa: BLE001
            pass


class SseSession:
    """A dispatcher logged in to the map, reading ``/api/stream``; records each alert on arrival.

    Reconnects (with a fresh login) if the stream drops, as a browser's EventSource would.
    """

    def __init__(self, base_url: str, keep: Callable[[dict[str, Any]], bool], user: str = "dispatcher") -> None:
        from emon_core.settings import dev_login

        login = dev_login(user)
        if login is None:
            raise RuntimeError("no development login: run `emon services up` (credentials.json)")
        self.base = base_url.rstrip("/")
        self.username, self.password = login
        self.keep = keep
        self.alerts: list[dict[str, Any]] = []
        self.assignments: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sse")
        self._thread.start()

    def _login(self, client: Any) -> str:
        r = client.post(f"{self.base}/login", data={"username": self.username, "password": self.password},
                        follow_redirects=False)
        if r.status_code != 303:
            raise RuntimeError(f"map login failed: HTTP {r.status_code}")
        # the session cookie is Secure (HTTPS in production); over local http we carry it ourselves
        for header in r.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            if name.strip() == "emon_session":
                return rest.split(";", 1)[0]
        raise RuntimeError("map login: no session cookie")

    def _run(self) -> None:
        import httpx

        while not self._stop.is_set():
            try:
                with httpx.Client(timeout=httpx.Timeout(10.0, read=30.0)) as client:
                    token = self._login(client)
                    with client.stream("GET", f"{self.base}/api/stream",
                                       headers={"Cookie": f"emon_session={token}",
                                                "Accept": "text/event-stream"}) as resp:
                        if resp.status_code != 200:
                            raise RuntimeError(f"stream HTTP {resp.status_code}")
                        event = ""
                        for line in resp.iter_lines():
                            if self._stop.is_set():
                                return
                            if line.startswith("event:"):
                                event = line[6:].strip()
                                if event == "hello":
                                    self.connected.set()
                            elif line.startswith("data:") and event in ("alert", "assignment"):
                                arrived = now_ms()
                                try:
                                    v = json.loads(line[5:].strip())
                                except ValueError:
                                    continue
                                if isinstance(v, dict) and self.keep(v):
                                    v["_arrived_ms"] = arrived
                                    with self.lock:
                                        (self.alerts if event == "alert" else self.assignments).append(v)
                            elif not line:
                                event = ""
            except Exception:  # noqa: BLE001 - map restarting / network: reconnect like EventSource
                pass
            if not self._stop.is_set():
                self.reconnects += 1
                self.connected.clear()
                time.sleep(1.0)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.alerts)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


@dataclass
class ProcStats:
    cpu_s: dict[str, float] = field(default_factory=dict)
    rss_max_mib: dict[str, float] = field(default_factory=dict)
    rss_samples: dict[str, list[float]] = field(default_factory=dict)
    cpu_pct_samples: dict[str, list[float]] = field(default_factory=dict)


class ProcSampler:
    """Samples CPU% and RSS of named pids (children included) every ``period_s`` with psutil.

    ``pids``: processes started for the run (their CPU counts from their start);
    ``services``: long-running ones (brokers, database), whose CPU counts from the first sample.
    """

    def __init__(self, pids: Callable[[], dict[str, int]], period_s: float = 2.0,
                 services: Callable[[], dict[str, int]] | None = None) -> None:
        self.pids = pids
        self.services = services
        self.period_s = period_s
        self.stats = ProcStats()
        self._procs: dict[tuple[str, int], Any] = {}
        self._base_cpu: dict[tuple[str, int], float] = {}  # services: CPU at the first sample
        self._cpu_acc: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self.load: list[tuple[float, float, float]] = []
        self._thread = threading.Thread(target=self._run, daemon=True, name="psutil")
        self._thread.start()

    def _sample(self) -> None:
        import os

        import psutil

        self.load.append(os.getloadavg())
        services = self.services() if self.services is not None else {}
        for name, pid in {**self.pids(), **services}.items():
            key = (name, pid)
            try:
                p = self._procs.get(key)
                if p is None:
                    p = self._procs[key] = psutil.Process(pid)
                    p.cpu_percent(None)
                procs = [p, *p.children(recursive=True)]
                cpu = sum(q.cpu_times().user + q.cpu_times().system for q in procs)
                rss = sum(q.memory_info().rss for q in procs) / 2**20
                pct = p.cpu_percent(None)
            except Exception:  # noqa: BLE001 - process gone (killed in a fault run)
                continue
            if name in services:
                cpu -= self._base_cpu.setdefault(key, cpu)
            self._cpu_acc[key] = cpu
            self.stats.rss_samples.setdefault(name, []).append(rss)
            self.stats.cpu_pct_samples.setdefault(name, []).append(pct)
            self.stats.rss_max_mib[name] = max(self.stats.rss_max_mib.get(name, 0.0), rss)
        totals: dict[str, float] = {}
        for (name, _), cpu in self._cpu_acc.items():
            totals[name] = totals.get(name, 0.0) + cpu
        self.stats.cpu_s = totals

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sample()
            except Exception:  # noqa: BLE001
                pass
            self._stop.wait(self.period_s)

    def close(self) -> ProcStats:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.stats


def service_pids() -> dict[str, int]:
    """Pids of the local services (`emon services up`) that are running, as ``svc-<name>``."""
    from emon_core.devservices.cli import SERVICES
    from emon_core.devservices.procs import running

    return {f"svc-{n}": rec.pid for n in SERVICES if (rec := running(n)) is not None}
