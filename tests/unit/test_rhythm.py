"""Rhythm rules at the edge: runs, pause/asystole, brady/tachycardia, ectopy, signal loss."""

from __future__ import annotations

from emon_core.contracts import BeatClass, EventKind
from gateway.rhythm import RhythmTracker
from gateway.settings import RhythmSettings

FS = 360.0
N, S, V = BeatClass.N, BeatClass.S, BeatClass.V


def feed(t: RhythmTracker, beats: list[tuple[int, BeatClass]]) -> list:
    """Detection, horizon and classification of each beat, in stream order."""
    out = []
    for idx, cls in beats:
        out += t.on_detection(idx)
        out += t.advance(idx + 1)
        out += t.on_beat(idx, cls)
    return out


def sinus(start: int, n: int, rr_s: float, cls: BeatClass = N) -> list[tuple[int, BeatClass]]:
    return [(start + int(round(i * rr_s * FS)), cls) for i in range(n)]


def test_v_run_rate_revisions_and_final() -> None:
    t = RhythmTracker(FS)
    beats = sinus(0, 10, 0.8)
    last = beats[-1][0]
    run = [(last + int(0.5 * FS) + int(round(i * FS / 3)), V) for i in range(15)]  # 180 bpm
    after = sinus(run[-1][0] + int(FS), 5, 0.8)
    ups = [u for u in feed(t, beats + run + after) if u.kind is EventKind.V_RUN]
    assert [u.revision for u in ups] == [0, 1, 2, 3]
    assert [u.beat_count for u in ups] == [3, 5, 13, 15]  # 5: the run became VT-sized (run_confirm_beats)
    assert all(u.onset_index == run[0][0] for u in ups)
    assert ups[-1].final and not ups[0].final
    assert abs(ups[-1].rate_bpm - 180.0) < 1.0
    assert ups[0].detail.startswith("VT")


def test_two_v_beats_are_not_a_run_and_slow_run_is_not_vt() -> None:
    t = RhythmTracker(FS)
    ups = feed(t, sinus(0, 5, 0.8) + [(4000, V), (4300, V), (4600, N)])
    assert not [u for u in ups if u.kind is EventKind.V_RUN]
    slow = sinus(5000, 4, 0.9, V)  # 67 bpm: idioventricular
    ups = feed(t, slow + [(9000, N)])
    runs = [u for u in ups if u.kind is EventKind.V_RUN]
    assert runs and runs[0].rate_bpm < 100 and "slow" in runs[0].detail


def test_s_run() -> None:
    t = RhythmTracker(FS)
    ups = feed(t, sinus(0, 5, 0.8) + sinus(3000, 6, 0.4, S) + sinus(6000, 3, 0.8))
    runs = [u for u in ups if u.kind is EventKind.S_RUN]
    assert runs[0].beat_count == 3 and runs[-1].beat_count == 6 and runs[-1].final
    assert runs[0].detail.startswith("SVT")


def test_pause_then_asystole_raised_while_ongoing_and_closed_by_next_beat() -> None:
    t = RhythmTracker(FS, RhythmSettings(pause_s=3.0, asystole_s=6.0))
    feed(t, sinus(0, 6, 0.8))
    last = sinus(0, 6, 0.8)[-1][0]
    assert t.advance(last + int(2.9 * FS)) == []
    ups = t.advance(last + int(3.0 * FS))
    assert [(u.kind, u.onset_index, u.revision) for u in ups] == [(EventKind.PAUSE, last, 0)]
    assert t.advance(last + int(4 * FS)) == []  # no repeat while it goes on
    ups = t.advance(last + int(6.0 * FS))
    assert [u.kind for u in ups] == [EventKind.ASYSTOLE]
    ups = t.on_detection(last + int(7 * FS))
    assert {(u.kind, u.final) for u in ups} == {(EventKind.PAUSE, True), (EventKind.ASYSTOLE, True)}
    assert all(u.end_index == last + int(7 * FS) for u in ups)


