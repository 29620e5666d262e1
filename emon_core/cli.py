"""The ``emon`` command line: one subcommand per component, each defined in its package.

Each component owns a ``cli`` module exposing ``configure(parser)`` and ``run(args) -> int``;
those modules import only argparse at the top so ``emon --help`` stays fast and an edge
box without the hub's dependencies can still run ``emon gateway``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from emon_core.errors import EmonError

# subcommand -> (module holding configure/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "services": ("emon_core.devservices.cli", "start/stop the local Mosquitto, Kafka and Cassandra"),
    "init": ("emon_core.migrations.cli", "create Kafka topics and migrate the Cassandra schema"),
    "gateway": ("gateway.cli", "run an edge gateway for one site"),
    "bridge": ("bridge.cli", "forward flagged beats/events from MQTT into Kafka"),
    "hub": ("hub.cli", "enrich flagged events and raise alerts"),
    "router": ("paramedic_router.cli", "assign the nearest free paramedic unit to alerts"),
    "map": ("map_ui.cli", "serve the dispatcher map and REST API"),
    "sim": ("simulators.cli", "simulated devices and paramedic units"),
    "ingest": ("hub.ingest_cli", "load patients and history into Cassandra"),
    "model": ("gateway.model_cli", "train and evaluate the beat classifier"),
    "bench": ("emon_core.bench_cli", "benchmarks: signal, edge, hub, router, soak"),
    "loadtest": ("simulators.loadtest_cli", "whole-system load test with a latency report"),
    "demo": ("simulators.demo_cli", "run the whole system with simulated patients and units"),
}



def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(prog="emon", description="E-Monitor: real-time ECG monitoring")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, object] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                p.set_defaults(_not_built=True)
                continue
            p.set_defaults(_import_error=f"{module_name}: missing dependency {err.name!r}")
            continue
        module.configure(p)  # type: ignore[attr-defined]
        modules[name] = module
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "_not_built", False):
        print(f"emon {args.command}: not built yet", file=sys.stderr)
        return 3
    if getattr(args, "_import_error", None):
        print(f"emon {args.command}: {args._import_error}; install the matching extra", file=sys.stderr)
        return 3
    try:
        return int(modules[args.command].run(args) or 0)  # type: ignore[attr-defined]
    except EmonError as err:
        print(f"emon {args.command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
