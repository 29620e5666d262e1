"""Model card: ``model_card.json`` (machine-readable, checked by the runtime) and ``MODEL_CARD.md`` rendered from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"


def _pct(v: Any) -> str:
    return "n/a" if v is None or v != v else f"{100 * float(v):.1f}"


def _metrics_table(m: dict[str, Any]) -> list[str]:
    rows = ["| class | n | Se % | +P % | F1 % |", "|---|---|---|---|---|"]
    for c in ("N", "S", "V", "F", "Q"):
        if c in m:
            rows.append(f"| {c} | {m[c].get('n', '')} | {_pct(m[c]['se'])} | {_pct(m[c]['ppv'])} | {_pct(m[c]['f1'])} |")
    if "confusion" in m:
        rows += ["", "Confusion (rows reference, columns predicted N S V F Q):", "", "```"]
        rows += ["  ".join(f"{v:6d}" for v in row) for row in m["confusion"]]
        rows.append("```")
    return rows


def render_markdown(card: dict[str, Any]) -> str:
    """The human-readable card."""
    spec = card["input_spec"]
    tr = card["training"]
    lines = [
        f"# Beat classifier model card: `{card['version']}`",
        "",
        f"File `{card['file']}`, {card['size_bytes']} bytes, sha256 `{card['sha256']}`.",
        "Full-integer int8 TFLite (int8 inputs and output), run by the gateway with ai-edge-litert "
        "(tflite-runtime as fallback); TensorFlow is needed only to train.",
        "",
        "## Task and classes",
        "",
        "One prediction per detected heartbeat, AAMI EC57 classes in output order "
        + ", ".join(card["classes"]) + ".",
        "Label map (MIT-BIH symbols): " + "; ".join(f"{k} = {' '.join(v)}" for k, v in card["label_map"].items()) + ".",
        "",
        "## Data and split",
        "",
        f"MIT-BIH Arrhythmia Database, channel 0, 360 Hz. Inter-patient split (de Chazal 2004): "
        f"trained on DS1 only ({len(tr['train_records'])} records: {' '.join(tr['train_records'])}). "
        f"Protocol: {tr.get('protocol', 'holdout')}; validation records (folds): "
        f"{' | '.join(tr['validation_records'])}. "
        "DS2 is used only by `emon model evaluate`. Paced records 102, 104, 107, 217 are excluded.",
        f"Examples: each beat at its reference position and at the gateway detector's position "
        f"(matched within 150 ms). Training examples per class: {tr['train_counts']}.",
        "",
        "## Input spec",
        "",
    ]
    for name, s in spec.items():
        lines.append(f"- `{name}`: shape (n, {', '.join(str(v) for v in s['shape'])}), {s['dtype']}, "
                     f"quantisation scale {s['scale']:.6g} zero point {s['zero_point']}: {s['description']}")
    lines += [
        f"- output: (n, 5) int8 softmax probabilities, {card['output']['description']}",
        "",
        "Preprocessing (the gateway's own code, identical in training): "
        + card["preprocessing"],
        "",
        f"Decision: argmax of log-probability + per-class bias {card['class_log_bias']} "
        "(N S V F Q; chosen on DS1 validation)"
        + (f"; then no S beat in an atrial-fibrillation context (`gateway/af_rule.py`): RR irregularity > "
           f"{card['af_rule']['irregularity_min']} and the patient's template P-wave amplitude < "
           f"{card['af_rule']['p_wave_max']} beat amplitudes -> N (thresholds chosen on DS1 validation)."
           if card.get("af_rule") else "."),
        "",
        "## Training",
        "",
        f"`{tr['command']}` (seed {tr['seed']}, max {tr['epochs']} epochs, best epoch {tr['best_epoch']}, "
        f"TensorFlow {tr['tensorflow']}, {tr['seconds']:.0f} s on {tr['cpus']} CPU). "
        f"Architecture: {tr['architecture']}. Class weights {tr['class_weights']}.",
        "",
        f"## Validation ({card['validation'].get('description', 'held-out DS1 records')})",
        "",
        f"int8 vs float model agreement on training beats: {_pct(tr.get('int8_float_agreement'))}%.",
        "",
        *_metrics_table(card["validation"]),
    ]
    ev = card.get("evaluation")
    if ev:
        q = ev["qrs"]
        lines += [
            "",
            f"## Evaluation: `{ev['command']}`",
            "",
            f"Records: {' '.join(ev['records'])}. First 5 minutes excluded (EC57), 150 ms match window.",
            f"QRS: Se {_pct(q['se'])}%, +P {_pct(q['ppv'])}% (TP {q['tp']}, FN {q['fn']}, FP {q['fp']}).",
            "",
            "### Beats found by the gateway's detector",
            "",
            *_metrics_table(ev["detected"]),
            "",
            "### Reference beat positions",
            "",
            *_metrics_table(ev["reference"]),
        ]
    ip = card.get("intra_patient")
    if ip:
        lines += ["", "## Intra-patient comparison (not the acceptance figure)", "",
                  f"{ip['split']}: accuracy {_pct(ip['accuracy'])}% on {ip['n_test']} test beats "
                  "(Kachuee 2018 reports 93.4% on a random split). Random beat splits put beats of the "
                  "same patient in both sets, which inflates accuracy."]
    sp = card.get("speed")
    if sp:
        lines += ["", "## Speed", "", f"{sp['description']}: "
                  + ", ".join(f"batch {k}: {v:,.0f} beats/s" for k, v in sp["beats_per_s"].items())]
    lines += ["", "## Limitations", "", *[f"- {t}" for t in card.get("limitations", [])], ""]
    return "\n".join(lines)


def write_card(card: dict[str, Any], out_dir: str | Path) -> None:
    out = Path(out_dir)
    (out / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    (out / CARD_MD).write_text(render_markdown(card))


def update_card(out_dir: str | Path, **sections: Any) -> dict[str, Any]:
    """Merge sections (e.g. ``evaluation=...``) into an existing card and re-render it."""
    path = Path(out_dir) / CARD_JSON
    card = json.loads(path.read_text())
    card.update(sections)
    write_card(card, out_dir)
    return card
