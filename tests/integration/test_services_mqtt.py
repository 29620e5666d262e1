"""Mosquitto as `emon services up` runs it: credentials, ACL per device, shared subscriptions, TLS."""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
import uuid
from typing import Any

import pytest

from emon_core.adapters import mqtt as adapter
from emon_core.errors import ConfigError
from emon_core.settings import MqttSettings, state_dir
from emon_core.topics import frames_topic, unit_position_topic

pytestmark = pytest.mark.services

DEVICE = "dev-02900"  # dev-029xx are reserved for integration tests
OTHER_DEVICE = "dev-02901"
UNIT = "unit-0990"
SITE = "site-it"


def _collector(settings: MqttSettings, user: str, topics: list[str], clients: list[Any]) -> queue.Queue:
    """Connect ``user`` (service account) subscribed to ``topics``; messages land in the queue."""
    inbox: queue.Queue = queue.Queue()
    subscribed = threading.Event()
    client = adapter.service_client(
        settings, user, f"it-{user}-{uuid.uuid4().hex[:6]}", subscriptions=[(t, 1) for t in topics]
    )
    client.on_message = lambda c, u, msg: inbox.put((msg.topic, msg.payload))
    pending = {"n": len(topics)}

    def on_subscribe(c: Any, u: Any, mid: int, rcs: Any, props: Any) -> None:
        pending["n"] -= 1
        if pending["n"] <= 0:
            subscribed.set()

    client.on_subscribe = on_subscribe
    clients.append(client)
    adapter.connect_and_wait(client, settings)
    assert subscribed.wait(10), f"{user} could not subscribe to {topics}"
    return inbox


def _identity(settings: MqttSettings, user: str, clients: list[Any], **kwargs: Any) -> Any:
    client = adapter.create_client(
        settings.with_user(user, adapter.derive_password(user)), client_id=f"{user}-{uuid.uuid4().hex[:6]}",
        **kwargs,
    )
    clients.append(client)
    return client


def _drain(inbox: queue.Queue, until_topic: str, timeout_s: float = 10) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            item = inbox.get(timeout=0.2)
        except queue.Empty:
            continue
        got.append(item)
        if item[0] == until_topic:
            return got
    raise AssertionError(f"no message on {until_topic} within {timeout_s} s; got {got}")


def test_device_publishes_and_gateway_receives(mqtt_settings: MqttSettings, mqtt_clients: list) -> None:
    inbox = _collector(mqtt_settings, "gateway", [f"ecg/{SITE}/+/frames"], mqtt_clients)
    dev = _identity(mqtt_settings, DEVICE, mqtt_clients)
    adapter.connect_and_wait(dev, mqtt_settings)
    payload = uuid.uuid4().bytes
    dev.publish(frames_topic(SITE, DEVICE), payload, qos=1).wait_for_publish(10)
    got = _drain(inbox, frames_topic(SITE, DEVICE))
    assert got[-1] == (frames_topic(SITE, DEVICE), payload)


def test_tcp_nodelay_is_set(mqtt_settings: MqttSettings, mqtt_clients: list) -> None:
    dev = _identity(mqtt_settings, DEVICE, mqtt_clients)
    adapter.connect_and_wait(dev, mqtt_settings)
    sock = dev.socket()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_anonymous_login_refused(mqtt_settings: MqttSettings, mqtt_clients: list) -> None:
    anon = adapter.create_client(mqtt_settings.with_user(""), client_id=f"anon-{uuid.uuid4().hex[:6]}")
    mqtt_clients.append(anon)
    with pytest.raises(ConfigError, match="refused"):
        adapter.connect_and_wait(anon, mqtt_settings, timeout_s=10)


def test_wrong_password_refused(mqtt_settings: MqttSettings, mqtt_clients: list) -> None:
    bad = adapter.create_client(mqtt_settings.with_user(DEVICE, "not-the-password"), client_id=DEVICE + "-bad")
    mqtt_clients.append(bad)
    with pytest.raises(ConfigError, match=DEVICE):
        adapter.connect_and_wait(bad, mqtt_settings, timeout_s=10)


