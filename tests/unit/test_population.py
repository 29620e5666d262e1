"""Synthetic population: seeded, chunk-independent, plausible distributions, inside the city disk."""

from __future__ import annotations

import math

import numpy as np

from hub.population import HISTORY_COLUMNS, make_patient, month_bucket, population_chunk, rows_for

CENTER = (48.2082, 16.3738)


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def test_same_seed_same_rows_regardless_of_chunking() -> None:
    ps_all, h_all = population_chunk(0, 20, 20, 2_000, seed=7)
    ps_a, h_a = population_chunk(0, 8, 20, 2_000, seed=7)
    ps_b, h_b = population_chunk(8, 20, 20, 2_000, seed=7)
    assert ps_all == ps_a + ps_b
    assert h_all.rows == h_a.rows + h_b.rows
    assert h_all.first_seen == {**h_a.first_seen, **h_b.first_seen}
    _, h_other = population_chunk(0, 8, 20, 2_000, seed=8)
    assert h_other.rows != h_a.rows


def test_rows_are_split_exactly() -> None:
    assert sum(rows_for(n, 7, 1000) for n in range(7)) == 1000
    _, h = population_chunk(0, 7, 7, 1000)
    assert len(h.rows) == 1000
    assert all(len(r) == len(HISTORY_COLUMNS) for r in h.rows)
    keys = {(r[0], r[3]) for r in h.rows}
    assert len(keys) == 1000  # row ids unique per patient


def test_buckets_and_order() -> None:
    _, h = population_chunk(0, 3, 3, 600)
    for r in h.rows:
        assert r[1] == month_bucket(r[2])
    times = [r[2] for r in h.rows if r[0] == "pat-00000"]
    assert times == sorted(times)


def test_distributions_plausible() -> None:
    ps = [make_patient(n, seed=1, center=CENTER, radius_km=12.0) for n in range(2000)]
    hr = np.array([p.baseline_hr_bpm for p in ps])
    burden = np.array([p.ectopic_burden_pct for p in ps])
    assert 60 < hr.mean() < 85 and hr.min() >= 42 and hr.max() <= 115
    assert np.median(burden) < 1.0 and 0.05 < (burden >= 5).mean() < 0.3
    ages = 2026 - np.array([p.birth_year for p in ps])
    assert 45 <= ages.min() and ages.max() <= 95 and 65 < ages.mean() < 78
    assert 0.4 < np.mean([p.sex == "F" for p in ps]) < 0.6
    assert all(_km(CENTER, (p.home_lat, p.home_lon)) <= 12.0 * 1.002 for p in ps)
    af = [p for p in ps if "atrial_fibrillation" in p.conditions]
    assert af and all("s_run" in p.chronic_patterns and "anticoagulant" in p.medication for p in af)
    heavy = [p for p in ps if p.ectopic_burden_pct >= 5]
    assert all("frequent_ectopy" in p.chronic_patterns for p in heavy)


def test_sim_naming() -> None:
    p = make_patient(42)
    assert (p.patient_id, p.device_id, p.site_id) == ("pat-00042", "dev-00042", "site-00")
    assert make_patient(1234).site_id == "site-01"


def test_first_seen_is_earliest_event() -> None:
    _, h = population_chunk(0, 5, 5, 5000)
    for (pid, kind), t in h.first_seen.items():
        ts = [r[2] for r in h.rows if r[0] == pid and r[5] == kind]
        assert ts and min(ts) == t


def test_patients_csv_validates_every_row(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hub.ingest import parse_patients_csv

    good = tmp_path / "good.csv"
    good.write_text("patient_id,home_lat,home_lon,conditions,chronic_patterns,birth_year\n"
                    "p-1,48.2,16.3,hypertension;diabetes,s_run,1950\np-2,48.3,16.4,,,\n")
    rows, errors = parse_patients_csv(good)
    assert errors == [] and [r.patient_id for r in rows] == ["p-1", "p-2"]
    assert rows[0].conditions == ["hypertension", "diabetes"] and rows[0].chronic_patterns == ["s_run"]
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,home_lat,home_lon,chronic_patterns\np-1,91,16.3,\np-2,48,16,weird\np-3,48,16,\np-3,48,16,\n")
    rows, errors = parse_patients_csv(bad)
    assert any(e.startswith("line 2, home_lat") for e in errors)
    assert any(e.startswith("line 3, chronic_patterns") for e in errors)
    assert any("line 5, patient_id: duplicate of line 4" in e for e in errors)
    missing = tmp_path / "missing.csv"
    missing.write_text("patient_id,name\np-1,x\n")
    assert parse_patients_csv(missing)[1][0].startswith("header: missing")
