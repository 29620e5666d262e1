"""E-Monitor paramedic_router."""
