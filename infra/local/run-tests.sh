#!/usr/bin/env bash
# The test command behind `make test`: start the local stack, run unit and integration tests against it,
# then stop the stack whatever happened. pytest's exit code 5 (no test collected) is a failure here.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin

# The import contracts of pyproject.toml (layers, pure routing) fail the run with the offending import.
"$BIN/lint-imports" --no-cache || { echo "hbus: an import contract is broken; see above" >&2; exit 1; }

no_tests() {  # pytest's 5: nothing collected, which a test command must never pass with
  if [ "$1" -eq 5 ]; then echo "hbus: pytest collected no test ($2): the test command must run tests" >&2; echo 1
  else echo "$1"; fi
}

if [ "$#" -gt 0 ]; then  # tests named on the command line: one pytest run of exactly those, against the stack
  "$BIN/hbus" stack up || { echo "hbus: the local stack did not start; see the line above" >&2; exit 3; }
  trap '"$BIN/hbus" stack down' EXIT
  "$BIN/pytest" -q --durations=15 "$@"
  rc=$?
  exit "$(no_tests "$rc" "$*")"
fi

# The unit tests need no stack: they run beside its start and beside the integration tests (which mostly wait
# on the brokers), so the whole run stays under 30 minutes on two cores. Their report follows the integration one.
unit_log=$(mktemp)
"$BIN/pytest" -q -p no:cacheprovider --durations=10 tests/unit >"$unit_log" 2>&1 &
unit_pid=$!
trap 'kill "$unit_pid" 2>/dev/null; rm -f "$unit_log"' EXIT

"$BIN/hbus" stack up || { echo "hbus: the local stack did not start; see the line above" >&2; exit 3; }
trap 'kill "$unit_pid" 2>/dev/null; rm -f "$unit_log"; "$BIN/hbus" stack down' EXIT

"$BIN/pytest" -q --durations=30 tests --ignore=tests/unit  # the slowest: the CI run must stay under 30 minutes
rc=$?
integration=$(no_tests "$rc" "integration")
wait "$unit_pid"
rc=$?
unit=$(no_tests "$rc" "unit")
echo "--- unit tests (run beside the integration tests) ---"
cat "$unit_log"
echo "hbus: integration exit $integration, unit exit $unit"
[ "$integration" -eq 0 ] && [ "$unit" -eq 0 ]
