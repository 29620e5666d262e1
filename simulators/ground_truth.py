"""Ground-truth recorder: what each simulated patient emitted and when, as JSONL.

One JSON object per line, ``"t"`` tells the record type (all times are UTC epoch ms,
sample indices are the device's running sample counter):

- ``run``:   ``{"t":"run","schema":1,"started_ms","source","fs_hz","frame_ms","patients",
  "start_index","scenario"}`` (first line)
- ``frame``: a frame handed to MQTT for the first time: ``{"t":"frame","device","site",
  "patient","seq","first","n","fs_hz","device_time_ms","sent_ms","lead_off","beats":[[index,
  "V"],...]}`` (``beats`` lists the truth beats whose R peak lies in the frame)
- ``drop``:  a frame the device never sent: same fields plus ``"reason"`` (``dropout``,
  ``silent``, ``backlog_full``) instead of ``sent_ms`` (``due_ms`` = when it was due)
- ``event``: a rhythm/technical event whose onset lies in a frame that was due:
  ``{"t":"event","device","site","patient","kind","onset","end","onset_ms","end_ms",
  "beat_count","rate_bpm","detail","due_ms"}``
- ``summary``: the fleet's counters at the end of the run (last line)

:func:`load_truth` reads it back for :mod:`simulators.accounting`.
"""

from __future__ import annotations

import bisect
import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRUTH_SCHEMA = 1


class TruthRecorder:
    """Thread-safe JSONL writer of ground truth; a no-op when ``path`` is None."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._fh: io.TextIOBase | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", buffering=1 << 16)  # noqa: SIM115 - closed in close()

    @property
    def enabled(self) -> bool:
        return self._fh is not None

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")

    def flush(self) -> None:
        if self._fh is not None:
            with self._lock:
                self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            with self._lock:
                self._fh.close()
                self._fh = None


@dataclass
class DeviceTruth:
    """Everything one device emitted: beats it sent and never sent, its events."""

    device_id: str
    site_id: str = ""
    patient_id: str = ""
    fs_hz: float = 0.0
    frames_sent: int = 0
    frames_dropped: int = 0
    beats: list[tuple[int, str, int]] = field(default_factory=list)  # (index, class, sent_ms)
    unsent_beats: list[tuple[int, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    sent_ranges: list[tuple[int, int]] = field(default_factory=list)  # [first, first+n)
    sent_seqs: list[int] = field(default_factory=list)
    # scheduled end of a sent frame (device clock, as the gateway computes it) -> how late it was published
    publish_late_ms: dict[int, int] = field(default_factory=dict)

    def was_sent(self, index: int) -> bool:
        """True when sample ``index`` lies in a frame the device sent."""
        k = bisect.bisect_right(self.sent_ranges, (index, float("inf"))) - 1
        return k >= 0 and self.sent_ranges[k][0] <= index < self.sent_ranges[k][1]


@dataclass
class Truth:
    run: dict[str, Any]
    devices: dict[str, DeviceTruth]
    summary: dict[str, Any] | None = None


def load_truth(path: Path | str) -> Truth:
    """Read a truth JSONL file written by :class:`TruthRecorder`."""
    run: dict[str, Any] = {}
    summary: dict[str, Any] | None = None
    devices: dict[str, DeviceTruth] = {}
    with open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            kind = rec.get("t")
            if kind == "run":
                run = rec
                continue
            if kind == "summary":
                summary = rec
                continue
            dev = devices.get(rec["device"])
            if dev is None:
                dev = devices[rec["device"]] = DeviceTruth(rec["device"], rec.get("site", ""), rec.get("patient", ""))
            if kind == "frame":
                dev.frames_sent += 1
                dev.fs_hz = float(rec["fs_hz"])
                dev.sent_ranges.append((rec["first"], rec["first"] + rec["n"]))
                dev.sent_seqs.append(int(rec["seq"]))
                dev.beats.extend((int(i), str(c), int(rec["sent_ms"])) for i, c in rec["beats"])
                end_ms = int(rec["device_time_ms"]) + int(round(rec["n"] * 1000.0 / dev.fs_hz))
                dev.publish_late_ms[end_ms] = max(0, int(rec["sent_ms"]) - end_ms)
            elif kind == "drop":
                dev.frames_dropped += 1
                dev.fs_hz = float(rec["fs_hz"])
                dev.unsent_beats.extend((int(i), str(c)) for i, c in rec["beats"])
            elif kind == "event":
                dev.events.append(rec)
    for dev in devices.values():
        dev.sent_ranges.sort()
        dev.beats.sort()
    return Truth(run, devices, summary)


def device_clock_start_ms(path: Path | str) -> int | None:
    """Device time of the earliest device's first sample (its ``seq`` 0 frame), None before any.

    Safe on a file the simulator is still writing: only complete ``seq`` 0 frame lines are read.
    """
    starts: list[int] = []
    with open(path) as fh:
        for line in fh:
            if '"seq":0,' not in line or not line.endswith("\n"):  # the recorder writes compact JSON
                continue
            rec = json.loads(line)
            if rec.get("t") == "frame" and rec.get("seq") == 0:
                starts.append(int(rec["device_time_ms"]))
    return min(starts) if starts else None
