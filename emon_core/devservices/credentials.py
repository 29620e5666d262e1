"""Generated development credentials: service accounts, web logins, the device secret."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from emon_core.settings import credentials_file

SERVICE_ACCOUNTS = ("gateway", "bridge")
WEB_LOGINS = ("admin", "dispatcher")
DEFAULT_DEVICES = 3000  # dev-00000 .. dev-02999
DEFAULT_UNITS = 1000  # unit-0000 .. unit-0999


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 600 (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def load() -> dict[str, Any]:
    path = credentials_file()
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))


def ensure() -> dict[str, Any]:
    """Create or complete ``<state>/credentials.json``; existing secrets are kept."""
    data = load()
    changed = not data
    mqtt = data.setdefault("mqtt", {})
    for user in SERVICE_ACCOUNTS:
        if not mqtt.get(user):
            mqtt[user] = secrets.token_urlsafe(18)
            changed = True
    if not data.get("device_secret"):
        data["device_secret"] = secrets.token_hex(32)
        changed = True
    web = data.setdefault("web", {})
    for kind in WEB_LOGINS:
        if not web.get(kind):
            web[kind] = {"username": kind, "password": secrets.token_urlsafe(12)}
            changed = True
    prov = data.setdefault("provisioned", {})
    for key, default in (("devices", DEFAULT_DEVICES), ("units", DEFAULT_UNITS)):
        if int(prov.get(key, 0)) < default:
            prov[key] = default
            changed = True
    if changed:
        write_private(credentials_file(), json.dumps(data, indent=2) + "\n")
    return data


def set_provisioned(devices: int, units: int) -> dict[str, Any]:
    """Record how many simulated devices/units get a broker account."""
    data = ensure()
    data["provisioned"] = {"devices": int(devices), "units": int(units)}
    write_private(credentials_file(), json.dumps(data, indent=2) + "\n")
    return data
