"""``/metrics`` (Prometheus text, read from the router's state at scrape time) and ``/healthz``."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)


class RouterCollector:
    """Prometheus collector over a :class:`~paramedic_router.dispatch.Router` (no hot-path cost)."""

    def __init__(self, router: Any) -> None:
        self.router = router

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        r = self.router
        events = CounterMetricFamily("emon_router_events", "Router decisions and assignment outcomes",
                                     labels=["event"])
        for name, value in sorted(r.counters.items()):
            events.add_metric([name], value)
        yield events
        for name, help_text, value in (
            ("emon_router_units", "Known paramedic units", len(r.units)),
            ("emon_router_units_available", "Units available for dispatch", r.index.available_count()),
            ("emon_router_active_assignments", "Alerts with a unit on the way or on scene", len(r.active)),
            ("emon_router_queue_length", "Alerts waiting for a free unit", len(r.queue)),
        ):
            yield GaugeMetricFamily(name, help_text, value=value)
        for name, help_text, samples in (
            ("emon_router_decision_seconds", "Prefilter + geodesic ranking time (recent decisions)", r.decision_ms),
            ("emon_router_claim_seconds", "Cassandra LWT claim time, in flight (recent claims)", r.claim_ms),
        ):
            values = list(samples)
            yield SummaryMetricFamily(name, help_text, count_value=len(values), sum_value=sum(values) / 1000.0)


HealthFn = Callable[[], tuple[bool, dict[str, Any]]]


def serve(host: str, port: int, router: Any, health: HealthFn) -> ThreadingHTTPServer:
    """Start the endpoints on a daemon thread; returns the server (``.server_address``, ``.shutdown()``)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(RouterCollector(router))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
            elif path in ("/healthz", "/health"):
                try:
                    ok, detail = health()
                except Exception as err:  # noqa: BLE001 - a failing check is unhealthy, not a crash
                    ok, detail = False, {"error": str(err)[:200]}
                body = json.dumps({"ok": ok, **detail}, default=str).encode()
                ctype, code = "application/json", 200 if ok else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("http: " + fmt, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="router-http", daemon=True).start()
    log.info("router metrics and health on http://%s:%d", *server.server_address[:2])
    return server


def loop_health(service: Any, stale_s: float = 10.0) -> HealthFn:
    """Healthy when the loop turned recently, the alerts consumer has partitions, Cassandra answers."""

    def check() -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - service.last_loop
        cassandra = True
        try:
            service.router.store.s.execute("SELECT release_version FROM system.local")
        except Exception:  # noqa: BLE001 - reported, not raised
            cassandra = False
        ok = service.ready and age < stale_s and cassandra
        return ok, {"ready": service.ready, "loop_age_s": round(age, 2), "cassandra": cassandra,
                    **service.router.stats()}

    return check
