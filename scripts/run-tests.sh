#!/usr/bin/env bash
# Run the whole test suite: unit tests, then the end-to-end tests (real yggdrasil routers in
# network namespaces, real bridges under twistd; those need root, iproute2 and both yggdrasil
# versions: see .ci/run, which installs everything on a fresh Debian 12 machine).
# Extra arguments go to pytest, e.g. scripts/run-tests.sh -k walking -x
# The exit status is pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python || command -v python3)}
exec "$python" -m pytest -q -rA -p no:cacheprovider \
    --timeout=300 --timeout-method=signal --durations=10 \
    tests "$@"
