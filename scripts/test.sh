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
# The HTTP/2 tests again on the lowest h2, hpack and hyperframe that
# pyproject allows (.venv has the highest): h2compat's patches must hold on both.
if [ "$#" -eq 0 ]; then
    H2_LOWEST=(h2==4.1.0 hpack==4.0.0 hyperframe==6.0.0 h11==0.14.0)
    if [ ! -x .venv-h2-lowest/bin/python ] || ! .venv-h2-lowest/bin/python -c 'import h2, sys; sys.exit(h2.__version__ != "4.1.0")' 2>/dev/null; then
        echo "==> creating .venv-h2-lowest (${H2_LOWEST[*]})"
        rm -rf .venv-h2-lowest
        .venv/bin/python -m venv .venv-h2-lowest
        .venv-h2-lowest/bin/python -m pip install -q -e ".[test]" "${H2_LOWEST[@]}"
    fi
    run pytest-h2-lowest .venv-h2-lowest/bin/python -m pytest -q tests/test_h2_*.py tests/test_h2compat.py
    # requests' own test suite on httpcore.RequestsAdapter (every Session mounts
    # it), next to a run on requests' own HTTPAdapter: every test that passes
    # on urllib3 must pass on the adapter, or be on tests/requests_suite/skips.py.
    run requests-suite bash tests/requests_suite/run.sh --compare
fi
run mypy .venv/bin/mypy
run ruff .venv/bin/ruff check .

if [ "${#failed[@]}" -ne 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all checks passed"
