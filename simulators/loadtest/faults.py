"""Fault run: the pipeline under a scripted load while services and components are killed in turn.

Used by ``tests/integration/test_faults.py`` (and its logs by ``test_log_privacy.py``).
Each fault records when it was injected, when the thing was started again and when the
pipeline had recovered; truth events overlapping a fault's window are attributed to it.

Recovery means: every pipeline component answers /healthz ok again and, for faults on the
path to Kafka (Mosquitto, Kafka, gateway, bridge), a patient summary computed from signal
acquired after the restart has reached Kafka.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from emon_core import topics
from simulators.ground_truth import Truth, device_clock_start_ms, load_truth
from simulators.loadtest import report
from simulators.loadtest.observe import KafkaTail, ProcSampler, now_ms
from simulators.loadtest.pipeline import Pipeline, PipelineConfig, emon_exe

SERVICE_FAULTS = {"kafka": 10.0, "cassandra": 20.0, "mosquitto": 10.0}
COMPONENT_FAULTS = ("gateway", "bridge", "hub", "router")
UPSTREAM = {"kafka", "mosquitto", "gateway", "bridge"}  # faults that stop data reaching Kafka

LAST_RUN: "FaultRun | None" = None  # the last run in this process (the log-privacy test reuses its logs)


EVENT_EVERY_S = 15.0  # a VT run or a pause every 15 s per patient


def scenario(duration_s: float, first_s: float = 25.0, every_s: float = EVENT_EVERY_S) -> str:
    """VT runs and pauses alternating every ``every_s``: one long episode (one alert) per patient."""
    parts, t, k = [], first_s, 0
    while t < duration_s - 10:
        parts.append(f"vt@{t:g}:k=8,rate=180" if k % 2 == 0 else f"pause@{t:g}:s=4")
        t += every_s
        k += 1
    return ",".join(parts)


@dataclass
class Fault:
    name: str
    kill_ms: int = 0
    start_ms: int = 0
    recovered_ms: int = 0
    down_s: float = 0.0
    recovery_s: float = 0.0  # from the restart to recovered
    outage_s: float = 0.0  # from the kill to recovered
    recovered: bool = False
    restarted: list[str] = field(default_factory=list)  # components that had died and were restarted
    lost: list[str] = field(default_factory=list)
    events_in_window: int = 0
    note: str = ""


@dataclass
class FaultRun:
    pipeline: Pipeline
    faults: list[Fault]
    truth: Truth
    accounting: dict[str, Any]
    alerts: dict[str, Any]
    lost_outside: list[str]
    service_logs: list[Path]
    wall_s: float
    load: list[tuple[float, float, float]]

    def fault(self, name: str) -> Fault:
        return next(f for f in self.faults if f.name == name)


def services(*args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*emon_exe(), "services", *args], capture_output=True, text=True, timeout=timeout_s)


def truncate_truth(truth: Truth, cutoff_ms: int) -> Truth:
    """Only the events that ended before ``cutoff_ms`` (the load was stopped after that)."""
    t = copy.deepcopy(truth)
    for dev in t.devices.values():
        dev.events = [e for e in dev.events if e["end_ms"] <= cutoff_ms]
    return t


class FaultRunner:
    def __init__(self, workdir: Path, tag: str, start_index: int = 2700, patients: int = 20, units: int = 10,
                 unit_start: int = 960, log: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.log = log
        self.p = Pipeline(PipelineConfig(workdir=workdir, tag=tag, start_index=start_index, patients=patients,
                                         units=units, unit_start=unit_start, map_lookback_h=0.02))
        self.summaries: KafkaTail | None = None
        self.first_event_s: float | None = None  # scripted events: first at this device time (s), then every 15 s
        self.truth_path: Path | None = None
        self.sim_started_ms: int | None = None  # wall clock when the simulator was started (~ its devices' clock start)
        self.flagged: KafkaTail | None = None
        self.alerts: KafkaTail | None = None
        self.faults: list[Fault] = []
        self.component_names = [*self.p.gateways, "bridge", "hub", "router", "map"]

    # --- supervision ------------------------------------------------------------------------------
    def supervise(self, fault: Fault | None = None) -> None:
        """Restart any component that died (what systemd's Restart=always would do)."""
        for name in [*self.component_names, "units"]:
            if not self.p.procs.alive(name):
                self.log(f"  {name} exited ({self.p.procs.returncode(name)}); restarting it")
                if fault is not None:
                    fault.restarted.append(name)
                self.p.procs.restart(name)

    def all_healthy(self) -> bool:
        return all(self.p.healthy(n) for n in self.component_names)

    def fresh_summary(self, since_ms: int) -> bool:
        assert self.summaries is not None
        return any(r.get("window_start_ms", 0) >= since_ms for r in self.summaries.snapshot()[-500:])

    def wait_recovered(self, fault: Fault, since_ms: int, upstream: bool, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.supervise(fault)
            if self.all_healthy() and (not upstream or self.fresh_summary(since_ms)):
                fault.recovered = True
                break
            time.sleep(0.5)
        fault.recovered_ms = now_ms()
        fault.recovery_s = round((fault.recovered_ms - fault.start_ms) / 1000, 1)
        fault.outage_s = round((fault.recovered_ms - fault.kill_ms) / 1000, 1)

    # --- faults -----------------------------------------------------------------------------------
    def service_fault(self, name: str, down_s: float, timeout_s: float) -> Fault:
        f = Fault(name)
        f.kill_ms = now_ms()
        r = services("kill", name)
        if r.returncode != 0:
            f.note = f"kill: {r.stderr.strip()[-300:]}"
        time.sleep(down_s)
        f.start_ms = now_ms()
        f.down_s = round((f.start_ms - f.kill_ms) / 1000, 1)
        r = services("start", name, timeout_s=timeout_s)
        if r.returncode != 0:
            f.note += f" start: {r.stderr.strip()[-300:]}"
            r = services("start", name, timeout_s=timeout_s)  # once more: a loaded machine
        self.wait_recovered(f, f.start_ms, name in UPSTREAM, timeout_s)
        return f

    def _before_vt(self, lead_s: float = 2.5) -> None:
        """Wait until ``lead_s`` before the next scripted VT run (every 30 s, pauses between them).

        The case the gateway's session checkpoints fix: a session that starts cold judges runs
        reliably only after ~4 s (beat template and RR history empty: a VT 3.3 s after a
        session's start came out as V and S beats). Killed 2.5-3.5 s before the run (devices'
        clocks are spread over one second), the restarted gateway resumes each device's
        checkpoint and must still report every run. Not during a pause: a kill less than ~2.2 s
        into a pause restores a periodic checkpoint up to ``checkpoint_every_s`` old, and the
        pause is then (rightly) not claimed across signal the new process never saw.
        """
        if self.first_event_s is None or self.sim_started_ms is None:
            return
        t0, source = self._device_clock_start(), "truth file"
        if t0 is None:  # the simulator writes its truth file in 64 KB blocks: maybe nothing on disk yet
            t0, source = self.sim_started_ms, "simulator start (truth file not flushed)"
        first_vt = t0 + self.first_event_s * 1000.0
        period = 2 * EVENT_EVERY_S
        phase = ((time.time() * 1000.0 - first_vt) / 1000.0) % period
        wait = (-lead_s - phase) % period
        self.log(f"  killing the gateway in {wait:.1f} s, {lead_s:g} s before a VT run (device clock from the {source})")
        time.sleep(wait)

    def _device_clock_start(self, timeout_s: float = 30.0) -> int | None:
        """The devices' clock start from the truth file, waiting up to ``timeout_s`` for it to be flushed."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.truth_path is not None and self.truth_path.exists():
                t0 = device_clock_start_ms(self.truth_path)
                if t0 is not None:
                    return t0
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)

    def component_fault(self, name: str, timeout_s: float) -> Fault:
        f = Fault(name)
        procs = self.p.gateways if name == "gateway" else [name]
        if name == "gateway":
            self._before_vt()
        f.kill_ms = now_ms()
        for n in procs:
            self.p.kill(n)
        f.start_ms = now_ms()
        for n in procs:
            self.p.procs.restart(n)
        self.wait_recovered(f, f.start_ms, name in UPSTREAM, timeout_s)
        return f

    # --- the run ----------------------------------------------------------------------------------
    def run(self, warmup_s: float = 20.0, gap_s: float = 8.0, tail_s: float = 25.0, settle_s: float = 60.0,
            fault_timeout_s: float = 150.0, only: list[str] | None = None) -> FaultRun:
        global LAST_RUN
        p, t0 = self.p, time.monotonic()
        devices, patients = set(p.devices), p.patients
        sim_duration = 900.0
        truth_path = self.workdir / "truth.jsonl"
        sampler: ProcSampler | None = None
        try:
            self.log("starting the pipeline ...")
            p.start_all()
            self.summaries = KafkaTail(p.kafka, topics.KAFKA_SUMMARIES, lambda v: v.get("device_id") in devices)
            self.flagged = KafkaTail(p.kafka, topics.KAFKA_FLAGGED, lambda v: v.get("device_id") in devices)
            # alerts of this run's episodes only: a hub may republish an unmarked version of an
            # earlier run's alert for the same patients (at-least-once publishing)
            since = now_ms()
            self.alerts = KafkaTail(p.kafka, topics.KAFKA_ALERTS, lambda v: v.get("patient_id") in patients
                                    and v.get("opened_at_ms", 0) >= since)
            sampler = ProcSampler(p.pids, period_s=5.0)
            # a fresh seed and event times per run: ids (device + sample index) never repeat a past run's
            seed = int(time.time()) % 100_000
            first_s = 25.0 + (seed % 400) / 100
            self.sim_started_ms = now_ms()
            p.procs.start("sim", p.sim_argv(sim_duration, truth_path,
                                            scenario(sim_duration, first_s=first_s, every_s=EVENT_EVERY_S),
                                            fs_hz=250.0, hr_bpm=70.0, seed=seed), p.env)
            self.first_event_s, self.truth_path = first_s, truth_path
            self.log(f"load: {len(devices)} patients; warming up {warmup_s:.0f} s")
            time.sleep(warmup_s)
            plan: list[tuple[str, Callable[[], Fault]]] = []
            for name, down in SERVICE_FAULTS.items():
                plan.append((name, lambda n=name, d=down: self.service_fault(n, d, fault_timeout_s)))
            for name in COMPONENT_FAULTS:
                plan.append((name, lambda n=name: self.component_fault(n, fault_timeout_s)))
            for name, do in plan:
                if only and name not in only:
                    continue
                self.supervise(self.faults[-1] if self.faults else None)  # late exits count for the last fault
                self.log(f"fault: {name}")
                f = do()
                self.faults.append(f)
                self.log(f"  {name}: down {f.down_s} s, recovered={f.recovered} {f.recovery_s} s after the restart "
                         f"({f.outage_s} s outage){' restarted ' + ','.join(f.restarted) if f.restarted else ''}"
                         f"{' note: ' + f.note if f.note else ''}")
                time.sleep(gap_s)
            self.log(f"faults done; {tail_s:.0f} s more load")
            time.sleep(tail_s)
            self.supervise(self.faults[-1] if self.faults else None)
            stop_ms = now_ms()
            p.procs.stop("sim", timeout_s=60)
            truth = truncate_truth(load_truth(truth_path), stop_ms - 3000)
            exp = report.expected_alerts(truth, patients)
            deadline = time.monotonic() + settle_s
            last, stable = -1, time.monotonic()
            while time.monotonic() < deadline:  # until every truth event arrived, or nothing new for 15 s
                self.supervise()
                acc = report.event_accounting(truth, self.flagged.snapshot())
                n = len(self.flagged.snapshot()) + len(self.alerts.snapshot())
                if n != last:
                    last, stable = n, time.monotonic()
                alerted = {a["patient_id"] for a in self.alerts.snapshot() if report.is_clinical(a)}
                if acc["lost"] == 0 and all(pid in alerted for pid in exp) and time.monotonic() - stable > 5:
                    break
                if time.monotonic() - stable > 15:
                    break
                time.sleep(1.0)
            flagged, alerts = self.flagged.snapshot(), self.alerts.snapshot()
            acc = report.event_accounting(truth, flagged)
            al = report.alert_accounting(truth, patients, alerts)
            lost_outside = self._attribute(truth, flagged)
            for name, recs in (("flagged", flagged), ("alerts", alerts)):
                (self.workdir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
            from emon_core.settings import state_dir

            run = FaultRun(p, self.faults, truth, acc, al, lost_outside,
                           sorted((state_dir() / "logs").glob("*.log")) + sorted((state_dir() / "logs").glob("*.out")),
                           time.monotonic() - t0, sampler.load if sampler else [])
            LAST_RUN = run
            return run
        finally:
            if sampler is not None:
                sampler.close()
            for tail in (self.summaries, self.flagged, self.alerts):
                if tail is not None:
                    tail.close()
            p.stop()
            for name in SERVICE_FAULTS:  # leave the services up, whatever happened
                if services("status").returncode != 0:
                    services("start", name)

    def _attribute(self, truth: Truth, flagged: list[dict[str, Any]]) -> list[str]:
        """Per truth event not delivered: the fault whose window it overlaps (else 'outside')."""
        from simulators.accounting import account

        acc = account(truth, [report.strip_private(r) for r in flagged], keep_ids=100_000)
        lost_keys = set(acc.lost_events)
        outside: list[str] = []
        margin = 10_000
        for f in self.faults:
            f.lost, lo, hi = [], f.kill_ms - margin, (f.recovered_ms or f.kill_ms) + margin
            f.events_in_window = sum(1 for d in truth.devices.values() for e in d.events
                                     if e["onset_ms"] <= hi and e["end_ms"] >= lo)
        for dev in truth.devices.values():
            for e in dev.events:
                key = f"{dev.device_id}:{e['kind']}:{e['onset']}"
                if key not in lost_keys:
                    continue
                for f in self.faults:
                    if e["onset_ms"] <= (f.recovered_ms or f.kill_ms) + margin and e["end_ms"] >= f.kill_ms - margin:
                        f.lost.append(key)
                        break
                else:
                    outside.append(key)
        return outside
