"""The gateway's frame inbox: order, batches, bounded with backpressure, wake-ups across threads."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.inbox import Inbox


def test_items_come_out_in_order_in_batches() -> None:
    box: Inbox[int] = Inbox(100)
    for i in range(10):
        assert box.put(i, timeout=0)
    assert box.take(4, timeout=0) == [0, 1, 2, 3]
    assert box.take(100, timeout=0) == [4, 5, 6, 7, 8, 9]
    assert box.take(100, timeout=0) == [] and box.qsize() == 0


def test_full_inbox_refuses_after_the_timeout_and_frees_room_on_take() -> None:
    box: Inbox[int] = Inbox(2)
    assert box.put(1, 0) and box.put(2, 0)
    t0 = time.monotonic()
    assert not box.put(3, timeout=0.05)
    assert time.monotonic() - t0 >= 0.05
    done: list[bool] = []
    th = threading.Thread(target=lambda: done.append(box.put(3, timeout=5)))
    th.start()
    time.sleep(0.05)
    assert done == []  # blocked: backpressure on the network thread
    assert box.take(1, 0) == [1]
    th.join(5)
    assert done == [True] and box.take(10, 0) == [2, 3]


def test_a_waiting_taker_wakes_on_the_first_put() -> None:
    box: Inbox[str] = Inbox(10)
    got: list[list[str]] = []
    th = threading.Thread(target=lambda: got.append(box.take(10, timeout=5)))
    th.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    box.put("frame", 0)
    th.join(5)
    assert got == [["frame"]] and time.monotonic() - t0 < 2


def test_many_putters_lose_nothing() -> None:
    box: Inbox[tuple[int, int]] = Inbox(16)
    taken: list[tuple[int, int]] = []

    def put(k: int) -> None:
        for i in range(2000):
            assert box.put((k, i), timeout=10)

    threads = [threading.Thread(target=put, args=(k,)) for k in range(3)]
    for th in threads:
        th.start()
    while len(taken) < 6000:
        taken += box.take(32, timeout=0.5)
    for th in threads:
        th.join(5)
    for k in range(3):  # each putter's items in its own order
        assert [i for kk, i in taken if kk == k] == list(range(2000))


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Inbox(0)
