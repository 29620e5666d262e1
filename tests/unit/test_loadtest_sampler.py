"""The load test's process sampler: run processes count from their start, services from the first sample."""

from __future__ import annotations

import os
import time

import psutil

from simulators.loadtest.observe import ProcSampler


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_service_counts_cpu_from_the_first_sample_only() -> None:
    _burn(0.6)  # CPU used before sampling starts
    before = sum(psutil.Process().cpu_times()[:2])
    me = os.getpid()
    sampler = ProcSampler(lambda: {"run": me}, period_s=0.1, services=lambda: {"svc-x": me})
    time.sleep(0.3)
    _burn(0.5)
    time.sleep(0.3)
    stats = sampler.close()
    assert stats.cpu_s["run"] >= before + 0.4  # everything since the process started
    assert 0.4 <= stats.cpu_s["svc-x"] < before  # only what was used while sampled


def test_two_gateways_metrics_add_up_counters_and_keep_the_largest_gauge() -> None:
    from simulators.loadtest.run import merge_gateway_metrics

    site_a = {"emon_gateway_frames_total": 30000.0, 'emon_gateway_rhythm_events_total{kind="pause"}': 100.0,
              "emon_gateway_flagged_beats_total": 664.0, "emon_gateway_processing_lag_seconds": 0.4}
    site_b = {"emon_gateway_frames_total": 30000.0, 'emon_gateway_rhythm_events_total{kind="pause"}': 0.0,
              "emon_gateway_flagged_beats_total": 0.0, "emon_gateway_processing_lag_seconds": 0.001}
    merged = merge_gateway_metrics([site_a, site_b])
    assert merged["emon_gateway_frames_total"] == 60000.0
    assert merged["emon_gateway_flagged_beats_total"] == 664.0  # before: the last gateway's 0
    assert merged['emon_gateway_rhythm_events_total{kind="pause"}'] == 100.0
    assert merged["emon_gateway_processing_lag_seconds"] == 0.4


def _empty_report(**extra: object) -> dict:
    """A report of a run with no traffic, for the printed form."""
    hop = {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    return {"patients": 10, "duration_s": 60, "realtime": True, "wall_s": 61, "cpu_count": 2,
            "load_average_1m": {"mean": 1.0, "max": 2.0}, "events_expected": 0, "events_delivered": 0, "lost": 0,
            "duplicates": 0, "events": {"beats": {}}, "alerts_expected": 0, "alerts_raised": 0,
            "alert_duplicates": 0, "alerts_missing": 0, "latency_ms": {"beat_to_kafka": hop}, "throughput": {},
            "processes": {}, **extra}


def test_the_report_reads_how_late_the_simulator_was(tmp_path) -> None:
    import json

    from simulators.loadtest.run import sim_lateness
    from simulators.loadtest_cli import format_report

    (tmp_path / "sim.json").write_text(json.dumps({"frames_sent": 10, "lateness_ms": {"p50": 542.4, "p99": 2586.4}}))
    assert sim_lateness(tmp_path / "sim.json") == {"p50": 542.4, "p99": 2586.4}
    assert sim_lateness(tmp_path / "missing.json") is None
    rep = _empty_report(sim_lateness_ms=sim_lateness(tmp_path / "sim.json"))
    assert "simulator behind its schedule: p50 542.4 ms, p99 2586.4 ms" in format_report(rep)


def test_a_wall_clock_step_during_the_run_is_measured_and_reported(monkeypatch) -> None:
    import time

    from simulators import clock_watch
    from simulators.loadtest_cli import format_report

    watch = clock_watch.ClockWatch()
    assert abs(watch.step_s()) < 0.1
    real = time.time
    monkeypatch.setattr(clock_watch.time, "time", lambda: real() + 150.0)  # NTP stepped the clock forward
    assert 149.9 < watch.step_s() < 150.1
    rep = _empty_report(clock_step_s=round(watch.step_s(), 3))
    assert "WARNING: wall clock stepped by +150.0 s" in format_report(rep)
    rep["clock_step_s"] = 0.02
    assert "stepped" not in format_report(rep)


def test_latency_starts_when_the_device_published_and_the_schedule_based_one_keeps_the_lateness(tmp_path) -> None:
    import json

    from simulators.ground_truth import load_truth
    from simulators.loadtest.report import latencies

    # two 1 s frames at 360 Hz: the first published on time, the second 700 ms late
    frames = [{"t": "frame", "device": "dev-1", "site": "s", "patient": "pat-1", "seq": k, "first": 360 * k,
               "n": 360, "fs_hz": 360.0, "device_time_ms": 1_000_000 + 1000 * k,
               "sent_ms": 1_000_000 + 1000 * (k + 1) + 700 * k, "beats": []} for k in (0, 1)]
    (tmp_path / "truth.jsonl").write_text("".join(json.dumps(f) + "\n" for f in frames))
    truth = load_truth(tmp_path / "truth.jsonl")
    end0, end1 = 1_001_000, 1_002_000  # the frames' scheduled ends: the gateway's device_sent_ms
    flagged = [{"id": "dev-1:10", "device_id": "dev-1", "trace": {"device_sent_ms": end0, "kafka_produced_ms": end0 + 150}},
               {"id": "dev-1:400", "device_id": "dev-1", "trace": {"device_sent_ms": end1, "kafka_produced_ms": end1 + 900}}]
    screen = [{"alert_id": "a1", "patient_id": "pat-1", "_arrived_ms": end1 + 1200, "trace": {"device_sent_ms": end1}}]
    pub = latencies(flagged, [], screen, [], truth, {"pat-1"})
    sched = latencies(flagged, [], screen, [], truth, {"pat-1"}, from_publish=False)
    assert sorted(pub["beat_to_kafka"]) == [150, 200] and pub["beat_to_screen"] == [500]
    assert sorted(sched["beat_to_kafka"]) == [150, 900] and sched["beat_to_screen"] == [1200]
