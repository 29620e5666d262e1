"""Topic names: MQTT topic templates and Kafka topics, declared once for every component."""

from __future__ import annotations

# --- MQTT -----------------------------------------------------------------
# device -> gateway
MQTT_FRAMES = "ecg/{site_id}/{device_id}/frames"
MQTT_FRAMES_SUB = "ecg/{site_id}/+/frames"
# gateway -> bridge (flagged beats, rhythm events and summaries, per device)
MQTT_EDGE_EVENTS = "edge/{site_id}/{device_id}/events"
MQTT_EDGE_SUMMARY = "edge/{site_id}/{device_id}/summary"
MQTT_GATEWAY_STATUS = "edge/{site_id}/gateway/status"
# paramedic unit -> bridge
MQTT_UNIT_POSITION = "units/{unit_id}/position"
# bridge subscriptions (MQTT 5 shared subscription so several bridges share the load)
BRIDGE_SHARE_GROUP = "bridge"
BRIDGE_SUBSCRIPTIONS = (
    "edge/+/+/events",
    "edge/+/+/summary",
    "edge/+/gateway/status",
    "units/+/position",
)

# --- Kafka ----------------------------------------------------------------
KAFKA_FLAGGED = "emon.flagged"  # FlaggedBeat | RhythmEvent, keyed by patient
KAFKA_SUMMARIES = "emon.summaries"  # PatientSummary, keyed by patient
KAFKA_GATEWAY_STATUS = "emon.gateway-status"  # GatewayStatus, keyed by site
KAFKA_UNIT_POSITIONS = "emon.unit-positions"  # UnitPosition, keyed by unit
KAFKA_ALERTS = "emon.alerts"  # Alert, keyed by patient
KAFKA_ASSIGNMENTS = "emon.assignments"  # Assignment, keyed by alert
KAFKA_DEADLETTER = "emon.deadletter"  # DeadLetter

KAFKA_TOPICS: dict[str, int] = {
    KAFKA_FLAGGED: 6,
    KAFKA_SUMMARIES: 6,
    KAFKA_GATEWAY_STATUS: 1,
    KAFKA_UNIT_POSITIONS: 3,
    KAFKA_ALERTS: 6,
    KAFKA_ASSIGNMENTS: 3,
    KAFKA_DEADLETTER: 1,
}


def frames_topic(site_id: str, device_id: str) -> str:
    return MQTT_FRAMES.format(site_id=site_id, device_id=device_id)


def edge_events_topic(site_id: str, device_id: str) -> str:
    return MQTT_EDGE_EVENTS.format(site_id=site_id, device_id=device_id)


def edge_summary_topic(site_id: str, device_id: str) -> str:
    return MQTT_EDGE_SUMMARY.format(site_id=site_id, device_id=device_id)


def gateway_status_topic(site_id: str) -> str:
    return MQTT_GATEWAY_STATUS.format(site_id=site_id)


def unit_position_topic(unit_id: str) -> str:
    return MQTT_UNIT_POSITION.format(unit_id=unit_id)
