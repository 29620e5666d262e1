"""AF context rule: irregular RR *and* no P wave in the patient's template turns S decisions into N."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _synthetic_ecg import synthetic_ecg
from emon_core.contracts import EcgFrame, decode_edge
from emon_core.registry import DeviceRegistry, sim_device_id
from emon_core.topics import frames_topic
from gateway.af_rule import AfRule, af_context, apply_af_rule, template_p_wave
from gateway.classifier import decide
from gateway.signal.beats import RR_FEATURES, extract_beats
from gateway.signal.filters import condition_offline

FS = 360.0
RULE = AfRule(irregularity_min=0.10, p_wave_max=0.04)
WARM = 32  # beats before the template and the irregularity window are full


def _beats(rr: np.ndarray, p_wave: bool, seed: int = 0):
    x, r_times = synthetic_ecg(float(np.sum(rr)) + 2.0, FS, rr, seed=seed, p_wave=p_wave)
    return extract_beats(condition_offline(x, FS), np.round(r_times * FS).astype(np.int64), FS, 4)


def _af_rr(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.45, 1.10, n)


def _ectopy_rr(n: int) -> np.ndarray:
    """Sinus at 75 bpm with an atrial premature beat every third beat (short RR, then a longer one)."""
    return np.array([0.8, 0.5, 0.95] * (n // 3))


def test_atrial_fibrillation_is_af_context() -> None:
    b = _beats(_af_rr(150), p_wave=False)
    mask = af_context(b.windows, b.rr, RULE)[WARM:]
    assert mask.mean() > 0.9


def test_frequent_atrial_ectopy_with_p_waves_is_not() -> None:
    b = _beats(_ectopy_rr(150), p_wave=True)
    irr = b.rr[WARM:, RR_FEATURES.index("irregularity")]
    assert np.all(irr > RULE.irregularity_min)  # as irregular as AF by RR alone ...
    assert np.all(template_p_wave(b.windows)[WARM:] > RULE.p_wave_max)  # ... but the template keeps its P wave
    assert not af_context(b.windows, b.rr, RULE)[WARM:].any()


def test_regular_rhythm_without_p_waves_is_not() -> None:
    b = _beats(np.full(120, 0.8), p_wave=False)  # e.g. a junctional rhythm: regular, no P
    assert not af_context(b.windows, b.rr, RULE)[WARM:].any()


def test_only_s_decisions_change() -> None:
    pred = np.array([0, 1, 2, 3, 4, 1])
    mask = np.array([True, True, True, True, True, False])
    assert apply_af_rule(pred, mask).tolist() == [0, 0, 2, 3, 4, 1]
    assert pred.tolist() == [0, 1, 2, 3, 4, 1]  # the input is left alone


def test_decide_applies_the_rule_and_needs_the_beats() -> None:
    b = _beats(_af_rr(100), p_wave=False)
    probs = np.tile(np.array([0.1, 0.6, 0.3, 0.0, 0.0], np.float32), (len(b), 1))
    assert (decide(probs) == 1).all()
    pred = decide(probs, None, RULE, b.windows, b.rr)
    assert (pred[WARM:] == 0).mean() > 0.9
    with pytest.raises(ValueError):
        decide(probs, None, RULE)


def test_rule_from_card() -> None:
    assert AfRule.from_card({}) is None and AfRule.from_card({"af_rule": None}) is None
    assert AfRule.from_card({"af_rule": RULE.to_card()}) == RULE
    with pytest.raises(ValueError):
        AfRule(irregularity_min=0.1, p_wave_max=0.0)


class AllS:
    """Stand-in classifier: every beat S, with the AF rule attached as the committed card does."""

    model_version = "all-s"

    def __init__(self, rule: AfRule | None) -> None:
        self.af_rule = rule
        self.class_log_bias = np.zeros(5, np.float32)

    def classify(self, windows: Any, rr: Any) -> np.ndarray:
        p = np.zeros((len(windows), 5), dtype=np.float32)
        p[:, 1] = 1.0
        return p


@pytest.mark.parametrize("rule", [None, RULE])
def test_gateway_pipeline_applies_the_rule(tmp_path: Path, rule: AfRule | None) -> None:
    from gateway.outbox import Outbox
    from gateway.service import GatewayPipeline
    from gateway.settings import load_gateway_settings

    settings = load_gateway_settings(None, simulated=3000, site_id="site-02")
    p = GatewayPipeline(settings, DeviceRegistry.simulated(3000), AllS(rule), Outbox(tmp_path / "o.db"))
    x, _ = synthetic_ecg(90.0, FS, _af_rr(150), seed=3, p_wave=False)
    gain = 200.0
    adu = np.round(x * gain).astype(int)
    dev = sim_device_id(2805)
    for k in range(90):
        f = EcgFrame(device_id=dev, seq=k, device_time_ms=1_700_000_000_000 + 1000 * k, fs_hz=FS,
                     gain_adu_per_mv=gain, baseline_adu=0, first_sample_index=360 * k,
                     samples=adu[360 * k: 360 * (k + 1)].tolist())
        p.handle(frames_topic("site-02", dev), f.encode(), 0)
        p.tick()
    flagged = [decode_edge(e.payload) for e in p.outbox.peek(0, 100_000)]
    s_beats = [m for m in flagged if m.type == "flagged_beat"]
    beats = sum(p.beats.values())
    assert beats > 80
    if rule is None:
        assert len(s_beats) == beats
    else:
        assert len(s_beats) < 0.15 * beats  # only the first beats, before the rhythm context is known
    p.outbox.close()


def test_training_chooses_the_biases_with_the_rule_in_place() -> None:
    """AF beats the model leans S on hide the real S beats until the rule takes them out."""
    from gateway.training.train import choose_bias, choose_decision

    n_af, n_s, n_n = 2000, 40, 2000
    probs = np.concatenate([
        np.tile([0.50, 0.45, 0.05, 0.0, 0.0], (n_af, 1)),  # N beats in AF: N by a small margin
        np.tile([0.60, 0.35, 0.05, 0.0, 0.0], (n_s, 1)),  # real S beats: N by a small margin
        np.tile([0.95, 0.03, 0.02, 0.0, 0.0], (n_n, 1)),  # plain N beats
    ]).astype(np.float32)
    labels = np.array([0] * n_af + [1] * n_s + [0] * n_n)
    rr = np.zeros((len(labels), len(RR_FEATURES)), np.float32)
    rr[:n_af, RR_FEATURES.index("irregularity")] = 0.3
    windows = np.zeros((len(labels), 126, 2), np.float32)  # flat template: no P wave anywhere
    bias_alone, _ = choose_bias(probs, labels)
    bias, rule = choose_decision(probs, labels, windows, rr)
    assert rule is not None and rule.irregularity_min < 0.3
    assert bias_alone[1] < np.log(0.50 / 0.45)  # alone, calling the real S beats would call every AF beat S
    assert bias[1] > np.log(0.60 / 0.35)  # with the AF beats out of the way, it pays
    pred = decide(probs, bias, rule, windows, rr)
    assert (pred[n_af:n_af + n_s] == 1).all() and (pred[:n_af] == 0).all()
