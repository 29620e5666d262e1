"""Schemathesis fuzzes every API operation from the OpenAPI document: never a 5xx."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from map_ui.app import create_app  # noqa: E402
from map_ui.auth import hash_password  # noqa: E402
from map_ui.settings import MapSettings  # noqa: E402
from test_map_fakes import FakeRepo, sample_alert  # noqa: E402

_repo = FakeRepo()
_repo.create_user("root", hash_password("correct horse battery"), "admin")
_app = create_app(MapSettings(secret_key="f" * 40), repo=_repo, live=False)
_app.state.ctx.state.apply_alert(sample_alert("a1"))
_client = TestClient(_app, base_url="https://testserver")
_client.post("/login", data={"username": "root", "password": "correct horse battery"})
_csrf = _client.get("/api/me").json()["csrf_token"]
schema = schemathesis.openapi.from_dict(_client.get("/openapi.json").json())


@schema.exclude(path="/api/stream").parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case) -> None:  # noqa: ANN001 - schemathesis case
    from schemathesis.core import NOT_SET

    body = None if case.body is NOT_SET else case.body
    kw = {"content": body} if isinstance(body, (bytes, str)) else {"json": body}
    headers = {"X-CSRF-Token": _csrf, **({"content-type": "application/json"} if body is not None else {})}
    r = _client.request(case.method, case.formatted_path, params=case.query or None, headers=headers, **kw)
    assert r.status_code < 500, (case.method, case.formatted_path, r.status_code, r.text[:200])
