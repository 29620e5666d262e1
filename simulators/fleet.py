"""A fleet of virtual devices driven by a few worker threads, each one selector loop.

Every device has its own paho client (its own MQTT identity and TCP connection), but no
paho network thread: worker ``w`` owns devices ``w, w + W, ...`` and runs one loop that
waits on all their sockets with a selector, calls ``loop_read``/``loop_write`` on the
ready ones, produces the frames that fell due (real-time pacing from a heap, or as fast as
the acknowledgements allow with ``fast``), calls ``loop_misc`` for keepalives, and
reconnects dropped clients with jittered backoff. All paho calls for a client therefore
happen on one thread.
"""

from __future__ import annotations

import heapq
import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from emon_core.adapters.mqtt import set_nodelay
from simulators.device import DeviceStats, VirtualDevice, now_epoch_ms

log = logging.getLogger(__name__)

MISC_INTERVAL_S = 0.5
FAST_WINDOW = 8  # frames outstanding per device in --fast mode
CONNECT_WINDOW = 100  # connection handshakes in progress at once
MAX_BATCH = 200  # frames produced per loop turn before the sockets are serviced again


@dataclass(frozen=True)
class FleetOptions:
    frames_per_device: int
    fast: bool = False
    workers: int = 1
    connect_timeout_s: float = 30.0
    drain_timeout_s: float = 15.0


class _Worker(threading.Thread):
    def __init__(self, wid: int, devices: list[VirtualDevice], fleet: "Fleet") -> None:
        super().__init__(name=f"sim-worker-{wid}", daemon=True)
        self.devices = devices
        self.fleet = fleet
        self.stats = devices[0].stats if devices else DeviceStats()
        self.sel = selectors.DefaultSelector()
        self.heap: list[tuple[float, int]] = []
        self.error: BaseException | None = None
        self.loop_s = 0.0  # time spent doing work (not waiting in select)
        self.lateness_ms: list[float] = []  # how late each real-time frame was produced

    # socket bookkeeping, called by paho on this thread
    def _sock_open(self, client: Any, dev: VirtualDevice, sock: Any) -> None:
        set_nodelay(sock)
        self.sel.register(sock, selectors.EVENT_READ, dev)

    def _sock_close(self, client: Any, dev: VirtualDevice, sock: Any) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _sync_write(self, dev: VirtualDevice) -> None:
        client = dev.client
        sock = client.socket()
        if sock is None:
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.want_write() else 0)
        try:
            key = self.sel.get_key(sock)
        except (KeyError, ValueError):
            return
        if key.events != want:
            self.sel.modify(sock, want, dev)

    def attach(self, dev: VirtualDevice) -> None:
        client = dev.client
        client.on_socket_open = lambda c, u, s: self._sock_open(c, dev, s)
        client.on_socket_close = lambda c, u, s: self._sock_close(c, dev, s)
        if hasattr(client, "emon_user_on_connect"):  # the adapter's client owns on_connect
            client.emon_user_on_connect = dev.on_connect
        else:
            client.on_connect = dev.on_connect
        client.on_disconnect = dev.on_disconnect
        client.on_publish = dev.on_publish

    def _connect(self, dev: VirtualDevice) -> None:
        try:
            if dev.connect_called:
                dev.client.reconnect()
            else:
                dev.connect_called = True
                self.fleet.connect(dev)
            self._sync_write(dev)
        except OSError as err:
            self.stats.connect_failures += 1
            dev.on_disconnect(dev.client, None, None, None, None)
            log.debug("device %s: connect failed: %s", dev.device_id, err)

    def _shutdown(self) -> None:
        """Send DISCONNECT (the broker keeps the session: it has an expiry) and close."""
        for dev in self.devices:
            if dev.client.socket() is not None:
                dev.client.disconnect()
                try:
                    dev.client.loop_write()
                except OSError:
                    pass
        self.sel.close()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # surfaced by Fleet.run
            self.error = err
            log.exception("simulator worker crashed")

    def _run(self) -> None:
        fleet = self.fleet
        for dev in self.devices:
            self.attach(dev)
        # connect with at most CONNECT_WINDOW handshakes in progress (no SYN/CONNECT storm),
        # wait for the CONNACKs (bounded), then start the clocks together
        pending = list(self.devices)
        deadline = time.monotonic() + fleet.options.connect_timeout_s
        while time.monotonic() < deadline and not fleet.stop_event.is_set():
            in_progress = sum(1 for d in self.devices if d.connect_called and not d.connected and not d.failed)
            while pending and in_progress < CONNECT_WINDOW:
                self._connect(pending.pop(0))
                in_progress += 1
            if not pending and all(d.connected or d.failed for d in self.devices):
                break
            self._poll(0.02)
            self._misc(time.monotonic())
        for dev in pending:  # not even tried before the deadline
            self._connect(dev)
        fleet.ready.wait()
        if not fleet.options.fast:
            for i, dev in enumerate(self.devices):
                heapq.heappush(self.heap, (dev.due(), i))
        last_misc = 0.0
        while not fleet.stop_event.is_set():
            now = time.monotonic()
            if fleet.finish_event.is_set():
                timeout = 0.05
            elif fleet.options.fast:
                self._produce_fast()
                timeout = 0.0 if self._fast_pending() else 0.05
            else:
                self._produce_due(now)
                timeout = min(max(self.heap[0][0] - time.monotonic(), 0.0), 0.05) if self.heap else 0.05
            if now - last_misc >= MISC_INTERVAL_S:
                self._misc(now)
                last_misc = now
            if fleet.producing_done() and self._drained():
                break
            self._poll(timeout)
        self._shutdown()

    def _poll(self, timeout: float) -> None:
        events = self.sel.select(timeout)
        t0 = time.perf_counter()
        for key, mask in events:
            dev: VirtualDevice = key.data
            client = dev.client
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE and client.socket() is not None:
                client.loop_write()
            if dev.flush_pending and dev.connected:
                dev.flush_backlog(now_epoch_ms())
            self._sync_write(dev)
        self.loop_s += time.perf_counter() - t0

    def _misc(self, now: float) -> None:
        for dev in self.devices:
            if dev.client.socket() is not None:
                dev.client.loop_misc()
                self._sync_write(dev)
            elif dev.connect_called and not dev.failed and now >= dev.retry_at and not self.fleet.stop_event.is_set():
                self._connect(dev)

    def _produce_due(self, now: float) -> None:
        t0 = time.perf_counter()
        limit = self.fleet.options.frames_per_device
        budget = MAX_BATCH  # when behind, still service the sockets between batches
        while self.heap and self.heap[0][0] <= now and budget > 0:
            budget -= 1
            due, i = heapq.heappop(self.heap)
            dev = self.devices[i]
            self.lateness_ms.append((time.monotonic() - due) * 1000.0)
            dev.produce(now_epoch_ms())
            self._sync_write(dev)
            if dev.next_frame < limit:
                heapq.heappush(self.heap, (dev.due(), i))
        self.loop_s += time.perf_counter() - t0

    def _fast_pending(self) -> bool:
        limit = self.fleet.options.frames_per_device
        return any(d.next_frame < limit and d.outstanding < FAST_WINDOW and d.connected for d in self.devices)

    def _produce_fast(self) -> None:
        t0 = time.perf_counter()
        limit = self.fleet.options.frames_per_device
        for dev in self.devices:
            while dev.next_frame < limit and dev.outstanding < FAST_WINDOW and dev.connected:
                dev.produce(now_epoch_ms())
            self._sync_write(dev)
        self.loop_s += time.perf_counter() - t0

    def produced_all(self) -> bool:
        if self.fleet.finish_event.is_set():
            return True
        limit = self.fleet.options.frames_per_device
        return all(d.next_frame >= limit or d.failed for d in self.devices)

    def _drained(self) -> bool:
        return all(d.outstanding == 0 or d.failed for d in self.devices) or self.fleet.draining_expired()


