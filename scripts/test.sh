#!/usr/bin/env bash
# Set everything up (.venv, Chromium for the browser test) and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k dkd`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

# System programs the tests drive: Chromium (the browser test) and espeak-ng
# (the speech leaf synthesises its spoken digits offline). Installed when root;
# otherwise the tests that need them are skipped with a message saying so.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[test] installing Debian's ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[test] missing ${missing[*]} and we are not root: the tests that need them will be skipped"
  fi
fi

echo "[test] ruff"
ruff check .
ruff format --check .
echo "[test] kdatlas check --strict"
kdatlas check --strict
echo "[test] pytest"
# one thread per process: pytest-xdist already runs one worker per core, and
# oversubscribed torch threads made small CPU training runs ~10x slower here
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