def test_pause_reported_by_the_next_beat_when_the_horizon_never_saw_the_gap() -> None:
    # the detector released the beat after the gap before its horizon had passed 3 s of it
    t = RhythmTracker(FS, RhythmSettings(pause_s=3.0, asystole_s=6.0))
    feed(t, sinus(0, 6, 0.8))
    last = sinus(0, 6, 0.8)[-1][0]
    assert t.advance(last + int(2.0 * FS)) == []
    ups = t.on_detection(last + int(4.0 * FS))
    assert [(u.kind, u.revision, u.final) for u in ups] == [(EventKind.PAUSE, 0, False), (EventKind.PAUSE, 1, True)]
    assert ups[-1].onset_index == last and ups[-1].end_index == last + int(4.0 * FS)
    assert t.on_detection(last + int(6.9 * FS)) == []  # 2.9 s: no pause
    assert t.advance(last + int(7.5 * FS)) == []  # a horizon behind the last peak changes nothing


def test_no_pause_when_the_signal_is_lost() -> None:
    t = RhythmTracker(FS, RhythmSettings(signal_loss_min_s=2.0))
    feed(t, sinus(0, 6, 0.8))
    last = 5 * int(0.8 * FS)
    assert t.signal("lead_off", last + 100, True, "lead off") == []
    ups = t.advance(last + 100 + int(2 * FS))
    assert [u.kind for u in ups] == [EventKind.SIGNAL_LOSS]
    assert not [u for u in t.advance(last + int(8 * FS)) if u.kind is EventKind.PAUSE]
    ups = t.signal("lead_off", last + int(9 * FS), False)
    assert [(u.kind, u.final) for u in ups] == [(EventKind.SIGNAL_LOSS, True)]
    ups = t.on_detection(last + int(9.5 * FS))  # the gap spanned the loss: no pause
    assert not [u for u in ups if u.kind is EventKind.PAUSE]


def test_short_signal_loss_is_not_reported_and_silent_is_immediate() -> None:
    t = RhythmTracker(FS, RhythmSettings(signal_loss_min_s=2.0))
    assert t.signal("detector", 1000, True) == []
    assert t.advance(1000 + int(1.5 * FS)) == []
    assert t.signal("detector", 1000 + int(1.5 * FS), False) == []
    ups = t.signal("silent", 5000, True, "device silent", immediate=True)
    assert [(u.kind, u.onset_index, u.detail) for u in ups] == [(EventKind.SIGNAL_LOSS, 5000, "device silent")]


def test_bradycardia_and_tachycardia_from_last_12_rr_sustained() -> None:
    cfg = RhythmSettings(brady_bpm=40, tachy_bpm=150, sustain_s=10)
    t = RhythmTracker(FS, cfg)
    beats = sinus(0, 10, 0.8) + sinus(int(8 * FS), 25, 1.8)  # 33 bpm
    ups = [u for u in feed(t, beats) if u.kind is EventKind.BRADYCARDIA]
    assert ups and ups[0].revision == 0 and ups[0].rate_bpm < 40
    assert t.heart_rate_bpm is not None and abs(t.heart_rate_bpm - 60 / 1.8) < 0.5
    t2 = RhythmTracker(FS, cfg)
    ups = [u for u in feed(t2, sinus(0, 10, 0.8) + sinus(int(8 * FS), 60, 0.35)) if u.kind is EventKind.TACHYCARDIA]
    assert ups and ups[0].rate_bpm > 150
    # a short burst is not sustained
    t3 = RhythmTracker(FS, cfg)
    ups = feed(t3, sinus(0, 10, 0.8) + sinus(int(8 * FS), 12, 0.35) + sinus(int(13 * FS), 20, 0.8))
    assert not [u for u in ups if u.kind is EventKind.TACHYCARDIA]


def test_frequent_ectopy_counts_isolated_pvcs_not_runs() -> None:
    t = RhythmTracker(FS, RhythmSettings(ectopy_per_min=6))
    beats = []
    for i in range(40):  # a PVC every 4th beat: 10 per 40 beats ~ 32 s
        beats.append((int(i * 0.8 * FS), V if i % 4 == 3 else N))
    ups = [u for u in feed(t, beats) if u.kind is EventKind.FREQUENT_ECTOPY]
    assert ups and ups[0].beat_count == 7 and ups[0].onset_index == beats[3][0]
    t2 = RhythmTracker(FS)
    run = feed(t2, sinus(0, 5, 0.8) + sinus(2000, 8, 0.33, V) + sinus(6000, 5, 0.8))
    assert not [u for u in run if u.kind is EventKind.FREQUENT_ECTOPY]


