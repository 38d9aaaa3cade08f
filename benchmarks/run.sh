#!/usr/bin/env bash
# Benchmark harness entry point: bash benchmarks/run.sh [--quick] [--only a,b,...] [--help]
# The gateway benchmark: bash benchmarks/run.sh --gateway [--quick] [...] (benchmarks/gateway.py)
# requests + RequestsAdapter vs requests + urllib3: bash benchmarks/run.sh --requests [--quick]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gateway=0
requests_bench=0
if [ "${1:-}" = "--gateway" ]; then gateway=1; shift; fi
if [ "${1:-}" = "--requests" ]; then requests_bench=1; shift; fi

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v curl-config >/dev/null 2>&1 || need+=(libcurl4-openssl-dev libssl-dev)  # pycurl
if [ "$gateway" = 1 ]; then
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "[bench] installing from Debian: ${need[*]}" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's postinst may start a system nginx on port 80; the harness runs its own, on free ports.
export PATH="$PATH:/usr/sbin"

py="${BENCH_PYTHON:-python3}"
if [ "$gateway" = 1 ]; then exec "$py" "$here/gateway.py" "$@"; fi
if [ "$requests_bench" = 1 ]; then exec "$py" "$here/requests_bench.py" "$@"; fi
exec "$py" "$here/harness.py" "$@"
