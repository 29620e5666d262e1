"""Thin paho-mqtt 2.x adapter: clients from MqttSettings, TCP_NODELAY, resubscribe, bounded connect.

Usage::

    client = create_client(settings, client_id="gateway-site-00",
                           subscriptions=[("ecg/site-00/+/frames", 1)])
    client.on_message = handle          # on_connect is ours: pass on_connect= to chain
    connect_and_wait(client, settings, timeout_s=10)   # starts the network thread

Development device and unit passwords are derived, never stored: HMAC-SHA256 of the
username keyed by the ``device_secret`` that ``emon services up`` writes into the state
directory's ``credentials.json`` (or ``EMON_MQTT_DEVICE_SECRET``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import select
import socket
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from emon_core.errors import ConfigError, ServiceError
from emon_core.settings import MqttSettings, credentials_file

log = logging.getLogger(__name__)

DEVICE_SECRET_ENV = "EMON_MQTT_DEVICE_SECRET"
OnConnect = Callable[[mqtt.Client, Any, Any, Any, Any], None]
# CONNACK reason codes that mean "your credentials/identity are wrong", not "broker down".
_AUTH_FAILURES = {0x84, 0x85, 0x86, 0x87, 0x8C, 4, 5}


# --- derived development passwords ------------------------------------------------------


@lru_cache(maxsize=4)
def _secret_from_file(path: str, mtime_ns: int) -> str:
    del mtime_ns  # part of the cache key only: a regenerated file is re-read
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read dev credentials {path}: {err}") from err
    secret = data.get("device_secret", "")
    if not secret:
        raise ConfigError(f"{path} has no device_secret (run `emon services up`)")
    return str(secret)


def device_secret() -> str:
    """The secret device/unit passwords derive from (env var, else the state dir's credentials)."""
    env = os.environ.get(DEVICE_SECRET_ENV, "")
    if env:
        return env
    path = credentials_file()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as err:
        raise ConfigError(
            f"no device secret: {path} missing and {DEVICE_SECRET_ENV} unset (run `emon services up`)"
        ) from err
    return _secret_from_file(str(path), mtime)


def derive_password(username: str, secret: str | None = None) -> str:
    """HMAC-SHA256(secret, username) as 32 hex characters."""
    key = (secret if secret is not None else device_secret()).encode()
    return hmac.new(key, username.encode(), hashlib.sha256).hexdigest()[:32]


def device_password(device_id: str) -> str:
    """MQTT password of a device (username = device id), derived from the dev secret."""
    return derive_password(device_id)


def unit_password(unit_id: str) -> str:
    """MQTT password of a paramedic unit (username = unit id), derived from the dev secret."""
    return derive_password(unit_id)


# --- client factory ---------------------------------------------------------------------


@dataclass(frozen=True)
class Will:
    """Last will: published by the broker when the client vanishes without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class BufferedSocket:
    """A connected TCP socket whose ``recv`` serves paho's small reads from one large read.

    paho reads every incoming packet with three or more ``recv`` calls (the type byte, each
    length byte, then the body) and one packet per ``select``; each call releases and
    retakes the GIL, which a busy processing thread in the same process then makes wait
    (up to the 5 ms switch interval). Here one ``recv(64 KiB)`` feeds many packets, and
    ``pending()`` (paho's hook for TLS sockets) tells paho's loop that buffered packets are
    ready without waiting in ``select``. Everything else is the socket's own.

    With ``coalesce_writes`` (only for a client driven by :class:`CallerLoop`, which calls
    :meth:`flush` at the end of every round) ``send`` collects what paho writes, e.g. one
    PUBACK per received message, and :meth:`flush` sends it in one call.
    """

    __slots__ = ("_sock", "_buf", "_pos", "_size", "_coalesce", "_out")

    def __init__(self, sock: socket.socket, size: int = 65536, coalesce_writes: bool = False) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self._size = size
        self._coalesce = coalesce_writes
        self._out = bytearray()

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(self._size)  # BlockingIOError when nothing is there, b"" at EOF
            if not data:
                return data
            self._buf, self._pos = data, 0
        out = self._buf[self._pos : self._pos + bufsize]
        self._pos += len(out)
        return out

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def send(self, data: bytes) -> int:
        if not self._coalesce:
            return self._sock.send(data)
        self._out += data
        return len(data)

    def flush(self) -> int:
        """Send collected writes; returns the bytes still waiting (the kernel's buffer was full)."""
        while self._out:
            try:
                n = self._sock.send(self._out)
            except BlockingIOError:
                break
            del self._out[:n]
        return len(self._out)

    def close(self) -> None:
        """Send what was collected (e.g. paho's DISCONNECT, written just before it closes) and close."""
        if self._out:
            try:
                self.flush()
            except OSError:
                pass
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class EmonMqttClient(mqtt.Client):
    """paho Client that remembers its subscriptions and reports the last CONNACK.

    With ``emon_buffered_reads`` (set by :func:`create_client`) plain TCP connections are
    wrapped in :class:`BufferedSocket`; only for clients run by paho's own loop
    (``loop_start``) or by :class:`CallerLoop`, which look at ``pending()``: a plain
    ``select`` would not see buffered packets.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.emon_buffered_reads = False
        self.emon_coalesce_writes = False
        self.emon_subscriptions: list[tuple[str, int]] = []
        self.emon_connected = threading.Event()
        self.emon_connack: Any = None
        self.emon_user_on_connect: OnConnect | None = None
        self.emon_clean_start = True

    def _create_socket(self) -> Any:  # paho 2.x hook: every (re)connect creates its socket here
        sock = super()._create_socket()
        if self.emon_buffered_reads and type(sock) is socket.socket:  # not TLS, not websockets
            return BufferedSocket(sock, coalesce_writes=self.emon_coalesce_writes)
        return sock

    def add_subscription(self, topic: str, qos: int = 1) -> None:
        """Subscribe now (if connected) and again after every reconnect."""
        self.emon_subscriptions.append((topic, qos))
        if self.is_connected():
            self.subscribe(topic, qos=qos)


def set_nodelay(sock: Any) -> None:
    """Disable Nagle on the MQTT socket so small messages leave at once."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError) as err:  # e.g. a websocket wrapper
        log.debug("TCP_NODELAY not set: %s", err)


def _on_socket_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    set_nodelay(sock)


def _on_connect(client: EmonMqttClient, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
    client.emon_connack = reason
    if not reason.is_failure:
        sock = client.socket()
        if sock is not None:
            set_nodelay(sock)
        for topic, qos in client.emon_subscriptions:
            client.subscribe(topic, qos=qos)
    client.emon_connected.set()
    if client.emon_user_on_connect is not None:
        client.emon_user_on_connect(client, userdata, flags, reason, props)


def create_client(
    settings: MqttSettings,
    *,
    client_id: str,
    subscriptions: Sequence[tuple[str, int]] = (),
    will: Will | None = None,
    on_connect: OnConnect | None = None,
    manual_ack: bool = False,
    clean_start: bool = True,
    protocol: int = mqtt.MQTTv5,
    userdata: Any = None,
    max_inflight: int = 100,
    buffered_reads: bool = False,
) -> EmonMqttClient:
    """A configured, unconnected client: credentials, TLS, will, resubscribe, TCP_NODELAY.

    ``on_connect`` is chained after the resubscription; do not assign ``client.on_connect``.
    With ``manual_ack=True`` received QoS>0 messages are acknowledged only by
    ``client.ack(msg.mid, msg.qos)``. ``clean_start`` is passed to :func:`connect_and_wait`
    for MQTT 5 and as ``clean_session`` for MQTT 3.1.1. ``buffered_reads=True`` suits
    subscribers receiving many messages on paho's network thread (see :class:`BufferedSocket`).
    """
    v5 = protocol == mqtt.MQTTv5
    client = EmonMqttClient(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if v5 else clean_start,
        protocol=protocol,
        userdata=userdata,
        manual_ack=manual_ack,
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.resolved_password())
    if settings.tls_ca_file is not None:
        if not Path(settings.tls_ca_file).exists():
            raise ConfigError(f"EMON_MQTT_TLS_CA_FILE: {settings.tls_ca_file} does not exist")
        client.tls_set(ca_certs=str(settings.tls_ca_file))
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    client.emon_clean_start = clean_start
    client.emon_buffered_reads = buffered_reads
    client.emon_subscriptions = list(subscriptions)
    client.emon_user_on_connect = on_connect
    client.on_connect = _on_connect
    client.on_socket_open = _on_socket_open
    client.max_inflight_messages_set(max_inflight)
    client.reconnect_delay_set(1, 10)
    return client


def connect_and_wait(
    client: EmonMqttClient,
    settings: MqttSettings,
    *,
    timeout_s: float = 10.0,
    clean_start: bool | None = None,
    session_expiry_s: int | None = None,
    start_loop: bool = True,
) -> None:
    """Connect, start the network thread and wait for CONNACK (bounded).

    Raises ServiceError when the broker cannot be reached in time and ConfigError when
    it refuses the credentials. ``clean_start`` defaults to the one given to
    :func:`create_client`. With ``start_loop=False`` the caller drives the network
    loop, so this returns right after sending CONNECT (check ``client.emon_connected``). With MQTT 5, ``session_expiry_s`` keeps the session
    (and queued QoS 1 messages) across disconnects.
    """
    where = f"{settings.host}:{settings.port}"
    kwargs: dict[str, Any] = {"keepalive": settings.keepalive_s}
    if client.protocol == mqtt.MQTTv5:
        kwargs["clean_start"] = client.emon_clean_start if clean_start is None else clean_start
        if session_expiry_s is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = int(session_expiry_s)
            kwargs["properties"] = props
    client.emon_connected.clear()
    try:
        client.connect(settings.host, settings.port, **kwargs)
    except OSError as err:
        raise ServiceError(
            f"MQTT broker not reachable at {where}: {err} (start it with `emon services up`)"
        ) from err
    if not start_loop:
        return
    client.loop_start()
    if not client.emon_connected.wait(timeout_s):
        client.loop_stop()
        raise ServiceError(f"MQTT broker at {where}: no CONNACK within {timeout_s:.0f} s")
    try:
        _raise_if_refused(client, settings)
    except (ConfigError, ServiceError):
        client.loop_stop()
        raise


def _raise_if_refused(client: EmonMqttClient, settings: MqttSettings) -> None:
    """ConfigError for refused credentials, ServiceError for any other refusing CONNACK."""
    reason = client.emon_connack
    if reason is not None and reason.is_failure:
        where = f"{settings.host}:{settings.port}"
        user = getattr(client, "username", None) or settings.username or "<anonymous>"
        if int(getattr(reason, "value", 0)) in _AUTH_FAILURES:
            raise ConfigError(f"MQTT login refused at {where} for user {user!r}: {reason}")
        raise ServiceError(f"MQTT connect refused at {where} for user {user!r}: {reason}")


class CallerLoop:
    """Runs one client's network I/O on the caller's thread, in rounds: paho's external-loop
    API (``loop_read``/``loop_write``/``loop_misc``), no network thread and no wake-up pipe.

    For a subscriber whose processing thread is busy anyway (a gateway's intake): with paho's
    own thread, every received message crossed threads (a hand-off queue, GIL switches,
    paho's wake-up socket pair for each PUBACK) and woke the process. Read in rounds by the
    thread that processes them, a round takes everything that arrived since the last one
    from one ``recv`` (:class:`BufferedSocket`) and sends all its PUBACKs in one ``send``.
    1,000 QoS 1 messages/s of 1.2 kB with 0.4 ms of work each: 0.30-0.32 ms of CPU per message
    beyond the work through paho's thread and a queue, 0.10-0.11 ms in 20 ms rounds here, for
    ~13 ms more latency at the median (``scripts/bench_intake.py``, 2026-12-03).

    Reconnects after a lost connection with a backoff, and keeps the connection alive
    (``loop_misc``), as long as :meth:`poll` is called at least every keepalive interval.
    All calls must come from one thread.
    """

    def __init__(self, client: EmonMqttClient, settings: MqttSettings, *, clean_start: bool | None = None,
                 session_expiry_s: int | None = None, reconnect_s: tuple[float, float] = (1.0, 2.0),
                 misc_interval_s: float = 0.5) -> None:
        client.emon_buffered_reads = True
        client.emon_coalesce_writes = True
        self.client = client
        self.settings = settings
        self._clean_start = clean_start
        self._expiry = session_expiry_s
        self._backoff = reconnect_s
        self._retry_in = reconnect_s[0]
        self._retry_at = 0.0
        self._misc_every = misc_interval_s
        self._misc_at = 0.0
        self._connect_called = False

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and wait for the CONNACK (bounded); errors as :func:`connect_and_wait`'s."""
        connect_and_wait(self.client, self.settings, timeout_s=timeout_s, clean_start=self._clean_start,
                         session_expiry_s=self._expiry, start_loop=False)
        self._connect_called = True
        self._flush()  # the CONNECT
        deadline = time.monotonic() + timeout_s
        while not self.client.emon_connected.is_set():
            if time.monotonic() > deadline:
                self._close()
                raise ServiceError(f"MQTT broker at {self.settings.host}:{self.settings.port}: "
                                   f"no CONNACK within {timeout_s:.0f} s")
            self.poll(wait_s=0.05)
        try:
            _raise_if_refused(self.client, self.settings)
        except (ConfigError, ServiceError):
            self._close()
            raise

    def poll(self, max_packets: int = 256, wait_s: float = 0.0) -> bool:
        """One round: wait up to ``wait_s`` for data, read at most ``max_packets`` packets
        (callbacks run here), send what paho queued, keepalive, reconnect when due.

        Returns True when more data is already waiting (the round stopped at its limit).
        """
        client = self.client
        now = time.monotonic()
        sock = client.socket()
        if sock is None:
            if self._connect_called and now >= self._retry_at:
                self._reconnect(now)
            return False
        more = False
        readable = _pending(sock) > 0 or _readable(sock, wait_s)
        n = 0
        while readable:
            if n >= max_packets:
                more = True
                break
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or client.socket() is None:
                self._lost(now)
                return False
            n += 1
            readable = _pending(sock) > 0 or _readable(sock, 0.0)
        if now >= self._misc_at:
            self._misc_at = now + self._misc_every
            client.loop_misc()  # keepalive; closes a connection whose PINGRESP is overdue
        self._flush()
        return more

    def disconnect(self) -> None:
        """Send DISCONNECT (a session with an expiry stays on the broker) and close."""
        self._connect_called = False
        if self.client.socket() is not None:
            self.client.disconnect()
            self._flush()
        self._close()

    def _flush(self) -> None:
        client = self.client
        while client.socket() is not None and client.want_write():  # e.g. packets left by a full buffer
            if client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                break
            if client.want_write():
                break  # the kernel's buffer is full: next round
        sock = client.socket()
        if isinstance(sock, BufferedSocket):
            try:
                sock.flush()
            except OSError as err:  # the next read sees the lost connection
                log.debug("MQTT send failed: %s", err)

    def _lost(self, now: float) -> None:
        if self.client.socket() is not None:
            self._close()
        self._retry_at = now + self._retry_in

    def _reconnect(self, now: float) -> None:
        try:
            self.client.reconnect()
            self._retry_in = self._backoff[0]
        except OSError as err:
            log.debug("MQTT reconnect failed: %s", err)
            self._retry_in = min(self._retry_in * 2, self._backoff[1])
            self._retry_at = now + self._retry_in
        self._flush()

    def _close(self) -> None:
        try:
            self.client._reset_sockets()  # paho's own close (no public one without a DISCONNECT)
        except OSError:
            pass


def _pending(sock: Any) -> int:
    pending = getattr(sock, "pending", None)
    return pending() if pending is not None else 0


def _readable(sock: Any, timeout: float) -> bool:
    try:
        return bool(select.select([sock], [], [], timeout)[0])
    except (OSError, ValueError):  # closed under us: the next read reports it
        return True


def service_client(settings: MqttSettings, username: str, client_id: str, **kwargs: Any) -> EmonMqttClient:
    """A client for a service account (``gateway``, ``bridge``); password from settings/dev creds."""
    user_settings = settings if settings.username == username else settings.with_user(username)
    if not user_settings.resolved_password():
        raise ConfigError(f"no MQTT password for service account {username!r} (set EMON_MQTT_PASSWORD)")
    return create_client(user_settings, client_id=client_id, **kwargs)
