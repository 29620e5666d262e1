"""Cost of gateway session checkpoints in-process: CPU per frame with and without, file size, write-all and restore time.

Replays the same frames (``simulators.bench_edge.replay_frames``) through a ``GatewayPipeline``
per checkpoint period (0 = no checkpoints): ``--warmup`` seconds unmeasured, ``--seconds``
measured (process CPU time, robust to other load on the machine). Then, as at SIGTERM, every
session is checkpointed (timed), and a fresh pipeline takes each device's next frame with and
without restoring (timed: the first frame's handling, restore included).

    PYTHONPATH=. python scripts/bench_checkpoints.py --devices 1000 --periods 0,5,2
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any


def run(frames: list[list[tuple[str, bytes]]], devices: int, warmup: int, period: float) -> dict[str, Any]:
    from emon_core.registry import DeviceRegistry
    from gateway.checkpoint_store import CheckpointStore
    from gateway.outbox import Outbox
    from gateway.service import GatewayPipeline, load_classifier
    from gateway.settings import load_gateway_settings

    settings = load_gateway_settings(None, simulated=devices, checkpoint_every_s=period)
    clf = load_classifier(settings)
    out: dict[str, Any] = {"checkpoint_every_s": period}
    with tempfile.TemporaryDirectory() as d:
        store = CheckpointStore(Path(d) / "sessions.db") if period > 0 else None
        p = GatewayPipeline(settings, DeviceRegistry.simulated(devices), clf, Outbox(Path(d) / "o.db"),
                            checkpoints=store)
        for batch in frames[:warmup]:
            for topic, payload in batch:
                p.handle(topic, payload, 0)
            p.tick()
        w0 = store.written if store else 0
        spent = [0.0]
        if store is not None:  # the checkpoint work itself, timed where it happens (tick and hot frames)
            write = p.write_checkpoints

            def timed(sessions: Any = None) -> int:
                t = time.process_time()
                try:
                    return write(sessions)
                finally:
                    spent[0] += time.process_time() - t

            p.write_checkpoints = timed  # type: ignore[method-assign]
        c0 = time.process_time()
        for batch in frames[warmup:-1]:
            for topic, payload in batch:
                p.handle(topic, payload, 0)
            p.tick()
        cpu = time.process_time() - c0
        n = devices * (len(frames) - 1 - warmup)
        out["cpu_ms_per_frame"] = round(1000.0 * cpu / n, 4)
        if store is None:
            return out
        out["checkpoint_cpu_ms_per_frame"] = round(1000.0 * spent[0] / n, 4)
        out["checkpoint_share"] = round(spent[0] / cpu, 4)
        p.write_checkpoints = write  # type: ignore[method-assign]
        out["checkpoints_per_s"] = round((store.written - w0) / (len(frames) - 1 - warmup), 1)
        t0 = time.perf_counter()
        p.write_checkpoints()
        out["write_all_ms"] = round(1000 * (time.perf_counter() - t0), 1)
        store.close()
        db = Path(d) / "sessions.db"
        out["file_bytes"] = db.stat().st_size
        store = CheckpointStore(db)
        out["rows"] = len(store)
        out["record_bytes_mean"] = round(sum(len(store.get(f"dev-{i:05d}") or b"") for i in range(devices)) / devices)
        for label, st in (("restore", store), ("cold", None)):
            q = GatewayPipeline(settings, DeviceRegistry.simulated(devices), clf, Outbox(Path(d) / f"{label}.db"),
                                checkpoints=st)
            t0 = time.perf_counter()
            for topic, payload in frames[-1]:
                q.handle(topic, payload, 0)
            out[f"first_frame_ms_{label}"] = round(1000 * (time.perf_counter() - t0) / devices, 3)
            if st is not None:
                out["restored"] = dict(q.restores)
        store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--source", default="mitdb", choices=["mitdb", "synthetic"])
    ap.add_argument("--periods", default="0,5,2")
    o = ap.parse_args()
    logging.getLogger("gateway.service").setLevel(logging.WARNING)
    from simulators.bench_edge import replay_frames

    t0 = time.perf_counter()
    source, frames = replay_frames(o.devices, o.warmup + o.seconds + 1, o.source)
    print(f"{o.devices} devices, {source}, frames built in {time.perf_counter() - t0:.0f} s", flush=True)
    for period in [float(x) for x in o.periods.split(",")]:
        print(json.dumps(run(frames, o.devices, o.warmup, period)), flush=True)


if __name__ == "__main__":
    main()
