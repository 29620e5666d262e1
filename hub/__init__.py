"""E-Monitor hub."""
