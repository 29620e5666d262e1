"""The router service: Kafka in (alerts, unit positions, assignments), decisions, Kafka out."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import Any

from emon_core.contracts import Alert, Assignment, UnitPosition, decode
from emon_core.errors import ContractError, DeliveryError
from emon_core.topics import KAFKA_ALERTS, KAFKA_ASSIGNMENTS, KAFKA_UNIT_POSITIONS
from paramedic_router.claims import DispatchStore
from paramedic_router.dispatch import Router, wants_unit

__all__ = ["Router", "RouterService", "at_end", "run_forever", "wants_unit"]
from paramedic_router.settings import RouterSettings

log = logging.getLogger(__name__)
STATS_EVERY_S = 30.0


class RouterService:
    """Kafka loop: alerts (consumer group, commit after Cassandra), positions and assignments
    (every instance reads all of them from the end), assignments produced idempotently."""

    def __init__(self, router_settings: RouterSettings, kafka: Any, store: DispatchStore) -> None:
        from confluent_kafka import Consumer, Producer

        self.cfg = router_settings
        self.instance = router_settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.producer = Producer(kafka.producer_config(**{"client.id": f"router-{self.instance}"}))
        self._delivery_error: str | None = None
        self.router = Router(store, self._publish, router_settings)
        self.alerts = Consumer(kafka.consumer_config(
            router_settings.group_id, **{"client.id": f"router-{self.instance}",
                                         "auto.offset.reset": "latest" if router_settings.start_latest else "earliest"}))
        self.side = Consumer(kafka.consumer_config(f"{router_settings.group_id}-side-{self.instance}",
                                                   **{"auto.offset.reset": "latest"}))
        self._stop = False
        self.ready = False
        self.last_loop = time.monotonic()

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._delivery_error = str(err)

    def _publish(self, a: Assignment) -> None:
        self.producer.produce(KAFKA_ASSIGNMENTS, key=a.alert_id.encode(), value=a.encode(), on_delivery=self._on_delivery)
        self.producer.poll(0)

    def stop(self, *_: Any) -> None:
        self._stop = True

    def _assign_side(self) -> None:
        """Every instance reads all positions and assignments from now on (earlier state is in Cassandra)."""
        from confluent_kafka import TopicPartition

        md = self.side.list_topics(timeout=10)
        parts = []
        for topic in (KAFKA_UNIT_POSITIONS, KAFKA_ASSIGNMENTS):
            t = md.topics.get(topic)
            if t is None or t.error is not None:
                raise DeliveryError(f"Kafka topic {topic} missing: run `emon init`")
            parts += [TopicPartition(topic, p) for p in t.partitions]
        self.side.assign(at_end(self.side, parts))

    def _handle_side(self, msg: Any) -> None:
        try:
            if msg.topic() == KAFKA_UNIT_POSITIONS:
                self.router.on_position(decode(msg.value(), UnitPosition))
            else:
                self.router.on_assignment_event(decode(msg.value(), Assignment))
        except ContractError as err:
            log.warning("skipping bad %s message at %s/%d: %s", msg.topic(), msg.partition(), msg.offset(), err)

    def _handle_alert(self, m: Any) -> None:
        try:
            self.router.on_alert(decode(m.value(), Alert))
        except ContractError as err:
            log.warning("skipping bad alert at %s/%d: %s", m.partition(), m.offset(), err)

    def _settle(self) -> None:
        """Writes done and assignments delivered: only then are offsets committed."""
        self.router.flush_writes()
        if self.producer.flush(10) > 0:
            raise DeliveryError("assignments not delivered to Kafka within 10 s")
        if self._delivery_error:
            raise DeliveryError(f"assignment delivery failed: {self._delivery_error}")

    def _commit(self) -> None:
        """Commit consumed alert offsets; a transient failure (coordinator moving or loading
        after a Kafka restart, partitions revoked) is not fatal: the alerts are replayed and
        the router's decisions are idempotent (deterministic assignment ids, LWT claims)."""
        from confluent_kafka import KafkaException

        try:
            self.alerts.commit(asynchronous=False)
        except KafkaException as err:
            log.warning("router: commit failed (will be replayed, idempotently): %s", err)

    def run(self, *, max_seconds: float | None = None) -> None:
        self.router.load()
        self._assign_side()
        assigned: list[Any] = []

        def on_assign(consumer: Any, parts: list[Any]) -> None:
            if self.cfg.start_latest:  # resolve "latest" now, not at the first fetch
                committed = consumer.committed(parts, timeout=10)
                fresh = [tp for tp in committed if tp.offset < 0]
                ends = {(tp.topic, tp.partition): tp.offset for tp in at_end(consumer, fresh)}
                for tp in committed:
                    if (tp.topic, tp.partition) in ends:
                        tp.offset = ends[(tp.topic, tp.partition)]
                consumer.assign(committed)
            assigned.append(parts)

        def on_revoke(consumer: Any, parts: list[Any]) -> None:
            # hand over cleanly: what we processed is written and committed before another router takes it
            try:
                self._settle()
                consumer.commit(asynchronous=False)
            except Exception as err:  # noqa: BLE001 - nothing to commit yet, or Kafka going away
                log.info("commit on revoke: %s", err)

        self.alerts.subscribe([KAFKA_ALERTS], on_assign=on_assign, on_revoke=on_revoke)
        deadline = time.monotonic() + 30
        early = []
        while not assigned and time.monotonic() < deadline and not self._stop:
            msg = self.alerts.poll(0.1)  # join the group before declaring ready
            if msg is not None and msg.error() is None:
                early.append(msg)
        for m in early:
            self._handle_alert(m)
        self.ready = True
        t_end = None if max_seconds is None else time.monotonic() + max_seconds
        last_tick = 0.0
        last_stats = time.monotonic()
        log.info("router %s running (ack timeout %.0f s)", self.instance, self.cfg.ack_timeout_s)
        try:
            while not self._stop and (t_end is None or time.monotonic() < t_end):
                self.last_loop = time.monotonic()
                for msg in self.side.consume(num_messages=self.cfg.batch_max, timeout=0.02):
                    if msg.error() is None:
                        self._handle_side(msg)
                msgs = self.alerts.consume(num_messages=self.cfg.batch_max, timeout=0.05)
                got = [m for m in msgs if m.error() is None]
                for m in msgs:
                    if m.error() is not None:
                        log.warning("kafka: %s", m.error())
                for m in got:
                    self._handle_alert(m)
                if time.monotonic() - last_tick >= self.cfg.tick_s:
                    self.router.tick()
                    last_tick = time.monotonic()
                if time.monotonic() - last_stats >= STATS_EVERY_S:
                    last_stats = time.monotonic()
                    log.info("router: %s", self.router.stats())
                self._settle()
                if got:
                    self._commit()
        finally:
            try:
                self._settle()
            finally:
                self.alerts.close()
                self.side.close()


def at_end(consumer: Any, parts: list[Any]) -> list[Any]:
    """The partitions positioned at their current high watermark (explicit, so nothing produced
    after this call is skipped)."""
    from confluent_kafka import TopicPartition

    out = []
    for tp in parts:
        _low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
        out.append(TopicPartition(tp.topic, tp.partition, high))
    return out


def run_forever(service: RouterService) -> None:
    signal.signal(signal.SIGTERM, service.stop)
    signal.signal(signal.SIGINT, service.stop)
    service.run()
