"""Dispatch decisions: nearest free unit per alert, atomic claims, ack timeout, priority queue."""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from emon_core.contracts import (
    Alert,
    AlertStatus,
    Assignment,
    AssignmentStatus,
    GeoPoint,
    Severity,
    UnitPosition,
    UnitStatus,
)
from paramedic_router.claims import DispatchStore, now_ms
from paramedic_router.queue import AlertQueue, QueuedAlert
from paramedic_router.selection import Choice, assignment_id, rank_candidates
from paramedic_router.settings import RouterSettings
from paramedic_router.spatial import UnitIndex

log = logging.getLogger(__name__)

# how far along its job a unit is; a report can only move it forward
_PROGRESS = {UnitStatus.ASSIGNED: 0, UnitStatus.ACKNOWLEDGED: 1, UnitStatus.EN_ROUTE: 2, UnitStatus.ON_SCENE: 3}
_ASG_FOR_UNIT = {
    UnitStatus.ASSIGNED: AssignmentStatus.ASSIGNED,
    UnitStatus.ACKNOWLEDGED: AssignmentStatus.ACKNOWLEDGED,
    UnitStatus.EN_ROUTE: AssignmentStatus.EN_ROUTE,
    UnitStatus.ON_SCENE: AssignmentStatus.ON_SCENE,
}
POSITION_WRITE_EVERY_MS = 5_000  # per unit, or at once when its reported status changes
_BUSY_ASG = {AssignmentStatus.ASSIGNED, AssignmentStatus.ACKNOWLEDGED, AssignmentStatus.EN_ROUTE,
             AssignmentStatus.ON_SCENE}


@dataclass
class UnitState:
    status: UnitStatus
    alert_id: str | None = None
    assignment_id: str | None = None


@dataclass
class Active:
    """An alert this router has a unit on."""

    item: QueuedAlert
    assignment: Assignment
    deadline_ms: int | None
    tried: set[str] = field(default_factory=set)


def wants_unit(alert: Alert) -> bool:
    return alert.status != AlertStatus.RESOLVED and alert.needs_unit and alert.severity.needs_unit


