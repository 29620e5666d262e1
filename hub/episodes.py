"""Episodes, pure logic: beats and events of one patient close in time form one alert.

No I/O and no clock: the service loads a patient's last episode (:meth:`EpisodeTracker.load`),
feeds beats and events in Kafka order, persists the returned changes and publishes the
alert when :attr:`Change.alert_changed`.

* An episode starts with the first V/S beat or rhythm event after a quiet gap of
  ``quiet_ms`` (or once the current episode is ``max_ms`` long); its id and its alert id
  derive from the patient and the first event id, so a replay builds the same ids.
* The alert exists once a policy rule matched (:mod:`hub.policy`); it is updated
  (``version`` + 1) when its severity, title, reasons or event list change.
* Replays change nothing: an event already seen at the same or a later revision, a beat
  at or before the last counted beat, or anything older than the current episode is
  ignored for the episode (the raw rows are still written, idempotently).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from emon_core.contracts import (
    Alert, AlertStatus, BeatClass, EcgStrip, EventKind, FlaggedBeat, GeoPoint, HopTimes, RhythmEvent,
)
from hub import policy
from hub.policy import Decision, History

MAX_EVENT_IDS = 500
EPISODE_BEATS = (BeatClass.V, BeatClass.S)


def alert_id_for(patient_id: str, first_event_id: str) -> str:
    return f"alert:{patient_id}:{first_event_id}"[:160]


def episode_id_for(patient_id: str, first_event_id: str) -> str:
    return f"ep:{patient_id}:{first_event_id}"[:160]


@dataclass
class Episode:
    """One patient's episode; JSON-serialisable so it can be persisted and rebuilt."""

    patient_id: str
    episode_id: str
    alert_id: str
    first_event_id: str
    opened_at_ms: int
    last_event_ms: int
    closed_at_ms: int | None = None
    event_revs: dict[str, int] = field(default_factory=dict)  # rhythm event id -> revision
    decisions: dict[str, list[Any]] = field(default_factory=dict)  # id -> [rule, sev, title, reasons]
    event_ids: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    v_beats: int = 0
    beats: int = 0
    last_beat_ms: int = -1
    rate_bpm: float | None = None
    trigger_event_id: str = ""
    strip: dict[str, Any] | None = None
    version: int = -1  # alert version; -1 = no alert yet
    alert_key: str = ""  # content of the last alert version
    alert_updated_ms: int = 0
    published_version: int = -1

    @property
    def closed(self) -> bool:
        return self.closed_at_ms is not None

    @property
    def has_alert(self) -> bool:
        return self.version >= 0

    def to_json(self) -> str:
        # every field holds JSON values already: no asdict(), whose deep copy of the strip's
        # samples cost more than the rest of a hub round's decisions together
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Episode":
        return cls(**json.loads(text))

    def decision(self) -> Decision | None:
        """The most severe decision of the episode (the earliest on a tie)."""
        best: Decision | None = None
        for rule, sev, title, reasons in self.decisions.values():
            best = policy.most_severe(best, Decision(rule, policy.Severity(sev), title, tuple(reasons)))
        return best

    def trigger_key(self) -> str | None:
        """Key in :attr:`decisions` of the most severe decision (the earliest on a tie)."""
        best_key, best_rank = None, 99
        for key, (_rule, sev, _title, _reasons) in self.decisions.items():
            rank = policy.Severity(sev).rank
            if rank < best_rank:
                best_key, best_rank = key, rank
        return best_key


@dataclass
class Change:
    """What one input did: the episode it touched, whether its alert changed, what closed."""

    episode: Episode | None = None
    alert_changed: bool = False
    new_kinds: list[str] = field(default_factory=list)
    closed: list[Episode] = field(default_factory=list)
    dirty: bool = False  # episode state changed (persist it)


