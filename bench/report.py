"""Rewrite bench/README.md from the result tables the benchmarks wrote under bench/results/."""
import common

SECTIONS = [
    ("api.md", "API throughput and latency (issue 3)"),
    ("queue.md", "Queue drain: no-op jobs and settlements vs pgqueuer and procrastinate (issue 4)"),
    ("latency.md", "Payment-to-webhook latency (issue 4)"),
    ("webhooks.md", "Webhook deliveries (issue 5)"),
    ("ids.md", "Id shape: WAL written after a checkpoint, time-first against random ids"),
]


def _api_summary(text):
    """The headline tables of results/api.md (the full report, raw rounds and profile stay there)."""
    keep, on = [], False
    for line in text.splitlines():
        if line.startswith("## ") and line[3:].startswith(("Results", "Alternative")):
            keep += ["", "#" + line, ""]
            on = False
            continue
        if line.startswith("### "):
            on = line.startswith("### Throughput") or line.startswith("### Latency at half")
        if on:
            keep.append("#" + line if line.startswith("### ") else line)
    return "\n".join(keep) + "\n\nFull report with set-up, raw rounds and the py-spy profile: [results/api.md](results/api.md)."


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
        text = path.read_text().strip() if path.exists() else "_not run_"
        if name == "api.md" and path.exists():
            text = _api_summary(text)
        out += [f"## {title}", "", text, ""]
    (common.ROOT / "bench" / "README.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
