"""docker-compose.yml stays consistent with the ports, topics, ACL and versions the code uses."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from emon_core import topics
from emon_core.devservices import cassandra as dev_cassandra
from emon_core.devservices import kafka as dev_kafka
from emon_core.devservices.mosquitto import ACL
from emon_core.settings import CassandraSettings, KafkaSettings, MqttSettings

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("gateway", "bridge", "hub", "router", "map")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _host_ports(service: dict[str, Any]) -> set[int]:
    """Published host ports of a service ('127.0.0.1:1883:1883' -> 1883)."""
    return {int(str(p).split(":")[-2]) for p in service.get("ports", [])}


def _default(cls: type, field: str) -> Any:
    """The coded default of a settings field (not the environment of this test run)."""
    return cls.model_fields[field].default


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def test_all_services_present(compose: dict[str, Any]) -> None:
    assert {"mosquitto", "kafka", "cassandra", "init", *COMPONENTS} <= set(compose["services"])


def test_images_match_the_pinned_dev_versions(compose: dict[str, Any]) -> None:
    s = compose["services"]
    assert s["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert s["kafka"]["image"] == f"apache/kafka:{dev_kafka.VERSION}"
    major_minor = ".".join(dev_cassandra.VERSION.split(".")[:2])
    assert s["cassandra"]["image"] == f"cassandra:{major_minor}"
    for name in ("init", *COMPONENTS):
        assert s[name]["image"] == "emon:latest" and s[name]["build"] == "."


def test_ports_match_settings_defaults(compose: dict[str, Any]) -> None:
    s = compose["services"]
    mqtt_port = _default(MqttSettings, "port")
    assert _host_ports(s["mosquitto"]) == {mqtt_port}
    kafka_port = int(_default(KafkaSettings, "bootstrap_servers").split(",")[0].rsplit(":", 1)[1])
    assert _host_ports(s["kafka"]) == {kafka_port} == {dev_kafka.PORT}
    assert _host_ports(s["cassandra"]) == {_default(CassandraSettings, "port")} == {dev_cassandra.PORT}
    assert _host_ports(s["map"]) == {8000}
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(rf"^listener {mqtt_port}\b", conf, re.M)


def test_kafka_listeners_match_clients(compose: dict[str, Any]) -> None:
    kafka_env = _env(compose["services"]["kafka"])
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert f"EXTERNAL://{_default(KafkaSettings, 'bootstrap_servers')}" in advertised
    internal = compose["x-emon-env"]["EMON_KAFKA_BOOTSTRAP_SERVERS"]
    assert f"INTERNAL://{internal}" in advertised
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # topics then come only from `emon init`, i.e. from emon_core.topics.KAFKA_TOPICS
    assert compose["services"]["init"]["command"][0] == "init"
    assert topics.KAFKA_TOPICS


def test_cassandra_datacenter_matches_settings(compose: dict[str, Any]) -> None:
    dc = _env(compose["services"]["cassandra"])["CASSANDRA_DC"]
    assert dc == _default(CassandraSettings, "local_dc") == compose["x-emon-env"]["EMON_CASSANDRA_LOCAL_DC"]


def test_component_env_keys_are_real_settings(compose: dict[str, Any]) -> None:
    prefixes = {"EMON_MQTT_": MqttSettings, "EMON_KAFKA_": KafkaSettings, "EMON_CASSANDRA_": CassandraSettings}
    for key in compose["x-emon-env"]:
        for prefix, cls in prefixes.items():
            if key.startswith(prefix):
                assert key[len(prefix):].lower() in cls.model_fields, key


def test_deploy_acl_is_the_dev_acl() -> None:
    assert (ROOT / "deploy" / "mosquitto" / "acl").read_text() == ACL


def _rules(user: str | None) -> dict[str, list[str]]:
    """{'read': [...], 'write': [...]} for ``user`` (None: pattern rules)."""
    rules: dict[str, list[str]] = {"read": [], "write": [], "readwrite": []}
    current = None
    for line in ACL.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == "user":
            current = parts[1]
        elif parts[0] == "topic" and current == user:
            rules[parts[1]].append(parts[2])
        elif parts[0] == "pattern" and user is None:
            rules[parts[1]].append(parts[2])
    return rules


def _covers(rule: str, topic_filter: str) -> bool:
    r, f = rule.split("/"), topic_filter.split("/")
    for i, level in enumerate(r):
        if level == "#":
            return True
        if i >= len(f) or (level != "+" and level != f[i]) or (level != "+" and f[i] in ("+", "#")):
            return False
    return len(r) == len(f)


def _as_filter(template: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "+", template)


def test_acl_covers_the_topics_the_code_uses() -> None:
    bridge, gateway = _rules("bridge"), _rules("gateway")
    for sub in topics.BRIDGE_SUBSCRIPTIONS:
        assert any(_covers(r, sub) for r in bridge["read"]), f"bridge cannot read {sub}"
    assert any(_covers(r, _as_filter(topics.MQTT_FRAMES_SUB)) for r in gateway["read"])
    for t in (topics.MQTT_EDGE_EVENTS, topics.MQTT_EDGE_SUMMARY, topics.MQTT_GATEWAY_STATUS):
        assert any(_covers(r, _as_filter(t)) for r in gateway["write"]), t
    patterns = _rules(None)["write"]
    assert topics.MQTT_FRAMES.replace("{device_id}", "%u").replace("{site_id}", "+") in patterns
    assert topics.MQTT_UNIT_POSITION.replace("{unit_id}", "%u") in patterns


def test_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("mosquitto", "kafka", "cassandra", *COMPONENTS):
        assert "test" in compose["services"][name].get("healthcheck", {}), f"{name} has no healthcheck"


def test_dockerfile_copies_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for pkg in packages:
        assert re.search(rf"^COPY {pkg} ", dockerfile, re.M), f"Dockerfile does not copy {pkg}/"
