"""Plain ``user:password`` lines for Mosquitto's password file (hashed by ``mosquitto_passwd -U``).

Used by ``emon services up`` and, in docker-compose, by the one-shot ``mqtt-accounts``
service: ``python -m emon_core.devservices.accounts --out /accounts/passwd.plain``, with
secrets from ``EMON_MQTT_DEVICE_SECRET``, ``EMON_MQTT_GATEWAY_PASSWORD`` and
``EMON_MQTT_BRIDGE_PASSWORD`` (placeholders refused).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Mapping

from emon_core.adapters.mqtt import derive_password
from emon_core.registry import sim_device_id, sim_unit_id
from emon_core.settings import PLACEHOLDER_SECRETS


def account_lines(service_passwords: Mapping[str, str], secret: str, devices: int, units: int) -> list[str]:
    """Service accounts, then ``dev-00000..`` and ``unit-0000..`` with derived passwords."""
    lines = [f"{user}:{pw}" for user, pw in sorted(service_passwords.items())]
    lines += [f"{d}:{derive_password(d, secret)}" for d in map(sim_device_id, range(devices))]
    lines += [f"{u}:{derive_password(u, secret)}" for u in map(sim_unit_id, range(units))]
    return lines


def write_plain(path: Path, lines: list[str]) -> None:
    """Write the plain file with mode 600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=int(os.environ.get("EMON_SIM_DEVICES", "1000")))
    parser.add_argument("--units", type=int, default=int(os.environ.get("EMON_SIM_UNITS", "100")))
    args = parser.parse_args(argv)
    env = {k: os.environ.get(k, "") for k in
           ("EMON_MQTT_DEVICE_SECRET", "EMON_MQTT_GATEWAY_PASSWORD", "EMON_MQTT_BRIDGE_PASSWORD")}
    bad = [k for k, v in env.items() if v.strip().lower() in PLACEHOLDER_SECRETS]
    if bad:
        print(f"accounts: set {', '.join(bad)} (placeholders refused)", file=sys.stderr)
        return 2
    services = {"gateway": env["EMON_MQTT_GATEWAY_PASSWORD"], "bridge": env["EMON_MQTT_BRIDGE_PASSWORD"]}
    lines = account_lines(services, env["EMON_MQTT_DEVICE_SECRET"], args.devices, args.units)
    write_plain(args.out, lines)
    print(f"accounts: {len(lines)} MQTT accounts written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
