"""Synthetic ECG generator: deterministic, scripted events where and as scripted."""

from __future__ import annotations

import numpy as np
import pytest

from emon_core.contracts import EventKind
from emon_core.errors import ConfigError
from simulators.scenario import Scripted, format_scenario, parse_scenario
from simulators.synthetic import SyntheticConfig, SyntheticSource, generate


def test_same_seed_same_signal_and_truth() -> None:
    a = generate(30.0, SyntheticConfig(seed=11))
    b = generate(30.0, SyntheticConfig(seed=11))
    c = generate(30.0, SyntheticConfig(seed=12))
    assert np.array_equal(a.samples, b.samples)
    assert np.array_equal(a.beat_indices, b.beat_indices) and a.classes == b.classes
    assert not np.array_equal(a.samples, c.samples)


@pytest.mark.parametrize("fs, seconds", [(250.0, 25.0), (360.0, 400.0)])  # 400 s wraps the noise table twice
def test_rendering_does_not_depend_on_chunking(fs: float, seconds: float) -> None:
    cfg, sc = SyntheticConfig(seed=5, fs_hz=fs), parse_scenario("vt@10:k=5,noise@15:d=3")
    whole = generate(seconds, cfg, sc).samples
    src = SyntheticSource(cfg, sc)
    parts = np.concatenate([src.read(i, 173).samples for i in range(0, len(whole), 173)])
    assert np.array_equal(parts[: len(whole)], whole)


def test_samples_are_adc_integers_around_baseline() -> None:
    ecg = generate(10.0, SyntheticConfig(seed=1, gain_adu_per_mv=200, baseline_adu=1024))
    assert np.all(ecg.samples == np.rint(ecg.samples))
    assert abs(np.median(ecg.samples) - 1024) < 40
    # R peaks stand out by roughly 1 mV
    peaks = ecg.samples[ecg.beat_indices]
    assert np.all(peaks - np.median(ecg.samples) > 100)


@pytest.mark.parametrize("hr", [50.0, 72.0, 110.0])
def test_sinus_rate(hr: float) -> None:
    ecg = generate(120.0, SyntheticConfig(seed=2, hr_bpm=hr))
    rr = np.diff(ecg.beat_indices) / ecg.fs_hz
    assert 60.0 / np.mean(rr) == pytest.approx(hr, rel=0.05)
    assert np.std(rr) > 0.005  # heart rate variability present
    assert set(ecg.classes) == {"N"}


@pytest.mark.parametrize("fs", [100.0, 360.0, 1000.0])
def test_vt_run_at_scripted_time_with_class_v(fs: float) -> None:
    ecg = generate(40.0, SyntheticConfig(seed=3, fs_hz=fs), parse_scenario("vt@20:k=8,rate=180"))
    v = [i for i, c in zip(ecg.beat_indices, ecg.classes) if c == "V"]
    assert len(v) == 8
    assert 20.0 <= v[0] / fs < 21.0
    rr = np.diff(v) / fs
    assert np.allclose(60.0 / rr, 180.0, rtol=0.02)
    # the V beats are consecutive in the beat sequence
    first = ecg.classes.index("V")
    assert ecg.classes[first : first + 8] == ["V"] * 8
    (event,) = [e for e in ecg.events if e.kind is EventKind.V_RUN]
    assert event.onset_index == v[0] and event.beat_count == 8 and event.rate_bpm == 180.0
    # V beats are wide: the QRS of a V beat is broader than a normal one
    def width(idx: int) -> int:
        seg = np.abs(ecg.samples[idx - int(0.15 * fs) : idx + int(0.15 * fs)] - ecg.baseline_adu)
        return int(np.sum(seg > 0.5 * seg.max()))

    n0 = ecg.beat_indices[first - 1]
    assert width(v[3]) > 1.8 * width(n0)


def test_short_ectopic_runs_raise_no_run_event() -> None:
    ecg = generate(30.0, SyntheticConfig(seed=4), parse_scenario("vt@10:k=2,svt@20:k=1"))
    assert ecg.classes.count("V") == 2 and ecg.classes.count("S") == 1
    assert not [e for e in ecg.events if e.kind in (EventKind.V_RUN, EventKind.S_RUN)]


def test_svt_run_is_premature_narrow_class_s() -> None:
    ecg = generate(40.0, SyntheticConfig(seed=4), parse_scenario("svt@15:k=5,rate=150"))
    s = [i for i, c in zip(ecg.beat_indices, ecg.classes) if c == "S"]
    assert len(s) == 5
    (event,) = [e for e in ecg.events if e.kind is EventKind.S_RUN]
    assert event.onset_index == s[0]


