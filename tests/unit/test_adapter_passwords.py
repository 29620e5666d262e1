"""Derived development MQTT passwords and the password-file lines (no broker needed)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from emon_core.adapters import mqtt
from emon_core.devservices.accounts import account_lines
from emon_core.errors import ConfigError


def test_derived_password_is_hmac_of_username(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mqtt.DEVICE_SECRET_ENV, "s3cret")
    want = hmac.new(b"s3cret", b"dev-00042", hashlib.sha256).hexdigest()[:32]
    assert mqtt.device_password("dev-00042") == want
    assert mqtt.unit_password("unit-0001") != mqtt.device_password("dev-00042")


def test_missing_secret_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv(mqtt.DEVICE_SECRET_ENV, raising=False)
    monkeypatch.setenv("EMON_STATE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="emon services up"):
        mqtt.device_password("dev-00000")


def test_account_lines() -> None:
    lines = account_lines({"gateway": "g", "bridge": "b"}, "k", devices=3, units=2)
    assert lines[:2] == ["bridge:b", "gateway:g"]
    assert [ln.split(":")[0] for ln in lines[2:]] == ["dev-00000", "dev-00001", "dev-00002", "unit-0000", "unit-0001"]
    assert lines[2].split(":")[1] == mqtt.derive_password("dev-00000", "k")
