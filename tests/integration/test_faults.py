"""Fault suite on the real services: while a scripted load runs, kill -9 Kafka (10 s), Cassandra
(20 s), Mosquitto (10 s), then kill -9 and restart the gateway, the bridge, the hub and the router.

After recovery: no rhythm event of the ground truth is lost (accounting against the
simulator's truth, per fault window) and no alert is raised twice (one alert id per patient
episode; updates of an alert are versions). Each fault's recovery time is printed.

Devices dev-02700 .. dev-02719 (site-02) and units unit-0960 .. unit-0969 are reserved here.
The services are left running. ``EMON_FAULTS_ONLY=gateway`` (comma-separated names) injects
only those faults (then select their tests, e.g. ``-k gateway``): a shared machine's services
are not killed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator

import pytest

from emon_core.settings import CassandraSettings, KafkaSettings, MqttSettings, state_dir

# the whole run is one module fixture: ~5 min on an idle 2-core machine, ~11 min at load average 20
pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(1500)]

START, PATIENTS = 2700, 20


@pytest.fixture(scope="module")
def fault_run(mqtt_settings: MqttSettings, kafka_settings: KafkaSettings,
              cassandra_settings: CassandraSettings) -> Iterator[Any]:
    from simulators.loadtest.faults import FaultRunner

    tag = f"f{os.getpid()}-{time.time_ns() % 10**8}"
    workdir = state_dir() / "faults" / tag  # kept after the run: logs, truth, records, faults.json
    workdir.mkdir(parents=True, exist_ok=True)
    runner = FaultRunner(workdir, tag, start_index=START, patients=PATIENTS,
                         log=lambda s: print(f"[faults {time.strftime('%H:%M:%S')}] {s}", flush=True))
    only = [n for n in os.environ.get("EMON_FAULTS_ONLY", "").split(",") if n] or None  # e.g. gateway
    run = runner.run(warmup_s=15.0, gap_s=3.0, tail_s=20.0, settle_s=60.0, fault_timeout_s=240.0, only=only)
    summary = {f.name: {"down_s": f.down_s, "recovery_s": f.recovery_s, "outage_s": f.outage_s,
                        "recovered": f.recovered, "lost": len(f.lost), "events_in_window": f.events_in_window,
                        "restarted": f.restarted, "note": f.note} for f in run.faults}
    print("\nfault recovery (s after the restart / total outage), events lost in the fault's window:")
    for name, s in summary.items():
        print(f"  {name:10s} down {s['down_s']:5.1f}  recovery {s['recovery_s']:6.1f}  outage {s['outage_s']:6.1f}  "
              f"lost {s['lost']}/{s['events_in_window']}  {'restarted ' + ','.join(s['restarted']) if s['restarted'] else ''}")
    print(f"events: {json.dumps({k: run.accounting[k] for k in ('events_expected', 'events_delivered', 'lost', 'duplicates')})}"
          f"; beats {run.accounting['beats']}")
    print(f"alerts: {json.dumps({k: run.alerts[k] for k in ('alerts_expected', 'alerts_raised', 'alert_duplicates', 'alerts_missing', 'technical_alerts')})}")
    la = [x[0] for x in run.load] or [0.0]
    print(f"wall {run.wall_s:.0f} s; load average (1 min) mean {sum(la) / len(la):.1f} max {max(la):.1f}; records in {workdir}")
    (workdir / "faults.json").write_text(json.dumps({"faults": summary, "accounting": run.accounting,
                                                      "alerts": run.alerts}, indent=2, default=str))
    yield run


def _fault(run: Any, name: str) -> Any:
    f = run.fault(name)
    assert f.recovered, f"{name}: not recovered after {f.outage_s} s (note: {f.note})"
    return f


@pytest.mark.parametrize("name", ["kafka", "cassandra", "mosquitto", "gateway", "bridge", "hub", "router"])
def test_fault_recovers_without_losing_events(fault_run: Any, name: str) -> None:
    f = _fault(fault_run, name)
    assert f.lost == [], f"{name}: {len(f.lost)} of {f.events_in_window} truth events in its window lost: {f.lost[:10]}"


def test_no_event_lost_outside_the_fault_windows(fault_run: Any) -> None:
    assert fault_run.accounting["events_expected"] > 0
    assert fault_run.lost_outside == [], fault_run.lost_outside[:20]


def test_no_duplicate_alerts(fault_run: Any) -> None:
    al = fault_run.alerts
    assert al["alerts_raised"] > 0
    assert al["alert_duplicates"] == 0, f"patients with more alerts than episodes: {al['duplicate_patients']}"
    assert al["alerts_missing"] == 0, f"patients without their alert: {al['missing_patients']}"


def test_services_left_running(fault_run: Any) -> None:
    from simulators.loadtest.faults import services

    r = services("status")
    assert r.returncode == 0, r.stdout + r.stderr
