"""Device simulator against the real Mosquitto: every frame arrives, in order, after breaks too."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emon_core.cli import build_parser
from emon_core.contracts import EcgFrame, decode
from emon_core.registry import sim_device_id
from emon_core.settings import MqttSettings
from emon_core.topics import frames_topic
from simulators.fleet import Fleet
from simulators.accounting import account_frames
from simulators.ground_truth import load_truth
from simulators.mqtt_client import connect, device_password, new_device_client
from simulators.sim_devices import run_devices
from simulators.synthetic import SyntheticConfig, SyntheticSource

pytestmark = pytest.mark.services

START = 2950  # device numbers dev-02950.. are reserved for these tests


class Collector:
    """Subscribes with the gateway service account to every frame topic (QoS 1)."""

    def __init__(self, settings: MqttSettings) -> None:
        from emon_core.adapters.mqtt import connect_and_wait, service_client

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = service_client(
            settings, "gateway", f"test-sim-{time.time_ns()}", subscriptions=[("ecg/+/+/frames", 1)]
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.subscribed = threading.Event()
        connect_and_wait(self.client, settings, timeout_s=30)  # a shared, busy broker can be slow
        assert self.subscribed.wait(30), "gateway subscriber could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.dup)))

    def frames(self, prefix: str = "dev-029") -> dict[str, list[EcgFrame]]:
        out: dict[str, list[EcgFrame]] = defaultdict(list)
        with self.lock:
            msgs = list(self.messages)
        for topic, payload, _ in msgs:
            frame = decode(payload, EcgFrame)
            assert topic.split("/")[2] == frame.device_id
            if frame.device_id.startswith(prefix):
                out[frame.device_id].append(frame)
        return out

    def wait_for(self, devices: list[str], per_device: int, timeout_s: float = 20.0) -> dict[str, list[EcgFrame]]:
        deadline = time.monotonic() + timeout_s
        while True:
            got = self.frames()
            if all(len({f.seq for f in got.get(d, [])}) >= per_device for d in devices) or time.monotonic() > deadline:
                return got
            time.sleep(0.2)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def collector(mqtt_settings: MqttSettings):
    c = Collector(mqtt_settings)
    yield c
    c.close()


def _args(*argv: str) -> Any:
    parser, _ = build_parser()
    return parser.parse_args(["sim", "devices", "--status-every", "0", *argv])


def _check_in_order(frames: list[EcgFrame], expected: int, frame_n: int) -> None:
    first_seen: list[int] = []
    for f in frames:
        if f.seq not in first_seen:
            first_seen.append(f.seq)
    assert first_seen == list(range(expected)), "frames missing or out of order"
    for f in frames:
        assert f.first_sample_index == f.seq * frame_n and f.n_samples == frame_n
    firsts = {}
    for f in frames:
        firsts.setdefault(f.seq, f.device_time_ms)
    times = [firsts[k] for k in sorted(firsts)]
    assert all(b > a for a, b in zip(times, times[1:])), "device time not increasing with seq"


def test_fast_run_delivers_every_frame_in_order(collector: Collector, tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.jsonl"
    args = _args("--patients", "4", "--start-index", str(START), "--source", "synthetic", "--fs", "250",
                 "--frame-ms", "500", "--duration", "10", "--fast", "--seed", "3",
                 "--scenario", "vt@4:k=5", "--truth", str(truth_path))
    assert run_devices(args) == 0
    devices = [sim_device_id(n) for n in range(START, START + 4)]
    got = collector.wait_for(devices, 20)
    truth = load_truth(truth_path)
    assert truth.summary is not None and truth.summary["frames_acked"] == 80
    for n, dev in zip(range(START, START + 4), devices):
        frames = got[dev]
        _check_in_order(frames, 20, 125)
        # samples arrive exactly as the generator rendered them, in the compact int16 form
        src = SyntheticSource(SyntheticConfig(fs_hz=250, hr_bpm=60.0 + (n * 7) % 35, seed=3 + n), args.scenario_list)
        assert frames[7].samples is None and frames[7].samples_i16 is not None
        assert np.array_equal(frames[7].adu, src.read(7 * 125, 125).samples)
        assert truth.devices[dev].frames_sent == 20
        assert sum(c == "V" for _, c, _ in truth.devices[dev].beats) == 5
        assert [e["kind"] for e in truth.devices[dev].events] == ["v_run"]
        assert all(f.fs_hz == 250 and f.gain_adu_per_mv == 200 for f in frames)


def test_forced_disconnects_lose_nothing(collector: Collector, tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.jsonl"
    broken: list[int] = []

    def breaker(fleet: Fleet) -> None:
        def go() -> None:
            for delay in (1.1, 1.3):
                time.sleep(delay)
                broken.append(fleet.drop_connections())

        threading.Thread(target=go, daemon=True).start()

    args = _args("--patients", "3", "--start-index", str(START + 10), "--source", "synthetic",
                 "--frame-ms", "100", "--duration", "4", "--truth", str(truth_path))
    assert run_devices(args, on_running=breaker) == 0
    assert broken and sum(broken) >= 3
    devices = [sim_device_id(n) for n in range(START + 10, START + 13)]
    got = collector.wait_for(devices, 40)
    truth = load_truth(truth_path)
    summary = truth.summary
    assert summary is not None and summary["reconnects"] >= 3
    frames = account_frames(truth, [f for dev in devices for f in got[dev]])
    assert frames.expected == 120 and frames.lost == 0 and frames.unexpected == 0
    assert summary["frames_acked"] == summary["frames_sent"] == 120
    for dev in devices:
        _check_in_order(got[dev], 40, 36)


def test_paho_resends_a_frame_whose_ack_was_lost(collector: Collector, mqtt_settings: MqttSettings) -> None:
    """The guarantee the simulator relies on: an unacknowledged QoS 1 frame is resent after reconnect."""
    dev = sim_device_id(START + 20)
    client = new_device_client(dev, mqtt_settings, device_password(dev))
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    connect(client, mqtt_settings, session_expiry_s=60)
    deadline = time.monotonic() + 10
    while not connected.is_set() and time.monotonic() < deadline:
        client.loop(0.05)
    assert connected.is_set()
    frame = EcgFrame(device_id=dev, seq=0, device_time_ms=int(time.time() * 1000), fs_hz=100.0,
                     first_sample_index=0, samples=[1024.0] * 100)
    info = client.publish(frames_topic("site-02", dev), frame.encode(), qos=1)
    time.sleep(0.3)  # the broker got it and sent PUBACK, which is never read:
    assert not info.is_published()
    connected.clear()
    client.reconnect()  # drops the old connection (and its unread PUBACK) and opens a new one
    deadline = time.monotonic() + 10
    while not info.is_published() and time.monotonic() < deadline:
        client.loop(0.05)
    assert info.is_published(), "paho did not resend the unacknowledged frame"
    client.disconnect()
    # the resend's PUBACK can reach the device before the broker's copy reaches the collector
    deadline = time.monotonic() + 10
    copies: list[EcgFrame] = []
    while len(copies) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        copies = [f for f in collector.frames().get(dev, []) if f.seq == 0]
    time.sleep(0.5)  # and no third copy
    copies = [f for f in collector.frames().get(dev, []) if f.seq == 0]
    assert len(copies) == 2  # the original and the resend: at least once, duplicate with the same seq
    assert copies[0] == copies[1]
