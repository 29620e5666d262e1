"""Small HTTP server every service uses for ``/metrics`` (Prometheus text) and ``/healthz`` (JSON; 200 healthy, 503 not)."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

HealthFn = Callable[[], tuple[bool, dict[str, Any]]]


class HttpEndpoints:
    """Serve ``/metrics`` from ``registry`` and ``/healthz`` from ``health()`` on a daemon thread.
    """

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: HealthFn) -> None:
        registry_, health_ = registry, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = generate_latest(registry_), CONTENT_TYPE_LATEST, 200
                elif path in ("/healthz", "/health"):
                    try:
                        ok, detail = health_()
                    except Exception as err:  # noqa: BLE001 - a failing check is unhealthy, not a crash
                        ok, detail = False, {"error": str(err)[:200]}
                    body = json.dumps({"ok": ok, **detail}, default=str).encode()
                    ctype, code = "application/json", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("http: " + fmt, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    def start(self) -> "HttpEndpoints":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
