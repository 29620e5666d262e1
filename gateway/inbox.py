"""Bounded hand-off of received frames from paho's network thread to the processing thread.

``queue.Queue`` takes its lock and signals a condition for every item; at 1,000 frames/s that
was ~8 % of the processing thread's time (py-spy, ``emon bench edge --levels 1000``). Here the
processing thread takes everything waiting (up to a batch) under one lock, and the network
thread signals only when the inbox goes from empty to non-empty or a putter waits for room.
A full inbox blocks the network thread (delaying its PUBACKs: backpressure to the devices).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """FIFO of at most ``maxsize`` items; one or more putters, one taker."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._putters_waiting = 0

    def put(self, item: T, timeout: float) -> bool:
        """Append ``item``; wait up to ``timeout`` s for room. False if it stayed full."""
        with self._lock:
            if len(self._items) >= self.maxsize:
                deadline = time.monotonic() + timeout
                self._putters_waiting += 1
                try:
                    while len(self._items) >= self.maxsize:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return False
                        self._not_full.wait(left)
                finally:
                    self._putters_waiting -= 1
            self._items.append(item)
            if len(self._items) == 1:
                self._not_empty.notify()
            return True

    def take(self, max_items: int, timeout: float) -> list[T]:
        """Up to ``max_items`` items in order; waits up to ``timeout`` s when empty (0: no wait)."""
        with self._lock:
            if not self._items and timeout > 0:
                self._not_empty.wait(timeout)
            items = self._items
            n = min(len(items), max_items)
            out = [items.popleft() for _ in range(n)]
            if n and self._putters_waiting:
                self._not_full.notify_all()
            return out

    def qsize(self) -> int:
        """Items waiting (approximate while others put)."""
        return len(self._items)
