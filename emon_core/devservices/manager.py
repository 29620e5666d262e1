"""Start, stop and inspect the dev services together (Mosquitto, Kafka, Cassandra)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from emon_core.devservices.base import Service, Status
from emon_core.devservices.cassandra import Cassandra
from emon_core.devservices.kafka import Kafka
from emon_core.devservices.mosquitto import Mosquitto
from emon_core.errors import ServiceError

log = logging.getLogger(__name__)

ORDER = ("mosquitto", "kafka", "cassandra")


def all_services() -> dict[str, Service]:
    return {"mosquitto": Mosquitto(), "kafka": Kafka(), "cassandra": Cassandra()}


def select(names: list[str] | None) -> list[Service]:
    """Services by name, in start order (all when ``names`` is empty)."""
    services = all_services()
    if not names:
        return [services[n] for n in ORDER]
    unknown = [n for n in names if n not in services]
    if unknown:
        raise ServiceError(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    return [services[n] for n in ORDER if n in names]


@dataclass
class UpResult:
    name: str
    started: bool  # False: was already running
    seconds: float


def up(names: list[str] | None = None, timeout_s: float | None = None) -> list[UpResult]:
    """Start the services (in parallel) and wait until each answers; already-running ones are kept."""
    services = select(names)
    procs_by_name = {}
    began = {}
    for svc in services:  # spawn all first so the JVMs boot concurrently
        began[svc.name] = time.monotonic()
        procs_by_name[svc.name] = svc.start()
    results = []
    for svc in services:
        proc = procs_by_name[svc.name]
        svc.wait_ready(proc, timeout_s)
        # seconds from this service's own install/prepare/spawn to its first good probe
        results.append(UpResult(svc.name, proc is not None, time.monotonic() - began[svc.name]))
    return results


def down(names: list[str] | None = None, timeout_s: float = 60.0) -> dict[str, str]:
    """Stop the services we started (reverse order): SIGTERM, then SIGKILL after ``timeout_s``."""
    return {svc.name: svc.stop(timeout_s) for svc in reversed(select(names))}


def status(names: list[str] | None = None) -> list[Status]:
    return [svc.status() for svc in select(names)]
