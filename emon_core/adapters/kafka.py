"""Thin confluent-kafka adapter: producer/consumer factories, latched delivery errors, topics.

The producer is idempotent with ``acks=all``; consumers never auto-commit (commit after
the sink write). :class:`SafeProducer` latches the first delivery error (quix-streams
style): once a message failed, every later ``produce``/``flush`` raises DeliveryError so
the caller stops and its supervisor restarts it instead of silently losing messages.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from emon_core.errors import DeliveryError, ServiceError
from emon_core.settings import KafkaSettings
from emon_core.topics import KAFKA_TOPICS

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


def create_producer(settings: KafkaSettings, **extra: Any) -> Producer:
    """A raw idempotent, acks=all producer (librdkafka options may be overridden)."""
    return Producer(settings.producer_config(**extra))


def create_consumer(settings: KafkaSettings, group_id: str, **extra: Any) -> Consumer:
    """A consumer in ``group_id`` with manual commits, reading from the earliest offset."""
    return Consumer(settings.consumer_config(group_id, **extra))


def create_admin(settings: KafkaSettings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers})


class SafeProducer:
    """Producer wrapper that latches the first delivery error and flushes with a bound."""

    def __init__(self, settings: KafkaSettings, **extra: Any) -> None:
        extra.setdefault("error_cb", self._on_error)
        self._producer = Producer(settings.producer_config(**extra))
        self._lock = threading.Lock()
        self._error: KafkaError | None = None
        self._error_where = ""
        self.delivered = 0

    @property
    def raw(self) -> Producer:
        return self._producer

    @property
    def failed(self) -> bool:
        return self._error is not None

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._latch(err, "producer")
        else:
            log.warning("kafka producer: %s", err)

    def _latch(self, err: KafkaError, where: str) -> None:
        with self._lock:
            if self._error is None:
                self._error, self._error_where = err, where
                log.error("kafka delivery failed (%s): %s", where, err)

    def raise_if_failed(self) -> None:
        """Raise DeliveryError if any message failed so far."""
        if self._error is not None:
            raise DeliveryError(f"kafka delivery failed ({self._error_where}): {self._error}")

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | str | None = None,
        headers: Mapping[str, bytes] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue one message; ``on_delivery(err, msg)`` runs from ``poll``/``flush``.

        Blocks (serving callbacks) while the local queue is full.
        """
        self.raise_if_failed()

        def _done(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._latch(err, f"topic={msg.topic()} partition={msg.partition()}")
            else:
                self.delivered += 1
            if on_delivery is not None:
                on_delivery(err, msg)

        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=dict(headers or {}), on_delivery=_done
                )
                return
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as err:
                raise DeliveryError(f"kafka produce to {topic} failed: {err}") from err

    def poll(self, timeout_s: float = 0.0) -> int:
        """Serve delivery callbacks; returns how many ran."""
        n = self._producer.poll(timeout_s)
        self.raise_if_failed()
        return n

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued message is delivered; DeliveryError on failure or timeout."""
        remaining = self._producer.flush(timeout_s)
        self.raise_if_failed()
        if remaining:
            raise DeliveryError(f"kafka flush: {remaining} message(s) undelivered after {timeout_s:.0f} s")

    def __len__(self) -> int:
        return len(self._producer)


def wait_ready(settings: KafkaSettings, timeout_s: float = 30.0) -> None:
    """Wait until the cluster answers a metadata request with at least one broker."""
    admin = create_admin(settings)
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if md.brokers:
                return
        except KafkaException as err:
            last = err
        time.sleep(0.5)
    raise ServiceError(
        f"Kafka not reachable at {settings.bootstrap_servers} within {timeout_s:.0f} s"
        f"{f' ({last})' if last else ''}; start it with `emon services up`"
    )


def ensure_topics(
    settings: KafkaSettings,
    topics: Mapping[str, int] | None = None,
    timeout_s: float = 30.0,
    config: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the missing topics (name -> partitions); idempotent. Returns the ones created."""
    wanted = dict(KAFKA_TOPICS if topics is None else topics)
    wait_ready(settings, timeout_s)
    admin = create_admin(settings)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [
        NewTopic(name, num_partitions=parts, replication_factor=settings.replication_factor,
                 config=dict(config or {}))
        for name, parts in wanted.items()
        if name not in existing
    ]
    if not missing:
        return []
    created: list[str] = []
    for name, fut in admin.create_topics(missing, request_timeout=timeout_s).items():
        try:
            fut.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as err:
            if err.args and err.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise ServiceError(f"Kafka: cannot create topic {name}: {err}") from err
    log.info("kafka topics created: %s", ", ".join(created) or "none")
    return created
