"""Process manager for the dev services: pid files, identity by command line, graceful stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from emon_core.settings import state_dir


@dataclass(frozen=True)
class ProcRecord:
    """What a pid file holds: the pid and a string its command line must contain."""

    name: str
    pid: int
    marker: str
    started_at: float


def pids_dir() -> Path:
    return state_dir() / "pids"


def logs_dir() -> Path:
    return state_dir() / "logs"


def pid_file(name: str) -> Path:
    return pids_dir() / f"{name}.pid"


def read_record(name: str) -> ProcRecord | None:
    try:
        return ProcRecord(**json.loads(pid_file(name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def cmdline(pid: int) -> str:
    """The process's command line joined by spaces ('' if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def is_ours(rec: ProcRecord) -> bool:
    """True if ``rec.pid`` is alive and is the process we started (cmdline has the marker)."""
    return not _is_zombie(rec.pid) and rec.marker in cmdline(rec.pid)


def running(name: str) -> ProcRecord | None:
    """The live record of service ``name``, or None (stale pid files are removed)."""
    rec = read_record(name)
    if rec is None:
        return None
    if is_ours(rec):
        return rec
    pid_file(name).unlink(missing_ok=True)
    return None


def _normal_priority() -> None:
    """Run services at nice 0 even when `up` was called from a niced shell (needs root)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass


def spawn(
    name: str,
    argv: Sequence[str],
    marker: str,
    out_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session with stdout/stderr appended to ``out_file``."""
    if marker not in " ".join(argv):
        raise ValueError(f"{name}: marker {marker!r} must appear in the command line")
    pids_dir().mkdir(parents=True, exist_ok=True)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
            preexec_fn=_normal_priority,
        )
    rec = ProcRecord(name=name, pid=proc.pid, marker=marker, started_at=time.time())
    tmp = pid_file(name).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(rec)))
    tmp.replace(pid_file(name))
    return proc


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        except ChildProcessError:
            pass
        if _is_zombie(pid):
            return True
        time.sleep(0.1)
    return _is_zombie(pid)


def stop(name: str, timeout_s: float = 60.0) -> str:
    """SIGTERM the service we started, SIGKILL after ``timeout_s``; returns what happened."""
    rec = running(name)
    if rec is None:
        pid_file(name).unlink(missing_ok=True)
        return "not running"
    os.kill(rec.pid, signal.SIGTERM)
    how = "stopped"
    if not _wait_gone(rec.pid, timeout_s):
        os.kill(rec.pid, signal.SIGKILL)
        _wait_gone(rec.pid, 10)
        how = f"killed after {timeout_s:.0f} s"
    pid_file(name).unlink(missing_ok=True)
    return how


def kill(name: str) -> str:
    """SIGKILL the service (fault tests); the pid file is removed."""
    rec = running(name)
    if rec is None:
        return "not running"
    os.kill(rec.pid, signal.SIGKILL)
    _wait_gone(rec.pid, 10)
    pid_file(name).unlink(missing_ok=True)
    return "killed"


def signal_service(name: str, sig: int) -> bool:
    rec = running(name)
    if rec is None:
        return False
    os.kill(rec.pid, sig)
    return True


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 if unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    """Last ``lines`` lines of a text file ('' if missing)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 200 * lines))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
