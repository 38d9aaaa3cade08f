#!/usr/bin/env bash
# Run requests' own test suite (tests/ of its source distribution, at the
# version pinned in requirements.txt) with httpcore.RequestsAdapter mounted on
# every requests.Session, against the same local httpbin (pytest-httpbin)
# requests uses.
#
#   bash tests/requests_suite/run.sh             # the adapter only
#   bash tests/requests_suite/run.sh --compare   # the adapter and requests' own
#       HTTPAdapter (urllib3) side by side, then fail unless every test that
#       passed on urllib3 passed on the adapter or is on the skip list (skips.py)
#   bash tests/requests_suite/run.sh --urllib3   # urllib3 only
#
# Extra arguments after these go to pytest. Sets up .venv-requests (this
# project, editable, with the `requests` and `socks` extras, plus
# requirements.txt) and downloads the sdist into it, once.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

mode=adapter
case "${1:-}" in
    --compare) mode=compare; shift ;;
    --urllib3) mode=urllib3; shift ;;
    --adapter) shift ;;
esac

venv=.venv-requests
version="$(sed -n 's/^requests==//p' "$here/requirements.txt")"
want="$(cat pyproject.toml "$here/requirements.txt" | cksum)"
stamp="$venv/.installed"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> setting up $venv (requests $version and its test requirements)"
    [ -x "$venv/bin/python" ] || "${PYTHON:-.venv/bin/python}" -m venv "$venv"
    "$venv/bin/python" -m pip install -q -e ".[requests,socks]" -r "$here/requirements.txt"
    printf '%s\n' "$want" > "$stamp"
fi

src="$venv/requests-$version"
if [ ! -f "$src/tests/test_requests.py" ]; then
    echo "==> fetching the requests $version source distribution"
    rm -rf "$venv/sdist" "$src"
    "$venv/bin/python" -m pip download -q --no-binary :all: --no-deps \
        "requests==$version" -d "$venv/sdist"
    tar -xzf "$venv/sdist/requests-$version.tar.gz" -C "$venv"
fi

results="$venv/results"
mkdir -p "$results"

suite() {  # suite MODE [pytest args]: run the suite in MODE, junit XML in $results/MODE.xml
    local which="$1"
    shift
    (
        cd "$src"
        HTTPCORE_REQUESTS_SUITE="$which" PYTHONPATH="$here" \
            "$root/$venv/bin/python" -m pytest -p no:cacheprovider -p httpcore_requests_suite \
            -q --timeout 60 --disable-warnings -o addopts="" -o junit_family=xunit2 \
            --junitxml "$root/$results/$which.xml" tests "$@"
    )
}

case "$mode" in
    adapter) suite adapter "$@" ;;
    urllib3) suite urllib3 "$@" ;;
    compare)
        # The two runs spend most of their time waiting on servers: run them together.
        suite urllib3 "$@" > "$results/urllib3.log" 2>&1 &
        baseline=$!
        status=0
        suite adapter "$@" || status=$?
        base_status=0
        wait "$baseline" || base_status=$?
        echo "==> requests' own HTTPAdapter (urllib3): $(tail -n 1 "$results/urllib3.log")"
        "$venv/bin/python" "$here/compare.py" "$results/urllib3.xml" "$results/adapter.xml" \
            || status=1
        exit "$status"
        ;;
esac
