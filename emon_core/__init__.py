"""E-Monitor shared core: message contracts, settings, topic names and thin transport adapters."""

__version__ = "0.1.0"
