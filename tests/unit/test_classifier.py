"""The committed int8 TFLite beat model: loads without TensorFlow, batch-size invariant, spec checked."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest

from gateway import classifier as clf_mod
from gateway.classifier import DEFAULT_CARD, DEFAULT_MODEL, BeatClassifier, ModelSpecError
from gateway.signal.beats import RR_FEATURES, extract_beats
from gateway.signal.filters import condition_offline

FS = 360.0


def _beats(n_seconds: float = 400.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(n_seconds * FS)
    x = rng.normal(0, 0.03, n)
    rr = rng.normal(0.8, 0.1, int(n_seconds / 0.5))
    r = (np.cumsum(rr) * FS).astype(np.int64)
    r = r[(r > 100) & (r < n - 300)]
    k = np.arange(-40, 41)
    for i, ri in enumerate(r):
        width = 10.0 if i % 5 == 0 else 3.5  # some wide beats
        x[ri + k] += 1.2 * np.exp(-0.5 * (k / width) ** 2)
    return extract_beats(condition_offline(x, FS), r, FS, 4)


@pytest.fixture(scope="module")
def clf() -> BeatClassifier:
    return BeatClassifier()


def test_loads_without_tensorflow(clf: BeatClassifier) -> None:
    assert "tensorflow" not in sys.modules
    card = json.loads(DEFAULT_CARD.read_text())
    assert clf.model_version == card["version"]
    assert clf.sha256 == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest() == card["sha256"]
    assert clf.size_bytes < 200_000
    assert clf.input_dtype == "int8"


def test_probabilities_shape_and_sum(clf: BeatClassifier) -> None:
    b = _beats()
    p = clf.classify(b.windows, b.rr)
    assert p.shape == (len(b), 5) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=0.03)
    assert (p >= 0).all()
    pred = clf.predict(b.windows, b.rr)
    assert pred.shape == (len(b),) and pred.min() >= 0 and pred.max() < 5


@pytest.mark.parametrize("max_batch", [1, 7, 16, 64, 256])
def test_batch_size_invariant(clf: BeatClassifier, max_batch: int) -> None:
    b = _beats()
    ref = clf.classify(b.windows, b.rr)  # batches of up to 256
    other = BeatClassifier(max_batch=max_batch)
    np.testing.assert_array_equal(other.classify(b.windows, b.rr), ref)
    # odd batch sizes in sequence, resizing back and forth
    for n in (1, 3, 256, 2, 100):
        np.testing.assert_array_equal(clf.classify(b.windows[:n], b.rr[:n]), ref[:n])


def test_empty_and_bad_shapes(clf: BeatClassifier) -> None:
    p = clf.classify(np.zeros((0, 126, 2), np.float32), np.zeros((0, len(RR_FEATURES)), np.float32))
    assert p.shape == (0, 5)
    with pytest.raises(ValueError):
        clf.classify(np.zeros((2, 100, 2), np.float32), np.ones((2, len(RR_FEATURES)), np.float32))
    with pytest.raises(ValueError):
        clf.classify(np.zeros((2, 126, 2), np.float32), np.ones((3, len(RR_FEATURES)), np.float32))


def test_rejects_model_with_wrong_input_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    # the gateway expecting another window length than the model has
    monkeypatch.setattr(clf_mod, "expected_spec", lambda config=None: {"window": [100, 2], "rr": [len(RR_FEATURES)]})
    with pytest.raises(ModelSpecError):
        BeatClassifier(DEFAULT_MODEL, card_path=None)


def test_rejects_card_mismatch(tmp_path) -> None:
    card = json.loads(DEFAULT_CARD.read_text())
    card["input_spec"]["window"]["shape"] = [252, 1]
    bad = tmp_path / "card.json"
    bad.write_text(json.dumps(card))
    with pytest.raises(ModelSpecError):
        BeatClassifier(DEFAULT_MODEL, bad)
    card = json.loads(DEFAULT_CARD.read_text())
    card["sha256"] = "0" * 64
    bad.write_text(json.dumps(card))
    with pytest.raises(ModelSpecError):
        BeatClassifier(DEFAULT_MODEL, bad)
