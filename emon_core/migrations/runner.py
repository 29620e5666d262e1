"""Versioned CQL migrations: ``cql/NNN_name.cql`` applied once, in order, with checksums.

Each applied version is recorded in ``<keyspace>.schema_migrations`` with the file's
SHA-256. A file that changed after it was applied is refused unless ``reapply_changed``
(development: its statements are idempotent, so it is simply run again).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emon_core.errors import EmonError

log = logging.getLogger(__name__)

CQL_DIR = Path(__file__).resolve().parent / "cql"
FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.cql$")
KEYSPACE_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version int PRIMARY KEY,
    name text,
    checksum text,
    applied_at timestamp,
    duration_ms int
)"""


class MigrationError(EmonError):
    """A migration file is malformed, changed after it was applied, or failed to apply."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def statements(self) -> list[str]:
        return split_statements(self.text)


def discover(directory: Path = CQL_DIR) -> list[Migration]:
    """Migration files in version order; duplicate versions or bad names raise."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.cql")):
        m = FILE_RE.match(path.name)
        if m is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.cql (e.g. 010_hub.cql)")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version:03d} also used by {found[version].path.name}")
        found[version] = Migration(version, m.group(2), path)
    return [found[v] for v in sorted(found)]


def split_statements(text: str) -> list[str]:
    """Split CQL on ';' outside strings, ``$$`` blocks and comments; comments are dropped."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch, two = text[i], text[i : i + 2]
        if two in ("--", "//"):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if two == "/*":
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if ch == "'" or two == "$$":
            end = "'" if ch == "'" else "$$"
            j = i + len(end)
            while True:
                k = text.find(end, j)
                if k < 0:
                    raise MigrationError(f"unterminated {end} literal near: {text[i:i + 40]!r}")
                if end == "'" and text[k + 1 : k + 2] == "'":  # '' escape
                    j = k + 2
                    continue
                break
            buf.append(text[i : k + len(end)])
            i = k + len(end)
            continue
        if ch == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
        else:
            buf.append(ch)
        i += 1
    tail = "".join(buf).strip()
    if tail:
        out.append(tail)
    return out


def ensure_keyspace(session: Any, keyspace: str, replication: str) -> None:
    """CREATE KEYSPACE IF NOT EXISTS with the configured replication, and the migrations table."""
    if not KEYSPACE_RE.match(keyspace):
        raise MigrationError(f"invalid keyspace name {keyspace!r}")
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}", timeout=60
    )
    session.set_keyspace(keyspace)
    session.execute(MIGRATIONS_TABLE, timeout=60)


def applied(session: Any) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of applied migrations (keyspace already set)."""
    rows = session.execute("SELECT version, name, checksum FROM schema_migrations")
    return {r.version: (r.name, r.checksum) for r in rows}


@dataclass
class Outcome:
    version: int
    name: str
    action: str  # applied | reapplied | unchanged
    statements: int = 0
    duration_ms: int = 0


def migrate(
    session: Any,
    keyspace: str,
    replication: str,
    directory: Path = CQL_DIR,
    reapply_changed: bool = False,
) -> list[Outcome]:
    """Create the keyspace and apply pending migrations in order; idempotent."""
    migrations = discover(directory)
    ensure_keyspace(session, keyspace, replication)
    done = applied(session)
    outcomes: list[Outcome] = []
    for mig in migrations:
        previous = done.get(mig.version)
        checksum = mig.checksum
        if previous is not None and previous[1] == checksum:
            outcomes.append(Outcome(mig.version, mig.name, "unchanged"))
            continue
        if previous is not None and not reapply_changed:
            raise MigrationError(
                f"{mig.path.name} changed after it was applied to keyspace {keyspace!r}; add a new "
                "migration file instead (development: `emon init --reapply-changed`)"
            )
        outcomes.append(_apply(session, mig, checksum, "reapplied" if previous else "applied"))
    return outcomes


def _apply(session: Any, mig: Migration, checksum: str, action: str) -> Outcome:
    statements = mig.statements()
    t0 = time.monotonic()
    for idx, stmt in enumerate(statements, 1):
        try:
            session.execute(stmt, timeout=120)
        except Exception as err:  # driver errors carry the server's message
            first = " ".join(stmt.split())[:120]
            raise MigrationError(
                f"{mig.path.name}: statement {idx}/{len(statements)} failed: {err} -- {first}"
            ) from err
    ms = int((time.monotonic() - t0) * 1000)
    session.execute(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at, duration_ms) "
        "VALUES (%s, %s, %s, %s, %s)",
        (mig.version, mig.name, checksum, datetime.now(timezone.utc), ms),
    )
    log.info("migration %03d_%s %s (%d statements, %d ms)", mig.version, mig.name, action, len(statements), ms)
    return Outcome(mig.version, mig.name, action, len(statements), ms)
