"""Gateway outbox: order, durability across reopen, bounded size with the drop policy."""

from __future__ import annotations

from pathlib import Path

from gateway.outbox import Outbox


def _items(kind: str, n: int, start: int = 0) -> list[tuple[str, str, bytes, bool]]:
    return [(kind, f"edge/s/d/{kind}", f"{kind}-{start + i}".encode(), False) for i in range(n)]


def test_fifo_order_and_delete_only_acked(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ids = ob.append(_items("beat", 3) + _items("summary", 2))
    assert [e.payload for e in ob.peek(0, 10)] == [b"beat-0", b"beat-1", b"beat-2", b"summary-0", b"summary-1"]
    assert [e.id for e in ob.peek(ids[1], 2)] == ids[2:4]
    assert ob.delete([ids[0], ids[2], 999_999]) == 2
    assert [e.payload for e in ob.peek(0, 10)] == [b"beat-1", b"summary-0", b"summary-1"]
    assert len(ob) == 3 and ob.first_id() == ids[1]


def test_survives_reopen(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ids = ob.append(_items("event", 5))
    ob.delete(ids[:2])
    ob.close()
    again = Outbox(tmp_path / "o.db")
    assert [e.payload for e in again.peek(0, 10)] == [b"event-2", b"event-3", b"event-4"]
    assert len(again) == 3 and again.size_bytes == sum(len(e.payload) for e in again.peek(0, 10))
    new = again.append(_items("event", 1, start=5))
    assert new[0] > ids[-1]  # ids never go back: order is kept across restarts


def test_full_drops_oldest_summaries_before_any_beat_or_event(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_entries=10)
    ob.append(_items("event", 2) + _items("summary", 4) + _items("beat", 3) + _items("status", 1))
    ob.append(_items("summary", 3, start=4))  # 13 entries: three must go
    kept = [e.payload for e in ob.peek(0, 100)]
    assert len(kept) == 10
    assert b"summary-0" not in kept and b"summary-1" not in kept and b"summary-2" not in kept
    assert all(p in kept for p in (b"event-0", b"event-1", b"beat-0", b"beat-1", b"beat-2", b"status-0"))
    assert ob.dropped == {"summary": 3}
    # only beats and events left: beats go before events
    ob2 = Outbox(tmp_path / "o2.db", max_entries=4)
    ob2.append(_items("event", 2) + _items("beat", 2))
    ob2.append(_items("event", 2, start=2))
    kept = [e.payload for e in ob2.peek(0, 100)]
    assert kept == [b"event-0", b"event-1", b"event-2", b"event-3"]
    assert ob2.dropped == {"beat": 2}


def test_byte_bound(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_entries=1000, max_bytes=100)
    ob.append([("summary", "t", b"x" * 40, False), ("beat", "t", b"y" * 40, False), ("summary", "t", b"z" * 40, False)])
    assert ob.size_bytes <= 100
    assert ob.dropped == {"summary": 1}
    assert [e.payload[:1] for e in ob.peek(0, 10)] == [b"y", b"z"]
