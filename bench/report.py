"""Rewrite bench/README.md from the result tables the benchmarks wrote under bench/results/."""
import common

SECTIONS = [
    ("api.md", "API throughput and latency (issue 3)"),
    ("queue.md", "Queue drain: no-op jobs and settlements vs pgqueuer and procrastinate (issue 4)"),
    ("latency.md", "Payment-to-webhook latency (issue 4)"),
    ("webhooks.md", "Webhook deliveries (issue 5)"),
]


def main():
    m = common.machine()
    pg = common.pg_settings(common.fresh_database("bench_report"))
    out = ["# Benchmarks", "",
           "Rerun everything with `make bench` (or `bash bench/run.sh`; `RUNS=5` for more runs). Each script",
           "alternates the contenders within one run and reports medians, because this machine is shared",
           "and noisy; raw per-run figures are kept beside the medians.", "",
           f"Last run: {m['date']} on {m['cpus']} × {m['cpu']}, Python {m['python']}, PostgreSQL "
           f"{pg['server_version']} (embedded pgserver unless DATABASE_URL was set; shared_buffers "
           f"{pg['shared_buffers']}, synchronous_commit {pg['synchronous_commit']}, fsync {pg['fsync']}).", ""]
    for name, title in SECTIONS:
        path = common.RESULTS / name
        out += [f"## {title}", "", path.read_text().strip() if path.exists() else "_not run_", ""]
    (common.ROOT / "bench" / "README.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
