"""Map settings (``EMON_MAP_*``), built in ``main()``; the session key is a secret."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from emon_core.errors import ConfigError
from emon_core.settings import refuse_placeholder, state_dir

OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"


class MapSettings(BaseSettings):
    """Web server, session and map display settings."""

    model_config = SettingsConfigDict(env_prefix="EMON_MAP_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    env: str = Field("development", pattern=r"^(development|test|production)$", validation_alias="EMON_ENV")
    secret_key: SecretStr = SecretStr("")  # signs session cookies; generated per state dir in development
    secret_key_file: Path | None = None
    idle_timeout_s: int = Field(900, ge=30, le=86_400)  # automatic logoff after inactivity
    max_session_s: int = Field(12 * 3600, ge=60, le=7 * 86_400)
    cookie_secure: bool = True
    # "none" (plain background, no network), "osm", or a URL template {z}/{x}/{y}
    tiles: str = "none"
    tiles_attribution: str = "&copy; OpenStreetMap contributors"
    center_lat: float = Field(48.2082, ge=-90, le=90)
    center_lon: float = Field(16.3738, ge=-180, le=180)
    zoom: int = Field(12, ge=1, le=19)
    alert_lookback_h: float = Field(24.0, gt=0, le=24 * 30)
    max_alerts: int = Field(20_000, ge=100, le=1_000_000)
    kafka_live: bool = True

    def tile_url(self) -> str | None:
        t = self.tiles.strip()
        if t.lower() in ("", "none", "off"):
            return None
        return OSM_TILES if t.lower() == "osm" else t

    def session_key(self) -> str:
        """The cookie signing key: configured, from a file, or generated once per state dir (dev)."""
        key = self.secret_key.get_secret_value()
        if not key and self.secret_key_file is not None:
            try:
                key = self.secret_key_file.read_text().strip()
            except OSError as err:
                raise ConfigError(f"EMON_MAP_SECRET_KEY_FILE: cannot read: {err}") from err
        if not key:
            if self.env == "production":
                raise ConfigError("EMON_MAP_SECRET_KEY: required in production")
            path = state_dir() / "map_secret_key"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(secrets.token_urlsafe(48))
                path.chmod(0o600)
            key = path.read_text().strip()
        refuse_placeholder("EMON_MAP_SECRET_KEY", key, self.env)
        if self.env == "production" and len(key) < 32:
            raise ConfigError("EMON_MAP_SECRET_KEY: at least 32 characters in production")
        return key
