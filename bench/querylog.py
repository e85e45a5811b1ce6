"""What the query log costs: kdns with and without --log-queries, same cluster, same queries.

    python bench/querylog.py                       # about 1 minute: 3 rounds x (off, coredns, json) x 5 s
    python bench/querylog.py --seconds 3 --rounds 2 --sample 0.1

The benchmark cluster and query mix of bench/gen.py (the one bench/run.py uses); kdns
on one core (taskset), dnsperf closed loop on the other, as bench/run.py's closed-loop
runs. Each kdns first answers a warm-up run (--warmup seconds, not counted), so that the
measured run is the steady state: ready replies made for the 50,000 questions. Each round
runs every variant once, starting with a different one each round, so a busy spell of the
shared machine falls on all of them alike; the figures are the medians over rounds, and
each run says how much of the server's core other processes took. With the log on,
kdns's stdout (the log) goes to a file on disk, as `kdns serve > queries.log` would.

Two runs per kdns: closed loop (dnsperf as fast as kdns answers: the throughput), and at a
fixed rate (--rate, dnsperf -Q), where every variant answers the same load and the
server's CPU time per answer is the log's cost, a figure a busy shared machine disturbs
less than throughput. Prints both, and for each log format its closed-loop throughput
and its CPU per answer at the fixed rate as shares of the run without the log. Nothing
here is a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import gen
from measure import dnsperf
from procs import cpus, free_port, pin_threads, stop_all
from servers import start_kdns, wait_answer

VARIANTS: dict[str, list[str]] = {
    "off": [],
    "coredns": ["--log-queries"],
    "json": ["--log-queries", "--log-queries-format", "json"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one dnsperf run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant (default 3)")
    parser.add_argument("--sample", type=float, default=1.0, help="--log-queries-sample of the runs with the log")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of dnsperf before each measured run (default 3)")
    parser.add_argument("--rate", type=int, default=10000, help="queries per second of the fixed-rate run (default 10000)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for tool in ("dnsperf", "taskset"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt-get install dnsperf util-linux)")
    server_cpu, client_cpu, pinning = cpus()
    os.sched_setaffinity(0, {int(client_cpu)})
    workdir = Path(tempfile.mkdtemp(prefix="kdns-querylog-"))
    model = gen.generate(workdir / "cluster", gen.PRESETS["bench"], zones=False)
    queries = Path(model["queries"])
    manifests = workdir / "cluster" / "manifests"
    probe = next(line.split()[0] for line in queries.read_text().splitlines() if line.endswith(" A"))
    print(f"querylog bench: {pinning}; {model['query_count']:,} queries; {args.rounds} x {args.seconds:g} s per variant")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    try:
        names = list(VARIANTS)
        for round_number in range(args.rounds):
            for name in names[round_number % len(names):] + names[: round_number % len(names)]:
                flags = VARIANTS[name]
                extra = ["--upstream", "none", *flags]
                if flags:
                    extra += ["--log-queries-sample", f"{args.sample:g}"]
                port = free_port()
                log = workdir / f"kdns-{name}-{round_number}.log"
                child = start_kdns(manifests, port, server_cpu, log, extra)
                try:
                    ready, why = wait_answer(child, port, probe, "A", 60.0)
                    if ready is None:
                        raise RuntimeError(f"kdns ({name}) did not start: {why}")
                    pin_threads(child.pid, server_cpu)
                    dnsperf(port, queries, args.warmup, client_cpu, child.pid, workdir, server_cpu=server_cpu)
                    result = dnsperf(
                        port, queries, args.seconds, client_cpu, child.pid, workdir, server_cpu=server_cpu
                    )
                    fixed = dnsperf(
                        port, queries, args.seconds, client_cpu, child.pid, workdir, rate=args.rate, server_cpu=server_cpu
                    )
                finally:
                    child.stop()
                logged = sum(1 for _ in log.open("rb")) if flags else 0
                results[name].append({
                    "qps": result["qps"] or 0.0,
                    "cpu_us": result.get("cpu_us_per_query") or 0.0,
                    "loss_pct": result["loss_pct"],
                    "log_lines": logged,
                    "fixed_cpu_us": fixed.get("cpu_us_per_query") or 0.0,
                    "fixed_loss_pct": fixed["loss_pct"],
                })
                others = 100 * (result.get("server_core_others") or 0.0)
                print(f"  round {round_number + 1} {name:8} {result['qps']:>9,.0f} answers/s  "
                      f"{result.get('cpu_us_per_query') or 0:6.2f} µs CPU/answer  loss {result['loss_pct']:.3f} %  "
                      f"others on the core {others:.0f} %" + (f"  {logged:,} log lines" if flags else ""))
                print(f"  round {round_number + 1} {name:8} at {args.rate:,}/s: "
                      f"{fixed.get('cpu_us_per_query') or 0:6.2f} µs CPU/answer  loss {fixed['loss_pct']:.3f} %  "
                      f"others on the core {100 * (fixed.get('server_core_others') or 0.0):.0f} %")
    finally:
        stop_all()
    base = statistics.median(r["qps"] for r in results["off"])
    base_cpu = statistics.median(r["fixed_cpu_us"] for r in results["off"])
    print(f"medians (closed loop; CPU per answer at {args.rate:,}/s):")
    for name, runs in results.items():
        qps = statistics.median(r["qps"] for r in runs)
        cpu = statistics.median(r["fixed_cpu_us"] for r in runs)
        share = (
            f"  throughput x{qps / base:.2f}, CPU per answer x{cpu / base_cpu:.2f} of the runs without the log"
            if name != "off"
            else ""
        )
        print(f"  {name:8} {qps:>9,.0f} answers/s  {cpu:6.2f} µs CPU/answer{share}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
