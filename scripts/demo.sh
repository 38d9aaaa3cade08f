#!/usr/bin/env bash
# Set up .venv (if needed) and run the demo against a local server it starts itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The demo needs the library and hypercorn (its HTTP/2 server), nothing else.
HTTPCORE_EXTRAS=demo HTTPCORE_APT=0 source scripts/_env.sh
exec .venv/bin/python examples/demo.py "$@"
