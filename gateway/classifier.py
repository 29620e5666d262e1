"""Batched AAMI beat classification with the committed int8 TFLite model (LiteRT; never TensorFlow).

The runtime is ``ai_edge_litert`` (LiteRT) or, where only that is installed,
``tflite_runtime``. Inputs are what :mod:`gateway.signal.beats` produces; :func:`model_inputs`
applies the fixed transform the model was trained with (windows clipped, RR features as
clipped logarithms), then the model's int8 quantisation is applied here.

Example:
    >>> clf = BeatClassifier()  # doctest: +SKIP
    >>> probs = clf.classify(batch.windows, batch.rr)  # (n, 5) in N, S, V, F, Q order  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from emon_core.contracts import BeatClass
from emon_core.errors import EmonError
from gateway.af_rule import AfRule, af_context, apply_af_rule
from gateway.signal.beats import RR_FEATURES, BeatConfig

MODEL_DIR = Path(__file__).resolve().parent / "model"
DEFAULT_MODEL = MODEL_DIR / "beat_cnn_int8.tflite"
DEFAULT_CARD = MODEL_DIR / "model_card.json"

#: Output order of the model.
CLASSES: tuple[BeatClass, ...] = (BeatClass.N, BeatClass.S, BeatClass.V, BeatClass.F, BeatClass.Q)
WINDOW_CLIP = 8.0  # windows are in units of the patient's beat amplitude
RR_LOG_CLIP = 3.0  # |log| of seconds and of ratios
# added before the log: irregularity is 0 for a perfectly regular rhythm
_RR_LOG_OFFSET = np.array([0.02 if n == "irregularity" else 0.0 for n in RR_FEATURES], dtype=np.float32)


class ModelSpecError(EmonError):
    """The model file does not match the input spec its card (and the gateway) expect."""


def model_inputs(windows: npt.ArrayLike, rr: npt.ArrayLike) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The float inputs the model sees: clipped windows (n, L, 2) and clipped log RR features (n, 11)."""
    w = np.clip(np.asarray(windows, dtype=np.float32), -WINDOW_CLIP, WINDOW_CLIP)
    r = np.asarray(rr, dtype=np.float32) + _RR_LOG_OFFSET
    r = np.clip(np.log(np.maximum(r, 1e-3)), -RR_LOG_CLIP, RR_LOG_CLIP).astype(np.float32)
    return w, r


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError as err:
            raise EmonError("no TFLite runtime: install ai-edge-litert (or tflite-runtime)") from err
    return Interpreter


def expected_spec(config: BeatConfig | None = None) -> dict[str, list[int]]:
    """Per-beat input shapes the gateway feeds: window (L, 2) and RR features (11,)."""
    cfg = config or BeatConfig()
    return {"window": [cfg.window_len, 2], "rr": [len(RR_FEATURES)]}


