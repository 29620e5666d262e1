"""E-Monitor simulators."""