def test_device_denied_on_another_devices_topic(mqtt_settings: MqttSettings, mqtt_clients: list) -> None:
    inbox = _collector(mqtt_settings, "gateway", [f"ecg/{SITE}/+/frames"], mqtt_clients)
    dev = _identity(mqtt_settings, DEVICE, mqtt_clients)
    acks: dict[int, Any] = {}
    acked = threading.Event()

    def on_publish(c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        acks[mid] = reason
        acked.set()

    dev.on_publish = on_publish
    adapter.connect_and_wait(dev, mqtt_settings)
    forged = dev.publish(frames_topic(SITE, OTHER_DEVICE), b"forged", qos=1)
    forged.wait_for_publish(10)
    # The device's own frame afterwards is a barrier: once it arrived, the forged one would have too.
    dev.publish(frames_topic(SITE, DEVICE), b"own", qos=1).wait_for_publish(10)
    got = _drain(inbox, frames_topic(SITE, DEVICE))
    assert all(topic != frames_topic(SITE, OTHER_DEVICE) for topic, _ in got)
    assert acks[forged.mid].value == 0x87, f"PUBACK reason {acks[forged.mid]}"  # Not authorized


def test_device_cannot_read_other_frames(mqtt_settings: MqttSettings, mqtt_clients: list) -> None:
    # Mosquitto 2.0 grants the SUBSCRIBE but checks `read` on every delivery: nothing arrives.
    spy_inbox: queue.Queue = queue.Queue()
    spy = _identity(mqtt_settings, OTHER_DEVICE, mqtt_clients, subscriptions=[(f"ecg/{SITE}/+/frames", 1)])
    spy.on_message = lambda c, u, msg: spy_inbox.put(msg.topic)
    adapter.connect_and_wait(spy, mqtt_settings)
    inbox = _collector(mqtt_settings, "gateway", [f"ecg/{SITE}/+/frames"], mqtt_clients)
    dev = _identity(mqtt_settings, DEVICE, mqtt_clients)
    adapter.connect_and_wait(dev, mqtt_settings)
    dev.publish(frames_topic(SITE, DEVICE), b"private", qos=1).wait_for_publish(10)
    _drain(inbox, frames_topic(SITE, DEVICE))
    time.sleep(0.5)
    assert spy_inbox.empty(), "a device received another device's frames"


def test_bridge_shared_subscription_gets_unit_positions(mqtt_settings: MqttSettings, mqtt_clients: list) -> None:
    # A group of our own: a running `emon bridge` in group "bridge" would take our messages.
    group = f"it{uuid.uuid4().hex[:8]}"
    inbox = _collector(mqtt_settings, "bridge", [f"$share/{group}/units/+/position"], mqtt_clients)
    unit = _identity(mqtt_settings, UNIT, mqtt_clients)
    adapter.connect_and_wait(unit, mqtt_settings)
    unit.publish(unit_position_topic("unit-0991"), b"forged", qos=1).wait_for_publish(10)
    unit.publish(unit_position_topic(UNIT), b"pos", qos=1).wait_for_publish(10)
    got = _drain(inbox, unit_position_topic(UNIT))
    assert got[-1] == (unit_position_topic(UNIT), b"pos")
    assert all(t != unit_position_topic("unit-0991") for t, _ in got)


def test_gateway_writes_edge_and_bridge_reads_it(mqtt_settings: MqttSettings, mqtt_clients: list) -> None:
    group = f"it{uuid.uuid4().hex[:8]}"
    inbox = _collector(mqtt_settings, "bridge", [f"$share/{group}/edge/{SITE}/+/events"], mqtt_clients)
    gw = adapter.service_client(mqtt_settings, "gateway", f"it-gw-{uuid.uuid4().hex[:6]}")
    mqtt_clients.append(gw)
    adapter.connect_and_wait(gw, mqtt_settings)
    topic = f"edge/{SITE}/{DEVICE}/events"
    gw.publish(topic, b"flagged", qos=1).wait_for_publish(10)
    assert _drain(inbox, topic)[-1] == (topic, b"flagged")


def test_tls_listener(mqtt_settings: MqttSettings, mqtt_clients: list) -> None:
    ca = state_dir() / "mosquitto" / "tls" / "ca.crt"
    if not ca.exists():
        pytest.skip(f"{ca} missing (TLS listener not configured)")
    tls_port = int(os.environ.get("EMON_MQTT_TLS_PORT", "8883"))
    tls = mqtt_settings.model_copy(update={"port": tls_port, "tls_ca_file": ca, "host": "localhost"})
    inbox = _collector(tls, "gateway", [f"ecg/{SITE}/+/frames"], mqtt_clients)
    dev = _identity(tls, DEVICE, mqtt_clients)
    adapter.connect_and_wait(dev, tls)
    dev.publish(frames_topic(SITE, DEVICE), b"tls", qos=1).wait_for_publish(10)
    assert _drain(inbox, frames_topic(SITE, DEVICE))[-1][1] == b"tls"


def test_an_away_gateways_session_keeps_more_than_ten_seconds_of_a_full_site(mqtt_settings: MqttSettings,
                                                                              mqtt_clients: list) -> None:
    """A gateway's intake session queues ~1,000 frames/s while the gateway restarts. Mosquitto's
    queue cap dropped everything past 10,000 messages (10 s of a 1,000-device site); now 15,000
    2.4 KB frames published while the subscriber is away all reach it when it is back."""
    topic = "edge/site-02/dev-02997/events"
    cid = f"it-queue-{uuid.uuid4().hex[:8]}"
    s = mqtt_settings.with_user("bridge")
    sub = adapter.create_client(s, client_id=cid, subscriptions=[(topic, 1)])
    adapter.connect_and_wait(sub, s, clean_start=False, session_expiry_s=600)
    time.sleep(0.5)
    sub.disconnect()
    sub.loop_stop()
    g = mqtt_settings.with_user("gateway")
    pub = adapter.create_client(g, client_id=f"{cid}-pub", max_inflight=200)
    mqtt_clients.append(pub)
    adapter.connect_and_wait(pub, g)
    n = 15_000
    sent = []
    for i in range(n):
        sent.append(pub.publish(topic, b"x" * 2400, qos=1))
        if i % 500 == 499:  # let the network thread keep up with paho's queue
            time.sleep(0.02)
    for info in sent:  # every one acknowledged by the broker
        info.wait_for_publish(60)
    got = [0]
    sub = adapter.create_client(s, client_id=cid, subscriptions=[(topic, 1)])
    sub.on_message = lambda c, u, m: got.__setitem__(0, got[0] + 1)
    mqtt_clients.append(sub)
    adapter.connect_and_wait(sub, s, clean_start=False, session_expiry_s=0)
    last, deadline = -1, time.monotonic() + 60
    while got[0] != last and got[0] < n and time.monotonic() < deadline:
        last = got[0]
        time.sleep(2.0)
    assert got[0] == n, f"{n - got[0]} of {n} dropped by the broker"


def test_caller_loop_reads_in_rounds_acknowledges_and_comes_back_after_losing_its_connection(
        mqtt_settings: MqttSettings, mqtt_clients: list) -> None:
    """The gateway's intake (CallerLoop, no network thread): every message once, in order, with
    the PUBACKs of a round sent together; a takeover of its client id drops the connection, and
    the loop reconnects to its persistent session and gets what was published meanwhile."""
    topic = "edge/site-02/dev-02996/events"
    cid = f"it-caller-{uuid.uuid4().hex[:8]}"
    s = mqtt_settings.with_user("bridge")
    got: list[bytes] = []
    connects: list[bool] = []
    sub = adapter.create_client(s, client_id=cid, subscriptions=[(topic, 1)],
                                on_connect=lambda c, u, f, reason, p: connects.append(f.session_present))
    sub.on_message = lambda c, u, m: got.append(m.payload)
    loop = adapter.CallerLoop(sub, s, clean_start=False, session_expiry_s=60, reconnect_s=(0.2, 0.5))
    loop.connect(timeout_s=10)
    g = mqtt_settings.with_user("gateway")
    pub = adapter.create_client(g, client_id=f"{cid}-pub", max_inflight=500)
    mqtt_clients.append(pub)
    adapter.connect_and_wait(pub, g)

    def publish(lo: int, hi: int) -> None:
        for info in [pub.publish(topic, str(i).encode(), qos=1) for i in range(lo, hi)]:
            info.wait_for_publish(10)

    def poll_until(n: int, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            loop.poll(max_packets=64, wait_s=0.05)

    time.sleep(0.3)  # the SUBACK
    publish(0, 300)
    poll_until(300)
    assert [int(p) for p in got] == list(range(300))
    # the session takeover: the broker closes the loop's connection
    thief = adapter.create_client(s, client_id=cid)
    adapter.connect_and_wait(thief, s, clean_start=False, session_expiry_s=60)
    thief.disconnect()
    thief.loop_stop()
    publish(300, 400)  # queued on the session while nobody is connected
    deadline = time.monotonic() + 15
    while (not sub.is_connected() or len(got) < 400) and time.monotonic() < deadline:
        loop.poll(wait_s=0.05)
    loop.disconnect()
    assert connects == [False, True]  # reconnected, to the session it had
    # acknowledged messages are not sent again: each once (MQTT allows a duplicate only if its
    # PUBACK never reached the broker, and every round here ended with a flush)
    assert [int(p) for p in got] == list(range(400))
    # a session left behind: clear it
    clean = adapter.create_client(s, client_id=cid)
    adapter.connect_and_wait(clean, s, clean_start=True, session_expiry_s=0)
    clean.disconnect()
    clean.loop_stop()
