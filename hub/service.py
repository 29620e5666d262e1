"""The hub's consume loop: Kafka -> decode -> enrich -> episodes/policy -> Cassandra -> alerts -> commit.

One round (:meth:`Hub.step`) handles up to ``batch_max`` messages in four phases:

1. **read** (retried): load the last episode of each new patient (rebuilding state after a
   restart or a rebalance), enrichment (cached), gateway -> patient lookups;
2. **decide** (pure, once): episodes and the alert policy, building the writes;
3. **write** (retried until it succeeds): first the alert rows and first-seen kinds, then,
   after the publish, the episode state, published marks and raw rows (flagged beats with
   strips, events, vitals); idempotent upserts, so a retried round or a replay rewrites the
   same rows;
4. **publish and commit**: alert versions to Kafka (idempotent producer, flushed) as soon as
   their rows are written, then the round's state and raw rows, then its offsets. Nothing is
   committed before all its writes succeeded; a crash before the commit replays the round
   (the same alert versions again, same ids). Writing the strips of a busy round first had
   held alerts back by the whole round's write time.

The episode row is written only after its alert was published: a round's writes run
concurrently, and a kill -9 that landed after an episode row (saying "alert raised") but
before its alert row made the replay skip an alert that was never published (CI lost 20 of
400 in the hub kill test). Episode state from before the round is what a replay rebuilds
from, so it raises the same alert versions again.

While Cassandra fails, consumption is paused (the consumer keeps polling so it stays in the
group), the round is retried with exponential backoff, metrics and ``/healthz`` say so.
An alert version is marked published in its episode row after the flush; an episode found
with ``published_version < version`` on load is re-published (outbox), so a crash between
the write and the publish loses nothing. Malformed input goes to the dead-letter topic.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from emon_core.adapters.cassandra import connect as cassandra_connect
from emon_core.adapters.kafka import SafeProducer
from emon_core.contracts import (
    Alert, ContractError, DeadLetter, FlaggedBeat, GatewayStatus, PatientSummary, RhythmEvent, decode,
    decode_edge,
)
from emon_core.settings import CassandraSettings, KafkaSettings
from hub.enrichment import Enriched, EnrichmentUnavailable, PatientCache
from hub.episodes import Episode, EpisodeTracker, build_alert, gateway_offline_alert
from hub.metrics import HubMetrics, serve
from hub.settings import HubSettings
from hub.store import HubStore, Write, WriteFailed

log = logging.getLogger(__name__)


class Stopping(Exception):
    """Raised inside a retry loop when the hub was asked to stop (the round is not committed)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def _sim_patient(device_id: str) -> str | None:
    """Simulated fleets: ``dev-00042`` is worn by ``pat-00042``."""
    if device_id.startswith("dev-") and device_id[4:].isdigit():
        return "pat-" + device_id[4:]
    return None


