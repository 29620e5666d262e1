"""End-to-end accounting: ground truth vs the flagged beats and events that arrived.

Beats: every truth beat of a flagged class (default S, V, F, Q) in a frame the device
sent is *expected*; it is *delivered* when a received FlaggedBeat of the same device has
its sample index within ``tolerance_s`` (default 150 ms, EC57) of it. *Duplicates* are
received messages whose id was already seen (at-least-once redelivery); *unexpected*
are distinct received beats that match no expected beat (classifier false positives).

Events: a truth event is delivered when a received RhythmEvent of the same device and an
equivalent kind overlaps its interval widened by ``event_margin_s``. Re-sends of a growing
event (same id, higher ``revision``) are not duplicates; the same (id, revision) twice is.

Example:
    >>> acc = account(load_truth("truth.jsonl"), received_messages)
    >>> acc.beats.lost, acc.events.duplicates
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from emon_core.contracts import EventKind, FlaggedBeat, RhythmEvent, decode_edge
from simulators.ground_truth import DeviceTruth, Truth

FLAGGED_CLASSES = frozenset({"S", "V", "F", "Q"})
# kinds a gateway may legitimately report for the same truth event
EQUIVALENT_KINDS: dict[str, frozenset[str]] = {
    EventKind.PAUSE.value: frozenset({EventKind.PAUSE.value, EventKind.ASYSTOLE.value}),
    EventKind.ASYSTOLE.value: frozenset({EventKind.PAUSE.value, EventKind.ASYSTOLE.value}),
}


@dataclass
class Tally:
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    unexpected: int = 0
    received: int = 0  # messages, including duplicates
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)

    def _bump(self, kind: str, key: str, n: int = 1) -> None:
        row = self.by_kind.setdefault(kind, {"expected": 0, "delivered": 0, "lost": 0})
        row[key] = row.get(key, 0) + n


@dataclass
class Accounting:
    beats: Tally
    events: Tally
    lost_beat_ids: list[str] = field(default_factory=list)
    lost_events: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        b, e = self.beats, self.events
        return (
            f"beats: expected {b.expected} delivered {b.delivered} lost {b.lost} duplicates {b.duplicates} "
            f"unexpected {b.unexpected}; events: expected {e.expected} delivered {e.delivered} "
            f"lost {e.lost} duplicates {e.duplicates} unexpected {e.unexpected}"
        )


def _as_message(m: Any) -> Any:
    if isinstance(m, (FlaggedBeat, RhythmEvent)):
        return m
    if isinstance(m, dict):
        m = json.dumps(m)
    return decode_edge(m)


def account(
    truth: Truth,
    received: Iterable[Any],
    *,
    tolerance_s: float = 0.150,
    event_margin_s: float = 5.0,
    flagged_classes: frozenset[str] = FLAGGED_CLASSES,
    keep_ids: int = 50,
) -> Accounting:
    """Compare ``truth`` with received FlaggedBeat/RhythmEvent messages (objects, dicts or JSON)."""
    beats: dict[str, dict[str, int]] = {}  # device -> id -> sample index
    events: dict[str, dict[tuple[str, int], RhythmEvent]] = {}
    beat_ids: Counter[str] = Counter()
    event_keys: Counter[tuple[str, int]] = Counter()
    bt, et = Tally(), Tally()
    for raw in received:
        m = _as_message(raw)
        if isinstance(m, FlaggedBeat):
            bt.received += 1
            beat_ids[m.id] += 1
            beats.setdefault(m.device_id, {})[m.id] = m.sample_index
        elif isinstance(m, RhythmEvent):
            et.received += 1
            event_keys[(m.id, m.revision)] += 1
            events.setdefault(m.device_id, {})[(m.id, m.revision)] = m
    bt.duplicates = sum(c - 1 for c in beat_ids.values())
    et.duplicates = sum(c - 1 for c in event_keys.values())
    acc = Accounting(bt, et)
    for device_id in sorted(set(truth.devices) | set(beats) | set(events)):
        dev = truth.devices.get(device_id) or DeviceTruth(device_id)
        _account_beats(acc, dev, beats.get(device_id, {}), tolerance_s, flagged_classes, keep_ids)
        _account_events(acc, dev, events.get(device_id, {}), event_margin_s, keep_ids)
    return acc


def _account_beats(
    acc: Accounting, dev: DeviceTruth, got: dict[str, int], tol_s: float, flagged: frozenset[str], keep: int
) -> None:
    t = acc.beats
    fs = dev.fs_hz or 360.0
    tol = int(round(tol_s * fs))
    truth_idx = [i for i, _, _ in dev.beats]
    matched_truth: set[int] = set()
    for _, index in sorted(got.items(), key=lambda kv: kv[1]):
        k = bisect.bisect_left(truth_idx, index - tol)
        best = None
        while k < len(truth_idx) and truth_idx[k] <= index + tol:
            if dev.beats[k][1] in flagged and k not in matched_truth:
                if best is None or abs(truth_idx[k] - index) < abs(truth_idx[best] - index):
                    best = k
            k += 1
        if best is None:
            t.unexpected += 1
        else:
            matched_truth.add(best)
    for k, (index, cls, _) in enumerate(dev.beats):
        if cls not in flagged:
            continue
        t.expected += 1
        t._bump(cls, "expected")
        if k in matched_truth:
            t.delivered += 1
            t._bump(cls, "delivered")
        else:
            t.lost += 1
            t._bump(cls, "lost")
            if len(acc.lost_beat_ids) < keep:
                acc.lost_beat_ids.append(FlaggedBeat.make_id(dev.device_id, index))


def _account_events(
    acc: Accounting, dev: DeviceTruth, got: dict[tuple[str, int], RhythmEvent], margin_s: float, keep: int
) -> None:
    t = acc.events
    fs = dev.fs_hz or 360.0
    margin = int(round(margin_s * fs))
    # one entry per event id (latest revision)
    latest: dict[str, RhythmEvent] = {}
    for (eid, rev), m in got.items():
        if eid not in latest or rev > latest[eid].revision:
            latest[eid] = m
    used: set[str] = set()
    for ev in sorted(dev.events, key=lambda e: e["onset"]):
        kind = ev["kind"]
        t.expected += 1
        t._bump(kind, "expected")
        ok_kinds = EQUIVALENT_KINDS.get(kind, frozenset({kind}))
        lo, hi = ev["onset"] - margin, ev["end"] + margin
        hit = None
        for eid, m in latest.items():
            if m.kind.value not in ok_kinds:
                continue
            onset = m.onset_sample_index
            duration = max(0, m.end_time_ms - m.onset_time_ms) * fs / 1000.0
            if onset < hi and onset + duration >= lo:
                hit = eid
                if eid not in used:
                    break
        if hit is None:
            t.lost += 1
            t._bump(kind, "lost")
            if len(acc.lost_events) < keep:
                acc.lost_events.append(f"{dev.device_id}:{kind}:{ev['onset']}")
        else:
            used.add(hit)
            t.delivered += 1
            t._bump(kind, "delivered")
    t.unexpected += len(set(latest) - used)


def account_frames(truth: Truth, frames: Iterable[Any]) -> Tally:
    """Frames that reached a subscriber (EcgFrame objects or ``(device_id, seq)`` pairs) vs
    the frames the devices sent: expected / delivered / lost / duplicates / unexpected.

    Example:
        >>> account_frames(load_truth("run.jsonl"), received_frames).lost
    """
    t = Tally()
    seen: Counter[tuple[str, int]] = Counter()
    for f in frames:
        key = (f.device_id, f.seq) if hasattr(f, "seq") else (str(f[0]), int(f[1]))
        seen[key] += 1
        t.received += 1
    sent = {
        (dev.device_id, seq)
        for dev in truth.devices.values()
        for seq in dev.sent_seqs
    }
    t.expected = len(sent)
    t.delivered = len(sent & set(seen))
    t.lost = t.expected - t.delivered
    t.duplicates = sum(c - 1 for c in seen.values())
    t.unexpected = len(set(seen) - sent)
    return t
