"""emon loadtest options: the share of patients with scripted events, fresh id blocks per run."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from simulators.loadtest_cli import next_block, scenario_count, scenario_share


def test_scenario_share_parses_counts_percentages_and_all() -> None:
    assert scenario_count(scenario_share("5%"), 1000) == 50
    assert scenario_count(scenario_share("0.1%"), 100) == 1  # never rounds a share down to nobody
    assert scenario_count(scenario_share("0%"), 100) == 0
    assert scenario_count(scenario_share("50"), 1000) == 50
    assert scenario_count(scenario_share("5000"), 1000) == 1000
    assert scenario_count(scenario_share("ALL"), 1000) is None
    for bad in ("x", "150%", "-3", "5%%"):
        with pytest.raises(argparse.ArgumentTypeError):
            scenario_share(bad)


def test_next_block_rotates_through_unused_whole_sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMON_STATE_DIR", str(tmp_path))
    starts = [next_block("patients", 1000, 10_000, 13_000, align=1000) for _ in range(4)]
    assert starts == [10_000, 11_000, 12_000, 10_000]  # wraps before leaving the range
    assert next_block("patients", 1500, 10_000, 13_000, align=1000) == 11_000  # two whole sites ...
    assert next_block("patients", 10, 10_000, 13_000, align=1000) == 10_000  # ... so the next would not fit
    assert next_block("units", 30, 5_000, 10_000) == 5_000
    assert next_block("units", 30, 5_000, 10_000) == 5_030
    (tmp_path / "loadtest" / "next_units").write_text("garbage")
    assert next_block("units", 30, 5_000, 10_000) == 5_000


def test_site_size_splits_the_patients_over_gateways(tmp_path: Path) -> None:
    from simulators.loadtest.pipeline import Pipeline, PipelineConfig

    one = Pipeline(PipelineConfig(workdir=tmp_path, tag="t", start_index=2000, patients=1000))
    two = Pipeline(PipelineConfig(workdir=tmp_path, tag="t", start_index=2000, patients=1000, site_size=500))
    assert one.sites == ["site-02"]
    assert two.sites == ["site-04", "site-05"]
    assert {site for _, site in two.devices.values()} == {"site-04", "site-05"}


def test_default_units_cover_the_scripted_patients() -> None:
    from simulators.loadtest_cli import units_for

    assert units_for(5) == 30  # small runs: the old default
    assert units_for(50) == 60  # 1,000 patients, 5 % scripted: a unit each, 10 spare
    assert units_for(5_000) == 700  # capped at the credentials' unit range (unit-0300..0999)
