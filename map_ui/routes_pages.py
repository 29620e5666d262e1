"""HTML pages: login/logout, the live dispatcher map, alert detail, admin users/units/audit."""

from __future__ import annotations

import time
from collections import deque
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from emon_core.contracts import EVENT_ID_PATTERN, ID_PATTERN, UnitStatus
from map_ui.app import Context
from map_ui.audit import Action, record
from map_ui.auth import NotAuthenticated, User, check_csrf, hash_password, verify_password
from map_ui.folium_local import build_map
from map_ui.models import UserCreate
from map_ui.routes_api import alert_detail, alert_views, ctx_of, do_action, find_alert
from map_ui.strips import strip_svg

router = APIRouter(include_in_schema=False)
AlertId = Annotated[str, Path(pattern=EVENT_ID_PATTERN, max_length=160)]
MAX_FAILURES, FAILURE_WINDOW_S = 5, 300.0
MAP_CACHE_S = 60.0


def page_user(request: Request) -> User:
    user = getattr(request.state, "user", None)
    if user is None:
        raise NotAuthenticated()
    return user


def page_admin(request: Request) -> User:
    user = page_user(request)
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="admin role required")
    return user


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    ctx = ctx_of(request)
    return request.app.state.templates.TemplateResponse(
        request, name, {"user": getattr(request.state, "user", None), "settings": ctx.settings, **context},
        status_code=status_code)


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _throttled(ctx: Context, key: str) -> bool:
    q = ctx.login_failures.setdefault(key, deque())
    now = time.monotonic()
    while q and now - q[0] > FAILURE_WINDOW_S:
        q.popleft()
    return len(q) >= MAX_FAILURES


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", expired: int = 0) -> Response:
    if getattr(request.state, "user", None) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", next=_safe_next(next), expired=bool(expired), error=None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, username: Annotated[str, Form(max_length=64)] = "",
          password: Annotated[str, Form(max_length=256)] = "", next: Annotated[str, Form(max_length=300)] = "/") -> Response:
    ctx: Context = ctx_of(request)
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.headers.get("host", ""):
        raise HTTPException(status_code=403, detail="cross-origin login refused")  # login CSRF
    client = request.client.host if request.client else "-"
    key = f"{client}|{username.lower()}"
    if _throttled(ctx, key):
        return render(request, "login.html", 429, next=_safe_next(next), expired=False,
                      error="Too many failed attempts. Wait a few minutes and try again.")
    row = ctx.repo.get_user(username) if username else None
    ok = verify_password(row.password_hash if row is not None else None, password)
    if not ok or row is None or row.disabled or row.role not in ("dispatcher", "admin"):
        ctx.login_failures.setdefault(key, deque()).append(time.monotonic())
        record(ctx.repo, None, Action.LOGIN_FAILED, None, f"from {client}", username=username[:64] or "-")
        return render(request, "login.html", 401, next=_safe_next(next), expired=False,
                      error="Wrong username or password.")
    ctx.login_failures.pop(key, None)
    token, user = ctx.codec.issue(row.username, row.role)
    record(ctx.repo, user, Action.LOGIN, None, f"from {client}")
    resp = RedirectResponse(_safe_next(next), status_code=303)
    ctx.codec.set_cookie(resp, token)
    return resp


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=100)] = "",
           user: User = Depends(page_user)) -> Response:
    check_csrf(request, user, csrf)
    ctx = ctx_of(request)
    ctx.codec.revoke(user)
    record(ctx.repo, user, Action.LOGOUT)
    resp = RedirectResponse("/login", status_code=303)
    ctx.codec.clear_cookie(resp)
    return resp


def _map_parts(ctx: Context) -> Any:
    cached = ctx.map_cache.get("parts")
    if cached is None or time.monotonic() - ctx.map_cache.get("at", 0) > MAP_CACHE_S:
        cached = build_map(ctx.settings, ctx.repo.patients())
        ctx.map_cache.update(parts=cached, at=time.monotonic())
    return cached


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, user: User = Depends(page_user)) -> Response:
    ctx = ctx_of(request)
    parts = _map_parts(ctx)
    return render(request, "dashboard.html", map=parts, live_ok=ctx.feed is not None and ctx.feed.available)


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(request: Request, alert_id: AlertId, user: User = Depends(page_user)) -> Response:
    ctx = ctx_of(request)
    detail = alert_detail(ctx, alert_id)
    record(ctx.repo, user, Action.VIEWED, alert_id, "page")
    return render(request, "alert_page.html", d=detail, strip=_strip(ctx, alert_id))


