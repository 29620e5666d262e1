"""``emon hub``: run one hub process (a consumer-group member) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default=None, help="consumer group (EMON_HUB_GROUP_ID, default emon-hub)")
    parser.add_argument("--http-port", type=int, default=None,
                        help="serve /metrics and /healthz on this port (EMON_HUB_HTTP_PORT; 0 = off)")
    parser.add_argument("--batch", type=int, default=None, help="messages per round (EMON_HUB_BATCH_MAX)")
    parser.add_argument("--wait", type=float, default=60.0, help="wait this long for Cassandra at start (s)")


def run(args: argparse.Namespace) -> int:
    import logging
    import signal

    from emon_core.adapters.kafka import wait_ready
    from emon_core.runtime import tune_gc
    from emon_core.settings import CassandraSettings, KafkaSettings, load
    from hub.service import Hub
    from hub.settings import HubSettings

    overrides = {k: v for k, v in (("group_id", args.group), ("http_port", args.http_port),
                                   ("batch_max", args.batch)) if v is not None}
    settings = load(HubSettings, **overrides)
    kafka, cassandra = load(KafkaSettings), load(CassandraSettings)
    wait_ready(kafka, timeout_s=args.wait)
    hub = Hub(settings, kafka, cassandra).start(wait_s=args.wait)
    tune_gc()

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("hub").info("hub: signal %d, finishing the current round", signum)
        hub.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logging.getLogger("hub").info("hub: group %s, keyspace %s, topics %s %s %s", settings.group_id,
                                  cassandra.keyspace, settings.topic_flagged, settings.topic_summaries,
                                  settings.topic_gateway_status)
    hub.run()
    return 0
