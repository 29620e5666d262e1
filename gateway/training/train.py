"""Train the beat CNN on MIT-BIH DS1 (validation on held-out DS1 records), convert to int8 TFLite, write the card.

TensorFlow is imported inside the functions here, so importing this module is cheap; run it
from the separate training environment (``pip install emon[train]``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.classifier import CLASSES, decide, model_inputs
from gateway.evaluation.aami import CLASS_NAMES, DS1, PACED_RECORDS
from gateway.evaluation.evaluate import class_metrics, confusion
from gateway.training.dataset import BeatSet, build

log = logging.getLogger(__name__)

#: DS1 records held out for early stopping and the decision biases (never DS2).
VALIDATION_RECORDS: tuple[str, ...] = ("106", "118", "220", "223")
K = len(CLASSES)


def set_seeds(seed: int) -> None:
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    tf.keras.utils.set_random_seed(seed)


#: Architecture variants compared by DS1 cross-validation (``MODEL_VARIANT`` picks the one trained).
ARCHITECTURES: dict[str, str] = {
    "a": ("window (126x2) -> 4 x [Conv1D(16/24/32/32, k 7/5/5/3) + BN + ReLU + MaxPool2] -> Flatten -> Dense 32; "
          "RR (11) -> Dense 32 -> Dense 16; concat -> Dropout 0.3 -> Dense 32 -> Dense 5 softmax"),
    "b": ("window (126x2) -> 4 x [Conv1D(16/24/32/32, k 7/5/5/3) + BN + ReLU + MaxPool2] -> Flatten -> Dropout 0.4 "
          "-> Dense 24; RR (11) -> Dense 32 -> Dense 16; concat(morphology, RR dense, RR raw) -> Dropout 0.3 -> "
          "Dense 32 -> Dense 5 softmax"),
}
MODEL_VARIANT = os.environ.get("EMON_MODEL_VARIANT", "b")


def build_model(window_shape: tuple[int, int], n_rr: int, seed: int, variant: str | None = None) -> Any:
    """Small two-input 1D CNN: conv stack on the beat window, dense on the RR features."""
    import tensorflow as tf
    from tensorflow.keras import layers

    variant = variant or MODEL_VARIANT
    init = tf.keras.initializers.GlorotUniform(seed=seed)
    win = layers.Input(shape=window_shape, name="window")
    rr = layers.Input(shape=(n_rr,), name="rr")
    x = win
    for filters, kernel in ((16, 7), (24, 5), (32, 5), (32, 3)):
        x = layers.Conv1D(filters, kernel, padding="same", use_bias=False, kernel_initializer=init)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling1D(2)(x)
    x = layers.Flatten()(x)
    if variant == "b":
        x = layers.Dropout(0.4, seed=seed)(x)
        x = layers.Dense(24, activation="relu", kernel_initializer=init)(x)
    else:
        x = layers.Dense(32, activation="relu", kernel_initializer=init)(x)
    r = layers.Dense(32, activation="relu", kernel_initializer=init)(rr)
    r = layers.Dense(16, activation="relu", kernel_initializer=init)(r)
    h = layers.Concatenate()([x, r, rr] if variant == "b" else [x, r])
    h = layers.Dropout(0.3, seed=seed)(h)
    h = layers.Dense(32, activation="relu", kernel_initializer=init)(h)
    out = layers.Dense(K, activation="softmax", kernel_initializer=init, name="probs")(h)
    return tf.keras.Model([win, rr], out)


def class_weights(labels: npt.NDArray[np.int64], power: float = 0.6, cap: float = 30.0) -> dict[int, float]:
    """Inverse-frequency weights raised to ``power``, normalised so N has weight 1, capped."""
    counts = np.bincount(labels, minlength=K).astype(float)
    w = np.where(counts > 0, (counts[0] / np.maximum(counts, 1)) ** power, 0.0)
    return {k: float(min(w[k], cap)) for k in range(K)}


def _augment(w: npt.NDArray[np.float32], rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Amplitude scaling, a small offset and a little noise (per example)."""
    scale = rng.uniform(0.8, 1.2, size=(w.shape[0], 1, 1)).astype(np.float32)
    offset = rng.normal(0.0, 0.05, size=(w.shape[0], 1, w.shape[2])).astype(np.float32)
    noise = rng.normal(0.0, 0.03, size=w.shape).astype(np.float32)
    return w * scale + offset + noise


