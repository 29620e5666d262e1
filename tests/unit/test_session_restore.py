"""A gateway killed mid-pause or just before a VT run resumes its sessions from their checkpoints (pipeline level).

A synthetic patient is replayed as 1 s frames through a :class:`GatewayPipeline` ("A") with a
checkpoint store; A is dropped without writing anything more (SIGKILL); a fresh pipeline ("B")
on the same store takes the frames from the kill point on. Each scenario is also run without
checkpoints, to show the restarted gateway gets it wrong then (the issue being fixed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emon_core.contracts import EcgFrame, decode_edge
from emon_core.registry import DeviceRegistry
from emon_core.topics import frames_topic
from gateway.checkpoint_store import CheckpointStore
from gateway.outbox import Outbox
from gateway.service import GatewayPipeline, load_classifier
from gateway.settings import GatewaySettings, load_gateway_settings
from simulators.scenario import parse_scenario
from simulators.synthetic import SyntheticConfig, SyntheticSource

DEV = "dev-00003"
SCENARIO = "pause@30:s=4,vt@45:k=8,rate=180"
_CLASSIFIER: dict[str, Any] = {}


def _settings(**kw: Any) -> GatewaySettings:
    return load_gateway_settings(None, simulated=10, site_id="site-00", **kw)


def _classifier(settings: GatewaySettings) -> Any:
    if "c" not in _CLASSIFIER:
        _CLASSIFIER["c"] = load_classifier(settings)
    return _CLASSIFIER["c"]


def replay(tmp: Path, fs: float, parts: list[range], settings: GatewaySettings, checkpoints: bool = True,
           clean_stop: bool = False, seed: int = 3) -> tuple[list[list[Any]], SyntheticSource, GatewayPipeline]:
    """Frames ``parts[0]`` through gateway A, ``parts[1]`` through B, ...; returns each one's messages."""
    src = SyntheticSource(SyntheticConfig(fs_hz=fs, hr_bpm=70.0, seed=seed), parse_scenario(SCENARIO))
    n = int(fs)
    tmp.mkdir(parents=True, exist_ok=True)
    store = CheckpointStore(tmp / "sessions.db") if checkpoints else None
    out: list[list[Any]] = []
    p: GatewayPipeline | None = None
    for j, ks in enumerate(parts):
        p = GatewayPipeline(settings, DeviceRegistry.simulated(10), _classifier(settings), Outbox(tmp / f"o{j}.db"),
                            checkpoints=store)
        for k in ks:
            f = EcgFrame(device_id=DEV, seq=k, device_time_ms=1_700_000_000_000 + 1000 * k, fs_hz=fs,
                         gain_adu_per_mv=src.gain_adu_per_mv, baseline_adu=src.baseline_adu,
                         first_sample_index=n * k, samples=src.read(n * k, n).samples.tolist())
            p.handle(frames_topic("site-00", DEV), f.encode(), 0)
            p.tick()
        if clean_stop:
            p.write_checkpoints()  # what SIGTERM does
        out.append([decode_edge(e.payload) for e in p.outbox.peek(0, 100_000)])
        p.outbox.close()
    assert p is not None
    return out, src, p


def events(msgs: list[Any], kind: str) -> list[Any]:
    return [m for m in msgs if m.type == "rhythm_event" and m.kind.value == kind]


def truth_onset(src: SyntheticSource, kind: str, fs: float) -> int:
    return next(e.onset_index for e in src.events(0, int(60 * fs)) if e.kind.value == kind)


