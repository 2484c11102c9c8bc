#!/usr/bin/env bash
# Set up .venv, build the site (notebooks executed, outputs cached) and serve it on
# http://127.0.0.1:8000. It rebuilds when taxonomy/, bib/, reference_impls/ or docs/ change.
# Extra arguments go to `mkdocs serve`, e.g. `bash scripts/serve.sh --dev-addr 127.0.0.1:8001`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

# KaTeX and Mermaid are served by the site itself: fetched once from the npm registry
# into .cache/vendor/ (a clear message if that is not possible).
python -m kdatlas.site.vendor

export KDATLAS_NOTEBOOKS="${KDATLAS_NOTEBOOKS:-execute}"
echo "[serve] building the site (the first run executes every notebook); then http://127.0.0.1:8000"
exec python -m mkdocs serve --dev-addr 127.0.0.1:8000 \
  --watch taxonomy --watch bib --watch reference_impls --watch kdatlas/site "$@"
