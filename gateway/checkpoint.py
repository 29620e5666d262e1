"""Per-device session checkpoint: the slow-changing rhythm context, as a compact binary record, and the restore rules.

A record holds what a restarted gateway cannot relearn in a few seconds: the beat
extractor's patient normalisation (template, scale) and RR history, the rhythm tracker's
state (last R peak, open runs/pause/rate/ectopy/loss state, counters), the session's stream
position (seq, device clock anchor, the device sample index ``valid_index`` the state is
valid up to), the model version, and the last ``tail`` samples of raw signal before
``valid_index``. Not the filter and detector buffers: a restored session rebuilds them by
running the tail through a fresh signal core (outputs for what the old session had already
handled are suppressed), which also re-finds the R peaks the old detector had not released
yet (it reports a peak ~1-1.7 s after it happened).

Layout: ``b"EMCK"``, version byte, u32 length of a JSON header, the header (scalars,
tracker state, array lengths), then the arrays: template float32, RR uint16, pending
window float32, tail int16 (microvolts, -32768 = missing). Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.signal.beats import ExtractorState

MAGIC = b"EMCK"
VERSION = 1
_HEAD = struct.Struct("<4sBI")
_NAN_UV = -32768


class CheckpointError(ValueError):
    """A record that cannot be decoded (truncated, foreign, other version)."""


@dataclass(frozen=True)
class SessionCheckpoint:
    """One device's session state at device sample ``valid_index`` (see the module docstring)."""

    device_id: str
    fs_hz: float
    valid_index: int  # device sample index after the last processed sample
    written_ms: int  # gateway wall clock when taken (for expiry)
    model_version: str
    last_seq: int
    last_device_time_ms: int
    anchor_index: int
    anchor_ms: int
    lead_off: bool
    silent: bool
    beat_floor: int | None  # device index of the last R peak the extractor state includes
    extractor: ExtractorState  # R indices in device samples
    tracker: dict[str, Any]
    tail: npt.NDArray[np.float32]  # raw mV, device samples [valid_index - len(tail), valid_index)

    @property
    def tail_start(self) -> int:
        return self.valid_index - int(self.tail.size)


def _to_uv(mv: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    """Microvolts as int16 (clipped to +/-32.767 mV, NaN as -32768); plain ufuncs: called per checkpoint."""
    uv = np.multiply(mv, 1000.0, dtype=np.float32)
    np.minimum(uv, 32767.0, out=uv)
    np.maximum(uv, -32767.0, out=uv)
    nan = np.isnan(uv)
    has_nan = bool(nan.any())
    if has_nan:
        uv[nan] = 0.0
    out = np.rint(uv, out=uv).astype("<i2")
    if has_nan:
        out[nan] = _NAN_UV
    return out


def encode(c: SessionCheckpoint) -> bytes:
    """The compact binary record of ``c``."""
    ex = c.extractor
    pend_w = ex.pending[1].astype("<f4") if ex.pending is not None else np.empty(0, "<f4")
    tail_uv = _to_uv(np.asarray(c.tail, dtype=np.float32))
    head = {
        "d": c.device_id, "fs": c.fs_hz, "vi": c.valid_index, "wm": c.written_ms, "mv": c.model_version,
        "seq": c.last_seq, "dt": c.last_device_time_ms, "ai": c.anchor_index, "am": c.anchor_ms,
        "lo": c.lead_off, "si": c.silent, "bf": c.beat_floor,
        "ec": ex.count, "es": ex.scale, "ep": None if ex.pending is None else ex.pending[0],
        "n": [int(ex.template.size), int(ex.rr.size), int(pend_w.size), int(tail_uv.size)],
        "t": c.tracker,
    }
    meta = json.dumps(head, separators=(",", ":")).encode()
    rr = ex.rr.astype("<u2")  # the extractor clips RR to rr_max_s (1,080 samples at 360 Hz)
    return b"".join((_HEAD.pack(MAGIC, VERSION, len(meta)), meta, ex.template.astype("<f4").tobytes(),
                     rr.tobytes(), pend_w.tobytes(), tail_uv.tobytes()))


def decode(blob: bytes) -> SessionCheckpoint:
    """Inverse of :func:`encode`; :class:`CheckpointError` when the record is not readable."""
    try:
        magic, version, n_meta = _HEAD.unpack_from(blob, 0)
        if magic != MAGIC or version != VERSION:
            raise CheckpointError(f"not a version-{VERSION} checkpoint record")
        pos = _HEAD.size
        h = json.loads(blob[pos : pos + n_meta])
        pos += n_meta
        arrays = []
        for n, dt in zip(h["n"], ("<f4", "<u2", "<f4", "<i2")):
            size = int(n) * np.dtype(dt).itemsize
            if pos + size > len(blob):
                raise CheckpointError("truncated record")
            arrays.append(np.frombuffer(blob, dtype=dt, count=int(n), offset=pos))
            pos += size
        if pos != len(blob):
            raise CheckpointError("trailing bytes")
        template, rr, pend_w, tail_uv = arrays
        tail = np.where(tail_uv == _NAN_UV, np.nan, tail_uv.astype(np.float64) / 1000.0).astype(np.float32)
        pending = None if h["ep"] is None else (int(h["ep"]), pend_w.astype(np.float32))
        ex = ExtractorState(int(h["ec"]), template.astype(np.float32), float(h["es"]), rr.astype(np.int64), pending)
        return SessionCheckpoint(
            str(h["d"]), float(h["fs"]), int(h["vi"]), int(h["wm"]), str(h["mv"]), int(h["seq"]), int(h["dt"]),
            int(h["ai"]), int(h["am"]), bool(h["lo"]), bool(h["si"]), None if h["bf"] is None else int(h["bf"]),
            ex, h["t"], tail)
    except CheckpointError:
        raise
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as err:
        raise CheckpointError(f"unreadable checkpoint record: {err}") from err


def refusal(c: SessionCheckpoint, device_id: str, fs_hz: float, seq: int, first_sample_index: int,
            now_ms: int, max_age_s: float, max_gap_s: float) -> str | None:
    """Why ``c`` must not be restored for a device's first frame after a restart (None: restore it).

    Reasons: ``device`` (another device's record), ``expired`` (written more than
    ``max_age_s`` ago), ``rate`` (another sampling rate), ``seq`` (the frame's seq is not after
    the checkpoint's: the device restarted its stream), ``behind`` (the frame starts before
    ``valid_index``: not the same stream, or a replay), ``gap`` (more than ``max_gap_s`` of
    signal between the checkpoint and the frame).
    """
    if c.device_id != device_id:
        return "device"
    if now_ms - c.written_ms > max_age_s * 1000.0 or now_ms < c.written_ms - 60_000:
        return "expired"
    if float(fs_hz) != c.fs_hz:
        return "rate"
    if seq <= c.last_seq:
        return "seq"
    if first_sample_index < c.valid_index:
        return "behind"
    if first_sample_index - c.valid_index > max_gap_s * c.fs_hz:
        return "gap"
    return None
