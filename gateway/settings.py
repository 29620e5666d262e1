"""Gateway settings: one YAML/TOML file plus ``EMON_GATEWAY_*`` environment overrides, validated at start.

Precedence (highest first): command-line flags, environment (``EMON_GATEWAY_*``, nested
keys with ``__``), the config file (``--config``), defaults. Errors name the key and the
problem (``emon gateway --check-config FILE``).

Example config (YAML)::

    site_id: site-00
    gateway_id: gw-site-00
    registry_file: /etc/emon/devices.csv
    state_dir: /var/lib/emon-gateway
    http_port: 9400
    rhythm:
      pause_s: 3.0
      brady_bpm: 40
      tachy_bpm: 150
    mqtt:
      host: broker.example.org
      username: gateway
      password_file: /etc/emon/mqtt-password
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from emon_core.errors import ConfigError
from emon_core.settings import MqttSettings, state_dir


class RhythmSettings(BaseModel):
    """Rhythm-event thresholds (seconds, bpm, beats); see :mod:`gateway.rhythm`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_min_beats: int = Field(3, ge=2, le=20)
    vt_rate_bpm: float = Field(100.0, gt=0, le=400)
    run_update_beats: int = Field(10, ge=1, le=1000)
    # one more revision when a run reaches this many beats: the centre's VT rule is >= 5 beats,
    # so a VT alarm does not wait for the run's end or its next update
    run_confirm_beats: int = Field(5, ge=2, le=1000)
    # a V run at >= vt_rate_bpm one beat short of run_confirm_beats: classify the next beat as
    # soon as it is detected, its next RR taken equal to its previous RR, and send the
    # run_confirm_beats revision if it is V and in the run's rhythm (``detail`` says so;
    # corrected by a final revision if the beat's own classification is not V) instead of
    # waiting for the R peak after it (gateway.rhythm)
    run_confirm_provisional: bool = True
    pause_s: float = Field(3.0, gt=0.5, le=30)
    asystole_s: float = Field(6.0, gt=0.5, le=60)
    rate_rr_count: int = Field(12, ge=2, le=64)
    brady_bpm: float = Field(40.0, gt=0, le=200)
    tachy_bpm: float = Field(150.0, gt=0, le=400)
    sustain_s: float = Field(10.0, ge=0, le=600)
    ectopy_per_min: float = Field(6.0, gt=0, le=200)
    signal_loss_min_s: float = Field(2.0, ge=0, le=60)

    @model_validator(mode="after")
    def _order(self) -> "RhythmSettings":
        if self.asystole_s < self.pause_s:
            raise ValueError("asystole_s must be >= pause_s")
        if self.brady_bpm >= self.tachy_bpm:
            raise ValueError("brady_bpm must be below tachy_bpm")
        return self


