"""Process-wide runtime settings shared by the long-running services."""

from __future__ import annotations

import gc

# CPython collects generation 0 every 700 container allocations. A hub round decodes thousands
# of messages, each with a strip list and nested models, so the collector ran many times per
# round and, with every object still alive, found nothing to free: in `emon bench hub` the
# decode phase took 2.1 s per 30,000 events with the default and 1.0 s with 50,000 (same
# machine, same run script), and the hub went from ~6,200 to ~8,500 events/s.
GC_GEN0_THRESHOLD = 50_000


def tune_gc(gen0: int = GC_GEN0_THRESHOLD) -> None:
    """Make the cyclic collector run less often and skip what exists at start-up.

    Call once a service has imported and connected everything: :func:`gc.freeze` moves the
    objects alive then (modules, clients, caches' scaffolding) out of every later collection.
    Reference counting still frees almost everything at once; only cycles wait longer.
    """
    _g0, g1, g2 = gc.get_threshold()
    gc.set_threshold(gen0, g1, g2)
    gc.freeze()
