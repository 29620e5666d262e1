"""``emon bench router``: assignments/s and decision time with 10,000 units and 1,000 open alerts."""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import numpy as np

from emon_core.contracts import Severity
from paramedic_router.memory_store import MemoryStore
from paramedic_router.queue import QueuedAlert
from paramedic_router.dispatch import Router
from paramedic_router.settings import RouterSettings

CENTRE = (48.2082, 16.3738)
BENCH_KEYSPACE = "emon_bench"


def _pct(values: Any, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def _world(n_units: int, n_alerts: int, seed: int = 42) -> tuple[np.ndarray, list[QueuedAlert]]:
    rng = np.random.default_rng(seed)
    units = np.column_stack([CENTRE[0] + rng.uniform(-0.15, 0.15, n_units),
                             CENTRE[1] + rng.uniform(-0.25, 0.25, n_units)])
    items = []
    for i in range(n_alerts):
        sev = Severity.CRITICAL if i % 3 == 0 else Severity.URGENT
        items.append(QueuedAlert(sev.rank, 1_700_000_000_000 + i, f"bench-alert-{i:05d}", f"pat-{i:05d}",
                                 CENTRE[0] + float(rng.uniform(-0.15, 0.15)),
                                 CENTRE[1] + float(rng.uniform(-0.25, 0.25)), sev.value))
    return units, items


def _run(router: Router, items: list[QueuedAlert], batch: int) -> float:
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, len(items), batch):
        router.dispatch([(it, 0, set()) for it in items[start:start + batch]])
        router.flush_writes()
    router.counters["cpu_ms"] = int((time.process_time() - c0) * 1000)
    return time.perf_counter() - t0


def bench_memory(n_units: int, n_alerts: int) -> dict[str, float]:
    units, items = _world(n_units, n_alerts)
    store = MemoryStore()
    for i, (lat, lon) in enumerate(units):
        store.add_unit(f"unit-{i:05d}", float(lat), float(lon))
    router = Router(store, lambda a: None, RouterSettings())
    router.load()
    # one-by-one, as alerts arrive
    elapsed = _run(router, items, batch=1)
    n = router.counters["assigned"]
    return {"assignments": n, "assignments_per_s": n / elapsed,
            "assignments_per_cpu_s": n / max(router.counters["cpu_ms"] / 1000, 1e-9),
            "decision_p50_ms": _pct(router.decision_ms, 50), "decision_p99_ms": _pct(router.decision_ms, 99),
            "decision_max_ms": float(max(router.decision_ms)),
            "decision_cpu_p50_ms": _pct(router.decision_cpu_ms, 50),
            "decision_cpu_p99_ms": _pct(router.decision_cpu_ms, 99)}


