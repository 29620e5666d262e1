"""REST API (OpenAPI at /docs): alerts, patients, units, assignments, users, audit, live stream."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from emon_core.contracts import EVENT_ID_PATTERN, ID_PATTERN, Alert, Assignment, AssignmentStatus, EcgStrip, UnitStatus
from map_ui.app import Context, publish_local
from map_ui.audit import Action, record
from map_ui.auth import User, check_csrf, current_user, hash_password, require_admin
from map_ui.models import (
    ActionResult,
    AlertDetail,
    AlertView,
    AuditEntry,
    DispatcherState,
    Health,
    Me,
    UnitCreate,
    UnitStatusChange,
    UnitView,
    UserCreate,
    UserView,
)
from map_ui.strips import strip_svg

router = APIRouter()
api = APIRouter(prefix="/api", dependencies=[Depends(current_user)],
                responses={401: {"description": "not logged in"}, 422: {"description": "invalid input"}})

AlertId = Annotated[str, Path(pattern=EVENT_ID_PATTERN, max_length=160)]
UnitId = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]
PatientId = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]
_ACTIVE = {AssignmentStatus.ASSIGNED, AssignmentStatus.ACKNOWLEDGED, AssignmentStatus.EN_ROUTE,
           AssignmentStatus.ON_SCENE}


def ctx_of(request: Request) -> Context:
    return request.app.state.ctx


def _dispatcher(row: dict[str, Any] | None) -> DispatcherState:
    if not row:
        return DispatcherState()
    return DispatcherState(status=row.get("dispatcher_status") or "open",
                           acknowledged_by=row.get("acknowledged_by"),
                           acknowledged_at_ms=row.get("acknowledged_at_ms"),
                           resolved_by=row.get("resolved_by"), resolved_at_ms=row.get("resolved_at_ms"))


def sort_key(v: AlertView) -> tuple:
    """Unresolved first, then severity (critical first), then age (oldest first)."""
    resolved = v.dispatcher.status == "resolved" or v.alert.status.value == "resolved"
    return (resolved, v.alert.severity.rank, v.alert.opened_at_ms, v.alert.alert_id)


def alert_views(ctx: Context, include_resolved: bool = False) -> list[AlertView]:
    alerts, assignments, _ = ctx.state.snapshot()
    states = ctx.repo.all_alert_states()
    out = []
    for a in alerts:
        v = AlertView(alert=a.model_copy(update={"strip": None}), dispatcher=_dispatcher(states.get(a.alert_id)),
                      assignment=assignments.get(a.alert_id), has_strip=a.strip is not None)
        if include_resolved or not (v.dispatcher.status == "resolved" or a.status.value == "resolved"):
            out.append(v)
    out.sort(key=sort_key)
    return out


def find_alert(ctx: Context, alert_id: str) -> Alert:
    a = ctx.state.alert(alert_id)
    if a is None:
        raise HTTPException(status_code=404, detail="unknown alert")
    return a


def current_assignment(ctx: Context, alert_id: str) -> Assignment | None:
    a = ctx.state.assignment(alert_id)
    if a is None:
        history = ctx.repo.assignments_for_alert(alert_id)
        a = history[-1] if history else None
    return a


def alert_detail(ctx: Context, alert_id: str) -> AlertDetail:
    a = find_alert(ctx, alert_id)
    history = ctx.repo.assignments_for_alert(alert_id)
    asg = ctx.state.assignment(alert_id) or (history[-1] if history else None)
    unit = ctx.repo.unit(asg.unit_id) if asg is not None else None
    return AlertDetail(alert=a.model_copy(update={"strip": None}),
                       dispatcher=_dispatcher(ctx.repo.alert_state(alert_id)), assignment=asg,
                       has_strip=a.strip is not None, patient=ctx.repo.patient(a.patient_id),
                       assignments=history, unit=UnitView(**unit) if unit else None)


# --- public ----------------------------------------------------------------------------------
@router.get("/healthz", response_model=Health, tags=["health"])
def healthz(request: Request) -> Any:
    ctx = ctx_of(request)
    cas = ctx.repo.ping()
    kafka = ctx.feed is not None and ctx.feed.available and ctx.feed.is_alive()
    body = Health(ok=cas, cassandra=cas, kafka_live=kafka, sse_clients=ctx.broadcaster.clients)
    return JSONResponse(body.model_dump(), status_code=200 if cas else 503)


# --- docs (behind login) -----------------------------------------------------------------------
@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, user: User = Depends(current_user)) -> Any:
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False)
def docs(user: User = Depends(current_user)) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="E-Monitor dispatcher API",
                               swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
                               swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
                               swagger_favicon_url="/static/favicon.svg")


# --- session ------------------------------------------------------------------------------------
@api.get("/me", response_model=Me, tags=["session"])
def me(request: Request, user: User = Depends(current_user)) -> Me:
    return Me(username=user.username, role=user.role, csrf_token=user.csrf,
              idle_timeout_s=ctx_of(request).settings.idle_timeout_s)


# --- alerts ---------------------------------------------------------------------------------------
@api.get("/alerts", response_model=list[AlertView], tags=["alerts"])
def list_alerts(request: Request, include_resolved: bool = False,
                limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[AlertView]:
    """Alerts sorted by severity, then age (oldest first); resolved ones only on request."""
    return alert_views(ctx_of(request), include_resolved)[:limit]


@api.get("/alerts/{alert_id}", response_model=AlertDetail, tags=["alerts"])
def get_alert(request: Request, alert_id: AlertId, user: User = Depends(current_user)) -> AlertDetail:
    ctx = ctx_of(request)
    detail = alert_detail(ctx, alert_id)
    record(ctx.repo, user, Action.VIEWED, alert_id, "api")
    return detail


@api.get("/alerts/{alert_id}/strip", response_model=EcgStrip, tags=["alerts"])
def get_strip(request: Request, alert_id: AlertId) -> EcgStrip:
    a = find_alert(ctx_of(request), alert_id)
    if a.strip is None:
        raise HTTPException(status_code=404, detail="alert has no ECG strip")
    return a.strip


@api.get("/alerts/{alert_id}/strip.svg", tags=["alerts"], response_class=Response,
         responses={200: {"content": {"image/svg+xml": {}}}})
def get_strip_svg(request: Request, alert_id: AlertId) -> Response:
    a = find_alert(ctx_of(request), alert_id)
    if a.strip is None:
        raise HTTPException(status_code=404, detail="alert has no ECG strip")
    return Response(strip_svg(a.strip), media_type="image/svg+xml")


def do_action(ctx: Context, user: User, alert_id: str, action: str) -> ActionResult:
    """acknowledge / resolve / reassign an alert (shared by the API and the page forms)."""
    find_alert(ctx, alert_id)
    asg = current_assignment(ctx, alert_id)
    now = int(time.time() * 1000)
    detail = ""
    if action == "acknowledge":
        ctx.repo.acknowledge(alert_id, user.username)
        record(ctx.repo, user, Action.ACKNOWLEDGED, alert_id)
    elif action == "resolve":
        ctx.repo.resolve(alert_id, user.username)
        if asg is not None and asg.status in _ACTIVE:
            _request(ctx, asg.model_copy(update={"status": AssignmentStatus.COMPLETED, "updated_at_ms": now}))
            detail = f"unit {asg.unit_id} released"
        record(ctx.repo, user, Action.RESOLVED, alert_id, detail)
    elif action == "reassign":
        if asg is None or asg.status not in _ACTIVE:
            raise HTTPException(status_code=409, detail="alert has no active assignment to reassign")
        _request(ctx, asg.model_copy(update={"status": AssignmentStatus.RELEASED, "updated_at_ms": now}))
        detail = f"unit {asg.unit_id} released, next nearest requested"
        record(ctx.repo, user, Action.REASSIGNED, alert_id, detail)
    else:
        raise HTTPException(status_code=404, detail="unknown action")
    state = _dispatcher(ctx.repo.alert_state(alert_id))
    publish_local(ctx, "dispatch", {"alert_id": alert_id, "action": action, "by": user.username,
                                    "dispatcher": state.model_dump()})
    return ActionResult(ok=True, alert_id=alert_id, action=action, detail=detail)


def _request(ctx: Context, a: Assignment) -> None:
    if ctx.publisher is None:
        raise HTTPException(status_code=503, detail="Kafka unavailable: request not sent")
    ctx.publisher.assignment(a)


@api.post("/alerts/{alert_id}/{action}", response_model=ActionResult, tags=["alerts"],
          responses={403: {"description": "bad CSRF token"}, 404: {"description": "unknown alert or action"},
                     409: {"description": "nothing to reassign"}})
def alert_action(request: Request, alert_id: AlertId,
                 action: Annotated[str, Path(pattern=r"^(acknowledge|resolve|reassign)$")],
                 user: User = Depends(current_user)) -> ActionResult:
    """Acknowledge, resolve (releases the unit) or reassign (next nearest unit). Needs ``X-CSRF-Token``."""
    check_csrf(request, user)
    return do_action(ctx_of(request), user, alert_id, action)


# --- patients ------------------------------------------------------------------------------------
@api.get("/patients", response_model=list[dict[str, Any]], tags=["patients"])
def list_patients(request: Request, limit: Annotated[int, Query(ge=1, le=20_000)] = 5000) -> Any:
    return ctx_of(request).repo.patients(limit)


@api.get("/patients/{patient_id}", response_model=dict[str, Any], tags=["patients"])
def get_patient(request: Request, patient_id: PatientId) -> Any:
    p = ctx_of(request).repo.patient(patient_id)
    if p is None:
        raise HTTPException(status_code=404, detail="unknown patient")
    return p


# --- units ---------------------------------------------------------------------------------------
@api.get("/units", response_model=list[UnitView], tags=["units"])
def list_units(request: Request, status: UnitStatus | None = None) -> Any:
    units = ctx_of(request).repo.units()
    return sorted((u for u in units if status is None or u["status"] == status), key=lambda u: u["unit_id"])


@api.get("/units/{unit_id}", response_model=UnitView, tags=["units"])
def get_unit(request: Request, unit_id: UnitId) -> Any:
    u = ctx_of(request).repo.unit(unit_id)
    if u is None:
        raise HTTPException(status_code=404, detail="unknown unit")
    return u


@api.post("/units", response_model=UnitView, status_code=201, tags=["units", "admin"],
          responses={403: {"description": "admin role required"}, 409: {"description": "unit exists"}})
def create_unit(request: Request, body: UnitCreate, user: User = Depends(require_admin)) -> Any:
    check_csrf(request, user)
    ctx = ctx_of(request)
    if not ctx.repo.register_unit(body.unit_id, body.crew, body.base_lat, body.base_lon, user.username):
        raise HTTPException(status_code=409, detail="unit already exists")
    record(ctx.repo, user, Action.UNIT_REGISTERED, None, body.unit_id)
    return ctx.repo.unit(body.unit_id)


@api.post("/units/{unit_id}/status", response_model=UnitView, tags=["units", "admin"],
          responses={403: {"description": "admin role required"}, 409: {"description": "unit busy"}})
def set_unit_status(request: Request, unit_id: UnitId, body: UnitStatusChange,
                    user: User = Depends(require_admin)) -> Any:
    """Take an idle unit out of service (``offline``) or back (``available``)."""
    check_csrf(request, user)
    ctx = ctx_of(request)
    u = ctx.repo.unit(unit_id)
    if u is None:
        raise HTTPException(status_code=404, detail="unknown unit")
    new = UnitStatus(body.status)
    old = UnitStatus.OFFLINE if new == UnitStatus.AVAILABLE else UnitStatus.AVAILABLE
    if u["status"] != new and not ctx.repo.set_unit_idle_status(unit_id, old, new, user.username):
        raise HTTPException(status_code=409, detail=f"unit is {u['status'].value}: only idle units can change")
    record(ctx.repo, user, Action.UNIT_STATUS, None, f"{unit_id} -> {new.value}")
    return ctx.repo.unit(unit_id)


# --- assignments ----------------------------------------------------------------------------------
@api.get("/assignments", response_model=list[Assignment], tags=["assignments"])
def list_assignments(request: Request,
                     alert_id: Annotated[str | None, Query(pattern=EVENT_ID_PATTERN, max_length=160)] = None,
                     unit_id: Annotated[str | None, Query(pattern=ID_PATTERN, max_length=64)] = None,
                     active_only: bool = False) -> Any:
    """Assignments of one alert or unit (all attempts), else the latest per alert."""
    ctx = ctx_of(request)
    if alert_id:
        out = ctx.repo.assignments_for_alert(alert_id)
    elif unit_id:
        out = ctx.repo.assignments_for_unit(unit_id)
    else:
        out = sorted(ctx.state.snapshot()[1].values(), key=lambda a: -a.updated_at_ms)
    return [a for a in out if not active_only or a.status in _ACTIVE]


# --- admin ------------------------------------------------------------------------------------------
@api.get("/users", response_model=list[UserView], tags=["admin"],
         responses={403: {"description": "admin role required"}})
def list_users(request: Request, user: User = Depends(require_admin)) -> Any:
    return ctx_of(request).repo.list_users()


@api.post("/users", response_model=UserView, status_code=201, tags=["admin"],
          responses={403: {"description": "admin role required"}, 409: {"description": "user exists"}})
def create_user(request: Request, body: UserCreate, user: User = Depends(require_admin)) -> Any:
    check_csrf(request, user)
    ctx = ctx_of(request)
    if not ctx.repo.create_user(body.username, hash_password(body.password), body.role):
        raise HTTPException(status_code=409, detail="user already exists")
    record(ctx.repo, user, Action.USER_CREATED, None, f"{body.username} ({body.role})")
    return UserView(username=body.username, role=body.role)


@api.get("/audit", response_model=list[AuditEntry], tags=["admin"],
         responses={403: {"description": "admin role required"}})
def audit_log(request: Request, limit: Annotated[int, Query(ge=1, le=2000)] = 200,
              user: User = Depends(require_admin)) -> Any:
    return ctx_of(request).repo.audit_recent(limit)


# --- live stream ---------------------------------------------------------------------------------------
@api.get("/stream", tags=["live"], response_class=StreamingResponse,
         responses={200: {"content": {"text/event-stream": {}}}})
async def stream(request: Request) -> StreamingResponse:
    """Server-sent events: ``alert``, ``assignment``, ``positions`` (batched), ``dispatch``."""
    ctx = ctx_of(request)
    q = ctx.broadcaster.subscribe()

    async def events() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\nevent: hello\ndata: {}\n\n"
            while True:
                try:
                    frame = await asyncio.wait_for(q.get(), timeout=15.0)
                    yield frame
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        break
                    yield ": keep-alive\n\n"
        finally:
            ctx.broadcaster.unsubscribe(q)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


router.include_router(api)
