"""Alert policy table: rhythm severities, history modifiers, needs_unit."""

from __future__ import annotations

import pytest

from emon_core.contracts import EventKind, Severity
from hub import policy
from hub.policy import UNKNOWN, History, decide

K = EventKind
PLAIN = History(known=True, first_seen_ms={k.value: 0 for k in EventKind})  # seen everything before


@pytest.mark.parametrize(
    ("kind", "beats", "rate", "dur", "expected"),
    [
        (K.V_RUN, 5, 100.0, 3000, Severity.CRITICAL),
        (K.V_RUN, 12, 180.0, 4000, Severity.CRITICAL),
        (K.V_RUN, 4, 160.0, 1500, Severity.ADVISORY),
        (K.V_RUN, 8, 90.0, 5000, Severity.ADVISORY),
        (K.ASYSTOLE, 0, None, 6000, Severity.CRITICAL),
        (K.PAUSE, 0, None, 3000, Severity.CRITICAL),
        (K.PAUSE, 0, None, 2500, Severity.ADVISORY),
        (K.BRADYCARDIA, 0, 35.0, 15_000, Severity.URGENT),
        (K.BRADYCARDIA, 0, 35.0, 5_000, Severity.ADVISORY),
        (K.BRADYCARDIA, 0, 45.0, 60_000, Severity.ADVISORY),
        (K.TACHYCARDIA, 0, 170.0, 12_000, Severity.URGENT),
        (K.TACHYCARDIA, 0, 150.0, 12_000, Severity.ADVISORY),
        (K.S_RUN, 6, 160.0, 3000, Severity.URGENT),
        (K.FREQUENT_ECTOPY, 12, None, 60_000, Severity.ADVISORY),
        (K.SIGNAL_LOSS, 0, None, 10_000, Severity.TECHNICAL),
        (K.GATEWAY_OFFLINE, 0, None, 0, Severity.TECHNICAL),
    ],
)
def test_rhythm_severity(kind: EventKind, beats: int, rate: float | None, dur: int, expected: Severity) -> None:
    d = decide(kind, PLAIN, 1_000, beats=beats, rate_bpm=rate, duration_ms=dur)
    assert d is not None and d.severity is expected
    assert d.needs_unit == (expected in (Severity.CRITICAL, Severity.URGENT))


def test_frequent_pvc_beats_rule() -> None:
    assert decide(policy.BEATS_RULE_KIND, PLAIN, 0, beats=9) is None
    d = decide(policy.BEATS_RULE_KIND, PLAIN, 0, beats=10)
    assert d is not None and d.severity is Severity.ADVISORY and not d.needs_unit


def test_chronic_pattern_lowers_one_step() -> None:
    h = History(known=True, chronic_patterns=frozenset({"s_run", "bradycardia", "v_run"}),
                first_seen_ms={"s_run": 0, "v_run": 0})
    assert decide(K.S_RUN, h, 10, beats=5, rate_bpm=150).severity is Severity.ADVISORY  # type: ignore[union-attr]
    assert decide(K.BRADYCARDIA, h, 10, rate_bpm=35, duration_ms=20_000).severity is Severity.ADVISORY  # type: ignore[union-attr]
    d = decide(K.V_RUN, h, 10, beats=8, rate_bpm=170, duration_ms=3000)
    assert d is not None and d.severity is Severity.URGENT and d.needs_unit
    assert any("chronic" in r for r in d.reasons)


def test_chronic_never_lowers_asystole_or_below_advisory() -> None:
    h = History(known=True, chronic_patterns=frozenset({"asystole", "frequent_ectopy"}))
    assert decide(K.ASYSTOLE, h, 10, duration_ms=7000).severity is Severity.CRITICAL  # type: ignore[union-attr]
    assert decide(K.FREQUENT_ECTOPY, h, 10).severity is Severity.ADVISORY  # type: ignore[union-attr]


def test_first_ever_run_raises_one_step() -> None:
    never = History(known=True, first_seen_ms={})
    d = decide(K.V_RUN, never, 10_000, beats=4, rate_bpm=120)
    assert d is not None and d.severity is Severity.URGENT and any("first-ever" in r for r in d.reasons)
    assert decide(K.S_RUN, never, 10_000, beats=5).severity is Severity.CRITICAL  # type: ignore[union-attr]
    # seen before the episode: no raise; seen only at/after the episode start: still first-ever
    assert decide(K.V_RUN, History(first_seen_ms={"v_run": 9_999}), 10_000, beats=4).severity is Severity.ADVISORY  # type: ignore[union-attr]
    assert decide(K.V_RUN, History(first_seen_ms={"v_run": 10_000}), 10_000, beats=4).severity is Severity.URGENT  # type: ignore[union-attr]
    # only runs are raised
    assert decide(K.PAUSE, never, 10_000, duration_ms=2000).severity is Severity.ADVISORY  # type: ignore[union-attr]


def test_unknown_patient_keeps_rhythm_severity() -> None:
    d = decide(K.V_RUN, UNKNOWN, 10, beats=4, rate_bpm=120)
    assert d is not None and d.severity is Severity.ADVISORY
    assert any("unknown" in r for r in d.reasons)


def test_technical_never_adjusted() -> None:
    h = History(known=True, chronic_patterns=frozenset({"signal_loss"}), first_seen_ms={})
    assert decide(K.SIGNAL_LOSS, h, 10).severity is Severity.TECHNICAL  # type: ignore[union-attr]


def test_every_event_kind_has_a_rule() -> None:
    kinds = {r.kind for r in policy.RULES}
    assert set(EventKind) <= kinds


def test_most_severe() -> None:
    a = decide(K.FREQUENT_ECTOPY, PLAIN, 0)
    b = decide(K.ASYSTOLE, PLAIN, 0)
    assert policy.most_severe(a, b) is b and policy.most_severe(b, a) is b
    assert policy.most_severe(None, a) is a


def test_loadtest_finds_the_vt_rule_in_reasons_whatever_the_severity() -> None:
    # emon loadtest's vt_onset_to_screen looks for this reason prefix on screen
    from simulators.loadtest.report import VT_REASON

    plain = decide(EventKind.V_RUN, History(), 0, beats=5, rate_bpm=180.0)
    chronic = decide(EventKind.V_RUN, History(chronic_patterns=frozenset({"v_run"})), 0, beats=5, rate_bpm=180.0)
    short = decide(EventKind.V_RUN, History(), 0, beats=3, rate_bpm=180.0)
    assert plain is not None and chronic is not None and short is not None
    assert plain.reasons[0].startswith(VT_REASON) and plain.severity is Severity.CRITICAL
    assert chronic.reasons[0].startswith(VT_REASON) and chronic.severity is Severity.URGENT
    assert not short.reasons[0].startswith(VT_REASON)
