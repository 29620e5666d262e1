"""E-Monitor bridge."""
