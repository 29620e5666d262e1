"""Before a load test: alerts of earlier load tests that still wait for a unit are resolved.

A run's patients are gone when it ends, but its critical alerts stay in the router's queue
(``dispatch_queue``) until a dispatcher resolves them, and would take the next run's units
first (a run once measured ``alert_to_assignment`` on 0 alerts: its 30 fresh units all went
to 160 alerts left by earlier runs). They are resolved here as the dispatcher ``loadtest``,
the same write and audit entry as the map's resolve; the router drops a resolved alert from
its queue instead of serving it. Alerts of other patients (the demo's) are left alone and
counted.

Alerts of earlier runs that still hold a unit are resolved too: a later run reuses unit ids, and
its fresh unit reporting ``available`` while the router has it en route to an old alert makes
the router release it (and, the alert being resolved, send nobody else).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from emon_core.settings import CassandraSettings

_NUMBER = re.compile(r"^pat-(\d+)$")
_ALERT_PATIENT = re.compile(r"^alert:(pat-\d+):")  # hub alert ids: alert:<patient>:<device>:<sample>


def patient_number(patient_id: str) -> int | None:
    """``pat-01234`` -> 1234; None for other ids."""
    m = _NUMBER.match(patient_id or "")
    return int(m.group(1)) if m else None


def resolve_leftover_queue(settings: CassandraSettings, first: int, end: int, session: Any = None) -> dict[str, int]:
    """Resolve queued alerts, and alerts holding a unit, of patients ``pat-<first>`` .. ``pat-<end - 1>``.

    Returns counts: ``resolved`` (queued), ``resolved_holding_units``, ``others_waiting``.
    """
    from map_ui.audit import Action, record
    from map_ui.repository import Repository, connect

    own = session is None
    s = connect(settings) if own else session
    audit_log = logging.getLogger("map_ui.audit")
    level = audit_log.level
    audit_log.setLevel(logging.WARNING)  # one line per resolved alert would bury the run's output
    try:
        repo = Repository(s)
        out = {"resolved": 0, "resolved_holding_units": 0, "others_waiting": 0}

        def resolve(alert_id: str, why: str) -> None:
            repo.resolve(alert_id, "loadtest")
            record(repo, None, Action.RESOLVED, alert_id, why, username="loadtest")

        for row in s.execute("SELECT alert_id, patient_id FROM dispatch_queue"):
            n = patient_number(row.patient_id)
            if n is not None and first <= n < end:
                resolve(row.alert_id, "left waiting by an earlier load test")
                out["resolved"] += 1
            else:
                out["others_waiting"] += 1
        held = {r.alert_id for r in s.execute("SELECT alert_id FROM units") if r.alert_id}
        for alert_id in sorted(held):
            m = _ALERT_PATIENT.match(alert_id)
            n = patient_number(m.group(1)) if m else None
            if n is None or not first <= n < end or (repo.alert_state(alert_id) or {}).get("dispatcher_status") == "resolved":
                continue
            resolve(alert_id, "holding a unit since an earlier load test")
            out["resolved_holding_units"] += 1
        return out
    finally:
        audit_log.setLevel(level)
        if own:
            s.cluster.shutdown()
