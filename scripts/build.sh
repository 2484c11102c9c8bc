#!/usr/bin/env bash
# Build the whole static site (every notebook executed, through the cache in .cache/notebooks/)
# into OUT (default: site/), ready for any static host, and print where it is and how large.
# Usage: bash scripts/build.sh [OUT]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

out="${1:-site}"
# KaTeX and Mermaid are served by the site itself (fetched once into .cache/vendor/).
python -m kdatlas.site.vendor
export KDATLAS_NOTEBOOKS="${KDATLAS_NOTEBOOKS:-execute}"
echo "[build] building the site into $out (the first run executes every notebook)"
python -m mkdocs build --strict --site-dir "$out"
out="$(cd "$out" && pwd)"
echo "[build] site: $out ($(du -sh "$out" | cut -f1), $(find "$out" -type f | wc -l) files)"
