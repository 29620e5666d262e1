"""FastAPI application factory: session middleware, static assets, API and pages, live feed."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from emon_core.contracts import Alert, Assignment, UnitPosition
from map_ui.auth import COOKIE, NotAuthenticated, SessionCodec, hash_password
from map_ui.live import Broadcaster, KafkaFeed, LiveState, Publisher
from map_ui.settings import MapSettings

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent


@dataclass
class Context:
    """Everything a request handler needs; stored on ``app.state.ctx``."""

    settings: MapSettings
    repo: Any
    codec: SessionCodec
    state: LiveState
    broadcaster: Broadcaster
    publisher: Any = None
    feed: KafkaFeed | None = None
    map_cache: dict[str, Any] = field(default_factory=dict)
    login_failures: dict[str, Any] = field(default_factory=dict)  # client|user -> deque of times


def bootstrap_users(repo: Any) -> None:
    """Create the generated development logins (admin, dispatcher) if they are not users yet."""
    from emon_core.settings import dev_login

    for role in ("admin", "dispatcher"):
        login = dev_login(role)
        if login is not None and repo.get_user(login[0]) is None:
            repo.create_user(login[0], hash_password(login[1]), role)
            log.info("created %s login %s from the development credentials", role, login[0])


def _event_payload(kind: str, obj: Any) -> Any:
    if kind == "alert":
        return obj.model_copy(update={"strip": None}).model_dump(mode="json", by_alias=True) | {
            "has_strip": obj.strip is not None}
    if kind == "positions":
        return [p.model_dump(mode="json", by_alias=True) for p in obj]
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True)
    return obj


def create_app(settings: MapSettings | None = None, *, repo: Any = None, kafka: Any = None,
               live: bool | None = None) -> FastAPI:
    """Build the app. ``repo`` defaults to a Cassandra repository; ``kafka`` to KafkaSettings."""
    from emon_core.settings import CassandraSettings, KafkaSettings, load

    settings = settings or load(MapSettings)
    if repo is None:
        from map_ui.repository import Repository, connect

        repo = Repository(connect(load(CassandraSettings)))
    kafka = kafka or load(KafkaSettings)
    live = settings.kafka_live if live is None else live
    ctx = Context(settings, repo, SessionCodec(settings.session_key(), settings.idle_timeout_s,
                                               settings.max_session_s, settings.cookie_secure),
                  LiveState(settings.max_alerts), Broadcaster())

    def on_event(kind: str, obj: Any) -> None:
        ctx.broadcaster.publish(kind, _event_payload(kind, obj))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.broadcaster.bind(asyncio.get_running_loop())
        bootstrap_users(repo)
        try:  # what the hub stored (Kafka's lookback window fills in the rest)
            for a in await asyncio.get_running_loop().run_in_executor(
                    None, getattr(repo, "recent_alerts", lambda _h: []), settings.alert_lookback_h):
                ctx.state.apply_alert(a)
        except Exception as err:  # noqa: BLE001 - the live feed still works
            log.warning("could not preload alerts from Cassandra: %s", err)
        if live:
            try:
                ctx.publisher = Publisher(kafka)
            except Exception as err:  # noqa: BLE001 - actions report 503 until Kafka is back
                log.error("Kafka producer unavailable: %s", err)
            ctx.feed = KafkaFeed(kafka, ctx.state, on_event, settings.alert_lookback_h)
            ctx.feed.start()
            await asyncio.get_running_loop().run_in_executor(None, ctx.feed.ready.wait, 10.0)
        yield
        if ctx.feed is not None:
            ctx.feed.stop()
        if ctx.publisher is not None:
            ctx.publisher.close()

    app = FastAPI(title="E-Monitor dispatcher API", version="1.0",
                  description="Alerts, patients, paramedic units and assignments. Every route needs a "
                              "session (log in at /login); admin routes need the admin role.",
                  docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.ctx = ctx
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["clock"] = clock
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def session_middleware(request: Request, call_next: Any) -> Any:
        user = ctx.codec.load(request.cookies.get(COOKIE))
        request.state.user = user
        response = await call_next(request)
        path = request.url.path
        if user is not None and not path.startswith("/static") and path not in ("/logout", "/api/stream") \
                and COOKIE not in response.headers.get("set-cookie", ""):
            ctx.codec.set_cookie(response, ctx.codec.dump(user))  # sliding idle timeout
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not path.startswith("/static"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(NotAuthenticated)
    async def _login_redirect(request: Request, exc: NotAuthenticated) -> Any:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        wants_html = "text/html" in request.headers.get("accept", "")
        if wants_html and not request.url.path.startswith(("/api/", "/openapi.json")):
            return templates.TemplateResponse(
                request, "error.html", {"user": getattr(request.state, "user", None), "settings": settings,
                                        "status_code": exc.status_code, "message": exc.detail},
                status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Any:
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:200], "type": e.get("type")}
                  for e in exc.errors()[:20]]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "service temporarily unavailable"}, status_code=503)

    from map_ui import routes_api, routes_pages

    app.include_router(routes_api.router)
    app.include_router(routes_pages.router)
    return app


def publish_local(ctx: Context, kind: str, obj: Any) -> None:
    """Tell every connected dispatcher about a change made through this instance."""
    if isinstance(obj, (Alert, Assignment, UnitPosition)):
        ctx.broadcaster.publish(kind, _event_payload(kind, obj))
    else:
        ctx.broadcaster.publish(kind, obj)


def clock(ms: int | None) -> str:
    """Epoch ms as ``YYYY-MM-DD HH:MM:SS`` UTC (pages; the browser shows local times live)."""
    if not ms:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def now_ms() -> int:
    return int(time.time() * 1000)


def http_error(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)
