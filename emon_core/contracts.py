"""Typed message contracts shared by every E-Monitor component, declared once.

Every message carries ``schema`` (the contract version), deterministic ids, UTC
timestamps in epoch milliseconds (``*_ms`` fields) and units in field names.
Encoding is JSON (debuggable with any MQTT/Kafka console tool); decoding goes
through :func:`decode` which validates and raises :class:`ContractError`. ECG frames may
carry their samples as base64 little-endian int16 inside the JSON (``samples_i16``), the
compact form for devices whose ADC has at most 16 bits.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Annotated, Any, Literal, TypeVar, Union

import numpy as np
import numpy.typing as npt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    FiniteFloat,
    model_validator,
)

from emon_core.errors import ContractError

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 256 * 1024
MIN_FS_HZ = 100.0
MAX_FS_HZ = 1000.0
MAX_FRAME_SECONDS = 10.0
MAX_FRAME_SAMPLES = int(MAX_FS_HZ * MAX_FRAME_SECONDS)
MAX_FRAME_I16_CHARS = 4 * ((2 * MAX_FRAME_SAMPLES + 2) // 3)  # base64 of MAX_FRAME_SAMPLES int16
MAX_STRIP_SAMPLES = 20_000

# Ids travel inside MQTT topics and Kafka keys: no wildcards, separators or spaces.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,159}$"

Id = Annotated[str, Field(pattern=ID_PATTERN)]
EventId = Annotated[str, Field(pattern=EVENT_ID_PATTERN)]
EpochMs = Annotated[int, Field(ge=0, le=10**14)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class BeatClass(str, enum.Enum):
    """AAMI EC57 heartbeat classes."""

    N = "N"  # normal and bundle branch block beats
    S = "S"  # supraventricular ectopic
    V = "V"  # ventricular ectopic
    F = "F"  # fusion of ventricular and normal
    Q = "Q"  # unclassifiable / paced


class EventKind(str, enum.Enum):
    """Rhythm and technical events detected at the edge."""

    V_RUN = "v_run"
    S_RUN = "s_run"
    PAUSE = "pause"
    ASYSTOLE = "asystole"
    BRADYCARDIA = "bradycardia"
    TACHYCARDIA = "tachycardia"
    FREQUENT_ECTOPY = "frequent_ectopy"
    SIGNAL_LOSS = "signal_loss"
    GATEWAY_OFFLINE = "gateway_offline"


class Severity(str, enum.Enum):
    """Alert severity; only critical and urgent ask for a paramedic unit."""

    CRITICAL = "critical"
    URGENT = "urgent"
    ADVISORY = "advisory"
    TECHNICAL = "technical"

    @property
    def rank(self) -> int:
        """Lower is more severe (for sorting)."""
        return _SEVERITY_RANK[self]

    @property
    def needs_unit(self) -> bool:
        return self in (Severity.CRITICAL, Severity.URGENT)


_SEVERITY_RANK = {
    Severity.CRITICAL: 0,
    Severity.URGENT: 1,
    Severity.ADVISORY: 2,
    Severity.TECHNICAL: 3,
}


class AlertStatus(str, enum.Enum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class UnitStatus(str, enum.Enum):
    """Paramedic unit lifecycle: available -> assigned -> acknowledged -> en_route -> on_scene."""

    AVAILABLE = "available"
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    OFFLINE = "offline"


class AssignmentStatus(str, enum.Enum):
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    TIMED_OUT = "timed_out"
    RELEASED = "released"
    COMPLETED = "completed"


class Contract(BaseModel):
    """Base of every message: frozen, no unknown fields, schema-versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, alias="schema")

    def encode(self) -> bytes:
        """Serialise to compact JSON bytes."""
        return self.model_dump_json(by_alias=True).encode()


Contract.model_config["populate_by_name"] = True