def sv_score(conf: npt.NDArray[np.int64]) -> float:
    """Validation objective: mean F1 of S and V, plus N Se (all fractions)."""
    m = class_metrics(conf)
    f = [m[c]["f1"] for c in ("S", "V")]
    return float(np.nanmean(f) + 0.5 * (m["N"]["se"] if m["N"]["se"] == m["N"]["se"] else 0.0))


def choose_bias(probs: npt.NDArray[np.float32], labels: npt.NDArray[np.int64],
                af_mask: npt.NDArray[np.bool_] | None = None) -> tuple[list[float], float]:
    """Per-class log biases for S and V chosen on validation (grid search on :func:`sv_score`);
    with ``af_mask``, scored on the decisions after the AF rule (:mod:`gateway.af_rule`)."""
    from gateway.af_rule import apply_af_rule

    best = ([0.0] * K, -1.0)
    grid = np.arange(-2.0, 2.01, 0.25)
    for bs in grid:
        for bv in grid:
            bias = [0.0, float(bs), float(bv), 0.0, 0.0]
            pred = decide(probs, bias)
            score = sv_score(confusion(labels, pred if af_mask is None else apply_af_rule(pred, af_mask)))
            if score > best[1] + 1e-9:
                best = (bias, score)
    return best


def choose_decision(probs: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], windows: npt.NDArray[np.float32],
                    rr: npt.NDArray[np.float32]) -> tuple[list[float], Any]:
    """Class biases and AF rule (or None) for the decision the gateway applies (:func:`gateway.classifier.decide`).

    Joint grid search on :func:`sv_score`: for no rule and every threshold pair of
    :mod:`gateway.af_rule`, the best biases with that rule in place; a rule is kept only
    when it scores higher than the biases alone.
    """
    from gateway.af_rule import IRREGULARITY_GRID, P_WAVE_GRID, AfRule, af_context

    bias, score = choose_bias(probs, labels)
    best: tuple[list[float], Any, float] = (bias, None, score)
    for irr in IRREGULARITY_GRID:
        for pw in P_WAVE_GRID:
            rule = AfRule(irr, pw)
            bias, score = choose_bias(probs, labels, af_context(windows, rr, rule))
            if score > best[2] + 1e-9:
                best = (bias, rule, score)
    return best[0], best[1]


