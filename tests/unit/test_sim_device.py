"""Virtual device bookkeeping without a broker: seq/sample indices, backlog order, truth records."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from emon_core.contracts import EcgFrame, decode
from simulators.device import DeviceOptions, DeviceStats, VirtualDevice
from simulators.ground_truth import TruthRecorder, load_truth
from simulators.scenario import parse_scenario
from simulators.synthetic import SyntheticConfig, SyntheticSource


class FakePaho:
    """Records what the device hands to paho (the real broker is exercised in tests/integration)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int) -> Any:
        self.published.append((topic, payload))
        return SimpleNamespace(mid=len(self.published))


def _device(tmp_path: Path, scenario: str = "", **opts: Any) -> tuple[VirtualDevice, TruthRecorder]:
    rec = TruthRecorder(tmp_path / "truth.jsonl")
    src = SyntheticSource(SyntheticConfig(fs_hz=200, seed=1), parse_scenario(scenario) if scenario else None)
    dev = VirtualDevice(device_id="dev-00007", patient_id="pat-00007", site_id="site-00", source=src,
                        options=DeviceOptions(frame_ms=500, **opts), stats=DeviceStats(), recorder=rec)
    dev.client = FakePaho()
    dev.start(1_700_000_000_000, 0.0)
    return dev, rec


def test_frames_carry_seq_indices_and_device_time(tmp_path: Path) -> None:
    dev, rec = _device(tmp_path)
    dev.connected = True
    for _ in range(3):
        dev.produce(1)
    frames = [decode(p, EcgFrame) for _, p in dev.client.published]
    assert [f.seq for f in frames] == [0, 1, 2]
    assert [f.first_sample_index for f in frames] == [0, 100, 200]
    assert [f.device_time_ms for f in frames] == [1_700_000_000_000, 1_700_000_000_500, 1_700_000_001_000]
    assert dev.client.published[0][0] == "ecg/site-00/dev-00007/frames"
    assert dev.due(0) == 0.5 and dev.due(3) == 2.0


def test_backlog_while_disconnected_then_in_order(tmp_path: Path) -> None:
    dev, rec = _device(tmp_path, backlog_frames=3)
    dev.connected = True
    dev.produce(1)
    dev.connected = False
    for _ in range(5):  # 5 frames while offline, backlog keeps the newest 3
        dev.produce(2)
    assert len(dev.backlog) == 3 and dev.stats.frames_backlog_lost == 2
    dev.on_connect(dev.client, None, None, SimpleNamespace(is_failure=False, value=0), None)
    assert dev.flush_pending
    dev.flush_backlog(3)
    assert [decode(p, EcgFrame).seq for _, p in dev.client.published] == [0, 3, 4, 5]
    rec.close()
    truth = load_truth(rec.path)
    d = truth.devices["dev-00007"]
    assert d.frames_sent == 4 and d.frames_dropped == 2
    lines = [json.loads(x) for x in rec.path.read_text().splitlines()]
    assert [x["reason"] for x in lines if x["t"] == "drop"] == ["backlog_full", "backlog_full"]
    assert [x["sent_ms"] for x in lines if x["t"] == "frame"] == [1, 3, 3, 3]


def test_acks_reconnect_resend_accounting(tmp_path: Path) -> None:
    dev, _ = _device(tmp_path)
    dev.connected = True
    dev.ever_connected = True
    dev.produce(1)
    dev.produce(1)
    dev.on_publish(dev.client, None, 1, SimpleNamespace(is_failure=False), None)
    dev.on_disconnect(dev.client, None, None, None, None)
    assert not dev.connected and dev.stats.disconnects == 1
    dev.on_connect(dev.client, None, None, SimpleNamespace(is_failure=False, value=0), None)
    assert dev.stats.reconnects == 1 and dev.stats.frames_resent == 1  # mid 2 still unacknowledged
    dev.on_publish(dev.client, None, 2, SimpleNamespace(is_failure=False), None)
    assert dev.stats.frames_acked == 2 and dev.outstanding == 0


def test_refused_login_is_not_retried(tmp_path: Path) -> None:
    dev, _ = _device(tmp_path)
    dev.on_connect(dev.client, None, None, SimpleNamespace(is_failure=True, value=0x86), None)
    assert dev.failed and not dev.connected


def test_silent_and_dropout_frames_consume_seq(tmp_path: Path) -> None:
    dev, rec = _device(tmp_path, scenario="silent@1:d=1,vt@2:k=3")
    dev.connected = True
    for _ in range(8):
        dev.produce(5)
    seqs = [decode(p, EcgFrame).seq for _, p in dev.client.published]
    assert seqs == [0, 1, 4, 5, 6, 7]  # frames 2 and 3 (1.0-2.0 s) never sent
    assert dev.stats.frames_silent == 2
    rec.close()
    truth = load_truth(rec.path)
    kinds = [e["kind"] for e in truth.devices["dev-00007"].events]
    assert kinds == ["signal_loss", "v_run"]

    dev2, _ = _device(tmp_path / "b", dropout=0.5)
    dev2.connected = True
    for _ in range(200):
        dev2.produce(5)
    assert 60 < dev2.stats.frames_dropped < 140
    assert dev2.stats.frames_sent + dev2.stats.frames_dropped == 200
