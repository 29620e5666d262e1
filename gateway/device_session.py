"""Per-device pipeline state: frame continuity, signal core, beats awaiting classification, rhythm.

One :class:`DeviceSession` per connected device, driven by the gateway's single
processing thread (so a device's frames are handled in order). Memory is bounded: the
signal-core objects keep a few seconds each, the strip buffer keeps
``strip_event_s + 6`` seconds of raw signal, pending beats are taken every tick.

Device sample indices are the device's own running counter (``first_sample_index``);
the signal core runs at :data:`MODEL_FS_HZ` from pipeline sample 0 = device sample
``base_index``. A small gap in the frames (<= ``max_gap_fill_s``) is filled with NaN
(the detector reports it as signal loss); a longer one restarts the pipeline.

Checkpoints (:mod:`gateway.checkpoint`): :meth:`DeviceSession.checkpoint` takes the slow
state and the last ``checkpoint_tail_s`` of raw signal; :meth:`DeviceSession.restore` builds a
session that continues it: fresh signal core primed with the tail (detections the old session
had handled and signal-state changes are not reported again), the beat extractor's template and
RR history and the rhythm tracker carried over. Frames lost between the checkpoint and the
first frame after the restart are signal nobody saw: NaN-filled for the signal core (whose
state changes there are not reported: it is not the patient's signal loss) and
:meth:`RhythmTracker.unobserved` for the rhythm: no pause or run is claimed across it.
"""

from __future__ import annotations

import copy
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from emon_core.contracts import BeatClass, EcgFrame, EcgStrip
from emon_core.registry import DeviceEntry
from gateway.rhythm import EventUpdate, RhythmTracker
from gateway.settings import GatewaySettings
from gateway.checkpoint import SessionCheckpoint
from gateway.signal.beats import BeatBatch, BeatFeatureExtractor, ExtractorState
from gateway.signal.constants import MODEL_FS_HZ
from gateway.signal.filters import EcgConditioner
from gateway.signal.qrs import SignalState, StreamingQrsDetector
from gateway.signal.resample import StreamingResampler, input_to_output_index
from gateway.signal.units import adu_to_mv

LOSS_STATES = {SignalState.FLAT, SignalState.SATURATED, SignalState.LOSS}


@dataclass
class PendingBeats:
    """Beats whose features are ready, awaiting the next batched classification."""

    batch: BeatBatch
    device_sent_ms: int  # device time of the end of the frame that completed them
    received_ms: int  # gateway wall clock when that frame arrived
    first_index: int = 0  # device sample index of the first beat (its strip must stay buffered)


@dataclass
class WindowStats:
    """Counters of the current summary window."""

    beats: Counter[BeatClass] = field(default_factory=Counter)
    frames: int = 0
    invalid: int = 0
    ok_samples: int = 0
    samples: int = 0
    start_index: int = 0


