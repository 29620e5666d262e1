"""Bridge routing: topic -> Kafka topic and key, hop stamps, dead letters with the reason."""

from __future__ import annotations

import json

from emon_core.contracts import (
    BeatClass, DeadLetter, EventKind, FlaggedBeat, GatewayStatus, PatientSummary, RhythmEvent, UnitPosition,
    UnitStatus, decode, decode_edge,
)
from emon_core.topics import (
    KAFKA_DEADLETTER, KAFKA_FLAGGED, KAFKA_GATEWAY_STATUS, KAFKA_SUMMARIES, KAFKA_UNIT_POSITIONS,
)
from bridge.forwarder import route

BEAT = FlaggedBeat(id="dev-00001:100", site_id="site-00", device_id="dev-00001", patient_id="pat-00001",
                   sample_index=100, r_time_ms=1000, beat_class=BeatClass.V, probabilities={BeatClass.V: 0.9},
                   model_version="m1")


def test_routes_and_keys() -> None:
    r = route("edge/site-00/dev-00001/events", BEAT.encode(), 5, 7)
    assert (r.topic, r.key, r.dead_letter) == (KAFKA_FLAGGED, b"pat-00001", False)
    out = decode_edge(r.value)
    assert out.trace.bridge_received_ms == 5 and out.trace.kafka_produced_ms == 7 and out.id == BEAT.id
    ev = RhythmEvent(id="dev-00001:v_run:100", site_id="site-00", device_id="dev-00001", patient_id="pat-00001",
                     kind=EventKind.V_RUN, onset_sample_index=100, onset_time_ms=1, end_time_ms=2)
    assert route("edge/site-00/dev-00001/events", ev.encode(), 1, 1).topic == KAFKA_FLAGGED
    summ = PatientSummary(id="dev-00001:summary:3600", site_id="site-00", device_id="dev-00001", patient_id="pat-00001",
                          window_start_ms=0, window_end_ms=1, beat_counts={}, signal_quality=1.0)
    r = route("edge/site-00/dev-00001/summary", summ.encode(), 1, 1)
    assert (r.topic, r.key) == (KAFKA_SUMMARIES, b"pat-00001")
    st = GatewayStatus(site_id="site-00", gateway_id="gw", online=False, time_ms=1)
    assert (route("edge/site-00/gateway/status", st.encode(), 1, 1).topic, route(
        "edge/site-00/gateway/status", st.encode(), 1, 1).key) == (KAFKA_GATEWAY_STATUS, b"site-00")
    pos = UnitPosition(unit_id="unit-0001", lat=1.0, lon=2.0, status=UnitStatus.AVAILABLE, time_ms=1)
    r = route("units/unit-0001/position", pos.encode(), 1, 1)
    assert (r.topic, r.key, r.value) == (KAFKA_UNIT_POSITIONS, b"unit-0001", pos.encode())


def test_dead_letters_with_reason() -> None:
    cases = {
        ("edge/site-00/dev-00001/events", b"{oops"): "invalid",
        ("edge/site-00/dev-00001/events", b"x" * 300_000): "oversized",
        ("edge/site-01/dev-00001/events", BEAT.encode()): "topic mismatch",
        ("edge/site-00/dev-00002/events", BEAT.encode()): "topic mismatch",
        ("edge/site-00/dev-00001/summary", BEAT.encode()): "topic mismatch",
        ("units/unit-0002/position", BEAT.encode()): "topic mismatch",
    }
    for (topic, payload), reason in cases.items():
        r = route(topic, payload, 9, 9)
        assert r.dead_letter and r.topic == KAFKA_DEADLETTER, topic
        dl = decode(r.value, DeadLetter)
        assert dl.reason.startswith(reason), (topic, dl.reason)
        assert dl.payload_bytes == len(payload) and dl.source == f"mqtt:{topic}"
        assert len(dl.payload_excerpt) <= 500
    assert json.loads(route("edge/a/b/events", b"{oops", 1, 1).value)["type"] == "dead_letter"
