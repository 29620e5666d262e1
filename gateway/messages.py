"""Builds the gateway's upstream messages (flagged beats, rhythm events, summaries, status) from session state."""

from __future__ import annotations

import time

import numpy as np

from emon_core.contracts import (
    BeatClass,
    EventKind,
    FlaggedBeat,
    GatewayStatus,
    HopTimes,
    PatientSummary,
    RhythmEvent,
)
from emon_core.topics import edge_events_topic, edge_summary_topic, gateway_status_topic
from gateway.classifier import CLASSES
from gateway.device_session import DeviceSession, WindowStats
from gateway.rhythm import EventUpdate

Outgoing = tuple[str, str, bytes, bool]  # (outbox kind, topic, payload, retain)


def now_ms() -> int:
    return int(time.time() * 1000)


def flagged_beat(s: DeviceSession, index: int, cls: BeatClass, probs: np.ndarray, rr_s: np.ndarray,
                 model_version: str, sent_ms: int, received_ms: int, strip_s: float) -> Outgoing:
    """A non-normal beat at device sample ``index`` with a short strip around it."""
    half = int(round(strip_s * s.fs / 2))
    msg = FlaggedBeat(
        id=FlaggedBeat.make_id(s.device_id, index),
        site_id=s.entry.site_id,
        device_id=s.device_id,
        patient_id=s.entry.patient_id,
        sample_index=index,
        r_time_ms=s.time_ms(index),
        beat_class=cls,
        probabilities={c: round(float(min(max(p, 0.0), 1.0)), 4) for c, p in zip(CLASSES, probs)},
        model_version=model_version,
        rr_prev_ms=round(float(rr_s[0]) * 1000.0, 1),
        rr_next_ms=round(float(rr_s[1]) * 1000.0, 1),
        rr_local_ms=round(float(rr_s[2]) * 1000.0, 1),
        strip=s.strip(index - half, index + half, [index]),
        trace=HopTimes(device_sent_ms=sent_ms, gateway_received_ms=received_ms, gateway_published_ms=now_ms()),
    )
    return ("beat", edge_events_topic(s.entry.site_id, s.device_id), msg.encode(), False)


def rhythm_event(s: DeviceSession, up: EventUpdate, model_version: str, sent_ms: int | None,
                 received_ms: int | None, strip_s: float) -> Outgoing:
    """One revision of a rhythm event, with a strip covering its onset (up to ``strip_s``)."""
    width = int(round(strip_s * s.fs))
    stop = min(max(up.end_index, up.onset_index) + int(s.fs), s.raw_end)
    start = max(up.onset_index - int(s.fs), stop - width)
    msg = RhythmEvent(
        id=RhythmEvent.make_id(s.device_id, up.kind, up.onset_index),
        site_id=s.entry.site_id,
        device_id=s.device_id,
        patient_id=s.entry.patient_id,
        kind=up.kind,
        onset_sample_index=up.onset_index,
        onset_time_ms=s.time_ms(up.onset_index),
        end_time_ms=s.time_ms(max(up.end_index, up.onset_index)),
        revision=up.revision,
        beat_count=up.beat_count,
        rate_bpm=up.rate_bpm,
        detail=up.detail[:200],
        model_version=model_version if up.kind in (EventKind.V_RUN, EventKind.S_RUN, EventKind.FREQUENT_ECTOPY) else "",
        strip=s.strip(start, stop, up.marks) if up.kind is not EventKind.SIGNAL_LOSS or not s.silent else None,
        trace=HopTimes(device_sent_ms=sent_ms, gateway_received_ms=received_ms, gateway_published_ms=now_ms()),
    )
    return ("event", edge_events_topic(s.entry.site_id, s.device_id), msg.encode(), False)


def summary(s: DeviceSession, w: WindowStats, end_index: int, model_version: str) -> Outgoing:
    """Per-patient vitals over the summary window ending at device sample ``end_index``."""
    quality = (w.ok_samples / w.samples) if w.samples else 0.0
    hr = s.rhythm.heart_rate_bpm
    msg = PatientSummary(
        id=f"{s.device_id}:summary:{end_index}",
        site_id=s.entry.site_id,
        device_id=s.device_id,
        patient_id=s.entry.patient_id,
        window_start_ms=s.time_ms(min(w.start_index, end_index)),
        window_end_ms=s.time_ms(end_index),
        heart_rate_bpm=None if hr is None or hr > 600 else round(hr, 1),
        beat_counts={c: int(w.beats.get(c, 0)) for c in CLASSES},
        signal_quality=round(min(max(quality, 0.0), 1.0), 3),
        frames_received=w.frames,
        frames_invalid=w.invalid,
        model_version=model_version,
        trace=HopTimes(gateway_published_ms=now_ms()),
    )
    return ("summary", edge_summary_topic(s.entry.site_id, s.device_id), msg.encode(), False)


def status(site_id: str, gateway_id: str, online: bool, model_version: str, device_ids: list[str]) -> Outgoing:
    """The retained presence message (and, with ``online=False``, the last will)."""
    msg = GatewayStatus(
        site_id=site_id, gateway_id=gateway_id, online=online, time_ms=now_ms(),
        model_version=model_version, device_ids=sorted(device_ids)[:20_000],
    )
    return ("status", gateway_status_topic(site_id), msg.encode(), True)
