"""The gateway service: MQTT intake -> per-device signal core -> batched classification -> outbox -> MQTT.

One processing thread does all the MQTT and the processing (no network threads, nothing
handed between threads): it reads the intake client itself, in rounds every
``intake_poll_ms`` (:class:`emon_core.adapters.mqtt.CallerLoop`: one ``recv`` and one
``send`` of PUBACKs per round), and owns every :class:`DeviceSession` (a device's frames are
handled in order). It runs a tick every ``tick_ms``: classify the ready beats of *all*
devices in one classifier call, turn them into flagged beats and rhythm events, commit them
to the outbox; then a :class:`Publisher` step hands new outbox entries to the upstream
client, which the same thread drives. Other threads: the HTTP endpoints and the model watcher.

Each device's session is checkpointed to ``sessions.db`` in the state dir (see
:mod:`gateway.checkpoint`): at the tick after classification, every ``checkpoint_every_s``
of its signal (staggered across devices) and at every frame while it is *hot* (an event open
or no beat for ``checkpoint_hot_after_s``). A device's first frame after a restart resumes
its checkpoint when :func:`gateway.checkpoint.refusal` allows it.

Shutdown (SIGTERM/SIGINT): stop intake, process what was received, checkpoint every session,
drain the outbox (bounded by ``drain_timeout_s``), publish the retained offline status, disconnect.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from emon_core.contracts import BeatClass, ContractError, EcgFrame, decode
from emon_core.registry import DeviceRegistry
from emon_core.topics import MQTT_FRAMES_SUB, gateway_status_topic
from gateway import messages
from gateway.classifier import CLASSES, decide
from gateway.checkpoint import CheckpointError, decode as decode_checkpoint, encode as encode_checkpoint, refusal
from gateway.checkpoint_store import CheckpointStore
from gateway.device_session import DeviceSession, FrameRejected
from gateway.messages import Outgoing
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


def load_classifier(settings: GatewaySettings) -> Any:
    """The TFLite beat model, or the rules fallback (``classifier: rules``, or ``auto`` without a model)."""
    from gateway.rules_classifier import RulesClassifier

    if settings.classifier == "rules":
        return RulesClassifier()
    from gateway.classifier import DEFAULT_MODEL, BeatClassifier

    path = settings.model_path
    if settings.classifier == "auto" and path is None and not DEFAULT_MODEL.exists():
        log.warning("no beat model at %s: using the rules fallback classifier", DEFAULT_MODEL)
        return RulesClassifier()
    card = path.with_name("model_card.json") if path is not None else None
    return BeatClassifier(path, card if card is not None and card.exists() else None)


def model_files(settings: GatewaySettings) -> list[Path]:
    """The files a model update replaces: the .tflite and its model card (none for the rules classifier)."""
    if settings.classifier == "rules":
        return []
    from gateway.classifier import DEFAULT_MODEL

    path = settings.model_path or DEFAULT_MODEL
    return [path, path.with_name("model_card.json")]


class ModelWatcher:
    """Loads a replaced model file in the background; the processing thread swaps it in.

    Polls the model file and its card every ``every_s`` (and at once on :meth:`poke`, e.g. SIGHUP).
    A change is loaded once the files have not changed for one poll (a copy in progress is not
    read half-written); :class:`gateway.classifier.BeatClassifier` checks the sha256 against the
    card and the input spec against the gateway's. A model that fails the checks is refused and
    the running one stays (logged, ``emon_gateway_model_reloads_total{result="refused"}``); the
    same files are not retried until they change again.
    """

    def __init__(self, settings: GatewaySettings, current: Any, metrics: GatewayMetrics,
                 every_s: float = 5.0, loader: Any = None) -> None:
        self.settings = settings
        self.files = model_files(settings)
        self.every_s = float(every_s)
        self.metrics = metrics
        self.loader = loader or load_classifier
        self.current_version = str(current.model_version)
        self._sha: str | None = getattr(current, "sha256", None)
        self.ready: Any = None  # a loaded classifier waiting for the processing thread
        self._lock = threading.Lock()
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._seen = self._stamp()
        self._pending: Any = None
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    def _stamp(self) -> tuple[Any, ...]:
        out = []
        for f in self.files:
            try:
                st = f.stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def start(self) -> "ModelWatcher":
        if self.files:
            self._thread.start()
        return self

    def poke(self) -> None:
        """Check now (SIGHUP)."""
        self._poke.set()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()

    def take(self) -> Any:
        """The loaded classifier to swap in, once (processing thread)."""
        with self._lock:
            c, self.ready = self.ready, None
        return c

    def check(self, force: bool = False) -> str:
        """One poll; returns what happened (``unchanged``, ``settling``, ``loaded``, ``same``, ``refused``)."""
        stamp = self._stamp()
        if stamp == self._seen and not force:
            self._pending = None
            return "unchanged"
        if not force and stamp != self._pending:  # changed since the last look: wait for it to settle
            self._pending = stamp
            return "settling"
        self._seen, self._pending = stamp, None
        try:
            c = self.loader(self.settings)
        except Exception as err:  # noqa: BLE001 - a bad model never stops the gateway
            log.error("model update refused (%s); keeping %s", err, self.current_version)
            self.metrics.model_reloads.labels("refused").inc()
            return "refused"
        sha = getattr(c, "sha256", None)
        if sha is not None and sha == self._sha:  # touched or copied again: nothing new
            return "same"
        self._sha = sha
        with self._lock:
            self.ready = c
        self.current_version = str(c.model_version)
        log.info("model %s loaded and checked (sha256 %s); swapping it in", c.model_version,
                 (getattr(c, "sha256", "") or "")[:12])
        self.metrics.model_reloads.labels("loaded").inc()
        return "loaded"

    def _run(self) -> None:
        while not self._stop.is_set():
            poked = self._poke.wait(self.every_s if self.every_s > 0 else None)
            self._poke.clear()
            if self._stop.is_set():
                return
            try:
                self.check(force=poked)
            except Exception:  # noqa: BLE001
                log.exception("model watcher error")


def classify_reason(err: ContractError) -> str:
    """Counter label of a frame that failed contract validation."""
    text = str(err)
    if err.reason == "oversized" or "frame longer than" in text or "at most" in text and "samples" in text:
        return "oversized"
    if text.startswith("samples") and "finite number" in text:  # NaN/inf in the ECG itself
        return "nan"
    if text.startswith("fs_hz"):
        return "wrong_rate"
    return "malformed"


class GatewayPipeline:
    """Frame validation, device sessions, batched classification and message building (no MQTT).

    ``handle(topic, payload, received_ms)`` and ``tick()`` are called from one thread;
    outgoing messages go to ``outbox``. Used by :class:`GatewayService` and unit tests.
    """

    def __init__(self, settings: GatewaySettings, registry: DeviceRegistry, classifier: Any, outbox: Outbox,
                 metrics: GatewayMetrics | None = None, checkpoints: CheckpointStore | None = None) -> None:
        self.settings = settings
        self.checkpoints = checkpoints if settings.checkpoint_every_s > 0 else None
        self._touched: set[str] = set()  # devices with frames since the last tick (checkpoint candidates)
        self._next_prune_mono = time.monotonic() + 60.0
        self.restores: Counter[str] = Counter()
        self.registry = registry
        self.classifier = classifier
        self.model_version = str(classifier.model_version)
        self.outbox = outbox
        self.metrics = metrics or GatewayMetrics()
        self.metrics.model.labels(self.model_version).set(1)
        self.sessions: dict[str, DeviceSession] = {}
        self.invalid: Counter[str] = Counter()
        self.frames_ok = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.beats: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self._out: list[Outgoing] = []
        # per-frame and per-beat counts go to Prometheus once a tick (each update takes a lock)
        self._reported: dict[str, int] = {"frames": 0, "bytes": 0}
        self._lag_s: float | None = None
        self._age_s = 0.0
        # labelled children looked up once: labels() costs ~15 us a call, one call per beat
        self._beat_counter = functools.cache(self.metrics.beats.labels)
        self._event_counter = functools.cache(self.metrics.events.labels)
        self._bias = np.asarray(getattr(classifier, "class_log_bias", np.zeros(5)), dtype=np.float32)
        self.last_tick_mono = time.monotonic()
        self.topic_prefix = f"ecg/{settings.site_id}/"

    def swap_classifier(self, classifier: Any) -> str:
        """Use ``classifier`` from the next classification on (call on the processing thread,
        between ticks: no beat is classified half by one model and half by another). Beats
        already classified keep the version they were classified with. Returns the old version."""
        old = self.model_version
        self.classifier = classifier
        self.model_version = str(classifier.model_version)
        self._bias = np.asarray(getattr(classifier, "class_log_bias", np.zeros(5)), dtype=np.float32)
        try:
            self.metrics.model.remove(old)
        except KeyError:
            pass
        self.metrics.model.labels(self.model_version).set(1)
        return old

    # -- intake ---------------------------------------------------------------------------------

    def reject(self, reason: str, topic: str = "", detail: str = "") -> None:
        self.invalid[reason] += 1
        self.metrics.frames_invalid.labels(reason).inc()
        if self.invalid[reason] <= 20 or self.invalid[reason] % 1000 == 0:
            log.warning("frame rejected (%s) on %s: %s [%d so far]", reason, topic[:120], detail[:200], self.invalid[reason])

    def handle(self, topic: str, payload: bytes, received_ms: int, now_mono: float | None = None) -> None:
        """Validate and process one frame; never raises for bad input."""
        now_mono = time.monotonic() if now_mono is None else now_mono
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "ecg" or parts[3] != "frames" or parts[1] != self.settings.site_id:
            self.reject("foreign_topic", topic)
            return
        try:
            frame = decode(payload, EcgFrame)
        except ContractError as err:
            self.reject(classify_reason(err), topic, str(err))
            return
        if frame.device_id != parts[2]:
            self.reject("device_mismatch", topic, f"payload device {frame.device_id}")
            return
        entry = self.registry.get(frame.device_id)
        if entry is None or entry.site_id != self.settings.site_id:
            self.reject("unknown_device", topic)
            return
        session = self.sessions.get(frame.device_id)
        if session is None:
            if len(self.sessions) >= self.settings.max_devices:
                self.reject("capacity", topic)
                return
            session = self._restore(entry, frame, received_ms, now_mono)
            if session is None:
                session = DeviceSession(entry, frame, self.settings, now_mono)
                log.info("device %s joined (%g Hz)", frame.device_id, frame.fs_hz)
            self.sessions[frame.device_id] = session
            self.metrics.devices.set(len(self.sessions))
        try:
            session.check(frame)
        except FrameRejected as rej:
            if rej.reason == "restart":  # close the old stream, start a new one
                log.info("device %s restarted its stream (seq %d after %d)", frame.device_id, frame.seq, session.last_seq)
                self._events(session, session.rhythm.close(session.expected_index), None, None)
                self.metrics.restarts.inc()
                self._forget_checkpoint(frame.device_id)
                session = DeviceSession(entry, frame, self.settings, now_mono)
                self.sessions[frame.device_id] = session
            else:
                session.window.invalid += 1
                self.reject(rej.reason, topic, f"seq {frame.seq} first {frame.first_sample_index}")
                return
        try:
            ups = session.ingest(frame, received_ms, now_mono, len(payload))
        except Exception as err:  # noqa: BLE001 - one device's failure must not stop the others
            log.exception("device %s: processing failed; session restarted", frame.device_id)
            self.sessions.pop(frame.device_id, None)
            self._forget_checkpoint(frame.device_id)
            self.reject("processing_error", topic, str(err))
            return
        self.frames_ok += 1
        self.bytes_in += len(payload)
        end_ms = frame.device_time_ms + int(round(frame.n_samples * 1000.0 / frame.fs_hz))
        now_s = time.time()
        self._lag_s = now_s - received_ms / 1000.0
        self._age_s = now_s - end_ms / 1000.0
        self._events(session, ups, end_ms, received_ms)
        if self.checkpoints is not None:
            if session.hot and not session.pending and session.checkpoint_due():
                self.commit()  # its output first: the checkpoint says which event revisions were sent
                self.write_checkpoints([session])  # now, not at the tick: a pause must survive a kill
            else:
                self._touched.add(frame.device_id)
        if session.summary_due():
            w, end = session.take_window()
            self._out.append(messages.summary(session, w, end, self.model_version))
            self.metrics.summaries.inc()

    def _events(self, s: DeviceSession, ups: list, sent_ms: int | None, received_ms: int | None) -> None:
        for up in ups:
            self._out.append(messages.rhythm_event(s, up, self.model_version, sent_ms, received_ms,
                                                   self.settings.strip_event_s))
            self.events[up.kind.value] += 1
            self._event_counter(up.kind.value).inc()

    # -- tick -----------------------------------------------------------------------------------

    def tick(self, now_mono: float | None = None) -> int:
        """Classify ready beats across devices, check silent/idle devices, commit output. Returns messages committed."""
        now_mono = time.monotonic() if now_mono is None else now_mono
        self.last_tick_mono = now_mono
        self._classify()
        self._housekeeping(now_mono)
        self._report_counts()
        n = self.commit()  # output first: a checkpoint must not get ahead of what was committed
        if self.checkpoints is not None:
            touched, self._touched = self._touched, set()
            self.write_checkpoints([s for d in touched if (s := self.sessions.get(d)) is not None
                                    and s.checkpoint_due()])
            if now_mono >= self._next_prune_mono:
                self._next_prune_mono = now_mono + 60.0
                self.checkpoints.prune()
        return n

    def _report_counts(self) -> None:
        rep = self._reported
        if self.frames_ok > rep["frames"]:
            self.metrics.frames.inc(self.frames_ok - rep["frames"])
            self.metrics.bytes_in.inc(self.bytes_in - rep["bytes"])
            rep["frames"], rep["bytes"] = self.frames_ok, self.bytes_in
        if self._lag_s is not None:
            self.metrics.lag.set(max(0.0, self._lag_s))
            self.metrics.frame_age.set(self._age_s)
            self._lag_s = None
        for cls, n in self.beats.items():
            if n > rep.get(cls, 0):
                self._beat_counter(cls).inc(n - rep.get(cls, 0))
                rep[cls] = n

    def _decide(self, windows: np.ndarray, rr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and decided class indices of a batch (the model card's decision:
        class biases and AF rule, :func:`gateway.classifier.decide`)."""
        t0 = time.perf_counter()
        probs = self.classifier.classify(windows, rr)
        self.metrics.classify_s.observe(time.perf_counter() - t0)
        self.metrics.batch.observe(len(windows))
        return probs, decide(probs, self._bias, getattr(self.classifier, "af_rule", None), windows, rr)

    def _classify(self) -> None:
        work = [(s, p) for s in self.sessions.values() for p in s.take_pending()]
        if not work:
            return
        windows = np.concatenate([p.batch.windows for _, p in work])
        rr = np.concatenate([p.batch.rr for _, p in work])
        probs, decided = self._decide(windows, rr)

        row = 0
        touched: dict[str, DeviceSession] = {}
        for s, p in work:
            touched[s.device_id] = s
            for j in range(len(p.batch)):
                cls = CLASSES[int(decided[row])]
                index = int(s.to_device_index(int(p.batch.r_samples[j])))
                self.beats[cls.value] += 1
                s.window.beats[cls] += 1
                if cls is not BeatClass.N:
                    self._out.append(messages.flagged_beat(
                        s, index, cls, probs[row], p.batch.rr[j], self.model_version, p.device_sent_ms,
                        p.received_ms, self.settings.strip_beat_s))
                    self.metrics.flagged.inc()
                self._events(s, s.rhythm.on_beat(index, cls), p.device_sent_ms, p.received_ms)
                row += 1
        self._classify_provisional([s for s in touched.values() if s.rhythm.wants_provisional])

    def _classify_provisional(self, sessions: list[DeviceSession]) -> None:
        """V runs one beat short of ``run_confirm_beats``: classify the beat after each now (its
        next RR taken equal to its previous RR) rather than when the R peak after it is
        released; only the rhythm tracker sees this class (:meth:`RhythmTracker.on_provisional_beat`),
        the beat itself is counted and flagged when its own classification comes."""
        todo = [(s, b) for s in sessions if (b := s.provisional_beat()) is not None]
        if not todo:
            return
        _, decided = self._decide(np.concatenate([b.windows for _, b in todo]), np.concatenate([b.rr for _, b in todo]))

        for (s, b), k in zip(todo, decided):
            index = int(s.to_device_index(int(b.r_samples[0])))
            self._events(s, s.rhythm.on_provisional_beat(index, CLASSES[int(k)]), s.last_sent_ms, s.last_received_ms)

    def _housekeeping(self, now_mono: float) -> None:
        for dev, s in list(self.sessions.items()):
            idle = now_mono - s.last_frame_mono
            if idle >= self.settings.idle_evict_s:
                self._events(s, s.rhythm.close(s.expected_index), None, None)
                del self.sessions[dev]
                self._forget_checkpoint(dev)
                self.metrics.evicted.inc()
                log.info("device %s left (idle %.0f s)", dev, idle)
            elif idle >= self.settings.silent_after_s and not s.silent:
                self._events(s, s.mark_silent(), s.time_ms(s.expected_index), None)
        self.metrics.devices.set(len(self.sessions))

    # -- checkpoints ----------------------------------------------------------------------------

    def _restore(self, entry: Any, frame: EcgFrame, received_ms: int, now_mono: float) -> DeviceSession | None:
        """A session resuming the device's checkpoint, or None (no checkpoint, or refused)."""
        if self.checkpoints is None:
            return None
        blob = self.checkpoints.get(frame.device_id)
        if blob is None:
            return None
        try:
            ck = decode_checkpoint(blob)
        except CheckpointError as err:
            why = "unreadable"
            log.warning("device %s: checkpoint not restored (%s)", frame.device_id, err)
        else:
            why = refusal(ck, frame.device_id, frame.fs_hz, frame.seq, frame.first_sample_index,
                          int(time.time() * 1000), self.settings.checkpoint_max_age_s, self.settings.max_gap_fill_s)
        if why is None:
            try:
                session, ups = DeviceSession.restore(entry, frame, self.settings, now_mono, ck, received_ms)
            except Exception:  # noqa: BLE001 - a bad checkpoint must not keep a device out
                log.exception("device %s: checkpoint restore failed; new session", frame.device_id)
                why = "failed"
            else:
                self._events(session, ups, None, received_ms)
                self.restores["restored"] += 1
                self.metrics.restores.labels("restored").inc()
                log.info("device %s resumed its checkpoint at sample %d (frame starts at %d; model then %s)",
                         frame.device_id, ck.valid_index, frame.first_sample_index, ck.model_version)
                return session
        self.restores[why] += 1
        self.metrics.restores.labels(why).inc()
        log.info("device %s: checkpoint not restored (%s)", frame.device_id, why)
        return None

    def write_checkpoints(self, sessions: list[DeviceSession] | None = None) -> int:
        """Store the checkpoints of ``sessions`` (default: all) in one transaction; returns how many."""
        if self.checkpoints is None:
            return 0
        now = int(time.time() * 1000)
        rows = []
        for s in self.sessions.values() if sessions is None else sessions:
            if s.pending:  # beats awaiting classification: not a consistent state (the next tick writes it)
                continue
            rows.append((s.device_id, now, s.expected_index, encode_checkpoint(s.checkpoint(self.model_version, now))))
            s.mark_checkpointed()
        self.checkpoints.put_many(rows)
        self.metrics.checkpoints.inc(len(rows))
        return len(rows)

    def _forget_checkpoint(self, device_id: str) -> None:
        if self.checkpoints is not None:
            self.checkpoints.delete(device_id)
        self._touched.discard(device_id)

    def emit(self, item: Outgoing) -> None:
        self._out.append(item)

    def commit(self) -> int:
        """Commit pending output to the outbox (one transaction)."""
        if not self._out:
            return 0
        out, self._out = self._out, []
        before = dict(self.outbox.dropped)
        self.outbox.append(out)
        for kind, n in self.outbox.dropped.items():
            if n > before.get(kind, 0):
                self.metrics.outbox_dropped.labels(kind).inc(n - before.get(kind, 0))
        self.metrics.outbox_depth.set(len(self.outbox))
        self.metrics.outbox_bytes.set(self.outbox.size_bytes)
        return len(out)

    def on_published(self, kinds: list[tuple[str, int]]) -> None:
        """Publisher callback: messages acknowledged upstream (any thread)."""
        size = sum(n for _, n in kinds)
        self.bytes_out += size
        self.metrics.bytes_out.inc(size)
        self.metrics.published.inc(len(kinds))
        if self.bytes_out:
            self.metrics.traffic_ratio.set(self.bytes_in / self.bytes_out)

    def close_all(self) -> None:
        for s in self.sessions.values():
            self._events(s, s.rhythm.close(s.expected_index), None, None)
        self.commit()

    def snapshot(self) -> dict[str, Any]:
        return {
            "devices": len(self.sessions),
            "frames": self.frames_ok,
            "frames_invalid": dict(self.invalid),
            "beats": dict(self.beats),
            "events": dict(self.events),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "traffic_reduction": round(self.bytes_in / self.bytes_out, 1) if self.bytes_out else None,
            "outbox_depth": len(self.outbox),
            "outbox_dropped": dict(self.outbox.dropped),
            "model_version": self.model_version,
            "session_restores": dict(self.restores),
        }


