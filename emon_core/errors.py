"""The one error root of E-Monitor and the typed errors translated at boundaries."""

from __future__ import annotations


class EmonError(Exception):
    """Root of every error E-Monitor raises on purpose."""


class ContractError(EmonError, ValueError):
    """A message failed validation; ``reason`` is a short counter label (e.g. ``oversized``)."""

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class ConfigError(EmonError):
    """Settings are missing or invalid; the message names the key and the problem."""


class ServiceError(EmonError):
    """A backing service (Mosquitto, Kafka, Cassandra) could not be started or reached."""


class DeliveryError(EmonError):
    """A message could not be delivered downstream; the supervisor should restart us."""