class FrameRejected(Exception):
    """A frame that does not continue the device's stream; ``reason`` is a counter label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeviceSession:
    """State of one device's stream (see the module docstring)."""

    def __init__(self, entry: DeviceEntry, frame: EcgFrame, settings: GatewaySettings, now_mono: float) -> None:
        self.entry = entry
        self.device_id = entry.device_id
        self.settings = settings
        self.fs = float(frame.fs_hz)
        self.rhythm = RhythmTracker(self.fs, settings.rhythm)
        self.last_seq = -1
        self.last_device_time_ms = -1
        self.expected_index = frame.first_sample_index
        self.anchor_index = frame.first_sample_index
        self.anchor_ms = frame.device_time_ms
        self.last_frame_mono = now_mono
        self.silent = False
        self.lead_off = False
        self.pending: list[PendingBeats] = []
        self.window = WindowStats(start_index=frame.first_sample_index)
        self.summary_period = max(1, int(round(settings.summary_period_s * self.fs)))
        # staggered across devices: devices switched on together must not all send in the same tick
        # (1,000 summaries at once queued the flagged beats behind them for up to ~1 s)
        self._summary_offset = zlib.crc32(b"summary:" + self.device_id.encode()) % self.summary_period
        self.next_summary_index = self.summary_boundary_after(frame.first_sample_index)
        keep_s = settings.strip_event_s + 6.0
        self._raw_keep = int(keep_s * self.fs)
        self._raw = np.empty(0, dtype=np.float32)
        self._raw_start = frame.first_sample_index
        self.frames_in = 0
        self.bytes_in = 0
        self.last_sent_ms = frame.device_time_ms  # device time of the end of the last frame
        self.last_received_ms = 0  # gateway wall clock when the last frame arrived
        self.beat_floor: int | None = None  # R peaks at/before this device index were handled before a restore
        self.restored_from: int | None = None  # checkpoint index this session resumed (None: a new session)
        self._resume_gap = False  # the next frame may follow a restart gap
        self._ckpt_period = max(1, int(round(settings.checkpoint_every_s * self.fs)))
        self._ckpt_offset = zlib.crc32(self.device_id.encode()) % self._ckpt_period  # staggered across devices
        self._hot_samples = int(round(settings.checkpoint_hot_after_s * self.fs))
        self._reset_pipeline(frame.first_sample_index)
        self.mark_checkpointed()

    def _reset_pipeline(self, base_index: int) -> None:
        self.base_index = base_index
        self.resampler = StreamingResampler(self.fs, MODEL_FS_HZ)
        self.conditioner = EcgConditioner(MODEL_FS_HZ)
        self.detector = StreamingQrsDetector(MODEL_FS_HZ)
        self.extractor = BeatFeatureExtractor(MODEL_FS_HZ, self.conditioner.delay_samples)
        self.det_state = SignalState.FLAT
        self.horizon_index = base_index  # the detector has seen every R peak before this device index
        self._raw = np.empty(0, dtype=np.float32)
        self._raw_start = base_index

    # -- index and time mapping ---------------------------------------------------------------

    def to_device_index(self, k: int | npt.NDArray[np.int64]) -> int | npt.NDArray[np.int64]:
        """Device sample index of pipeline sample(s) ``k`` (at MODEL_FS_HZ)."""
        return self.base_index + self.resampler.to_input_index(k)  # type: ignore[operator]

    def time_ms(self, device_index: int) -> int:
        """Device clock (epoch ms) of a device sample index."""
        return max(0, int(round(self.anchor_ms + (device_index - self.anchor_index) * 1000.0 / self.fs)))

    # -- frames -----------------------------------------------------------------------------

    def check(self, frame: EcgFrame) -> None:
        """Raise :class:`FrameRejected` unless the frame continues this stream."""
        if frame.fs_hz != self.fs:
            raise FrameRejected("wrong_rate")
        if frame.seq <= self.last_seq:
            if frame.device_time_ms > self.last_device_time_ms:
                raise FrameRejected("restart")  # a newer clock with an older counter: the device restarted
            raise FrameRejected("replay")
        if frame.first_sample_index < self.expected_index:
            raise FrameRejected("out_of_order")

    def ingest(self, frame: EcgFrame, received_ms: int, now_mono: float, payload_bytes: int) -> list[EventUpdate]:
        """Run one (checked) frame through the signal core; returns rhythm updates."""
        ups: list[EventUpdate] = []
        first = frame.first_sample_index
        self.last_seq = frame.seq
        self.last_device_time_ms = frame.device_time_ms
        self.last_frame_mono = now_mono
        self.frames_in += 1
        self.bytes_in += payload_bytes
        self.window.frames += 1
        if self.silent:
            self.silent = False
            ups += self.rhythm.signal("silent", first, False)
        gap = first - self.expected_index
        resume_gap, self._resume_gap = self._resume_gap and gap > 0, False
        if resume_gap:  # frames the old gateway took and lost: unobserved, neither a pause nor signal loss
            ups += self.rhythm.unobserved(self.expected_index, first)
        if gap > 0:
            if gap <= self.settings.max_gap_fill_s * self.fs:
                ups += self._feed(np.full(gap, np.nan, dtype=np.float32), self.expected_index, None, received_ms,
                                  prime=resume_gap)
            else:
                ups += self.rhythm.signal("gap", self.expected_index, True, "frames missing", immediate=True)
                ups += self.rhythm.signal("gap", first, False)
                self._reset_pipeline(first)
        self.anchor_index, self.anchor_ms = first, frame.device_time_ms
        if frame.lead_off != self.lead_off:
            self.lead_off = frame.lead_off
            ups += self.rhythm.signal("lead_off", first, frame.lead_off, "lead off")
        mv = adu_to_mv(frame.adu, frame.gain_adu_per_mv, frame.baseline_adu)
        end_ms = frame.device_time_ms + int(round(frame.n_samples * 1000.0 / self.fs))
        self.last_sent_ms, self.last_received_ms = end_ms, received_ms
        ups += self._feed(mv, first, end_ms, received_ms)
        return ups

    def _feed(self, mv: npt.NDArray[np.float32], first: int, end_ms: int | None, received_ms: int,
              prime: bool = False) -> list[EventUpdate]:
        ups: list[EventUpdate] = []
        self._append_raw(mv, first)
        self.expected_index = first + mv.size
        y = self.resampler.process(mv)
        cond = self.conditioner.process(y)
        dets = self.detector.process(y)
        for ev in self.detector.pop_state_events():
            if prime:  # the old session reported this stretch's signal state already
                self.det_state = ev.state
                continue
            lost_before = self.det_state in LOSS_STATES
            self.det_state = ev.state
            lost = ev.state in LOSS_STATES
            if lost != lost_before or lost:
                ups += self.rhythm.signal("detector", int(self.to_device_index(ev.sample_index)), lost, f"signal {ev.state.value}")
        r360 = [d.sample_index for d in dets]
        for r in r360:
            ups += self.rhythm.on_detection(int(self.to_device_index(r)))  # the tracker skips peaks it saw
        if self.beat_floor is not None:  # restored: the checkpoint's extractor state includes these
            r360 = [r for r in r360 if int(self.to_device_index(r)) > self.beat_floor]
        batch = self.extractor.process(cond, r360)
        if len(batch):
            sent = end_ms if end_ms is not None else self.time_ms(self.expected_index)
            first = int(self.to_device_index(int(batch.r_samples[0])))
            self.pending.append(PendingBeats(batch, sent, received_ms, first))
        horizon = self.detector.final_before
        if horizon > 0:
            self.horizon_index = int(self.to_device_index(horizon))
            ups += self.rhythm.advance(self.horizon_index)
        if prime:
            return ups
        self.window.samples += mv.size
        if self.det_state is SignalState.OK and not self.lead_off:
            self.window.ok_samples += mv.size
        return ups

    def _append_raw(self, mv: npt.NDArray[np.float32], first: int) -> None:
        if first != self._raw_start + self._raw.size:  # a restart: forget the old signal
            self._raw = np.empty(0, dtype=np.float32)
            self._raw_start = first
        self._raw = np.concatenate([self._raw, mv.astype(np.float32)])
        if self._raw.size > 2 * self._raw_keep:
            cut = self._raw.size - self._raw_keep
            if self.pending:  # beats awaiting classification (a burst of frames) keep their strips
                floor = self.pending[0].first_index - int(self._raw_keep // 2)
                cut = min(cut, max(0, floor - self._raw_start))
            self._raw = self._raw[cut:]
            self._raw_start += cut

    # -- silence and summaries ---------------------------------------------------------------

    def mark_silent(self) -> list[EventUpdate]:
        """No frame for ``silent_after_s``: a signal-loss source (raised at once)."""
        if self.silent:
            return []
        self.silent = True
        return self.rhythm.signal("silent", self.expected_index, True, "device silent", immediate=True)

    def summary_boundary_after(self, index: int) -> int:
        """The first summary window end after sample ``index`` (every period, at this device's phase)."""
        p, o = self.summary_period, self._summary_offset
        return ((index - o) // p + 1) * p + o

    def summary_due(self) -> bool:
        return self.expected_index >= self.next_summary_index

    def take_window(self) -> tuple[WindowStats, int]:
        """The finished summary window and its end index; starts the next one."""
        end = self.next_summary_index
        w = self.window
        self.window = WindowStats(start_index=end)
        self.next_summary_index = self.summary_boundary_after(self.expected_index)
        return w, end

    # -- beats --------------------------------------------------------------------------------

    def take_pending(self) -> list[PendingBeats]:
        out, self.pending = self.pending, []
        return out

    def provisional_beat(self) -> BeatBatch | None:
        """Features of the next beat to be classified, before the R peak after it is known.

        The extractor holds the last detected beat until the next R peak gives its next RR; its
        window is already complete. A copy of the extractor is flushed, which computes that beat
        exactly as the end of a stream does (next RR = previous RR; the exact next RR when the
        next R peak is already detected). The real extractor is untouched. None when there is
        no such beat (or its window is not complete).
        """
        b = copy.deepcopy(self.extractor).flush()
        if not len(b):
            return None
        r = int(b.r_samples[0])
        if r + self.extractor.delay_samples + self.extractor.config.post_samples > self.resampler.samples_out:
            return None  # a window padded by flush() is not what the model would see later
        return BeatBatch(b.r_samples[:1], b.windows[:1], b.rr[:1])

    def strip(self, start: int, stop: int, marks: list[int] | tuple[int, ...] = ()) -> EcgStrip | None:
        """Raw ECG in microvolts for device samples ``[start, stop)`` (clipped to what is kept)."""
        lo = max(start, self._raw_start)
        hi = min(stop, self._raw_start + self._raw.size)
        if hi <= lo:
            return None
        seg = self._raw[lo - self._raw_start : hi - self._raw_start]
        uv = np.nan_to_num(np.round(seg * 1000.0), nan=0.0).clip(-2**31, 2**31 - 1).astype(np.int64)
        return EcgStrip(
            fs_hz=self.fs, start_sample_index=lo, start_time_ms=self.time_ms(lo), samples_uv=uv.tolist(),
            marks=[int(m) for m in marks if lo <= m < hi][:2000],
        )

    @property
    def raw_end(self) -> int:
        return self._raw_start + self._raw.size

    # -- checkpoints --------------------------------------------------------------------------

    @property
    def hot(self) -> bool:
        """Losing the last seconds would lose an event: one is open, or the last beat is older than the
        mean RR interval plus ``checkpoint_hot_after_s`` (the detector's usual release delay): a pause may
        be starting. (The detector's horizon is no earlier sign: in a pause it lags by its full 1.7 s bound.)"""
        if self.rhythm.has_open_event:
            return True
        last = self.rhythm.last_detection
        if last is None:
            return False
        hr = self.rhythm.heart_rate_bpm
        rr = int(60.0 * self.fs / hr) if hr else int(self.fs)
        return self.expected_index - last >= rr + self._hot_samples

    def checkpoint_due(self) -> bool:
        """New signal since the last checkpoint, and its turn came (or it is :attr:`hot`)."""
        return self.expected_index > self._ckpt_index and (self.expected_index >= self._ckpt_next or self.hot)

    def mark_checkpointed(self) -> None:
        """A checkpoint valid at :attr:`expected_index` was stored; schedule the next one."""
        self._ckpt_index = self.expected_index
        p, off = self._ckpt_period, self._ckpt_offset
        self._ckpt_next = ((self.expected_index - off) // p + 1) * p + off

    def checkpoint(self, model_version: str, now_ms: int) -> SessionCheckpoint:
        """The session's slow state at :attr:`expected_index` (call with no beats pending classification)."""
        ex = self.extractor.export_state()
        pending = None
        if ex.pending is not None:
            pending = (int(self.to_device_index(ex.pending[0])), ex.pending[1])
        n_tail = min(int(round(self.settings.checkpoint_tail_s * self.fs)), self._raw.size)
        tail = self._raw[self._raw.size - n_tail :] if n_tail else np.empty(0, np.float32)
        return SessionCheckpoint(
            self.device_id, self.fs, self.expected_index, now_ms, model_version, self.last_seq,
            self.last_device_time_ms, self.anchor_index, self.anchor_ms, self.lead_off, self.silent,
            None if pending is None else pending[0], ExtractorState(ex.count, ex.template, ex.scale, ex.rr, pending),
            self.rhythm.export_state(), tail.astype(np.float32))

    @classmethod
    def restore(cls, entry: DeviceEntry, frame: EcgFrame, settings: GatewaySettings, now_mono: float,
                ck: SessionCheckpoint, received_ms: int = 0) -> tuple[DeviceSession, list[EventUpdate]]:
        """A session continuing ``ck`` (checked with :func:`gateway.checkpoint.refusal`), and the rhythm
        updates the re-run of its tail produced (R peaks the old detector had not released yet)."""
        s = cls(entry, frame, settings, now_mono)
        s.last_seq, s.last_device_time_ms = ck.last_seq, ck.last_device_time_ms
        s.anchor_index, s.anchor_ms = ck.anchor_index, ck.anchor_ms
        s.lead_off, s.silent = ck.lead_off, ck.silent
        s.rhythm.import_state(ck.tracker)
        s._reset_pipeline(ck.tail_start)
        s.expected_index = ck.tail_start
        ex = ck.extractor
        pending = None
        if ex.pending is not None:
            pending = (int(input_to_output_index(ex.pending[0] - ck.tail_start, s.fs, MODEL_FS_HZ)), ex.pending[1])
        s.extractor.import_state(ExtractorState(ex.count, ex.template, ex.scale, ex.rr, pending))
        s.beat_floor = ck.beat_floor
        ups = s._feed(ck.tail, ck.tail_start, None, received_ms, prime=True) if ck.tail.size else []
        s.expected_index = ck.valid_index  # (without a tail the pipeline was reset at valid_index above)
        s.det_state = s.detector.signal_state if ck.tail.size else SignalState.FLAT
        s.window = WindowStats(start_index=ck.valid_index)
        s.next_summary_index = s.summary_boundary_after(ck.valid_index)
        s.restored_from = ck.valid_index
        s._resume_gap = True
        s.mark_checkpointed()
        return s, ups
