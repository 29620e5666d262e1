#!/usr/bin/env bash
# Bootstrap a development machine: .venv (Python 3.11) with the `dev` extra, and the Debian
# packages the project runs (mosquitto, chromium for the browser test, JDK 17 + Maven for
# Kafka and Cassandra). Fast when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.bootstrap-stamp

# --- Debian packages (root, or sudo) ---------------------------------------------------
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if ! java -version 2>&1 | grep -q 'version "17'; then need+=(openjdk-17-jdk-headless); fi
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "bootstrap: installing Debian packages: ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
    # the package's own broker must not hold port 1883: we run our own from .state/
    if [[ " ${need[*]} " == *" mosquitto "* ]]; then
        $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || $SUDO service mosquitto stop >/dev/null 2>&1 || true
    fi
fi

# --- Python virtual environment --------------------------------------------------------
if [ ! -x $VENV/bin/python ]; then
    command -v "$PYTHON" >/dev/null 2>&1 || { echo "bootstrap: $PYTHON not found" >&2; exit 1; }
    echo "bootstrap: creating $VENV with $PYTHON"
    "$PYTHON" -m venv $VENV
    $VENV/bin/python -m pip install -q --upgrade pip
fi
if [ ! -f $STAMP ] || [ pyproject.toml -nt $STAMP ]; then
    echo "bootstrap: pip install -e '.[dev]'"
    $VENV/bin/python -m pip install -q -e '.[dev]'
    touch $STAMP
fi
# numba compiles the signal kernels once into its cache (~10 s); later runs load them
$VENV/bin/python -m gateway.signal.warmup
echo "bootstrap: ok ($($VENV/bin/python --version), $(java -version 2>&1 | head -1))"
