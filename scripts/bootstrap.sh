#!/usr/bin/env bash
# Create (or reuse) .venv and install the project with its test and docs extras.
# Sourced by scripts/serve.sh and scripts/test.sh; safe to run again: it only
# reinstalls when pyproject.toml or the constraints change.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
venv="$root/.venv"
stamp="$venv/.kdatlas-installed"
want="$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -d' ' -f1)"
export NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true
if [ ! -x "$venv/bin/python" ]; then
  echo "[bootstrap] creating $venv"
  "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[bootstrap] installing dependencies into .venv (first run takes about a minute)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # torch first, pinned, so nothing later can pull another build of it.
  "$venv/bin/python" -m pip install --quiet -c requirements/constraints.txt torch
  "$venv/bin/python" -m pip install --quiet -c requirements/constraints.txt -e ".[test]"
  echo "$want" > "$stamp"
else
  echo "[bootstrap] .venv is up to date"
fi
export PATH="$venv/bin:$PATH"
