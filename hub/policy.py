"""Alert policy as data: severity from the rhythm, then adjusted by the patient's history.

Pure: no I/O, no clock. :data:`RULES` is the table; :func:`classify` picks the first rule
that matches an event, :func:`adjust` applies the history modifiers.

====================  ======================================================  ==========
rule                  condition                                              severity
====================  ======================================================  ==========
vt                    V run, >= 5 beats at >= 100 bpm                         critical
asystole              asystole (any duration)                                 critical
pause                 pause >= 3 s                                            critical
svt                   S run (any length the gateway reports)                  urgent
brady                 bradycardia < 40 bpm sustained >= 10 s                  urgent
tachy                 tachycardia > 150 bpm sustained >= 10 s                 urgent
v_run_short           V run, shorter or slower than VT                        advisory
brady_mild            any other bradycardia event                             advisory
tachy_mild            any other tachycardia event                             advisory
pause_short           pause < 3 s                                             advisory
frequent_pvc          frequent-ectopy event                                   advisory
frequent_pvc_beats    >= 10 V beats in one episode (flagged beats only)       advisory
signal_loss           signal loss (lead off, flat line, silent device)        technical
gateway_offline       the patient's gateway went offline                      technical
====================  ======================================================  ==========

History modifiers (clinical severities only; technical is never changed):

* a **known chronic pattern** (the event kind is in the patient's ``chronic_patterns``)
  lowers the severity one step (critical -> urgent -> advisory), except rules marked
  ``chronic_lowers=False`` (asystole);
* otherwise a **first-ever run** (a V or S run and the patient's history holds no run of
  that kind before this episode) raises it one step (advisory -> urgent -> critical);
* a patient unknown to the registry gets the rhythm severity unchanged.

Only critical and urgent alerts ask for a paramedic unit (``Severity.needs_unit``).
"""

from __future__ import annotations

from dataclasses import dataclass

from emon_core.contracts import EventKind, Severity

CLINICAL_ORDER = (Severity.ADVISORY, Severity.URGENT, Severity.CRITICAL)
FREQUENT_PVC_BEATS = 10
BEATS_RULE_KIND = "v_beats"  # pseudo-kind for the beat-count rule


@dataclass(frozen=True)
class Rule:
    """One row of the policy table; ``None`` bounds are not checked."""

    name: str
    kind: EventKind | str
    severity: Severity
    title: str
    min_beats: int | None = None
    min_rate_bpm: float | None = None  # rate >= this
    max_rate_bpm: float | None = None  # rate < this
    above_rate_bpm: float | None = None  # rate > this
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None  # duration < this
    chronic_lowers: bool = True
    first_ever_raises: bool = False

    def matches(self, kind: EventKind | str, beats: int, rate_bpm: float | None, duration_ms: int) -> bool:
        if kind != self.kind:
            return False
        if self.min_beats is not None and beats < self.min_beats:
            return False
        if self.min_rate_bpm is not None and (rate_bpm is None or rate_bpm < self.min_rate_bpm):
            return False
        if self.max_rate_bpm is not None and (rate_bpm is None or rate_bpm >= self.max_rate_bpm):
            return False
        if self.above_rate_bpm is not None and (rate_bpm is None or rate_bpm <= self.above_rate_bpm):
            return False
        if self.min_duration_ms is not None and duration_ms < self.min_duration_ms:
            return False
        if self.max_duration_ms is not None and duration_ms >= self.max_duration_ms:
            return False
        return True