class EpisodeTracker:
    """Current episode per patient; call :meth:`load` before the first input of a patient."""

    def __init__(self, quiet_ms: int = 120_000, max_ms: int = 1_800_000) -> None:
        self.quiet_ms = quiet_ms
        self.max_ms = max_ms
        self._current: dict[str, Episode | None] = {}

    def loaded(self, patient_id: str) -> bool:
        return patient_id in self._current

    def load(self, patient_id: str, episode: Episode | None) -> None:
        self._current[patient_id] = episode

    def forget(self, patient_id: str) -> None:
        self._current.pop(patient_id, None)

    def clear(self) -> None:
        self._current.clear()

    def current(self, patient_id: str) -> Episode | None:
        return self._current.get(patient_id)

    def patients(self) -> list[str]:
        return list(self._current)

    # --- inputs -----------------------------------------------------------------------
    def _episode_for(self, patient_id: str, first_id: str, t_ms: int, change: Change) -> Episode | None:
        """The open episode ``t_ms`` belongs to (opening a new one), or None if stale."""
        ep = self._current.get(patient_id)
        if ep is not None and t_ms < ep.opened_at_ms:
            # An event whose onset precedes the beat that opened the episode (the run's later
            # V beats arrive before the run is confirmed) belongs to it; anything older is a
            # replay or a straggler of an earlier episode.
            if ep.closed or t_ms < ep.opened_at_ms - self.quiet_ms:
                return None
            return ep
        if ep is not None and not ep.closed and t_ms <= ep.last_event_ms + self.quiet_ms \
                and t_ms < ep.opened_at_ms + self.max_ms:
            return ep
        if ep is not None and not ep.closed:
            ep.closed_at_ms = min(ep.last_event_ms + self.quiet_ms, t_ms)
            change.closed.append(ep)
        ep = Episode(patient_id=patient_id, episode_id=episode_id_for(patient_id, first_id),
                     alert_id=alert_id_for(patient_id, first_id), first_event_id=first_id,
                     opened_at_ms=t_ms, last_event_ms=t_ms)
        self._current[patient_id] = ep
        return ep

    def on_beat(self, beat: FlaggedBeat, history: History) -> Change:
        change = Change()
        if beat.beat_class not in EPISODE_BEATS:
            return change
        cur = self._current.get(beat.patient_id)
        if cur is not None and beat.r_time_ms <= cur.last_beat_ms:
            return change  # already counted
        ep = self._episode_for(beat.patient_id, beat.id, beat.r_time_ms, change)
        if ep is None:
            return change
        ep.beats += 1
        ep.last_beat_ms = beat.r_time_ms
        ep.last_event_ms = max(ep.last_event_ms, beat.r_time_ms)
        change.episode, change.dirty = ep, True
        if beat.beat_class is BeatClass.V:
            ep.v_beats += 1
            if ep.v_beats >= policy.FREQUENT_PVC_BEATS and "beats" not in ep.decisions:
                d = policy.decide(policy.BEATS_RULE_KIND, history, ep.opened_at_ms, beats=ep.v_beats)
                if d is not None:
                    ep.decisions["beats"] = [d.rule, d.severity.value, d.title, list(d.reasons)]
                    self._add_id(ep, beat.id)
                    # only a new decision changes what the alert says (a beat adds no reason,
                    # id or rate otherwise), so the alert key is rebuilt only then
                    change.alert_changed = self._refresh_alert(ep, beat.r_time_ms)
            if ep.strip is None and beat.strip is not None:  # until an event brings its own strip
                ep.strip = beat.strip.model_dump(by_alias=True)
        return change

    def on_event(self, ev: RhythmEvent, history: History) -> Change:
        change = Change()
        cur = self._current.get(ev.patient_id)
        if cur is not None and ev.id in cur.event_revs:
            ep: Episode | None = cur
            if ev.revision <= cur.event_revs[ev.id]:
                return change  # replay or older revision
        else:
            ep = self._episode_for(ev.patient_id, ev.id, ev.onset_time_ms, change)
        if ep is None:
            return change
        ep.event_revs[ev.id] = ev.revision
        ep.last_event_ms = max(ep.last_event_ms, ev.end_time_ms, ev.onset_time_ms)
        if ev.kind.value not in ep.kinds:
            ep.kinds.append(ev.kind.value)
            change.new_kinds.append(ev.kind.value)
        self._add_id(ep, ev.id)
        duration = max(0, ev.end_time_ms - ev.onset_time_ms)
        d = policy.decide(ev.kind, history, ep.opened_at_ms, beats=ev.beat_count, rate_bpm=ev.rate_bpm,
                          duration_ms=duration)
        if d is not None:
            ep.decisions[ev.id] = [d.rule, d.severity.value, d.title, list(d.reasons)]
            if ep.trigger_key() == ev.id:  # this event drives the alert: its rate and strip
                ep.trigger_event_id = ev.id
                if ev.rate_bpm is not None:
                    ep.rate_bpm = ev.rate_bpm
                if ev.strip is not None:
                    ep.strip = ev.strip.model_dump(by_alias=True)
        change.episode, change.dirty = ep, True
        change.alert_changed = self._refresh_alert(ep, max(ev.end_time_ms, ev.onset_time_ms))
        return change

    def sweep(self, now_ms: int) -> list[Episode]:
        """Close the episodes quiet for longer than ``quiet_ms`` at ``now_ms``."""
        closed = []
        for ep in self._current.values():
            if ep is not None and not ep.closed and now_ms > ep.last_event_ms + self.quiet_ms:
                ep.closed_at_ms = ep.last_event_ms + self.quiet_ms
                closed.append(ep)
        return closed

    # --- helpers ------------------------------------------------------------------------
    @staticmethod
    def _add_id(ep: Episode, event_id: str) -> None:
        if event_id not in ep.event_ids and len(ep.event_ids) < MAX_EVENT_IDS:
            ep.event_ids.append(event_id)

    @staticmethod
    def _refresh_alert(ep: Episode, t_ms: int) -> bool:
        d = ep.decision()
        if d is None:
            return False
        key = json.dumps([d.severity.value, d.title, sorted({r for v in ep.decisions.values() for r in v[3]}),
                          ep.event_ids, ep.rate_bpm], separators=(",", ":"))
        if key == ep.alert_key:
            return False
        ep.alert_key = key
        ep.version += 1
        ep.alert_updated_ms = max(t_ms, ep.opened_at_ms)
        if not ep.trigger_event_id:
            ep.trigger_event_id = ep.event_ids[0] if ep.event_ids else ep.first_event_id
        return True


