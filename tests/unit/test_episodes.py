"""Episodes: grouping in time, one alert per episode with versions, replay does nothing, restore."""

from __future__ import annotations

from emon_core.contracts import BeatClass, EcgStrip, EventKind, FlaggedBeat, RhythmEvent, Severity
from hub.episodes import Episode, EpisodeTracker, build_alert, gateway_offline_alert
from hub.policy import UNKNOWN, History

T0 = 1_790_000_000_000
SEEN = History(known=True, first_seen_ms={k.value: 0 for k in EventKind})
PID = "pat-00042"


def ev(kind: EventKind, onset_s: float, dur_s: float, rev: int = 0, beats: int = 0, rate: float | None = None,
       idx: int | None = None) -> RhythmEvent:
    i = idx if idx is not None else int(onset_s * 250)
    return RhythmEvent(id=RhythmEvent.make_id("dev-00042", kind, i), site_id="site-00", device_id="dev-00042",
                       patient_id=PID, kind=kind, onset_sample_index=i, onset_time_ms=T0 + int(onset_s * 1000),
                       end_time_ms=T0 + int((onset_s + dur_s) * 1000), revision=rev, beat_count=beats,
                       rate_bpm=rate)


def beat(t_s: float, cls: BeatClass = BeatClass.V, strip: bool = False) -> FlaggedBeat:
    i = int(t_s * 250)
    s = EcgStrip(fs_hz=250, start_sample_index=i, start_time_ms=T0, samples_uv=[0, 1, 2]) if strip else None
    return FlaggedBeat(id=FlaggedBeat.make_id("dev-00042", i), site_id="site-00", device_id="dev-00042",
                       patient_id=PID, sample_index=i, r_time_ms=T0 + int(t_s * 1000), beat_class=cls,
                       probabilities={cls: 0.9}, model_version="m1", strip=s)


def tracker() -> EpisodeTracker:
    t = EpisodeTracker(quiet_ms=60_000, max_ms=600_000)
    t.load(PID, None)
    return t


def test_growing_run_is_one_alert_with_versions() -> None:
    t = tracker()
    c0 = t.on_event(ev(EventKind.V_RUN, 10, 1, rev=0, beats=3, rate=150), SEEN)
    assert c0.alert_changed and c0.episode is not None and c0.episode.version == 0
    a0 = build_alert(c0.episode, patient_known=True, location=(48.2, 16.3))
    assert a0.severity is Severity.ADVISORY and not a0.needs_unit
    c1 = t.on_event(ev(EventKind.V_RUN, 10, 3, rev=1, beats=8, rate=160), SEEN)
    assert c1.alert_changed and c1.episode is c0.episode
    a1 = build_alert(c1.episode, patient_known=True, location=(48.2, 16.3))
    assert a1.alert_id == a0.alert_id and a1.version == 1
    assert a1.severity is Severity.CRITICAL and a1.needs_unit and a1.rate_bpm == 160
    assert a1.location is not None and a1.location.lat == 48.2


def test_replay_changes_nothing() -> None:
    t = tracker()
    e = ev(EventKind.PAUSE, 5, 4)
    assert t.on_event(e, SEEN).alert_changed
    again = t.on_event(e, SEEN)
    assert not again.alert_changed and not again.dirty
    older = t.on_event(ev(EventKind.V_RUN, 10, 3, rev=0, beats=8, rate=160).model_copy(update={"revision": 0}), SEEN)
    assert older.alert_changed  # new event joins the episode
    assert not t.on_event(ev(EventKind.V_RUN, 10, 3, rev=0, beats=8, rate=160), SEEN).dirty


def test_quiet_gap_starts_a_new_episode_and_closes_the_old() -> None:
    t = tracker()
    first = t.on_event(ev(EventKind.S_RUN, 0, 2, beats=5), SEEN).episode
    c = t.on_event(ev(EventKind.S_RUN, 200, 2, beats=5), SEEN)
    assert c.episode is not None and first is not None and c.episode.alert_id != first.alert_id
    assert c.closed == [first] and first.closed_at_ms == T0 + 2000 + 60_000
    # a straggler from before the current episode is ignored
    assert not t.on_event(ev(EventKind.PAUSE, 50, 4), SEEN).dirty


