#!/usr/bin/env bash
# `make bench`: every benchmark once; each prints its figures with the settings they were measured
# with (copy them into the table of bench/README.md). RUNS sets the rounds or runs of each (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
command -v wrk >/dev/null || { echo "bench: wrk is needed (Debian: apt-get install wrk)" >&2; exit 1; }
RUNS=${RUNS:-3}
$PY bench/api_bench.py --rounds "$RUNS" --seconds 10
# Where a payment's PostgreSQL time goes, against the bare INSERT (pgbench; docs/decisions/008).
$PY bench/insert_costs.py --rounds "$RUNS" --seconds 5
$PY bench/latency_bench.py --warmup 100 --sequential 500 --rate 50 --seconds 10 --runs "$RUNS"
$PY bench/webhook_bench.py --events 5000 --merchants 10 --endpoints 3 --runs "$RUNS"
$PY bench/queue_bench.py --jobs 20000 --runs "$RUNS"
# Page latency against one merchant's history; 10M: --sizes 10000,1000000,10000000 (an estimated 13 GB and 15-30 min of seeding).
$PY bench/scale_bench.py --sizes 10000,1000000
# The dashboard's CSV export: the worker's peak memory at 10k and 1M payments (about 6 min of seeding).
$PY bench/csv_export_bench.py --sizes 10000,1000000
# What a high API_RATE_LIMIT costs (the same tree without and with it, alternated).
$PY bench/ab_env.py --target orders --env-b API_RATE_LIMIT=1000000/second --rounds $((RUNS * 2)) --seconds 8
