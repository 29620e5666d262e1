"""``emon ingest history|patients``: load the synthetic population and history, or real patients."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    h = sub.add_parser("history", help="synthetic population + history rows (resumable)")
    h.add_argument("--patients", type=int, required=True, help="population size P")
    h.add_argument("--rows", type=int, required=True, help="history rows R (split over the patients)")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--city-center", default="48.2082,16.3738", help="lat,lon of the city centre")
    h.add_argument("--radius-km", type=float, default=10.0, help="homes spread over this radius")
    h.add_argument("--concurrency", type=int, default=64, help="requests in flight per process")
    h.add_argument("--processes", type=int, default=2, help="writer processes (driver is CPU bound)")
    h.add_argument("--chunk-patients", type=int, default=100, help="patients per checkpointed chunk")
    h.add_argument("--mode", choices=("batch", "rows"), default="batch",
                   help="UNLOGGED batches per partition (default) or one request per row")
    h.add_argument("--no-progress", action="store_true")
    p = sub.add_parser("patients", help="real patients from a CSV file (all rows validated first)")
    p.add_argument("--csv", required=True, help="CSV file (columns: see hub/ingest.py or hub/README.md)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from emon_core.errors import ConfigError
    from emon_core.runtime import tune_gc
    from emon_core.settings import CassandraSettings, load
    from hub.ingest import Job, load_history, load_patients_csv

    settings = load(CassandraSettings)
    if args.what == "patients":
        n = load_patients_csv(settings, Path(args.csv))
        print(f"patients: {n} row(s) written from {args.csv}")
        return 0
    try:
        lat, lon = (float(x) for x in args.city_center.split(","))
    except ValueError as err:
        raise ConfigError(f"--city-center: expected lat,lon, got {args.city_center!r}") from err
    if args.patients < 1 or args.rows < 0:
        raise ConfigError("--patients must be >= 1 and --rows >= 0")
    job = Job(patients=args.patients, rows=args.rows, seed=args.seed, center=(lat, lon), radius_km=args.radius_km,
              chunk_patients=args.chunk_patients, concurrency=args.concurrency, mode=args.mode)
    tune_gc()  # the writer processes do the same
    result = load_history(settings, job, processes=args.processes, progress=not args.no_progress)
    print(json.dumps(result))
    return 0
