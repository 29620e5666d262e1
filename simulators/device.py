"""One virtual patient device: its MQTT identity, frame clock, backlog and counters.

A device is driven by exactly one fleet worker thread (see :mod:`simulators.fleet`),
which calls every method here and every paho method on its client; paho's own
network thread is never started. Frames are QoS 1 on a persistent session: paho keeps
every frame it was handed until PUBACK and resends it after a reconnect; frames that
fall due while the device is disconnected wait in the device's own bounded backlog and
are handed to paho, in order, once paho has resent its in-flight frames.
"""

from __future__ import annotations

import collections
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from emon_core.contracts import EcgFrame
from emon_core.topics import frames_topic
from simulators.ground_truth import TruthRecorder
from simulators.source import EcgSource

log = logging.getLogger(__name__)


@dataclass
class DeviceStats:
    """Counters of one worker's devices (plain ints: each worker owns its own object)."""

    frames_sent: int = 0  # handed to paho for the first time
    frames_acked: int = 0
    frames_refused: int = 0  # PUBACK with a failure reason (e.g. not authorised)
    frames_resent: int = 0  # in flight at a reconnect, so sent again by paho
    frames_dropped: int = 0  # --dropout
    frames_silent: int = 0  # scripted silence
    frames_backlog_lost: int = 0  # evicted from a full backlog
    bytes_sent: int = 0
    beats_sent: int = 0
    connects: int = 0
    reconnects: int = 0
    disconnects: int = 0
    connect_failures: int = 0

    def add(self, other: "DeviceStats") -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)


@dataclass(frozen=True)
class DeviceOptions:
    frame_ms: int = 1000
    qos: int = 1
    jitter_ms: float = 0.0
    dropout: float = 0.0
    backlog_frames: int = 600
    session_expiry_s: int = 3600
    encoding: str = "i16"  # "i16": samples as base64 int16 (json numbers when they do not fit); "json": numbers


