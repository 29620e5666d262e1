"""Kafka as `emon services up` runs it: idempotent produce, consumer groups with committed offsets."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from emon_core.adapters.kafka import SafeProducer, create_admin, create_consumer, ensure_topics
from emon_core.errors import DeliveryError
from emon_core.settings import KafkaSettings
from emon_core.topics import KAFKA_TOPICS

pytestmark = pytest.mark.services


def _consume(consumer: Any, topic: str, want: int, timeout_s: float = 30) -> list[Any]:
    """Poll until ``want`` messages arrived (or the timeout); commit them synchronously."""
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg)
    if got:
        consumer.commit(asynchronous=False)
    return got


def _committed(settings: KafkaSettings, group: str, topic: str) -> dict[int, int]:
    c = create_consumer(settings, group)
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        tps = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def test_idempotent_produce_and_group_consume(kafka_settings: KafkaSettings, kafka_topic: str, unique) -> None:
    producer = SafeProducer(kafka_settings)
    assert kafka_settings.producer_config()["enable.idempotence"] is True
    assert kafka_settings.producer_config()["acks"] == "all"
    for i in range(100):
        producer.produce(kafka_topic, value=f"m{i}".encode(), key=f"pat-{i % 7:05d}")
    producer.flush(30)
    assert producer.delivered == 100

    group = unique("grp")
    c1 = create_consumer(kafka_settings, group)
    got = _consume(c1, kafka_topic, 100)
    c1.close()
    assert sorted(m.value() for m in got) == sorted(f"m{i}".encode() for i in range(100))
    # one key -> one partition, in order
    by_key: dict[bytes, list[int]] = {}
    for m in got:
        by_key.setdefault(m.key(), []).append(int(m.value()[1:]))
    assert all(v == sorted(v) for v in by_key.values())

    committed = _committed(kafka_settings, group, kafka_topic)
    assert sum(committed.values()) == 100, committed

    # The group resumes after its committed offsets: only the new messages arrive.
    for i in range(100, 110):
        producer.produce(kafka_topic, value=f"m{i}".encode(), key=f"pat-{i % 7:05d}")
    producer.flush(30)
    c2 = create_consumer(kafka_settings, group)
    again = _consume(c2, kafka_topic, 10)
    extra = c2.poll(2.0)
    c2.close()
    assert sorted(m.value() for m in again) == sorted(f"m{i}".encode() for i in range(100, 110))
    assert extra is None


def test_uncommitted_messages_are_redelivered(kafka_settings: KafkaSettings, kafka_topic: str, unique) -> None:
    producer = SafeProducer(kafka_settings)
    for i in range(5):
        producer.produce(kafka_topic, value=b"x%d" % i, key=b"k")
    producer.flush(30)
    group = unique("grp")
    c1 = create_consumer(kafka_settings, group)
    c1.subscribe([kafka_topic])
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 5 and time.monotonic() < deadline:
        msg = c1.poll(0.5)
        seen += msg is not None and msg.error() is None
    c1.close()  # no commit: a crash before the sink write
    assert seen == 5
    c2 = create_consumer(kafka_settings, group)
    assert len(_consume(c2, kafka_topic, 5)) == 5
    c2.close()


def test_delivery_error_is_latched(kafka_settings: KafkaSettings, kafka_topic: str) -> None:
    # The broker refuses records over its 1 MiB limit; the producer is allowed to send them.
    producer = SafeProducer(kafka_settings, **{"message.max.bytes": 4_000_000, "compression.type": "none"})
    producer.produce(kafka_topic, value=b"\0" * 2_000_000, key=b"big")
    with pytest.raises(DeliveryError, match="kafka delivery failed"):
        producer.flush(30)
    assert producer.failed
    with pytest.raises(DeliveryError):
        producer.produce(kafka_topic, value=b"small", key=b"k")


def test_ensure_topics_is_idempotent(kafka_settings: KafkaSettings, unique) -> None:
    name = unique("topic").replace("_", "-")
    try:
        assert ensure_topics(kafka_settings, {name: 2}) == [name]
        assert ensure_topics(kafka_settings, {name: 2}) == []
        md = create_admin(kafka_settings).list_topics(name, timeout=10)
        assert len(md.topics[name].partitions) == 2
    finally:
        create_admin(kafka_settings).delete_topics([name])


def test_project_topics_exist(kafka_settings: KafkaSettings) -> None:
    """`emon init` created every topic of emon_core.topics with its partition count."""
    md = create_admin(kafka_settings).list_topics(timeout=10)
    missing = [t for t in KAFKA_TOPICS if t not in md.topics]
    assert not missing, f"topics missing (run `emon init`): {missing}"
    for topic, parts in KAFKA_TOPICS.items():
        assert len(md.topics[topic].partitions) == parts, topic
