"""``emon sim units``: paramedic units that patrol, drive to assigned patients and report over MQTT.

Each unit is its own MQTT client (username = unit id, its own password) publishing
``UnitPosition`` to ``units/<unit>/position`` (QoS 1) every ``--interval`` seconds. Units read
``Assignment`` messages from Kafka: on one for them they acknowledge (status
``acknowledged``), drive to the patient (``en_route``), stay ``on_scene`` for a while, then
drive back to base reporting ``available``. A fraction of units can be told never to
acknowledge so the router's timeout path is exercised.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

EARTH_M_PER_DEG = 111_195.0
DEFAULT_CITY = (48.2082, 16.3738)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=20, help="number of units (unit-0000 ..)")
    parser.add_argument("--start-index", type=int, default=0, help="first unit number")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between position reports")
    parser.add_argument("--speed-kmh", type=float, default=45.0, help="driving speed")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--ack-delay", type=float, default=2.0, help="seconds before a unit acknowledges")
    parser.add_argument("--scene-s", type=float, default=60.0, help="seconds on scene before returning")
    parser.add_argument("--no-ack-fraction", type=float, default=0.0, help="units that never acknowledge")
    parser.add_argument("--city-lat", type=float, default=DEFAULT_CITY[0])
    parser.add_argument("--city-lon", type=float, default=DEFAULT_CITY[1])
    parser.add_argument("--radius-km", type=float, default=8.0, help="bases spread over this radius")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mqtt-host", default=None)
    parser.add_argument("--mqtt-port", type=int, default=None)
    parser.add_argument("--json", dest="json_path", default=None, help="write the summary as JSON")


def unit_password(unit_id: str) -> str:
    """The unit's MQTT password: the shared adapter's helper, else generated dev credentials."""
    try:
        from emon_core.adapters import mqtt as adapter
    except ModuleNotFoundError:
        adapter = None
    for name in ("unit_password", "device_password"):
        fn = getattr(adapter, name, None)
        if fn is not None:
            return str(fn(unit_id))
    from emon_core.settings import dev_credentials

    return dev_credentials().get(unit_id, "")


def base_of(n: int, centre: tuple[float, float], radius_km: float, seed: int = 0) -> tuple[float, float]:
    """Deterministic base of unit ``n``: uniform over a disc around the city centre."""
    rng = random.Random(seed * 1_000_003 + n)
    r = radius_km * 1000 * math.sqrt(rng.random())
    th = rng.uniform(0, 2 * math.pi)
    lat = centre[0] + r * math.cos(th) / EARTH_M_PER_DEG
    lon = centre[1] + r * math.sin(th) / (EARTH_M_PER_DEG * math.cos(math.radians(centre[0])))
    return lat, lon


def step_towards(lat: float, lon: float, tlat: float, tlon: float, metres: float) -> tuple[float, float, float, float]:
    """Move up to ``metres`` towards the target; returns (lat, lon, remaining_m, heading_deg)."""
    kx = EARTH_M_PER_DEG * math.cos(math.radians(lat))
    dx, dy = (tlon - lon) * kx, (tlat - lat) * EARTH_M_PER_DEG
    dist = math.hypot(dx, dy)
    heading = (math.degrees(math.atan2(dx, dy)) + 360.0) % 360.0
    if dist <= metres or dist == 0:
        return tlat, tlon, 0.0, heading
    f = metres / dist
    return lat + dy * f / EARTH_M_PER_DEG, lon + dx * f / kx, dist - metres, heading


@dataclass
class SimUnit:
    unit_id: str
    base: tuple[float, float]
    lat: float
    lon: float
    acks: bool = True
    status: str = "available"
    job: Any = None  # the Assignment being served
    target: tuple[float, float] | None = None
    phase_until: float = 0.0
    heading: float = 0.0
    speed: float = 0.0
    client: Any = None
    connected: bool = False
    patrol: tuple[float, float] | None = None
    retry_at: float = 0.0  # monotonic time of the next reconnect attempt
    backoff_s: float = 1.0
    counts: dict[str, int] = field(default_factory=lambda: {"positions": 0, "assignments": 0, "acks": 0,
                                                            "completed": 0, "released": 0})

    def on_assignment(self, a: Any, now: float, ack_delay: float) -> None:
        from emon_core.contracts import AssignmentStatus

        if a.status == AssignmentStatus.ASSIGNED and (self.job is None or self.job.alert_id != a.alert_id
                                                      or self.job.assignment_id != a.assignment_id):
            self.job = a
            self.counts["assignments"] += 1
            self.status = "assigned"
            self.phase_until = now + ack_delay
            self.target = None
        elif self.job is not None and a.assignment_id == self.job.assignment_id and a.status in (
            AssignmentStatus.RELEASED, AssignmentStatus.TIMED_OUT
        ):
            self.counts["released"] += 1
            self.job, self.status, self.target = None, "available", self.base

    def advance(self, now: float, dt: float, speed_mps: float, scene_s: float, rng: random.Random) -> None:
        self.speed = 0.0
        if self.status == "assigned":
            if self.acks and now >= self.phase_until:
                self.status = "acknowledged"
                self.counts["acks"] += 1
                self.phase_until = now + 1.0
            return
        if self.status == "acknowledged" and now >= self.phase_until:
            self.status = "en_route"
            pl = self.job.patient_location
            self.target = (pl.lat, pl.lon) if pl is not None else self.base
        if self.status == "en_route":
            self._drive(dt, speed_mps)
            if self.target is not None and (self.lat, self.lon) == self.target:
                self.status = "on_scene"
                self.phase_until = now + scene_s
            return
        if self.status == "on_scene":
            if now >= self.phase_until:
                self.counts["completed"] += 1
                self.job, self.status, self.target = None, "available", self.base
            return
        # available: return to base, then patrol slowly near it
        if self.target is not None:
            self._drive(dt, speed_mps)
            if (self.lat, self.lon) == self.target:
                self.target = None
        else:
            if self.patrol is None or rng.random() < 0.01:
                self.patrol = (self.base[0] + rng.uniform(-0.004, 0.004), self.base[1] + rng.uniform(-0.006, 0.006))
            lat, lon, rem, hd = step_towards(self.lat, self.lon, *self.patrol, speed_mps * 0.25 * dt)
            if rem == 0:
                self.patrol = None
            self.lat, self.lon, self.heading, self.speed = lat, lon, hd, speed_mps * 0.25

    def _drive(self, dt: float, speed_mps: float) -> None:
        assert self.target is not None
        self.lat, self.lon, _rem, self.heading = step_towards(self.lat, self.lon, *self.target, speed_mps * dt)
        self.speed = speed_mps


def _connect_units(units: list[SimUnit], host: str, port: int, keepalive: int) -> None:
    import paho.mqtt.client as mqtt

    def on_connect(client: Any, unit: SimUnit, flags: Any, rc: Any, props: Any = None) -> None:
        unit.connected = not rc.is_failure if hasattr(rc, "is_failure") else rc == 0
        if not unit.connected:
            log.warning("%s: MQTT connect refused: %s", unit.unit_id, rc)

    def on_disconnect(client: Any, unit: SimUnit, *a: Any) -> None:
        if unit.connected:
            log.info("%s: disconnected from MQTT, reconnecting", unit.unit_id)
        unit.connected = False
        unit.retry_at = time.monotonic() + 1.0

    for u in units:
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=u.unit_id,
                        protocol=mqtt.MQTTv311, userdata=u)
        c.username_pw_set(u.unit_id, unit_password(u.unit_id))
        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        c.reconnect_delay_set(1, 10)
        u.client = c
        try:
            c.connect(host, port, keepalive=keepalive)
        except OSError as err:
            log.warning("%s: cannot reach MQTT %s:%d: %s (retrying)", u.unit_id, host, port, err)
            c.connect_async(host, port, keepalive=keepalive)  # remembers the address for reconnect()


def _reconnect(u: SimUnit, mono: float) -> None:
    """Manual network loop: paho reconnects only inside its own loops, so we do it (with backoff)."""
    try:
        u.client.reconnect()
        u.backoff_s = 1.0
    except (OSError, ValueError) as err:
        log.debug("%s: reconnect failed: %s", u.unit_id, err)
        u.backoff_s = min(u.backoff_s * 2, 10.0)
    u.retry_at = mono + u.backoff_s


def _assignments_consumer(kafka: Any) -> Any:
    from confluent_kafka import Consumer, TopicPartition

    from emon_core.topics import KAFKA_ASSIGNMENTS

    c = Consumer(kafka.consumer_config(f"emon-sim-units-{int(time.time() * 1000)}", **{"auto.offset.reset": "latest"}))
    md = c.list_topics(KAFKA_ASSIGNMENTS, timeout=10).topics.get(KAFKA_ASSIGNMENTS)
    if md is None or md.error is not None:
        log.warning("Kafka topic %s missing: units will not receive assignments", KAFKA_ASSIGNMENTS)
        return c
    parts = []
    for p in md.partitions:
        _low, high = c.get_watermark_offsets(TopicPartition(KAFKA_ASSIGNMENTS, p), timeout=10)
        parts.append(TopicPartition(KAFKA_ASSIGNMENTS, p, high))
    c.assign(parts)
    return c


def run(args: argparse.Namespace) -> int:
    from emon_core.contracts import Assignment, ContractError, UnitPosition, UnitStatus, decode
    from emon_core.registry import sim_unit_id
    from emon_core.settings import KafkaSettings, MqttSettings, load
    from emon_core.topics import unit_position_topic

    mqtt_cfg = load(MqttSettings)
    host = args.mqtt_host or mqtt_cfg.host
    port = args.mqtt_port or mqtt_cfg.port
    rng = random.Random(args.seed)
    centre = (args.city_lat, args.city_lon)
    units = []
    for n in range(args.start_index, args.start_index + args.count):
        b = base_of(n, centre, args.radius_km, args.seed)
        units.append(SimUnit(sim_unit_id(n), b, b[0], b[1], acks=rng.random() >= args.no_ack_fraction))
    by_id = {u.unit_id: u for u in units}
    _connect_units(units, host, port, mqtt_cfg.keepalive_s)
    consumer = _assignments_consumer(load(KafkaSettings))
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    speed = args.speed_kmh / 3.6
    t0 = last = time.monotonic()
    next_report = {u.unit_id: t0 + rng.uniform(0, args.interval) for u in units}
    sim_now = 0.0
    log.info("%d units around (%.4f, %.4f) reporting every %.1f s", len(units), *centre, args.interval)
    try:
        while not stop["flag"] and (args.seconds is None or time.monotonic() - t0 < args.seconds):
            for msg in consumer.consume(num_messages=500, timeout=0.05):
                if msg.error() is not None:
                    continue
                try:
                    a = decode(msg.value(), Assignment)
                except ContractError:
                    continue
                u = by_id.get(a.unit_id)
                if u is not None:
                    u.on_assignment(a, sim_now, args.ack_delay)
            mono = time.monotonic()
            dt = (mono - last) * args.time_scale
            last = mono
            sim_now += dt
            now_ms = int(time.time() * 1000)
            for u in units:
                prev = u.status
                u.advance(sim_now, dt, speed, args.scene_s, rng)
                if (mono >= next_report[u.unit_id] or u.status != prev) and u.connected:
                    next_report[u.unit_id] = mono + args.interval
                    pos = UnitPosition(unit_id=u.unit_id, lat=u.lat, lon=u.lon,
                                       status=UnitStatus(u.status),
                                       time_ms=now_ms, speed_mps=min(u.speed, 100.0), heading_deg=u.heading % 360)
                    u.client.publish(unit_position_topic(u.unit_id), pos.encode(), qos=1)
                    u.counts["positions"] += 1
                if not u.connected and mono >= u.retry_at:
                    _reconnect(u, mono)
                u.client.loop(timeout=0.0)
    finally:
        consumer.close()
        for u in units:
            try:
                u.client.disconnect()
                u.client.loop(timeout=0.1)
            except Exception:  # noqa: BLE001 - closing best effort
                pass
    totals = {k: sum(u.counts[k] for u in units) for k in units[0].counts} if units else {}
    totals["units"] = len(units)
    totals["connected"] = sum(1 for u in units if u.connected)
    print("units: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(totals, fh, indent=2)
    return 0
