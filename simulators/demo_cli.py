"""``emon demo``: the whole system on one machine with simulated patients and units.

Steps: ``emon services up`` (installs what is missing), ``emon init``, a small patient
population with history (``emon ingest history``, the simulators' ids so the map shows the
patients at home), then the components under :class:`emon_core.supervisor.Supervisor`
(logs in ``<state>/logs/demo/<name>.log``), consumers first:

    map -> router -> hub -> bridge -> gateway per site -> units -> patients

Patients: most replay arrhythmic MIT-BIH records (many V beats and runs), the rest are
synthetic with scripted emergencies (VT runs, pauses) that start within the first minute
and repeat, so a dispatcher sees alerts with strips and units driving to patients soon
after "ready". Ctrl-C (or SIGTERM) stops the components in reverse order, then the
services, only if this demo started them.

The hub and router run in their own consumer groups (``emon-hub-demo``,
``emon-router-demo``) moved to the end of their topics at start: the demo shows what
happens now, not a backlog left by earlier runs or tests on the same services.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# arrhythmic MIT-BIH records first (V beats, couplets, runs; 200/203/210/233 have VT runs),
# then a few with S beats / normal rhythm for contrast
DEFAULT_RECORDS = "119,200,203,208,210,213,233,106,214,221,228,223,201,100,118,105"
HUB_GROUP = "emon-hub-demo"
ROUTER_GROUP = "emon-router-demo"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patients", type=int, default=60, help="simulated patients (default 60)")
    parser.add_argument("--units", type=int, default=20, help="simulated paramedic units (default 20)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many seconds after 'ready' (default 0: until Ctrl-C)")
    parser.add_argument("--port", type=int, default=None, help="map port (default EMON_MAP_PORT or 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="map bind address (default 127.0.0.1)")
    parser.add_argument("--scripted", type=int, default=None,
                        help="patients with scripted emergencies (default: a sixth of the patients, >= 2)")
    parser.add_argument("--records", default=DEFAULT_RECORDS, help="MIT-BIH records replayed")
    parser.add_argument("--data-dir", default=None,
                        help="MIT-BIH directory (default EMON_MITDB_DIR or ../shared/data/mitdb); "
                             "without it the replayed patients are synthetic")
    parser.add_argument("--history-rows", type=int, default=None,
                        help="history rows for the population (default 100 per patient)")
    parser.add_argument("--time-scale", type=float, default=2.0,
                        help="units drive this many times faster than real time (default 2)")
    parser.add_argument("--skip-services", action="store_true",
                        help="do not run `emon services up` / `emon init` (services already prepared)")
    parser.add_argument("--keep-services", action="store_true",
                        help="leave the services running at the end even if the demo started them")


# ---------------------------------------------------------------------------- helpers
def _emon(*args: str) -> list[str]:
    return [sys.executable, "-m", "emon_core.cli", *args]


def _say(msg: str) -> None:
    print(f"demo: {msg}", flush=True)


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _pick_port(preferred: int) -> int:
    """``preferred`` when free, else 0 (the component picks any free port)."""
    return preferred if _port_free(preferred) else 0


def _run_step(title: str, argv: list[str], timeout_s: float | None = None) -> float:
    """Run a setup command in the foreground (its output on the terminal); raise on failure."""
    shown = ["emon", *argv[3:]] if argv[:3] == [sys.executable, "-m", "emon_core.cli"] else argv
    _say(f"{title}: {' '.join(shown)}")
    t0 = time.monotonic()
    rc = subprocess.call(argv, timeout=timeout_s)
    if rc != 0:
        raise SystemExit(f"demo: {title} failed (exit {rc})")
    return time.monotonic() - t0


def _services_status() -> dict[str, bool]:
    out = subprocess.run(_emon("services", "status", "--json"), capture_output=True, text=True)
    try:
        return {s["name"]: bool(s["up"]) for s in json.loads(out.stdout)}
    except (ValueError, KeyError, TypeError):
        return {}


def _http_get(url: str, timeout_s: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - localhost only
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, ""
    except OSError:
        return 0, ""


def _metric_sum(text: str, name: str) -> float:
    """Sum of the Prometheus series ``name`` (all labels), or one series when ``name`` has labels."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            series = line.rsplit(" ", 1)[0]
            if series == name or ("{" not in name and series.split("{", 1)[0] == name):
                try:
                    total += float(line.rsplit(" ", 1)[1])
                except ValueError:
                    pass
    return total


