"""``emon bridge``: forward flagged beats, events, summaries, gateway status and unit positions from MQTT to Kafka."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bridge-id", default=None, help="MQTT client id; keep it stable across restarts (default bridge-1)")
    parser.add_argument("--http-port", type=int, default=None, help="/metrics and /healthz port (default 9401; 0 = any)")
    parser.add_argument("--max-inflight", type=int, default=None, help="un-acked MQTT messages at most (default 1000)")
    parser.add_argument("--no-ensure-topics", action="store_true", help="do not create missing Kafka topics")


def run(args: argparse.Namespace) -> int:
    from emon_core.settings import KafkaSettings, MqttSettings, load
    from bridge.settings import BridgeSettings

    overrides = {"bridge_id": args.bridge_id, "http_port": args.http_port, "max_inflight": args.max_inflight}
    settings = load(BridgeSettings, **{k: v for k, v in overrides.items() if v is not None})
    kafka = load(KafkaSettings)
    mqtt = load(MqttSettings)

    from emon_core.adapters.kafka import ensure_topics
    from bridge.service import BridgeService

    if not args.no_ensure_topics:
        ensure_topics(kafka)
    return BridgeService(settings, mqtt, kafka).run()
