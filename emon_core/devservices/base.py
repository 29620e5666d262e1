"""What every dev service provides, and the start/wait/stop logic they share."""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from emon_core.devservices import procs
from emon_core.errors import ServiceError
from emon_core.settings import REPO_ROOT, state_dir

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


def cache_dir() -> Path:
    """Downloaded artifacts (Maven jars), reused across state resets (git-ignored)."""
    return REPO_ROOT / ".cache"


@dataclass
class Status:
    name: str
    up: bool
    pid: int | None
    ports: list[int]
    rss_bytes: int
    version: str
    detail: str = ""


class Service:
    """A local service run from the project's state dir; subclasses fill in the specifics."""

    name = ""
    version = ""
    ports: tuple[int, ...] = ()  # set per instance from settings
    ready_timeout_s = 120.0

    # --- to implement --------------------------------------------------------------
    def install(self) -> None:
        """Make the binary or jars available (cached; fast when already there)."""

    def prepare(self) -> None:
        """Write config files, create data dirs, format storage (idempotent)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def probe(self) -> bool:
        """True when the service answers requests (called repeatedly while starting)."""
        return all(procs.port_open(HOST, p) for p in self.probe_ports)

    @property
    def probe_ports(self) -> tuple[int, ...]:
        """Ports a liveness check may connect to (a bare TCP connect must not upset them)."""
        return self.ports

    # --- shared --------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return state_dir() / self.name

    @property
    def marker(self) -> str:
        """String in our command line that identifies this service of this state dir."""
        return str(self.home)

    @property
    def log_file(self) -> Path:
        return procs.logs_dir() / f"{self.name}.log"

    @property
    def out_file(self) -> Path:
        return procs.logs_dir() / f"{self.name}.out"

    def env(self) -> dict[str, str]:
        return {}

    def check_ports_free(self) -> None:
        busy = [p for p in self.ports if procs.port_open(HOST, p)]
        if busy:
            raise ServiceError(
                f"{self.name}: port(s) {', '.join(map(str, busy))} on {HOST} already in use by a "
                "process this project did not start; stop it (e.g. `ss -ltnp`) and retry"
            )

    def start(self) -> subprocess.Popen[bytes] | None:
        """Spawn the service unless it is already running; returns the process or None."""
        if procs.running(self.name):
            return None
        self.check_ports_free()
        self.install()
        self.prepare()
        log.info("starting %s %s", self.name, self.version)
        return procs.spawn(self.name, self.command(), self.marker, self.out_file, env=self.env(),
                           cwd=self.home)

    def wait_ready(self, proc: subprocess.Popen[bytes] | None, timeout_s: float | None = None) -> float:
        """Wait until :meth:`probe` succeeds; returns seconds waited. ServiceError on failure."""
        timeout = self.ready_timeout_s if timeout_s is None else timeout_s
        t0 = time.monotonic()
        while True:
            if proc is not None and proc.poll() is not None:
                raise ServiceError(self._failure(f"exited with code {proc.returncode} while starting"))
            if proc is None and not procs.running(self.name):
                raise ServiceError(self._failure("is not running"))
            try:
                if self.probe():
                    return time.monotonic() - t0
            except Exception as err:  # a probe must never crash the wait
                log.debug("%s probe: %s", self.name, err)
            if time.monotonic() - t0 > timeout:
                raise ServiceError(self._failure(f"not ready after {timeout:.0f} s"))
            time.sleep(0.5)

    def _failure(self, what: str) -> str:
        last = procs.tail(self.log_file, 15) or procs.tail(self.out_file, 15)
        out = procs.tail(self.out_file, 5)
        return (
            f"{self.name} {what}. Logs: {self.log_file} and {self.out_file}. "
            f"Try `emon services logs {self.name}`, then `emon services down && emon services up`.\n"
            f"--- last lines of the log ---\n{last}\n--- last lines of stdout ---\n{out}"
        )

    def stop(self, timeout_s: float = 60.0) -> str:
        return procs.stop(self.name, timeout_s)

    def status(self) -> Status:
        rec = procs.running(self.name)
        up = rec is not None and all(procs.port_open(HOST, p) for p in self.probe_ports)
        detail = "" if rec is None or up else "process alive, ports not open (starting?)"
        return Status(
            name=self.name,
            up=up,
            pid=rec.pid if rec else None,
            ports=list(self.ports),
            rss_bytes=procs.rss_bytes(rec.pid) if rec else 0,
            version=self.version,
            detail=detail,
        )