def bench_cassandra(n_units: int, n_alerts: int, batch: int, concurrency: int) -> dict[str, float]:
    """The same decisions with real LWT claims and writes, in a separate keyspace.

    First the claim alone, one at a time (its own latency), then the whole run with
    ``concurrency`` claims in flight per batch (throughput).
    """
    from cassandra.concurrent import execute_concurrent_with_args

    from emon_core.adapters.cassandra import connect
    from emon_core.settings import CassandraSettings, load
    from paramedic_router.claims import DispatchStore, apply_schema

    cfg = load(CassandraSettings)
    cluster, session = connect(cfg, keyspace=None, timeout_s=5)
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {BENCH_KEYSPACE} WITH replication = {cfg.replication}")
    session.set_keyspace(BENCH_KEYSPACE)
    apply_schema(session)
    tables = ("units", "unit_positions", "assignments_by_alert", "assignments_by_unit", "dispatch_queue",
              "unit_status_log")
    for table in tables:
        session.execute(f"TRUNCATE {table}")
    units, items = _world(n_units, n_alerts)
    store = DispatchStore(session)
    ins = session.prepare("INSERT INTO units (unit_id, crew, base_lat, base_lon, status, updated_at_ms) "
                          "VALUES (?, '', ?, ?, 'available', 0)")
    rows = [(f"unit-{i:05d}", float(a), float(b)) for i, (a, b) in enumerate(units)]
    execute_concurrent_with_args(session, ins, rows, concurrency=64)
    solo = []
    for i in range(200):  # the claim's own latency, uncontended
        t0 = time.perf_counter()
        store.claim(f"unit-{i:05d}", "bench-solo", f"bench-solo:a{i}", 0)
        solo.append((time.perf_counter() - t0) * 1000)
    execute_concurrent_with_args(session, ins, rows[:200], concurrency=64)  # free them again
    router = Router(store, lambda a: None, RouterSettings(claim_concurrency=concurrency))
    router.load()
    elapsed = _run(router, items, batch=batch)
    n = router.counters["assigned"]
    cluster.shutdown()
    return {"assignments": n, "assignments_per_s": n / elapsed, "batch": batch, "concurrency": concurrency,
            "decision_p50_ms": _pct(router.decision_ms, 50), "decision_p99_ms": _pct(router.decision_ms, 99),
            "claim_p50_ms": _pct(solo, 50), "claim_p99_ms": _pct(solo, 99),
            "claim_in_flight_p99_ms": _pct(router.claim_ms, 99)}


def bench_router(args: argparse.Namespace) -> int:
    p = argparse.ArgumentParser(prog="emon bench router")
    p.add_argument("--units", type=int, default=10_000)
    p.add_argument("--alerts", type=int, default=1_000)
    p.add_argument("--batch", type=int, default=100, help="alerts decided per claim round (Kafka poll batch)")
    p.add_argument("--concurrency", type=int, default=16, help="LWT claims in flight per batch")
    p.add_argument("--no-cassandra", action="store_true")
    p.add_argument("--json", dest="json_path", default=None)  # also accepted after the name
    p.add_argument("--quick", action="store_true")
    opts = p.parse_args(getattr(args, "rest", []) or [])
    args.json_path = getattr(args, "json_path", None) or opts.json_path
    args.quick = getattr(args, "quick", False) or opts.quick
    logging.getLogger("paramedic_router").setLevel(logging.WARNING)
    n_alerts = 300 if getattr(args, "quick", False) else opts.alerts
    figures: dict[str, Any] = {"units": opts.units, "open_alerts": n_alerts}
    figures["decision_only"] = mem = bench_memory(opts.units, n_alerts)
    print(f"router bench: {opts.units} units, {n_alerts} open alerts")
    import os

    print(f"  machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared: wall-clock figures vary)")
    print(f"  decisions (in-memory claim): {mem['assignments_per_s']:.0f} assignments/s "
          f"({mem['assignments_per_cpu_s']:.0f} per CPU-second), "
          f"decision p50 {mem['decision_p50_ms']:.3f} ms, p99 {mem['decision_p99_ms']:.3f} ms "
          f"(CPU time p50 {mem['decision_cpu_p50_ms']:.3f} ms, p99 {mem['decision_cpu_p99_ms']:.3f} ms)")
    if not opts.no_cassandra:
        try:
            cas = bench_cassandra(opts.units, n_alerts, opts.batch, opts.concurrency)
        except Exception as err:  # Cassandra not running: report the decision part only
            print(f"  Cassandra claims: skipped ({type(err).__name__}: {str(err)[:120]})")
        else:
            figures["with_cassandra"] = cas
            print(f"  LWT claim alone (sequential): p50 {cas['claim_p50_ms']:.2f} ms, p99 {cas['claim_p99_ms']:.2f} ms")
            print(f"  with Cassandra claims and writes ({opts.concurrency} in flight, batches of {opts.batch}): "
                  f"{cas['assignments_per_s']:.0f} assignments/s, decision p99 {cas['decision_p99_ms']:.3f} ms, "
                  f"claim p99 in flight {cas['claim_in_flight_p99_ms']:.1f} ms")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0
