#!/usr/bin/env bash
# Set everything up (.venv, Chromium for the browser test) and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k dkd`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[test] installing Debian's chromium for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[test] /usr/bin/chromium is missing and we are not root: the browser test will be skipped"
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
