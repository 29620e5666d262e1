"""Scripted patient scenarios: a list of timed events, parsed from a compact string.

Grammar (times and durations in seconds from the device's first sample)::

    scenario := event ("," event)*
    event    := kind "@" time [":" param ("," | ":" param)*]
    param    := name "=" number

Kinds and parameters (defaults in brackets):

- ``vt@t:k=8,rate=180``   k wide ventricular beats (class V) at ``rate`` bpm [k=8, rate=180]
- ``svt@t:k=5,rate=150``  k premature narrow beats (class S) [k=5, rate=150]; ``k=1`` is a PAC
- ``pause@t:s=4``         no beat for s seconds after the first beat at or after t [s=4]
- ``brady@t:d=30,rate=40`` / ``tachy@t:d=30,rate=130``  sinus rate override [d=30]
- ``noise@t:d=5,mv=0.5``  a burst of broadband noise of ``mv`` mV RMS [d=5, mv=0.5]
- ``leadoff@t:d=5``       electrodes off: flat signal and ``lead_off`` flag [d=5]
- ``silent@t:d=10``       the device sends no frames [d=10]

Example:
    >>> parse_scenario("vt@20:k=8,pause@40:s=4")
    [Scripted(kind='vt', at_s=20.0, params={'k': 8.0, 'rate': 180.0}), Scripted(kind='pause', ...)]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emon_core.errors import ConfigError

DEFAULTS: dict[str, dict[str, float]] = {
    "vt": {"k": 8, "rate": 180},
    "svt": {"k": 5, "rate": 150},
    "pause": {"s": 4},
    "brady": {"d": 30, "rate": 40},
    "tachy": {"d": 30, "rate": 130},
    "noise": {"d": 5, "mv": 0.5},
    "leadoff": {"d": 5},
    "silent": {"d": 10},
}


@dataclass(frozen=True)
class Scripted:
    """One scripted event: ``kind`` (a key of :data:`DEFAULTS`) at ``at_s`` seconds."""

    kind: str
    at_s: float
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in DEFAULTS:
            raise ConfigError(f"scenario: unknown event {self.kind!r} (known: {', '.join(DEFAULTS)})")
        if not (self.at_s >= 0):
            raise ConfigError(f"scenario: {self.kind} time must be >= 0 s, got {self.at_s}")
        unknown = set(self.params) - set(DEFAULTS[self.kind])
        if unknown:
            raise ConfigError(f"scenario: {self.kind} has no parameter {sorted(unknown)}")
        merged = {**DEFAULTS[self.kind], **self.params}
        for name, value in merged.items():
            if not value > 0:
                raise ConfigError(f"scenario: {self.kind} {name} must be > 0, got {value}")
        object.__setattr__(self, "params", {k: float(v) for k, v in merged.items()})

    def __getitem__(self, name: str) -> float:
        return self.params[name]

    @property
    def end_s(self) -> float:
        """End of an interval event (``d``); start for point events."""
        return self.at_s + self.params.get("d", 0.0)

    def to_str(self) -> str:
        params = ",".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.kind}@{self.at_s:g}:{params}"


Scenario = list[Scripted]


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError as err:
        raise ConfigError(f"scenario: {where}: {text!r} is not a number") from err


def parse_scenario(text: str) -> Scenario:
    """Parse ``"vt@20:k=8,pause@40:s=4"`` into a time-sorted list of :class:`Scripted`."""
    events: Scenario = []
    pending: tuple[str, float, dict[str, float]] | None = None
    tokens = [t.strip() for part in text.split(",") for t in part.split(":")]
    for token in tokens:
        if not token:
            continue
        if "@" in token:
            if pending is not None:
                events.append(Scripted(*pending))
            kind, _, at = token.partition("@")
            pending = (kind.strip().lower(), _number(at, kind), {})
        elif "=" in token and pending is not None:
            name, _, value = token.partition("=")
            pending[2][name.strip()] = _number(value, f"{pending[0]} {name}")
        else:
            raise ConfigError(f"scenario: cannot parse {token!r} in {text!r}")
    if pending is not None:
        events.append(Scripted(*pending))
    return sorted(events, key=lambda e: e.at_s)


def format_scenario(scenario: Scenario) -> str:
    return ",".join(e.to_str() for e in scenario)
