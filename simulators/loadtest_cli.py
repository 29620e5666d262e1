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

from emon_core.devservices.credentials import DEFAULT_DEVICES, DEFAULT_UNITS
from emon_core.settings import state_dir

FIRST_PATIENT = 1_000  # load tests use pat-01000 .. the last dev credential; the demo stays below
FIRST_UNIT = 300  # ... and unit-0300 .. the last unit credential

DEFAULT_SCENARIO = "vt@20:k=8,rate=180,pause@40:s=4"


def shifted(scenario: str, offset_s: float) -> str:
    """``scenario`` with every event time moved by ``offset_s`` (so event ids differ between runs)."""
    import re

    return re.sub(r"@(\d+(?:\.\d+)?)", lambda m: f"@{float(m.group(1)) + offset_s:.2f}", scenario)


def scenario_share(text: str) -> str | int:
    """``--scenario-patients``: ``all``, ``P%`` or a count (resolved against --patients later)."""
    t = text.strip().lower()
    if t == "all":
        return t
    try:
        value = float(t[:-1]) if t.endswith("%") else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K, P% or all, got {text!r}") from None
    if value < 0 or (t.endswith("%") and value > 100):
        raise argparse.ArgumentTypeError(f"out of range: {text!r}")
    return t if t.endswith("%") else int(value)


def scenario_count(share: str | int, patients: int) -> int | None:
    """How many patients get the scenario (None: all of them)."""
    if share == "all":
        return None
    if isinstance(share, str):
        pct = float(share[:-1])
        return max(1, round(patients * pct / 100.0)) if pct > 0 else 0
    return min(int(share), patients)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patients", type=int, default=100, help="virtual patients (default 100)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of signal per patient (default 60)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the report as JSON")
    parser.add_argument("--plot", default=None, help="write latency distributions per hop (PNG)")
    parser.add_argument("--fast", action="store_true", help="devices publish as fast as acks allow (not real time)")
    parser.add_argument("--start-index", type=int, default=None,
                        help="first patient number (dev-<n>); default: the next block of dev-01000..02999, "
                             "so a run does not land in the previous run's still-open episodes")
    parser.add_argument("--source", choices=("synthetic", "mitdb"), default="synthetic",
                        help="synthetic ECG with scripted events (default) or MIT-BIH replay")
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO, help=f"scripted events (default {DEFAULT_SCENARIO!r})")
    parser.add_argument("--scenario-patients", type=scenario_share, default="5%", metavar="K|P%|all",
                        help="patients that get the scripted events: the first K, the first P%% (default 5%%: "
                             "a city's heart patients do not all go into VT in the same second), or all")
    parser.add_argument("--fs", type=float, default=360.0, help="device sampling rate (default 360 Hz)")
    parser.add_argument("--site-size", type=int, default=1000,
                        help="patients per site, i.e. per gateway process (default 1000; 500 runs 1,000 patients on 2 gateways)")
    parser.add_argument("--units", type=int, default=None,
                        help="simulated paramedic units (default: one per scripted patient plus 10, at least 30, so "
                             "alert_to_assignment measures the router, not a wait for a unit to come free)")
    parser.add_argument("--unit-start", type=int, default=None,
                        help="first unit number (default: the next block of unit-0300..0999, so units the "
                             "previous run left assigned are not counted as busy)")
    parser.add_argument("--settle", type=float, default=180.0, help="max seconds to wait for stragglers after the run")
    parser.add_argument("--workdir", type=Path, default=None, help="logs, truth, gateway state (default .state/loadtest/<tag>)")


