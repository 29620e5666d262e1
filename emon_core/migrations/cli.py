"""``emon init``: create the Kafka topics and migrate the Cassandra keyspace (idempotent)."""

from __future__ import annotations

import argparse
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keyspace", default=None, help="override EMON_CASSANDRA_KEYSPACE")
    parser.add_argument("--skip-kafka", action="store_true", help="do not create Kafka topics")
    parser.add_argument("--skip-cassandra", action="store_true", help="do not migrate Cassandra")
    parser.add_argument("--timeout", type=float, default=60.0, help="wait for the services (s)")
    parser.add_argument(
        "--reapply-changed", action="store_true",
        help="development: re-run migrations whose file changed after being applied",
    )
    parser.add_argument("--list", action="store_true", help="show migrations and their state, change nothing")


def run(args: argparse.Namespace) -> int:
    from emon_core.settings import CassandraSettings, KafkaSettings, load

    t0 = time.monotonic()
    if args.list:
        return _list(load(CassandraSettings), args)
    if not args.skip_kafka:
        from emon_core.adapters.kafka import ensure_topics
        from emon_core.topics import KAFKA_TOPICS

        kafka = load(KafkaSettings)
        created = ensure_topics(kafka, timeout_s=args.timeout)
        print(f"kafka: {len(KAFKA_TOPICS)} topics ({len(created)} created: {', '.join(created) or 'none'})")
    if not args.skip_cassandra:
        from emon_core.adapters.cassandra import connect
        from emon_core.migrations.runner import migrate

        settings = load(CassandraSettings)
        keyspace = args.keyspace or settings.keyspace
        cluster, session = connect(settings, timeout_s=args.timeout)
        try:
            outcomes = migrate(session, keyspace, settings.replication, reapply_changed=args.reapply_changed)
        finally:
            cluster.shutdown()
        for o in outcomes:
            extra = f" ({o.statements} statements, {o.duration_ms} ms)" if o.action != "unchanged" else ""
            print(f"cassandra: {keyspace} {o.version:03d}_{o.name}: {o.action}{extra}")
    print(f"init done in {time.monotonic() - t0:.1f} s")
    return 0


def _list(settings: object, args: argparse.Namespace) -> int:
    from emon_core.adapters.cassandra import connect
    from emon_core.migrations.runner import applied, discover

    keyspace = args.keyspace or settings.keyspace  # type: ignore[attr-defined]
    cluster, session = connect(settings, timeout_s=args.timeout)  # type: ignore[arg-type]
    try:
        rows = session.execute(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,)
        )
        done = {}
        if rows.one() is not None:
            session.set_keyspace(keyspace)
            try:
                done = applied(session)
            except Exception:  # keyspace without schema_migrations yet
                done = {}
    finally:
        cluster.shutdown()
    for mig in discover():
        prev = done.get(mig.version)
        state = "pending" if prev is None else ("applied" if prev[1] == mig.checksum else "CHANGED")
        print(f"{mig.version:03d}_{mig.name:24s} {state}")
    return 0
