"""Hand-off cost per frame from a network thread to the processing thread: queue.Queue vs gateway.inbox.Inbox.

    PYTHONPATH=. python scripts/bench_inbox.py --items 200000

Prints process CPU and wall time per item for each, and their ratio (same run).
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from typing import Any, Callable


def _run(put: Callable[[Any], Any], take_some: Callable[[], int], n: int) -> tuple[float, float]:
    def produce() -> None:
        for i in range(n):
            put((f"ecg/site/dev-{i % 1000:05d}/frames", b"x" * 2500, i))

    th = threading.Thread(target=produce)
    c0, t0 = time.process_time(), time.perf_counter()
    th.start()
    got = 0
    while got < n:
        got += take_some()
    th.join()
    return (time.process_time() - c0) / n * 1e6, (time.perf_counter() - t0) / n * 1e6


def bench_queue(n: int) -> tuple[float, float]:
    q: queue.Queue[Any] = queue.Queue(maxsize=20_000)

    def take_one() -> int:
        try:
            q.get(timeout=0.1)
            return 1
        except queue.Empty:
            return 0

    return _run(lambda item: q.put(item, timeout=5.0), take_one, n)


def bench_inbox(n: int) -> tuple[float, float]:
    from gateway.inbox import Inbox

    box: Inbox[Any] = Inbox(20_000)
    return _run(lambda item: box.put(item, timeout=5.0), lambda: len(box.take(32, 0.1)), n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200_000)
    n = ap.parse_args().items
    q_cpu, q_wall = bench_queue(n)
    i_cpu, i_wall = bench_inbox(n)
    print(f"queue.Queue: {q_cpu:.2f} us CPU, {q_wall:.2f} us wall per frame")
    print(f"Inbox      : {i_cpu:.2f} us CPU, {i_wall:.2f} us wall per frame")
    print(f"ratio (Queue / Inbox): CPU {q_cpu / i_cpu:.1f}x, wall {q_wall / i_wall:.1f}x")


if __name__ == "__main__":
    main()