K = EventKind
S = Severity
RULES: tuple[Rule, ...] = (
    Rule("vt", K.V_RUN, S.CRITICAL, "Ventricular tachycardia", min_beats=5, min_rate_bpm=100.0,
         first_ever_raises=True),
    Rule("asystole", K.ASYSTOLE, S.CRITICAL, "Asystole", chronic_lowers=False),
    Rule("pause", K.PAUSE, S.CRITICAL, "Pause >= 3 s", min_duration_ms=3000),
    Rule("svt", K.S_RUN, S.URGENT, "Supraventricular tachycardia run", first_ever_raises=True),
    Rule("brady", K.BRADYCARDIA, S.URGENT, "Sustained bradycardia < 40 bpm", max_rate_bpm=40.0,
         min_duration_ms=10_000),
    Rule("tachy", K.TACHYCARDIA, S.URGENT, "Sustained tachycardia > 150 bpm", above_rate_bpm=150.0,
         min_duration_ms=10_000),
    Rule("v_run_short", K.V_RUN, S.ADVISORY, "Non-sustained ventricular run", first_ever_raises=True),
    Rule("brady_mild", K.BRADYCARDIA, S.ADVISORY, "Bradycardia"),
    Rule("tachy_mild", K.TACHYCARDIA, S.ADVISORY, "Tachycardia"),
    Rule("pause_short", K.PAUSE, S.ADVISORY, "Pause"),
    Rule("frequent_pvc", K.FREQUENT_ECTOPY, S.ADVISORY, "Frequent PVCs"),
    Rule("frequent_pvc_beats", BEATS_RULE_KIND, S.ADVISORY, "Frequent PVCs", min_beats=FREQUENT_PVC_BEATS),
    Rule("signal_loss", K.SIGNAL_LOSS, S.TECHNICAL, "Signal loss"),
    Rule("gateway_offline", K.GATEWAY_OFFLINE, S.TECHNICAL, "Gateway offline"),
)


@dataclass(frozen=True)
class History:
    """What the policy needs to know about the patient (from the registry and history)."""

    known: bool = True
    chronic_patterns: frozenset[str] = frozenset()
    first_seen_ms: dict[str, int] | None = None  # event kind -> earliest occurrence in history

    def seen_before(self, kind: str, before_ms: int) -> bool:
        first = (self.first_seen_ms or {}).get(kind)
        return first is not None and first < before_ms


UNKNOWN = History(known=False)


@dataclass(frozen=True)
class Decision:
    rule: str
    severity: Severity
    title: str
    reasons: tuple[str, ...]

    @property
    def needs_unit(self) -> bool:
        return self.severity.needs_unit


def classify(kind: EventKind | str, beats: int = 0, rate_bpm: float | None = None,
             duration_ms: int = 0, rules: tuple[Rule, ...] = RULES) -> Rule | None:
    """The first rule of the table matching this event, or None (no alert for it)."""
    for rule in rules:
        if rule.matches(kind, beats, rate_bpm, duration_ms):
            return rule
    return None


def _step(severity: Severity, delta: int) -> Severity:
    i = CLINICAL_ORDER.index(severity)
    return CLINICAL_ORDER[max(0, min(len(CLINICAL_ORDER) - 1, i + delta))]


def adjust(rule: Rule, history: History, episode_start_ms: int) -> Decision:
    """Apply the history modifiers to a matched rule (see the module docstring)."""
    sev = rule.severity
    kind = rule.kind.value if isinstance(rule.kind, EventKind) else rule.kind
    reasons = [f"{rule.name}: {rule.title} ({sev.value})"]
    if sev is not Severity.TECHNICAL and history.known:
        if rule.chronic_lowers and kind in history.chronic_patterns:
            new = _step(sev, -1)
            if new is not sev:
                reasons.append(f"known chronic pattern {kind}: lowered to {new.value}")
            sev = new
        elif rule.first_ever_raises and not history.seen_before(kind, episode_start_ms):
            new = _step(sev, +1)
            if new is not sev:
                reasons.append(f"first-ever {kind} for this patient: raised to {new.value}")
            sev = new
    if not history.known:
        reasons.append("patient unknown to the registry")
    return Decision(rule.name, sev, rule.title, tuple(reasons))


def decide(kind: EventKind | str, history: History, episode_start_ms: int, beats: int = 0,
           rate_bpm: float | None = None, duration_ms: int = 0) -> Decision | None:
    """Rhythm rule + history modifiers in one call; None when no rule matches."""
    rule = classify(kind, beats, rate_bpm, duration_ms)
    return None if rule is None else adjust(rule, history, episode_start_ms)


def most_severe(a: Decision | None, b: Decision | None) -> Decision | None:
    """The more severe of two decisions (the earlier one on a tie)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b.severity.rank < a.severity.rank else a
