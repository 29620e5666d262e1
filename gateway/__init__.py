"""E-Monitor gateway."""
