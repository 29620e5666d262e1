"""Durable outbox: everything the gateway publishes is first committed to SQLite (WAL) on disk.

Entries are drained in insertion order and deleted only after the broker's PUBACK, so
output survives a broker outage and a gateway restart (at-least-once: an entry whose
PUBACK was lost is sent again, with the same message ids).

Bounded size, policy when full (``max_entries`` or ``max_bytes``): the oldest entries of
the lowest priority go first: **summaries** (priority 0), then gateway **status** (1),
then **flagged beats** (2); **rhythm events** (3) are dropped only when nothing else is
left. Every drop is counted by kind (``dropped``).

Thread-safety: one connection guarded by a lock; the pipeline appends, the publisher
reads and deletes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

#: kind -> priority (lower is dropped first when the outbox is full)
PRIORITY: dict[str, int] = {"summary": 0, "status": 1, "beat": 2, "event": 3}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, id);
"""


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    kind: str
    topic: str
    payload: bytes
    retain: bool
    created_ms: int


class Outbox:
    """A bounded, durable FIFO of MQTT messages.

    Example:
        >>> ob = Outbox(tmp_path / "outbox.db")  # doctest: +SKIP
        >>> ob.append([("event", "edge/s/d/events", b"{}", False)])  # doctest: +SKIP
        >>> [e.id for e in ob.peek(after_id=0, limit=10)]  # doctest: +SKIP
        [1]
    """

    def __init__(self, path: Path | str, max_entries: int = 200_000, max_bytes: int = 512 << 20,
                 synchronous: str = "normal") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        self.dropped: Counter[str] = Counter()
        self.appended = 0
        self.deleted = 0
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        self.last_delete_mono = time.monotonic()

    # -- size -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def oldest_age_s(self) -> float:
        with self._lock:
            row = self._db.execute("SELECT MIN(created_ms) FROM outbox").fetchone()
        return 0.0 if row[0] is None else max(0.0, time.time() - row[0] / 1000.0)

    # -- writes -----------------------------------------------------------------------------

    def append(self, items: list[tuple[str, str, bytes, bool]]) -> list[int]:
        """Commit ``(kind, topic, payload, retain)`` items in one transaction; returns their ids."""
        if not items:
            return []
        now = int(time.time() * 1000)
        ids: list[int] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for kind, topic, payload, retain in items:
                    cur = self._db.execute(
                        "INSERT INTO outbox (kind, priority, topic, payload, retain, created_ms) VALUES (?,?,?,?,?,?)",
                        (kind, PRIORITY[kind], topic, payload, int(retain), now),
                    )
                    ids.append(int(cur.lastrowid or 0))
                    self._count += 1
                    self._bytes += len(payload)
                self._enforce_bounds()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
                self._count, self._bytes = int(row[0]), int(row[1])
                raise
        self.appended += len(items)
        return ids

    def _enforce_bounds(self) -> None:
        while self._count > self.max_entries or self._bytes > self.max_bytes:
            excess = max(self._count - self.max_entries, 1)
            row = self._db.execute("SELECT MIN(priority) FROM outbox").fetchone()
            if row[0] is None:
                return
            victims = self._db.execute(
                "SELECT id, kind, LENGTH(payload) FROM outbox WHERE priority = ? ORDER BY id LIMIT ?",
                (int(row[0]), min(excess, 1000)),
            ).fetchall()
            if self._count <= self.max_entries:  # over the byte bound: drop one at a time
                victims = victims[:1]
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(v[0],) for v in victims])
            for _, kind, size in victims:
                self.dropped[kind] += 1
                self._count -= 1
                self._bytes -= int(size)

    def delete(self, ids: list[int]) -> int:
        """Remove acknowledged entries (unknown ids are ignored); returns how many were removed."""
        if not ids:
            return 0
        removed = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for i in ids:
                    row = self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload)", (i,)).fetchone()
                    if row is not None:
                        removed += 1
                        self._count -= 1
                        self._bytes -= int(row[0])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if removed:
            self.deleted += removed
            self.last_delete_mono = time.monotonic()
        return removed

    # -- reads ------------------------------------------------------------------------------

    def peek(self, after_id: int = 0, limit: int = 100) -> list[OutboxEntry]:
        """The oldest entries with ``id > after_id``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, payload, retain, created_ms FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (int(after_id), int(limit)),
            ).fetchall()
        return [OutboxEntry(int(r[0]), r[1], r[2], bytes(r[3]), bool(r[4]), int(r[5])) for r in rows]

    def first_id(self) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(id) FROM outbox").fetchone()
        return None if row[0] is None else int(row[0])

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