def _mitdb(data_dir: str | None, records: str) -> tuple[Path, list[str]]:
    """The MIT-BIH directory and the requested records found there (header + data file)."""
    base = Path(data_dir or os.environ.get("EMON_MITDB_DIR")
                or Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mitdb")
    found = [r for r in (x.strip() for x in records.split(",")) if r
             and (base / f"{r}.hea").exists() and (base / f"{r}.dat").exists()]
    return base, found


def _pipeline_counts(hub_port: int, router_port: int) -> tuple[float, float, float, float]:
    """(alert versions published, units assigned, units busy, units available); -1 = unknown."""
    alerts = assigned = busy = available = -1.0
    if hub_port:
        code, text = _http_get(f"http://127.0.0.1:{hub_port}/metrics")
        if code == 200:
            alerts = _metric_sum(text, "hub_alerts_published_total")
    if router_port:
        code, text = _http_get(f"http://127.0.0.1:{router_port}/metrics")
        if code == 200:
            busy = _metric_sum(text, "emon_router_active_assignments")
            available = _metric_sum(text, "emon_router_units_available")
            assigned = _metric_sum(text, 'emon_router_events_total{event="assigned"}')
    return alerts, assigned, busy, available


def _groups_to_end(groups: dict[str, list[str]]) -> None:
    """Commit the current end offsets of ``topics`` for each consumer group (start "now")."""
    from confluent_kafka import Consumer, TopicPartition

    from emon_core.settings import KafkaSettings

    servers = KafkaSettings().bootstrap_servers
    for group, topic_names in groups.items():
        c = Consumer({"bootstrap.servers": servers, "group.id": group, "enable.auto.commit": False})
        try:
            md = c.list_topics(timeout=15)
            tps = []
            for t in topic_names:
                if t not in md.topics:
                    continue
                for p in md.topics[t].partitions:
                    _lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=15)
                    tps.append(TopicPartition(t, p, hi))
            if tps:
                c.commit(offsets=tps, asynchronous=False)
        finally:
            c.close()


def _scenario(kind: str, first_s: float, period_s: float, horizon_s: float, params: str) -> str:
    """``kind@t:params`` at ``first_s`` then every ``period_s`` up to ``horizon_s``."""
    times, t = [], first_s
    while t <= horizon_s:
        times.append(t)
        t += period_s
    return ",".join(f"{kind}@{t:g}:{params}" for t in times)


def _shield_signals() -> None:
    """While stopping, a second Ctrl-C / SIGTERM only says that we are stopping."""
    def _note(signum: int, frame: object) -> None:
        print("demo: still stopping, please wait", flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _note)


