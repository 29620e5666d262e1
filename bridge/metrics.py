"""Prometheus metrics of the bridge (own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class BridgeMetrics:
    """All bridge metrics; names start with ``emon_bridge_``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.received = Counter("emon_bridge_received", "MQTT messages received", registry=r)
        self.forwarded = Counter("emon_bridge_forwarded", "messages delivered to Kafka and acked, by kind",
                                 ["kind"], registry=r)
        self.dead = Counter("emon_bridge_deadlettered", "invalid messages sent to the dead-letter topic", registry=r)
        self.inflight = Gauge("emon_bridge_inflight", "received, not yet acknowledged", registry=r)
        self.mqtt = Gauge("emon_bridge_mqtt_connected", "1 while the MQTT session is up", registry=r)
        self.kafka_failed = Gauge("emon_bridge_kafka_failed", "1 after a Kafka delivery failure", registry=r)
        self.latency = Histogram("emon_bridge_receive_to_ack_seconds", "MQTT receive to Kafka delivery report",
                                 buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5), registry=r)
