"""Gateway settings: file + environment overrides, errors that name the key, --check-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from emon_core.cli import main
from emon_core.errors import ConfigError
from gateway.settings import load_gateway_settings


def test_file_then_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("site_id: site-07\nsimulated: 10\nrhythm:\n  pause_s: 4.0\n  brady_bpm: 45\nmqtt:\n  host: broker\n")
    s = load_gateway_settings(cfg)
    assert (s.site_id, s.rhythm.pause_s, s.rhythm.brady_bpm, s.mqtt.host) == ("site-07", 4.0, 45, "broker")
    monkeypatch.setenv("EMON_GATEWAY_RHYTHM__PAUSE_S", "5")
    monkeypatch.setenv("EMON_GATEWAY_SITE_ID", "site-08")
    s = load_gateway_settings(cfg)
    assert (s.site_id, s.rhythm.pause_s, s.rhythm.brady_bpm) == ("site-08", 5.0, 45)
    toml = tmp_path / "gw.toml"
    toml.write_text('site_id = "site-09"\nsimulated = 3\n[rhythm]\ntachy_bpm = 140\n')
    monkeypatch.delenv("EMON_GATEWAY_SITE_ID")
    assert load_gateway_settings(toml).rhythm.tachy_bpm == 140


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("simulated: 1\nrhythm:\n  pause_s: 0.1\n", "rhythm.pause_s: Input should be greater than 0.5"),
        ("simulated: 1\nrhythm:\n  colour: red\n", "rhythm.colour: unknown key"),
        ("simulated: 1\nhttp_port: 70000\n", "http_port: Input should be less than or equal to 65535"),
        ("simulated: 1\nrhythm:\n  brady_bpm: 200\n  tachy_bpm: 150\n", "brady_bpm must be below tachy_bpm"),
        ("site_id: site-00\n", "registry_file: required"),
        ("registry_file: /nope.csv\n", "registry_file: /nope.csv does not exist"),
        ("simulated: [1\n", "not valid yaml"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=None) as err:
        load_gateway_settings(cfg)
    assert message in str(err.value)


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("simulated: 5\nmqtt:\n  password: s3cret-value\n")
    bad.write_text("simulated: 5\nsummary_period_s: -1\n")
    assert main(["gateway", "--check-config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "s3cret-value" not in out  # secrets never printed
    assert main(["gateway", "--check-config", str(bad)]) == 1
    assert "summary_period_s: Input should be greater than 0" in capsys.readouterr().err
