"""Resolve a service's jars from Maven Central with the machine's ``mvn`` (cached in .cache/)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path

from emon_core.errors import ServiceError

log = logging.getLogger(__name__)
POM_DIR = Path(__file__).resolve().parent


def resolve(pom_name: str, properties: dict[str, str], libs_dir: Path) -> Path:
    """``mvn dependency:copy-dependencies`` into ``libs_dir`` once; later calls return at once."""
    done = libs_dir / ".complete"
    if done.exists():
        return libs_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("Maven (`mvn`) not found: install it (apt-get install -y maven)")
    libs_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-B", "-q", "-f", str(POM_DIR / pom_name),
        *[f"-D{k}={v}" for k, v in properties.items()],
        "dependency:copy-dependencies", f"-DoutputDirectory={libs_dir}", "-DincludeScope=runtime",
    ]
    log.info("resolving %s from Maven Central into %s", pom_name, libs_dir)
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-20:])
        raise ServiceError(f"`{' '.join(cmd)}` failed ({res.returncode}):\n{tail}")
    done.write_text(f"{time.time():.0f}\n")
    log.info("resolved %d jars in %.0f s", len(list(libs_dir.glob("*.jar"))), time.monotonic() - t0)
    return libs_dir


def java_bin() -> str:
    """The JDK 17 ``java`` (``EMON_JAVA_HOME`` or ``JAVA_HOME`` first, then the PATH)."""
    import os

    for var in ("EMON_JAVA_HOME", "JAVA_HOME"):
        home = os.environ.get(var)
        if home and (Path(home) / "bin" / "java").exists():
            return str(Path(home) / "bin" / "java")
    for cand in ("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", shutil.which("java")):
        if cand and Path(cand).exists():
            return cand
    raise ServiceError("java not found: install JDK 17 (apt-get install -y openjdk-17-jdk-headless)")
