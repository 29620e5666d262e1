"""Progress line every few seconds and the end-of-run summary of a device fleet."""

from __future__ import annotations

import resource
import sys
import threading
import time
from typing import Any, TextIO

import numpy as np

from simulators.fleet import Fleet


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all threads."""
    t = resource.getrusage(resource.RUSAGE_SELF)
    return t.ru_utime + t.ru_stime


class Progress(threading.Thread):
    """Prints one status line every ``every_s`` seconds until stopped."""

    def __init__(self, fleet: Fleet, every_s: float = 5.0, out: TextIO = sys.stderr) -> None:
        super().__init__(name="sim-progress", daemon=True)
        self.fleet, self.every_s, self.out = fleet, every_s, out
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        last_t, last_cpu, last_sent = time.monotonic(), cpu_seconds(), 0
        while not self._stop.wait(self.every_s):
            now, cpu = time.monotonic(), cpu_seconds()
            s = self.fleet.total()
            dt = max(now - last_t, 1e-6)
            elapsed = now - self.fleet.started_mono if self.fleet.started_mono else 0.0
            print(
                f"[sim {elapsed:6.0f}s] {(s.frames_sent - last_sent) / dt:7.0f} frames/s"
                f"  sent {s.frames_sent}  acked {s.frames_acked}  in flight {self.fleet.in_flight()}"
                f"  backlog {self.fleet.backlog()}  connected {self.fleet.connected()}/{len(self.fleet.devices)}"
                f"  reconnects {s.reconnects}  cpu {100 * (cpu - last_cpu) / dt:3.0f}%",
                file=self.out,
                flush=True,
            )
            last_t, last_cpu, last_sent = now, cpu, s.frames_sent


def summarize(fleet: Fleet, wall_s: float, cpu_s: float, setup_s: float, meta: dict[str, Any]) -> dict[str, Any]:
    """Figures of a finished run (JSON-ready)."""
    s = fleet.total()
    late = np.asarray(fleet.lateness_ms()) if fleet.lateness_ms() else np.zeros(1)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    fs = {d.source.fs_hz for d in fleet.devices}
    out = dict(meta)
    out.update(
        patients=len(fleet.devices),
        fs_hz=sorted(fs),
        wall_s=round(wall_s, 2),
        setup_s=round(setup_s, 2),
        frames_sent=s.frames_sent,
        frames_acked=s.frames_acked,
        frames_refused=s.frames_refused,
        frames_resent=s.frames_resent,
        frames_unacked=fleet.in_flight(),
        frames_in_backlog=fleet.backlog(),
        frames_dropped_dropout=s.frames_dropped,
        frames_silent=s.frames_silent,
        frames_backlog_lost=s.frames_backlog_lost,
        beats_sent=s.beats_sent,
        bytes_sent=s.bytes_sent,
        frames_per_s=round(s.frames_sent / wall_s, 1) if wall_s > 0 else 0.0,
        samples_per_s=round(sum(d.frame_n for d in fleet.devices) / fleet.devices[0].frame_s, 0)
        if fleet.devices and not meta.get("fast")
        else None,
        mbit_per_s=round(8 * s.bytes_sent / wall_s / 1e6, 2) if wall_s > 0 else 0.0,
        connects=s.connects,
        reconnects=s.reconnects,
        disconnects=s.disconnects,
        connect_failures=s.connect_failures,
        cpu_percent=round(100.0 * cpu_s / wall_s, 1) if wall_s > 0 else 0.0,
        cpu_percent_of_machine=round(100.0 * cpu_s / wall_s / _cores(), 1) if wall_s > 0 else 0.0,
        rss_mb=round(rss_mb, 1),
        lateness_ms={
            "p50": round(float(np.percentile(late, 50)), 1),
            "p99": round(float(np.percentile(late, 99)), 1),
            "max": round(float(late.max()), 1),
        },
    )
    # contention-robust figures: CPU per frame, and how many patients one core could feed
    per_frame_ms = 1000.0 * cpu_s / s.frames_sent if s.frames_sent else 0.0
    out["cpu_ms_per_frame"] = round(per_frame_ms, 3)
    frame_s = fleet.devices[0].frame_s if fleet.devices else 1.0
    out["patients_per_core_estimate"] = int(1000.0 * frame_s / per_frame_ms) if per_frame_ms else None
    # "keeps up": no frame produced a whole frame period late, and everything acknowledged
    realtime_ok = out["lateness_ms"]["p99"] < 1000.0 * frame_s and s.frames_acked >= s.frames_sent - len(fleet.devices)
    out["realtime"] = bool(realtime_ok) if not meta.get("fast") else False
    return out


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def print_summary(summary: dict[str, Any], out: TextIO = sys.stdout) -> None:
    s = summary
    lines = [
        f"patients {s['patients']} ({s['source']}, fs {'/'.join(f'{f:g}' for f in s['fs_hz'])} Hz, "
        f"frame {s['frame_ms']} ms, {'fast' if s.get('fast') else 'real time'}) for {s['wall_s']} s "
        f"(+{s['setup_s']} s setup)",
        f"frames: sent {s['frames_sent']}  acked {s['frames_acked']}  resent {s['frames_resent']}  "
        f"unacked {s['frames_unacked']}  refused {s['frames_refused']}  "
        f"dropped (dropout) {s['frames_dropped_dropout']}  silent {s['frames_silent']}  "
        f"backlog lost {s['frames_backlog_lost']}",
        f"throughput: {s['frames_per_s']} frames/s, {s['mbit_per_s']} Mbit/s, {s['bytes_sent']} bytes, "
        f"{s['beats_sent']} beats",
        f"connections: {s['connects']} connects, {s['reconnects']} reconnects, "
        f"{s['connect_failures']} failed attempts",
        f"load: CPU {s['cpu_percent']}% of one core ({s['cpu_percent_of_machine']}% of the machine), "
        f"RSS {s['rss_mb']} MB; frame lateness p50 {s['lateness_ms']['p50']} ms, "
        f"p99 {s['lateness_ms']['p99']} ms, max {s['lateness_ms']['max']} ms",
        f"cost: {s['cpu_ms_per_frame']} ms CPU per frame -> one core feeds about "
        f"{s['patients_per_core_estimate']} such patients",
    ]
    if not s.get("fast"):
        lines.append(
            f"real time: {'sustained' if s['realtime'] else 'NOT sustained'} "
            f"({s['patients']} patients at {'/'.join(f'{f:g}' for f in s['fs_hz'])} Hz; "
            f"criterion: p99 lateness < one frame, all frames acknowledged)"
        )
    print("\n".join(lines), file=out, flush=True)
