"""Outbox retention after PUBACK and the publisher's replay after an upstream reconnect."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.outbox import Outbox
from gateway.publisher import Publisher


def items(n: int, start: int = 0) -> list[tuple[str, str, bytes, bool]]:
    return [("beat", "edge/s/d/events", f"m{start + i}".encode(), False) for i in range(n)]


def test_acked_entries_are_retained_not_pending_and_requeued(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", retain_s=60)
    ids = ob.append(items(5))
    assert ob.delete(ids[:3]) == 3 and ob.delete(ids[:3]) == 0  # a second PUBACK settles nothing
    assert len(ob) == 2 and ob.retained == 3
    assert [e.id for e in ob.peek(0, 10)] == ids[3:] and ob.first_id() == ids[3]
    assert ob.requeue_acked(0) == 3
    assert len(ob) == 5 and ob.retained == 0 and [e.id for e in ob.peek(0, 10)] == ids
    ob.delete(ids)
    assert ob.prune(now_ms=int(time.time() * 1000) + 61_000) == 5 and ob.retained == 0
    ob.close()
    again = Outbox(tmp_path / "o.db", retain_s=60)  # counts survive a restart
    assert len(again) == 0 and again.retained == 0


def test_without_retention_acked_entries_are_deleted(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ids = ob.append(items(3))
    ob.delete(ids)
    assert len(ob) == 0 and ob.retained == 0 and ob.requeue_acked(0) == 0


def test_retained_entries_make_room_first_and_are_not_counted_as_drops(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_entries=10, retain_s=600)
    ob.delete(ob.append(items(8)))
    ob.append([("summary", "t", b"s", False)] + items(4, 100))
    assert len(ob) == 5 and ob.retained == 5 and not ob.dropped


class FakeClient:
    """paho stand-in: PUBACKs every publish at once while ``up``."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.mid = 0
        self.publisher: Publisher | None = None
        self.up = True

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> Any:
        self.mid += 1
        self.sent.append(payload)
        assert self.publisher is not None
        self.publisher.on_publish(self, None, self.mid, SimpleNamespace(is_failure=False), None)
        return SimpleNamespace(rc=0, mid=self.mid)

    def is_connected(self) -> bool:
        return self.up


def wait(pred: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not pred():
        time.sleep(0.02)
    return bool(pred())


def test_publisher_replays_recent_acked_after_a_reconnect(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", retain_s=600)
    c = FakeClient()
    ok = SimpleNamespace(is_failure=False)
    p = Publisher(c, ob, inflight=10, replay_window_s=60, replay_delay_s=0.3)
    c.publisher = p
    p.start()
    try:
        p.on_connect(c, None, SimpleNamespace(session_present=False), ok, None)
        ob.append(items(5))
        p.wake()
        assert wait(lambda: p.idle() and len(c.sent) == 5)
        assert p.replays == 0  # the first connect replays nothing
        p.on_disconnect(c, None, None, ok, None)  # broker gone
        ob.append(items(2, 5))  # produced during the outage: kept pending
        time.sleep(0.2)
        assert len(c.sent) == 5 and len(ob) == 2
        p.on_connect(c, None, SimpleNamespace(session_present=True), ok, None)
        assert wait(lambda: len(c.sent) == 7)  # the backlog goes at once ...
        assert wait(lambda: p.replays == 1 and p.idle())  # ... the replay after the delay
        assert sorted(c.sent[7:]) == sorted(f"m{i}".encode() for i in range(7))  # everything, again
        assert ob.retained == 7 and p.replayed == 7
    finally:
        p.stop()
        ob.close()
