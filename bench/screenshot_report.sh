#!/usr/bin/env bash
# Render a `contender report --html` page in headless Chromium and save a PNG, to see the
# page as a reader would (figures drawn, labels readable).
#
#   bench/screenshot_report.sh [REPORT.html] [OUT.png]
#
# Without REPORT.html, builds a 20,000-request demo log (bench/report_1m.py's generator)
# and renders its report first. Installs Debian's chromium when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
png="${2:-/tmp/report.png}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

html="${1:-}"
if [ -z "$html" ]; then
    html="$work/report.html"
    "$PYTHON" - "$work/log.db" <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, "bench")
from report_1m import write_store

write_store(Path(sys.argv[1]), 20_000)
EOF
    "$PYTHON" -m contender report --model bench-model --log-store "sqlite:///$work/log.db" \
        --html "$html" > /dev/null 2> "$work/report.log" || { cat "$work/report.log" >&2; exit 1; }
fi

if [ ! -x /usr/bin/chromium ]; then
    apt-get update && apt-get install -y chromium
fi
# --virtual-time-budget lets plotly's scripts finish drawing before the shot.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --virtual-time-budget=10000 --hide-scrollbars \
    --screenshot="$png" --window-size=1400,2400 "file://$(realpath "$html")" 2> "$work/chromium.log" \
    || { cat "$work/chromium.log" >&2; exit 1; }
echo "$png"
