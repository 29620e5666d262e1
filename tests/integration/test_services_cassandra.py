"""Cassandra as `emon services up` runs it: the migrated schema, round-trips, the migration runner."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from emon_core.adapters.cassandra import connect
from emon_core.errors import ServiceError
from emon_core.migrations.runner import MigrationError, applied, discover, migrate
from emon_core.settings import CassandraSettings

pytestmark = pytest.mark.services


def test_schema_is_migrated(cassandra_settings: CassandraSettings, migrated_session: Any) -> None:
    migrated_session.set_keyspace(cassandra_settings.keyspace)
    done = applied(migrated_session)
    for mig in discover():
        assert mig.version in done, f"{mig.path.name} not applied"
        assert done[mig.version][1] == mig.checksum, f"{mig.path.name} changed after it was applied"


def test_kv_round_trip(cassandra_settings: CassandraSettings, migrated_session: Any) -> None:
    ks = cassandra_settings.keyspace
    key = f"it-{uuid.uuid4().hex}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    migrated_session.execute(
        f"INSERT INTO {ks}.kv (key, value, updated_at) VALUES (%s, %s, %s)", (key, "v1", now)
    )
    prepared = migrated_session.prepare(f"SELECT value, updated_at FROM {ks}.kv WHERE key = ?")
    row = migrated_session.execute(prepared, (key,)).one()
    assert row.value == "v1"
    assert row.updated_at.replace(tzinfo=timezone.utc) == now
    migrated_session.execute(f"DELETE FROM {ks}.kv WHERE key = %s", (key,))
    assert migrated_session.execute(prepared, (key,)).one() is None


def test_protocol_and_consistency(cassandra_settings: CassandraSettings) -> None:
    cluster, session = connect(cassandra_settings, timeout_s=30)
    try:
        assert cluster.protocol_version >= 4
        version = session.execute("SELECT release_version FROM system.local").one().release_version
        assert version.startswith("5.0")
    finally:
        cluster.shutdown()


def test_runner_is_idempotent_and_refuses_changed_files(
    cassandra_session: Any, scratch_keyspace: str, tmp_path: Path
) -> None:
    (tmp_path / "001_a.cql").write_text(
        "-- a comment; with a semicolon\nCREATE TABLE IF NOT EXISTS a (k text PRIMARY KEY, v text);\n"
        "INSERT INTO a (k, v) VALUES ('x', 'it''s; fine');\n"
    )
    (tmp_path / "002_b.cql").write_text("CREATE TABLE IF NOT EXISTS b (k int PRIMARY KEY);")
    repl = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    first = migrate(cassandra_session, scratch_keyspace, repl, directory=tmp_path)
    assert [(o.version, o.action) for o in first] == [(1, "applied"), (2, "applied")]
    assert cassandra_session.execute(f"SELECT v FROM {scratch_keyspace}.a WHERE k = 'x'").one().v == "it's; fine"

    again = migrate(cassandra_session, scratch_keyspace, repl, directory=tmp_path)
    assert [o.action for o in again] == ["unchanged", "unchanged"]

    (tmp_path / "002_b.cql").write_text("CREATE TABLE IF NOT EXISTS b (k int PRIMARY KEY, v int);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(cassandra_session, scratch_keyspace, repl, directory=tmp_path)
    (tmp_path / "002_b.cql").write_text(
        "CREATE TABLE IF NOT EXISTS b (k int PRIMARY KEY);\nALTER TABLE b ADD IF NOT EXISTS v int;"
    )
    redo = migrate(cassandra_session, scratch_keyspace, repl, directory=tmp_path, reapply_changed=True)
    assert [o.action for o in redo] == ["unchanged", "reapplied"]

    (tmp_path / "003_bad.cql").write_text("CREATE TABLE nope (;")
    with pytest.raises(MigrationError, match="003_bad.cql: statement 1/1 failed"):
        migrate(cassandra_session, scratch_keyspace, repl, directory=tmp_path)


def test_unreachable_cassandra_gives_clear_error() -> None:
    settings = CassandraSettings(port=1)
    with pytest.raises(ServiceError, match="emon services up"):
        connect(settings, timeout_s=0.5)
