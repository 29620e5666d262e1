"""Shared pytest fixtures: data locations and the real-services gate."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MITDB_DIR = Path(os.environ.get("EMON_MITDB_DIR", REPO_ROOT.parent / "shared" / "data" / "mitdb"))
NSTDB_DIR = Path(os.environ.get("EMON_NSTDB_DIR", REPO_ROOT.parent / "shared" / "data" / "nstdb"))


@pytest.fixture(scope="session")
def mitdb_dir() -> Path:
    """The MIT-BIH Arrhythmia Database; tests that need it skip with the reason when absent."""
    if not (MITDB_DIR / "100.hea").exists():
        pytest.skip(f"MIT-BIH data not found at {MITDB_DIR} (set EMON_MITDB_DIR)")
    return MITDB_DIR


@pytest.fixture(scope="session")
def nstdb_dir() -> Path:
    if not (NSTDB_DIR / "118e00.hea").exists():
        pytest.skip(f"MIT-BIH Noise Stress Test data not found at {NSTDB_DIR}")
    return NSTDB_DIR
