"""E-Monitor map_ui."""
