#!/usr/bin/env bash
# Run the whole test suite: the static checks (ruff's lint and format check, mypy with setup.cfg's
# configuration), then unit tests and the end-to-end tests (real yggdrasil routers in network
# namespaces, real bridges under twistd; those need root, iproute2 and both yggdrasil versions:
# see .ci/run, which installs everything on a fresh Debian 12 machine).
# Extra arguments go to pytest, e.g. scripts/run-tests.sh -k walking -x
# The exit status is the first failing check's, else pytest's. Caches stay out of the checkout
# (mypy's under $XDG_CACHE_HOME, default ~/.cache).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python || command -v python3)}
cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/ygbridge
"$python" -m ruff check --no-cache --quiet .
"$python" -m ruff format --no-cache --check --quiet .
"$python" -m mypy --cache-dir "$cache/mypy"
exec "$python" -m pytest -q -rA -p no:cacheprovider \
    --timeout=300 --timeout-method=signal --durations=10 \
    tests "$@"
