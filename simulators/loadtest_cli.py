"""``emon loadtest``: the whole pipeline under load, with ground truth, latency per hop and accounting.

Services must be up (``emon services up && emon init``). Starts gateway(s), bridge, hub,
router, map and simulated units as processes isolated from other users of the services
(see :mod:`simulators.loadtest.pipeline`), runs simulated patients with scripted
emergencies, and reports throughput, CPU/memory per process, latency percentiles per hop
and the accounting against the simulator's ground truth.

    emon loadtest --patients 100 --duration 60 --json lt.json --plot lt.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from emon_core.settings import state_dir

DEFAULT_SCENARIO = "vt@20:k=8,rate=180,pause@40:s=4"


def shifted(scenario: str, offset_s: float) -> str:
    """``scenario`` with every event time moved by ``offset_s`` (so event ids differ between runs)."""
    import re

    return re.sub(r"@(\d+(?:\.\d+)?)", lambda m: f"@{float(m.group(1)) + offset_s:.2f}", scenario)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patients", type=int, default=100, help="virtual patients (default 100)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of signal per patient (default 60)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the report as JSON")
    parser.add_argument("--plot", default=None, help="write latency distributions per hop (PNG)")
    parser.add_argument("--fast", action="store_true", help="devices publish as fast as acks allow (not real time)")
    parser.add_argument("--start-index", type=int, default=1000,
                        help="first patient number (dev-<n>); default 1000 keeps clear of other tests' devices")
    parser.add_argument("--source", choices=("synthetic", "mitdb"), default="synthetic",
                        help="synthetic ECG with scripted events (default) or MIT-BIH replay")
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO, help=f"scripted events (default {DEFAULT_SCENARIO!r})")
    parser.add_argument("--scenario-patients", type=int, default=None, help="only the first K patients get the scenario")
    parser.add_argument("--fs", type=float, default=360.0, help="device sampling rate (default 360 Hz)")
    parser.add_argument("--units", type=int, default=30, help="simulated paramedic units (default 30)")
    parser.add_argument("--unit-start", type=int, default=800, help="first unit number (default 800: unit-0800..)")
    parser.add_argument("--settle", type=float, default=180.0, help="max seconds to wait for stragglers after the run")
    parser.add_argument("--workdir", type=Path, default=None, help="logs, truth, gateway state (default .state/loadtest/<tag>)")


def run(args: argparse.Namespace) -> int:
    from simulators.loadtest import report
    from simulators.loadtest.run import run_load

    tag = time.strftime("%m%d%H%M%S")
    workdir = args.workdir or state_dir() / "loadtest" / tag
    workdir.mkdir(parents=True, exist_ok=True)
    res = run_load(workdir=workdir, tag=tag, patients=args.patients, duration_s=args.duration,
                   start_index=args.start_index, fast=args.fast, source=args.source,
                   scenario=shifted(args.scenario, (time.time_ns() // 10**6 % 3000) / 1000)
                   if args.source == "synthetic" else None,
                   scenario_patients=args.scenario_patients, fs_hz=args.fs, units=args.units,
                   unit_start=args.unit_start, settle_s=args.settle,
                   log=lambda s: print(f"[loadtest] {s}", file=sys.stderr, flush=True))
    rep = res.report
    rep["workdir"] = str(workdir)
    print(format_report(rep))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rep, indent=2))
    if args.plot:
        la = rep["load_average_1m"]["mean"]
        report.plot(res.latencies, args.plot, f"emon loadtest: {rep['patients']} patients, {rep['duration_s']:.0f} s, "
                    f"{'real time' if rep['realtime'] else 'fast'}, load avg {la} on {os.cpu_count()} cores")
    ok = rep["lost"] == 0 and rep["alert_duplicates"] == 0
    return 0 if ok else 1


def format_report(rep: dict) -> str:
    lines = [f"patients {rep['patients']}  duration {rep['duration_s']:.0f} s  "
             f"{'real time' if rep['realtime'] else 'fast'}  wall {rep['wall_s']} s  "
             f"load avg (1 min) mean {rep['load_average_1m']['mean']} max {rep['load_average_1m']['max']} "
             f"on {rep['cpu_count']} cores",
             f"events: expected {rep['events_expected']} delivered {rep['events_delivered']} lost {rep['lost']} "
             f"duplicates {rep['duplicates']}; beats {rep['events']['beats']}",
             f"alerts: expected {rep['alerts_expected']} raised {rep['alerts_raised']} duplicate "
             f"{rep['alert_duplicates']} missing {rep['alerts_missing']}",
             "latency ms            n      p50      p95      p99      max"]
    for hop, p in rep["latency_ms"].items():
        f = lambda x: f"{x:8.0f}" if x is not None else "       -"  # noqa: E731
        lines.append(f"  {hop:20s}{p['n']:4d} {f(p['p50'])} {f(p['p95'])} {f(p['p99'])} {f(p['max'])}")
    lines.append(f"throughput: {rep['throughput']}")
    lines.append("process            cpu s   %core  rss max MiB")
    for n, s in rep["processes"].items():
        lines.append(f"  {n:16s}{s['cpu_s']:7.1f} {s['cpu_pct_of_one_core'] or 0:7.1f} {s['rss_max_mib']:9.1f}")
    return "\n".join(lines)
