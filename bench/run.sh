#!/usr/bin/env bash
# Run every benchmark in one go and rewrite bench/README.md's results (make bench).
# Each script alternates its contenders and reports medians of several runs; the machine's
# load is recorded beside the figures because a shared machine is noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -m pip install --quiet -r bench/requirements.txt
command -v wrk >/dev/null || { echo "bench: wrk is needed (apt-get install wrk)"; exit 1; }
# Without DATABASE_URL each script starts (and counts itself a user of) the embedded server.
RUNS=${RUNS:-3}
$PY bench/api_bench.py --rounds "$RUNS" --seconds 10
$PY bench/queue_bench.py --jobs 20000 --runs "$RUNS"
$PY bench/webhook_bench.py --events 5000 --merchants 10 --runs "$RUNS"
$PY bench/ids_bench.py --rows 300000 --pairs 5000 --runs "$RUNS"
$PY bench/latency_bench.py --sequential 50 --rate 50 --seconds 10 --runs "$RUNS"
$PY bench/report.py