class Router:
    """Dispatch decisions and their Cassandra effects; Kafka-free so tests can drive it."""

    def __init__(
        self, store: DispatchStore, publish: Callable[[Assignment], None], settings: RouterSettings,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.publish = publish
        self.cfg = settings
        self.clock = clock
        self.index = UnitIndex()
        self.units: dict[str, UnitState] = {}
        self.active: dict[str, Active] = {}
        self.versions: dict[str, int] = {}
        self.completed: set[str] = set()
        self.queue = AlertQueue()
        self.decision_ms: collections.deque[float] = collections.deque(maxlen=100_000)
        self.claim_ms: collections.deque[float] = collections.deque(maxlen=100_000)
        self.decision_cpu_ms: collections.deque[float] = collections.deque(maxlen=100_000)
        self.counters: collections.Counter[str] = collections.Counter()
        self._freed = False
        self._pending: list[Any] = []
        self._pos_written: dict[str, tuple[int, UnitStatus]] = {}
        self._seen: dict[str, int] = {}  # unit -> when its last report arrived (router clock, ms)
        self._next_sweep_ms = 0

    # --- state ----------------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild units, open assignments and the queue from Cassandra (after a restart)."""
        now = self.clock()
        for u in self.store.load_units():
            self.units[u.unit_id] = UnitState(u.status, u.alert_id, u.assignment_id)
            # last sign of life: its last report, else its last status change (registration included);
            # a unit silent since long before is swept at once, one with neither gets unit_stale_s from now
            self._seen[u.unit_id] = max(u.position_time_ms or 0, u.updated_at_ms or 0) or now
            self.index.upsert(u.unit_id, u.lat, u.lon, u.status == UnitStatus.AVAILABLE)
            if u.alert_id and u.assignment_id and u.status in _PROGRESS:
                for a in self.store.assignments_for_alert(u.alert_id):
                    if a.assignment_id == u.assignment_id:
                        item = self._item_from_assignment(a)
                        deadline = (max(a.assigned_at_ms, now) + self._timeout_ms()
                                    if a.status == AssignmentStatus.ASSIGNED else None)
                        self.active[a.alert_id] = Active(item, a, deadline, {a.unit_id})
        for q in self.store.queue_load():
            self.queue.push(q)
        self._freed = True
        log.info("router state: %d units (%d available), %d active, %d queued", len(self.units),
                 self.index.available_count(), len(self.active), len(self.queue))

    @staticmethod
    def _item_from_assignment(a: Assignment) -> QueuedAlert:
        pl = a.patient_location or GeoPoint(lat=0.0, lon=0.0)
        return QueuedAlert(a.severity.rank, a.assigned_at_ms, a.alert_id, a.patient_id, pl.lat, pl.lon,
                           a.severity.value)

    def _timeout_ms(self) -> int:
        return int(self.cfg.ack_timeout_s * 1000)

    def _set_unit(self, unit_id: str, state: UnitState) -> None:
        self.units[unit_id] = state
        was = self.index.is_available(unit_id)
        avail = state.status == UnitStatus.AVAILABLE
        self.index.set_available(unit_id, avail)
        if avail and not was:
            self._freed = True

    def flush_writes(self) -> None:
        """Wait for every asynchronous Cassandra write started so far (before committing offsets)."""
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    # --- decisions ------------------------------------------------------------------------
    def decide(self, item: QueuedAlert, exclude: set[str]) -> Choice | None:
        """Nearest available unit by geodesic distance after the haversine prefilter."""
        t0, c0 = time.perf_counter(), time.thread_time()
        cands = self.index.nearest(item.lat, item.lon, self.cfg.prefilter_k, exclude)
        ranked = rank_candidates(item.lat, item.lon, cands, speed_kmh=self.cfg.speed_kmh,
                                 road_factor=self.cfg.road_factor, dispatch_s=self.cfg.turnout_s)
        self.decision_ms.append((time.perf_counter() - t0) * 1000)
        self.decision_cpu_ms.append((time.thread_time() - c0) * 1000)  # immune to a busy machine
        return ranked[0] if ranked else None

    def dispatch(self, jobs: list[tuple[QueuedAlert, int, set[str]]]) -> list[Assignment]:
        """Assign each (alert, attempt, units to avoid); claims run concurrently; losers retry.

        Units are reserved in memory while their claim is in flight so one batch never picks a
        unit twice; the lightweight transaction decides between routers.
        """
        made: list[Assignment] = []
        pending = list(jobs)
        for _round in range(6):
            if not pending:
                break
            decided = []
            for item, attempt, tried in pending:
                choice = self.decide(item, tried)
                if choice is None:
                    self._enqueue(item)
                    continue
                self.index.set_available(choice.unit_id, False)
                decided.append((item, attempt, tried, choice))
            pending = []
            window = max(1, self.cfg.claim_concurrency)
            for start in range(0, len(decided), window):
                chunk = decided[start:start + window]
                now = self.clock()
                flights = []
                for item, attempt, tried, ch in chunk:
                    aid = assignment_id(item.alert_id, attempt)
                    flights.append((time.perf_counter(), self.store.claim_async(ch.unit_id, item.alert_id, aid, now)))
                for (item, attempt, tried, ch), (t0, fut) in zip(chunk, flights):
                    res = fut.result()
                    self.claim_ms.append((time.perf_counter() - t0) * 1000)
                    if res.was_applied:
                        made.append(self._assigned(item, attempt, tried, ch, now))
                    else:
                        row = res.one()
                        current = getattr(row, "status", None) if row is not None else None
                        self.counters["claim_lost"] += 1
                        log.info("unit %s already taken (%s); trying the next nearest for %s",
                                 ch.unit_id, current, item.alert_id)
                        self._set_unit(ch.unit_id, UnitState(UnitStatus(current) if current else UnitStatus.OFFLINE))
                        self.index.set_available(ch.unit_id, False)
                        pending.append((item, attempt, tried))
        for item, _attempt, _tried in pending:
            self._enqueue(item)
        return made

    def _assigned(self, item: QueuedAlert, attempt: int, tried: set[str], ch: Choice, now: int) -> Assignment:
        a = Assignment(
            assignment_id=assignment_id(item.alert_id, attempt), alert_id=item.alert_id, unit_id=ch.unit_id,
            patient_id=item.patient_id, status=AssignmentStatus.ASSIGNED, severity=Severity(item.severity),
            distance_m=ch.distance_m, eta_s=ch.eta_s, assigned_at_ms=now, updated_at_ms=now, attempt=attempt,
            patient_location=GeoPoint(lat=item.lat, lon=item.lon),
            unit_location=GeoPoint(lat=ch.unit_lat, lon=ch.unit_lon),
        )
        self._set_unit(ch.unit_id, UnitState(UnitStatus.ASSIGNED, item.alert_id, a.assignment_id))
        self.active[item.alert_id] = Active(item, a, now + self._timeout_ms(), tried | {ch.unit_id})
        if item.alert_id in self.queue:
            self.queue.remove(item.alert_id)
            self._pending.append(self.store.queue_delete(item.alert_id))
        self._pending += self.store.write_assignment_async(a)
        self._pending.append(self.store.log_status(ch.unit_id, UnitStatus.AVAILABLE, UnitStatus.ASSIGNED,
                                                   item.alert_id, a.assignment_id, f"attempt {attempt}", now))
        self.counters["assigned"] += 1
        self.publish(a)
        log.info("assigned %s to %s (%.0f m, eta %.0f s, attempt %d)", ch.unit_id, item.alert_id,
                 ch.distance_m, ch.eta_s, attempt)
        return a

    def _enqueue(self, item: QueuedAlert) -> None:
        if item.alert_id not in self.queue:
            self.counters["queued"] += 1
            log.info("no unit free for %s (%s): queued (%d waiting)", item.alert_id, item.severity, len(self.queue) + 1)
        self.queue.push(item)
        self._pending.append(self.store.queue_put(item))

    def _update(self, act: Active, status: AssignmentStatus, now: int) -> Assignment:
        a = act.assignment.model_copy(update={"status": status, "updated_at_ms": now})
        act.assignment = a
        self._pending += self.store.write_assignment_async(a)
        self.publish(a)
        return a

    def _end(self, alert_id: str, status: AssignmentStatus, reason: str) -> Active | None:
        """Release the unit of an alert's active assignment and record why."""
        act = self.active.get(alert_id)
        if act is None:
            return None
        now = self.clock()
        a = act.assignment
        old = self.units.get(a.unit_id, UnitState(UnitStatus.ASSIGNED)).status
        if self.store.release(a.unit_id, a.assignment_id, now):
            self._set_unit(a.unit_id, UnitState(UnitStatus.AVAILABLE))
            self._pending.append(self.store.log_status(a.unit_id, old, UnitStatus.AVAILABLE, alert_id,
                                                       a.assignment_id, reason, now))
        else:
            self._refresh_unit(a.unit_id)
        del self.active[alert_id]
        self._update(act, status, now)
        self.counters[status.value] += 1
        log.info("assignment %s %s (%s)", a.assignment_id, status.value, reason)
        return act

    def _redispatch(self, jobs: list[tuple[QueuedAlert, int, set[str]]]) -> None:
        """Next attempts for alerts whose unit let go; none for an alert a dispatcher resolved
        (the map's resolve reaches a router that was down only through Cassandra)."""
        keep = []
        for item, attempt, tried in jobs:
            if self.store.resolved_by_dispatcher(item.alert_id):
                self.completed.add(item.alert_id)
                self.counters["dropped_resolved"] += 1
                log.info("%s was resolved by a dispatcher: no next unit", item.alert_id)
            else:
                keep.append((item, attempt, tried))
        if keep:
            self.dispatch(keep)

    def _take_offline(self, unit_id: str, now: int, reason: str) -> None:
        """An idle available unit that stopped reporting: offline until its next report."""
        state = self.units.get(unit_id)
        if state is None or state.status != UnitStatus.AVAILABLE or state.assignment_id is not None:
            return
        if self.store.set_idle_status(unit_id, UnitStatus.AVAILABLE, UnitStatus.OFFLINE, now):
            self._set_unit(unit_id, UnitState(UnitStatus.OFFLINE))
            self._pending.append(self.store.log_status(unit_id, UnitStatus.AVAILABLE, UnitStatus.OFFLINE, None, None,
                                                       reason, now))
            self.counters["went_offline"] += 1
            log.info("unit %s offline: %s", unit_id, reason)
        else:
            self._refresh_unit(unit_id)

    def _refresh_unit(self, unit_id: str) -> None:
        got = self.store.unit_status(unit_id)
        if got is not None:
            self._set_unit(unit_id, UnitState(*got))

    # --- inputs ---------------------------------------------------------------------------
    def on_alert(self, alert: Alert) -> None:
        """A new or updated alert: dispatch, update the queue, or release its unit."""
        last = self.versions.get(alert.alert_id)
        if last is not None and alert.version <= last:
            return
        first_seen = last is None
        self.versions[alert.alert_id] = alert.version
        if not wants_unit(alert):
            if alert.alert_id in self.queue:
                self.queue.remove(alert.alert_id)
                self._pending.append(self.store.queue_delete(alert.alert_id))
            if alert.alert_id in self.active:
                why = "alert resolved" if alert.status == AlertStatus.RESOLVED else f"downgraded to {alert.severity.value}"
                self._end(alert.alert_id, AssignmentStatus.RELEASED, why)
            return
        if alert.alert_id in self.active or alert.alert_id in self.completed:
            return
        loc = alert.location
        home = None if loc is not None else self.store.patient_home(alert.patient_id)
        if loc is None and home is None:
            self.counters["no_location"] += 1
            log.warning("alert %s needs a unit but has no location", alert.alert_id)
            return
        lat, lon = (loc.lat, loc.lon) if loc is not None else home  # type: ignore[misc]
        item = QueuedAlert(alert.severity.rank, alert.opened_at_ms, alert.alert_id, alert.patient_id, lat, lon,
                           alert.severity.value, self.clock())
        if alert.alert_id in self.queue:
            self._enqueue(item)  # severity may have changed
            return
        attempt = 0
        if first_seen:  # replay after a restart: continue from what Cassandra already has
            earlier = self.store.assignments_for_alert(alert.alert_id)
            if any(a.status in (AssignmentStatus.COMPLETED,) for a in earlier):
                self.completed.add(alert.alert_id)
                return
            if any(a.status in _BUSY_ASG for a in earlier):
                return
            attempt = max((a.attempt + 1 for a in earlier), default=0)
        self.dispatch([(item, attempt, set())])

    def on_position(self, pos: UnitPosition) -> None:
        """A unit report: position, acknowledgement, progress, back in service."""
        now = self.clock()
        self._seen[pos.unit_id] = now
        last = self._pos_written.get(pos.unit_id)
        if last is None or now - last[0] >= POSITION_WRITE_EVERY_MS or last[1] != pos.status:
            # positions are not part of the alert offsets' guarantee: written without waiting
            self._pos_written[pos.unit_id] = (now, pos.status)
            self.store.write_position(pos)
        state = self.units.get(pos.unit_id)
        if state is None:
            if self.store.register_unit(pos.unit_id, pos.lat, pos.lon, at_ms=now):
                state = UnitState(UnitStatus.AVAILABLE)
            else:
                got = self.store.unit_status(pos.unit_id)
                state = UnitState(*got) if got else UnitState(UnitStatus.OFFLINE)
            self.index.upsert(pos.unit_id, pos.lat, pos.lon, False)
            self._set_unit(pos.unit_id, state)
        else:
            self.index.upsert(pos.unit_id, pos.lat, pos.lon)
        act = self.active.get(state.alert_id) if state.alert_id else None
        if act is not None and act.assignment.assignment_id == state.assignment_id:
            cur = state.status
            if pos.status in _PROGRESS and _PROGRESS[pos.status] > _PROGRESS.get(cur, 0):
                if self.store.advance(pos.unit_id, state.assignment_id, pos.status, now):
                    self._set_unit(pos.unit_id, UnitState(pos.status, state.alert_id, state.assignment_id))
                    self._pending.append(self.store.log_status(pos.unit_id, cur, pos.status, state.alert_id,
                                                               state.assignment_id, "unit report", now))
                    act.deadline_ms = None
                    self._update(act, _ASG_FOR_UNIT[pos.status], now)
                else:
                    self._refresh_unit(pos.unit_id)
            elif pos.status == UnitStatus.AVAILABLE and cur == UnitStatus.ON_SCENE:
                self.completed.add(act.item.alert_id)
                self._end(act.item.alert_id, AssignmentStatus.COMPLETED, "unit back in service")
            elif pos.status == UnitStatus.AVAILABLE and cur in (UnitStatus.ACKNOWLEDGED, UnitStatus.EN_ROUTE):
                # the crew took the job and then reports free without reaching the patient (its app
                # restarted, or it was stood down by radio): the patient still needs someone. Before,
                # such a unit stayed en route forever and was never sent anywhere again.
                ended = self._end(act.item.alert_id, AssignmentStatus.RELEASED, "unit reported available before arriving")
                if ended is not None:
                    self._redispatch([(ended.item, ended.assignment.attempt + 1, ended.tried)])
            return
        if state.assignment_id is None and state.status in (UnitStatus.AVAILABLE, UnitStatus.OFFLINE):
            if pos.status == UnitStatus.OFFLINE and state.status == UnitStatus.AVAILABLE:
                if self.store.set_idle_status(pos.unit_id, UnitStatus.AVAILABLE, UnitStatus.OFFLINE, now):
                    self._set_unit(pos.unit_id, UnitState(UnitStatus.OFFLINE))
            elif pos.status == UnitStatus.AVAILABLE and state.status == UnitStatus.OFFLINE:
                if self.store.set_idle_status(pos.unit_id, UnitStatus.OFFLINE, UnitStatus.AVAILABLE, now):
                    self._set_unit(pos.unit_id, UnitState(UnitStatus.AVAILABLE))

    def on_assignment_event(self, a: Assignment) -> None:
        """Assignments from the topic: other routers' claims and dispatcher requests.

        A dispatcher (the map) asks by publishing the current assignment with status
        ``released`` (reassign: release this unit, send the next nearest) or ``completed``
        (resolved: release the unit, send nobody). The router's own echoes no longer match an
        active assignment and are ignored.
        """
        act = self.active.get(a.alert_id)
        if act is not None and act.assignment.assignment_id == a.assignment_id:
            if a.status in (AssignmentStatus.RELEASED, AssignmentStatus.TIMED_OUT) and act.assignment.status != a.status:
                # a dispatcher asked for another unit: release this one and try the next nearest
                self._end(a.alert_id, AssignmentStatus.RELEASED, "dispatcher reassign")
                self.dispatch([(act.item, act.assignment.attempt + 1, act.tried)])
            elif a.status == AssignmentStatus.COMPLETED and act.assignment.status != a.status:
                # a dispatcher resolved the alert: the unit is free, nobody else is sent
                self.completed.add(a.alert_id)
                self._end(a.alert_id, AssignmentStatus.COMPLETED, "dispatcher resolved")
            return
        if a.alert_id in self.active:
            return
        # another router's unit: keep our view of its availability
        if a.status in _BUSY_ASG:
            self._set_unit(a.unit_id, UnitState(UnitStatus(a.status.value), a.alert_id, a.assignment_id))
        elif self.units.get(a.unit_id, UnitState(UnitStatus.OFFLINE)).assignment_id == a.assignment_id:
            self._set_unit(a.unit_id, UnitState(UnitStatus.AVAILABLE))

    def tick(self) -> None:
        """Time out unacknowledged assignments and drain the queue when units became free."""
        now = self.clock()
        expired = [act for act in self.active.values() if act.deadline_ms is not None and act.deadline_ms <= now]
        jobs = []
        for act in expired:
            self._end(act.item.alert_id, AssignmentStatus.TIMED_OUT, f"no acknowledgement in {self.cfg.ack_timeout_s:g} s")
            unit = act.assignment.unit_id
            if self._seen.get(unit, 0) <= act.assignment.assigned_at_ms:
                # not a word from it since the assignment: unreachable, not just slow (a unit whose
                # simulator or tablet is gone would otherwise be the nearest again and again)
                self._take_offline(unit, now, "no report since its assignment")
            jobs.append((act.item, act.assignment.attempt + 1, act.tried))
        self._redispatch(jobs)
        if now >= self._next_sweep_ms:
            self._next_sweep_ms = now + 1_000
            stale_before = now - int(self.cfg.unit_stale_s * 1000)
            for unit, state in list(self.units.items()):
                if state.status == UnitStatus.AVAILABLE and self._seen.get(unit, now) < stale_before:
                    self._take_offline(unit, now, f"no report for {self.cfg.unit_stale_s:g} s")
        if self._freed and len(self.queue):
            self._freed = False
            batch = []
            while len(self.queue) and len(batch) < min(self.index.available_count(), self.cfg.batch_max):
                item = self.queue.pop()
                assert item is not None
                if self.store.resolved_by_dispatcher(item.alert_id):
                    # resolved on the map while it waited (the map only releases *assigned* units)
                    self._pending.append(self.store.queue_delete(item.alert_id))
                    self.counters["dropped_resolved"] += 1
                    log.info("queued %s was resolved by a dispatcher: dropped", item.alert_id)
                    continue
                batch.append((item, self._next_attempt(item.alert_id), set()))
            for item, _a, _t in batch:
                self.queue.push(item)  # dispatch removes it from the queue when assigned
            if batch:
                self.dispatch(batch)
        else:
            self._freed = False

    def stats(self) -> dict[str, Any]:
        """Counters and gauges for the periodic log line (and a future metrics endpoint)."""
        dec = sorted(self.decision_ms)
        return {
            "units": len(self.units), "available": self.index.available_count(), "active": len(self.active),
            "queued": len(self.queue), **dict(self.counters),
            "decision_p99_ms": round(dec[int(0.99 * (len(dec) - 1))], 3) if dec else None,
        }

    def _next_attempt(self, alert_id: str) -> int:
        return max((a.attempt + 1 for a in self.store.assignments_for_alert(alert_id)), default=0)
