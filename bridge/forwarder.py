"""Routing of one MQTT message to Kafka (pure): validate, check it matches its topic, stamp hop times, key it.

Invalid input becomes a :class:`~emon_core.contracts.DeadLetter` for ``KAFKA_DEADLETTER``
with the reason (and is then acknowledged: retrying a bad payload never helps).
"""

from __future__ import annotations

from dataclasses import dataclass

from emon_core.contracts import (
    ContractError,
    DeadLetter,
    FlaggedBeat,
    GatewayStatus,
    PatientSummary,
    RhythmEvent,
    UnitPosition,
    decode_edge,
)
from emon_core.topics import (
    KAFKA_DEADLETTER,
    KAFKA_FLAGGED,
    KAFKA_GATEWAY_STATUS,
    KAFKA_SUMMARIES,
    KAFKA_UNIT_POSITIONS,
)

EXCERPT_CHARS = 500


@dataclass(frozen=True)
class Route:
    """Where one message goes: Kafka topic, key and value; ``kind`` labels metrics."""

    topic: str
    key: bytes
    value: bytes
    kind: str
    dead_letter: bool = False


def dead_letter(mqtt_topic: str, payload: bytes, reason: str, now_ms: int) -> Route:
    excerpt = payload[:EXCERPT_CHARS].decode("utf-8", errors="replace")
    msg = DeadLetter(source=f"mqtt:{mqtt_topic}"[:300], reason=reason[:500], received_at_ms=now_ms,
                     payload_excerpt=excerpt, payload_bytes=len(payload))
    return Route(KAFKA_DEADLETTER, mqtt_topic.encode()[:200], msg.encode(), "deadletter", dead_letter=True)


def _check_topic(parts: list[str], msg: object) -> str | None:
    """Why ``msg`` does not belong on the topic ``parts`` (None when it does)."""
    if parts[0] == "units":
        if len(parts) == 3 and parts[2] == "position" and isinstance(msg, UnitPosition):
            return None if msg.unit_id == parts[1] else f"unit_id {msg.unit_id} on the topic of {parts[1]}"
        return f"{type(msg).__name__} on a unit topic"
    if parts[0] != "edge" or len(parts) != 4:
        return "not an edge topic"
    site, device, leaf = parts[1], parts[2], parts[3]
    if device == "gateway" and leaf == "status":
        if not isinstance(msg, GatewayStatus):
            return f"{type(msg).__name__} on a status topic"
        return None if msg.site_id == site else f"site_id {msg.site_id} on the topic of {site}"
    if leaf == "events" and isinstance(msg, (FlaggedBeat, RhythmEvent)) or (
        leaf == "summary" and isinstance(msg, PatientSummary)
    ):
        if msg.site_id != site or msg.device_id != device:
            return f"message of {msg.site_id}/{msg.device_id} on the topic of {site}/{device}"
        return None
    return f"{type(msg).__name__} on an {leaf} topic"


def route(mqtt_topic: str, payload: bytes, received_ms: int, produced_ms: int) -> Route:
    """Route one MQTT message (never raises for bad input: returns a dead letter)."""
    try:
        msg = decode_edge(payload)
    except ContractError as err:
        return dead_letter(mqtt_topic, payload, f"{err.reason}: {err}", received_ms)
    problem = _check_topic(mqtt_topic.split("/"), msg)
    if problem is not None:
        return dead_letter(mqtt_topic, payload, f"topic mismatch: {problem}", received_ms)
    if isinstance(msg, (FlaggedBeat, RhythmEvent, PatientSummary)):
        msg = msg.model_copy(update={"trace": msg.trace.stamp(bridge_received_ms=received_ms,
                                                                kafka_produced_ms=produced_ms)})
        topic = KAFKA_SUMMARIES if isinstance(msg, PatientSummary) else KAFKA_FLAGGED
        return Route(topic, msg.patient_id.encode(), msg.encode(), msg.type)
    if isinstance(msg, GatewayStatus):
        return Route(KAFKA_GATEWAY_STATUS, msg.site_id.encode(), payload, msg.type)
    assert isinstance(msg, UnitPosition)
    return Route(KAFKA_UNIT_POSITIONS, msg.unit_id.encode(), payload, msg.type)
