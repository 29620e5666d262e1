"""``/metrics`` (Prometheus text, read from the router's state at scrape time) and ``/healthz``."""

from __future__ import annotations

import logging
import time
from http.server import ThreadingHTTPServer
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
    from prometheus_client import CollectorRegistry

    from emon_core.http_endpoints import HttpEndpoints

    registry = CollectorRegistry()
    registry.register(RouterCollector(router))
    endpoints = HttpEndpoints(host, port, registry, health).start()
    log.info("router metrics and health on http://%s:%d", host, endpoints.port)
    return endpoints.server


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
