"""Drains the outbox to the upstream broker in order: QoS 1, bounded in-flight, delete on PUBACK.

Runs in steps (:meth:`Publisher.step`): on its own thread after :meth:`Publisher.start`, or
called by the owner's loop (the gateway's processing thread, which also drives the upstream
client, so nothing crosses threads). While the broker is unreachable nothing is handed to paho (the
outbox holds it); after a reconnect paho resends what it had in flight (same payloads),
then draining continues from the cursor. An entry in flight for longer than
``resend_after_s`` while connected is published again (at-least-once; ids are
deterministic so the centre deduplicates).

Broker restarts: a PUBACK only says the broker took the message, not that it reached the
bridge. After every unexpected upstream disconnect the publisher, once reconnected and
``replay_delay_s`` later (time for the bridge to reconnect and resubscribe), re-publishes
the entries acknowledged from ``replay_window_s`` before the disconnect until then (the
outbox retains acknowledged entries for that). Duplicates carry the same ids; sinks dedupe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from gateway.outbox import Outbox

log = logging.getLogger(__name__)


class Publisher:
    """Outbox -> MQTT. ``client`` is a connected-or-reconnecting paho client (its network I/O run by
    paho's thread, or by the owner's loop)."""

    def __init__(self, client: Any, outbox: Outbox, inflight: int = 200, resend_after_s: float = 30.0,
                 on_acked: Any = None, replay_window_s: float = 120.0, replay_delay_s: float = 5.0,
                 on_replay: Any = None) -> None:
        self.client = client
        self.outbox = outbox
        self.max_inflight = int(inflight)
        self.resend_after_s = resend_after_s
        self.on_acked = on_acked  # callback(list[(kind, bytes)]) for metrics
        self._lock = threading.Lock()
        self._inflight: dict[int, tuple[int, str, int, float]] = {}  # mid -> (outbox id, kind, size, sent mono)
        self._acked: deque[int] = deque()
        self._cursor = 0  # last outbox id handed to paho
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.connected = False
        self.replay_window_s = float(replay_window_s)
        self.replay_delay_s = float(replay_delay_s)
        self.on_replay = on_replay  # callback(int) for metrics
        self._ever_connected = False
        self._down_since_ms: int | None = None  # wall clock of the first unexpected disconnect
        self._replay_since_ms: int | None = None  # requeue entries acknowledged since then ...
        self._replay_at = 0.0  # ... at this monotonic time (connected)
        self.replays = 0
        self.replayed = 0
        self._next_prune = 0.0
        self.last_progress_mono = time.monotonic()
        self._last_step = 0.0
        self.refused = 0
        self._thread = threading.Thread(target=self._run, name="outbox-publisher", daemon=True)

    # -- paho callbacks (network I/O) ------------------------------------------------------

    def on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected = not reason.is_failure
        if self.connected:
            with self._lock:
                if self._down_since_ms is not None and self.replay_window_s > 0:
                    since = self._down_since_ms - int(self.replay_window_s * 1000)
                    self._replay_since_ms = since if self._replay_since_ms is None else min(self._replay_since_ms, since)
                    self._replay_at = time.monotonic() + self.replay_delay_s
                    log.warning("upstream back (session present: %s): replaying what the broker acknowledged "
                                "since %.0f s before the disconnect in %.0f s", getattr(flags, "session_present", "?"),
                                self.replay_window_s, self.replay_delay_s)
                self._down_since_ms = None
                self._ever_connected = True
        self._wake.set()

    def on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected = False
        with self._lock:
            if self._ever_connected and self._down_since_ms is None and not self._stop.is_set():
                self._down_since_ms = int(time.time() * 1000)

    def on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self.refused += 1
            log.error("broker refused an upstream message (mid %s): %s", mid, reason)
        with self._lock:
            self._acked.append(mid)
        self._wake.set()

    # -- thread ---------------------------------------------------------------------------------

    def start(self) -> "Publisher":
        """Run the steps on a thread of its own (else the owner calls :meth:`step`)."""
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def due(self) -> bool:
        """For an owner's loop: woken (new entries, acks, a connect) or 50 ms since the last step."""
        return self._wake.is_set() or time.monotonic() - self._last_step >= 0.05

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def idle(self) -> bool:
        """Nothing waiting and nothing in flight."""
        return len(self.outbox) == 0 and not self._inflight

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.05)
            if not self.step():
                time.sleep(0.5)

    def step(self) -> bool:
        """Settle acknowledgements, replay or resend when due, hand more entries to paho, prune.
        False after an error (logged; the health check reports an outbox that stops draining)."""
        self._wake.clear()
        self._last_step = time.monotonic()
        try:
            self._settle_acks()
            if self.connected:
                self._maybe_replay()
                self._check_resend()
                self._send_more()
            self._maybe_prune()
        except Exception:  # noqa: BLE001 - keep draining; the health check reports a stuck outbox
            log.exception("outbox publisher error")
            return False
        return True

    def _settle_acks(self) -> None:
        with self._lock:
            mids = list(self._acked)
            self._acked.clear()
        done: list[int] = []
        kinds: list[tuple[str, int]] = []
        for mid in mids:
            entry = self._inflight.pop(mid, None)
            if entry is not None:
                done.append(entry[0])
                kinds.append((entry[1], entry[2]))
        if done:
            self.outbox.delete(done)
            self.last_progress_mono = time.monotonic()
            if self.on_acked is not None:
                self.on_acked(kinds)

    def _maybe_replay(self) -> None:
        with self._lock:
            since = self._replay_since_ms
            if since is None or time.monotonic() < self._replay_at:
                return
            self._replay_since_ms = None
        n = self.outbox.requeue_acked(since)
        self.replays += 1
        self.replayed += n
        if self.on_replay is not None:
            self.on_replay(n)
        first = self.outbox.first_id()
        if first is not None:
            self._cursor = min(self._cursor, first - 1)
        log.warning("upstream replay: %d acknowledged message(s) published again after the reconnect", n)

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        with self._lock:  # keep what a pending replay needs, however long the outage
            if self._down_since_ms is not None or self._replay_since_ms is not None:
                return
        if now >= self._next_prune:
            self._next_prune = now + 5.0
            self.outbox.prune()

    def _check_resend(self) -> None:
        if not self._inflight:
            return
        oldest = min(v[3] for v in self._inflight.values())
        if time.monotonic() - oldest > self.resend_after_s:
            log.warning("upstream: %d message(s) unacknowledged for %.0f s; resending from the oldest",
                        len(self._inflight), self.resend_after_s)
            self._inflight.clear()
            first = self.outbox.first_id()
            self._cursor = 0 if first is None else first - 1

    def _send_more(self) -> None:
        room = self.max_inflight - len(self._inflight)
        while room > 0 and self.connected and not self._stop.is_set():
            entries = self.outbox.peek(after_id=self._cursor, limit=min(room, 500))
            if not entries:
                return
            now = time.monotonic()
            flying = {v[0] for v in self._inflight.values()}
            for e in entries:
                self._cursor = e.id
                if e.id in flying:  # requeued while its own PUBACK is still awaited
                    continue
                info = self.client.publish(e.topic, e.payload, qos=1, retain=e.retain)
                if info.rc != 0:  # not connected any more: paho queued it; it resends on reconnect
                    self.connected = self.client.is_connected()
                self._inflight[info.mid] = (e.id, e.kind, len(e.payload), now)
                room -= 1
                if not self.connected:
                    return

    def drain(self, timeout_s: float, pump: Callable[[], Any] | None = None) -> bool:
        """Wait until the outbox is empty and acknowledged (shutdown); False on timeout.

        Without a thread of its own, ``pump`` runs the client's network I/O between steps."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._wake.set()
            if self.idle():
                return True
            if pump is None:
                time.sleep(0.05)
            else:
                self.step()
                pump()
        return self.idle()
