#!/usr/bin/env bash
# Build an offline wheelhouse for the edge gateway (emon[gateway]: no TensorFlow, Cassandra or FastAPI).
#
#   scripts/build-wheelhouse.sh [WHEELHOUSE_DIR]        # default ./wheelhouse
#
# Run it on a machine with internet and the same CPU architecture and Python (3.11) as the
# edge box; copy the directory over; on the box:
#
#   python3.11 -m venv /opt/emon/venv
#   /opt/emon/venv/bin/pip install --no-index --find-links WHEELHOUSE_DIR 'emon[gateway]'
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-wheelhouse}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip wheel
mkdir -p "$out"
# the project's own wheel plus every dependency of the gateway extra, as wheels
"$tmp/venv/bin/pip" wheel -q '.[gateway]' -w "$out"
# pip/setuptools/wheel too, so the box can upgrade pip offline
"$tmp/venv/bin/pip" wheel -q pip setuptools wheel -w "$out"
# prove it installs offline, without TensorFlow, the Cassandra driver or FastAPI
"$python" -m venv "$tmp/check"
"$tmp/check/bin/pip" install -q --no-index --find-links "$out" 'emon[gateway]'
if "$tmp/check/bin/pip" list --format=freeze | grep -iE '^(tensorflow|cassandra-driver|fastapi)=='; then
    echo "build-wheelhouse: a server-side package slipped into the gateway install" >&2
    exit 1
fi
"$tmp/check/bin/emon" gateway --help >/dev/null
echo "wheelhouse: $out ($(ls "$out"/*.whl | wc -l) wheels, $(du -sh "$out" | cut -f1)); offline install checked"
