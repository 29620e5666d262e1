"""A device's paho client (shared adapter): username = client id = device id, persistent MQTT 5 session."""

from __future__ import annotations

from typing import Any

from emon_core.adapters.mqtt import create_client
from emon_core.adapters.mqtt import device_password as _derived_password
from emon_core.settings import MqttSettings

MAX_INFLIGHT = 20
CONNECT_TIMEOUT_S = 2.0  # the TCP connect blocks the fleet worker: keep it short


def device_password(device_id: str) -> str:
    """The device's MQTT password (derived by the shared adapter, never stored)."""
    return _derived_password(device_id)


def new_device_client(device_id: str, settings: MqttSettings, password: str | None = None) -> Any:
    """An unconnected client for ``device_id`` (TLS and TCP_NODELAY as the adapter sets them).

    No network thread is started: the fleet drives the client. Chain connection callbacks
    through ``client.emon_user_on_connect`` (the adapter owns ``on_connect``).
    """
    creds = settings.with_user(device_id, password if password is not None else device_password(device_id))
    client = create_client(creds, client_id=device_id, clean_start=False, max_inflight=MAX_INFLIGHT)
    client.connect_timeout = CONNECT_TIMEOUT_S
    return client


def connect(client: Any, settings: MqttSettings, session_expiry_s: int) -> None:
    """Open the TCP connection and send CONNECT with ``clean_start=False`` and a session expiry.

    Returns without waiting for CONNACK (the fleet's selector loop reads it). Raises
    OSError when the broker cannot be reached; the fleet retries with backoff.
    """
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = int(session_expiry_s)
    client.connect(
        settings.host,
        settings.port,
        keepalive=settings.keepalive_s,
        clean_start=False,
        properties=props,
    )