def next_block(name: str, size: int, lo: int, hi: int, align: int = 1) -> int:
    """First id of a block of ``size`` ids that the last runs did not use, rotating through [lo, hi).

    A run's patients keep open episodes (and its units their assignments) for minutes after it
    ends; reusing them would fold a new run's emergencies into the old alerts.
    """
    f = state_dir() / "loadtest" / f"next_{name}"
    try:
        start = int(f.read_text())
    except (OSError, ValueError):
        start = lo
    span = -(-size // align) * align  # aligned blocks stay within a site (1,000 patients per gateway)
    if start < lo or start + span > hi:
        start = lo
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(str(start + span))
    return start


def units_for(scripted_patients: int) -> int:
    """Default unit count: one per patient with scripted emergencies, plus 10 spare, 30 to 700."""
    return min(max(scripted_patients + 10, 30), DEFAULT_UNITS - FIRST_UNIT)


def run(args: argparse.Namespace) -> int:
    from simulators.loadtest import report
    from simulators.loadtest.run import run_load

    if args.start_index is None:
        # the dev credentials cover dev-00000..02999 and unit-0000..0999 (emon services up)
        args.start_index = next_block("patients", args.patients, FIRST_PATIENT, DEFAULT_DEVICES,
                                      align=100 if args.patients <= 100 else 1000)
    scripted = scenario_count(args.scenario_patients, args.patients)
    if args.units is None:
        args.units = units_for(args.patients if scripted is None else scripted)
    if args.unit_start is None:
        args.unit_start = next_block("units", args.units, FIRST_UNIT, DEFAULT_UNITS)
    from emon_core.settings import CassandraSettings, load
    from simulators.loadtest.cleanup import resolve_leftover_queue

    left = resolve_leftover_queue(load(CassandraSettings), FIRST_PATIENT, DEFAULT_DEVICES)
    print(f"[loadtest] earlier load tests' alerts resolved: {left['resolved']} waiting for a unit, "
          f"{left['resolved_holding_units']} holding one; other alerts waiting: {left['others_waiting']}",
          file=sys.stderr, flush=True)
    tag = time.strftime("%m%d%H%M%S")
    workdir = args.workdir or state_dir() / "loadtest" / tag
    workdir.mkdir(parents=True, exist_ok=True)
    res = run_load(workdir=workdir, tag=tag, patients=args.patients, duration_s=args.duration,
                   start_index=args.start_index, fast=args.fast, source=args.source,
                   scenario=shifted(args.scenario, (time.time_ns() // 10**6 % 3000) / 1000)
                   if args.source == "synthetic" else None,
                   scenario_patients=scripted, fs_hz=args.fs, units=args.units, unit_start=args.unit_start, settle_s=args.settle,
                   site_size=args.site_size,
                   log=lambda s: print(f"[loadtest] {s}", file=sys.stderr, flush=True))
    rep = res.report
    rep["workdir"] = str(workdir)
    rep["patient_start_index"], rep["unit_start"] = args.start_index, args.unit_start
    rep["scenario_patients"] = args.patients if scripted is None else scripted
    rep["queue_before"] = left
    print(format_report(rep))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rep, indent=2))
    if args.plot:
        la = rep["load_average_1m"]["mean"]
        report.plot(res.latencies, args.plot, f"emon loadtest: {rep['patients']} patients, {rep['duration_s']:.0f} s, "
                    f"{'real time' if rep['realtime'] else 'fast'}, load avg {la} on {os.cpu_count()} cores")
    ok = rep["lost"] == 0 and rep["alert_duplicates"] == 0
    return 0 if ok else 1


def _p99s(lat: dict) -> str:
    return ", ".join(f"{h} p99 {p['p99']:.0f}" for h, p in lat.items() if h.startswith("beat_to") and p.get("p99") is not None)


def format_report(rep: dict) -> str:
    from simulators.clock_watch import CLOCK_STEP_TOLERANCE_S

    lines = [f"patients {rep['patients']}  duration {rep['duration_s']:.0f} s  "
             f"{'real time' if rep['realtime'] else 'fast'}  wall {rep['wall_s']} s  "
             f"load avg (1 min) mean {rep['load_average_1m']['mean']} max {rep['load_average_1m']['max']} "
             f"on {rep['cpu_count']} cores",
             f"events: expected {rep['events_expected']} delivered {rep['events_delivered']} lost {rep['lost']} "
             f"duplicates {rep['duplicates']}; beats {rep['events']['beats']}",
             f"alerts: expected {rep['alerts_expected']} raised {rep['alerts_raised']} duplicate "
             f"{rep['alert_duplicates']} missing {rep['alerts_missing']}",
             "latency ms            n      p50      p95      p99      max"]
    late = rep.get("sim_lateness_ms")
    if late:
        lines.insert(3, f"simulator behind its schedule: p50 {late.get('p50')} ms, p99 {late.get('p99')} ms "
                        "(beat_to_* below start when the device published; from the schedule, with that "
                        "lateness: " + _p99s(rep.get("latency_ms_from_schedule") or {}) + ")")
    step = rep.get("clock_step_s")
    if step is not None and abs(step) > CLOCK_STEP_TOLERANCE_S:
        lines.insert(3, f"WARNING: wall clock stepped by {step:+.1f} s during the run: latencies spanning it are "
                        "off by that much (and the report is not valid)")
    for hop, p in rep["latency_ms"].items():
        f = lambda x: f"{x:8.0f}" if x is not None else "       -"  # noqa: E731
        lines.append(f"  {hop:20s}{p['n']:4d} {f(p['p50'])} {f(p['p95'])} {f(p['p99'])} {f(p['max'])}")
    lines.append(f"throughput: {rep['throughput']}")
    lines.append("process            cpu s   %core  rss max MiB")
    for n, s in rep["processes"].items():
        lines.append(f"  {n:16s}{s['cpu_s']:7.1f} {s['cpu_pct_of_one_core'] or 0:7.1f} {s['rss_max_mib']:9.1f}")
    return "\n".join(lines)
