"""emon demo helpers: repeated scenarios, Prometheus sums, MIT-BIH lookup, the CLI options."""

from __future__ import annotations

import argparse

from simulators import demo_cli
from simulators.scenario import parse_scenario


def test_scenario_repeats_and_parses():
    text = demo_cli._scenario("vt", 20, 240, 600, "k=12,rate=185")
    events = parse_scenario(text)
    assert [e.at_s for e in events] == [20, 260, 500]
    assert all(e.kind == "vt" and e.params["k"] == 12 for e in events)


def test_metric_sum():
    text = "\n".join([
        "# HELP hub_alerts_published_total x",
        'hub_alerts_published_total{severity="critical"} 4.0',
        'hub_alerts_published_total{severity="urgent"} 5.0',
        'hub_alerts_published_created{severity="urgent"} 1.7e9',
        'emon_router_events_total{event="assigned"} 6.0',
        'emon_router_events_total{event="timed_out"} 1.0',
    ])
    assert demo_cli._metric_sum(text, "hub_alerts_published_total") == 9.0
    assert demo_cli._metric_sum(text, 'emon_router_events_total{event="assigned"}') == 6.0


def test_mitdb_lookup(tmp_path):
    for name in ("119", "200"):
        (tmp_path / f"{name}.hea").write_text("x")
        (tmp_path / f"{name}.dat").write_text("x")
    (tmp_path / "203.hea").write_text("x")  # no signal file
    base, found = demo_cli._mitdb(str(tmp_path), "119,203,200,999")
    assert base == tmp_path and found == ["119", "200"]


def test_defaults():
    p = argparse.ArgumentParser()
    demo_cli.configure(p)
    args = p.parse_args([])
    assert (args.patients, args.units, args.duration) == (60, 20, 0.0)
