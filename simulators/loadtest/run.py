"""One load run: pipeline up, observers on, simulated patients, settle, report."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from emon_core import topics
from simulators.clock_watch import ClockWatch
from simulators.ground_truth import load_truth
from simulators.loadtest import report
from simulators.loadtest.observe import KafkaTail, ProcSampler, SseSession, service_pids
from simulators.loadtest.pipeline import Pipeline, PipelineConfig


def scrape(url: str) -> dict[str, float]:
    """Prometheus text -> {name{labels}: value} (best effort)."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\S+)\s+(\S+)", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


@dataclass
class Observers:
    flagged: KafkaTail
    alerts: KafkaTail
    assignments: KafkaTail
    screen: SseSession

    def close(self) -> None:
        for o in (self.flagged, self.alerts, self.assignments, self.screen):
            o.close()


def start_observers(p: Pipeline, timeout_s: float = 120.0) -> Observers:
    devices, patients = set(p.devices), p.patients
    since = int(time.time() * 1000)  # alerts of this run's episodes (a hub may republish an older one)
    obs = Observers(
        flagged=KafkaTail(p.kafka, topics.KAFKA_FLAGGED, lambda v: v.get("device_id") in devices),
        alerts=KafkaTail(p.kafka, topics.KAFKA_ALERTS,
                         lambda v: v.get("patient_id") in patients and v.get("opened_at_ms", 0) >= since),
        assignments=KafkaTail(p.kafka, topics.KAFKA_ASSIGNMENTS,
                              lambda v: v.get("patient_id") in patients and v.get("assigned_at_ms", 0) >= since),
        screen=SseSession(f"http://127.0.0.1:{p.ports['map']}",
                          lambda v: v.get("patient_id") in patients and v.get("opened_at_ms", 0) >= since),
    )
    if not obs.screen.connected.wait(timeout_s):
        obs.close()
        raise RuntimeError(f"map live stream not connected after {timeout_s:.0f} s: {p.log_tail('map')}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # the map's Kafka reader caught up with its lookback
        try:
            with urllib.request.urlopen(p.health_url("map"), timeout=3) as r:  # type: ignore[arg-type]
                if json.loads(r.read()).get("kafka_live"):
                    break
        except OSError:
            pass
        time.sleep(0.5)
    return obs


@dataclass
class RunResult:
    report: dict[str, Any]
    latencies: dict[str, list[float]]
    pipeline: Pipeline
    extra: dict[str, Any] = field(default_factory=dict)


def settle(obs: Observers, p: Pipeline, truth_path: Path, max_s: float, quiet_s: float = 20.0) -> float:
    """Wait until every truth event reached Kafka and the expected alerts are on screen, or until
    nothing new arrived for ``quiet_s`` (a backlog still draining keeps producing), at most ``max_s``."""
    t0 = time.monotonic()
    truth = load_truth(truth_path)
    exp = report.expected_alerts(truth, p.patients)
    last_n, last_change = -1, time.monotonic()
    while time.monotonic() - t0 < max_s:
        flagged = obs.flagged.snapshot()
        n = len(flagged) + len(obs.alerts.snapshot()) + len(obs.screen.snapshot())
        if n != last_n:
            last_n, last_change = n, time.monotonic()
        on_screen = {a["patient_id"] for a in obs.screen.snapshot() if report.is_clinical(a)}
        done = all(pid in on_screen for pid in exp) and report.event_accounting(truth, flagged)["lost"] == 0
        if (done and time.monotonic() - last_change >= 5.0) or time.monotonic() - last_change >= quiet_s:
            break
        time.sleep(2.0)
    return time.monotonic() - t0


def sim_lateness(summary: Path) -> dict[str, float] | None:
    """How late the simulator published frames against their schedule (its ``--json`` summary).

    ``latency_ms`` starts when a device published (a harness late on a busy machine is not the
    system's delay); ``latency_ms_from_schedule`` at the frame's scheduled end, lateness included."""
    try:
        return json.loads(summary.read_text()).get("lateness_ms")
    except (OSError, ValueError):
        return None


def merge_gateway_metrics(per_gateway: list[dict[str, float]]) -> dict[str, float]:
    """One view of several gateways: counters (``*_total``) summed, gauges at their largest."""
    out: dict[str, float] = {}
    for m in per_gateway:
        for k, v in m.items():
            if k not in out:
                out[k] = v
            elif k.split("{")[0].endswith("_total"):
                out[k] += v
            else:
                out[k] = max(out[k], v)
    return out


def build_report(p: Pipeline, obs: Observers, truth_path: Path, *, patients: int, duration_s: float,
                 realtime: bool, wall_s: float, stats: Any, load: list[tuple[float, float, float]],
                 metrics: dict[str, dict[str, float]]) -> RunResult:
    truth = load_truth(truth_path)
    flagged, alerts = obs.flagged.snapshot(), obs.alerts.snapshot()
    screen, asg = obs.screen.snapshot(), obs.assignments.snapshot()
    ev = report.event_accounting(truth, flagged)
    al = report.alert_accounting(truth, p.patients, alerts)
    lat = report.latencies(flagged, alerts, screen, asg, truth, p.patients)
    lat_sched = report.latencies(flagged, alerts, screen, asg, truth, p.patients, from_publish=False)
    frames_sent = sum(d.frames_sent for d in truth.devices.values())
    samples = sum(n for d in truth.devices.values() for a, b in d.sent_ranges for n in [b - a])
    distinct_flagged = len({(r.get("id"), r.get("revision", 0)) for r in flagged})
    throughput = {
        "frames_per_s": round(frames_sent / wall_s, 1) if wall_s else None,
        "samples_per_s": round(samples / wall_s, 1) if wall_s else None,
        "flagged_to_kafka_per_s": round(distinct_flagged / wall_s, 2) if wall_s else None,
        "alert_versions_per_s": round(len({(a["alert_id"], a.get("version")) for a in alerts}) / wall_s, 3),
        "assignments": len({a["assignment_id"] for a in asg}),
        "frames_sent": frames_sent, "flagged_messages_distinct": distinct_flagged,
        "flagged_messages_received": len(flagged),
        "alert_messages_received": len(alerts), "alerts_on_screen": len({a["alert_id"] for a in screen}),
    }
    gw = merge_gateway_metrics([m for name, m in metrics.items() if name.startswith("gateway")])
    per_process = {n: {"cpu_s": round(stats.cpu_s.get(n, 0.0), 1),
                       "cpu_pct_of_one_core": round(100 * stats.cpu_s.get(n, 0.0) / wall_s, 1) if wall_s else None,
                       "rss_max_mib": round(stats.rss_max_mib.get(n, 0.0), 1)}
                   for n in sorted(set(stats.cpu_s) | set(stats.rss_max_mib))}
    la = [x[0] for x in load] or [os.getloadavg()[0]]
    rep: dict[str, Any] = {
        "patients": patients, "duration_s": duration_s, "realtime": realtime, "wall_s": round(wall_s, 1),
        "events_expected": ev["events_expected"], "events_delivered": ev["events_delivered"],
        "lost": ev["lost"], "duplicates": ev["duplicates"],
        "alerts_expected": al["alerts_expected"], "alerts_raised": al["alerts_raised"],
        "alert_duplicates": al["alert_duplicates"], "alerts_missing": al["alerts_missing"],
        "latency_ms": {h: report.percentiles(lat[h]) for h in report.HOPS},
        # the same from each frame's scheduled end: the simulator's own lateness included
        "latency_ms_from_schedule": {h: report.percentiles(lat_sched[h]) for h in report.HOPS},
        "throughput": throughput, "processes": per_process,
        "load_average_1m": {"min": round(min(la), 2), "mean": round(sum(la) / len(la), 2), "max": round(max(la), 2)},
        "cpu_count": os.cpu_count(),
        "events": {k: ev[k] for k in ("events_unexpected", "events_by_kind", "lost_events", "beats")},
        "alerts": al,
        "gateway_metrics": {k: v for k, v in gw.items() if any(s in k for s in (
            "frames_total", "frames_invalid", "flagged_beats_total", "rhythm_events_total", "traffic_reduction",
            "outbox_dropped", "processing_lag"))},
        "sse_reconnects": obs.screen.reconnects,
        "trace_steps_ms": report.trace_breakdown(flagged, alerts),
    }
    dump = truth_path.parent
    for name, recs in (("flagged", flagged), ("alerts", alerts), ("screen", screen), ("assignments", asg)):
        (dump / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return RunResult(rep, lat, p)


def scrape_all(p: Pipeline) -> dict[str, dict[str, float]]:
    return {n: scrape(f"http://127.0.0.1:{port}/metrics") for n, port in p.ports.items() if n != "map"}


def run_load(*, workdir: Path, tag: str, patients: int, duration_s: float, start_index: int, fast: bool,
             source: str, scenario: str | None, scenario_patients: int | None, fs_hz: float, units: int,
             unit_start: int, settle_s: float, site_size: int = 1000,
             log: Callable[[str], None] = print) -> RunResult:
    cfg = PipelineConfig(workdir=workdir, tag=tag, start_index=start_index, patients=patients, units=units,
                         unit_start=unit_start, site_size=site_size)
    p = Pipeline(cfg)
    obs: Observers | None = None
    sampler: ProcSampler | None = None
    try:
        log(f"starting gateway x{len(p.sites)} ({', '.join(p.sites)}), bridge, hub, router, map, {units} units ...")
        t = time.monotonic()
        p.start_all()
        log(f"pipeline healthy in {time.monotonic() - t:.1f} s; logs in {p.logs}")
        obs = start_observers(p)
        truth = workdir / "truth.jsonl"
        seed = int(time.time()) % 100_000  # ids (device + sample index) never repeat an earlier run's
        sim = p.sim_argv(duration_s, truth, scenario, source=source, fast=fast, fs_hz=fs_hz,
                         scenario_patients=scenario_patients, hr_bpm=70.0 if source == "synthetic" else None,
                         summary=workdir / "sim.json", seed=seed)
        sampler = ProcSampler(p.pids, services=service_pids)
        clock = ClockWatch()
        log(f"simulating {patients} patients for {duration_s:.0f} s ({'fast' if fast else 'real time'}) ...")
        t_sim = time.monotonic()
        p.procs.start("sim", sim, p.env)
        limit = (duration_s * (1 if not fast else 4)) + 600
        while p.procs.alive("sim") and time.monotonic() - t_sim < limit:
            time.sleep(1.0)
        if p.procs.alive("sim"):
            p.procs.stop("sim")
        wall = time.monotonic() - t_sim
        log(f"simulator done after {wall:.1f} s (exit {p.procs.returncode('sim')}); settling ...")
        metrics = scrape_all(p)
        settled = settle(obs, p, truth, settle_s)
        log(f"settled after {settled:.1f} s")
        stats = sampler.close()
        res = build_report(p, obs, truth, patients=patients, duration_s=duration_s, realtime=not fast,
                           wall_s=wall, stats=stats, load=sampler.load, metrics=metrics)
        res.report["settle_s"] = round(settled, 1)
        res.report["sim_exit"] = p.procs.returncode("sim")
        res.report["sim_lateness_ms"] = sim_lateness(workdir / "sim.json")
        res.report["clock_step_s"] = round(clock.step_s(), 3)  # format_report warns when it is a step
        return res
    finally:
        if sampler is not None:
            sampler.close()
        if obs is not None:
            obs.close()
        p.stop()
