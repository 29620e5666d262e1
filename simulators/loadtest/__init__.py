"""Whole-system load test (``emon loadtest``) and the pipeline harness the fault suite reuses.

* :mod:`.pipeline`: starts gateway(s), bridge, hub, router, map and paramedic units as
  processes isolated from other users of the shared services (own consumer groups started
  at the end of the topics, own ports, own device/unit number ranges), kills and restarts them.
* :mod:`.observe`: Kafka tails (flagged, alerts, assignments), a logged-in SSE session of
  the map, and per-process CPU/memory sampling.
* :mod:`.report`: accounting against the simulator's ground truth, latency percentiles per
  hop, JSON and the latency plot.
"""
