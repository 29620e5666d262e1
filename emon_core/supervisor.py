"""A small process supervisor for running components as subprocesses (demo, load test).

Each component runs in its own session (process group) with stdout/stderr appended to
``<log_dir>/<name>.log``. Nothing is restarted automatically: a component that exits stays
down and is reported by :meth:`Supervisor.alive` / :meth:`Supervisor.exited`. Stopping sends
SIGTERM (or SIGINT) to the whole process group, waits, then SIGKILLs; :meth:`stop_all`
stops in reverse start order, so start producers last and consumers first if you want
consumers to drain.

    sup = Supervisor(log_dir=state_dir() / "logs" / "demo")
    sup.start("hub", ["emon", "hub"])
    sup.alive("hub")     # True
    sup.kill("hub")      # SIGKILL, e.g. for a fault test
    sup.restart("hub")   # same argv/env as the last start
    sup.stop_all()

Use it as a context manager to stop everything on the way out, and call
:func:`install_signal_handlers` to turn SIGTERM into KeyboardInterrupt in the main thread.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

log = logging.getLogger(__name__)


@dataclass
class Managed:
    """One supervised component: what was started, and the live process."""

    name: str
    argv: list[str]
    env: dict[str, str] | None
    log_path: Path
    proc: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.time)
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.proc.pid


class Supervisor:
    """Starts, stops and kills named subprocesses; restarts none by itself.

    ``log_dir``: where ``<name>.log`` goes (created). ``env``: extra variables for every
    child (on top of ``os.environ``; a ``start(env=...)`` adds to it). ``stop_timeout_s``:
    how long :meth:`stop` waits after the signal before SIGKILL.
    """

    def __init__(
        self,
        log_dir: Path | str,
        env: Mapping[str, str] | None = None,
        stop_timeout_s: float = 15.0,
        cwd: Path | str | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.base_env = dict(env or {})
        self.stop_timeout_s = stop_timeout_s
        self.cwd = str(cwd) if cwd else None
        self._procs: dict[str, Managed] = {}
        self._order: list[str] = []
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ start / query
    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Managed:
        """Start ``argv`` as component ``name``; its output is appended to ``<name>.log``.

        Raises ValueError if ``name`` is already running.
        """
        with self._lock:
            cur = self._procs.get(name)
            if cur is not None and cur.proc.poll() is None:
                raise ValueError(f"{name} is already running (pid {cur.pid})")
            log_path = self.log_dir / f"{name}.log"
            child_env = {**os.environ, **self.base_env, **(env or {})}
            child_env.setdefault("PYTHONUNBUFFERED", "1")
            with open(log_path, "ab") as out:
                out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start {name}: {' '.join(argv)}\n".encode())
                out.flush()
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=child_env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            m = Managed(name, list(argv), dict(env) if env else None, log_path, proc, stop_signal=stop_signal)
            self._procs[name] = m
            if name in self._order:
                self._order.remove(name)
            self._order.append(name)
            log.debug("started %s pid %d: %s", name, proc.pid, " ".join(argv))
            return m

    def alive(self, name: str) -> bool:
        m = self._procs.get(name)
        return m is not None and m.proc.poll() is None

    def returncode(self, name: str) -> int | None:
        """Exit code of ``name`` (None while running or if never started)."""
        m = self._procs.get(name)
        return None if m is None else m.proc.poll()

    def pid(self, name: str) -> int | None:
        m = self._procs.get(name)
        return None if m is None else m.pid

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def names(self) -> list[str]:
        """Components in start order (running or not)."""
        return list(self._order)

    def exited(self) -> dict[str, int]:
        """Components that have exited on their own or were stopped: name -> exit code."""
        out = {}
        for name in self._order:
            rc = self._procs[name].proc.poll()
            if rc is not None:
                out[name] = rc
        return out

    def tail(self, name: str, lines: int = 20) -> str:
        """The last ``lines`` lines of the component's log."""
        try:
            with open(self.log_path(name), "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 300 * lines))
                data = fh.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])

    # ------------------------------------------------------------------ stop / kill
    def _signal_group(self, m: Managed, sig: int) -> None:
        try:
            os.killpg(m.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:  # pragma: no cover - group changed owner; fall back to the pid
            try:
                os.kill(m.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, name: str, timeout_s: float | None = None) -> int | None:
        """Stop ``name`` gracefully (its stop signal to the group, SIGKILL after the timeout).

        Returns the exit code (None if it was never started).
        """
        m = self._procs.get(name)
        if m is None:
            return None
        timeout = self.stop_timeout_s if timeout_s is None else timeout_s
        if m.proc.poll() is None:
            self._signal_group(m, m.stop_signal)
            try:
                m.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: SIGKILL", name, timeout)
                self._signal_group(m, signal.SIGKILL)
                m.proc.wait(10)
        # also reap any child left behind in the group (e.g. a worker pool)
        self._signal_group(m, signal.SIGKILL)
        return m.proc.returncode

    def kill(self, name: str) -> int | None:
        """SIGKILL ``name``'s process group at once (fault tests). Returns the exit code."""
        m = self._procs.get(name)
        if m is None:
            return None
        self._signal_group(m, signal.SIGKILL)
        try:
            m.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        return m.proc.returncode

    def restart(self, name: str, timeout_s: float | None = None) -> Managed:
        """Stop ``name`` (if running) and start it again with the same argv and env."""
        m = self._procs.get(name)
        if m is None:
            raise KeyError(name)
        self.stop(name, timeout_s)
        return self.start(name, m.argv, m.env, m.stop_signal)

    def stop_all(self, timeout_s: float | None = None) -> dict[str, int | None]:
        """Stop every component in reverse start order; returns name -> exit code.

        Signals each in turn and waits for it, so a consumer started before its producer
        keeps running until the producer is gone.
        """
        results: dict[str, int | None] = {}
        with self._lock:
            for name in reversed(self._order):
                try:
                    results[name] = self.stop(name, timeout_s)
                except Exception as err:  # noqa: BLE001 - keep stopping the others
                    log.error("stopping %s: %s", name, err)
                    self.kill(name)
                    results[name] = self.returncode(name)
        return results

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def install_signal_handlers() -> None:
    """Make SIGINT, SIGTERM (and SIGHUP) raise KeyboardInterrupt in the main thread.

    SIGINT is set explicitly because a process started in the background by a
    non-interactive shell (``make demo &``, CI) inherits SIGINT ignored.
    """

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _raise)


def emon_argv(*args: str) -> list[str]:
    """``[python, -m, emon_core.cli, *args]`` with this interpreter (works without PATH)."""
    return [sys.executable, "-m", "emon_core.cli", *args]
