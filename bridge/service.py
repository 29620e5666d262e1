"""The bridge: MQTT 5 shared subscription -> Kafka, acknowledging each MQTT message only after Kafka did.

Delivery guarantee: paho runs with ``manual_ack=True``; a message is PUBACKed from the
Kafka delivery callback of its record (idempotent producer, ``acks=all``). The MQTT
session is persistent (``clean_start=False`` + session expiry), so whatever was not
acked when the bridge died - even by ``kill -9`` - is redelivered by the broker when it
comes back. A Kafka delivery failure is latched: the bridge stops acking, disconnects
and exits non-zero for its supervisor to restart it.

Leaving: a persistent session stays in the share group after a plain disconnect, and
Mosquitto keeps routing a share of the traffic to it (held until it returns or its session
expires). So a clean stop (SIGTERM) unsubscribes, forwards what the broker still delivers
until it is quiet, and ends the session (expiry 0 on DISCONNECT); a crash keeps it.

Backpressure: the broker sends at most ``max_inflight`` un-acked messages (MQTT 5
receive maximum; Mosquitto's ``max_inflight_messages`` caps it too), so a slow Kafka
slows the intake instead of filling memory.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from typing import Any

from emon_core.errors import DeliveryError, ServiceError
from emon_core.settings import KafkaSettings, MqttSettings
from emon_core.topics import BRIDGE_SUBSCRIPTIONS
from bridge.forwarder import route
from emon_core.http_endpoints import HttpEndpoints
from bridge.metrics import BridgeMetrics
from bridge.settings import BridgeSettings

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class BridgeService:
    """One bridge process (several may share the load through the shared subscription)."""

    def __init__(self, settings: BridgeSettings, mqtt_settings: MqttSettings, kafka_settings: KafkaSettings) -> None:
        from emon_core.adapters.kafka import SafeProducer
        from emon_core.adapters.mqtt import create_client

        self.settings = settings
        self.mqtt_settings = mqtt_settings if mqtt_settings.username == settings.username else mqtt_settings.with_user(settings.username)
        self.kafka_settings = kafka_settings
        self.metrics = BridgeMetrics()
        self.producer = SafeProducer(kafka_settings, **{"linger.ms": settings.linger_ms,
                                                        "delivery.timeout.ms": settings.delivery_timeout_ms})
        subs = [(f"$share/{settings.share_group}/{t}", 1) for t in BRIDGE_SUBSCRIPTIONS]
        self.client = create_client(self.mqtt_settings, client_id=settings.bridge_id, subscriptions=subs,
                                    manual_ack=True, clean_start=False, on_connect=self._on_connect,
                                    max_inflight=100, buffered_reads=True)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.on_disconnect = self._on_disconnect
        self.queue: queue.Queue[tuple[str, bytes, int, int, int]] = queue.Queue(maxsize=settings.max_inflight)
        self.stopping = threading.Event()
        self.inflight = 0
        self.forwarded = 0
        self.dead = 0
        self.last_delivery_mono = time.monotonic()
        self.worker_alive_mono = time.monotonic()
        self.error: str | None = None
        self.http = HttpEndpoints(settings.http_host, settings.http_port, self.metrics.registry, self.health)

    # -- paho thread --------------------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        ok = not reason.is_failure
        self.metrics.mqtt.set(1 if ok else 0)
        if ok:
            log.info("bridge %s connected (session present: %s)", self.settings.bridge_id,
                     getattr(flags, "session_present", "?"))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.metrics.mqtt.set(0)
        if not self.stopping.is_set():
            log.warning("bridge MQTT disconnected: %s", reason)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        # bounded by the receive maximum; a full queue blocks paho's thread (more backpressure)
        self.queue.put((msg.topic, bytes(msg.payload), int(msg.mid), int(msg.qos), now_ms()))

    # -- worker -------------------------------------------------------------------------------

    def _ack(self, mid: int, qos: int, kind: str, dead: bool, t0: float, err: Any) -> None:
        """Kafka delivery callback (worker thread, from poll)."""
        if err is not None:
            self.error = f"kafka delivery failed: {err}"
            return  # not acked: the broker redelivers after the restart
        self.client.ack(mid, qos)
        self.inflight -= 1
        self.last_delivery_mono = time.monotonic()
        self.metrics.latency.observe(time.monotonic() - t0)
        if dead:
            self.dead += 1
            self.metrics.dead.inc()
        else:
            self.forwarded += 1
            self.metrics.forwarded.labels(kind).inc()

    def _forward(self, item: tuple[str, bytes, int, int, int]) -> None:
        topic, payload, mid, qos, received = item
        r = route(topic, payload, received, now_ms())
        if r.dead_letter:
            log.warning("dead letter from %s: %s", topic[:120], r.value[:300])
        self.inflight += 1
        self.metrics.received.inc()
        t0 = time.monotonic()
        self.producer.produce(
            r.topic, r.value, key=r.key,
            on_delivery=lambda err, _msg, mid=mid, qos=qos, kind=r.kind, dead=r.dead_letter, t0=t0: self._ack(
                mid, qos, kind, dead, t0, err),
        )

    def _work(self) -> None:
        while not self.stopping.is_set():
            self.worker_alive_mono = time.monotonic()
            try:
                item = self.queue.get(timeout=0.01)
            except queue.Empty:
                self.producer.poll(0.01)
                self._check()
                continue
            self._forward(item)
            for _ in range(500):  # a burst: queue the rest before serving callbacks
                try:
                    self._forward(self.queue.get_nowait())
                except queue.Empty:
                    break
            self.producer.poll(0)
            self._check()
            self.metrics.inflight.set(self.inflight)

    def _check(self) -> None:
        if self.error is not None:
            self.metrics.kafka_failed.set(1)
            raise DeliveryError(self.error)

    # -- health and lifecycle ------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        stuck = self.inflight > 0 and now - self.last_delivery_mono > self.settings.stuck_after_s
        checks = {
            "mqtt_connected": self.client.is_connected(),
            "worker_alive": now - self.worker_alive_mono < 5.0,
            "kafka_ok": self.error is None and not self.producer.failed,
            "not_stuck": not stuck,
        }
        return all(checks.values()), {"checks": checks, "bridge_id": self.settings.bridge_id,
                                      "inflight": self.inflight, "forwarded": self.forwarded,
                                      "deadlettered": self.dead}

    def _connect(self, timeout_s: float) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.max_inflight
        s = self.mqtt_settings
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.client.connect(s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props)
                break
            except OSError as err:
                if time.monotonic() > deadline or self.stopping.is_set():
                    raise ServiceError(f"MQTT broker not reachable at {s.host}:{s.port}: {err}") from err
                log.warning("waiting for the MQTT broker: %s", err)
                time.sleep(1.0)
        self.client.loop_start()
        if not self.client.emon_connected.wait(timeout_s):
            raise ServiceError("MQTT: no CONNACK")
        if self.client.emon_connack is not None and self.client.emon_connack.is_failure:
            raise ServiceError(f"MQTT refused the bridge: {self.client.emon_connack}")

    def run(self, connect_timeout_s: float = 60.0) -> int:
        from emon_core.adapters.kafka import wait_ready

        self.http.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        wait_ready(self.kafka_settings, connect_timeout_s)
        self._connect(connect_timeout_s)
        log.info("bridge %s: %s -> kafka %s, http on %d", self.settings.bridge_id,
                 ", ".join(BRIDGE_SUBSCRIPTIONS), self.kafka_settings.bootstrap_servers, self.http.port)
        code = 0
        try:
            self._work()
        except DeliveryError as err:
            log.error("bridge stopping: %s (un-acked messages stay with the broker)", err)
            code = 1
        finally:
            self._shutdown(clean=code == 0)
        return code

    def _leave_group(self) -> bool:
        """Unsubscribe from the shared subscriptions, then forward what the broker still delivers
        to this session until it has been quiet for ``leave_quiet_s`` (at most ``leave_timeout_s``).

        A persistent session stays in the share group after a plain disconnect: Mosquitto keeps
        routing a share of the messages to it and holds them until the bridge comes back or the
        session expires (then they are gone). A bridge that stops on purpose leaves the group first.
        Returns True when the session is drained and can end.
        """
        if not self.client.is_connected():
            return False
        unsubscribed = threading.Event()
        self.client.on_unsubscribe = lambda *_: unsubscribed.set()
        topics = [t for t, _ in self.client.emon_subscriptions]
        self.client.emon_subscriptions = []  # no resubscription if the connection drops now
        rc, _mid = self.client.unsubscribe(topics)
        if rc != 0 or not unsubscribed.wait(self.settings.leave_timeout_s):
            log.warning("bridge: could not leave the share group; the session stays for the next start")
            return False
        deadline = time.monotonic() + self.settings.leave_timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            try:
                self._forward(self.queue.get(timeout=0.02))
                quiet_since = time.monotonic()
            except queue.Empty:
                if self.inflight == 0 and time.monotonic() - quiet_since >= self.settings.leave_quiet_s:
                    return True
            self.producer.poll(0)
            if self.error is not None:
                return False
        log.warning("bridge: messages still arriving after %.0f s; the session stays for the next start",
                    self.settings.leave_timeout_s)
        return False

    def _shutdown(self, clean: bool) -> None:
        self.stopping.set()
        left = False
        if clean:
            left = self._leave_group()
            try:
                self.producer.flush(10.0)
            except DeliveryError as err:
                log.error("bridge shutdown: %s", err)
                left = False
        if left and self.inflight == 0:
            # nothing is queued for this session any more: end it, or the broker would keep it in
            # the share group and hand it a share of the traffic until it expires
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            self.client.disconnect(properties=props)
        else:  # a crash-like stop: the session keeps what was not acknowledged for the next start
            self.client.disconnect()
        self.client.loop_stop()
        self.http.stop()
        log.info("bridge stopped: %d forwarded, %d dead-lettered", self.forwarded, self.dead)
