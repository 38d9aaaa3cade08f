# Sourced by scripts/demo.sh and scripts/test.sh: make sure .venv exists and
# holds this project installed in editable mode with the extras asked for
# (HTTPCORE_EXTRAS, default: test,dev,speed) and the Debian packages the tests
# need (HTTPCORE_APT=0 skips them: the demo needs none).
# Usage: source scripts/_env.sh   (from the repository root)

# --- system packages -------------------------------------------------------
# Debian/Ubuntu packages the tests need, installed with apt-get when missing.
APT_PACKAGES=(nginx tinyproxy nghttp2-server h2o apache2 dante-server)
# ---------------------------------------------------------------------------

_httpcore_apt_install() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    echo "==> apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
}

if [ "${HTTPCORE_APT:-1}" != 0 ] && [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
    _httpcore_apt_install "${APT_PACKAGES[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    PYTHON="${PYTHON:-}"
    if [ -z "$PYTHON" ]; then
        if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
    fi
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        echo "error: httpcore needs Python 3.10+; '$PYTHON' is $("$PYTHON" --version 2>&1)" >&2
        exit 1
    fi
    echo "==> creating .venv with $PYTHON"
    if ! "$PYTHON" -m venv .venv; then
        echo "error: '$PYTHON -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
        rm -rf .venv
        exit 1
    fi
fi

# Reinstall only when pyproject.toml or the extras changed since the last install.
# speed (uvloop) too, so that the uvloop engine is tested and type-checked.
_extras="${HTTPCORE_EXTRAS:-test,dev,speed}"
_stamp=.venv/.httpcore-actor-installed
_want="$(cksum < pyproject.toml) [$_extras]"
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_want" ]; then
    echo "==> pip install -e '.[$_extras]'"
    .venv/bin/python -m pip install -q -e ".[$_extras]"
    printf '%s\n' "$_want" > "$_stamp"
fi
unset _extras _stamp _want