def train_keras(train: BeatSet, val: BeatSet | None, epochs: int, seed: int, batch_size: int = 256,
                early_stopping: bool = True, on_epoch: Any = None) -> tuple[Any, dict[str, Any]]:
    """Train with class weights.

    With ``early_stopping`` (and ``val``), keep the epoch with the best validation score;
    otherwise train exactly ``epochs`` epochs. ``on_epoch(model, epoch)`` is called after each.
    """
    import tensorflow as tf

    set_seeds(seed)
    rng = np.random.default_rng(seed)
    wtr, rtr = model_inputs(train.windows, train.rr)
    ytr = train.labels
    model = build_model(wtr.shape[1:], rtr.shape[1], seed)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    cw = class_weights(ytr)
    sw = np.array([cw[int(y)] for y in ytr], dtype=np.float32)
    if val is not None:
        ref_val = val.source == 0
        wva, rva = model_inputs(val.windows[ref_val], val.rr[ref_val])
    best: dict[str, Any] = {"score": -1.0, "epoch": 0, "weights": None}
    history = []
    patience, bad = 4, 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(ytr))
        lr = 1e-3 if epoch <= max(epochs // 2, 1) else 3e-4
        model.optimizer.learning_rate.assign(lr)
        hist = model.fit([_augment(wtr[order], rng), rtr[order]], ytr[order], sample_weight=sw[order],
                         batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        row: dict[str, Any] = {"epoch": epoch, "loss": float(hist.history["loss"][0])}
        if val is not None:
            p = model.predict([wva, rva], batch_size=2048, verbose=0)
            conf = confusion(val.labels[ref_val], np.argmax(p, axis=1))
            m = class_metrics(conf)
            row.update({"val_score": sv_score(conf),
                        **{f"val_{c}_{k}": m[c][k] for c in ("N", "S", "V") for k in ("se", "ppv")}})
            log.info("epoch %d loss %.4f val score %.4f  N se %.3f  S se %.3f ppv %.3f  V se %.3f ppv %.3f",
                     epoch, row["loss"], row["val_score"], m["N"]["se"], m["S"]["se"], m["S"]["ppv"],
                     m["V"]["se"], m["V"]["ppv"])
        else:
            log.info("epoch %d loss %.4f", epoch, row["loss"])
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if on_epoch is not None:
            on_epoch(model, epoch)
        if early_stopping and val is not None:
            if row["val_score"] > best["score"]:
                best = {"score": row["val_score"], "epoch": epoch, "weights": model.get_weights()}
                bad = 0
            else:
                bad += 1
                if bad >= patience:
                    break
    if early_stopping and val is not None:
        model.set_weights(best["weights"])
    else:
        best = {"score": float("nan"), "epoch": epochs}
    return model, {"best_epoch": best["epoch"], "best_val_score": best["score"], "history": history,
                   "class_weights": cw}


#: Record-wise folds of DS1 for cross-validation (each holds S, V and irregular-rhythm records).
CV_FOLDS: tuple[tuple[str, ...], ...] = (
    ("101", "106", "108", "109", "201"),
    ("112", "114", "115", "116", "203", "207"),
    ("118", "119", "122", "124", "205", "223"),
    ("208", "209", "215", "220", "230"),
)


def cross_validate(data_dir: str | Path, epochs: int, seed: int) -> dict[str, Any]:
    """Record-wise 4-fold cross-validation on DS1: out-of-fold probabilities after every epoch.

    Returns the epoch count with the best pooled score, the per-class biases chosen on the
    pooled out-of-fold probabilities at that epoch, and the pooled metrics.
    """
    records = [r for r in DS1 if r not in PACED_RECORDS]
    full = build(data_dir, records)
    full = full.subset(full.labels >= 0)
    ref = full.source == 0
    oof = np.zeros((epochs, int(ref.sum()), K), dtype=np.float32)
    ref_idx = np.flatnonzero(ref)
    for f, fold in enumerate(CV_FOLDS):
        held = np.isin(full.records, list(fold))
        held_ref = held[ref_idx]  # positions in the oof arrays
        w, r = model_inputs(full.windows[ref_idx[held_ref]], full.rr[ref_idx[held_ref]])

        def store(model: Any, epoch: int, w=w, r=r, held_ref=held_ref) -> None:
            oof[epoch - 1, held_ref] = model.predict([w, r], batch_size=2048, verbose=0)

        log.info("fold %d/%d: holding out %s", f + 1, len(CV_FOLDS), " ".join(fold))
        train_keras(full.subset(~held), None, epochs, seed + f, early_stopping=False, on_epoch=store)
    labels = full.labels[ref_idx]
    per_epoch = []
    for e in range(epochs):
        conf = confusion(labels, np.argmax(oof[e], axis=1))
        per_epoch.append({"epoch": e + 1, "score": sv_score(conf), "metrics": class_metrics(conf)})
        m = per_epoch[-1]["metrics"]
        log.info("CV epoch %d score %.4f  N se %.3f  S se %.3f ppv %.3f  V se %.3f ppv %.3f", e + 1,
                 per_epoch[-1]["score"], m["N"]["se"], m["S"]["se"], m["S"]["ppv"], m["V"]["se"], m["V"]["ppv"])
    best = max(per_epoch, key=lambda d: d["score"])
    probs = oof[best["epoch"] - 1]
    bias_only = class_metrics(confusion(labels, decide(probs, choose_bias(probs, labels)[0])))
    bias, rule = choose_decision(probs, labels, full.windows[ref_idx], full.rr[ref_idx])
    pred = decide(probs, bias, rule, full.windows[ref_idx], full.rr[ref_idx])
    biased = class_metrics(confusion(labels, pred))
    recs = full.records[ref_idx]
    per_record = {str(n): confusion(labels[recs == n], pred[recs == n]).tolist() for n in np.unique(recs)}
    return {"per_record_confusion": per_record,"folds": [list(f) for f in CV_FOLDS], "best_epoch": best["epoch"], "bias": bias,
            "per_epoch": [{"epoch": d["epoch"], "score": d["score"]} for d in per_epoch],
            "metrics_argmax": best["metrics"], "metrics_bias_only": bias_only, "metrics_biased": biased,
            "af_rule": rule.to_card() if rule is not None else None}


def convert_int8(model: Any, rep: BeatSet, seed: int, n_rep: int = 2000) -> bytes:
    """Full-integer int8 TFLite (int8 inputs and output) with a representative dataset drawn from training beats."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(rep), size=min(n_rep, len(rep)), replace=False)
    # keep every rare-class beat in the calibration set so their ranges are covered
    rare = np.flatnonzero(rep.labels != 0)
    idx = np.unique(np.concatenate([idx, rng.choice(rare, size=min(500, rare.size), replace=False)]))
    w, r = model_inputs(rep.windows[idx], rep.rr[idx])

    def representative():
        for i in range(len(idx)):
            yield {"window": w[i : i + 1], "rr": r[i : i + 1]}

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def load_training_sets(data_dir: str | Path, validation: tuple[str, ...] = VALIDATION_RECORDS) -> tuple[BeatSet, BeatSet]:
    """DS1 minus the validation records (training) and the validation records; paced records never appear."""
    records = [r for r in DS1 if r not in PACED_RECORDS]
    full = build(data_dir, records)
    is_val = np.isin(full.records, list(validation))
    keep = full.labels >= 0
    return full.subset(keep & ~is_val), full.subset(keep & is_val)


def intra_patient_report(data_dir: str | Path, records: list[str], epochs: int, seed: int) -> dict[str, Any]:
    """Random beat-level 80/20 split (intra-patient, as Kachuee 2018): accuracy of the same architecture.

    For comparison with published intra-patient figures only; it is not the acceptance figure
    and this model is not the committed one.
    """
    full = build(data_dir, records)
    full = full.subset((full.source == 0) & (full.labels >= 0))
    rng = np.random.default_rng(seed)
    test = rng.random(len(full)) < 0.2
    train, val = full.subset(~test), full.subset(test)
    model, info = train_keras(train, None, epochs, seed, early_stopping=False)
    w, r = model_inputs(val.windows, val.rr)
    pred = np.argmax(model.predict([w, r], batch_size=2048, verbose=0), axis=1)
    conf = confusion(val.labels, pred)
    m = class_metrics(conf)
    return {"split": "random beat-level 80/20 (intra-patient)", "records": records,
            "n_train": len(train), "n_test": len(val), "accuracy": m["accuracy"], "metrics": m,
            "best_epoch": info["best_epoch"]}


__all__ = ["VALIDATION_RECORDS", "build_model", "class_weights", "choose_bias", "choose_decision", "convert_int8",
           "intra_patient_report", "load_training_sets", "train_keras", "cross_validate", "CV_FOLDS", "CLASS_NAMES"]
