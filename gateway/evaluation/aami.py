"""AAMI EC57 beat classes of MIT-BIH annotation symbols, and the de Chazal inter-patient record split."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from emon_core.contracts import BeatClass

#: Model output order: index -> AAMI class.
CLASSES: tuple[BeatClass, ...] = (BeatClass.N, BeatClass.S, BeatClass.V, BeatClass.F, BeatClass.Q)
CLASS_NAMES: tuple[str, ...] = tuple(c.value for c in CLASSES)

#: WFDB beat symbol -> class index (EC57: N = N L R e j; S = A a J S; V = V E; F = F; Q = / f Q).
#: Rare symbols: B (bundle branch block) -> N, n (supraventricular escape) -> S,
#: r (R-on-T) -> V, ? (unclassifiable) -> Q.
SYMBOL_TO_INDEX: dict[str, int] = {
    **{s: 0 for s in "NLRejB"},
    **{s: 1 for s in "AaJSn"},
    **{s: 2 for s in "VEr"},
    "F": 3,
    **{s: 4 for s in "/fQ?"},
}

PACED_RECORDS: tuple[str, ...] = ("102", "104", "107", "217")
DS1: tuple[str, ...] = tuple(
    "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230".split()
)
DS2: tuple[str, ...] = tuple(
    "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234".split()
)
ALL_MITDB: tuple[str, ...] = tuple(sorted(DS1 + DS2 + PACED_RECORDS))


def labels_of(symbols: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Class index of each beat symbol (-1 for symbols that are not beats)."""
    return np.array([SYMBOL_TO_INDEX.get(str(s), -1) for s in np.asarray(symbols).ravel()], dtype=np.int64)