class EcgFrame(Contract):
    """A chunk of one-lead ECG from a home device (MQTT ``ecg/<site>/<device>/frames``).

    Samples are in ADC units; millivolts = (sample - baseline_adu) / gain_adu_per_mv. They
    come either as JSON numbers (``samples``) or as base64 of little-endian int16
    (``samples_i16``): exactly one of the two. The int16 form is what a 16-bit (or smaller)
    ADC produces; at 360 Hz it is ~1.2 KB a second instead of ~2.7 KB, and far cheaper to
    encode and decode. :attr:`adu` gives the samples as an array either way.
    ``first_sample_index`` is the device's running sample counter, so frame boundaries
    and deterministic beat ids do not depend on how samples were chunked.
    ``device_time_ms`` is the device clock (UTC) at the first sample; the device publishes
    the frame as soon as its last sample is acquired.
    """

    type: Literal["ecg_frame"] = "ecg_frame"
    device_id: Id
    seq: Annotated[int, Field(ge=0)]
    device_time_ms: EpochMs
    fs_hz: Annotated[float, Field(ge=MIN_FS_HZ, le=MAX_FS_HZ, allow_inf_nan=False)]
    gain_adu_per_mv: Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False)] = 200.0
    baseline_adu: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    first_sample_index: Annotated[int, Field(ge=0)]
    # FiniteFloat rejects NaN/inf in pydantic's core (no per-sample Python loop)
    samples: Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_FRAME_SAMPLES)] | None = None
    samples_i16: Annotated[str, Field(min_length=4, max_length=MAX_FRAME_I16_CHARS)] | None = None
    lead_off: bool = False
    _adu: npt.NDArray[np.float64] = PrivateAttr()

    @model_validator(mode="after")
    def _decode_samples(self) -> "EcgFrame":
        if (self.samples is None) == (self.samples_i16 is None):
            raise ValueError("exactly one of samples and samples_i16 is required")
        if self.samples_i16 is not None:
            try:
                raw = base64.b64decode(self.samples_i16, validate=True)
            except (binascii.Error, ValueError) as err:
                raise ValueError(f"samples_i16: not base64 ({err})") from None
            if len(raw) % 2:
                raise ValueError("samples_i16: odd number of bytes, not int16 samples")
            adu = np.frombuffer(raw, dtype="<i2").astype(np.float64)
        else:
            adu = np.array(self.samples, dtype=np.float64)
        if adu.size > self.fs_hz * MAX_FRAME_SECONDS:
            raise ValueError(f"frame longer than {MAX_FRAME_SECONDS} s at {self.fs_hz} Hz")
        adu.flags.writeable = False  # the frame is frozen, so are its samples
        self._adu = adu
        return self

    def __eq__(self, other: object) -> bool:  # fields only: the decoded array follows from them
        if not isinstance(other, EcgFrame):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # samples are a list

    # pydantic serves private attributes through a __getattr__ fallback (~3 us); the dict is direct
    @property
    def adu(self) -> npt.NDArray[np.float64]:
        """The samples in ADC units (read-only float64 array), whichever form they came in."""
        return self.__pydantic_private__["_adu"]  # type: ignore[index]

    @property
    def n_samples(self) -> int:
        """How many samples the frame holds."""
        return int(self.adu.size)

    @staticmethod
    def pack_i16(adu: npt.ArrayLike) -> str | None:
        """``samples_i16`` for these ADC values, or None when they are not all int16 integers."""
        x = np.ascontiguousarray(adu)
        if x.dtype.kind not in "iuf":
            return None
        with np.errstate(invalid="ignore"):  # NaN, fractions and out-of-range values do not come back
            packed = x.astype("<i2")
        if packed.astype(x.dtype).tobytes() != x.tobytes():  # a byte compare: ~3x cheaper than ==
            return None
        return base64.b64encode(packed.tobytes()).decode("ascii")

    @classmethod
    def from_adu(cls, adu: npt.ArrayLike, *, compact: bool = True, **fields: Any) -> "EcgFrame":
        """A frame of these ADC samples: as ``samples_i16`` when ``compact`` and they fit int16,
        else as JSON numbers. ``fields`` are the other fields (device_id, seq, ...)."""
        x = np.asarray(adu)
        packed = cls.pack_i16(x) if compact else None
        if packed is not None:
            return cls(samples_i16=packed, **fields)
        return cls(samples=x.tolist(), **fields)

    def encode(self) -> bytes:
        """Compact JSON; the absent sample form is left out rather than sent as null."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class EcgStrip(Contract):
    """A short ECG excerpt in microvolts, at ``fs_hz``, starting at a device sample index."""

    type: Literal["ecg_strip"] = "ecg_strip"
    fs_hz: Annotated[float, Field(ge=MIN_FS_HZ, le=MAX_FS_HZ, allow_inf_nan=False)]
    start_sample_index: Annotated[int, Field(ge=0)]
    start_time_ms: EpochMs
    samples_uv: Annotated[list[int], Field(max_length=MAX_STRIP_SAMPLES)]
    marks: Annotated[list[int], Field(max_length=2_000)] = Field(default_factory=list)


class HopTimes(Contract):
    """Per-hop wall-clock stamps (epoch ms) for tracing latency through the pipeline."""

    type: Literal["hop_times"] = "hop_times"
    device_sent_ms: EpochMs | None = None
    gateway_received_ms: EpochMs | None = None
    gateway_published_ms: EpochMs | None = None
    bridge_received_ms: EpochMs | None = None
    kafka_produced_ms: EpochMs | None = None
    hub_received_ms: EpochMs | None = None
    alert_written_ms: EpochMs | None = None

    def stamp(self, **stamps: int) -> "HopTimes":
        """Return a copy with the given hop stamps set."""
        return self.model_copy(update=stamps)


class FlaggedBeat(Contract):
    """A beat the gateway classified as not normal (gateway -> bridge -> Kafka).

    ``id`` is ``<device_id>:<sample_index>`` so a replay of the same beat has the same id.
    """

    type: Literal["flagged_beat"] = "flagged_beat"
    id: EventId
    site_id: Id
    device_id: Id
    patient_id: Id
    sample_index: Annotated[int, Field(ge=0)]
    r_time_ms: EpochMs
    beat_class: BeatClass
    probabilities: dict[BeatClass, Probability]
    model_version: Annotated[str, Field(min_length=1, max_length=64)]
    rr_prev_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    rr_next_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    rr_local_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    strip: EcgStrip | None = None
    trace: HopTimes = Field(default_factory=HopTimes)

    @staticmethod
    def make_id(device_id: str, sample_index: int) -> str:
        return f"{device_id}:{sample_index}"


class RhythmEvent(Contract):
    """A rhythm or technical event detected at the edge (VT run, pause, signal loss...).

    ``id`` is ``<device_id>:<kind>:<onset_sample_index>``; an event that grows keeps its
    id and is re-sent with a larger ``revision``.
    """

    type: Literal["rhythm_event"] = "rhythm_event"
    id: EventId
    site_id: Id
    device_id: Id
    patient_id: Id
    kind: EventKind
    onset_sample_index: Annotated[int, Field(ge=0)]
    onset_time_ms: EpochMs
    end_time_ms: EpochMs
    revision: Annotated[int, Field(ge=0)] = 0
    beat_count: Annotated[int, Field(ge=0)] = 0
    rate_bpm: Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)] | None = None
    detail: Annotated[str, Field(max_length=200)] = ""
    model_version: Annotated[str, Field(max_length=64)] = ""
    strip: EcgStrip | None = None
    trace: HopTimes = Field(default_factory=HopTimes)

    @staticmethod
    def make_id(device_id: str, kind: EventKind, onset_sample_index: int) -> str:
        return f"{device_id}:{kind.value}:{onset_sample_index}"


class PatientSummary(Contract):
    """Per-patient vitals summary the gateway sends every ``window`` (default 10 s)."""

    type: Literal["patient_summary"] = "patient_summary"
    id: EventId
    site_id: Id
    device_id: Id
    patient_id: Id
    window_start_ms: EpochMs
    window_end_ms: EpochMs
    heart_rate_bpm: Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)] | None = None
    beat_counts: dict[BeatClass, Annotated[int, Field(ge=0)]]
    signal_quality: Probability
    frames_received: Annotated[int, Field(ge=0)] = 0
    frames_invalid: Annotated[int, Field(ge=0)] = 0
    model_version: Annotated[str, Field(max_length=64)] = ""
    trace: HopTimes = Field(default_factory=HopTimes)


class GatewayStatus(Contract):
    """Gateway presence (retained; also its MQTT last will with ``online=False``)."""

    type: Literal["gateway_status"] = "gateway_status"
    site_id: Id
    gateway_id: Id
    online: bool
    time_ms: EpochMs
    model_version: Annotated[str, Field(max_length=64)] = ""
    device_ids: Annotated[list[Id], Field(max_length=20_000)] = Field(default_factory=list)


class GeoPoint(Contract):
    type: Literal["geo_point"] = "geo_point"
    lat: Latitude
    lon: Longitude


class Alert(Contract):
    """An alert raised by the hub for one patient episode; updated as the episode grows."""

    type: Literal["alert"] = "alert"
    alert_id: EventId
    patient_id: Id
    episode_id: EventId
    severity: Severity
    status: AlertStatus = AlertStatus.OPEN
    title: Annotated[str, Field(max_length=200)]
    reasons: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=20)] = Field(
        default_factory=list
    )
    version: Annotated[int, Field(ge=0)] = 0
    opened_at_ms: EpochMs
    updated_at_ms: EpochMs
    needs_unit: bool = False
    patient_known: bool = True
    location: GeoPoint | None = None
    trigger_event_id: EventId
    event_ids: Annotated[list[EventId], Field(max_length=500)] = Field(default_factory=list)
    rate_bpm: Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)] | None = None
    strip: EcgStrip | None = None
    trace: HopTimes = Field(default_factory=HopTimes)


class UnitPosition(Contract):
    """A paramedic unit's position report (MQTT ``units/<unit>/position``)."""

    type: Literal["unit_position"] = "unit_position"
    unit_id: Id
    lat: Latitude
    lon: Longitude
    status: UnitStatus
    time_ms: EpochMs
    speed_mps: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0.0
    heading_deg: Annotated[float, Field(ge=0, lt=360, allow_inf_nan=False)] = 0.0


