"""``emon model train``: DS1 features -> Keras CNN -> int8 TFLite -> validation biases -> model card."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.classifier import BeatClassifier, expected_spec
from gateway.evaluation.aami import CLASS_NAMES, DS1, PACED_RECORDS, SYMBOL_TO_INDEX
from gateway.evaluation.evaluate import class_metrics, confusion
from gateway.training.card import write_card
from gateway.training.dataset import build
from gateway.training.train import (
    ARCHITECTURES, MODEL_VARIANT, VALIDATION_RECORDS, choose_decision, convert_int8, cross_validate, intra_patient_report, load_training_sets,
    train_keras,
)

log = logging.getLogger(__name__)
MODEL_FILE = "beat_cnn_int8.tflite"
PREPROCESSING = ("resample to 360 Hz; EcgConditioner (causal Butterworth high-pass 0.5 Hz order 2, notches 50 and "
                 "60 Hz Q 30, low-pass 40 Hz order 4); window 0.25 s before to 0.45 s after R (plus the "
                 "conditioner's 4-sample group delay), every 2nd sample, median subtracted; channel 0 = window / "
                 "patient scale, channel 1 = (window - patient template) / patient scale, scale and template = "
                 "medians over the last 32 beats; RR features in seconds and ratios (prev, next, local = mean of "
                 "last 10 RR, patient = mean of last 256 RR, irregularity = mean |successive RR difference| / mean RR over the last 16 RR), passed to the model as clip(log(x [+ 0.02 for irregularity]), -3, 3); windows "
                 "clipped to +/-8")


def _label_map() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {c: [] for c in CLASS_NAMES}
    for sym, k in SYMBOL_TO_INDEX.items():
        out[CLASS_NAMES[k]].append(sym)
    return out


def measure_speed(clf: BeatClassifier, batch_sizes: tuple[int, ...] = (1, 16, 64, 256), seconds: float = 1.0) -> dict[str, float]:
    """Beats/s of ``clf.classify`` per batch size on random inputs (one thread)."""
    rng = np.random.default_rng(0)
    out = {}
    for bs in batch_sizes:
        w = rng.normal(0, 0.5, size=(bs, *clf.window_shape)).astype(np.float32)
        r = rng.uniform(0.5, 1.5, size=(bs, 11)).astype(np.float32)
        clf.classify(w, r)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            clf.classify(w, r)
            n += bs
        out[str(bs)] = n / (time.perf_counter() - t0)
    return out


def train_and_export(data_dir: str | Path, out_dir: str | Path, seed: int = 1, epochs: int = 8,
                     intra_patient: bool = False, command: str = "", holdout: bool = False) -> dict[str, Any]:
    """Train, convert and write ``beat_cnn_int8.tflite`` + model card into ``out_dir``; returns the card.

    Default: record-wise 4-fold cross-validation on DS1 picks the number of epochs and the
    decision biases from out-of-fold predictions, then the model is trained on all of DS1
    for that many epochs. ``holdout``: faster, train on DS1 minus :data:`VALIDATION_RECORDS`
    with early stopping on them, biases chosen on them.
    """
    import tensorflow as tf

    from gateway.classifier import decide

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cv: dict[str, Any] | None = None
    if holdout:
        train, val = load_training_sets(data_dir)
        log.info("training examples %d, validation examples %d", len(train), len(val))
        model, info = train_keras(train, val, epochs, seed)
    else:
        cv = cross_validate(data_dir, epochs, seed)
        records = [r for r in DS1 if r not in PACED_RECORDS]
        train = build(data_dir, records)
        train = train.subset(train.labels >= 0)
        log.info("final model: all DS1 (%d examples), %d epochs", len(train), cv["best_epoch"])
        model, info = train_keras(train, None, cv["best_epoch"], seed, early_stopping=False)
    tflite = convert_int8(model, train, seed)
    model_path = out / MODEL_FILE
    model_path.write_bytes(tflite)
    clf = BeatClassifier(model_path, card_path=None)
    # int8 vs float agreement on a sample of training beats
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(train), size=min(5000, len(train)), replace=False))
    from gateway.classifier import model_inputs

    w, r = model_inputs(train.windows[idx], train.rr[idx])
    agree = float(np.mean(np.argmax(model.predict([w, r], batch_size=2048, verbose=0), 1)
                          == np.argmax(clf.classify(train.windows[idx], train.rr[idx]), 1)))
    if holdout:
        ref = val.source == 0
        probs = clf.classify(val.windows[ref], val.rr[ref])
        bias, rule = choose_decision(probs, val.labels[ref], val.windows[ref], val.rr[ref])
        af_rule = rule.to_card() if rule is not None else None
        val_metrics = class_metrics(confusion(val.labels[ref], decide(probs, bias, rule, val.windows[ref], val.rr[ref])))
        val_metrics["description"] = ("held-out DS1 records " + " ".join(VALIDATION_RECORDS)
                                      + ", int8 model, reference positions, biased decision")
        best_epoch = info["best_epoch"]
    else:
        assert cv is not None
        bias = cv["bias"]
        af_rule = cv["af_rule"]
        val_metrics = cv["metrics_biased"]
        val_metrics["description"] = ("DS1 record-wise 4-fold cross-validation, out-of-fold float predictions, "
                                      "reference positions, biased decision")
        best_epoch = cv["best_epoch"]
    sha = hashlib.sha256(tflite).hexdigest()
    ins = {len(d["shape"]): d for d in clf._interp.get_input_details()}
    spec = expected_spec()
    card: dict[str, Any] = {
        "version": f"beat-cnn-{dt.datetime.now(dt.timezone.utc):%Y%m%d}-{sha[:8]}",
        "file": MODEL_FILE,
        "sha256": sha,
        "size_bytes": len(tflite),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": list(CLASS_NAMES),
        "label_map": _label_map(),
        "input_spec": {
            "window": {"shape": spec["window"], "dtype": "int8", "scale": float(ins[3]["quantization"][0]),
                       "zero_point": int(ins[3]["quantization"][1]),
                       "description": "beat window, 126 samples at 180 Hz, channels (beat, beat - template) "
                                      "in units of the patient's median beat amplitude"},
            "rr": {"shape": spec["rr"], "dtype": "int8", "scale": float(ins[2]["quantization"][0]),
                   "zero_point": int(ins[2]["quantization"][1]),
                   "description": "clip(log(x), -3, 3) of gateway.signal.beats.RR_FEATURES"},
        },
        "output": {"shape": [5], "dtype": "int8", "description": "softmax over N, S, V, F, Q"},
        "preprocessing": PREPROCESSING,
        "class_log_bias": bias,
        "af_rule": af_rule,
        "training": {
            "command": command or f"emon model train --data {data_dir} --out {out_dir} --seed {seed} --epochs {epochs}",
            "seed": seed, "epochs": epochs, "best_epoch": best_epoch,
            "protocol": ("holdout: early stopping and biases on held-out DS1 records" if holdout else
                         "DS1 4-fold record-wise cross-validation chose the epoch count and the biases; "
                         "final model trained on all of DS1"),
            "train_records": [r for r in DS1 if r not in PACED_RECORDS and (not holdout or r not in VALIDATION_RECORDS)],
            "validation_records": list(VALIDATION_RECORDS) if holdout else [" ".join(f) for f in cv["folds"]],
            "cross_validation": cv and {k: cv[k] for k in ("folds", "best_epoch", "bias", "af_rule", "per_epoch",
                                                           "metrics_argmax", "metrics_bias_only")},
            "int8_float_agreement": agree,
            "train_counts": {c: int(n) for c, n in zip(CLASS_NAMES, np.bincount(train.labels, minlength=5))},
            "class_weights": {CLASS_NAMES[k]: round(v, 3) for k, v in info["class_weights"].items()},
            "architecture": ARCHITECTURES[MODEL_VARIANT], "variant": MODEL_VARIANT, "tensorflow": tf.__version__,
            "seconds": time.perf_counter() - t0, "cpus": os.cpu_count(),
            "history": info["history"],
        },
        "validation": val_metrics,
        "speed": {"description": "BeatClassifier.classify, 1 thread, ai-edge-litert",
                  "beats_per_s": measure_speed(clf)},
        "limitations": [
            "Trained on MIT-BIH DS1 records only (two-lead Holter, mostly older patients); other populations, "
            "leads and devices may differ.",
            "F (fusion) and Q (unclassifiable) beats are rare in MIT-BIH (Q: 13 training beats); their "
            "figures are unreliable and Q is effectively never predicted.",
            "RR features need the patient's own running averages: the first beats of a stream are "
            "classified with short averages.",
            "Channel 0 only; paced rhythms are out of scope.",
        ],
    }
    if intra_patient:
        from gateway.evaluation.aami import DS2

        # a separate comparison model on all 44 non-paced records; the committed model never sees DS2
        card["intra_patient"] = intra_patient_report(data_dir, sorted(set(DS1) | set(DS2)), best_epoch, seed)
    write_card(card, out)
    # the card now holds the sha: re-open to check the runtime accepts it
    BeatClassifier(model_path, out / "model_card.json")
    return card
