#!/usr/bin/env bash
# Run the whole test suite: the static checks (ruff's lint and format check, mypy with setup.cfg's
# configuration), then unit tests and the end-to-end tests (real yggdrasil routers in network
# namespaces, real bridges under twistd; those need root, iproute2 and both yggdrasil versions:
# see .ci/run, which installs everything on a fresh Debian 12 machine).
# YGBRIDGE_COVERAGE=1 (as .ci/run sets) also measures branch coverage in pytest and in every
# Python process it starts, the bridges under twistd and the `ygbridge` commands included
# (setup.cfg's [coverage:*] sections), and reports it at the end; it costs about a third more time.
# Extra arguments go to pytest, e.g. scripts/run-tests.sh -k walking -x
# The exit status is the first failing check's, else pytest's, else that of the coverage report
# (which fails under setup.cfg's fail_under when the whole suite ran). Caches stay out of the
# checkout (mypy's under $XDG_CACHE_HOME, default ~/.cache).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python || command -v python3)}
cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/ygbridge
"$python" -m ruff check --no-cache --quiet .
"$python" -m ruff format --no-cache --check --quiet .
"$python" -m mypy --cache-dir "$cache/mypy"
pytest=(-m pytest -q -rA -p no:cacheprovider --timeout=300 --timeout-method=signal --durations=10 tests "$@")
if [ "${YGBRIDGE_COVERAGE:-0}" = 0 ]; then
    exec "$python" "${pytest[@]}"
fi

# twistd kills itself with the signal that stopped it, past atexit: this hook saves the data first.
site=$("$python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
"$python" - scripts/coverage_sigterm.py "$site/ygbridge_coverage_sigterm.pth" <<'PY'
import sys
from pathlib import Path

hook, pth = map(Path, sys.argv[1:])
line = f"import sys; exec({hook.read_text()!r}, {{'__name__': 'ygbridge_coverage_sigterm'}})\n"
if not pth.exists() or pth.read_text() != line:
    pth.write_text(line)
PY

rm -rf build/coverage
status=0
"$python" -m coverage run "${pytest[@]}" || status=$?
"$python" -m coverage combine -q
echo "=== branch coverage (statements and branches; setup.cfg [coverage:*])"
report=()
[ "$#" = 0 ] || report=(--fail-under=0)  # part of the suite: setup.cfg's bound is for the whole
"$python" -m coverage report "${report[@]}" || { [ "$status" != 0 ] || status=$?; }
exit "$status"