class Assignment(Contract):
    """A paramedic unit sent to an alert's patient by the router."""

    type: Literal["assignment"] = "assignment"
    assignment_id: EventId
    alert_id: EventId
    unit_id: Id
    patient_id: Id
    status: AssignmentStatus
    severity: Severity
    distance_m: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    eta_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    assigned_at_ms: EpochMs
    updated_at_ms: EpochMs
    attempt: Annotated[int, Field(ge=0)] = 0
    patient_location: GeoPoint | None = None
    unit_location: GeoPoint | None = None


class DeadLetter(Contract):
    """An input that failed validation, with the reason, for later inspection."""

    type: Literal["dead_letter"] = "dead_letter"
    source: Annotated[str, Field(max_length=300)]
    reason: Annotated[str, Field(max_length=500)]
    received_at_ms: EpochMs
    payload_excerpt: Annotated[str, Field(max_length=2_000)] = ""
    payload_bytes: Annotated[int, Field(ge=0)] = 0


EdgeMessage = Annotated[
    Union[FlaggedBeat, RhythmEvent, PatientSummary, GatewayStatus, UnitPosition],
    Field(discriminator="type"),
]
AnyMessage = Annotated[
    Union[
        EcgFrame,
        FlaggedBeat,
        RhythmEvent,
        PatientSummary,
        GatewayStatus,
        Alert,
        UnitPosition,
        Assignment,
        DeadLetter,
    ],
    Field(discriminator="type"),
]