def test_replay_gives_the_same_events() -> None:
    beats = sinus(0, 10, 0.8) + sinus(4000, 5, 0.33, V) + sinus(6000, 10, 0.8)
    a, b = feed(RhythmTracker(FS), beats), feed(RhythmTracker(FS), beats)
    assert a == b and a


def test_close_finalises_open_events() -> None:
    t = RhythmTracker(FS)
    feed(t, sinus(0, 5, 0.8) + sinus(2000, 6, 0.33, V))  # revisions at 3 and 5 beats sent
    ups = t.close(5000)
    assert [(u.kind, u.final, u.beat_count) for u in ups] == [(EventKind.V_RUN, True, 6)]


def _four_v_beats(t: RhythmTracker) -> tuple[list, list[tuple[int, BeatClass]]]:
    beats = sinus(0, 10, 0.8)
    run = [(beats[-1][0] + int(0.5 * FS) + int(round(i * FS / 3)), V) for i in range(10)]  # 180 bpm
    return feed(t, beats + run[:4]), run


def test_provisional_fifth_v_beat_sends_the_vt_sized_revision_and_its_own_class_confirms_it() -> None:
    t = RhythmTracker(FS)
    ups, run = _four_v_beats(t)
    assert [u.beat_count for u in ups if u.kind is EventKind.V_RUN] == [3]
    assert t.wants_provisional
    early = t.on_provisional_beat(run[4][0], V)
    assert [(u.revision, u.beat_count, u.end_index) for u in early] == [(1, 5, run[4][0])]
    assert "provisional" in early[0].detail and early[0].detail.startswith("VT, 5 beats")
    assert not t.wants_provisional and t.on_provisional_beat(run[4][0], V) == []
    rest = [u for u in feed(t, run[4:] + sinus(run[-1][0] + int(FS), 3, 0.8)) if u.kind is EventKind.V_RUN]
    # the beat's own class: the same 5 beats without the note; then the run grows and ends as before
    assert [(u.revision, u.beat_count) for u in rest] == [(2, 5), (3, 10)]
    assert "provisional" not in rest[0].detail and rest[-1].final


def test_provisional_v_beat_taken_back_when_its_own_class_is_not_v() -> None:
    t = RhythmTracker(FS)
    _, run = _four_v_beats(t)
    t.on_provisional_beat(run[4][0], V)
    back = t.on_beat(run[4][0], N)
    assert [(u.revision, u.beat_count, u.final, u.end_index) for u in back] == [(2, 4, True, run[3][0])]
    assert "provisional" not in back[0].detail


def test_provisional_non_v_beat_changes_nothing_and_is_asked_once() -> None:
    t = RhythmTracker(FS)
    _, run = _four_v_beats(t)
    assert t.on_provisional_beat(run[4][0], N) == [] and not t.wants_provisional
    assert [u.beat_count for u in t.on_beat(run[4][0], V)] == [5]  # its own class sends the revision


def test_provisional_off_and_close_drops_a_provisional_beat() -> None:
    off = RhythmTracker(FS, RhythmSettings(run_confirm_provisional=False))
    _, run = _four_v_beats(off)
    assert not off.wants_provisional and off.on_provisional_beat(run[4][0], V) == []
    t = RhythmTracker(FS)
    _, run = _four_v_beats(t)
    t.on_provisional_beat(run[4][0], V)
    assert [(u.beat_count, u.final) for u in t.close(run[4][0] + 100)] == [(4, True)]


def test_no_provisional_beat_for_a_slow_run_or_off_the_run_s_rhythm() -> None:
    slow = RhythmTracker(FS)
    beats = sinus(0, 10, 0.8)
    run = [(beats[-1][0] + int(0.5 * FS) + int(round(i * 0.75 * FS)), V) for i in range(5)]  # 80 bpm
    feed(slow, beats + run[:4])
    assert not slow.wants_provisional and slow.on_provisional_beat(run[4][0], V) == []
    t = RhythmTracker(FS)
    _, run = _four_v_beats(t)
    late = run[3][0] + int(0.5 * FS)  # 0.5 s after a 0.33 s rhythm: next RR = previous RR is a guess
    assert t.wants_provisional and t.on_provisional_beat(late, V) == []
    assert not t.wants_provisional  # asked once per run beat
