"""Prometheus metrics of the gateway (own registry, so several gateways can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    """All gateway metrics; names start with ``emon_gateway_``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.devices = Gauge("emon_gateway_devices_connected", "devices with a live session", registry=r)
        self.frames = Counter("emon_gateway_frames", "valid frames processed", registry=r)
        self.frames_invalid = Counter("emon_gateway_frames_invalid", "frames rejected, by reason", ["reason"], registry=r)
        self.bytes_in = Counter("emon_gateway_frame_bytes", "bytes of frames received (payloads)", registry=r)
        self.bytes_out = Counter("emon_gateway_published_bytes", "bytes published upstream (payloads)", registry=r)
        self.traffic_ratio = Gauge("emon_gateway_traffic_reduction_ratio",
                                   "frame bytes in / bytes published upstream", registry=r)
        self.beats = Counter("emon_gateway_beats", "classified beats, by class", ["beat_class"], registry=r)
        self.flagged = Counter("emon_gateway_flagged_beats", "non-normal beats published", registry=r)
        self.events = Counter("emon_gateway_rhythm_events", "rhythm event revisions published, by kind", ["kind"], registry=r)
        self.summaries = Counter("emon_gateway_summaries", "patient summaries published", registry=r)
        self.outbox_depth = Gauge("emon_gateway_outbox_depth", "messages waiting in the outbox", registry=r)
        self.outbox_bytes = Gauge("emon_gateway_outbox_bytes", "payload bytes waiting in the outbox", registry=r)
        self.outbox_dropped = Counter("emon_gateway_outbox_dropped", "outbox entries dropped when full, by kind",
                                      ["kind"], registry=r)
        self.replayed = Counter("emon_gateway_upstream_replayed", "acknowledged messages published again after "
                                "an upstream reconnect (broker restart cover)", registry=r)
        self.outbox_retained = Gauge("emon_gateway_outbox_retained", "acknowledged entries kept for a replay",
                                     registry=r)
        self.published = Counter("emon_gateway_published", "messages acknowledged by the broker", registry=r)
        self.upstream = Gauge("emon_gateway_upstream_connected", "1 when the upstream MQTT session is up", registry=r)
        self.intake = Gauge("emon_gateway_intake_connected", "1 when the frame subscription is up", registry=r)
        self.model_reloads = Counter("emon_gateway_model_reloads", "model file updates, by result (loaded, refused)",
                                     ["result"], registry=r)
        self.model = Gauge("emon_gateway_model_info", "the beat model in use", ["version"], registry=r)
        self.lag = Gauge("emon_gateway_processing_lag_seconds", "receive-to-processed delay of the last frame", registry=r)
        # frames not yet read wait on the broker (the intake reads in rounds), where only this shows them
        self.frame_age = Gauge("emon_gateway_frame_age_seconds", "device clock at the end of the last processed "
                               "frame to its processing (network, broker backlog, processing; device clocks "
                               "must be in sync)", registry=r)
        self.queue = Gauge("emon_gateway_intake_round_frames",
                           "frames read in the last intake round (at intake_round_frames: a backlog)", registry=r)
        self.batch = Histogram("emon_gateway_classify_batch_beats", "beats per classifier call",
                               buckets=(1, 4, 16, 64, 256, 1024, 4096), registry=r)
        self.classify_s = Histogram("emon_gateway_classify_seconds", "classifier call time",
                                    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0), registry=r)
        self.restarts = Counter("emon_gateway_device_restarts", "streams restarted by their device (seq reset)", registry=r)
        self.evicted = Counter("emon_gateway_devices_evicted", "idle device sessions closed", registry=r)
        self.checkpoints = Counter("emon_gateway_checkpoints", "device session checkpoints stored", registry=r)
        self.restores = Counter("emon_gateway_session_restores", "first frames after a gateway restart with a "
                                "checkpoint, by result (restored or the refusal reason)", ["result"], registry=r)
