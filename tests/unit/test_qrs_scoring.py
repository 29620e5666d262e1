"""EC57-style beat matching used to score QRS detectors."""

from __future__ import annotations

import numpy as np

from gateway.evaluation.scoring import BEAT_SYMBOLS, beat_annotations, match_beats, ppv, se, vf_intervals

FS = 360.0


def test_window_is_inclusive_150_ms() -> None:
    m = match_beats([1000, 2000], [1054, 2055], FS, start_s=0.0)
    assert (m.tp, m.fn, m.fp) == (1, 1, 1)


def test_one_to_one_closest_first() -> None:
    m = match_beats([1000, 1100], [1090], FS, start_s=0.0)
    assert (m.tp, m.fn, m.fp) == (1, 1, 0)
    assert m.pairs.tolist() == [[1, 0]]
    m = match_beats([1000], [990, 1005], FS, start_s=0.0)
    assert (m.tp, m.fp) == (1, 1) and m.pairs.tolist() == [[0, 1]]


def test_first_five_minutes_excluded() -> None:
    start = int(300 * FS)
    ref = np.array([start - 200, start - 10, start + 500])
    det = np.array([start - 205, start + 5, start + 500, start + 900, start - 1000])
    m = match_beats(ref, det, FS)
    # ref start-10 matched to det start+5 is not scored (ref before start); det start-1000 ignored
    assert (m.tp, m.fn, m.fp) == (1, 0, 1)


def test_unsorted_input_and_pairs_index_original_arrays() -> None:
    m = match_beats([3000, 1000, 2000], [2002, 999], FS, start_s=0.0)
    assert (m.tp, m.fn, m.fp) == (2, 1, 0)
    assert sorted(m.pairs.tolist()) == [[1, 1], [2, 0]]


def test_empty_and_helpers() -> None:
    m = match_beats([], [], FS)
    assert (m.tp, m.fn, m.fp) == (0, 0, 0) and np.isnan(m.se) and np.isnan(m.ppv)
    assert se(99, 1) == 0.99 and ppv(1, 1) == 0.5
    total = match_beats([400], [400], FS, start_s=0) + match_beats([400], [], FS, start_s=0)
    assert (total.tp, total.fn) == (1, 1)


def test_vf_exclusion() -> None:
    ann = [100, 5000, 6000, 9000, 12000]
    sym = ["N", "[", "!", "]", "N"]
    vf = vf_intervals(ann, sym)
    assert vf.tolist() == [[5000, 9000]]
    m = match_beats([100, 12000], [100, 6000, 7000, 12000], FS, start_s=0.0, exclude=vf)
    assert (m.tp, m.fn, m.fp) == (2, 0, 0)
    assert m.pairs.tolist() == [[0, 0], [1, 3]]


def test_beat_symbols() -> None:
    assert {"N", "V", "A", "/", "f", "Q", "F", "L", "R", "E", "j", "e", "a", "J", "S"} <= BEAT_SYMBOLS
    assert not {"+", "~", "|", "[", "]", "!", '"', "x"} & BEAT_SYMBOLS
    s, y = beat_annotations([1, 2, 3], ["N", "+", "V"])
    assert s.tolist() == [1, 3] and y.tolist() == ["N", "V"]
