"""``emon services up|down|status|logs|start|restart|kill|provision`` for the local dev services."""

from __future__ import annotations

import argparse
import json
import sys
import time

SERVICES = ("mosquitto", "kafka", "cassandra")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    p = sub.add_parser("up", help="start the services (all, or those named) and wait until ready")
    p.add_argument("names", nargs="*", metavar="SERVICE", help=f"any of {', '.join(SERVICES)} (default all)")
    p.add_argument("--timeout", type=float, default=None, help="readiness timeout per service (s)")
    p = sub.add_parser("start", help="start one service (e.g. after `kill`)")
    p.add_argument("names", nargs="+", choices=SERVICES, metavar="SERVICE")
    p.add_argument("--timeout", type=float, default=None)
    p = sub.add_parser("restart", help="stop then start the named services")
    p.add_argument("names", nargs="+", choices=SERVICES, metavar="SERVICE")
    p.add_argument("--timeout", type=float, default=None)
    p = sub.add_parser("down", help="stop the services this project started (SIGTERM, then SIGKILL)")
    p.add_argument("names", nargs="*", metavar="SERVICE", help=f"any of {', '.join(SERVICES)} (default all)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before SIGKILL")
    p = sub.add_parser("kill", help="SIGKILL one service (fault tests)")
    p.add_argument("names", nargs="+", choices=SERVICES, metavar="SERVICE")
    p = sub.add_parser("status", help="up/down, pid, ports and memory of each service")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("logs", help="print (or follow) a service's log")
    p.add_argument("name", nargs="?", choices=SERVICES, metavar="SERVICE")
    p.add_argument("-n", "--lines", type=int, default=40)
    p.add_argument("-f", "--follow", action="store_true")
    p = sub.add_parser("provision", help="MQTT accounts for simulated devices and units")
    p.add_argument("--devices", type=int, required=True, help="dev-00000 .. dev-<N-1>")
    p.add_argument("--units", type=int, required=True, help="unit-0000 .. unit-<M-1>")
    parser.set_defaults(action=None)


def run(args: argparse.Namespace) -> int:
    action = args.action or "status"
    handler = {
        "up": _up, "start": _up, "restart": _restart, "down": _down, "kill": _kill,
        "status": _status, "logs": _logs, "provision": _provision,
    }[action]
    return handler(args)


def _up(args: argparse.Namespace) -> int:
    from emon_core.devservices import manager

    t0 = time.monotonic()
    for res in manager.up(list(args.names), args.timeout):
        what = "started" if res.started else "already running"
        print(f"{res.name:10s} {what:16s} ready after {res.seconds:5.1f} s")
    print(f"services up in {time.monotonic() - t0:.1f} s (`emon services status`, `emon services down`)")
    return 0


def _restart(args: argparse.Namespace) -> int:
    from emon_core.devservices import manager

    for name, how in manager.down(list(args.names)).items():
        print(f"{name:10s} {how}")
    return _up(args)


def _down(args: argparse.Namespace) -> int:
    from emon_core.devservices import manager

    for name, how in manager.down(list(args.names), args.timeout).items():
        print(f"{name:10s} {how}")
    return 0


def _kill(args: argparse.Namespace) -> int:
    from emon_core.devservices import procs

    for name in args.names:
        print(f"{name:10s} {procs.kill(name)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from emon_core.devservices import manager

    rows = manager.status()
    if getattr(args, "json", False):
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(f"{'SERVICE':10s} {'STATE':5s} {'PID':>8s} {'PORTS':12s} {'RSS':>9s}  VERSION")
        for r in rows:
            pid = str(r.pid) if r.pid else "-"
            rss = f"{r.rss_bytes / 2**20:.0f} MiB" if r.rss_bytes else "-"
            ports = ",".join(map(str, r.ports))
            line = f"{r.name:10s} {'up' if r.up else 'down':5s} {pid:>8s} {ports:12s} {rss:>9s}  {r.version}"
            print(line + (f"  ({r.detail})" if r.detail else ""))
    return 0 if all(r.up for r in rows) else 1


def _logs(args: argparse.Namespace) -> int:
    from emon_core.devservices import procs

    names = [args.name] if args.name else list(SERVICES)
    for name in names:
        path = procs.logs_dir() / f"{name}.log"
        if len(names) > 1:
            print(f"==> {path} <==")
        print(procs.tail(path, args.lines))
    if args.follow:
        if len(names) != 1:
            print("--follow needs one SERVICE", file=sys.stderr)
            return 2
        path = procs.logs_dir() / f"{names[0]}.log"
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            try:
                while True:
                    chunk = fh.read()
                    if chunk:
                        sys.stdout.write(chunk.decode(errors="replace"))
                        sys.stdout.flush()
                    else:
                        time.sleep(0.5)
            except KeyboardInterrupt:
                return 0
    return 0


def _provision(args: argparse.Namespace) -> int:
    from emon_core.devservices import credentials
    from emon_core.devservices.mosquitto import Mosquitto, write_password_file

    credentials.set_provisioned(args.devices, args.units)
    data = credentials.ensure()
    broker = Mosquitto()
    n = write_password_file(broker.passwd_file, force=True)
    reloaded = broker.reload()
    prov = data["provisioned"]
    print(f"{n} MQTT accounts: dev-00000..dev-{prov['devices'] - 1:05d}, "
          f"unit-0000..unit-{prov['units'] - 1:04d}; broker {'reloaded' if reloaded else 'not running'}")
    return 0