class GatewayMqtt(BaseModel):
    """Broker connection of the gateway (defaults from ``EMON_MQTT_*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    username: str = "gateway"
    password: SecretStr = SecretStr("")
    password_file: Path | None = None
    tls_ca_file: Path | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(600, ge=0, le=7 * 86400)

    def to_mqtt_settings(self) -> MqttSettings:
        base = MqttSettings()
        update: dict[str, Any] = {"username": self.username, "keepalive_s": self.keepalive_s}
        if self.host:
            update["host"] = self.host
        if self.port:
            update["port"] = self.port
        if self.password.get_secret_value():
            update["password"] = self.password
        if self.password_file is not None:
            update["password_file"] = self.password_file
        if self.tls_ca_file is not None:
            update["tls_ca_file"] = self.tls_ca_file
        return base.model_copy(update=update)


class GatewaySettings(BaseSettings):
    """Everything ``emon gateway`` needs (``EMON_GATEWAY_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="EMON_GATEWAY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    site_id: str = Field("site-00", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    gateway_id: str = Field("", pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    registry_file: Path | None = None
    simulated: int | None = Field(None, ge=1, le=1_000_000, description="accept simulated dev-NNNNN ids")
    simulated_start: int = Field(0, ge=0)
    state_dir: Path | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(9400, ge=0, le=65535)
    classifier: Literal["auto", "tflite", "rules"] = "auto"
    model_path: Path | None = None
    model_watch_s: float = Field(5.0, ge=0, le=3600, description="poll the model file for updates (0: only on SIGHUP)")
    tick_ms: int = Field(100, ge=5, le=2000)
    intake_poll_ms: int = Field(20, ge=0, le=500, description="read the intake in rounds this far apart (frames "
                                "wait up to this long; fewer wake-ups and one PUBACK write per round)")
    intake_round_frames: int = Field(256, ge=1, le=100_000, description="frames read per round at most (then a tick "
                                     "can run; the rest waits in the socket and on the broker)")
    max_devices: int = Field(5_000, ge=1, le=100_000)
    idle_evict_s: float = Field(300.0, gt=0)
    silent_after_s: float = Field(10.0, gt=0)
    max_gap_fill_s: float = Field(30.0, ge=0, le=600)
    summary_period_s: float = Field(10.0, gt=0, le=3600)
    strip_event_s: float = Field(6.0, gt=0, le=20)
    strip_beat_s: float = Field(1.5, gt=0, le=10)
    outbox_max_entries: int = Field(200_000, ge=10)
    outbox_max_mb: float = Field(512.0, gt=0)
    outbox_inflight: int = Field(200, ge=1, le=65535)
    outbox_sync: Literal["normal", "full"] = "normal"
    outbox_retain_s: float = Field(300.0, ge=0, le=86400,
                                   description="keep entries this long after PUBACK for a replay (0: delete)")
    replay_window_s: float = Field(120.0, ge=0, le=86400,
                                   description="after a reconnect, re-publish what was acknowledged this long "
                                               "before the disconnect (0: never)")
    replay_delay_s: float = Field(5.0, ge=0, le=600, description="wait this long after the reconnect first")
    checkpoint_every_s: float = Field(10.0, ge=0, le=3600,
                                      description="store each device's session checkpoint this often (0: never)")
    checkpoint_hot_after_s: float = Field(1.3, gt=0, le=60, description="checkpoint at every frame while an "
                                          "event is open or the last beat is this much older than the mean RR")
    checkpoint_tail_s: float = Field(4.0, ge=0, le=10, description="raw signal kept in a checkpoint (primes the "
                                     "restored signal core)")
    checkpoint_max_age_s: float = Field(600.0, gt=0, le=86400, description="older checkpoints are not restored")
    stuck_after_s: float = Field(60.0, gt=0)
    drain_timeout_s: float = Field(10.0, ge=0)
    rhythm: RhythmSettings = RhythmSettings()
    mqtt: GatewayMqtt = GatewayMqtt()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the file's values come in as init kwargs; the environment overrides them
        return (env_settings, init_settings)

    @property
    def resolved_gateway_id(self) -> str:
        return self.gateway_id or f"gw-{self.site_id}"

    @property
    def resolved_state_dir(self) -> Path:
        return (self.state_dir or state_dir() / "gateway" / self.resolved_gateway_id).resolve()


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML, TOML or JSON config file into a dict (ConfigError naming the file)."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as err:  # noqa: BLE001 - any parser error is a config error
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    return data


def load_gateway_settings(path: Path | None = None, **overrides: Any) -> GatewaySettings:
    """Build settings from the file, the environment and overrides; errors name the key."""
    values: dict[str, Any] = read_config_file(path) if path else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = GatewaySettings(**values)
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False):
            key = ".".join(str(p) for p in e.get("loc", ()))
            msg = e.get("msg", "invalid")
            if e.get("type") == "extra_forbidden":
                msg = "unknown key"
            problems.append(f"{key or '(top level)'}: {msg}")
        where = f"{path}: " if path else ""
        raise ConfigError(where + "; ".join(problems)) from err
    if settings.registry_file is None and settings.simulated is None:
        raise ConfigError("registry_file: required (or simulated: N for the simulated fleet)")
    if settings.registry_file is not None and not settings.registry_file.exists():
        raise ConfigError(f"registry_file: {settings.registry_file} does not exist")
    if settings.model_path is not None and not settings.model_path.exists():
        raise ConfigError(f"model_path: {settings.model_path} does not exist")
    if settings.mqtt.password_file is not None and not settings.mqtt.password_file.exists():
        raise ConfigError(f"mqtt.password_file: {settings.mqtt.password_file} does not exist")
    return settings
