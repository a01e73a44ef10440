#!/usr/bin/env bash
# The test command behind `make test`: start the local stack, run unit and integration tests against it,
# then stop the stack whatever happened. pytest's exit code 5 (no test collected) is a failure here.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin

# The import contracts of pyproject.toml (layers, pure routing) fail the run with the offending import.
"$BIN/lint-imports" --no-cache || { echo "hbus: an import contract is broken; see above" >&2; exit 1; }

"$BIN/hbus" stack up || { echo "hbus: the local stack did not start; see the line above" >&2; exit 3; }
trap '"$BIN/hbus" stack down' EXIT

"$BIN/pytest" -q --durations=15 tests "$@"  # the slowest tests: the CI run must stay under 30 minutes
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "hbus: pytest collected no test: the test command must run tests" >&2
  rc=1
fi
exit "$rc"
