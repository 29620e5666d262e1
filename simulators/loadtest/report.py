"""Accounting against the ground truth, latency percentiles per hop, the JSON report and the plot."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from simulators.accounting import account
from simulators.ground_truth import Truth

VT_REASON = "vt:"  # hub.policy: reasons start with the rule name
HOPS = ("beat_to_kafka", "beat_to_alert", "beat_to_screen", "alert_to_assignment", "vt_onset_to_screen")
CLINICAL_EVENT_KINDS = {"v_run", "s_run", "pause", "asystole", "bradycardia", "tachycardia", "frequent_ectopy"}


def percentiles(values: Iterable[float]) -> dict[str, float | int | None]:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"n": int(v.size), "p50": round(float(p50), 1), "p95": round(float(p95), 1),
            "p99": round(float(p99), 1), "max": round(float(v.max()), 1)}


def strip_private(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def first_by(records: Iterable[dict[str, Any]], key: Any) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for r in records:
        k = key(r)
        if k not in out or r.get("_arrived_ms", 0) < out[k].get("_arrived_ms", 0):
            out[k] = r
    return out


def expected_alerts(truth: Truth, patients: set[str], quiet_s: float = 120.0) -> dict[str, int]:
    """Clinical alerts the hub should raise per patient: truth events grouped into episodes by a quiet gap."""
    out: dict[str, int] = {}
    for dev in truth.devices.values():
        pid = dev.patient_id
        if pid not in patients:
            continue
        evs = sorted((e for e in dev.events if e.get("kind") in CLINICAL_EVENT_KINDS), key=lambda e: e["onset_ms"])
        n, last_end = 0, None
        for e in evs:
            if last_end is None or e["onset_ms"] - last_end > quiet_s * 1000:
                n += 1
            last_end = max(last_end or 0, e.get("end_ms") or e["onset_ms"])
        if n:
            out[pid] = n
    return out


def is_clinical(alert: dict[str, Any]) -> bool:
    return alert.get("severity") != "technical"


def alert_accounting(truth: Truth, patients: set[str], alerts: list[dict[str, Any]],
                     quiet_s: float = 120.0) -> dict[str, Any]:
    exp = expected_alerts(truth, patients, quiet_s)
    ids_by_patient: dict[str, set[str]] = {}
    technical: set[str] = set()
    for a in alerts:
        if is_clinical(a):
            ids_by_patient.setdefault(a["patient_id"], set()).add(a["alert_id"])
        else:
            technical.add(a["alert_id"])
    raised = {p: len(ids) for p, ids in ids_by_patient.items()}
    dup = {p: raised.get(p, 0) - exp.get(p, 0) for p in raised if raised.get(p, 0) > exp.get(p, 0)}
    missing = {p: exp[p] - raised.get(p, 0) for p in exp if raised.get(p, 0) < exp[p]}
    versions: dict[str, set[int]] = {}
    for a in alerts:
        versions.setdefault(a["alert_id"], set()).add(int(a.get("version", 0)))
    return {
        "alerts_expected": sum(exp.values()),
        "alerts_raised": sum(raised.values()),
        "alert_duplicates": sum(dup.values()),  # distinct alert ids beyond one per expected episode
        "alerts_missing": sum(missing.values()),
        "duplicate_patients": dict(sorted(dup.items())[:20]),
        "missing_patients": dict(sorted(missing.items())[:20]),
        "technical_alerts": len(technical),
        "alert_versions_max": max((len(v) for v in versions.values()), default=0),
    }


def latencies(flagged: list[dict[str, Any]], alerts: list[dict[str, Any]], screen: list[dict[str, Any]],
              assignments: list[dict[str, Any]], truth: Truth, patients: set[str],
              from_publish: bool = True) -> dict[str, list[float]]:
    """Latency samples (ms) per hop. ``beat_to_*`` start when the device published the frame
    that completed the beat (``from_publish``, the simulator's truth file says when), or at
    that frame's scheduled end (its device clock; a late simulator's lateness included)."""
    lat: dict[str, list[float]] = {h: [] for h in HOPS}
    by_patient = {d.patient_id: d for d in truth.devices.values()}

    def start(tr: dict[str, Any], dev: Any) -> int:
        t0 = int(tr["device_sent_ms"])
        return t0 + dev.publish_late_ms.get(t0, 0) if from_publish and dev is not None else t0

    for r in first_by(flagged, lambda r: (r.get("id"), r.get("revision", 0))).values():
        tr = r.get("trace") or {}
        end = tr.get("kafka_produced_ms") or r.get("_kafka_ts")
        if tr.get("device_sent_ms") and end:
            lat["beat_to_kafka"].append(end - start(tr, truth.devices.get(r.get("device_id", ""))))
    first_alert = first_by(alerts, lambda r: r["alert_id"])
    for a in first_alert.values():
        tr = a.get("trace") or {}
        if tr.get("device_sent_ms") and tr.get("alert_written_ms"):
            lat["beat_to_alert"].append(tr["alert_written_ms"] - start(tr, by_patient.get(a.get("patient_id"))))
    for a in first_by(screen, lambda r: r["alert_id"]).values():
        tr = a.get("trace") or {}
        if tr.get("device_sent_ms"):
            lat["beat_to_screen"].append(a["_arrived_ms"] - start(tr, by_patient.get(a.get("patient_id"))))
    for asg in first_by(assignments, lambda r: r["alert_id"]).values():
        a = first_alert.get(asg["alert_id"])
        if a is not None and asg["assigned_at_ms"] < a.get("opened_at_ms", 0):
            continue  # an assignment of an earlier run's alert
        if a is None:
            continue
        t0 = (a.get("trace") or {}).get("alert_written_ms") or a.get("_kafka_ts")
        if t0:
            lat["alert_to_assignment"].append(asg["assigned_at_ms"] - t0)
    # VT onset -> the first version on screen that names the VT rule (an earlier advisory
    # "non-sustained run" version does not count; the policy may still lower the VT itself to
    # urgent for a patient with a known chronic pattern)
    by_patient: dict[str, list[int]] = {}
    for a in screen:
        if any(str(r).startswith(VT_REASON) for r in a.get("reasons") or ()):
            by_patient.setdefault(a["patient_id"], []).append(a["_arrived_ms"])
    for v in by_patient.values():
        v.sort()
    for dev in truth.devices.values():
        if dev.patient_id not in patients:
            continue
        for e in dev.events:
            if e.get("kind") != "v_run":
                continue
            onset = e["onset_ms"]
            seen = [t for t in by_patient.get(dev.patient_id, []) if onset <= t <= onset + 120_000]
            if seen:
                lat["vt_onset_to_screen"].append(seen[0] - onset)
    return lat


TRACE_STEPS = (("device_to_gateway", "device_sent_ms", "gateway_received_ms"),
               ("gateway_processing", "gateway_received_ms", "gateway_published_ms"),
               ("outbox_to_bridge", "gateway_published_ms", "bridge_received_ms"),
               ("bridge_to_kafka", "bridge_received_ms", "kafka_produced_ms"),
               ("kafka_to_hub", "kafka_produced_ms", "hub_received_ms"),
               ("hub_to_alert_written", "hub_received_ms", "alert_written_ms"))


def trace_breakdown(flagged: list[dict[str, Any]], alerts: list[dict[str, Any]],
                    steps: tuple[tuple[str, str, str], ...] = TRACE_STEPS) -> dict[str, Any]:
    """Percentiles of each step between two stamps of HopTimes (first copy of each message/alert)."""
    recs = list(first_by(flagged, lambda r: (r.get("id"), r.get("revision", 0))).values())
    recs += [a for a in first_by(alerts, lambda r: r["alert_id"]).values() if (a.get("trace") or {}).get("device_sent_ms")]
    out: dict[str, Any] = {}
    for name, a, b in steps:
        vals = [(r.get("trace") or {}).get(b, 0) - (r.get("trace") or {}).get(a, 0) for r in recs
                if (r.get("trace") or {}).get(a) and (r.get("trace") or {}).get(b)]
        out[name] = percentiles(vals)
    return out


def event_accounting(truth: Truth, flagged: list[dict[str, Any]]) -> dict[str, Any]:
    acc = account(truth, [strip_private(r) for r in flagged])
    e, b = acc.events, acc.beats
    return {
        "events_expected": e.expected, "events_delivered": e.delivered, "lost": e.lost,
        "duplicates": e.duplicates, "events_unexpected": e.unexpected, "events_by_kind": e.by_kind,
        "lost_events": acc.lost_events[:50],
        "beats": {"expected": b.expected, "delivered": b.delivered, "missed": b.lost, "duplicates": b.duplicates,
                  "unexpected": b.unexpected},
    }


def plot(lat: dict[str, list[float]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hops = [h for h in HOPS if lat.get(h)]
    fig, axes = plt.subplots(len(hops) or 1, 1, figsize=(8, 2.2 * max(1, len(hops))), squeeze=False)
    for ax, h in zip(axes[:, 0], hops):
        v = np.asarray(lat[h], dtype=float)
        ax.hist(v, bins=min(60, max(10, v.size // 3)), color="#3a6ea5")
        p = percentiles(v)
        for q, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            ax.axvline(p[q], color="#c0392b", linestyle=style, label=f"{q} {p[q]:.0f} ms")
        ax.set_title(f"{h} (n={v.size})", fontsize=9)
        ax.set_xlabel("ms", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
