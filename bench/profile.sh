#!/usr/bin/env bash
# Flamegraph of a server under wrk load, written by py-spy to
# bench/results/flame-<server>-<case>.svg (open it in a browser: it is interactive).
#
#   bench/profile.sh                         # contender, one-row requests, 64 connections
#   SERVERS=mlflow CASES=1row-c8 bench/profile.sh --duration 10
#
# py-spy is a developer tool, not a project dependency: it is installed into .venv
# here when missing. It samples every process of the server (--subprocesses) at
# 200 Hz, which costs the server some CPU: use these runs for where time goes,
# not for the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/py-spy ]; then
    .venv/bin/python -m pip install --quiet py-spy
fi
exec .venv/bin/python bench/run.py \
    --servers "${SERVERS:-contender}" \
    --cases "${CASES:-1row-c64}" \
    --duration "${DURATION:-20}" \
    --profile "$@"
