"""Router pure logic: haversine prefilter, geodesic ranking, ETA, ids, priority queue."""

from __future__ import annotations

import numpy as np
import pytest
from geopy.distance import geodesic

from paramedic_router.queue import AlertQueue, QueuedAlert
from paramedic_router.selection import assignment_id, eta_seconds, rank_candidates
from paramedic_router.spatial import UnitIndex, haversine_m


def test_haversine_close_to_geodesic():
    rng = np.random.default_rng(1)
    lats = 48.2 + rng.uniform(-0.1, 0.1, 50)
    lons = 16.37 + rng.uniform(-0.1, 0.1, 50)
    d = haversine_m(48.2, 16.37, lats, lons)
    for i in range(50):
        g = geodesic((48.2, 16.37), (lats[i], lons[i])).meters
        assert abs(d[i] - g) <= 0.005 * g + 1.0


def test_nearest_matches_brute_force_and_respects_availability():
    rng = np.random.default_rng(7)
    idx = UnitIndex(capacity=4)  # forces growth
    pts = {}
    for n in range(2000):
        lat, lon = 48.2 + rng.uniform(-0.2, 0.2), 16.37 + rng.uniform(-0.3, 0.3)
        idx.upsert(f"u{n}", lat, lon, available=n % 3 != 0)
        pts[f"u{n}"] = (lat, lon)
    got = idx.nearest(48.21, 16.4, k=5, exclude={"u1"})
    brute = sorted(
        (geodesic((48.21, 16.4), p).meters, u) for u, p in pts.items() if int(u[1:]) % 3 != 0 and u != "u1"
    )
    assert [c.unit_id for c in got][:3] == [u for _, u in brute[:3]]
    assert idx.available_count() == sum(1 for n in range(2000) if n % 3)


def test_nearest_empty_and_none_available():
    idx = UnitIndex()
    assert idx.nearest(0, 0) == []
    idx.upsert("a", 1.0, 1.0, available=False)
    assert idx.nearest(0, 0) == []
    idx.set_available("a", True)
    assert [c.unit_id for c in idx.nearest(0, 0)] == ["a"]


def test_rank_uses_geodesic_and_eta():
    idx = UnitIndex()
    idx.upsert("far", 48.30, 16.37, True)
    idx.upsert("near", 48.21, 16.37, True)
    ranked = rank_candidates(48.20, 16.37, idx.nearest(48.20, 16.37), speed_kmh=36, road_factor=1.0, dispatch_s=0)
    assert [c.unit_id for c in ranked] == ["near"]  # "far" cannot win: not measured
    assert ranked[0].distance_m == pytest.approx(1112, rel=0.01)
    assert ranked[0].eta_s == pytest.approx(ranked[0].distance_m / 10.0, abs=0.2)


def test_eta_rejects_bad_speed():
    with pytest.raises(ValueError):
        eta_seconds(100, speed_kmh=0)
    assert eta_seconds(0, speed_kmh=50, dispatch_s=60) == 60


def test_assignment_id_deterministic_and_bounded():
    assert assignment_id("pat-1:ep:5", 0) == assignment_id("pat-1:ep:5", 0) == "pat-1:ep:5:a0"
    assert assignment_id("pat-1:ep:5", 1) != assignment_id("pat-1:ep:5", 0)
    long = "x" * 159
    aid = assignment_id(long, 12)
    assert len(aid) <= 160 and aid == assignment_id(long, 12)


def _q(alert_id: str, rank: int, opened: int) -> QueuedAlert:
    return QueuedAlert(rank, opened, alert_id, "p", 0.0, 0.0, ["critical", "urgent"][rank])


def test_queue_orders_by_severity_then_age():
    q = AlertQueue()
    q.push(_q("urgent-old", 1, 100))
    q.push(_q("critical-new", 0, 300))
    q.push(_q("critical-old", 0, 200))
    q.push(_q("urgent-new", 1, 400))
    assert [i.alert_id for i in q.ordered()] == ["critical-old", "critical-new", "urgent-old", "urgent-new"]
    assert q.pop().alert_id == "critical-old"
    q.remove("critical-new")
    q.push(_q("urgent-new", 0, 400))  # escalated: replaces the old entry
    assert [q.pop().alert_id for _ in range(len(q))] == ["urgent-new", "urgent-old"]
    assert q.pop() is None and q.peek() is None


def test_pruned_ranking_finds_the_geodesic_nearest():
    rng = np.random.default_rng(3)
    for trial in range(40):
        idx = UnitIndex()
        # near-ties in different directions, where sphere and ellipsoid disagree most
        for n in range(30):
            bearing = rng.uniform(0, 2 * np.pi)
            r = 0.02 + rng.uniform(0, 0.0005)
            idx.upsert(f"u{n}", 48.2 + r * np.cos(bearing), 16.37 + r * np.sin(bearing) / 0.66, True)
        cands = idx.nearest(48.2, 16.37, k=30)
        best = min(cands, key=lambda c: geodesic((48.2, 16.37), (c.lat, c.lon)).meters)
        ranked = rank_candidates(48.2, 16.37, cands, speed_kmh=40, road_factor=1.3, dispatch_s=0)
        assert ranked[0].unit_id == best.unit_id
