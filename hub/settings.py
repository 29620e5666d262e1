"""Hub settings (``EMON_HUB_*``): topics, group, episode timing, cache, retries; built in ``main()``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from emon_core import topics


class HubSettings(BaseSettings):
    """How the hub consumes, groups episodes, caches patients and survives outages.

    Topic names default to :mod:`emon_core.topics` and may be overridden (tests use
    per-run topics); the keyspace comes from ``EMON_CASSANDRA_KEYSPACE``.
    """

    model_config = SettingsConfigDict(env_prefix="EMON_HUB_", extra="ignore", frozen=True)

    group_id: str = "emon-hub"
    topic_flagged: str = topics.KAFKA_FLAGGED
    topic_summaries: str = topics.KAFKA_SUMMARIES
    topic_gateway_status: str = topics.KAFKA_GATEWAY_STATUS
    topic_alerts: str = topics.KAFKA_ALERTS
    topic_deadletter: str = topics.KAFKA_DEADLETTER
    batch_max: int = Field(1000, ge=1, le=50_000)  # messages per poll/write/commit round
    poll_timeout_s: float = Field(0.2, gt=0, le=10)
    write_concurrency: int = Field(256, ge=1, le=4096)  # in-flight Cassandra writes
    episode_quiet_s: float = Field(120.0, gt=0, le=86_400)  # episode closes after this gap
    episode_max_s: float = Field(1800.0, gt=0, le=7 * 86_400)  # then a new episode starts
    cache_ttl_s: float = Field(300.0, ge=0, le=86_400)  # patient record + history baseline
    cache_max: int = Field(200_000, ge=10)
    retry_initial_s: float = Field(0.5, gt=0, le=60)
    retry_max_s: float = Field(10.0, gt=0, le=600)
    http_port: int = Field(0, ge=0, le=65535)  # GET /metrics and /healthz; 0 = no endpoint
    http_host: str = "127.0.0.1"
    store_strips: bool = True
