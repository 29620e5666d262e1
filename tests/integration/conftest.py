"""Fixtures for integration tests on the real services started by ``emon services up``.

When a service is not reachable the test is skipped with the reason, except under CI
(env ``CI`` set), where it fails: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any, Callable, Iterator

import pytest

from emon_core.settings import CassandraSettings, KafkaSettings, MqttSettings, credentials_file


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or fail under CI) when ``name`` does not listen on ``host:port``."""
    if _reachable(host, port):
        return
    reason = f"{name} not reachable at {host}:{port} (start it with `emon services up`)"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mqtt_settings() -> MqttSettings:
    """Broker settings without a user; use ``.with_user(...)`` per client."""
    settings = MqttSettings()
    require_service("Mosquitto", settings.host, settings.port)
    if not credentials_file().exists():
        pytest.fail(f"{credentials_file()} missing although Mosquitto runs: run `emon services up`")
    return settings


@pytest.fixture(scope="session")
def kafka_settings() -> KafkaSettings:
    settings = KafkaSettings()
    host, _, port = settings.bootstrap_servers.split(",")[0].rpartition(":")
    require_service("Kafka", host, int(port))
    return settings


@pytest.fixture(scope="session")
def cassandra_settings() -> CassandraSettings:
    settings = CassandraSettings()
    require_service("Cassandra", settings.hosts()[0], settings.port)
    return settings


@pytest.fixture(scope="session")
def cassandra_session(cassandra_settings: CassandraSettings) -> Iterator[Any]:
    """A session without a default keyspace (qualify table names)."""
    from emon_core.adapters.cassandra import connect

    cluster, session = connect(cassandra_settings, timeout_s=60)
    yield session
    cluster.shutdown()


@pytest.fixture(scope="session")
def migrated_session(cassandra_settings: CassandraSettings, cassandra_session: Any) -> Any:
    """A session on the project keyspace, migrated to the latest version (as `emon init` does)."""
    from emon_core.migrations.runner import migrate

    migrate(cassandra_session, cassandra_settings.keyspace, cassandra_settings.replication)
    return cassandra_session


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique("t")`` -> ``t_<test name>_<8 hex>``: names that never collide between runs."""
    base = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:24]

    def make(prefix: str = "t") -> str:
        return f"{prefix}_{base}_{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def scratch_keyspace(cassandra_session: Any, unique: Callable[[str], str]) -> Iterator[str]:
    """A throw-away keyspace name (dropped after the test)."""
    name = unique("ks")[:48]
    yield name
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=120)


@pytest.fixture
def kafka_topic(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> Iterator[str]:
    """A fresh 3-partition topic, deleted after the test."""
    from emon_core.adapters.kafka import create_admin, ensure_topics

    name = unique("test").replace("_", "-")
    ensure_topics(kafka_settings, {name: 3}, timeout_s=30)
    yield name
    for fut in create_admin(kafka_settings).delete_topics([name], operation_timeout=30).values():
        try:
            fut.result(timeout=30)
        except Exception:  # best effort cleanup
            pass


@pytest.fixture
def mqtt_clients() -> Iterator[list[Any]]:
    """Append paho clients here; they are disconnected and stopped after the test."""
    clients: list[Any] = []
    yield clients
    for c in clients:
        try:
            c.disconnect()
            c.loop_stop()
        except Exception:
            pass
