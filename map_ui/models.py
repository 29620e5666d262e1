"""API views built from the shared contracts (the messages themselves are never re-declared)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emon_core.contracts import ID_PATTERN, Alert, Assignment, Latitude, Longitude, UnitStatus

USERNAME_PATTERN = r"^[a-z][a-z0-9_.\-]{2,31}$"


class DispatcherState(BaseModel):
    status: Literal["open", "acknowledged", "resolved"] = "open"
    acknowledged_by: str | None = None
    acknowledged_at_ms: int | None = None
    resolved_by: str | None = None
    resolved_at_ms: int | None = None


class AlertView(BaseModel):
    """An alert (without its strip) with the dispatcher's state and the current assignment."""

    alert: Alert
    dispatcher: DispatcherState
    assignment: Assignment | None = None
    has_strip: bool = False


class UnitView(BaseModel):
    unit_id: str
    crew: str = ""
    status: UnitStatus
    lat: float | None = None
    lon: float | None = None
    base_lat: float | None = None
    base_lon: float | None = None
    alert_id: str | None = None
    assignment_id: str | None = None
    updated_at_ms: int | None = None
    position_time_ms: int | None = None
    speed_mps: float | None = None


class AlertDetail(AlertView):
    patient: dict[str, Any] | None = None
    assignments: list[Assignment] = Field(default_factory=list)
    unit: UnitView | None = None


class UnitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_id: str = Field(pattern=ID_PATTERN)
    crew: str = Field("", max_length=100)
    base_lat: Latitude
    base_lon: Longitude


class UnitStatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["available", "offline"]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=12, max_length=256)
    role: Literal["dispatcher", "admin"]


class UserView(BaseModel):
    username: str
    role: str
    disabled: bool = False
    created_at_ms: int | None = None


class ActionResult(BaseModel):
    ok: bool
    alert_id: str
    action: str
    detail: str = ""


class Me(BaseModel):
    username: str
    role: str
    csrf_token: str
    idle_timeout_s: int


class AuditEntry(BaseModel):
    at_ms: int | None = None
    username: str | None = None
    role: str | None = None
    action: str | None = None
    alert_id: str | None = None
    detail: str | None = None


class Health(BaseModel):
    ok: bool
    cassandra: bool
    kafka_live: bool
    sse_clients: int
