"""Hub metrics (prometheus-client, own registry) and the HTTP endpoint: ``/metrics`` and ``/healthz``."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class HubMetrics:
    """All hub metrics in one registry (so several hubs can live in one test process)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.messages = Counter("hub_messages", "Kafka messages handled", ["topic", "outcome"], registry=r)
        self.alerts = Counter("hub_alerts_published", "Alert versions published", ["severity"], registry=r)
        self.deadletters = Counter("hub_deadletters", "Malformed inputs sent to the dead-letter topic",
                                   ["reason"], registry=r)
        self.write_seconds = Histogram("hub_cassandra_write_seconds", "Latency of one Cassandra write request",
                                       buckets=(.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5), registry=r)
        self.round_seconds = Histogram("hub_round_seconds", "Poll -> commit time of one round",
                                       buckets=(.005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10), registry=r)
        self.write_failures = Counter("hub_cassandra_write_failures", "Write rounds that failed (retried)",
                                      registry=r)
        self.cassandra_up = Gauge("hub_cassandra_available", "1 when the last Cassandra round succeeded",
                                  registry=r)
        self.paused = Gauge("hub_consumption_paused", "1 while consumption is paused (Cassandra outage)",
                            registry=r)
        self.cache_hits = Gauge("hub_patient_cache_hits", "Patient cache hits", registry=r)
        self.cache_misses = Gauge("hub_patient_cache_misses", "Patient cache misses", registry=r)
        self.cache_available = Gauge("hub_patient_records_available", "1 when patient records are fresh",
                                     registry=r)
        self.open_episodes = Gauge("hub_open_episodes", "Episodes open in this process", registry=r)
        self.committed = Counter("hub_offsets_committed", "Offset commits after successful writes", registry=r)
        self.cassandra_up.set(1)
        self.cache_available.set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Handler(BaseHTTPRequestHandler):
    metrics: HubMetrics
    health: Callable[[], dict[str, Any]]

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path.startswith("/metrics"):
            body, ctype, code = self.metrics.exposition(), CONTENT_TYPE_LATEST, 200
        elif self.path.startswith("/healthz") or self.path == "/":
            state = self.health()
            body, ctype = json.dumps(state).encode(), "application/json"
            code = 200 if state.get("ok") else 503
        else:
            body, ctype, code = b"not found\n", "text/plain", 404
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # quiet
        pass


def serve(port: int, metrics: HubMetrics, health: Callable[[], dict[str, Any]], host: str = "127.0.0.1"
          ) -> ThreadingHTTPServer:
    """Start the endpoint on a daemon thread; returns the server (``.server_address`` has the port)."""
    handler = type("HubHandler", (_Handler,), {"metrics": metrics, "health": staticmethod(health)})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="hub-http", daemon=True).start()
    return server