@dataclass
class Round:
    """Everything one round read, decided and must write/publish."""

    msgs: list[Message]
    items: list[tuple[Message, Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    dead_keys: list[bytes | None] = field(default_factory=list)
    enriched: dict[str, Enriched] = field(default_factory=dict)
    offline: list[tuple[GatewayStatus, dict[str, Any]]] = field(default_factory=list)
    republish: list[Alert] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)  # raw rows: beats, events, vitals
    alert_writes: list[Write] = field(default_factory=list)  # alert rows, first-seen kinds: before the publish
    state_writes: list[Write] = field(default_factory=list)  # episode rows: only after the publish
    alerts: list[tuple[Alert, Episode | None]] = field(default_factory=list)
    received_ms: int = 0


class Hub:
    """A hub process; several share the partitions through the consumer group."""

    def __init__(self, settings: HubSettings, kafka: KafkaSettings, cassandra: CassandraSettings,
                 metrics: HubMetrics | None = None) -> None:
        self.cfg = settings
        self.kafka = kafka
        self.cassandra = cassandra
        self.metrics = metrics or HubMetrics()
        # labelled children looked up once: labels() costs ~15 us a call, one call per message
        self._counter = functools.cache(self.metrics.messages.labels)
        self.stop_event = threading.Event()
        self.tracker = EpisodeTracker(int(settings.episode_quiet_s * 1000), int(settings.episode_max_s * 1000))
        self.paused = False
        self.cassandra_ok = True
        self.kafka_ok = True
        self.assigned: list[TopicPartition] = []
        self.write_latencies: list[float] = []
        self.rounds = 0
        self.events = 0
        self._pending_published: list[Write] = []
        self._stash: list[Message] = []
        self._http: Any = None
        self._cluster: Any = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, wait_s: float = 60.0) -> "Hub":
        self._cluster, session = cassandra_connect(self.cassandra, keyspace=self.cassandra.keyspace,
                                                   timeout_s=wait_s)
        self.store = HubStore(session, store_strips=self.cfg.store_strips)
        self.cache = PatientCache(self.store, self.cfg.cache_ttl_s, self.cfg.cache_max)
        self.producer = SafeProducer(self.kafka, **{"client.id": "emon-hub"})
        self.consumer = Consumer(self.kafka.consumer_config(self.cfg.group_id, **{
            "client.id": "emon-hub", "max.poll.interval.ms": 600_000, "fetch.wait.max.ms": 50,
        }))
        self.consumer.subscribe([self.cfg.topic_flagged, self.cfg.topic_summaries, self.cfg.topic_gateway_status],
                                on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        if self.cfg.http_port:
            self._http = serve(self.cfg.http_port, self.metrics, self.health, self.cfg.http_host)
        return self

    def run(self) -> None:
        """Rounds until :attr:`stop_event` is set (SIGTERM/SIGINT in the CLI)."""
        try:
            while not self.stop_event.is_set():
                try:
                    self.step()
                except Stopping:
                    break
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.producer.flush(10.0)
        except Exception as err:  # noqa: BLE001 - closing: report, go on
            log.warning("hub: flush on close: %s", err)
        try:
            self.consumer.close()
        except Exception as err:  # noqa: BLE001
            log.warning("hub: consumer close: %s", err)
        if self._http is not None:
            self._http.shutdown()
        if self._cluster is not None:
            self._cluster.shutdown()

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.cassandra_ok and self.kafka_ok and not self.producer.failed,
            "cassandra": self.cassandra_ok, "kafka": self.kafka_ok, "paused": self.paused,
            "patient_records_available": self.cache.available, "assigned_partitions": len(self.assigned),
            "open_episodes": sum(1 for p in self.tracker.patients() if (e := self.tracker.current(p)) and not e.closed),
            "cache_hit_rate": round(self.cache.hit_rate, 4), "rounds": self.rounds, "events": self.events,
        }

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)
        log.info("hub: assigned %d partition(s)", len(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Episode state of patients on revoked partitions may move to another hub: forget all
        # of it and rebuild from Cassandra on the next message of each patient.
        self.tracker.clear()
        gone = {(p.topic, p.partition) for p in partitions}
        self.assigned = [p for p in self.assigned if (p.topic, p.partition) not in gone]
        log.info("hub: revoked %d partition(s); episode state will be reloaded", len(partitions))

    # --- one round -------------------------------------------------------------------------
    def step(self) -> int:
        """One poll -> commit round; returns how many messages it handled."""
        msgs = self._stash
        self._stash = []
        room = self.cfg.batch_max - len(msgs)
        if room > 0 and not msgs:
            # consume(n, timeout) waits for n messages or the whole timeout; wait for the first
            # one only, then up to 20 ms for a fuller round (up to ~poll_timeout_s less latency
            # when traffic is light, about the same rounds under a backlog)
            first = self.consumer.poll(self.cfg.poll_timeout_s)
            if first is not None:
                msgs.append(first)
                room -= 1
                if room > 0:
                    msgs += self.consumer.consume(room, min(0.02, self.cfg.poll_timeout_s))
        elif room > 0:
            msgs += self.consumer.consume(room, 0.0)
        msgs = [m for m in msgs if self._ok_message(m)]
        if not msgs:
            self._idle()
            return 0
        t0 = time.perf_counter()
        rnd = Round(msgs, received_ms=now_ms())
        self._decode(rnd)
        self._retry(lambda: self._read(rnd), "read")
        self._decide(rnd)
        if rnd.alert_writes:
            self._retry(lambda: self._write(rnd.alert_writes), "write")
        self._publish(rnd)
        then = rnd.state_writes + self._pending_published + rnd.writes
        if then:
            self._retry(lambda: self._write(then), "write")
        self._pending_published = []
        self._commit(rnd.msgs)
        self.rounds += 1
        self.events += len(rnd.msgs)
        self.metrics.round_seconds.observe(time.perf_counter() - t0)
        self.metrics.cache_hits.set(self.cache.hits)
        self.metrics.cache_misses.set(self.cache.misses)
        self.metrics.cache_available.set(1 if self.cache.available else 0)
        return len(rnd.msgs)

    def _ok_message(self, m: Message) -> bool:
        err = m.error()
        if err is None:
            return True
        log.warning("hub: kafka %s [%s]: %s", m.topic(), m.partition(), err)
        return False

    def _idle(self) -> None:
        """Nothing consumed: close quiet episodes and mark published versions."""
        closed = self.tracker.sweep(now_ms())
        writes: list[Write] = [w for ep in closed for w in self.store.episode_closed(ep)] + self._pending_published
        if writes:
            self._retry(lambda: self._write(writes), "write")
            self._pending_published = []
        self.metrics.open_episodes.set(sum(1 for p in self.tracker.patients()
                                           if (e := self.tracker.current(p)) and not e.closed))

    # phase 0: decode (pure) ------------------------------------------------------------------
    def _decode(self, rnd: Round) -> None:
        cfg = self.cfg
        for m in rnd.msgs:
            topic, value = m.topic(), m.value() or b""
            try:
                if topic == cfg.topic_flagged:
                    obj = decode_edge(value)
                    if not isinstance(obj, (FlaggedBeat, RhythmEvent)):
                        raise ContractError(f"unexpected message type {type(obj).__name__} on {topic}",
                                            reason="wrong_type")
                elif topic == cfg.topic_summaries:
                    obj = decode(value, PatientSummary)
                elif topic == cfg.topic_gateway_status:
                    obj = decode(value, GatewayStatus)
                else:
                    raise ContractError(f"unexpected topic {topic}", reason="wrong_topic")
            except ContractError as err:
                log.warning("hub: malformed message %s[%s]@%s: %s", topic, m.partition(), m.offset(), err)
                self.metrics.deadletters.labels(err.reason).inc()
                self._counter(topic, "deadletter").inc()
                rnd.dead.append(DeadLetter(source=f"{topic}[{m.partition()}]@{m.offset()}"[:300],
                                           reason=f"{err.reason}: {err}"[:500], received_at_ms=rnd.received_ms,
                                           payload_excerpt=value[:2000].decode("utf-8", "replace")[:2000],
                                           payload_bytes=len(value)))
                rnd.dead_keys.append(m.key())
                continue
            rnd.items.append((m, obj))

    # phase 1: reads (retried) -------------------------------------------------------------------
    def _read(self, rnd: Round) -> None:
        pids: dict[str, None] = {}
        for _m, obj in rnd.items:
            if isinstance(obj, (FlaggedBeat, RhythmEvent)):
                pids[obj.patient_id] = None
        rnd.offline = []
        for _m, obj in rnd.items:
            if isinstance(obj, GatewayStatus) and not obj.online:
                rnd.offline.append((obj, self._offline_targets(obj)))
                for t in rnd.offline[-1][1]["patients"]:
                    pids[t] = None
        self._load_episodes([p for p in pids if not self.tracker.loaded(p)], rnd)
        rnd.enriched = self.cache.get_many(pids)

    def _offline_targets(self, st: GatewayStatus) -> dict[str, Any]:
        if st.device_ids:
            found = self.store.patients_for_devices(st.device_ids)
            patients = sorted({found.get(d) or _sim_patient(d) for d in st.device_ids} - {None})  # type: ignore[arg-type]
        else:
            patients = self.store.patients_for_site(st.site_id)
        existing = set()
        for pid in patients:
            a = gateway_offline_alert(patient_id=pid, site_id=st.site_id, gateway_id=st.gateway_id,
                                      time_ms=st.time_ms, patient_known=True, location=None)
            if self.store.alert_json(a.alert_id)[0] is not None:
                existing.add(pid)
        return {"patients": patients, "existing": existing}

    def _load_episodes(self, pids: list[str], rnd: Round) -> None:
        st = self.store
        rnd.republish = []
        marks: list[Write] = []
        futs = [(pid, st.read_async(st.q_episode, (pid,))) for pid in pids]
        loaded: list[tuple[str, Episode | None]] = []
        for pid, f in futs:
            row = f.result().one()
            ep = Episode.from_json(row.state_json) if row is not None else None
            if ep is not None and ep.has_alert and (row.published_version is None or row.published_version < ep.version):
                text, _v = st.alert_json(ep.alert_id)
                if text is not None:
                    rnd.republish.append(decode(text, Alert))
                    marks.append(st.published(ep, ep.version))
            loaded.append((pid, ep))
        for pid, ep in loaded:  # only after every read succeeded
            self.tracker.load(pid, ep)
        self._pending_published += marks

    # phase 2: decide (pure, once) ----------------------------------------------------------------
    def _decide(self, rnd: Round) -> None:
        st, tracker, cache = self.store, self.tracker, self.cache
        dirty: dict[str, Episode] = {}
        closed: dict[str, Episode] = {}
        latest: dict[str, Alert] = {}
        for m, obj in rnd.items:
            topic = m.topic()
            if isinstance(obj, PatientSummary):
                rnd.writes.append(st.vitals(obj))
                self._counter(topic, "summary").inc()
                continue
            if isinstance(obj, GatewayStatus):
                self._counter(topic, "gateway_status").inc()
                continue
            e = rnd.enriched[obj.patient_id]
            if isinstance(obj, FlaggedBeat):
                rnd.writes.append(st.beat(obj))
                ch = tracker.on_beat(obj, e.history())
            else:
                rnd.writes.append(st.event(obj))
                ch = tracker.on_event(obj, e.history())
            self._counter(topic, "processed").inc()
            for ep in ch.closed:
                closed[ep.episode_id] = ep
            ep = ch.episode
            if ep is None:
                continue
            if ch.dirty:
                dirty[ep.episode_id] = ep
            for k in ch.new_kinds:
                rnd.alert_writes.append(st.kind_seen(obj.patient_id, k, ep.opened_at_ms))
                cache.note_kind(obj.patient_id, k, ep.opened_at_ms)
            if ch.alert_changed:
                a = build_alert(ep, patient_known=e.known, location=e.location,
                                trace=obj.trace.stamp(hub_received_ms=rnd.received_ms))
                rnd.alerts.append((a, ep))
                latest[a.alert_id] = a
        for status, target in rnd.offline:
            for pid in target["patients"]:
                if pid in target["existing"]:
                    continue
                e = rnd.enriched[pid]
                a = gateway_offline_alert(patient_id=pid, site_id=status.site_id, gateway_id=status.gateway_id,
                                          time_ms=status.time_ms, patient_known=e.known, location=e.location)
                if a.alert_id in latest:
                    continue  # the same status twice in one round
                a = a.model_copy(update={"trace": a.trace.stamp(hub_received_ms=rnd.received_ms)})
                rnd.alerts.append((a, None))
                latest[a.alert_id] = a
        # Close quiet episodes by event time (a backlog replayed after downtime must not close
        # every episode by wall clock); _idle() sweeps by wall clock once caught up.
        watermark = max((getattr(o, "r_time_ms", None) or getattr(o, "end_time_ms", 0) for _m, o in rnd.items
                         if isinstance(o, (FlaggedBeat, RhythmEvent))), default=0)
        for ep in tracker.sweep(watermark):
            closed[ep.episode_id] = ep
        for ep_id, ep in closed.items():
            rnd.state_writes += st.episode_closed(ep)
            dirty.pop(ep_id, None)
        rnd.state_writes += [st.episode(ep) for ep in dirty.values()]
        for a in latest.values():  # one row per alert: its latest version of the round
            rnd.alert_writes += st.alert(a, a.model_dump_json(by_alias=True))

    # phase 3: writes (retried) ----------------------------------------------------------------
    def _write(self, writes: list[Write]) -> None:
        lat: list[float] = []
        try:
            self.store.write(writes, self.cfg.write_concurrency, lat)
        finally:
            for x in lat:
                self.metrics.write_seconds.observe(x)
            if len(self.write_latencies) < 1_000_000:
                self.write_latencies += lat

    # phase 4: publish + commit ---------------------------------------------------------------
    def _publish(self, rnd: Round) -> None:
        topic = self.cfg.topic_alerts
        written = now_ms()
        for a in rnd.republish:
            self.producer.produce(topic, a.encode(), key=a.patient_id)
        published_eps: dict[str, Episode] = {}
        for a, ep in rnd.alerts:
            a = a.model_copy(update={"trace": a.trace.stamp(alert_written_ms=written)})
            self.producer.produce(topic, a.encode(), key=a.patient_id)
            self.metrics.alerts.labels(a.severity.value).inc()
            if ep is not None:
                published_eps[ep.episode_id] = ep
        for dl, key in zip(rnd.dead, rnd.dead_keys):
            self.producer.produce(self.cfg.topic_deadletter, dl.encode(), key=key)
        if rnd.alerts or rnd.dead or rnd.republish:
            self.producer.flush(30.0)
        for ep in published_eps.values():
            self._pending_published.append(self.store.published(ep, ep.version))

    def _commit(self, msgs: list[Message]) -> None:
        top: dict[tuple[str, int], int] = {}
        for m in msgs:
            key = (m.topic(), m.partition())
            top[key] = max(top.get(key, -1), m.offset())
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in top.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self.metrics.committed.inc()
            self.kafka_ok = True
        except KafkaException as err:  # e.g. partitions revoked meanwhile: the new owner replays
            log.warning("hub: commit failed (will be replayed, idempotently): %s", err)

    # --- retries -------------------------------------------------------------------------------
    def _retry(self, fn: Callable[[], None], what: str) -> None:
        delay = self.cfg.retry_initial_s
        while True:
            try:
                fn()
            except (WriteFailed, EnrichmentUnavailable, Exception) as err:  # noqa: BLE001 - driver errors vary
                if isinstance(err, (Stopping, KeyboardInterrupt)):
                    raise
                self.metrics.write_failures.inc()
                if self.cassandra_ok:
                    log.warning("hub: cassandra %s failed, pausing consumption and retrying: %r", what, err)
                self.cassandra_ok = False
                self.metrics.cassandra_up.set(0)
                self._pause(True)
                self._wait(delay)
                delay = min(delay * 2, self.cfg.retry_max_s)
                continue
            if not self.cassandra_ok:
                log.info("hub: cassandra %s succeeded again, resuming consumption", what)
            self.cassandra_ok = True
            self.metrics.cassandra_up.set(1)
            self._pause(False)
            return

    def _pause(self, on: bool) -> None:
        if on == self.paused:
            return
        parts = self.consumer.assignment()
        try:
            if on:
                self.consumer.pause(parts)
            else:
                self.consumer.resume(parts)
        except KafkaException as err:
            log.warning("hub: pause/resume: %s", err)
        self.paused = on
        self.metrics.paused.set(1 if on else 0)

    def _wait(self, delay_s: float) -> None:
        """Back off while staying in the group; messages that still arrive are kept for later."""
        deadline = time.monotonic() + delay_s
        while time.monotonic() < deadline:
            if self.stop_event.is_set():
                raise Stopping()
            m = self.consumer.poll(min(0.2, max(0.0, deadline - time.monotonic())))
            if m is not None and m.error() is None:
                self._stash.append(m)