def test_pause_has_no_beats() -> None:
    ecg = generate(60.0, SyntheticConfig(seed=6), parse_scenario("pause@30:s=4"))
    (event,) = [e for e in ecg.events if e.kind is EventKind.PAUSE]
    inside = ecg.beat_indices[(ecg.beat_indices > event.onset_index) & (ecg.beat_indices < event.end_index)]
    assert len(inside) == 0
    assert (event.end_index - event.onset_index) / ecg.fs_hz == pytest.approx(4.0, abs=0.01)
    assert 29.0 <= event.onset_index / ecg.fs_hz <= 31.5
    assert np.max(np.diff(ecg.beat_indices)) / ecg.fs_hz == pytest.approx(4.0, abs=0.01)


def test_brady_and_tachy_segments() -> None:
    ecg = generate(120.0, SyntheticConfig(seed=8, hr_bpm=75), parse_scenario("brady@20:d=30,rate=40,tachy@70:d=30,rate=140"))
    t = ecg.beat_indices / ecg.fs_hz

    def rate(a: float, b: float) -> float:
        sel = t[(t >= a) & (t < b)]
        return 60.0 / float(np.mean(np.diff(sel)))

    assert rate(25, 48) == pytest.approx(40, rel=0.07)
    assert rate(75, 98) == pytest.approx(140, rel=0.07)
    assert rate(105, 118) == pytest.approx(75, rel=0.1)
    kinds = [e.kind for e in ecg.events]
    assert kinds == [EventKind.BRADYCARDIA, EventKind.TACHYCARDIA]


def test_lead_off_flat_flag_and_no_truth_beats() -> None:
    cfg = SyntheticConfig(seed=9, baseline_adu=1024)
    ecg = generate(30.0, cfg, parse_scenario("leadoff@10:d=5"))
    fs = ecg.fs_hz
    a, b = int(10 * fs), int(15 * fs)
    assert ecg.lead_off[a:b].all() and not ecg.lead_off[:a].any() and not ecg.lead_off[b:].any()
    assert np.all(ecg.samples[a:b] == 1024)
    assert not np.any((ecg.beat_indices >= a) & (ecg.beat_indices < b))
    src = SyntheticSource(cfg, parse_scenario("leadoff@10:d=5"))
    assert src.read(int(9.5 * fs), int(fs)).lead_off
    assert not src.read(0, int(fs)).lead_off
    assert [e.kind for e in ecg.events] == [EventKind.SIGNAL_LOSS]


def test_silent_device_and_noise_burst() -> None:
    sc = parse_scenario("silent@10:d=5,noise@20:d=2,mv=1")
    src = SyntheticSource(SyntheticConfig(seed=10), sc)
    fs = src.fs_hz
    assert src.silent(int(12 * fs), int(fs)) and not src.silent(0, int(fs))
    quiet = np.std(np.diff(src.read(int(17 * fs), int(2 * fs)).samples))
    noisy = np.std(np.diff(src.read(int(20 * fs), int(2 * fs)).samples))
    assert noisy > 5 * quiet
    ecg = generate(30.0, SyntheticConfig(seed=10), sc)
    assert ecg.silent[int(11 * fs)] and not ecg.silent[int(16 * fs)]


def test_scenario_parsing() -> None:
    sc = parse_scenario("pause@40:s=4,vt@20:k=8,rate=200, leadoff@50 ,silent@60:d=3")
    assert [e.kind for e in sc] == ["vt", "pause", "leadoff", "silent"]
    assert sc[0]["k"] == 8 and sc[0]["rate"] == 200
    assert sc[2]["d"] == 5  # default
    assert parse_scenario(format_scenario(sc)) == sc
    assert parse_scenario("vt@20:k=8:rate=150")[0]["rate"] == 150
    for bad in ("xx@3", "vt@-1", "vt@3:q=1", "vt@3:k=abc", "vt@3:k=0", "k=3"):
        with pytest.raises(ConfigError):
            parse_scenario(bad)
    with pytest.raises(ConfigError):
        Scripted("pause", 1.0, {"d": 2.0})


def test_fs_bounds() -> None:
    with pytest.raises(ConfigError):
        SyntheticConfig(fs_hz=50)


def test_streamed_events_match_the_whole_recording() -> None:
    """A device asks for events frame by frame; every event must show up exactly once."""
    sc = parse_scenario("vt@10:k=6,brady@20:d=20,rate=40,pause@45:s=3,tachy@50:d=10,rate=150,leadoff@62:d=2")
    whole = generate(70.0, SyntheticConfig(seed=21), sc)
    src = SyntheticSource(SyntheticConfig(seed=21), sc)
    n = int(src.fs_hz)
    streamed = [e for k in range(70) for e in src.events(k * n, (k + 1) * n)]
    assert streamed == whole.events
    assert [e.kind for e in streamed] == [
        EventKind.V_RUN, EventKind.BRADYCARDIA, EventKind.PAUSE, EventKind.TACHYCARDIA, EventKind.SIGNAL_LOSS,
    ]