class VirtualDevice:
    """A simulated home ECG device of patient ``n``.

    ``epoch_ms`` is the UTC wall-clock time of device sample 0 and ``start_mono`` the
    matching ``time.monotonic()``: frame ``k`` is acquired (and due) when its last sample
    is, at ``start_mono + (k + 1) * frame_s``.
    """

    def __init__(
        self,
        *,
        device_id: str,
        patient_id: str,
        site_id: str,
        source: EcgSource,
        options: DeviceOptions,
        stats: DeviceStats,
        recorder: TruthRecorder,
        seed: int = 0,
    ) -> None:
        self.device_id, self.patient_id, self.site_id = device_id, patient_id, site_id
        self.topic = frames_topic(site_id, device_id)
        self.source = source
        self.options = options
        self.stats = stats
        self.recorder = recorder
        self.frame_n = max(1, int(round(source.fs_hz * options.frame_ms / 1000.0)))
        self.frame_s = self.frame_n / source.fs_hz
        self.next_frame = 0  # frame counter k; seq == k, first sample == k * frame_n
        self.epoch_ms = 0
        self.start_mono = 0.0
        self.client: Any = None
        self.connected = False
        self.connect_called = False
        self.ever_connected = False
        self.failed: str | None = None  # a refusal that retrying will not fix
        self.retry_at = 0.0
        self.backoff_s = 0.5
        self.flush_pending = False
        self.backlog: collections.deque[tuple[int, bytes, dict[str, Any]]] = collections.deque()
        self.unacked: dict[int, int] = {}  # paho mid -> seq
        self._rng = random.Random(seed)

    # --- clock ---------------------------------------------------------------
    def start(self, epoch_ms: int, start_mono: float) -> None:
        self.epoch_ms, self.start_mono = epoch_ms, start_mono

    def due(self, k: int | None = None) -> float:
        """Monotonic time at which frame ``k`` (default: the next) is acquired, plus jitter."""
        k = self.next_frame if k is None else k
        t = self.start_mono + (k + 1) * self.frame_s
        if self.options.jitter_ms > 0:
            t += self._rng.uniform(0.0, self.options.jitter_ms / 1000.0)
        return t

    @property
    def outstanding(self) -> int:
        return len(self.unacked) + len(self.backlog)

    # --- frames --------------------------------------------------------------
    def produce(self, now_ms: int) -> None:
        """Acquire the next frame and publish it (or back it up, or drop it)."""
        k = self.next_frame
        self.next_frame += 1
        first = k * self.frame_n
        src = self.source
        fs = src.fs_hz
        device_time_ms = self.epoch_ms + int(round(first * 1000.0 / fs))
        idx, cls = src.beats(first, first + self.frame_n)
        truth = {
            "device": self.device_id, "site": self.site_id, "patient": self.patient_id, "seq": k,
            "first": first, "n": self.frame_n, "fs_hz": fs, "device_time_ms": device_time_ms,
            "beats": [[int(i), c] for i, c in zip(idx, cls)],
        }
        for e in src.events(first, first + self.frame_n):
            self.recorder.write(
                {
                    "t": "event", "device": self.device_id, "site": self.site_id, "patient": self.patient_id,
                    "kind": e.kind.value, "onset": e.onset_index, "end": e.end_index,
                    "onset_ms": self.epoch_ms + int(round(e.onset_index * 1000.0 / fs)),
                    "end_ms": self.epoch_ms + int(round(e.end_index * 1000.0 / fs)),
                    "beat_count": e.beat_count, "rate_bpm": e.rate_bpm, "detail": e.detail, "due_ms": now_ms,
                }
            )
        if src.silent(first, self.frame_n):
            self._drop(truth, "silent", now_ms)
            self.stats.frames_silent += 1
            return
        if self.options.dropout > 0 and self._rng.random() < self.options.dropout:
            self._drop(truth, "dropout", now_ms)
            self.stats.frames_dropped += 1
            return
        chunk = src.read(first, self.frame_n)
        truth["lead_off"] = chunk.lead_off
        payload = EcgFrame.from_adu(
            chunk.samples,
            compact=self.options.encoding == "i16",
            device_id=self.device_id,
            seq=k,
            device_time_ms=device_time_ms,
            fs_hz=fs,
            gain_adu_per_mv=src.gain_adu_per_mv,
            baseline_adu=src.baseline_adu,
            first_sample_index=first,
            lead_off=chunk.lead_off,
        ).encode()
        if self.connected and not self.backlog:
            self._hand_to_paho(k, payload, truth, now_ms)
        else:
            self.backlog.append((k, payload, truth))
            while len(self.backlog) > self.options.backlog_frames:
                _, _, old = self.backlog.popleft()
                self._drop(old, "backlog_full", now_ms)
                self.stats.frames_backlog_lost += 1

    def _drop(self, truth: dict[str, Any], reason: str, now_ms: int) -> None:
        truth.update(t="drop", reason=reason, due_ms=now_ms)
        truth.setdefault("lead_off", False)
        self.recorder.write(truth)

    def _hand_to_paho(self, seq: int, payload: bytes, truth: dict[str, Any], now_ms: int) -> None:
        info = self.client.publish(self.topic, payload, qos=self.options.qos)
        self.unacked[info.mid] = seq
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(payload)
        self.stats.beats_sent += len(truth["beats"])
        truth["t"] = "frame"
        truth["sent_ms"] = now_ms
        self.recorder.write(truth)

    def flush_backlog(self, now_ms: int) -> None:
        """Hand backed-up frames to paho, oldest first (after paho resent its in-flight ones)."""
        self.flush_pending = False
        while self.backlog and self.connected:
            seq, payload, truth = self.backlog.popleft()
            self._hand_to_paho(seq, payload, truth, now_ms)

    # --- paho callbacks (run on the worker thread inside loop_read/loop_write) -
    def on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.stats.connect_failures += 1
            if reason_code.value in (0x86, 0x87, 0x8C):  # bad user/password, not authorised, bad auth
                self.failed = str(reason_code)
                log.error("device %s: connection refused: %s", self.device_id, reason_code)
            return
        self.connected = True
        self.backoff_s = 0.5
        if self.ever_connected:
            self.stats.reconnects += 1
            self.stats.frames_resent += len(self.unacked)
        else:
            self.stats.connects += 1
        self.ever_connected = True
        self.flush_pending = bool(self.backlog)

    def on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if self.connected:
            self.stats.disconnects += 1
        self.connected = False
        self.retry_at = time.monotonic() + self.backoff_s * (0.5 + self._rng.random())
        self.backoff_s = min(self.backoff_s * 2.0, 10.0)

    def on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if self.unacked.pop(mid, None) is not None:
            if getattr(reason_code, "is_failure", False):
                self.stats.frames_refused += 1
            else:
                self.stats.frames_acked += 1


def now_epoch_ms() -> int:
    return int(time.time() * 1000)


