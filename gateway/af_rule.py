"""Atrial-fibrillation context for beat decisions: no S beat while the rhythm looks like AF.

AAMI EC57 labels the beats of atrial fibrillation N: in AF every beat is "early" against some
average, so a short RR is not evidence of a supraventricular ectopic (S) beat. The model sees
the rhythm's irregularity among its RR features, but MIT-BIH DS1 holds only two AF records
(201, 203), so it never learnt that rule well: in DS1 record-wise cross-validation 654 of 791
N beats called S came from those two records.

The rule takes AF as the clinical definition has it, *irregular RR and no P wave*:

* irregularity: mean absolute successive RR difference over mean RR of the last 16 RR
  (the ``irregularity`` RR feature, already computed per beat);
* no P wave: the peak-to-peak amplitude of the patient's running beat template (median of
  the last 32 beats, in units of the patient's beat amplitude) from the window start to
  80 ms before R. A sinus template keeps its P wave even when frequent atrial ectopics make
  the RR irregular; an AF template is flat there (fibrillatory waves average out).

Both thresholds are chosen on DS1 cross-validation by ``emon model train`` and stored in the
model card (``af_rule``); without them the rule is off.

Example:
    >>> rule = AfRule(irregularity_min=0.1, p_wave_max=0.04)
    >>> pred = np.array([1, 1]); mask = np.array([True, False])
    >>> apply_af_rule(pred, mask).tolist()
    [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.signal.beats import RR_FEATURES, BeatConfig
from gateway.signal.constants import MODEL_FS_HZ

_IRREGULARITY = RR_FEATURES.index("irregularity")
P_WAVE_END_S = 0.080  # the P region ends this long before R (PR segment, QRS onset)
N_INDEX, S_INDEX = 0, 1


@dataclass(frozen=True)
class AfRule:
    """Thresholds: AF context when ``irregularity > irregularity_min`` and ``p_wave < p_wave_max``."""

    irregularity_min: float
    p_wave_max: float

    def __post_init__(self) -> None:
        if not (self.irregularity_min >= 0 and self.p_wave_max > 0):
            raise ValueError("need irregularity_min >= 0 and p_wave_max > 0")

    @staticmethod
    def from_card(card: dict[str, Any]) -> AfRule | None:
        """The rule stored in a model card (``af_rule``), or None when the card has none."""
        spec = card.get("af_rule")
        if not spec:
            return None
        return AfRule(float(spec["irregularity_min"]), float(spec["p_wave_max"]))

    def to_card(self) -> dict[str, float]:
        return {"irregularity_min": self.irregularity_min, "p_wave_max": self.p_wave_max}


def p_wave_region(config: BeatConfig | None = None, fs_hz: float = MODEL_FS_HZ) -> slice:
    """Window samples from the window start to :data:`P_WAVE_END_S` before R."""
    cfg = config or BeatConfig()
    end = cfg.pre_samples - int(round(P_WAVE_END_S * fs_hz))
    return slice(0, max(len(range(0, max(end, 1), cfg.step)), 1))


def template_p_wave(windows: npt.ArrayLike, config: BeatConfig | None = None) -> npt.NDArray[np.float32]:
    """Peak-to-peak amplitude of the patient's template in the P region, per beat (beat-amplitude units).

    The beat windows carry ``(beat / scale, (beat - template) / scale)``, so the template in
    the same units is the difference of the two channels.
    """
    w = np.asarray(windows, dtype=np.float32)
    if w.shape[0] == 0:
        return np.empty(0, np.float32)
    region = p_wave_region(config)
    p = w[:, region, 0] - w[:, region, 1]  # only the P region: this runs on every classified batch
    return (p.max(axis=1) - p.min(axis=1)).astype(np.float32)


def af_context(windows: npt.ArrayLike, rr_features: npt.ArrayLike, rule: AfRule) -> npt.NDArray[np.bool_]:
    """True for beats whose rhythm context looks like AF under ``rule``."""
    rr = np.asarray(rr_features, dtype=np.float32)
    if rr.shape[0] == 0:
        return np.zeros(0, bool)
    return (rr[:, _IRREGULARITY] > rule.irregularity_min) & (template_p_wave(windows) < rule.p_wave_max)


def apply_af_rule(pred: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """``pred`` with S decisions turned into N where ``mask`` (a copy)."""
    out = np.array(pred, dtype=np.int64, copy=True)
    out[(out == S_INDEX) & np.asarray(mask, bool)] = N_INDEX
    return out


#: Grid searched on DS1 cross-validation (irregularity over mean RR; template P-wave amplitude).
IRREGULARITY_GRID: tuple[float, ...] = (0.10, 0.15, 0.20, 0.25)
P_WAVE_GRID: tuple[float, ...] = (0.030, 0.035, 0.040, 0.045, 0.050)
