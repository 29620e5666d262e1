"""A device's paho client: its own identity (username = device id), persistent MQTT 5 session."""

from __future__ import annotations

from typing import Any

from emon_core.errors import ConfigError
from emon_core.settings import MqttSettings


def device_password(device_id: str) -> str:
    """The device's MQTT password, from the shared MQTT adapter (derived, never stored)."""
    try:
        from emon_core.adapters.mqtt import device_password as derive
    except ModuleNotFoundError as err:
        from emon_core.settings import dev_credentials

        password = dev_credentials().get(device_id)
        if password is None:
            raise ConfigError(
                f"no MQTT password for {device_id}: emon_core.adapters.mqtt is missing and "
                "no generated credentials exist (run `emon services up`)"
            ) from err
        return password
    return derive(device_id)


def new_device_client(device_id: str, settings: MqttSettings, password: str | None = None) -> Any:
    """A paho client for ``device_id``: MQTT 5, client id = username = device id.

    The client is not connected and no network thread is started; the fleet drives it.
    """
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=device_id,
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(device_id, password if password is not None else device_password(device_id))
    if settings.tls_ca_file is not None:
        client.tls_set(ca_certs=str(settings.tls_ca_file))
    client.max_inflight_messages_set(20)
    client.reconnect_delay_set(1, 10)
    return client


def connect(client: Any, settings: MqttSettings, session_expiry_s: int) -> None:
    """Start the TCP connection and send CONNECT with ``clean_start=False`` and a session expiry.

    Raises OSError when the broker cannot be reached (the fleet retries with backoff).
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