_EDGE_ADAPTER: TypeAdapter[Any] = TypeAdapter(EdgeMessage)
_ANY_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyMessage)

M = TypeVar("M", bound=Contract)


def _check_size(payload: bytes | str) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", reason="oversized"
        )


def _reason(err: ValidationError) -> str:
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return f"{loc}: {first.get('msg', 'invalid')}"[:300]


def decode(payload: bytes | str, model: type[M]) -> M:
    """Decode and validate one JSON message of a known type.

    Raises:
        ContractError: payload too large, not JSON, wrong type or out-of-bounds field.

    Example:
        >>> frame = decode(raw_bytes, EcgFrame)
    """
    _check_size(payload)
    try:
        return model.model_validate_json(payload)
    except ValidationError as err:
        raise ContractError(_reason(err), reason="invalid") from err


def decode_edge(payload: bytes | str) -> Any:
    """Decode any message the gateway or a unit may publish upstream (tagged by ``type``)."""
    _check_size(payload)
    try:
        return _EDGE_ADAPTER.validate_json(payload)
    except ValidationError as err:
        raise ContractError(_reason(err), reason="invalid") from err


def decode_any(payload: bytes | str) -> Any:
    """Decode any E-Monitor message (tagged by ``type``)."""
    _check_size(payload)
    try:
        return _ANY_ADAPTER.validate_json(payload)
    except ValidationError as err:
        raise ContractError(_reason(err), reason="invalid") from err
