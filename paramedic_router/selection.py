"""Pure unit selection: geodesic distance over prefiltered candidates, ETA, deterministic ids."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

from geopy.distance import geodesic

from paramedic_router.spatial import Candidate

MAX_ID_LEN = 160
SPHERE_SLACK = 0.01  # > max relative sphere/ellipsoid distance difference (~0.56 %)


@dataclass(frozen=True)
class Choice:
    unit_id: str
    unit_lat: float
    unit_lon: float
    distance_m: float
    eta_s: float


def eta_seconds(distance_m: float, speed_kmh: float, road_factor: float = 1.3, dispatch_s: float = 60.0) -> float:
    """Travel-time estimate: straight-line distance times a road-network factor at ``speed_kmh``,
    plus a fixed turn-out time ``dispatch_s``.

    Example:
        >>> eta_seconds(10_000, speed_kmh=60, road_factor=1.0, dispatch_s=0)
        600.0
    """
    if speed_kmh <= 0:
        raise ValueError("speed_kmh must be positive")
    return round(dispatch_s + distance_m * road_factor / (speed_kmh / 3.6), 1)


def rank_candidates(
    lat: float, lon: float, candidates: Iterable[Candidate], *, speed_kmh: float, road_factor: float, dispatch_s: float
) -> list[Choice]:
    """Candidates ordered by geodesic (WGS-84) distance, nearest first; ties by unit id.

    The ellipsoid and the sphere differ by well under 1 %, so only candidates whose
    spherical distance is within ``SPHERE_SLACK`` of the best can be the geodesic nearest;
    the others are not measured (each geodesic costs ~0.2 ms).
    """
    cands = sorted(candidates, key=lambda c: c.approx_m)
    if not cands:
        return []
    limit = cands[0].approx_m * (1 + SPHERE_SLACK) + 5.0
    measured = sorted(
        ((geodesic((lat, lon), (c.lat, c.lon)).meters, c.unit_id, c) for c in cands if c.approx_m <= limit),
        key=lambda t: (t[0], t[1]),
    )
    return [
        Choice(c.unit_id, c.lat, c.lon, round(d, 1), eta_seconds(d, speed_kmh, road_factor, dispatch_s))
        for d, _, c in measured
    ]


def assignment_id(alert_id: str, attempt: int) -> str:
    """Deterministic assignment id for an alert's ``attempt``-th assignment (replays reuse it)."""
    suffix = f":a{attempt}"
    if len(alert_id) + len(suffix) <= MAX_ID_LEN:
        return f"{alert_id}{suffix}"
    digest = hashlib.sha1(alert_id.encode()).hexdigest()[:24]
    return f"asg-{digest}{suffix}"
