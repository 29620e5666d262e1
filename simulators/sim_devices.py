"""``emon sim devices``: build the virtual patients, run the fleet, print and record the result."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

from emon_core.errors import ConfigError, ServiceError
from emon_core.registry import sim_device_id, sim_patient_id, sim_site_id
from emon_core.settings import MqttSettings, load
from simulators.device import DeviceOptions, DeviceStats, VirtualDevice, now_epoch_ms
from simulators.fleet import Fleet, FleetOptions
from simulators.ground_truth import TRUTH_SCHEMA, TruthRecorder
from simulators.mqtt_client import connect, device_password, new_device_client
from simulators.progress import Progress, cpu_seconds, print_summary, summarize
from simulators.scenario import format_scenario, parse_scenario
from simulators.source import EcgSource

log = logging.getLogger(__name__)

DEFAULT_MITDB = Path(
    os.environ.get("EMON_MITDB_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mitdb")
)
FOREVER_FRAMES = 10**12


def build_source(args: argparse.Namespace, n: int) -> EcgSource:
    """Signal source of simulated patient ``n`` from the command-line options."""
    if args.source == "synthetic":
        from simulators.synthetic import SyntheticConfig, SyntheticSource

        scripted = args.scenario_list if (args.scenario_patients is None or n - args.start_index < args.scenario_patients) else []
        hr = args.hr_bpm if args.hr_bpm else 60.0 + (n * 7) % 35  # patients differ
        return SyntheticSource(SyntheticConfig(fs_hz=args.fs or 360.0, hr_bpm=hr, seed=args.seed + n), scripted)
    from simulators.wfdb_source import MITDB_RECORDS, patient_source

    records = tuple(args.records.split(",")) if args.records else MITDB_RECORDS
    return patient_source(n, Path(args.data_dir), records, args.fs)


def build_devices(args: argparse.Namespace, recorder: TruthRecorder) -> list[VirtualDevice]:
    settings: MqttSettings = args.mqtt_settings
    options = DeviceOptions(
        frame_ms=args.frame_ms, jitter_ms=args.jitter_ms, dropout=args.dropout,
        backlog_frames=args.backlog_frames, session_expiry_s=args.session_expiry_s,
        encoding=args.encoding,
    )
    devices = []
    for n in range(args.start_index, args.start_index + args.patients):
        device_id = sim_device_id(n)
        dev = VirtualDevice(
            device_id=device_id, patient_id=sim_patient_id(n), site_id=sim_site_id(n, args.site_size),
            source=build_source(args, n), options=options, stats=DeviceStats(), recorder=recorder, seed=args.seed + n,
        )
        dev.client = new_device_client(device_id, settings, device_password(device_id))
        devices.append(dev)
    return devices


def validate(args: argparse.Namespace) -> None:
    if args.patients < 1:
        raise ConfigError("--patients must be >= 1")
    if args.site_size < 1:
        raise ConfigError("--site-size must be >= 1")
    if not 20 <= args.frame_ms <= 10_000:
        raise ConfigError("--frame-ms must be 20..10000")
    if not 0.0 <= args.dropout < 1.0:
        raise ConfigError("--dropout must be a probability in [0, 1)")
    if args.jitter_ms < 0:
        raise ConfigError("--jitter-ms must be >= 0")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration must be > 0 s")
    if args.fs is not None and not 100.0 <= args.fs <= 1000.0:
        raise ConfigError("--fs must be 100..1000 Hz")
    args.scenario_list = parse_scenario(args.scenario) if args.scenario else []
    if args.scenario_list and args.source != "synthetic":
        raise ConfigError("--scenario needs --source synthetic")
    if args.source == "mitdb" and not (Path(args.data_dir) / "100.hea").exists():
        raise ConfigError(f"--data-dir {args.data_dir}: no MIT-BIH records there (set EMON_MITDB_DIR)")
    overrides: dict[str, Any] = {}
    if args.mqtt_host:
        overrides["host"] = args.mqtt_host
    if args.mqtt_port:
        overrides["port"] = args.mqtt_port
    args.mqtt_settings = load(MqttSettings, **overrides)


def raise_fd_limit(needed: int) -> None:
    """One socket per device: lift the soft open-files limit towards the hard one if needed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            log.warning("open-files limit %d is below the %d needed for %d devices", new, want, needed)


def run_devices(args: argparse.Namespace, on_running: Callable[[Fleet], None] | None = None) -> int:
    """Run the fleet to the end; ``on_running(fleet)`` is called once the clocks started
    (tests use it to break connections mid-run)."""
    validate(args)
    raise_fd_limit(args.patients)
    t_setup = time.monotonic()
    recorder = TruthRecorder(args.truth)
    devices = build_devices(args, recorder)
    frames = FOREVER_FRAMES
    if args.duration is not None:
        frames = max(1, int(args.duration * 1000 // args.frame_ms))
    settings: MqttSettings = args.mqtt_settings
    fleet = Fleet(
        devices,
        FleetOptions(frames_per_device=frames, fast=args.fast, workers=args.workers, drain_timeout_s=args.drain_s),
        connect=lambda dev: connect(dev.client, settings, args.session_expiry_s),
    )
    meta = {
        "source": args.source, "frame_ms": args.frame_ms, "fast": bool(args.fast), "start_index": args.start_index,
        "scenario": format_scenario(args.scenario_list), "jitter_ms": args.jitter_ms, "dropout": args.dropout,
        "site_size": args.site_size, "mqtt": f"{settings.host}:{settings.port}",
    }
    recorder.write({"t": "run", "schema": TRUTH_SCHEMA, "started_ms": now_epoch_ms(), "patients": args.patients,
                    "fs_hz": args.fs, **meta})
    interrupted = {"n": 0}

    def on_signal(signum: int, frame: Any) -> None:
        interrupted["n"] += 1
        if interrupted["n"] == 1:
            log.info("signal %s: finishing (draining unacknowledged frames)", signum)
            fleet.finish()
        else:
            fleet.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    progress = Progress(fleet, every_s=args.status_every)
    try:
        fleet.start()
        fleet.wait_connected(timeout_s=30.0)
        refused = [d for d in devices if d.failed]
        if not any(d.connected for d in devices):
            fleet.stop()
            fleet.join(5.0)
            reason = refused[0].failed if refused else f"broker {settings.host}:{settings.port} unreachable"
            raise ServiceError(f"no device could connect ({reason}); is `emon services up` running?")
        if refused:
            log.error("%d devices refused by the broker (first: %s: %s)", len(refused), refused[0].device_id, refused[0].failed)
        setup_s = time.monotonic() - t_setup
        # the fleet's long-lived objects (clients, records) need no more GC passes: without
        # this a full collection over 1,000 clients stalls the frame clock for ~0.2 s
        gc.freeze()
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        if args.status_every > 0:
            progress.start()
        if on_running is not None:
            on_running(fleet)
        while fleet.alive():
            fleet.join(0.5)
        wall_s, cpu_s = time.monotonic() - wall0, cpu_seconds() - cpu0
    finally:
        progress.stop()
        for s, h in old.items():
            signal.signal(s, h)
    errors = fleet.errors()
    summary = summarize(fleet, wall_s, cpu_s, setup_s, meta)
    summary["devices_refused"] = len([d for d in devices if d.failed])
    recorder.write({"t": "summary", **summary})
    recorder.close()
    print_summary(summary)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=2) + "\n")
    if errors:
        raise ServiceError(f"simulator worker failed: {errors[0]!r}") from errors[0]
    lost = summary["frames_unacked"] + summary["frames_in_backlog"]
    return 0 if lost == 0 and not summary["devices_refused"] else 1
