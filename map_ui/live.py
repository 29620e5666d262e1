"""Live state and fan-out: one Kafka reader thread feeds caches and every SSE client's queue."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any, Callable

from emon_core.contracts import Alert, Assignment, UnitPosition, decode
from emon_core.errors import ContractError
from emon_core.topics import KAFKA_ALERTS, KAFKA_ASSIGNMENTS, KAFKA_UNIT_POSITIONS

log = logging.getLogger(__name__)

POSITION_FLUSH_S = 0.5
_ACTIVE_ASG = {"assigned", "acknowledged", "en_route", "on_scene"}


class LiveState:
    """Latest alert per id, latest assignment per alert, latest position per unit."""

    def __init__(self, max_alerts: int = 20_000) -> None:
        self.lock = threading.Lock()
        self.alerts: dict[str, Alert] = {}
        self.assignments: dict[str, Assignment] = {}
        self.positions: dict[str, UnitPosition] = {}
        self.max_alerts = max_alerts

    def apply_alert(self, a: Alert) -> bool:
        with self.lock:
            old = self.alerts.get(a.alert_id)
            if old is not None and old.version > a.version:
                return False
            self.alerts[a.alert_id] = a
            if len(self.alerts) > self.max_alerts:
                oldest = min(self.alerts.values(), key=lambda x: x.updated_at_ms)
                self.alerts.pop(oldest.alert_id, None)
            return True

    def apply_assignment(self, a: Assignment) -> bool:
        with self.lock:
            old = self.assignments.get(a.alert_id)
            if old is not None and (old.attempt, old.updated_at_ms) > (a.attempt, a.updated_at_ms):
                return False
            self.assignments[a.alert_id] = a
            return True

    def apply_position(self, p: UnitPosition) -> bool:
        with self.lock:
            old = self.positions.get(p.unit_id)
            if old is not None and old.time_ms > p.time_ms:
                return False
            self.positions[p.unit_id] = p
            return True

    def alert(self, alert_id: str) -> Alert | None:
        with self.lock:
            return self.alerts.get(alert_id)

    def assignment(self, alert_id: str) -> Assignment | None:
        with self.lock:
            return self.assignments.get(alert_id)

    def snapshot(self) -> tuple[list[Alert], dict[str, Assignment], dict[str, UnitPosition]]:
        with self.lock:
            return list(self.alerts.values()), dict(self.assignments), dict(self.positions)


class Broadcaster:
    """Thread-safe publish to every connected SSE client (bounded queues; slow clients drop)."""

    def __init__(self) -> None:
        self._subs: set[asyncio.Queue[str]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self) -> asyncio.Queue[str]:
        q: asyncio.Queue[str] = asyncio.Queue(maxsize=2000)
        with self._lock:
            self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        with self._lock:
            self._subs.discard(q)

    @property
    def clients(self) -> int:
        return len(self._subs)

    def publish(self, kind: str, data: Any) -> None:
        frame = f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            loop.call_soon_threadsafe(_put, q, frame)


def _put(q: asyncio.Queue[str], frame: str) -> None:
    try:
        q.put_nowait(frame)
    except asyncio.QueueFull:  # a stalled client loses frames rather than stalling everyone
        pass


class KafkaFeed(threading.Thread):
    """Reads alerts and assignments from ``lookback`` ago, positions from now, until stopped."""

    def __init__(self, kafka: Any, state: LiveState, on_event: Callable[[str, Any], None],
                 lookback_h: float = 24.0) -> None:
        super().__init__(name="map-kafka-feed", daemon=True)
        self.kafka = kafka
        self.state = state
        self.on_event = on_event
        self.lookback_ms = int(lookback_h * 3600 * 1000)
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.available = False
        self.error: str | None = None

    def _assign(self, consumer: Any) -> None:
        from confluent_kafka import OFFSET_END, TopicPartition

        md = consumer.list_topics(timeout=10)
        since = int(time.time() * 1000) - self.lookback_ms
        timed, live = [], []
        for topic in (KAFKA_ALERTS, KAFKA_ASSIGNMENTS, KAFKA_UNIT_POSITIONS):
            t = md.topics.get(topic)
            if t is None or t.error is not None:
                log.warning("Kafka topic %s missing (run `emon init`)", topic)
                continue
            for p in t.partitions:
                if topic == KAFKA_UNIT_POSITIONS:
                    live.append(TopicPartition(topic, p, OFFSET_END))
                else:
                    timed.append(TopicPartition(topic, p, since))
        offsets = consumer.offsets_for_times(timed, timeout=10) if timed else []
        start = [tp if tp.offset >= 0 else TopicPartition(tp.topic, tp.partition, OFFSET_END) for tp in offsets]
        # logical "end" is resolved now, explicitly, so nothing produced after start-up is skipped
        resolved = []
        for tp in start + live:
            if tp.offset == OFFSET_END:
                _low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
                tp = TopicPartition(tp.topic, tp.partition, high)
            resolved.append(tp)
        consumer.assign(resolved)

    def run(self) -> None:
        from confluent_kafka import Consumer

        pending_pos: dict[str, UnitPosition] = {}
        last_flush = time.monotonic()
        while not self.stopping.is_set():
            try:
                consumer = Consumer(self.kafka.consumer_config(f"emon-map-{id(self)}-{int(time.time())}"))
                self._assign(consumer)
                break
            except Exception as err:  # noqa: BLE001 - Kafka down: retry, show unavailable
                self.error = str(err)
                log.warning("map live feed: Kafka not reachable: %s", err)
                self.stopping.wait(2.0)
        else:
            return
        self.available = True
        idle_polls = 0
        try:
            while not self.stopping.is_set():
                msgs = consumer.consume(num_messages=1000, timeout=0.1)
                if not msgs:
                    idle_polls += 1
                    if idle_polls >= 2:
                        self.ready.set()  # caught up with the lookback window
                for m in msgs:
                    if m.error() is not None:
                        continue
                    topic = m.topic()
                    try:
                        if topic == KAFKA_ALERTS:
                            a = decode(m.value(), Alert)
                            if self.state.apply_alert(a) and self.ready.is_set():
                                self.on_event("alert", a)
                        elif topic == KAFKA_ASSIGNMENTS:
                            s = decode(m.value(), Assignment)
                            if self.state.apply_assignment(s) and self.ready.is_set():
                                self.on_event("assignment", s)
                        else:
                            p = decode(m.value(), UnitPosition)
                            if self.state.apply_position(p):
                                pending_pos[p.unit_id] = p
                    except ContractError as err:
                        log.warning("map: bad %s message at %d/%d: %s", topic, m.partition(), m.offset(), err)
                if pending_pos and time.monotonic() - last_flush >= POSITION_FLUSH_S:
                    self.on_event("positions", list(pending_pos.values()))
                    pending_pos = {}
                    last_flush = time.monotonic()
        finally:
            consumer.close()

    def stop(self) -> None:
        self.stopping.set()


class Publisher:
    """Dispatcher requests to the router go out as assignment updates (keyed by alert)."""

    def __init__(self, kafka: Any) -> None:
        from confluent_kafka import Producer

        self._p = Producer(kafka.producer_config(**{"client.id": "emon-map"}))

    def assignment(self, a: Assignment) -> None:
        self._p.produce(KAFKA_ASSIGNMENTS, key=a.alert_id.encode(), value=a.encode())
        if self._p.flush(5) > 0:
            from emon_core.errors import DeliveryError

            raise DeliveryError("dispatcher request not delivered to Kafka within 5 s")

    def close(self) -> None:
        self._p.flush(5)
