"""Thin cassandra-driver adapter: cluster/session from CassandraSettings with a bounded wait.

Token-aware DC-aware load balancing on ``local_dc``, the configured consistency level,
protocol v5 when the server speaks it (Cassandra 4+), else v4::

    cluster, session = connect(settings, keyspace=settings.keyspace, timeout_s=60)
    ...
    cluster.shutdown()
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cassandra import ConsistencyLevel, ProtocolVersion
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from emon_core.errors import ConfigError, ServiceError
from emon_core.settings import CassandraSettings, state_dir

log = logging.getLogger(__name__)

PROTOCOLS = (ProtocolVersion.V5, ProtocolVersion.V4)


def consistency_level(name: str) -> int:
    """ConsistencyLevel value for a settings name such as ``LOCAL_QUORUM``."""
    try:
        return int(ConsistencyLevel.name_to_value[name.upper()])
    except KeyError as err:
        raise ConfigError(f"EMON_CASSANDRA_CONSISTENCY: unknown level {name!r}") from err


def create_cluster(
    settings: CassandraSettings, protocol_version: int = ProtocolVersion.V5, **extra: Any
) -> Cluster:
    """An unconnected Cluster with our load balancing, consistency and timeouts."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.local_dc)),
        consistency_level=consistency_level(settings.consistency),
        request_timeout=extra.pop("request_timeout", 20.0),
    )
    return Cluster(
        contact_points=settings.hosts(),
        port=settings.port,
        protocol_version=protocol_version,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=extra.pop("connect_timeout", 5.0),
        **extra,
    )


def _try_connect(settings: CassandraSettings, keyspace: str | None) -> tuple[Cluster, Session]:
    last: Exception | None = None
    for version in PROTOCOLS:
        cluster = create_cluster(settings, protocol_version=version)
        try:
            return cluster, cluster.connect(keyspace)
        except NoHostAvailable as err:
            cluster.shutdown()
            last = err
            # Only a protocol mismatch is worth a retry on the older version.
            if "protocol" not in str(err).lower():
                raise
    assert last is not None
    raise last


def connect(
    settings: CassandraSettings, keyspace: str | None = None, timeout_s: float = 60.0
) -> tuple[Cluster, Session]:
    """Connect (retrying until ``timeout_s``) and return ``(cluster, session)``.

    Raises ServiceError naming the address, the last error and what to do.
    """
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        try:
            cluster, session = _try_connect(settings, keyspace)
            log.debug("cassandra connected (protocol v%s)", cluster.protocol_version)
            return cluster, session
        except NoHostAvailable as err:
            last = err
        except Exception as err:  # driver raises several types for "keyspace does not exist"
            if keyspace and "keyspace" in str(err).lower():
                raise ServiceError(
                    f"Cassandra keyspace {keyspace!r} does not exist (run `emon init`)"
                ) from err
            last = err
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    where = ",".join(settings.hosts()) + f":{settings.port}"
    log_file = state_dir() / "logs" / "cassandra.log"
    raise ServiceError(
        f"Cassandra not reachable at {where} within {timeout_s:.0f} s ({last}); "
        f"start it with `emon services up` and check {log_file}"
    ) from last


def wait_ready(settings: CassandraSettings, timeout_s: float = 60.0) -> None:
    """Wait until a CQL query succeeds."""
    cluster, session = connect(settings, timeout_s=timeout_s)
    try:
        session.execute("SELECT release_version FROM system.local")
    finally:
        cluster.shutdown()
