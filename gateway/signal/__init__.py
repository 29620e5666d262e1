"""Signal core of the gateway: units, resampling, filtering, streaming QRS detection (numpy only, no I/O)."""
