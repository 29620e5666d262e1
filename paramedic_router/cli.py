"""``emon router``: assign the nearest free paramedic unit to alerts that need one."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ack-timeout", type=float, default=None, help="seconds a unit has to acknowledge")
    parser.add_argument("--group", default=None, help="Kafka consumer group (default emon-router)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--apply-schema", action="store_true", help="create the dispatch tables if missing")
    parser.add_argument("--http-port", type=int, default=9403, help="/metrics and /healthz port (default 9403; 0 = any, -1 = off)")
    parser.add_argument("--http-host", default="127.0.0.1", help="bind address for /metrics and /healthz")


def run(args: argparse.Namespace) -> int:
    from emon_core.settings import CassandraSettings, KafkaSettings, load
    from paramedic_router.claims import DispatchStore, apply_schema, connect
    from paramedic_router.service import RouterService, run_forever
    from paramedic_router.settings import RouterSettings

    overrides = {}
    if args.ack_timeout is not None:
        overrides["ack_timeout_s"] = args.ack_timeout
    if args.group:
        overrides["group_id"] = args.group
    settings = load(RouterSettings, **overrides)
    session = connect(load(CassandraSettings))
    if args.apply_schema:
        apply_schema(session)
    service = RouterService(settings, load(KafkaSettings), DispatchStore(session))
    if args.http_port >= 0:
        from paramedic_router.http import loop_health, serve

        serve(args.http_host, args.http_port, service.router, loop_health(service))
    if args.seconds:
        service.run(max_seconds=args.seconds)
    else:
        run_forever(service)
    return 0
