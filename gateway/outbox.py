"""Durable outbox: everything the gateway publishes is first committed to SQLite (WAL) on disk.

Entries are drained in insertion order and marked acknowledged only after the broker's
PUBACK, so output survives a broker outage and a gateway restart (at-least-once: an entry
whose PUBACK was lost is sent again, with the same message ids).

A PUBACK is not delivery: a broker that restarts may lose what it acknowledged (``kill -9``
before its autosave) or route it to nobody (Mosquitto 2.0 drops messages for a shared
subscription whose member has not reconnected since the restart). So acknowledged entries
are *retained* for ``retain_s`` seconds and :meth:`requeue_acked` puts the recent ones back
in line after an upstream reconnect (see gateway/README.md, "Broker restarts").
Retained entries do not count as depth and are the first to go when the outbox is full.

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
    created_ms INTEGER NOT NULL,
    acked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, id);
"""
_MIGRATE = "ALTER TABLE outbox ADD COLUMN acked_ms INTEGER"
_INDEX_ACKED = "CREATE INDEX IF NOT EXISTS outbox_acked ON outbox (acked_ms)"


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
                 synchronous: str = "normal", retain_s: float = 0.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
        if "acked_ms" not in cols:  # an outbox written by an older gateway
            self._db.execute(_MIGRATE)
        self._db.execute(_INDEX_ACKED)
        self.retain_s = float(retain_s)
        self.dropped: Counter[str] = Counter()
        self.appended = 0
        self.deleted = 0
        self.requeued = 0
        self._recount()
        self.last_delete_mono = time.monotonic()
        self.prune()

    def _recount(self) -> None:
        """Pending (not yet acknowledged) and retained (acknowledged) counts and bytes from disk."""
        rows = self._db.execute(
            "SELECT acked_ms IS NULL, COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox GROUP BY 1").fetchall()
        by = {bool(r[0]): (int(r[1]), int(r[2])) for r in rows}
        self._count, self._bytes = by.get(True, (0, 0))
        self._retained, self._retained_bytes = by.get(False, (0, 0))

    # -- size -------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Pending entries (not yet acknowledged by the broker): the outbox depth."""
        return self._count

    @property
    def retained(self) -> int:
        """Acknowledged entries kept for a replay after a broker restart."""
        return self._retained

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def oldest_age_s(self) -> float:
        with self._lock:
            row = self._db.execute("SELECT MIN(created_ms) FROM outbox WHERE acked_ms IS NULL").fetchone()
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
                self._recount()
                raise
        self.appended += len(items)
        return ids

    def _enforce_bounds(self) -> None:
        # acknowledged (retained) entries make room first, oldest first, uncounted as drops
        while self._retained and (self._count + self._retained > self.max_entries
                                  or self._bytes + self._retained_bytes > self.max_bytes):
            excess = max(self._count + self._retained - self.max_entries, 1)
            victims = self._db.execute(
                "SELECT id, LENGTH(payload) FROM outbox WHERE acked_ms IS NOT NULL ORDER BY id LIMIT ?",
                (min(excess, 1000),)).fetchall()
            if not victims:
                break
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(v[0],) for v in victims])
            self._retained -= len(victims)
            self._retained_bytes -= sum(int(v[1]) for v in victims)
        while self._count > self.max_entries or self._bytes > self.max_bytes:
            excess = max(self._count - self.max_entries, 1)
            row = self._db.execute("SELECT MIN(priority) FROM outbox WHERE acked_ms IS NULL").fetchone()
            if row[0] is None:
                return
            victims = self._db.execute(
                "SELECT id, kind, LENGTH(payload) FROM outbox WHERE priority = ? AND acked_ms IS NULL"
                " ORDER BY id LIMIT ?",
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
        """Settle acknowledged entries (unknown or already settled ids are ignored).

        With ``retain_s > 0`` they are kept (marked acknowledged) for a later
        :meth:`requeue_acked`; otherwise removed. Returns how many pending entries were settled.
        """
        if not ids:
            return 0
        removed = 0
        now = int(time.time() * 1000)
        keep = self.retain_s > 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for i in ids:
                    if keep:
                        row = self._db.execute("UPDATE outbox SET acked_ms = ? WHERE id = ? AND acked_ms IS NULL"
                                               " RETURNING LENGTH(payload)", (now, i)).fetchone()
                    else:
                        row = self._db.execute("DELETE FROM outbox WHERE id = ? AND acked_ms IS NULL"
                                               " RETURNING LENGTH(payload)", (i,)).fetchone()
                    if row is not None:
                        removed += 1
                        self._count -= 1
                        self._bytes -= int(row[0])
                        if keep:
                            self._retained += 1
                            self._retained_bytes += int(row[0])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._recount()
                raise
        if removed:
            self.deleted += removed
            self.last_delete_mono = time.monotonic()
        return removed

    def prune(self, now_ms: int | None = None) -> int:
        """Forget acknowledged entries older than ``retain_s``; returns how many."""
        if not self._retained:
            return 0
        cutoff = (int(time.time() * 1000) if now_ms is None else now_ms) - int(self.retain_s * 1000)
        with self._lock:
            cur = self._db.execute("DELETE FROM outbox WHERE acked_ms IS NOT NULL AND acked_ms < ?", (cutoff,))
            n = cur.rowcount
            if n:
                self._recount()
        return max(n, 0)

    def requeue_acked(self, since_ms: int) -> int:
        """Put entries acknowledged at or after ``since_ms`` back in line (same payloads, same ids
        inside them); they are sent again before anything newer. Returns how many."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                n = self._db.execute("UPDATE outbox SET acked_ms = NULL WHERE acked_ms >= ?", (int(since_ms),)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._recount()
        self.requeued += max(n, 0)
        return max(n, 0)

    # -- reads ------------------------------------------------------------------------------

    def peek(self, after_id: int = 0, limit: int = 100) -> list[OutboxEntry]:
        """The oldest entries with ``id > after_id``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, payload, retain, created_ms FROM outbox WHERE id > ? AND acked_ms IS NULL"
                " ORDER BY id LIMIT ?",
                (int(after_id), int(limit)),
            ).fetchall()
        return [OutboxEntry(int(r[0]), r[1], r[2], bytes(r[3]), bool(r[4]), int(r[5])) for r in rows]

    def first_id(self) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(id) FROM outbox WHERE acked_ms IS NULL").fetchone()
        return None if row[0] is None else int(row[0])

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
