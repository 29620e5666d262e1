"""run_concurrent: bounded in-flight writes; a busy connection is backpressure, any other error fails the round."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionBusy

from hub.store import WriteFailed, run_concurrent


class _Future:
    def __init__(self, outcome: BaseException | None) -> None:
        self.outcome = outcome

    def add_callbacks(self, ok: Any, err: Any, callback_args: tuple = (), errback_args: tuple = ()) -> None:
        # complete on another thread, as the driver's event loop does
        if self.outcome is None:
            threading.Timer(0.001, ok, args=(None, *callback_args)).start()
        else:
            threading.Timer(0.001, err, args=(self.outcome, *errback_args)).start()


class _Session:
    """Refuses the first ``busy`` submissions of each statement with ConnectionBusy, then fails ``fail``."""

    def __init__(self, busy: int = 0, fail: set[str] | None = None) -> None:
        self.busy, self.fail = busy, fail or set()
        self.seen: dict[str, int] = {}
        self.in_flight = self.max_in_flight = 0
        self.done: list[str] = []
        self.lock = threading.Lock()

    def execute_async(self, stmt: str, params: Any) -> _Future:
        with self.lock:
            self.seen[stmt] = self.seen.get(stmt, 0) + 1
            if self.seen[stmt] <= self.busy:
                return _Future(NoHostAvailable("busy", {"127.0.0.1": ConnectionBusy("overloaded")}))
            if stmt in self.fail:
                return _Future(RuntimeError("write timeout"))
            self.done.append(stmt)
            return _Future(None)


def test_busy_connection_requests_are_resubmitted_and_all_complete() -> None:
    s = _Session(busy=2)
    reqs = [(f"w{i}", None) for i in range(50)]
    assert run_concurrent(s, reqs, concurrency=8) == 50
    assert sorted(s.done) == sorted(r[0] for r in reqs)  # each once
    assert all(n == 3 for n in s.seen.values())


def test_other_errors_fail_the_round() -> None:
    with pytest.raises(WriteFailed, match="write timeout"):
        run_concurrent(_Session(fail={"w3"}), [(f"w{i}", None) for i in range(10)], concurrency=4)


def test_busy_retries_are_bounded() -> None:
    with pytest.raises(WriteFailed, match="busy"):
        run_concurrent(_Session(busy=10**6), [("w0", None)], concurrency=2, busy_retries=5)
