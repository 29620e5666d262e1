"""``emon gateway``: run an edge gateway for one site (or ``--check-config FILE``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="YAML/TOML settings file (env EMON_GATEWAY_* overrides it)")
    parser.add_argument("--check-config", type=Path, default=None, metavar="FILE",
                        help="validate a settings file, print the effective settings (secrets hidden) and exit")
    parser.add_argument("--site", dest="site_id", default=None, help="site id served (default site-00)")
    parser.add_argument("--gateway-id", default=None, help="gateway id (default gw-<site>)")
    parser.add_argument("--registry", dest="registry_file", type=Path, default=None,
                        help="device registry CSV/JSON (device_id,patient_id,site_id)")
    parser.add_argument("--simulated", type=int, default=None, help="accept simulated devices dev-00000..dev-<N-1>")
    parser.add_argument("--state-dir", type=Path, default=None, help="outbox directory (default .state/gateway/<id>)")
    parser.add_argument("--http-port", type=int, default=None, help="/metrics and /healthz port (default 9400; 0 = any)")
    parser.add_argument("--classifier", choices=("auto", "tflite", "rules"), default=None,
                        help="beat classifier (default auto: the TFLite model when present)")
    parser.add_argument("--model", dest="model_path", type=Path, default=None, help="a .tflite model (next to its model_card.json)")
    parser.add_argument("--tick-ms", type=int, default=None, help="classification tick (default 100 ms)")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    keys = ("site_id", "gateway_id", "registry_file", "simulated", "state_dir", "http_port", "classifier",
            "model_path", "tick_ms")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def run(args: argparse.Namespace) -> int:
    from gateway.settings import load_gateway_settings

    if args.check_config is not None:
        settings = load_gateway_settings(args.check_config, **_overrides(args))
        print(f"{args.check_config}: OK")
        print(settings.model_dump_json(indent=2))
        return 0
    settings = load_gateway_settings(args.config, **_overrides(args))

    from emon_core.registry import DeviceRegistry
    from emon_core.runtime import tune_gc
    from gateway.service import GatewayService, load_classifier

    if settings.registry_file is not None:
        registry = DeviceRegistry.from_file(settings.registry_file)
    else:
        registry = DeviceRegistry.simulated(int(settings.simulated or 0), start=settings.simulated_start)
    if len(registry.for_site(settings.site_id)) == 0:
        print(f"emon gateway: no device of site {settings.site_id} in the registry", file=sys.stderr)
        return 1
    classifier = load_classifier(settings)
    service = GatewayService(settings, registry, classifier)
    tune_gc()  # full collections of 1,000 sessions' state paused processing for up to 63 ms
    return service.run()
