"""Durable store of session checkpoints: one SQLite (WAL) file in the gateway's state dir, one row per device.

Rows are replaced (upsert), so the file holds at most one record per device seen within
``max_age_s``; older rows are deleted at open and by :meth:`prune`. Written by the
processing thread only (one connection, no lock). ``synchronous=NORMAL`` like the outbox:
a committed row survives a killed process (it is in the OS's page cache), not necessarily
a power cut.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint (
    device_id TEXT PRIMARY KEY,
    written_ms INTEGER NOT NULL,
    valid_index INTEGER NOT NULL,
    record BLOB NOT NULL
);
"""


class CheckpointStore:
    """Per-device checkpoint records (bytes from :func:`gateway.checkpoint.encode`)."""

    def __init__(self, path: Path | str, max_age_s: float = 600.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_age_s = float(max_age_s)
        self._db = sqlite3.connect(str(self.path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.written = 0
        self.prune()

    def put_many(self, rows: list[tuple[str, int, int, bytes]]) -> None:
        """Store ``(device_id, written_ms, valid_index, record)`` rows in one transaction."""
        if not rows:
            return
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT INTO checkpoint (device_id, written_ms, valid_index, record) VALUES (?,?,?,?)"
                " ON CONFLICT(device_id) DO UPDATE SET written_ms=excluded.written_ms,"
                " valid_index=excluded.valid_index, record=excluded.record", rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.written += len(rows)

    def get(self, device_id: str) -> bytes | None:
        """The device's record, or None."""
        row = self._db.execute("SELECT record FROM checkpoint WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def delete(self, device_id: str) -> None:
        """Forget a device (its stream was closed: nothing to resume)."""
        self._db.execute("DELETE FROM checkpoint WHERE device_id = ?", (device_id,))

    def prune(self, now_ms: int | None = None) -> int:
        """Delete records older than ``max_age_s``; returns how many."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        cur = self._db.execute("DELETE FROM checkpoint WHERE written_ms < ?", (now - int(self.max_age_s * 1000),))
        return max(cur.rowcount, 0)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM checkpoint").fetchone()[0])

    def size_bytes(self) -> int:
        """Bytes of the database file and its WAL on disk."""
        return sum(p.stat().st_size for p in (self.path, self.path.with_name(self.path.name + "-wal")) if p.exists())

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()
