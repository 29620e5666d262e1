"""Audit log: who viewed, acknowledged, reassigned or resolved which alert (and admin actions)."""

from __future__ import annotations

import enum
import logging
from typing import Any

from map_ui.auth import User

log = logging.getLogger("map_ui.audit")


class Action(str, enum.Enum):
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    VIEWED = "viewed"
    ACKNOWLEDGED = "acknowledged"
    REASSIGNED = "reassigned"
    RESOLVED = "resolved"
    USER_CREATED = "user_created"
    UNIT_REGISTERED = "unit_registered"
    UNIT_STATUS = "unit_status"


def record(repo: Any, user: User | None, action: Action, alert_id: str | None = None, detail: str = "",
           username: str | None = None) -> None:
    """Write one audit entry (asynchronously); never fails the request that caused it."""
    name = user.username if user is not None else (username or "-")
    role = user.role if user is not None else "-"
    try:
        repo.audit(name, role, action.value, alert_id, detail)
    except Exception as err:  # noqa: BLE001 - the audit log must not break dispatching
        log.error("audit write failed (%s %s %s): %s", name, action.value, alert_id, err)
    log.info("audit: %s %s %s", name, action.value, alert_id or "")
