"""Pure priority queue of alerts waiting for a free unit: severity first, then age."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Iterator


@dataclass(order=True, frozen=True)
class QueuedAlert:
    severity_rank: int
    opened_at_ms: int
    alert_id: str
    patient_id: str = field(compare=False)
    lat: float = field(compare=False)
    lon: float = field(compare=False)
    severity: str = field(compare=False)
    enqueued_at_ms: int = field(compare=False, default=0)


class AlertQueue:
    """Heap with lazy deletion; :meth:`remove` and re-:meth:`push` are O(log n)."""

    def __init__(self) -> None:
        self._heap: list[QueuedAlert] = []
        self._live: dict[str, QueuedAlert] = {}

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._live

    def push(self, item: QueuedAlert) -> None:
        """Queue an alert, replacing an older entry for the same alert."""
        self._live[item.alert_id] = item
        heapq.heappush(self._heap, item)

    def remove(self, alert_id: str) -> QueuedAlert | None:
        return self._live.pop(alert_id, None)

    def _clean(self) -> None:
        while self._heap and self._live.get(self._heap[0].alert_id) is not self._heap[0]:
            heapq.heappop(self._heap)

    def peek(self) -> QueuedAlert | None:
        self._clean()
        return self._heap[0] if self._heap else None

    def pop(self) -> QueuedAlert | None:
        self._clean()
        if not self._heap:
            return None
        item = heapq.heappop(self._heap)
        del self._live[item.alert_id]
        return item

    def ordered(self) -> Iterator[QueuedAlert]:
        """Live entries in priority order (a snapshot)."""
        return iter(sorted(self._live.values()))