class Fleet:
    """Runs ``devices`` on ``options.workers`` threads until each produced its frames."""

    def __init__(self, devices: list[VirtualDevice], options: FleetOptions, connect: Callable[[VirtualDevice], None]) -> None:
        self.devices = devices
        self.options = options
        self.connect = connect  # first connect of a device's client (blocking TCP connect + CONNECT)
        self.stop_event = threading.Event()  # stop now
        self.finish_event = threading.Event()  # produce no more frames, drain, then stop
        self.ready = threading.Event()
        self.drain_deadline: float | None = None
        n = max(1, min(options.workers, len(devices)))
        self.stats = [DeviceStats() for _ in range(n)]
        groups: list[list[VirtualDevice]] = [devices[w::n] for w in range(n)]
        for w, group in enumerate(groups):
            for dev in group:
                dev.stats = self.stats[w]
        self.workers = [_Worker(w, g, self) for w, g in enumerate(groups)]
        self.started_mono = 0.0

    def total(self) -> DeviceStats:
        out = DeviceStats()
        for s in self.stats:
            out.add(s)
        return out

    def producing_done(self) -> bool:
        done = all(w.produced_all() for w in self.workers)
        if done and self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + self.options.drain_timeout_s
        return done

    def draining_expired(self) -> bool:
        return self.drain_deadline is not None and time.monotonic() > self.drain_deadline

    def in_flight(self) -> int:
        return sum(len(d.unacked) for d in self.devices)

    def backlog(self) -> int:
        return sum(len(d.backlog) for d in self.devices)

    def connected(self) -> int:
        return sum(1 for d in self.devices if d.connected)

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def wait_connected(self, timeout_s: float) -> None:
        """Block until every device connected or was refused (or the timeout), then start clocks."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (self.stop_event.is_set() or self.finish_event.is_set()):
            if all(d.connected or d.failed for d in self.devices):
                break
            time.sleep(0.05)
        epoch_ms, mono = now_epoch_ms(), time.monotonic()
        n = len(self.devices)
        if self.options.fast and self.options.frames_per_device < 10**9 and self.devices:
            # device clocks end near "now" instead of running ahead of the wall clock
            epoch_ms -= int(self.options.frames_per_device * self.devices[0].frame_s * 1000)
        for i, dev in enumerate(self.devices):
            # spread devices over one frame period so publishes are uniform, not bursty
            phase = (i / n) * dev.frame_s if not self.options.fast else 0.0
            dev.start(epoch_ms + int(phase * 1000), mono + phase)
        self.started_mono = mono
        self.ready.set()

    def join(self, timeout: float | None = None) -> None:
        for w in self.workers:
            w.join(timeout)

    def alive(self) -> bool:
        return any(w.is_alive() for w in self.workers)

    def errors(self) -> list[BaseException]:
        return [w.error for w in self.workers if w.error is not None]

    def finish(self) -> None:
        """Produce no more frames; workers stop once their frames are acknowledged."""
        self.finish_event.set()
        self.ready.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.ready.set()

    def drop_connections(self) -> int:
        """Abruptly break every device's TCP connection (no DISCONNECT), for fault tests."""
        n = 0
        for dev in self.devices:
            sock = dev.client.socket() if dev.client is not None else None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    n += 1
                except OSError:
                    pass
        return n

    def worker_busy_s(self) -> float:
        return sum(w.loop_s for w in self.workers)

    def lateness_ms(self) -> list[float]:
        return [x for w in self.workers for x in w.lateness_ms]
