"""Gateway frame validation: bad frames are counted by reason, never crash, never disturb other devices."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from emon_core.contracts import EcgFrame
from emon_core.registry import DeviceRegistry
from gateway.outbox import Outbox
from gateway.rules_classifier import RulesClassifier
from gateway.service import GatewayPipeline
from gateway.settings import load_gateway_settings

FS = 250.0
T0 = 1_700_000_000_000


def frame(dev: str, k: int, n: int = 250, fs: float = FS, **kw: object) -> EcgFrame:
    rng = np.random.default_rng(k)
    fields = dict(device_id=dev, seq=k, device_time_ms=T0 + k * 1000, fs_hz=fs, first_sample_index=k * n,
                  samples=(1024 + 20 * rng.standard_normal(n)).round().tolist())
    fields.update(kw)
    return EcgFrame(**fields)  # type: ignore[arg-type]


def topic(dev: str, site: str = "site-00") -> str:
    return f"ecg/{site}/{dev}/frames"


@pytest.fixture()
def pipeline(tmp_path: Path) -> GatewayPipeline:
    s = load_gateway_settings(None, simulated=10)
    return GatewayPipeline(s, DeviceRegistry.simulated(10), RulesClassifier(), Outbox(tmp_path / "o.db"))


def test_bad_frames_counted_by_reason_and_other_devices_unaffected(pipeline: GatewayPipeline) -> None:
    good, bad = "dev-00001", "dev-00002"
    p = pipeline
    k_good = 0

    def good_frame() -> None:
        nonlocal k_good
        p.handle(topic(good), frame(good, k_good).encode(), T0)
        k_good += 1

    p.handle(topic(bad), frame(bad, 0).encode(), T0)
    good_frame()
    cases = {
        "malformed": [b"{not json", b'{"type":"ecg_frame"}', b"\xff\xfe", b""],
        "oversized": [b"[" + b"1," * 200_000 + b"1]",
                      json.dumps({**json.loads(frame(bad, 1).encode()), "fs_hz": 100.0,
                                  "samples": [1.0] * 1500}).encode()],
        "nan": [frame(bad, 1).encode().replace(b"[", b"[NaN,", 1).replace(b'"samples":[NaN,', b'"samples":[NaN,')],
        "wrong_rate": [json.dumps({**json.loads(frame(bad, 1).encode()), "fs_hz": 50.0}).encode(),
                       frame(bad, 1, fs=500.0, n=500, first_sample_index=250).encode()],
        "replay": [frame(bad, 0).encode()],
        "out_of_order": [frame(bad, 5, first_sample_index=100).encode()],
        "unknown_device": [frame("dev-99999", 0).encode()],
    }
    as_i16 = {k: v for k, v in json.loads(frame(bad, 1).encode()).items() if k != "samples"}
    cases["malformed"] += [
        json.dumps({**as_i16, "samples_i16": "not base64!"}).encode(),
        json.dumps({**as_i16, "samples_i16": "AAAA"}).encode(),  # 3 bytes: not int16 samples
        json.dumps({**as_i16, "samples_i16": "AAAAAA==", "samples": [1.0]}).encode(),  # both forms
        json.dumps(as_i16).encode(),  # neither
    ]
    cases["oversized"] += [json.dumps({**as_i16, "fs_hz": 100.0, "samples_i16": EcgFrame.pack_i16(np.zeros(1001))}).encode(),
                           json.dumps({**as_i16, "samples_i16": "A" * 30_000}).encode()]
    nan_payload = json.loads(frame(bad, 1).encode())
    nan_payload["samples"][3] = float("nan")
    cases["nan"] = [json.dumps(nan_payload).encode()]  # json.dumps writes NaN
    for reason, payloads in cases.items():
        for payload in payloads:
            p.handle(topic("dev-99999" if reason == "unknown_device" else bad), payload, T0)
            good_frame()
    p.handle(topic(bad, site="site-01"), frame(bad, 1).encode(), T0)  # another site's topic
    p.handle("ecg/site-00/frames", frame(bad, 1).encode(), T0)  # not a frame topic
    p.handle(topic("dev-00003"), frame(bad, 1).encode(), T0)  # payload of another device
    good_frame()
    p.tick()
    inv = dict(p.invalid)
    assert inv.pop("foreign_topic") == 2
    assert inv.pop("device_mismatch") == 1
    assert inv == {reason: len(payloads) for reason, payloads in cases.items()}
    assert p.sessions[good].last_seq == k_good - 1  # every good frame went through, in order
    assert p.frames_ok == k_good + 1
    # the bad device still works after all that
    p.handle(topic(bad), frame(bad, 1).encode(), T0)
    assert p.sessions[bad].last_seq == 1
    snap = p.snapshot()
    assert snap["frames_invalid"]["malformed"] == 8
    assert p.metrics.registry.get_sample_value("emon_gateway_frames_invalid_total", {"reason": "nan"}) == 1


def test_int16_frames_give_exactly_what_json_frames_give(tmp_path: Path) -> None:
    """The same ECG sent as base64 int16 and as JSON numbers: identical gateway output."""
    from simulators.scenario import parse_scenario
    from simulators.synthetic import SyntheticConfig, generate

    ecg = generate(40.0, SyntheticConfig(fs_hz=FS, seed=4), parse_scenario("vt@15:k=7,pause@28:s=4"))
    outputs, sizes = [], []
    for encoding in ("json", "i16"):
        p = GatewayPipeline(load_gateway_settings(None, simulated=10), DeviceRegistry.simulated(10), RulesClassifier(),
                            Outbox(tmp_path / f"{encoding}.db"))
        for k in range(40):
            f = EcgFrame.from_adu(ecg.samples[k * 250:(k + 1) * 250], compact=encoding == "i16",
                                  device_id="dev-00001", seq=k, device_time_ms=T0 + k * 1000, fs_hz=FS,
                                  first_sample_index=k * 250, gain_adu_per_mv=ecg.gain_adu_per_mv,
                                  baseline_adu=ecg.baseline_adu)
            assert (f.samples_i16 is not None) == (encoding == "i16") and (f.samples is None) == (encoding == "i16")
            payload = f.encode()
            sizes.append(len(payload))
            p.handle(topic("dev-00001"), payload, T0 + 1000 * k, now_mono=10.0 + k)
            p.tick(now_mono=10.5 + k)
        assert not p.invalid and p.frames_ok == 40
        msgs = [json.loads(e.payload) for e in p.outbox.peek(0, 10_000)]
        for m in msgs:  # wall-clock fields differ between the two runs
            m.pop("trace", None)
            m.pop("created_at_ms", None)
        outputs.append(msgs)
    kinds = {m["type"] for m in outputs[0]}
    assert {"flagged_beat", "rhythm_event"} <= kinds
    assert outputs[0] == outputs[1]
    assert sum(sizes[40:]) < 0.6 * sum(sizes[:40])  # the int16 form is well under 60 % of the JSON one


def test_gap_is_filled_and_a_long_gap_restarts_the_stream(pipeline: GatewayPipeline) -> None:
    p, dev = pipeline, "dev-00004"
    for k in range(3):
        p.handle(topic(dev), frame(dev, k).encode(), T0)
    p.handle(topic(dev), frame(dev, 5).encode(), T0)  # 2 s missing: NaN-filled
    s = p.sessions[dev]
    assert s.expected_index == 6 * 250 and s.base_index == 0
    p.handle(topic(dev), frame(dev, 100).encode(), T0)  # 94 s missing: pipeline restarts
    s = p.sessions[dev]
    assert s.base_index == 100 * 250 and s.expected_index == 101 * 250
    assert not p.invalid


def test_device_restart_starts_a_new_stream_but_a_replay_is_rejected(pipeline: GatewayPipeline) -> None:
    p, dev = pipeline, "dev-00005"
    for k in range(4):
        p.handle(topic(dev), frame(dev, k).encode(), T0)
    first = p.sessions[dev]
    p.handle(topic(dev), frame(dev, 1).encode(), T0)  # an old frame again (older device clock)
    assert p.invalid == {"replay": 1} and p.sessions[dev] is first
    p.handle(topic(dev), frame(dev, 0, device_time_ms=T0 + 3_600_000).encode(), T0)  # rebooted device
    assert p.sessions[dev] is not first and p.sessions[dev].last_seq == 0
    assert p.invalid == {"replay": 1}
    assert p.metrics.registry.get_sample_value("emon_gateway_device_restarts_total") == 1


def test_a_burst_of_frames_keeps_the_strips_of_beats_awaiting_classification(pipeline: GatewayPipeline) -> None:
    from emon_core.contracts import decode_edge
    from simulators.scenario import parse_scenario
    from simulators.synthetic import SyntheticConfig, generate

    p, dev = pipeline, "dev-00006"
    ecg = generate(60.0, SyntheticConfig(fs_hz=FS, seed=2), parse_scenario("vt@20:k=6"))
    for k in range(60):  # a whole minute between two ticks (catching up after an outage)
        f = frame(dev, k, gain_adu_per_mv=ecg.gain_adu_per_mv, baseline_adu=ecg.baseline_adu,
                  samples=ecg.samples[k * 250:(k + 1) * 250].tolist())
        p.handle(topic(dev), f.encode(), T0)
    p.tick()
    msgs = [decode_edge(e.payload) for e in p.outbox.peek(0, 1000)]
    beats = [m for m in msgs if m.type == "flagged_beat"]
    assert len(beats) >= 5 and all(m.strip is not None and m.strip.marks == [m.sample_index] for m in beats)
    runs = [m for m in msgs if m.type == "rhythm_event" and m.kind.value == "v_run"]
    assert runs and all(m.strip is not None for m in runs)


def test_silent_device_raises_signal_loss_then_is_evicted_and_summaries_flow(pipeline: GatewayPipeline) -> None:
    from emon_core.contracts import decode_edge

    p, dev = pipeline, "dev-00007"
    for k in range(25):
        p.handle(topic(dev), frame(dev, k).encode(), T0, now_mono=100.0 + k)
        p.tick(now_mono=100.0 + k)
    p.tick(now_mono=124.0 + p.settings.silent_after_s + 1)
    p.tick(now_mono=124.0 + p.settings.idle_evict_s + 1)
    assert dev not in p.sessions
    msgs = [decode_edge(e.payload) for e in p.outbox.peek(0, 1000)]
    loss = [m for m in msgs if m.type == "rhythm_event" and m.kind.value == "signal_loss" and "silent" in m.detail]
    assert loss and loss[0].onset_sample_index == 25 * 250
    assert loss[-1].revision >= 1  # closed when the device was evicted
    summaries = [m for m in msgs if m.type == "patient_summary"]
    # every 10 s of signal (2,500 samples at 250 Hz), at this device's own phase (842 for dev-00007)
    phase = zlib.crc32(b"summary:" + dev.encode()) % 2500
    assert phase == 842
    assert [m.id for m in summaries] == [f"{dev}:summary:{e}" for e in (842, 3342, 5842)]
    assert [m.frames_received for m in summaries] == [4, 10, 10] and summaries[1].patient_id == "pat-00007"
