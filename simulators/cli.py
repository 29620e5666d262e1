"""``emon sim``: simulated patient devices (``devices``) and paramedic units (``units``)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType


def _units_module() -> ModuleType | None:
    try:
        return importlib.import_module("simulators.units")
    except ModuleNotFoundError as err:
        if err.name in ("simulators.units",):
            return None
        raise


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sim_command", metavar="WHAT")
    dev = sub.add_parser(
        "devices",
        help="virtual patients streaming ECG frames over MQTT",
        description="Virtual patients, each its own MQTT device, streaming ECG frames (QoS 1, "
        "persistent session) from MIT-BIH replays or a synthetic generator with scripted events.",
    )
    configure_devices(dev)
    units = sub.add_parser("units", help="moving paramedic units reporting positions")
    module = _units_module()
    if module is not None and hasattr(module, "configure"):
        module.configure(units)
    else:
        units.set_defaults(_units_not_built=True)


def configure_devices(p: argparse.ArgumentParser) -> None:
    default_data = os.environ.get("EMON_MITDB_DIR") or str(
        __import__("pathlib").Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mitdb"
    )
    g = p.add_argument_group("fleet")
    g.add_argument("--patients", type=int, default=10, help="number of virtual patients (default 10)")
    g.add_argument("--start-index", type=int, default=0, help="first patient number n (dev-<n>; default 0)")
    g.add_argument("--site-size", type=int, default=1000, help="patients per site (default 1000)")
    g.add_argument("--duration", type=float, default=None, help="seconds of signal per patient (default: until Ctrl-C)")
    g.add_argument("--fast", action="store_true", help="publish as fast as acknowledgements allow, not in real time")
    g.add_argument(
        "--workers", type=int, default=1,
        help="network/pacing threads (default 1: more threads mostly contend for the GIL)",
    )
    g.add_argument("--drain-s", type=float, default=30.0,
                   help="after the last frame, wait this long for acknowledgements (default 30)")
    g = p.add_argument_group("signal")
    g.add_argument("--source", choices=("mitdb", "synthetic"), default="mitdb", help="signal source (default mitdb)")
    g.add_argument("--fs", type=float, default=None, help="sampling rate in Hz, 100..1000 (default: native / 360)")
    g.add_argument("--data-dir", default=default_data, help="WFDB records directory (default ../shared/data/mitdb)")
    g.add_argument("--records", default=None, help="comma-separated record names (default: all 48 MIT-BIH)")
    g.add_argument("--scenario", default=None, help='synthetic scripted events, e.g. "vt@20:k=8,pause@40:s=4"')
    g.add_argument("--scenario-patients", type=int, default=None, help="only the first K patients get the scenario")
    g.add_argument("--hr-bpm", type=float, default=None, help="synthetic sinus rate (default: 60..95 by patient)")
    g.add_argument("--seed", type=int, default=0, help="random seed (synthetic signal, jitter, dropout)")
    g = p.add_argument_group("device")
    g.add_argument("--frame-ms", type=int, default=1000, help="frame length in ms (default 1000)")
    g.add_argument("--jitter-ms", type=float, default=0.0, help="random publish delay 0..J ms per frame")
    g.add_argument("--dropout", type=float, default=0.0, help="probability that a frame is never sent")
    g.add_argument("--backlog-frames", type=int, default=600, help="frames kept per device while disconnected")
    g.add_argument("--encoding", choices=("i16", "json"), default="i16",
                   help="samples as base64 int16 (default; compact) or as JSON numbers")
    g.add_argument("--session-expiry-s", type=int, default=3600, help="MQTT session expiry (default 3600 s)")
    g.add_argument("--mqtt-host", default=None, help="broker host (default EMON_MQTT_HOST or 127.0.0.1)")
    g.add_argument("--mqtt-port", type=int, default=None, help="broker port (default EMON_MQTT_PORT or 1883)")
    g = p.add_argument_group("output")
    g.add_argument("--truth", default=None, help="write ground truth JSONL to this file")
    g.add_argument("--json", dest="json_path", default=None, help="write the summary as JSON")
    g.add_argument("--status-every", type=float, default=5.0, help="status line period in s (0: none)")


def run(args: argparse.Namespace) -> int:
    what = getattr(args, "sim_command", None)
    if what == "devices":
        from simulators.sim_devices import run_devices

        return run_devices(args)
    if what == "units":
        if getattr(args, "_units_not_built", False):
            print("emon sim units: not built yet", file=sys.stderr)
            return 3
        module = _units_module()
        assert module is not None
        return int(module.run(args) or 0)
    print("usage: emon sim {devices,units} ... (see emon sim devices --help)", file=sys.stderr)
    return 2
