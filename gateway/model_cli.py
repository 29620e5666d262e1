"""``emon model train|evaluate``: train the beat CNN (train extra) and evaluate the gateway chain EC57-style."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mitdb")
DEFAULT_OUT = str(Path(__file__).resolve().parent / "model")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION")
    t = sub.add_parser("train", help="train on MIT-BIH DS1, convert to int8 TFLite, write the model card (needs TensorFlow)")
    t.add_argument("--data", default=DEFAULT_DATA, help="MIT-BIH directory (default ../shared/data/mitdb)")
    t.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: the gateway's model/)")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--epochs", type=int, default=8, help="maximum epochs (the count is chosen on DS1 validation)")
    t.add_argument("--holdout", action="store_true",
                   help="faster: one held-out set of DS1 records instead of 4-fold cross-validation on DS1")
    t.add_argument("--intra-patient-report", action="store_true",
                   help="also train a comparison model on a random beat-level split and report its accuracy")
    e = sub.add_parser("evaluate", help="EC57-style report of the gateway's detector and classifier on a WFDB database")
    e.add_argument("--data", default=DEFAULT_DATA, help="WFDB directory with .hea/.dat/.atr records")
    e.add_argument("--records", default="DS2", help="DS2 | DS1 | all | comma-separated names (default DS2)")
    e.add_argument("--json", dest="json_path", default=None, help="write the report as JSON")
    e.add_argument("--plot", default=None, help="write the confusion matrices as PNG")
    e.add_argument("--model", default=None, help=".tflite file (default: the committed model)")
    e.add_argument("--card", default=None, help="model card JSON for --model")
    e.add_argument("--no-progress", action="store_true")
    e.add_argument("--update-card", action="store_true", help="store this evaluation in the model card")


def _nan_to_none(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def _train(args: argparse.Namespace) -> int:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print("emon model train needs TensorFlow: install the 'train' extra in a separate environment", file=sys.stderr)
        return 3
    from gateway.training.export import train_and_export

    command = "emon model train " + " ".join(shlex.quote(a) for a in sys.argv[3:]) if len(sys.argv) > 2 else ""
    card = train_and_export(args.data, args.out, seed=args.seed, epochs=args.epochs,
                            intra_patient=args.intra_patient_report, command=command.strip(),
                            holdout=args.holdout)
    v = card["validation"]
    print(f"wrote {Path(args.out) / card['file']} ({card['size_bytes']} bytes), version {card['version']}")
    print(f"DS1 validation ({v['description']}): "
          + "  ".join(f"{c} Se {100 * v[c]['se']:.1f} +P {100 * v[c]['ppv']:.1f}" for c in ("N", "S", "V")
                      if v[c]["n"]))
    ip = card.get("intra_patient")
    if ip:
        print(f"intra-patient comparison ({ip['split']}; NOT the acceptance figure): accuracy {100 * ip['accuracy']:.2f}%")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from gateway.classifier import BeatClassifier
    from gateway.evaluation.evaluate import evaluate, format_report, resolve_records

    if not Path(args.data).is_dir():
        print(f"emon model evaluate: no such directory {args.data}", file=sys.stderr)
        return 2
    clf = BeatClassifier(args.model, args.card)
    records = resolve_records(args.data, args.records)
    report = evaluate(args.data, records, clf, progress=not args.no_progress)
    print(format_report(report))
    clean = _nan_to_none(report)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(clean, indent=2) + "\n")
    if args.plot:
        from gateway.evaluation.plots import plot_confusion

        plot_confusion(report, args.plot)
    if args.update_card:
        from gateway.training.card import update_card

        card_dir = Path(args.card).parent if args.card else Path(DEFAULT_OUT)
        clean["command"] = f"emon model evaluate --data {args.data} --records {args.records}"
        clean.pop("per_record", None)
        update_card(card_dir, evaluation=clean)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.model_command == "train":
        return _train(args)
    if args.model_command == "evaluate":
        return _evaluate(args)
    print("usage: emon model {train,evaluate} ...", file=sys.stderr)
    return 2