@router.get("/alerts/{alert_id}/panel", response_class=HTMLResponse)
def alert_panel(request: Request, alert_id: AlertId, user: User = Depends(page_user)) -> Response:
    ctx = ctx_of(request)
    detail = alert_detail(ctx, alert_id)
    record(ctx.repo, user, Action.VIEWED, alert_id, "panel")
    return render(request, "alert_panel.html", d=detail, strip=_strip(ctx, alert_id))


def _strip(ctx: Context, alert_id: str) -> str | None:
    a = find_alert(ctx, alert_id)
    return strip_svg(a.strip, title=f"ECG strip of alert {alert_id}") if a.strip is not None else None


@router.post("/alerts/{alert_id}/{action}")
def alert_form_action(request: Request, alert_id: AlertId,
                      action: Annotated[str, Path(pattern=r"^(acknowledge|resolve|reassign)$")],
                      csrf: Annotated[str, Form(max_length=100)] = "", user: User = Depends(page_user)) -> Response:
    check_csrf(request, user, csrf)
    do_action(ctx_of(request), user, alert_id, action)
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


# --- admin ------------------------------------------------------------------------------------------
@router.get("/admin/users", response_class=HTMLResponse)
def admin_users(request: Request, user: User = Depends(page_admin), msg: str = "") -> Response:
    return render(request, "admin_users.html", users=ctx_of(request).repo.list_users(), msg=msg[:200])


@router.post("/admin/users")
def admin_create_user(request: Request, username: Annotated[str, Form(max_length=64)],
                      password: Annotated[str, Form(max_length=256)], role: Annotated[str, Form(max_length=20)],
                      csrf: Annotated[str, Form(max_length=100)] = "", user: User = Depends(page_admin)) -> Response:
    check_csrf(request, user, csrf)
    ctx = ctx_of(request)
    try:
        body = UserCreate(username=username, password=password, role=role)  # type: ignore[arg-type]
    except ValueError:
        return RedirectResponse("/admin/users?msg=invalid+user+(username+3-32+lowercase,+password+12%2B)",
                                status_code=303)
    if not ctx.repo.create_user(body.username, hash_password(body.password), body.role):
        return RedirectResponse("/admin/users?msg=user+already+exists", status_code=303)
    record(ctx.repo, user, Action.USER_CREATED, None, f"{body.username} ({body.role})")
    return RedirectResponse(f"/admin/users?msg=created+{body.username}", status_code=303)


@router.get("/admin/units", response_class=HTMLResponse)
def admin_units(request: Request, user: User = Depends(page_admin)) -> Response:
    units = sorted(ctx_of(request).repo.units(), key=lambda u: u["unit_id"])
    return render(request, "admin_units.html", units=units)


@router.post("/admin/units/{unit_id}/status")
def admin_unit_status(request: Request, unit_id: Annotated[str, Path(pattern=ID_PATTERN)],
                      status: Annotated[str, Form(pattern=r"^(available|offline)$")],
                      csrf: Annotated[str, Form(max_length=100)] = "", user: User = Depends(page_admin)) -> Response:
    check_csrf(request, user, csrf)
    ctx = ctx_of(request)
    new = UnitStatus(status)
    old = UnitStatus.OFFLINE if new == UnitStatus.AVAILABLE else UnitStatus.AVAILABLE
    if ctx.repo.set_unit_idle_status(unit_id, old, new, user.username):
        record(ctx.repo, user, Action.UNIT_STATUS, None, f"{unit_id} -> {status}")
    return RedirectResponse("/admin/units", status_code=303)


@router.get("/admin/audit", response_class=HTMLResponse)
def admin_audit(request: Request, user: User = Depends(page_admin)) -> Response:
    return render(request, "admin_audit.html", entries=ctx_of(request).repo.audit_recent(300))


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, user: User = Depends(page_user)) -> Response:
    return render(request, "alerts.html", views=alert_views(ctx_of(request), include_resolved=True))
