"""No patient names and no raw ECG in any log of a pipeline run (components and services).

Reuses the fault suite's run when it ran in this session (its logs cover kills, restarts
and outages, where error paths log the most); otherwise runs a short load of its own.
Patient names are read from the Cassandra ``patients`` table (``emon ingest history``).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from emon_core.settings import CassandraSettings, KafkaSettings, MqttSettings, state_dir

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(900)]

# raw ECG: a frame/strip sample array, or a long run of numbers (32+ in a row)
RAW_ECG = [re.compile(r'"samples(?:_uv)?"\s*:\s*\['), re.compile(r"samples(?:_uv)?=\["),
           re.compile(r"(?:-?\d+(?:\.\d+)?\s*,\s*){31}-?\d+(?:\.\d+)?")]
MAX_BYTES = 64 * 2**20  # per file, from the end


@pytest.fixture(scope="module")
def run_logs(tmp_path_factory: pytest.TempPathFactory, mqtt_settings: MqttSettings, kafka_settings: KafkaSettings,
             cassandra_settings: CassandraSettings) -> Iterator[list[Path]]:
    from simulators.loadtest import faults

    run = faults.LAST_RUN
    if run is None:  # run alone: a short load with scripted events, no faults
        workdir = tmp_path_factory.mktemp("privacy")
        runner = faults.FaultRunner(workdir, f"p{os.getpid()}-{time.time_ns() % 10**8}", start_index=2740,
                                    patients=10, units=5, unit_start=975,
                                    log=lambda s: print(f"[privacy] {s}", flush=True))
        run = runner.run(warmup_s=45.0, tail_s=0.0, settle_s=30.0, only=["-"])
    logs = [*run.pipeline.log_files(), *run.service_logs]
    assert run.pipeline.log_files(), "the run left no component logs"
    yield logs


def patient_names(session: Any, keyspace: str) -> dict[str, str]:
    rows = session.execute(f"SELECT patient_id, name FROM {keyspace}.patients", timeout=120)
    return {r.patient_id: r.name for r in rows if r.name and len(r.name.strip()) >= 5}


def find_names(text: str, names: set[str]) -> set[str]:
    """Names occurring in ``text`` (index by first word, then compare at each capitalised word)."""
    by_first: dict[str, list[str]] = {}
    for n in names:
        by_first.setdefault(n.split()[0], []).append(n)
    found: set[str] = set()
    for m in re.finditer(r"[^\W\d_][\w'\-]*", text):
        cands = by_first.get(m.group(0))
        if cands:
            for n in cands:
                if text.startswith(n, m.start()):
                    found.add(n)
    return found


def read_tail(path: Path) -> str:
    with path.open("rb") as f:
        size = path.stat().st_size
        f.seek(max(0, size - MAX_BYTES))
        return f.read().decode("utf-8", errors="replace")


def test_logs_hold_no_patient_names(run_logs: list[Path], cassandra_session: Any,
                                    cassandra_settings: CassandraSettings) -> None:
    names = patient_names(cassandra_session, cassandra_settings.keyspace)
    assert names, "the patients table is empty: run `emon ingest history` (the demo population)"
    leaks = {}
    for path in run_logs:
        found = find_names(read_tail(path), set(names.values()))
        if found:
            leaks[str(path)] = sorted(found)[:5]
    assert not leaks, f"patient names in logs: {leaks}"


def test_logs_hold_no_raw_ecg(run_logs: list[Path]) -> None:
    leaks = {}
    for path in run_logs:
        text = read_tail(path)
        for rx in RAW_ECG:
            m = rx.search(text)
            if m:
                leaks[str(path)] = text[max(0, m.start() - 80):m.end() + 40]
                break
    assert not leaks, f"raw ECG in logs: {leaks}"


def test_the_logs_were_written(run_logs: list[Path]) -> None:
    """Guard against a vacuous pass: the components did log (start-up lines at least)."""
    sizes = {p.name: p.stat().st_size for p in run_logs if p.exists()}
    assert any(n.startswith("gateway") and s > 0 for n, s in sizes.items()), sizes
    assert sizes.get("hub.log", 0) > 0 and sizes.get("bridge.log", 0) > 0, sizes
    assert any(n.startswith("mosquitto") for n in sizes) or os.environ.get("EMON_STATE_DIR"), sizes
    assert state_dir().exists()
