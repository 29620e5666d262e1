#!/usr/bin/env bash
# The README's test command (`make test`): bootstrap, start the real services, migrate,
# run pytest, and stop the services this run started (also on failure or Ctrl-C).
# Services that were already running before are left running.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
EMON=.venv/bin/emon

already=$($EMON services status --json 2>/dev/null \
    | .venv/bin/python -c 'import json,sys; print(" ".join(s["name"] for s in json.load(sys.stdin) if s["up"]))' \
    || true)

cleanup() {
    local started=()
    for s in mosquitto kafka cassandra; do
        [[ " $already " == *" $s "* ]] || started+=("$s")
    done
    if [ ${#started[@]} -gt 0 ]; then
        echo "test: stopping ${started[*]}"
        $EMON services down "${started[@]}" || true
    fi
}
trap cleanup EXIT INT TERM

t0=$(date +%s)
$EMON services up
$EMON init
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
    echo "test: pytest collected no tests: failing" >&2
fi
echo "test: pytest exit code $rc after $(( $(date +%s) - t0 )) s"
exit $rc