class BeatClassifier:
    """The beat model: ``classify(windows, rr) -> (n, 5)`` class probabilities.

    Args:
        model_path: ``.tflite`` file; the committed model by default.
        card_path: its ``model_card.json``; the committed card by default (None-safe: a
            model without a card is checked against :func:`expected_spec` only).
        max_batch: beats per interpreter call (larger inputs are split).
        num_threads: interpreter threads (1: one core per gateway worker).

    Raises:
        ModelSpecError: when the model's inputs/outputs differ from the expected spec.
    """

    def __init__(self, model_path: str | Path | None = None, card_path: str | Path | None = None,
                 max_batch: int = 256, num_threads: int = 1) -> None:
        self.model_path = Path(model_path) if model_path else DEFAULT_MODEL
        if card_path is None and model_path is None:
            card_path = DEFAULT_CARD
        self.card: dict[str, Any] = json.loads(Path(card_path).read_text()) if card_path else {}
        content = self.model_path.read_bytes()
        self.sha256 = hashlib.sha256(content).hexdigest()
        self.size_bytes = len(content)
        self.model_version = str(self.card.get("version", f"unversioned-{self.sha256[:12]}"))
        if self.card.get("sha256") and self.card["sha256"] != self.sha256:
            raise ModelSpecError(f"{self.model_path.name}: sha256 differs from its model card")
        self.max_batch = int(max_batch)
        self._interp = _interpreter_class()(model_content=content, num_threads=num_threads)
        self._check_spec()
        self._batch = 0
        bias = self.card.get("class_log_bias")
        self.class_log_bias = np.asarray(bias if bias else [0.0] * len(CLASSES), dtype=np.float32)
        self.af_rule: AfRule | None = AfRule.from_card(self.card)

    # -- spec ----------------------------------------------------------------------------

    def _check_spec(self) -> None:
        want = expected_spec()
        card_spec = self.card.get("input_spec")
        if card_spec:
            card_shapes = {k: list(v["shape"]) for k, v in card_spec.items()}
            if card_shapes != want:
                raise ModelSpecError(f"model card input spec {card_shapes} != gateway's {want}")
        ins = self._interp.get_input_details()
        outs = self._interp.get_output_details()
        if len(ins) != 2 or len(outs) != 1:
            raise ModelSpecError(f"expected 2 inputs and 1 output, got {len(ins)} and {len(outs)}")
        by_rank = {len(d["shape"]): d for d in ins}
        if set(by_rank) != {3, 2}:
            raise ModelSpecError(f"expected a rank-3 window input and a rank-2 RR input, got {[list(d['shape']) for d in ins]}")
        self._win, self._rr = by_rank[3], by_rank[2]
        self._out = outs[0]
        got = {"window": [int(v) for v in self._win["shape"][1:]], "rr": [int(v) for v in self._rr["shape"][1:]]}
        if got != want:
            raise ModelSpecError(f"model input shapes {got} != gateway's {want}")
        if int(self._out["shape"][-1]) != len(CLASSES):
            raise ModelSpecError(f"model has {self._out['shape'][-1]} outputs, expected {len(CLASSES)}")
        self.window_shape = tuple(want["window"])

    @property
    def input_dtype(self) -> str:
        return np.dtype(self._win["dtype"]).name

    # -- inference -----------------------------------------------------------------------

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self._interp.resize_tensor_input(self._win["index"], [n, *self.window_shape], strict=False)
            self._interp.resize_tensor_input(self._rr["index"], [n, len(RR_FEATURES)], strict=False)
            self._interp.allocate_tensors()
            self._batch = n

    @staticmethod
    def _quantise(x: npt.NDArray[np.float32], detail: dict[str, Any]) -> npt.NDArray[Any]:
        dtype = np.dtype(detail["dtype"])
        if dtype == np.float32:
            return x
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def _dequantise(self, q: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        if np.dtype(self._out["dtype"]) == np.float32:
            return q.astype(np.float32)
        scale, zero = self._out["quantization"]
        return ((q.astype(np.float32) - zero) * scale).astype(np.float32)

    def classify(self, windows: npt.ArrayLike, rr_features: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Class probabilities (n, 5), columns in :data:`CLASSES` order (N, S, V, F, Q).

        Args:
            windows: (n, L, 2) beat windows from :mod:`gateway.signal.beats`.
            rr_features: (n, 11) RR features (seconds and ratios, :data:`RR_FEATURES` order).
        """
        w, r = model_inputs(windows, rr_features)
        if w.ndim != 3 or tuple(w.shape[1:]) != self.window_shape or r.shape != (w.shape[0], len(RR_FEATURES)):
            raise ValueError(f"expected windows (n, {self.window_shape}) and rr (n, {len(RR_FEATURES)}), got {w.shape} and {r.shape}")
        n = w.shape[0]
        out = np.empty((n, len(CLASSES)), dtype=np.float32)
        for a in range(0, n, self.max_batch):
            b = min(a + self.max_batch, n)
            self._resize(b - a)
            self._interp.set_tensor(self._win["index"], self._quantise(w[a:b], self._win))
            self._interp.set_tensor(self._rr["index"], self._quantise(r[a:b], self._rr))
            self._interp.invoke()
            out[a:b] = self._dequantise(self._interp.get_tensor(self._out["index"]))
        return out

    def predict(self, windows: npt.ArrayLike, rr_features: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Class index per beat: the card's decision (:func:`decide`) on the model's probabilities."""
        return decide(self.classify(windows, rr_features), self.class_log_bias, self.af_rule, windows, rr_features)


def decide(probs: npt.NDArray[np.float32], class_log_bias: npt.ArrayLike | None = None,
           af_rule: AfRule | None = None, windows: npt.ArrayLike | None = None,
           rr_features: npt.ArrayLike | None = None) -> npt.NDArray[np.int64]:
    """Class index from probabilities: argmax of log-probability plus optional per-class log biases,
    then, with ``af_rule`` (and the beats' ``windows`` and ``rr_features``), no S in an AF context
    (:mod:`gateway.af_rule`). Biases and rule are chosen on DS1 cross-validation."""
    logp = np.log(np.maximum(np.asarray(probs, dtype=np.float32), 1e-6))
    if class_log_bias is not None:
        logp = logp + np.asarray(class_log_bias, dtype=np.float32)[None, :]
    pred = np.argmax(logp, axis=1).astype(np.int64)
    if af_rule is not None:
        if windows is None or rr_features is None:
            raise ValueError("the AF rule needs the beats' windows and RR features")
        pred = apply_af_rule(pred, af_context(windows, rr_features, af_rule))
    return pred
