"""Property tests: contracts round-trip and malformed input raises the one typed error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emon_core.contracts import (
    MAX_PAYLOAD_BYTES,
    Alert,
    BeatClass,
    DeadLetter,
    EcgFrame,
    EcgStrip,
    EventKind,
    FlaggedBeat,
    PatientSummary,
    RhythmEvent,
    Severity,
    UnitPosition,
    UnitStatus,
    decode,
    decode_any,
    decode_edge,
)
from emon_core.errors import ContractError, EmonError

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}\Z")
epoch_ms = st.integers(min_value=0, max_value=4_102_444_800_000)
fs = st.floats(min_value=100.0, max_value=1000.0, allow_nan=False)
finite = st.floats(min_value=-32768, max_value=32767, allow_nan=False, allow_infinity=False)


@st.composite
def frames(draw: st.DrawFn) -> EcgFrame:
    rate = draw(fs)
    n = draw(st.integers(min_value=1, max_value=min(400, int(rate * 10))))
    return EcgFrame(
        device_id=draw(ids),
        seq=draw(st.integers(min_value=0, max_value=2**40)),
        device_time_ms=draw(epoch_ms),
        fs_hz=rate,
        gain_adu_per_mv=draw(st.floats(min_value=1.0, max_value=10_000.0)),
        baseline_adu=draw(finite),
        first_sample_index=draw(st.integers(min_value=0, max_value=2**40)),
        samples=draw(st.lists(finite, min_size=n, max_size=n)),
        lead_off=draw(st.booleans()),
    )


@st.composite
def flagged_beats(draw: st.DrawFn) -> FlaggedBeat:
    device = draw(ids)
    index = draw(st.integers(min_value=0, max_value=2**40))
    probs = draw(st.dictionaries(st.sampled_from(list(BeatClass)), st.floats(0.0, 1.0), min_size=1))
    strip = EcgStrip(
        fs_hz=360.0,
        start_sample_index=index,
        start_time_ms=draw(epoch_ms),
        samples_uv=draw(st.lists(st.integers(-5000, 5000), max_size=50)),
    )
    return FlaggedBeat(
        id=FlaggedBeat.make_id(device, index),
        site_id=draw(ids),
        device_id=device,
        patient_id=draw(ids),
        sample_index=index,
        r_time_ms=draw(epoch_ms),
        beat_class=draw(st.sampled_from(list(BeatClass))),
        probabilities=probs,
        model_version="beat-cnn-test",
        rr_prev_ms=draw(st.none() | st.floats(0, 3000)),
        strip=draw(st.none() | st.just(strip)),
    )


@given(frames())
@settings(max_examples=60, deadline=None)
def test_frame_round_trips(frame: EcgFrame) -> None:
    assert decode(frame.encode(), EcgFrame) == frame
    assert decode_any(frame.encode()) == frame


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=400), st.sampled_from([np.int16, np.int64, np.float64]))
@settings(max_examples=60, deadline=None)
def test_int16_samples_round_trip_and_equal_the_json_form(values: list[int], dtype: type) -> None:
    packed = EcgFrame.pack_i16(np.array(values, dtype=dtype))
    assert packed is not None
    common = dict(device_id="dev-00001", seq=1, device_time_ms=1, fs_hz=360.0, first_sample_index=0)
    compact = EcgFrame(samples_i16=packed, **common)
    decoded = decode(compact.encode(), EcgFrame)
    assert decoded == compact and b'"samples"' not in compact.encode()
    as_json = EcgFrame(samples=[float(v) for v in values], **common)
    assert decoded.adu.tolist() == as_json.adu.tolist() == values
    assert decoded.n_samples == len(values) and not decoded.adu.flags.writeable


@pytest.mark.parametrize("values", [[1.5], [float("nan")], [32768.0], [-32769], [70_000], [float("inf")]])
def test_values_that_are_not_int16_are_not_packed(values: list[float]) -> None:
    assert EcgFrame.pack_i16(np.array(values)) is None
    if all(np.isfinite(values)):  # from_adu falls back to JSON numbers for them
        f = EcgFrame.from_adu(values, device_id="dev-00001", seq=1, device_time_ms=1, fs_hz=360.0, first_sample_index=0)
        assert f.samples_i16 is None and f.samples == [float(v) for v in values]


@given(flagged_beats())
@settings(max_examples=60, deadline=None)
def test_flagged_beat_round_trips_through_edge_union(beat: FlaggedBeat) -> None:
    decoded = decode_edge(beat.encode())
    assert isinstance(decoded, FlaggedBeat)
    assert decoded == beat


def test_other_contracts_round_trip() -> None:
    event = RhythmEvent(
        id=RhythmEvent.make_id("dev-00001", EventKind.V_RUN, 1234),
        site_id="site-00",
        device_id="dev-00001",
        patient_id="pat-00001",
        kind=EventKind.V_RUN,
        onset_sample_index=1234,
        onset_time_ms=1_000,
        end_time_ms=4_000,
        beat_count=8,
        rate_bpm=182.0,
    )
    summary = PatientSummary(
        id="dev-00001:summary:0",
        site_id="site-00",
        device_id="dev-00001",
        patient_id="pat-00001",
        window_start_ms=0,
        window_end_ms=10_000,
        heart_rate_bpm=72.0,
        beat_counts={BeatClass.N: 12, BeatClass.V: 1},
        signal_quality=0.98,
    )
    alert = Alert(
        alert_id="pat-00001:dev-00001:v_run:1234",
        patient_id="pat-00001",
        episode_id="pat-00001:dev-00001:v_run:1234",
        severity=Severity.CRITICAL,
        title="VT run",
        opened_at_ms=1,
        updated_at_ms=2,
        needs_unit=True,
        trigger_event_id=event.id,
    )
    unit = UnitPosition(unit_id="unit-0001", lat=52.5, lon=13.4, status=UnitStatus.AVAILABLE, time_ms=5)
    for message in (event, summary, alert, unit):
        assert decode_any(message.encode()) == message
        assert decode(message.encode(), type(message)) == message


@pytest.mark.parametrize(
    "mutation, reason",
    [
        (lambda d: d.update(fs_hz=50.0), "wrong rate"),
        (lambda d: d.update(fs_hz=5000.0), "wrong rate"),
        (lambda d: d.update(device_id="dev/+/#"), "wildcard id"),
        (lambda d: d.update(device_id=""), "empty id"),
        (lambda d: d.update(samples=[]), "empty frame"),
        (lambda d: d.update(samples=None), "null samples"),
        (lambda d: d.update(samples=["a"]), "non-numeric sample"),
        (lambda d: d.update(seq=-1), "negative seq"),
        (lambda d: d.update(unknown_field=1), "unknown field"),
        (lambda d: d.update(schema=2), "future schema"),
        (lambda d: d.update(samples=[0.0] * 3601, fs_hz=360.0), "longer than 10 s"),
        (lambda d: d.update(samples_i16="AAAA"), "both sample forms"),
        (lambda d: (d.pop("samples"), d.update(samples_i16="AAA")), "int16 samples not base64"),
        (lambda d: (d.pop("samples"), d.update(samples_i16="AAAA")), "odd number of int16 bytes"),
        (lambda d: (d.pop("samples"), d.update(samples_i16=EcgFrame.pack_i16(np.zeros(3601)))), "int16 longer than 10 s"),
    ],
)
def test_malformed_frames_raise_contract_error(mutation, reason: str) -> None:
    good = json.loads(
        EcgFrame(
            device_id="dev-00001", seq=1, device_time_ms=1, fs_hz=360.0, first_sample_index=0, samples=[1.0]
        ).encode()
    )
    mutation(good)
    with pytest.raises(ContractError) as info:
        decode(json.dumps(good).encode(), EcgFrame)
    assert info.value.reason == "invalid", reason
    assert isinstance(info.value, EmonError)


def test_nan_samples_rejected() -> None:
    payload = (
        b'{"schema":1,"type":"ecg_frame","device_id":"d1","seq":0,"device_time_ms":0,'
        b'"fs_hz":360,"first_sample_index":0,"samples":[1.0,NaN]}'
    )
    with pytest.raises(ContractError):
        decode(payload, EcgFrame)
    with pytest.raises(ValueError):
        EcgFrame(device_id="d1", seq=0, device_time_ms=0, fs_hz=360, first_sample_index=0, samples=[float("nan")])


def test_oversized_payload_rejected_before_parsing() -> None:
    with pytest.raises(ContractError) as info:
        decode(b" " * (MAX_PAYLOAD_BYTES + 1), EcgFrame)
    assert info.value.reason == "oversized"


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_never_escape_as_other_errors(payload: bytes) -> None:
    try:
        decode_any(payload)
    except ContractError:
        pass


def test_dead_letter_truncates_nothing_silently() -> None:
    with pytest.raises(ContractError):
        decode(DeadLetter(source="x", reason="r" * 10, received_at_ms=0).encode().replace(b'"r', b'"' + b"r" * 600), DeadLetter)
