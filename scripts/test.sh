#!/usr/bin/env bash
# Set up .venv (if needed) and run the checks: pytest, mypy --strict, ruff.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k cli -x).
# Every check runs; the script fails if any of them failed. pytest exiting
# with 5 (no tests collected) counts as a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_env.sh

failed=()

run() {
    local name="$1"
    shift
    echo "==> $*"
    local status=0
    "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        if [[ "$name" == pytest* ]] && [ "$status" -eq 5 ]; then
            echo "error: pytest collected no tests" >&2
        fi
        failed+=("$name (exit $status)")
    fi
}

run pytest .venv/bin/python -m pytest -q "$@"
# The same suite with the engine loop on uvloop (the `speed` extra).
run pytest-uvloop env HTTPCORE_LOOP=uvloop .venv/bin/python -m pytest -q "$@"
run mypy .venv/bin/mypy
run ruff .venv/bin/ruff check .

if [ "${#failed[@]}" -ne 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all checks passed"
