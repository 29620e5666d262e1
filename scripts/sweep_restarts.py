"""Kill-and-resume sweep of one synthetic patient through GatewayPipeline: what a gateway restart at each second reports.

For kill points 22..57 s of ``pause@30:s=4,vt@45:k=8,rate=180`` (360 and 250 Hz, seeds 3 and 11),
gateway A takes the frames before the kill and is dropped (SIGKILL: nothing more written), gateway
B takes them from the kill (or one frame later: the frame queued at the kill lost). One JSON line
per restart: pause reported with its true onset, longest V run, events with no truth match.

    PYTHONPATH=. python scripts/sweep_restarts.py 1 > with.jsonl      # 0: without checkpoints
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from emon_core.contracts import EcgFrame, decode_edge
from emon_core.registry import DeviceRegistry
from emon_core.topics import frames_topic
from gateway.checkpoint_store import CheckpointStore
from gateway.outbox import Outbox
from gateway.service import GatewayPipeline, load_classifier
from gateway.settings import load_gateway_settings
from simulators.scenario import parse_scenario
from simulators.synthetic import SyntheticConfig, SyntheticSource

logging.disable(logging.WARNING)
SCEN = "pause@30:s=4,vt@45:k=8,rate=180"


def run(clf: Any, fs: float, seed: int, kill: int, resume: int, end: int = 60, ckpt: bool = True) -> dict[str, Any]:
    """One restart: A takes frames [0, kill), B [resume, end); what came out, against the truth."""
    settings = load_gateway_settings(None, simulated=10, site_id="site-00")
    src = SyntheticSource(SyntheticConfig(fs_hz=fs, hr_bpm=70.0, seed=seed), parse_scenario(SCEN))
    dev, n = "dev-00003", int(fs)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        store = CheckpointStore(d / "s.db") if ckpt else None
        for name, ks in (("A", range(0, kill)), ("B", range(resume, end))):
            ob = Outbox(d / f"{name}.db")
            p = GatewayPipeline(settings, DeviceRegistry.simulated(10), clf, ob, checkpoints=store)
            for k in ks:
                c = src.read(k * n, n)
                f = EcgFrame(device_id=dev, seq=k, device_time_ms=1_700_000_000_000 + 1000 * k, fs_hz=fs,
                             gain_adu_per_mv=src.gain_adu_per_mv, baseline_adu=src.baseline_adu,
                             first_sample_index=n * k, samples=c.samples.tolist()).encode()
                p.handle(frames_topic("site-00", dev), f, 0)
                p.tick()
            out += [(name, decode_edge(e.payload)) for e in ob.peek(0, 100000)]
            ob.close()
        if store is not None:
            store.close()
    truth = {e.kind.value: e.onset_index for e in src.events(0, end * n)}
    ev: dict[tuple[str, int], list[tuple[str, int, int]]] = {}
    for name, m in out:
        if m.type == "rhythm_event":
            ev.setdefault((m.kind.value, m.onset_sample_index), []).append((name, m.revision, m.beat_count))
    tol = int(0.15 * fs)
    false = [k for k in ev if not any(k[0] == t and abs(k[1] - o) <= tol for t, o in truth.items())]
    got_pause = any(k[0] == "pause" and abs(k[1] - truth["pause"]) <= tol for k in ev)
    vrun = max([b for k, v in ev.items() if k[0] == "v_run" for _, _, b in v] or [0])
    return {"fs": fs, "seed": seed, "kill": kill, "lost": resume - kill, "ckpt": ckpt, "pause": got_pause,
            "vrun_max_beats": vrun, "false": false}


def main() -> None:
    ckpt = (sys.argv[1] if len(sys.argv) > 1 else "1") != "0"
    clf = load_classifier(load_gateway_settings(None, simulated=10, site_id="site-00"))
    for fs in (360.0, 250.0):
        for seed in (3, 11):
            for kill in range(22, 58):
                for lost in (0, 1):
                    print(json.dumps(run(clf, fs, seed, kill, kill + lost, ckpt=ckpt)), flush=True)


if __name__ == "__main__":
    main()
