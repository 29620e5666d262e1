"""A gateway's MQTT intake: paho's network thread + a hand-off queue vs :class:`CallerLoop` rounds.

    PYTHONPATH=. python scripts/bench_intake.py --rate 1000 --seconds 15 --work-ms 0.4 --runs 2

Needs the development broker (``emon services up``). A forked publisher sends ``--rate``
QoS 1 messages/s of 1,173 bytes (a 1 s int16 ECG frame) for ``--seconds``; the subscriber
spends ``--work-ms`` of CPU on each (the gateway's processing) and either

* ``thread``: receives on paho's network thread (``loop_start``, buffered reads) and hands
  each message to the main thread through a queue (the gateway's intake before 2026-12-03), or
* ``rounds``: reads the client itself every 20 ms with :class:`CallerLoop` and works on the
  round's messages in the same thread (the gateway's intake since).

Prints the subscriber's CPU per message beyond the work, context switches per message and
receive latency, alternating the modes ``--runs`` times, and the ratio rounds/thread.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emon_core.adapters.mqtt import CallerLoop, connect_and_wait, create_client  # noqa: E402
from emon_core.settings import MqttSettings  # noqa: E402

TOPIC = "edge/site-02/dev-02999/events"  # the gateway account may publish here, the bridge read it
SIZE = 1173


def _spin(ms: float) -> None:
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass


def _publisher(settings: MqttSettings, rate: int, seconds: float) -> None:
    pub = create_client(settings.with_user("gateway"), client_id=f"bench-intake-pub-{os.getpid()}", max_inflight=1000)
    connect_and_wait(pub, settings.with_user("gateway"))
    t0, i = time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pub.publish(TOPIC, f"{time.time():.6f}".encode().ljust(SIZE), qos=1)
        i += 1
    time.sleep(1.0)
    pub.disconnect()
    pub.loop_stop()


def _ctx_switches() -> int:
    with open("/proc/self/status") as f:
        return sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)


def run(mode: str, rate: int, seconds: float, work_ms: float) -> dict[str, Any]:
    settings = MqttSettings()
    sub = create_client(settings.with_user("bridge"), client_id=f"bench-intake-sub-{os.getpid()}",
                        subscriptions=[(TOPIC, 1)], buffered_reads=mode == "thread")
    got: list[bytes] = []
    q: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    if mode == "thread":
        sub.on_message = lambda c, u, m: q.put(m.payload)
        connect_and_wait(sub, settings.with_user("bridge"))
        loop = None
    else:
        sub.on_message = lambda c, u, m: got.append(m.payload)
        loop = CallerLoop(sub, settings.with_user("bridge"))
        loop.connect()
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(0.5)
            _publisher(settings, rate, seconds)
        finally:
            os._exit(0)
    n, lat = 0, []
    start: tuple[float, int] | None = None
    end = time.monotonic() + seconds + 4.0
    next_round = 0.0
    while time.monotonic() < end:
        if loop is None:
            try:
                items = [q.get(timeout=0.05)]
            except queue.Empty:
                items = []
        else:
            wait = next_round - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            next_round = time.monotonic() + 0.02
            loop.poll()
            items, got[:] = list(got), []
        for payload in items:
            if start is None:
                start = (time.process_time(), _ctx_switches())
            lat.append(time.time() - float(payload[:20]))
            _spin(work_ms)
            n += 1
    os.waitpid(pid, 0)
    cpu = time.process_time() - start[0] if start else 0.0
    ctx = _ctx_switches() - start[1] if start else 0
    if loop is None:
        sub.disconnect()
        sub.loop_stop()
    else:
        loop.disconnect()
    lat.sort()
    return {"mode": mode, "messages": n, "overhead_ms": 1000 * cpu / max(n, 1) - work_ms,
            "ctx_per_msg": ctx / max(n, 1), "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
            "p99_ms": 1000 * lat[int(0.99 * len(lat))] if lat else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--work-ms", type=float, default=0.4)
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    res: dict[str, list[float]] = {"thread": [], "rounds": []}
    for _ in range(a.runs):
        for mode in ("thread", "rounds"):
            r = run(mode, a.rate, a.seconds, a.work_ms)
            res[mode].append(r["overhead_ms"])
            print(f"{mode:7s} {r['messages']} msgs: CPU beyond the work {r['overhead_ms']:.3f} ms/msg, "
                  f"{r['ctx_per_msg']:.2f} context switches/msg, latency p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f} ms",
                  flush=True)
    ratio = statistics.median(res["rounds"]) / statistics.median(res["thread"])
    print(f"rounds / thread, intake CPU per message (medians): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