# ---------------------------------------------------------------------------- the demo
def run(args: argparse.Namespace) -> int:
    from emon_core.settings import dev_login, state_dir
    from emon_core.supervisor import Supervisor, install_signal_handlers

    t_start = time.monotonic()
    install_signal_handlers()
    patients = max(1, args.patients)
    scripted = args.scripted if args.scripted is not None else max(2, round(patients / 6))
    scripted = min(scripted, patients)
    replayed = patients - scripted
    map_port = args.port or int(os.environ.get("EMON_MAP_PORT", "8000"))
    if not _port_free(map_port, args.host):
        _say(f"port {map_port} is already in use (another map?); choose one with --port")
        return 1

    mitdb_dir, records = _mitdb(args.data_dir, args.records)
    if replayed and not records:
        _say(f"no MIT-BIH records in {mitdb_dir} (set EMON_MITDB_DIR or --data-dir): "
             f"the {replayed} replayed patients will be synthetic sinus rhythm")
    started_services: list[str] = []
    sup: Supervisor | None = None
    try:
        # ---- services, schema, population -------------------------------------------
        if not args.skip_services:
            before = _services_status()
            _run_step("services", _emon("services", "up"))
            started_services = [n for n, up in _services_status().items() if up and not before.get(n, False)]
            _run_step("schema", _emon("init"))
        rows = args.history_rows if args.history_rows is not None else 100 * patients
        t_ing = _run_step("patients + history",
                          _emon("ingest", "history", "--patients", str(patients), "--rows", str(rows),
                                "--no-progress"))
        _say(f"population of {patients} patients and {rows} history rows loaded in {t_ing:.0f} s")
        from emon_core import topics

        _groups_to_end({
            HUB_GROUP: [topics.KAFKA_FLAGGED, topics.KAFKA_SUMMARIES, topics.KAFKA_GATEWAY_STATUS],
            ROUTER_GROUP: [topics.KAFKA_ALERTS],
        })

        # ---- components ----------------------------------------------------------------
        log_dir = state_dir() / "logs" / "demo"
        sup = Supervisor(log_dir, stop_timeout_s=30)
        _say(f"starting components (logs in {log_dir})")
        sup.start("map", _emon("map", "--host", args.host, "--port", str(map_port)))
        router_port = _pick_port(9403)
        sup.start("router", _emon("router", "--group", ROUTER_GROUP, "--apply-schema",
                                  "--http-port", str(router_port)))
        hub_port = _pick_port(9402)
        sup.start("hub", _emon("hub", "--group", HUB_GROUP, "--http-port", str(hub_port) if hub_port else "0"))
        sup.start("bridge", _emon("bridge", "--bridge-id", "bridge-demo", "--http-port", str(_pick_port(9401))))
        site_size = 1000
        n_sites = math.ceil(patients / site_size)
        for s in range(n_sites):
            site = f"site-{s:02d}"
            count = min(patients, (s + 1) * site_size)
            sup.start(f"gateway-{site}", _emon("gateway", "--site", site, "--gateway-id", f"gw-{site}-demo",
                                                "--simulated", str(count),
                                                "--state-dir", str(state_dir() / "demo" / f"gw-{site}"),
                                                "--http-port", str(_pick_port(9400 + 10 * s) if s else
                                                                   _pick_port(9400))))
        sup.start("units", _emon("sim", "units", "--count", str(args.units),
                                 "--time-scale", str(args.time_scale), "--scene-s", "90"))
        # patients: MIT-BIH replays, then scripted emergencies in two groups offset in time
        horizon = args.duration + 120 if args.duration > 0 else 4 * 3600
        if replayed and records:
            sup.start("patients-mitdb", _emon("sim", "devices", "--patients", str(replayed),
                                              "--data-dir", str(mitdb_dir), "--records", ",".join(records),
                                              "--status-every", "30", "--drain-s", "3"))
        elif replayed:
            sup.start("patients-sinus", _emon("sim", "devices", "--source", "synthetic", "--patients",
                                              str(replayed), "--status-every", "30", "--drain-s", "3"))
        vt_n = (scripted + 1) // 2
        pause_n = scripted - vt_n
        if vt_n:
            sup.start("patients-vt", _emon(
                "sim", "devices", "--source", "synthetic", "--start-index", str(replayed),
                "--patients", str(vt_n), "--seed", "7", "--status-every", "30", "--drain-s", "3",
                "--scenario", _scenario("vt", 20, 240, horizon, "k=12,rate=185")))
        if pause_n:
            sup.start("patients-pause", _emon(
                "sim", "devices", "--source", "synthetic", "--start-index", str(replayed + vt_n),
                "--patients", str(pause_n), "--seed", "11", "--status-every", "30", "--drain-s", "3",
                "--scenario", _scenario("pause", 35, 240, horizon, "s=5")))

        # ---- wait for the map ----------------------------------------------------------
        url = f"http://{args.host}:{map_port}"
        deadline = time.monotonic() + 180
        while True:
            code, _ = _http_get(f"{url}/healthz")
            if code == 200:
                break
            dead = {n: rc for n, rc in sup.exited().items()}
            if "map" in dead or time.monotonic() > deadline:
                _say("the map did not come up; its log ends with:\n" + sup.tail("map", 30))
                return 1
            time.sleep(1.0)
        t_ready = time.monotonic() - t_start
        disp = dev_login("dispatcher") or ("dispatcher", "(see emon map --add-user)")
        admin = dev_login("admin")
        bar = "=" * 72
        lines = [
            bar,
            f"  E-Monitor demo ready after {t_ready:.0f} s",
            f"  Map:      {url}/",
            f"  Login:    {disp[0]} / {disp[1]}   (dispatcher)",
        ]
        if admin:
            lines.append(f"            {admin[0]} / {admin[1]}   (admin)")
        lines += [
            f"  Patients: {patients} ({replayed} {'MIT-BIH replays' if records else 'synthetic sinus'}, "
            f"{scripted} with scripted VT runs/pauses"
            f" from 20-35 s, every 4 min)",
            f"  Units:    {args.units}; gateways: {n_sites}; bridge, hub, router",
            f"  Logs:     {log_dir}/<component>.log",
            "  Alerts appear within a minute. Ctrl-C stops everything.",
            bar,
        ]
        print("\n".join(lines), flush=True)
        print("ready", flush=True)

        # ---- watch ---------------------------------------------------------------------
        t_ready_mono = time.monotonic()
        reported: set[str] = set()
        first_alert = first_unit = False
        next_status = time.monotonic() + 5
        while args.duration <= 0 or time.monotonic() - t_ready_mono < args.duration:
            time.sleep(1.0)
            for name, rc in sup.exited().items():
                if name not in reported:
                    reported.add(name)
                    _say(f"{name} exited with code {rc}; last lines of {sup.log_path(name)}:\n"
                         + sup.tail(name, 15))
            if time.monotonic() < next_status:
                continue
            # every 5 s until alerts and units are seen, then every 60 s
            alerts, assigned, busy, available = _pipeline_counts(hub_port, router_port)
            now = time.monotonic()
            if alerts > 0 and not first_alert:
                first_alert = True
                _say(f"first alert after {now - t_start:.0f} s ({now - t_ready_mono:.0f} s after ready)")
            if assigned > 0 and not first_unit:
                first_unit = True
                _say(f"first unit dispatched after {now - t_start:.0f} s ({now - t_ready_mono:.0f} s after ready)")
            if first_alert and first_unit:
                up = sum(1 for n in sup.names() if sup.alive(n))
                _say(f"{up}/{len(sup.names())} components up; alerts published {alerts:.0f}; "
                     f"units busy {busy:.0f}, available {available:.0f}")
                next_status = now + 60
            else:
                next_status = now + 5
        _say(f"duration of {args.duration:.0f} s reached")
    except KeyboardInterrupt:
        print("", flush=True)
        _say("stopping")
    finally:
        _shield_signals()
        if sup is not None:
            _say("stopping components: " + ", ".join(reversed(sup.names())))
            results = sup.stop_all()
            _say("stopped: " + ", ".join(
                f"{n} ({'ok' if rc in (0, -signal.SIGTERM, -signal.SIGINT) else f'exit {rc}'})"
                for n, rc in results.items()))
        if started_services and not args.keep_services:
            _say(f"stopping the services this demo started: {', '.join(started_services)}")
            subprocess.call(_emon("services", "down", *started_services))
        elif not args.skip_services:
            _say("services left running (they were running before the demo, or --keep-services)")
    return 0
