"""Model update without dropping frames: watcher checks (sha256, input spec) and the swap between ticks."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emon_core.contracts import EcgFrame, decode_edge
from emon_core.registry import DeviceRegistry, sim_device_id
from emon_core.topics import frames_topic
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.service import GatewayPipeline, ModelWatcher, load_classifier
from gateway.settings import load_gateway_settings

classifier_mod = pytest.importorskip("gateway.classifier")
if not classifier_mod.DEFAULT_MODEL.exists():  # pragma: no cover
    pytest.skip("no bundled model", allow_module_level=True)


def write_model(d: Path, version: str, pad: int) -> Path:
    """A copy of the bundled model made distinct by trailing bytes, with a matching card."""
    src = classifier_mod.DEFAULT_MODEL
    blob = src.read_bytes() + b"\0" * pad
    tmp = d / "beat.tflite.tmp"
    tmp.write_bytes(blob)
    card = json.loads(src.with_name("model_card.json").read_text())
    card.update(version=version, sha256=hashlib.sha256(blob).hexdigest(), file="beat.tflite")
    (d / "model_card.json").write_text(json.dumps(card))
    tmp.replace(d / "beat.tflite")  # atomic, as docs/operators.md says
    st = (d / "beat.tflite").stat()
    os.utime(d / "beat.tflite", ns=(st.st_atime_ns, st.st_mtime_ns + pad))  # a distinct mtime
    return d / "beat.tflite"


def test_watcher_loads_a_checked_update_and_refuses_a_bad_one(tmp_path: Path) -> None:
    path = write_model(tmp_path, "v1-test", 0)
    settings = load_gateway_settings(None, simulated=10, model_path=path, classifier="tflite")
    metrics = GatewayMetrics()
    current = load_classifier(settings)
    w = ModelWatcher(settings, current, metrics, every_s=0)
    assert w.check() == "unchanged" and w.take() is None

    write_model(tmp_path, "v2-test", 64)
    assert w.check() == "settling"  # the copy may still be in progress
    assert w.check() == "loaded"
    new = w.take()
    assert new is not None and new.model_version == "v2-test" and w.take() is None

    path.write_bytes(path.read_bytes()[:-64] + b"\1" * 64)  # not what the card says
    assert w.check(force=True) == "refused"
    assert w.take() is None and w.current_version == "v2-test"
    assert w.check() == "unchanged"  # not retried until the files change again

    write_model(tmp_path, "v2-test", 64)  # the same model again
    assert w.check(force=True) == "same"
    refused = metrics.registry.get_sample_value("emon_gateway_model_reloads_total", {"result": "refused"})
    loaded = metrics.registry.get_sample_value("emon_gateway_model_reloads_total", {"result": "loaded"})
    assert (refused, loaded) == (1.0, 1.0)


class AllV:
    """Stand-in classifier: every beat is V, with a version."""

    def __init__(self, version: str) -> None:
        self.model_version = version

    def classify(self, windows: Any, rr: Any) -> np.ndarray:
        p = np.zeros((len(windows), 5), dtype=np.float32)
        p[:, 2] = 1.0
        return p


def test_swap_between_ticks_keeps_every_frame_and_tags_each_beat(tmp_path: Path) -> None:
    from simulators.synthetic import SyntheticConfig, SyntheticSource

    settings = load_gateway_settings(None, simulated=3000, site_id="site-02")
    p = GatewayPipeline(settings, DeviceRegistry.simulated(3000), AllV("A"), Outbox(tmp_path / "o.db"))
    src = SyntheticSource(SyntheticConfig(fs_hz=360.0, hr_bpm=70.0, seed=1))
    dev = sim_device_id(2805)
    for k in range(30):
        if k == 15:
            assert p.swap_classifier(AllV("B")) == "A"
        chunk = src.read(k * 360, 360)
        f = EcgFrame(device_id=dev, seq=k, device_time_ms=1_700_000_000_000 + 1000 * k, fs_hz=360.0,
                     gain_adu_per_mv=src.gain_adu_per_mv, baseline_adu=src.baseline_adu,
                     first_sample_index=360 * k, samples=chunk.samples.tolist())
        p.handle(frames_topic("site-02", dev), f.encode(), 0)
        p.tick()
    assert p.frames_ok == 30 and not p.invalid
    beats = [decode_edge(e.payload) for e in p.outbox.peek(0, 10_000)]
    beats = [b for b in beats if b.type == "flagged_beat"]
    versions = [b.model_version for b in sorted(beats, key=lambda b: b.sample_index)]
    assert versions and set(versions) == {"A", "B"}
    assert versions == sorted(versions)  # A up to the swap, B after: never mixed back
    assert p.model_version == "B"
    assert p.metrics.registry.get_sample_value("emon_gateway_model_info", {"version": "B"}) == 1.0
    assert p.metrics.registry.get_sample_value("emon_gateway_model_info", {"version": "A"}) is None
    p.outbox.close()
