"""Wall-clock steps during a measurement (NTP, a resumed VM), noticed against the monotonic clock."""

from __future__ import annotations

import time

CLOCK_STEP_TOLERANCE_S = 0.5


class ClockWatch:
    """Notices the wall clock being stepped (NTP, a VM resumed) while a run lasts.

    Every latency here is a difference of wall-clock stamps from several processes, and the
    simulated devices date their samples from the clock at start: a step of the wall clock in
    the middle of a run shifts every later stamp by the step (a VM here once jumped ~150 s,
    and pause events "took" 150 s). Wall-clock elapsed minus monotonic elapsed is the step.
    """

    def __init__(self) -> None:
        self.wall0, self.mono0 = time.time(), time.monotonic()

    def step_s(self) -> float:
        """How far the wall clock moved beyond real elapsed time since construction (s)."""
        return (time.time() - self.wall0) - (time.monotonic() - self.mono0)
