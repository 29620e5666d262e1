"""emon_core.supervisor: start, alive, stop, kill, restart, stop_all in reverse order."""

from __future__ import annotations

import sys
import time

from emon_core.supervisor import Supervisor

SLEEPER = [sys.executable, "-c", "import time,sys; print('U'+'P', flush=True); time.sleep(60)"]
TRAP = [
    sys.executable,
    "-c",
    "import signal,sys,time\n"
    "def h(s,f):\n print('bye', flush=True); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM,h)\nprint('U'+'P', flush=True)\ntime.sleep(60)",
]


def _wait_log(sup: Supervisor, name: str, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in sup.tail(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert text in sup.tail(name)


def test_lifecycle(tmp_path):
    with Supervisor(tmp_path / "logs", stop_timeout_s=5) as sup:
        sup.start("a", TRAP)
        sup.start("b", SLEEPER, env={"X": "1"})
        assert sup.alive("a") and sup.alive("b")
        _wait_log(sup, "a", "UP")
        assert sup.stop("a") == 0
        assert "bye" in sup.tail("a")
        assert not sup.alive("a")
        assert sup.kill("b") == -9
        assert not sup.alive("b")
        sup.restart("b")
        assert sup.alive("b")
        assert sup.exited() == {"a": 0}
        res = sup.stop_all()
        assert list(res) == ["b", "a"]
        assert not sup.alive("b")
    assert (tmp_path / "logs" / "a.log").exists()


def test_start_twice_refused(tmp_path):
    sup = Supervisor(tmp_path)
    try:
        sup.start("a", SLEEPER)
        try:
            sup.start("a", SLEEPER)
        except ValueError:
            pass
        else:
            raise AssertionError("second start accepted")
    finally:
        sup.stop_all(timeout_s=2)
