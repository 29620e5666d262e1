"""Device and unit registries: which device belongs to which patient and site.

A gateway serves one site and accepts frames only from devices in its registry
(unknown devices are counted and dropped). Simulated fleets use the naming
convention below so every component agrees without a shared file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from emon_core.errors import ConfigError


def sim_device_id(n: int) -> str:
    """Device id of simulated patient ``n`` (``dev-00042``)."""
    return f"dev-{n:05d}"


def sim_patient_id(n: int) -> str:
    """Patient id of simulated patient ``n`` (``pat-00042``)."""
    return f"pat-{n:05d}"


def sim_unit_id(n: int) -> str:
    """Unit id of simulated paramedic unit ``n`` (``unit-0042``)."""
    return f"unit-{n:04d}"


def sim_site_id(n: int, patients_per_site: int = 1000) -> str:
    """Site of simulated patient ``n``: sites group consecutive patients."""
    return f"site-{n // patients_per_site:02d}"


@dataclass(frozen=True)
class DeviceEntry:
    device_id: str
    patient_id: str
    site_id: str


class DeviceRegistry:
    """device_id -> DeviceEntry for one or more sites."""

    def __init__(self, entries: list[DeviceEntry]) -> None:
        self._by_device = {e.device_id: e for e in entries}

    def __len__(self) -> int:
        return len(self._by_device)

    def get(self, device_id: str) -> DeviceEntry | None:
        return self._by_device.get(device_id)

    def for_site(self, site_id: str) -> "DeviceRegistry":
        return DeviceRegistry([e for e in self._by_device.values() if e.site_id == site_id])

    def entries(self) -> list[DeviceEntry]:
        return list(self._by_device.values())

    @classmethod
    def simulated(cls, count: int, patients_per_site: int = 1000, start: int = 0) -> "DeviceRegistry":
        """Registry of simulated patients ``start .. start+count-1``."""
        return cls(
            [
                DeviceEntry(sim_device_id(n), sim_patient_id(n), sim_site_id(n, patients_per_site))
                for n in range(start, start + count)
            ]
        )

    @classmethod
    def from_file(cls, path: Path) -> "DeviceRegistry":
        """Load a CSV (device_id,patient_id,site_id) or JSON list of such objects."""
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(f"device registry {path}: {err}") from err
        try:
            if path.suffix == ".json":
                rows = json.loads(text)
            else:
                rows = list(csv.DictReader(text.splitlines()))
            return cls([DeviceEntry(r["device_id"], r["patient_id"], r["site_id"]) for r in rows])
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"device registry {path}: bad row ({err})") from err
