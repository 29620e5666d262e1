"""``emon bench soak``: one gateway under N real-time patients for a long run; is its memory flat?

Figures only, never assertions. A gateway (subprocess, upstream to the local Mosquitto) serves
``--patients`` real-time 360 Hz devices from ``emon sim devices`` for ``--minutes``. Every
``--sample-s`` the gateway's RSS, CPU and metrics (devices connected, frames, outbox depth,
processing lag) are sampled. After a warm-up (``--warmup-min``: sessions, templates and the
model arena fill up) the RSS trend is a least-squares slope in MiB per hour and the growth
between the first and last tenth of the run; "flat" means that growth is below 2 % of the RSS.

Options after ``emon bench soak`` (``rest``): ``--patients 300``, ``--minutes 30``,
``--sample-s 10``, ``--warmup-min 5``, ``--source mitdb|synthetic``, ``--start-index 2100``.
With ``--quick``: 2 minutes, 30 s warm-up. ``--plot FILE`` draws RSS, frames/s and outbox depth.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from simulators.bench_edge import EMON, _clear_sessions, _find, _free_port, _get, _metric, _stop, _wait_healthy


def _options(rest: list[str], quick: bool) -> argparse.Namespace:
    rest = [r for r in rest if r != "--"]
    quick = quick or "--quick" in rest
    p = argparse.ArgumentParser(prog="emon bench soak")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", dest="json_path", default=None)
    p.add_argument("--plot", default=None)
    p.add_argument("--patients", type=int, default=300)
    p.add_argument("--minutes", type=float, default=2.0 if quick else 30.0)
    p.add_argument("--warmup-min", type=float, default=0.5 if quick else 5.0)
    p.add_argument("--sample-s", type=float, default=5.0 if quick else 10.0)
    p.add_argument("--source", choices=("mitdb", "synthetic"), default="mitdb")
    p.add_argument("--start-index", type=int, default=2100)
    return p.parse_args(rest)


def rss_trend(t_s: np.ndarray, rss_mib: np.ndarray) -> dict[str, float]:
    """Least-squares slope (MiB/h) and growth between the first and last tenth of ``rss_mib``.

    >>> rss_trend(np.arange(100.0) * 60, np.full(100, 120.0))["slope_mib_per_h"]
    0.0
    """
    if t_s.size < 4:
        raise ValueError("need at least 4 samples for a trend")
    slope_per_s = float(np.polyfit(t_s, rss_mib, 1)[0])
    tenth = max(1, t_s.size // 10)
    first, last = float(np.mean(rss_mib[:tenth])), float(np.mean(rss_mib[-tenth:]))
    return {
        "slope_mib_per_h": round(slope_per_s * 3600.0, 2),
        "first_tenth_mib": round(first, 1), "last_tenth_mib": round(last, 1),
        "growth_mib": round(last - first, 1), "growth_pct": round(100.0 * (last - first) / first, 2),
        "flat": abs(last - first) < 0.02 * first,
    }


def _sample(gw: Any, port: int) -> dict[str, float]:
    m = _get(port, "/metrics")
    return {
        "rss_mib": gw.memory_info().rss / 2**20, "cpu_pct": gw.cpu_percent(None),
        "devices": _metric(m, "emon_gateway_devices_connected"), "frames": _metric(m, "emon_gateway_frames_total"),
        "outbox": _metric(m, "emon_gateway_outbox_depth"), "lag_s": _metric(m, "emon_gateway_processing_lag_seconds"),
    }


def _plot(samples: list[dict[str, float]], warmup_s: float, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([s["t_s"] for s in samples]) / 60.0
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    axes[0].plot(t, [s["rss_mib"] for s in samples], color="tab:red")
    axes[0].set_ylabel("gateway RSS (MiB)")
    axes[0].set_ylim(bottom=0)
    fps = np.diff([s["frames"] for s in samples]) / np.maximum(np.diff([s["t_s"] for s in samples]), 1e-9)
    axes[1].plot(t[1:], fps, color="tab:blue")
    axes[1].set_ylabel("frames/s")
    axes[2].plot(t, [s["outbox"] for s in samples], color="tab:green")
    axes[2].set_ylabel("outbox depth")
    axes[2].set_xlabel("minutes")
    for ax in axes:
        ax.axvline(warmup_s / 60.0, color="grey", ls="--", lw=0.8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_soak(args: argparse.Namespace) -> int:
    import psutil

    o = _options(list(getattr(args, "rest", []) or []), bool(getattr(args, "quick", False)))
    tmp = Path(tempfile.mkdtemp(prefix="emon-bench-soak-"))
    tag = f"soak{int(time.time())}"
    port = _free_port()
    site = f"site-{o.start_index // 1000:02d}"
    duration_s = o.minutes * 60.0
    print(f"emon bench soak: {o.patients} patients ({o.source}, 360 Hz) for {o.minutes:g} min, logs in {tmp}")

    def spawn(name: str, argv: list[str]) -> Any:
        import subprocess

        return subprocess.Popen([EMON, *argv], stdout=open(tmp / f"{name}.log", "wb"), stderr=subprocess.STDOUT)

    gateway = spawn("gateway", ["gateway", "--site", site, "--simulated", str(o.start_index + o.patients),
                                "--gateway-id", f"gw-{tag}", "--http-port", str(port), "--state-dir", str(tmp / "gw")])
    procs = [gateway]
    samples: list[dict[str, float]] = []
    try:
        _wait_healthy(port, gateway)
        sim = spawn("sim", ["sim", "devices", "--patients", str(o.patients), "--start-index", str(o.start_index),
                            "--source", o.source, "--duration", str(duration_s), "--status-every", "0",
                            "--json", str(tmp / "sim.json"), "--drain-s", "10"])
        procs.insert(0, sim)
        gw = psutil.Process(gateway.pid)
        gw.cpu_percent(None)
        t0 = time.monotonic()
        next_print = 60.0
        while sim.poll() is None and time.monotonic() - t0 < duration_s + 120:
            time.sleep(o.sample_s)
            s = {"t_s": time.monotonic() - t0, **_sample(gw, port)}
            samples.append(s)
            if s["t_s"] >= next_print:
                next_print += 60.0
                print(f"  {s['t_s'] / 60:5.1f} min  RSS {s['rss_mib']:7.1f} MiB  CPU {s['cpu_pct']:5.1f} %  "
                      f"devices {s['devices']:.0f}  frames {s['frames']:.0f}  outbox {s['outbox']:.0f}  lag {s['lag_s']:.2f} s",
                      flush=True)
        sim_summary = json.loads((tmp / "sim.json").read_text()) if (tmp / "sim.json").exists() else {}
    finally:
        _stop(procs)
        from emon_core.settings import MqttSettings

        _clear_sessions(MqttSettings(), [("gateway", f"gw-{tag}-in"), ("gateway", f"gw-{tag}-up")])
    after = [s for s in samples if s["t_s"] >= o.warmup_min * 60.0]
    if len(after) < 4:
        print("emon bench soak: too few samples after the warm-up for a trend")
        return 1
    trend = rss_trend(np.array([s["t_s"] for s in after]), np.array([s["rss_mib"] for s in after]))
    sent = _find(sim_summary, "frames_sent")
    result: dict[str, Any] = {
        "patients": o.patients, "minutes": o.minutes, "warmup_min": o.warmup_min, "source": o.source,
        "rss_mib_max": round(max(s["rss_mib"] for s in samples), 1), "rss_trend_after_warmup": trend,
        "cpu_pct_mean": round(float(np.mean([s["cpu_pct"] for s in after])), 1),
        "lag_s_max": round(max(s["lag_s"] for s in after), 3), "outbox_max": max(s["outbox"] for s in samples),
        "frames_processed": samples[-1]["frames"], "frames_sent": sent, "samples": samples,
    }
    print(f"RSS after warm-up: {trend['first_tenth_mib']} -> {trend['last_tenth_mib']} MiB "
          f"({trend['growth_mib']:+} MiB, {trend['growth_pct']:+} %), slope {trend['slope_mib_per_h']:+} MiB/h, "
          f"max {result['rss_mib_max']} MiB: {'flat' if trend['flat'] else 'NOT flat'}")
    print(f"CPU mean {result['cpu_pct_mean']} % of a core, processing lag max {result['lag_s_max']} s, "
          f"outbox max {result['outbox_max']:.0f}, frames processed {result['frames_processed']:.0f} of {sent} sent")
    json_path = getattr(args, "json_path", None) or o.json_path
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    plot = getattr(args, "plot", None) or o.plot
    if plot:
        _plot(samples, o.warmup_min * 60.0, plot, f"gateway soak: {o.patients} patients, {o.minutes:g} min")
        print(f"plot: {plot}")
    return 0
