"""Patient record + history baseline per patient, cached with expiry (coordinator pattern).

Entries expire after ``ttl_s`` and are refreshed on the next use; all misses of one round
are read concurrently. When Cassandra fails, a stale entry is served and ``available``
turns False (logged once on the change to failure and once on the way back). A patient
with no registry row is cached as unknown (alerts then carry ``patient_known=False``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from hub.policy import History
from hub.store import HubStore

log = logging.getLogger(__name__)


@dataclass
class Enriched:
    """What the hub adds to a patient's events: location, baseline and history for the policy."""

    patient_id: str
    known: bool
    location: tuple[float, float] | None = None
    baseline_hr_bpm: float | None = None
    ectopic_burden_pct: float | None = None
    chronic: frozenset[str] = frozenset()
    first_seen_ms: dict[str, int] = field(default_factory=dict)

    def history(self) -> History:
        return History(known=self.known, chronic_patterns=self.chronic, first_seen_ms=self.first_seen_ms)


class EnrichmentUnavailable(Exception):
    """Cassandra failed and some patient has no cached entry at all."""


class PatientCache:
    """LRU + TTL cache of :class:`Enriched` in front of :class:`HubStore`."""

    def __init__(self, store: HubStore, ttl_s: float = 300.0, max_entries: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, Enriched]] = OrderedDict()
        self.available = True
        self.hits = 0
        self.misses = 0
        self.refresh_failures = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, patient_ids: Iterable[str]) -> dict[str, Enriched]:
        """Entries for every id (fresh, refreshed, or stale while Cassandra is down)."""
        now = self.clock()
        out: dict[str, Enriched] = {}
        todo: list[str] = []
        for pid in set(patient_ids):
            hit = self._entries.get(pid)
            if hit is not None and now - hit[0] < self.ttl_s:
                self.hits += 1
                self._entries.move_to_end(pid)
                out[pid] = hit[1]
            else:
                self.misses += 1
                todo.append(pid)
        if not todo:
            return out
        try:
            fresh = self._fetch(todo)
        except Exception as err:  # driver errors of every kind: serve stale, report unavailable
            self.refresh_failures += 1
            self._set_available(False, err)
            missing = [pid for pid in todo if pid not in self._entries]
            if missing:
                raise EnrichmentUnavailable(f"patient records unavailable ({err!r})") from err
            out.update({pid: self._entries[pid][1] for pid in todo})
            return out
        self._set_available(True)
        for pid, e in fresh.items():
            self._put(pid, e, now)
            out[pid] = e
        return out

    def note_kind(self, patient_id: str, kind: str, seen_ms: int) -> None:
        """Record a new occurrence in the cached history (the hub also writes it to Cassandra)."""
        hit = self._entries.get(patient_id)
        if hit is not None:
            first = hit[1].first_seen_ms
            if kind not in first or seen_ms < first[kind]:
                first[kind] = seen_ms

    def invalidate(self, patient_id: str | None = None) -> None:
        if patient_id is None:
            self._entries.clear()
        else:
            self._entries.pop(patient_id, None)

    # --- internals -----------------------------------------------------------------------
    def _put(self, pid: str, e: Enriched, now: float) -> None:
        self._entries[pid] = (now, e)
        self._entries.move_to_end(pid)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _fetch(self, pids: list[str]) -> dict[str, Enriched]:
        st = self.store
        futs = [(pid, st.read_async(st.q_patient, (pid,)), st.read_async(st.q_kinds, (pid,))) for pid in pids]
        out: dict[str, Enriched] = {}
        for pid, f_patient, f_kinds in futs:
            row: Any = f_patient.result().one()
            kinds = {r.event_kind: r.first_ms for r in f_kinds.result()}
            if row is None:
                out[pid] = Enriched(pid, known=False, first_seen_ms=kinds)
                continue
            loc = (row.home_lat, row.home_lon) if row.home_lat is not None and row.home_lon is not None else None
            out[pid] = Enriched(pid, known=True, location=loc, baseline_hr_bpm=row.baseline_hr_bpm,
                                ectopic_burden_pct=row.ectopic_burden_pct,
                                chronic=frozenset(row.chronic_patterns or ()), first_seen_ms=kinds)
        return out

    def _set_available(self, ok: bool, err: BaseException | None = None) -> None:
        if ok and not self.available:
            log.info("patient records available again")
        elif not ok and self.available:
            log.warning("patient records unavailable, serving cached entries: %r", err)
        self.available = ok