@pytest.mark.parametrize("fs", [360.0, 250.0])
def test_pause_in_progress_at_the_kill_is_reported_with_its_true_start(tmp_path: Path, fs: float) -> None:
    # the pause's last beat is at ~30.5 s; killed after the frame ending at 33 s (2.5 s into the
    # pause, ~1.5 s before the old gateway would have raised it); default checkpoint settings
    (a, b), src, p = replay(tmp_path, fs, [range(0, 33), range(33, 40)], _settings())
    onset = truth_onset(src, "pause", fs)
    assert events(a, "pause") == []  # the old gateway had not raised it
    pauses = events(b, "pause")
    assert pauses, [m.kind.value for m in b if m.type == "rhythm_event"]
    assert {m.id for m in pauses} == {f"{DEV}:pause:{pauses[0].onset_sample_index}"}
    assert abs(pauses[0].onset_sample_index - onset) <= 0.15 * fs
    final = pauses[-1]
    assert final.revision >= 1 and abs((final.end_time_ms - final.onset_time_ms) - 4000) <= 200
    assert final.strip is not None and final.strip.start_sample_index <= onset  # the tail kept the onset's signal
    assert p.restores == {"restored": 1}
    assert all(m.kind.value != "signal_loss" for m in b if m.type == "rhythm_event")


def test_pause_at_the_kill_is_lost_without_a_checkpoint(tmp_path: Path) -> None:
    (a, b), _, _ = replay(tmp_path, 360.0, [range(0, 33), range(33, 40)], _settings(), checkpoints=False)
    assert events(a, "pause") == [] and events(b, "pause") == []  # the issue this fixes


def test_vt_one_second_after_the_restart_is_an_eight_beat_v_run(tmp_path: Path) -> None:
    # the run starts at ~45.2 s; killed after the frame ending at 44 s. A checkpoint at every frame
    # makes the kill point the checkpoint point (staleness: test_stale_checkpoint_...)
    (a, b), src, _ = replay(tmp_path, 360.0, [range(0, 44), range(44, 60)], _settings(checkpoint_every_s=1.0))
    runs = events(b, "v_run")
    assert runs and {m.onset_sample_index for m in runs} == {truth_onset(src, "v_run", 360.0)}
    assert max(m.beat_count for m in runs) == 8 and runs[-1].detail.startswith("VT")
    flagged = [m for m in b if m.type == "flagged_beat"]
    assert [m.beat_class.value for m in flagged] == ["V"] * 8
    assert events(b, "frequent_ectopy") == []


def test_vt_after_a_restart_without_a_checkpoint_is_misjudged(tmp_path: Path) -> None:
    (_, b), _, _ = replay(tmp_path, 360.0, [range(0, 44), range(44, 60)], _settings(), checkpoints=False)
    assert max([m.beat_count for m in events(b, "v_run")] or [0]) < 8  # the issue this fixes


def test_stale_checkpoint_and_lost_frames_claim_no_pause_and_raise_no_signal_loss(tmp_path: Path) -> None:
    # killed 1.5 s into the pause (not hot yet: the periodic checkpoint is up to 5 s old) and the
    # frame queued at the kill lost: the restarted gateway never saw the beats' absence, so it
    # claims nothing - but it does not invent signal loss either
    (a, b), _, p = replay(tmp_path, 360.0, [range(0, 32), range(33, 60)], _settings())
    assert p.restores == {"restored": 1}
    kinds = [m.kind.value for m in a + b if m.type == "rhythm_event"]
    assert "pause" not in kinds and "signal_loss" not in kinds and "asystole" not in kinds
    assert max(m.beat_count for m in events(b, "v_run")) == 8


def test_clean_stop_and_restart_match_an_uninterrupted_run(tmp_path: Path) -> None:
    (whole,), _, _ = replay(tmp_path / "w", 360.0, [range(0, 60)], _settings())
    (a, b), _, _ = replay(tmp_path / "r", 360.0, [range(0, 32), range(32, 60)], _settings(), clean_stop=True)
    key = lambda ms: sorted((m.id, getattr(m, "revision", 0)) for m in ms if m.type != "patient_summary")  # noqa: E731
    assert key(a + b) == key(whole)


def test_restore_without_a_raw_tail_still_carries_the_beat_context(tmp_path: Path) -> None:
    (_, b), _, p = replay(tmp_path, 360.0, [range(0, 25), range(25, 28)], _settings(checkpoint_tail_s=0.0))
    assert p.restores == {"restored": 1}
    st = p.sessions[DEV].extractor.export_state()
    assert st.count > 25 and st.rr.size > 25  # ~28 beats before the kill + the few after it
