"""``emon bench hub``: hub events/s, Cassandra write p50/p99, cache hit rate, history ingest rows/s.

Each figure is printed beside a bare cassandra-driver loop (``execute_concurrent_with_args``,
one INSERT per row) over the same rows, measured in the same run, on a throw-away keyspace
and topics (dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import numpy as np


def _options(rest: list[str], quick: bool) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="emon bench hub")
    p.add_argument("--events", type=int, default=3_000 if quick else 30_000, help="flagged beats/events")
    p.add_argument("--patients", type=int, default=200)
    p.add_argument("--history-rows", type=int, default=10_000 if quick else 100_000)
    p.add_argument("--history-patients", type=int, default=200)
    p.add_argument("--processes", type=int, default=1, help="ingest writer processes")
    p.add_argument("--strip-samples", type=int, default=500, help="ECG strip length per beat (0 = none)")
    return p.parse_known_args([a for a in rest if a not in ("--", "--quick")])[0]


def _messages(n: int, patients: int, strip_n: int) -> list[Any]:
    from emon_core.contracts import BeatClass, EcgStrip, EventKind, FlaggedBeat, RhythmEvent

    t0 = int(time.time() * 1000) - 3_600_000
    rng = np.random.default_rng(0)
    samples = rng.integers(-500, 1500, size=strip_n).tolist()
    out: list[Any] = []
    for i in range(n):
        pid_n = 80_000 + i % patients
        dev, pid = f"dev-{pid_n:05d}", f"pat-{pid_n:05d}"
        t = t0 + (i // patients) * 800
        idx = (t - t0) // 4
        if i % 50 == 49:
            out.append(RhythmEvent(id=RhythmEvent.make_id(dev, EventKind.V_RUN, idx), site_id="site-80", device_id=dev,
                                   patient_id=pid, kind=EventKind.V_RUN, onset_sample_index=idx, onset_time_ms=t,
                                   end_time_ms=t + 3000, beat_count=8, rate_bpm=170))
            continue
        strip = EcgStrip(fs_hz=250, start_sample_index=max(0, idx - 250), start_time_ms=t - 1000,
                         samples_uv=samples) if strip_n else None
        out.append(FlaggedBeat(id=FlaggedBeat.make_id(dev, idx), site_id="site-80", device_id=dev, patient_id=pid,
                               sample_index=idx, r_time_ms=t, beat_class=BeatClass.V,
                               probabilities={BeatClass.V: 0.93, BeatClass.N: 0.07}, model_version="bench",
                               strip=strip))
    return out


def bench_hub(args: argparse.Namespace) -> int:
    from cassandra.concurrent import execute_concurrent_with_args

    from emon_core.adapters.cassandra import connect
    from emon_core.adapters.kafka import SafeProducer, create_admin, ensure_topics
    from emon_core.runtime import tune_gc
    from emon_core.settings import CassandraSettings, KafkaSettings, load
    from hub.ingest import Job, bare_history_loop, load_history
    from hub.population import population_chunk
    from hub.service import Hub
    from hub.settings import HubSettings
    from hub.store import HubStore, apply_schema

    rest = list(getattr(args, "rest", []) or [])
    opts = _options(rest, bool(getattr(args, "quick", False)) or "--quick" in rest)
    tag = uuid.uuid4().hex[:8]
    kafka, base = load(KafkaSettings), load(CassandraSettings)
    ks = f"bench_hub_{tag}"
    cas = base.model_copy(update={"keyspace": ks})
    topics = {k: f"bench-hub-{tag}-{k}" for k in ("flagged", "summaries", "status", "alerts", "dead")}
    ensure_topics(kafka, {topics["flagged"]: 6, topics["summaries"]: 1, topics["status"]: 1, topics["alerts"]: 6,
                          topics["dead"]: 1})
    cluster, session = connect(base, timeout_s=60)
    apply_schema(session, ks, base.replication)
    figures: dict[str, Any] = {}
    try:
        # --- hub: Kafka -> enrich -> Cassandra -> alerts ------------------------------------
        msgs = _messages(opts.events, opts.patients, opts.strip_samples)
        prod = SafeProducer(kafka)
        for m in msgs:
            prod.produce(topics["flagged"], m.encode(), key=m.patient_id)
        prod.flush(60)
        hs = HubSettings(group_id=f"bench-{tag}", topic_flagged=topics["flagged"], topic_summaries=topics["summaries"],
                         topic_gateway_status=topics["status"], topic_alerts=topics["alerts"],
                         topic_deadletter=topics["dead"], batch_max=2000, episode_quiet_s=60)
        hub = Hub(hs, kafka, cas).start()
        tune_gc()  # as `emon hub` does after start-up
        done, t_first = 0, None
        deadline = time.monotonic() + 600
        while done < len(msgs) and time.monotonic() < deadline:
            n = hub.step()
            if n and t_first is None:  # the clock starts once the first round (connections, prepares) is done
                t_first, first_n = time.perf_counter(), n
            done += n
        elapsed = time.perf_counter() - t_first if t_first is not None else float("nan")
        counted = done - (first_n if t_first is not None else 0)
        lat = np.array(hub.write_latencies) * 1000
        figures["hub_events"] = done
        figures["hub_events_per_s"] = round(counted / elapsed, 1) if elapsed > 0 else None
        figures["hub_write_p50_ms"] = round(float(np.percentile(lat, 50)), 2) if lat.size else None
        figures["hub_write_p99_ms"] = round(float(np.percentile(lat, 99)), 2) if lat.size else None
        figures["hub_cache_hit_rate"] = round(hub.cache.hit_rate, 4)
        figures["hub_write_requests"] = int(lat.size)
        hub.stop_event.set()
        hub.close()
        # bare loop: the same flagged-beat/event rows, one INSERT each
        session.set_keyspace(ks)
        st = HubStore(session)
        from emon_core.contracts import FlaggedBeat
        beat_params = [st.beat(m)[1] for m in msgs if isinstance(m, FlaggedBeat)]
        t0 = time.perf_counter()
        execute_concurrent_with_args(session, st.w_beat, beat_params, concurrency=256, raise_on_first_error=True,
                                     results_generator=False)
        bare = time.perf_counter() - t0
        figures["bare_beat_inserts_per_s"] = round(len(beat_params) / bare, 1)
        # --- history ingest vs bare loop -------------------------------------------------------
        job = Job(patients=opts.history_patients, rows=opts.history_rows, seed=int(tag, 16) % 1000,
                  chunk_patients=max(1, opts.history_patients // 10))
        res = load_history(cas, job, processes=opts.processes, progress=False)
        figures["ingest_rows_per_s"] = res["rows_per_s"]
        _ps, hist = population_chunk(0, opts.history_patients, opts.history_patients, opts.history_rows,
                                     seed=job.seed + 1)
        bare_s = bare_history_loop(cas, hist.rows, concurrency=256)
        figures["bare_history_inserts_per_s"] = round(len(hist.rows) / bare_s, 1)
        figures["ingest_vs_bare"] = round(figures["ingest_rows_per_s"] / figures["bare_history_inserts_per_s"], 2)
        figures["ingest_5m_rows_minutes_at_this_rate"] = round(5_000_000 / figures["ingest_rows_per_s"] / 60, 1)
    finally:
        create_admin(kafka).delete_topics(list(topics.values()), operation_timeout=30)
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=120)
        cluster.shutdown()
    print(f"hub      {figures['hub_events_per_s']:>10} events/s  (bare beat INSERT loop "
          f"{figures['bare_beat_inserts_per_s']} rows/s; target >= 5000 events/s per process)")
    print(f"writes   p50 {figures['hub_write_p50_ms']} ms  p99 {figures['hub_write_p99_ms']} ms "
          f"({figures['hub_write_requests']} requests, UNLOGGED batches per partition)")
    print(f"cache    hit rate {figures['hub_cache_hit_rate']:.1%}")
    print(f"ingest   {figures['ingest_rows_per_s']:>10} rows/s  (bare loop {figures['bare_history_inserts_per_s']} "
          f"rows/s, ratio {figures['ingest_vs_bare']}; 5 M rows ~ {figures['ingest_5m_rows_minutes_at_this_rate']} min)")
    if getattr(args, "json_path", None):
        with open(args.json_path, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0
