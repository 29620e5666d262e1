"""Bridge settings (``EMON_BRIDGE_*``), built in ``main()``; MQTT and Kafka from ``EMON_MQTT_*``/``EMON_KAFKA_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BridgeSettings(BaseSettings):
    """Everything ``emon bridge`` needs besides the broker/cluster addresses."""

    model_config = SettingsConfigDict(env_prefix="EMON_BRIDGE_", extra="ignore", frozen=True)

    bridge_id: str = Field("bridge-1", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    username: str = "bridge"
    share_group: str = Field("bridge", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    max_inflight: int = Field(1000, ge=1, le=65535, description="un-acked MQTT messages (receive maximum)")
    session_expiry_s: int = Field(3600, ge=0, le=7 * 86400)
    # on a clean stop: leave the share group, forward what still arrives until quiet this long
    leave_quiet_s: float = Field(0.5, gt=0, le=60)
    leave_timeout_s: float = Field(15.0, gt=0, le=300)
    http_host: str = "127.0.0.1"
    http_port: int = Field(9401, ge=0, le=65535)
    linger_ms: int = Field(2, ge=0, le=1000)
    delivery_timeout_ms: int = Field(120_000, ge=1000)
    stuck_after_s: float = Field(60.0, gt=0)
