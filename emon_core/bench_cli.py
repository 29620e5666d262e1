"""``emon bench``: dispatch to each component's benchmark (they print figures, never assert)."""

from __future__ import annotations

import argparse
import importlib

# benchmark name -> (module, function taking argparse.Namespace and returning an exit code)
BENCHES: dict[str, tuple[str, str, str]] = {
    "signal": ("gateway.bench", "bench_signal", "resample+filter+QRS and classifier throughput"),
    "edge": ("simulators.bench_edge", "bench_edge", "simulator + gateway + bridge capacity and latency"),
    "hub": ("hub.bench", "bench_hub", "hub events/s, Cassandra write latency, history ingest"),
    "router": ("paramedic_router.bench", "bench_router", "assignments/s and decision time"),
    "soak": ("simulators.bench_soak", "bench_soak", "one gateway for a long run: is its memory flat?"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(BENCHES), help="which benchmark")
    parser.add_argument("--json", dest="json_path", default=None, help="write figures as JSON")
    parser.add_argument("--plot", default=None, help="write a PNG plot where the benchmark draws one")
    parser.add_argument("--quick", action="store_true", help="shorter run (for smoke tests)")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="benchmark-specific options")


def _lift_common_options(args: argparse.Namespace) -> None:
    """Options written after the benchmark's name land in ``rest``; lift the common ones out."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", dest="json_path", default=None)
    common.add_argument("--plot", default=None)
    common.add_argument("--quick", action="store_true")
    known, rest = common.parse_known_args(args.rest or [])
    args.json_path = args.json_path or known.json_path
    args.plot = args.plot or known.plot
    args.quick = args.quick or known.quick
    args.rest = rest


def run(args: argparse.Namespace) -> int:
    _lift_common_options(args)
    module_name, func_name, _ = BENCHES[args.name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        print(f"emon bench {args.name}: not available ({err.name} missing)")
        return 3
    return int(getattr(module, func_name)(args) or 0)
