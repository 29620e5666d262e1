"""What a simulated patient's signal source provides: ADC samples plus ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from emon_core.contracts import EventKind

# AAMI EC57 mapping of MIT-BIH beat annotation symbols to classes.
AAMI_CLASSES: dict[str, str] = {
    **{s: "N" for s in ("N", "L", "R", "e", "j")},
    **{s: "S" for s in ("A", "a", "J", "S")},
    **{s: "V" for s in ("V", "E")},
    "F": "F",
    **{s: "Q" for s in ("/", "f", "Q")},
}


@dataclass(frozen=True)
class TruthEvent:
    """A rhythm or technical event the patient really had, in device sample indices.

    ``onset_index`` is the first sample of the event (the first beat of a run, the last
    beat before a pause, the start of lead-off); ``end_index`` is exclusive.
    """

    kind: EventKind
    onset_index: int
    end_index: int
    beat_count: int = 0
    rate_bpm: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Chunk:
    """``n`` consecutive samples in ADC units starting at device sample ``start``."""

    start: int
    samples: npt.NDArray[np.float64]
    lead_off: bool = False


class EcgSource(Protocol):
    """A patient's endless ECG stream, addressable by device sample index."""

    fs_hz: float
    gain_adu_per_mv: float
    baseline_adu: float

    def read(self, start: int, n: int) -> Chunk:
        """Samples ``start .. start+n-1`` (ADC units) and whether any lead was off."""

    def silent(self, start: int, n: int) -> bool:
        """True when the device sends nothing for any sample of ``start .. start+n-1``."""

    def beats(self, start: int, stop: int) -> tuple[npt.NDArray[np.int64], list[str]]:
        """Ground-truth beats with ``start <= index < stop``: R sample indices and AAMI classes."""

    def events(self, start: int, stop: int) -> list[TruthEvent]:
        """Ground-truth events whose onset lies in ``start <= onset < stop``."""


def derive_run_events(
    indices: npt.NDArray[np.int64],
    classes: list[str],
    fs_hz: float,
    *,
    min_run: int = 3,
    pause_s: float = 3.0,
) -> list[TruthEvent]:
    """Events implied by a beat sequence: runs of >= ``min_run`` V or S beats, pauses.

    Example:
        >>> derive_run_events(np.array([0, 100, 200, 300]), ["N", "V", "V", "V"], 360.0)
        [TruthEvent(kind=<EventKind.V_RUN: 'v_run'>, onset_index=100, end_index=301, ...)]
    """
    out: list[TruthEvent] = []
    n = len(classes)
    i = 0
    while i < n:
        cls = classes[i]
        j = i
        while j + 1 < n and classes[j + 1] == cls:
            j += 1
        count = j - i + 1
        if cls in ("V", "S") and count >= min_run:
            span_s = (indices[j] - indices[i]) / fs_hz
            rate = 60.0 * (count - 1) / span_s if span_s > 0 else None
            out.append(
                TruthEvent(
                    EventKind.V_RUN if cls == "V" else EventKind.S_RUN,
                    int(indices[i]),
                    int(indices[j]) + 1,
                    beat_count=count,
                    rate_bpm=None if rate is None else round(rate, 1),
                )
            )
        i = j + 1
    if n >= 2:
        rr = np.diff(indices) / fs_hz
        for k in np.flatnonzero(rr >= pause_s):
            out.append(
                TruthEvent(
                    EventKind.PAUSE,
                    int(indices[k]),
                    int(indices[k + 1]),
                    detail=f"{rr[k]:.1f} s",
                )
            )
    out.sort(key=lambda e: e.onset_index)
    return out
