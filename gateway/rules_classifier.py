"""Fallback beat classifier from morphology and RR rules, for when no TFLite model is installed.

Same interface as :class:`gateway.classifier.BeatClassifier` (``classify(windows, rr) ->
(n, 5)`` probabilities in N, S, V, F, Q order, ``model_version``), so the gateway runs
without the model (development, tests, a box whose model file is being replaced). It is
deliberately simple and is never what a clinical deployment should run:

* V: the beat's QRS region differs from the patient's running template
  (``(window - template) / scale`` channel) by more than ``V_DIFF``;
* S: a narrow beat (template-like) that is premature (previous RR < ``S_PREMATURE`` x local RR);
* everything else N.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.signal.beats import RR_FEATURES, BeatConfig

V_DIFF = 0.18  # mean |beat - template| / amplitude over the QRS region
S_PREMATURE = 0.80
_PREV_OVER_LOCAL = RR_FEATURES.index("prev_over_local")


class RulesClassifier:
    """Rule-based ``classify(windows, rr)``; ``model_version`` is ``rules-1``."""

    model_version = "rules-1"
    class_log_bias = np.zeros(5, dtype=np.float32)

    def __init__(self, config: BeatConfig | None = None) -> None:
        cfg = config or BeatConfig()
        r = cfg.pre_samples // cfg.step  # R position in the (decimated) window
        half = max(1, int(round(0.06 * 360.0 / cfg.step)))  # +/- 60 ms
        self._qrs = slice(max(r - half, 0), r + half + 1)

    def classify(self, windows: npt.ArrayLike, rr_features: npt.ArrayLike) -> npt.NDArray[np.float32]:
        w = np.asarray(windows, dtype=np.float32)
        rr = np.asarray(rr_features, dtype=np.float32)
        n = w.shape[0]
        out = np.zeros((n, 5), dtype=np.float32)
        if n == 0:
            return out
        diff = np.abs(w[:, self._qrs, 1]).mean(axis=1)
        premature = rr[:, _PREV_OVER_LOCAL] < S_PREMATURE
        p_v = 1.0 / (1.0 + np.exp(-(diff - V_DIFF) / 0.03))
        p_s = np.where(premature, 0.9, 0.02) * (1.0 - p_v)
        p_n = np.clip(1.0 - p_v - p_s, 0.0, 1.0)
        out[:, 0], out[:, 1], out[:, 2] = p_n, p_s, p_v
        out /= out.sum(axis=1, keepdims=True)
        return out