def build_alert(ep: Episode, *, patient_known: bool, location: tuple[float, float] | None,
                trace: HopTimes | None = None) -> Alert:
    """The alert of an episode at its current version (deterministic apart from ``trace``)."""
    d = ep.decision()
    assert d is not None and ep.has_alert, "episode has no alert"
    reasons: list[str] = []
    for _rule, _sev, _title, rs in sorted(ep.decisions.values(), key=lambda v: policy.Severity(v[1]).rank):
        reasons += [r for r in rs if r not in reasons]
    return Alert(
        alert_id=ep.alert_id, patient_id=ep.patient_id, episode_id=ep.episode_id, severity=d.severity,
        status=AlertStatus.OPEN, title=d.title, reasons=[r[:200] for r in reasons[:20]], version=ep.version,
        opened_at_ms=ep.opened_at_ms, updated_at_ms=ep.alert_updated_ms, needs_unit=d.needs_unit,
        patient_known=patient_known,
        location=GeoPoint(lat=location[0], lon=location[1]) if location else None,
        trigger_event_id=ep.trigger_event_id or ep.first_event_id, event_ids=list(ep.event_ids),
        rate_bpm=ep.rate_bpm, strip=EcgStrip.model_validate(ep.strip) if ep.strip else None,
        trace=trace or HopTimes(),
    )


def gateway_offline_alert(*, patient_id: str, site_id: str, gateway_id: str, time_ms: int,
                          patient_known: bool, location: tuple[float, float] | None,
                          trace: HopTimes | None = None) -> Alert:
    """The technical alert a gateway going offline raises for one of its patients."""
    event_id = f"{gateway_id}:{EventKind.GATEWAY_OFFLINE.value}:{time_ms}"
    d = policy.decide(EventKind.GATEWAY_OFFLINE, History(known=patient_known), time_ms)
    assert d is not None
    return Alert(
        alert_id=alert_id_for(patient_id, event_id), patient_id=patient_id,
        episode_id=episode_id_for(patient_id, event_id), severity=d.severity, title=d.title,
        reasons=[*d.reasons, f"gateway {gateway_id} of {site_id} offline"][:20], version=0,
        opened_at_ms=time_ms, updated_at_ms=time_ms, needs_unit=d.needs_unit, patient_known=patient_known,
        location=GeoPoint(lat=location[0], lon=location[1]) if location else None,
        trigger_event_id=event_id, event_ids=[event_id], trace=trace or HopTimes(),
    )