class GatewayService:
    """Runs the pipeline against real MQTT: intake client, publisher, HTTP endpoints, signals."""

    def __init__(self, settings: GatewaySettings, registry: DeviceRegistry, classifier: Any) -> None:
        from emon_core.adapters.mqtt import CallerLoop, Will, create_client

        from emon_core.http_endpoints import HttpEndpoints
        from gateway.publisher import Publisher

        self.settings = settings
        self.gateway_id = settings.resolved_gateway_id
        self.mqtt = settings.mqtt.to_mqtt_settings()
        sd = settings.resolved_state_dir
        sd.mkdir(parents=True, exist_ok=True)
        self.metrics = GatewayMetrics()
        self.outbox = Outbox(sd / "outbox.db", settings.outbox_max_entries, int(settings.outbox_max_mb * (1 << 20)),
                             settings.outbox_sync, retain_s=max(settings.outbox_retain_s, settings.replay_window_s))
        self.checkpoints = CheckpointStore(sd / "sessions.db", settings.checkpoint_max_age_s)
        self.pipeline = GatewayPipeline(settings, registry.for_site(settings.site_id), classifier, self.outbox,
                                        self.metrics, self.checkpoints)
        self.received: list[tuple[str, bytes, int]] = []  # the current intake round, in order
        self.last_round = 0
        self.stopping = threading.Event()
        self.loop_alive_mono = time.monotonic()
        _, _, will_payload, _ = messages.status(settings.site_id, self.gateway_id, False, self.pipeline.model_version, [])
        self.up = create_client(self.mqtt, client_id=f"{self.gateway_id}-up", on_connect=self._on_up_connect,
                                will=Will(gateway_status_topic(settings.site_id), will_payload, 1, True),
                                max_inflight=max(20, settings.outbox_inflight), buffered_reads=True)
        self.up_loop = CallerLoop(self.up, self.mqtt, clean_start=True, reconnect_s=(1.0, 2.0))
        self.publisher = Publisher(self.up, self.outbox, settings.outbox_inflight, on_acked=self.pipeline.on_published,
                                   replay_window_s=settings.replay_window_s, replay_delay_s=settings.replay_delay_s,
                                   on_replay=self.metrics.replayed.inc)
        self.up.on_publish = self.publisher.on_publish
        self.up.on_disconnect = self._on_up_disconnect
        self.intake = create_client(self.mqtt, client_id=f"{self.gateway_id}-in",
                                    subscriptions=[(MQTT_FRAMES_SUB.format(site_id=settings.site_id), 1)],
                                    on_connect=self._on_in_connect, max_inflight=100)
        self.intake.on_message = self._on_message
        self.intake_loop = CallerLoop(self.intake, self.mqtt, clean_start=False,
                                      session_expiry_s=settings.mqtt.session_expiry_s, reconnect_s=(1.0, 2.0))
        self.intake.on_disconnect = self._on_in_disconnect
        self.http = HttpEndpoints(settings.http_host, settings.http_port, self.metrics.registry, self.health)
        self.model_watcher = ModelWatcher(settings, classifier, self.metrics, settings.model_watch_s)

    # -- paho callbacks ---------------------------------------------------------------------------

    def _on_up_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.publisher.on_connect(client, userdata, flags, reason, props)
        self.metrics.upstream.set(0 if reason.is_failure else 1)
        if reason.is_failure:
            log.error("upstream MQTT refused: %s", reason)
        else:
            log.info("upstream MQTT connected")

    def _on_up_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.publisher.on_disconnect(client, userdata, flags, reason, props)
        self.metrics.upstream.set(0)
        if not self.stopping.is_set():
            log.warning("upstream MQTT disconnected (%s); output is kept in the outbox", reason)

    def _on_in_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.metrics.intake.set(0 if reason.is_failure else 1)

    def _on_in_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.metrics.intake.set(0)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        # on the processing thread, inside CallerLoop.poll: processed right after the round
        self.received.append((msg.topic, msg.payload, int(time.time() * 1000)))

    # -- health ---------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        loop_age = now - self.loop_alive_mono
        up = self.up.is_connected()
        intake = self.intake.is_connected()
        depth = len(self.outbox)
        stuck = depth > 0 and up and now - self.publisher.last_progress_mono > self.settings.stuck_after_s
        checks = {
            "mqtt_upstream": up,
            "mqtt_intake": intake,
            "loop_alive": loop_age < max(5.0, 20 * self.settings.tick_ms / 1000.0),
            "outbox_not_stuck": not stuck,
        }
        detail = {"checks": checks, "loop_age_s": round(loop_age, 2), "gateway_id": self.gateway_id,
                  "site_id": self.settings.site_id, "last_round_frames": self.last_round,
                  "outbox_oldest_s": round(self.outbox.oldest_age_s(), 1), "outbox_retained": self.outbox.retained,
                  "upstream_replays": self.publisher.replays, "upstream_replayed": self.publisher.replayed,
                  **self.pipeline.snapshot()}
        return all(checks.values()), detail

    # -- lifecycle --------------------------------------------------------------------------------

    def run(self, connect_timeout_s: float = 30.0) -> int:
        from gateway.signal.warmup import warm_kernels

        warm_s = warm_kernels()  # before the intake connects: a cold numba cache costs ~10 s
        if warm_s > 2.0:
            log.info("signal kernels compiled in %.1f s (numba cache was cold)", warm_s)
        self.http.start()
        log.info("gateway %s for %s: http on %s:%d, model %s, %d registered devices, state %s",
                 self.gateway_id, self.settings.site_id, self.settings.http_host, self.http.port,
                 self.pipeline.model_version, len(self.pipeline.registry), self.settings.resolved_state_dir)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self.model_watcher.poke())  # check the model file now
        self.model_watcher.start()
        self._connect(connect_timeout_s)
        self._publish_status(True)
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _connect(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for attempt in (self.up_loop.connect, self.intake_loop.connect):
            while True:
                try:
                    attempt(10.0)
                    break
                except Exception as err:  # noqa: BLE001 - bounded wait for the broker
                    from emon_core.errors import ConfigError

                    if isinstance(err, ConfigError) or time.monotonic() > deadline or self.stopping.is_set():
                        raise
                    log.warning("waiting for the MQTT broker: %s", err)
                    time.sleep(1.0)

    def _publish_status(self, online: bool) -> None:
        self.pipeline.emit(messages.status(self.settings.site_id, self.gateway_id, online,
                                           self.pipeline.model_version, sorted(self.pipeline.sessions)))
        self.pipeline.commit()
        self.publisher.wake()

    def _loop(self) -> None:
        tick_s = self.settings.tick_ms / 1000.0
        round_s = self.settings.intake_poll_ms / 1000.0
        next_tick = time.monotonic() + tick_s
        next_status = time.monotonic() + 60.0
        next_round = 0.0
        more = False
        while not self.stopping.is_set():
            now = time.monotonic()
            if not more:  # caught up: let frames gather for a round (one wake-up, one recv)
                wait = min(next_round, next_tick) - now
                if wait > 0 and self.stopping.wait(wait):
                    break
            next_round = time.monotonic() + round_s
            more = self._intake_round()
            now = time.monotonic()
            if now >= next_tick:
                if self.pipeline.tick(now):
                    self.publisher.wake()  # publish what the tick committed in this turn
                self.loop_alive_mono = now
                self.metrics.queue.set(self.last_round)
                self.metrics.outbox_depth.set(len(self.outbox))
                self.metrics.outbox_retained.set(self.outbox.retained)
                next_tick = max(next_tick + tick_s, now)
                new_model = self.model_watcher.take()
                if new_model is not None:  # between ticks: frames keep flowing, nothing is dropped
                    old = self.pipeline.swap_classifier(new_model)
                    log.info("model %s -> %s", old, self.pipeline.model_version)
                    next_status = now  # announce the new version
            if now >= next_status:
                self._publish_status(True)
                next_status = now + 60.0
            if self.publisher.due():
                self.publisher.step()
            self.up_loop.poll()  # sends what the step handed to paho, reads PUBACKs, reconnects

    def _intake_round(self) -> bool:
        """Read what arrived (at most ``intake_round_frames``) and process it; True if more waits."""
        more = self.intake_loop.poll(max_packets=self.settings.intake_round_frames)
        items, self.received = self.received, []
        self.last_round = len(items)
        handle = self.pipeline.handle
        for topic, payload, received in items:
            handle(topic, payload, received)
        return more

    def _shutdown(self) -> None:
        log.info("gateway stopping: intake off, draining")
        self.stopping.set()
        self.model_watcher.stop()
        for topic, payload, received in self.received:  # read (and acknowledged) before the stop
            self.pipeline.handle(topic, payload, received)
        self.received = []
        try:
            self.intake_loop.disconnect()
        except Exception:  # noqa: BLE001
            log.debug("intake disconnect failed", exc_info=True)
        self.pipeline.tick()
        n = self.pipeline.write_checkpoints()
        log.info("checkpointed %d device session(s)", n)
        self.checkpoints.close()
        self._publish_status(False)
        drained = self.publisher.drain(self.settings.drain_timeout_s, pump=lambda: self.up_loop.poll(wait_s=0.02))
        log.info("gateway stopped: outbox %s (%d left)", "drained" if drained else "NOT drained", len(self.outbox))
        self.publisher.stop()
        try:
            self.up_loop.disconnect()
        except Exception:  # noqa: BLE001
            log.debug("upstream disconnect failed", exc_info=True)
        self.http.stop()
        self.outbox.close()