def test_events_close_in_time_share_an_episode() -> None:
    t = tracker()
    a = t.on_event(ev(EventKind.V_RUN, 0, 2, beats=4, rate=120), SEEN).episode
    b = t.on_event(ev(EventKind.PAUSE, 30, 3.5), SEEN).episode
    assert a is b and b is not None
    alert = build_alert(b, patient_known=True, location=None)
    assert alert.severity is Severity.CRITICAL and alert.title.startswith("Pause")
    assert len(alert.event_ids) == 2 and alert.version == 1


def test_max_duration_splits_episodes() -> None:
    t = tracker()
    ids = set()
    for i in range(0, 1300, 50):
        c = t.on_event(ev(EventKind.FREQUENT_ECTOPY, i, 10, beats=12), SEEN)
        ids.add(c.episode.alert_id)  # type: ignore[union-attr]
    assert len(ids) == 3


def test_beats_form_an_episode_and_alert_only_when_frequent() -> None:
    t = tracker()
    changes = [t.on_beat(beat(i * 2.0, strip=(i == 0)), SEEN) for i in range(12)]
    assert [c.alert_changed for c in changes].index(True) == 9  # the 10th V beat
    ep = changes[-1].episode
    assert ep is not None and ep.v_beats == 12 and ep.version == 0
    a = build_alert(ep, patient_known=True, location=None)
    assert a.severity is Severity.ADVISORY and a.strip is not None
    assert not t.on_beat(beat(5 * 2.0), SEEN).dirty  # replayed beat not counted again
    assert not t.on_beat(beat(30.0, BeatClass.Q), SEEN).dirty


def test_state_survives_json_and_continues() -> None:
    t = tracker()
    t.on_event(ev(EventKind.V_RUN, 10, 1, rev=0, beats=3, rate=150), SEEN)
    ep = t.current(PID)
    assert ep is not None
    restored = Episode.from_json(ep.to_json())
    assert restored == ep
    t2 = EpisodeTracker(quiet_ms=60_000, max_ms=600_000)
    t2.load(PID, restored)
    assert not t2.on_event(ev(EventKind.V_RUN, 10, 1, rev=0, beats=3, rate=150), SEEN).dirty
    c = t2.on_event(ev(EventKind.V_RUN, 10, 3, rev=1, beats=8, rate=160), SEEN)
    assert c.alert_changed and c.episode is not None and c.episode.version == 1


def test_unknown_patient_and_new_kinds() -> None:
    t = tracker()
    c = t.on_event(ev(EventKind.V_RUN, 1, 2, beats=4, rate=120), UNKNOWN)
    assert c.new_kinds == ["v_run"]
    a = build_alert(c.episode, patient_known=False, location=None)  # type: ignore[arg-type]
    assert not a.patient_known and a.severity is Severity.ADVISORY


def test_sweep_closes_quiet_episodes() -> None:
    t = tracker()
    t.on_event(ev(EventKind.SIGNAL_LOSS, 0, 5), SEEN)
    assert t.sweep(T0 + 30_000) == []
    closed = t.sweep(T0 + 70_000)
    assert len(closed) == 1 and closed[0].closed
    # the next event opens a fresh episode
    c = t.on_event(ev(EventKind.SIGNAL_LOSS, 100, 5), SEEN)
    assert c.episode is not closed[0] and c.closed == []


def test_gateway_offline_alert_is_deterministic() -> None:
    kw = dict(patient_id=PID, site_id="site-00", gateway_id="gw-00", time_ms=T0, patient_known=True,
              location=(48.2, 16.3))
    a, b = gateway_offline_alert(**kw), gateway_offline_alert(**kw)  # type: ignore[arg-type]
    assert a == b and a.severity is Severity.TECHNICAL and not a.needs_unit


def test_run_confirmed_after_its_beats_opened_the_episode_raises_the_alert() -> None:
    # the run's 2nd V beat reaches the hub first (the 1st was not flagged), then the v_run event
    # whose onset is the 1st beat: it joins the episode instead of being dropped as a straggler
    t = tracker()
    c0 = t.on_beat(beat(20.3), SEEN)
    assert c0.episode is not None and not c0.alert_changed
    c1 = t.on_event(ev(EventKind.V_RUN, 20.0, 2, beats=7, rate=180), SEEN)
    assert c1.episode is c0.episode and c1.alert_changed
    assert build_alert(c1.episode, patient_known=True, location=None).severity is Severity.CRITICAL
