#!/usr/bin/env bash
# The production shape's tests (`make test-production-shape`, and the end of the test command): a three-broker
# private cluster (RF 3, min ISR 2) in its own state dir and ports, a broker killed and a rolling restart under a
# few thousand events. The stack is stopped whatever happened; its data is deleted after a passing run.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin
export HBUS_STATE_DIR="${HBUS_SHAPE_STATE_DIR:-$PWD/.state-rf3}" HBUS_PORT_OFFSET="${HBUS_SHAPE_PORT_OFFSET:-300}"

"$BIN/hbus" stack up --brokers 3 --quiet || { echo "hbus: the three-broker stack did not start; see above" >&2; exit 3; }
trap '"$BIN/hbus" stack down' EXIT

started=$(date +%s)
"$BIN/pytest" -q tests/integration/test_three_brokers.py "$@"
rc=$?
echo "hbus: production shape ran in $(( $(date +%s) - started )) s (pytest exit $rc)"
if [ "$rc" -eq 5 ]; then
  echo "hbus: pytest collected no test: the production shape must run its tests" >&2
  rc=1
fi
if [ "$rc" -eq 0 ]; then
  trap - EXIT
  "$BIN/hbus" stack down --purge
fi
exit "$rc"
