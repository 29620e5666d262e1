"""Router settings (``EMON_ROUTER_*``), built in ``main()``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RouterSettings(BaseSettings):
    """How the router decides and how long it waits for a unit to acknowledge."""

    model_config = SettingsConfigDict(env_prefix="EMON_ROUTER_", extra="ignore", frozen=True)

    group_id: str = "emon-router"
    instance_id: str = ""  # defaults to host-pid; names the side consumer
    ack_timeout_s: float = Field(30.0, gt=0, le=3600)  # unit must acknowledge within this
    # a unit with no position report for this long is offline (not dispatched) until it reports again
    unit_stale_s: float = Field(60.0, gt=0, le=86_400)
    speed_kmh: float = Field(45.0, gt=1, le=200)  # average urban ambulance speed
    road_factor: float = Field(1.35, ge=1.0, le=3.0)  # road distance / straight-line distance
    turnout_s: float = Field(60.0, ge=0, le=1800)  # time for the crew to leave
    prefilter_k: int = Field(8, ge=1, le=256)  # haversine top-k before geodesic ranking
    batch_max: int = Field(500, ge=1, le=10_000)
    claim_concurrency: int = Field(16, ge=1, le=1024)  # LWTs in flight per batch
    tick_s: float = Field(0.2, gt=0, le=10)
    start_latest: bool = False  # a new consumer group starts at the end of the alerts topic
