"""kdns beside Knot DNS: the one benchmark command.

    python bench/run.py [--quick] [--out bench/out]

Installs dnsperf and knot from Debian's packages when they are missing (apt-get) and
matplotlib from PyPI; generates the benchmark cluster (bench/gen.py) as manifests for
kdns and zone files for Knot; checks that both answer the same; then, one server at a
time, pinned to one core with dnsperf on the other, measures:

* max throughput with < 0.1 % loss (rate search with dnsperf -Q, confirmed by repeats),
  and the closed-loop (unlimited -Q) throughput;
* latency percentiles at fixed loads (dnsperf -v: one latency per answer);
* server CPU time per answered query (/proc/PID/stat) and peak memory (VmHWM);

and, for kdns alone: start-up time and peak RSS with 10,000 services and 100,000 pods;
forwarded names answered from the cache (kdns --upstream -> a Knot serving an outside
zone), when kdns forwards; registry change -> visible answer latency under 20,000 qps
(the HTTP API), when kdns has `--api-port`; answers per second while the registry is
written (bench/churn.py: 10 and 100 writes/s, from the first write after start). Writes
results.json, results.md, results.png and churn.png under --out and, with --readme and
the default --out, the results section of bench/README.md. Every process it starts is stopped by its PID; everything is loopback.

This file is the command and its order of work; the parts are modules beside it:
`common` (constants, modes), `procs` (processes and /proc), `servers` (starting and
asking kdns and Knot), `measure` (dnsperf runs: `parse_dnsperf`, the rate search,
latency), `scenarios` (the kdns-only parts), `churn` (answers while the registry is
written), `report` (tables, plots, README section), and `gen` (the cluster). tests/test_bench.py tests their pure parts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import churn
import gen
from common import (
    CHANGE_WORKERS,
    CLIENTS,
    DEFAULT,
    HERE,
    LOOPBACK,
    OUTSTANDING_UNLIMITED,
    QUERY_TIMEOUT,
    QUICK,
    SENT_RATIO_MIN,
    SPLIT_CLIENTS,
    T0,
    WORKERS_SPLIT,
    say,
)
from measure import RetryBudget, Target, measure_latency, measure_throughput
from procs import (
    Child,
    cpus,
    ensure_tools,
    free_port,
    kdns_fingerprint,
    machine_info,
    memory_kib,
    pin_threads,
    stop_all,
)
from report import targets_table, update_readme, write_markdown, write_plot
from scenarios import change_test, forward_test, scale_test, workers_test
from servers import (
    kdns_common_flags,
    kdns_help,
    knot_conf,
    knot_effective_conf,
    sanity_check,
    start_kdns,
    start_knot,
    wait_answer,
)


def optional(part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one kdns-only part; a failure is reported as skipped, and the run goes on."""
    try:
        return part()
    except Exception as exc:  # noqa: BLE001  (report it, finish the other parts)
        import traceback

        traceback.print_exc()
        return {"skipped": f"failed: {type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kdns beside Knot DNS: throughput, latency, CPU, memory.")
    parser.add_argument("--quick", action="store_true", help="short runs (about 8 minutes instead of about 13)")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="where results go (default bench/out)")
    parser.add_argument("--seed", type=int, default=1, help="cluster generator seed")
    parser.add_argument("--only", choices=["knot", "kdns"], help="measure one server only")
    parser.add_argument("--skip-scale", action="store_true", help="no 10,000-service / 100,000-pod start-up test")
    parser.add_argument("--readme", action="store_true",
                        help="with the default --out, also write the results into bench/README.md (the record) "
                             "and the plot to bench/results.png")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (generated files, logs)")
    parser.add_argument("--rewrite", action="store_true",
                        help="measure nothing: write the tables, the plot and the README section again from "
                             "OUT/results.json (after a change to how they are written)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.rewrite:
        results = json.loads((out / "results.json").read_text())
        results["targets"] = targets_table(results)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        report(results, out, readme=args.readme)
        return 0
    mode = QUICK if args.quick else DEFAULT
    budget = RetryBudget(mode.retries)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    notes = ensure_tools()
    server_cpu, client_cpu, pinning = cpus()
    os.sched_setaffinity(0, {int(client_cpu)})  # this harness (sanity queries, API calls) off the server's core
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="kdns-bench-"))
    results: dict[str, Any] = {"mode": mode.name, "pinning": pinning, "notes": notes, "servers": {}}
    try:
        results["machine"] = machine_info()
        results["machine"]["kdns_sources"] = kdns_fingerprint()
        help_text = ""
        if args.only != "knot":
            help_text = kdns_help()
            results["kdns_flags"] = kdns_common_flags(help_text)
        spec = gen.Spec(**{**gen.PRESETS["bench"].__dict__, "seed": args.seed})
        model = gen.generate(workdir / "cluster", spec)
        results["cluster"] = {k: model[k] for k in ("spec", "namespaces", "services_clusterip", "services_headless",
                                                    "pods", "records", "query_count", "mix")}
        say(f"cluster: {model['services_clusterip']:,} + {model['services_headless']} services, {model['pods']:,} pods, "
            f"{model['records']:,} records, {model['query_count']:,} queries ({workdir})")
        queries = Path(model["queries"])
        manifests = workdir / "cluster" / "manifests"
        zones = {zone: Path(p) for zone, p in model["zones"].items()}

        def launch(name: str, port: int) -> Child:
            if name == "knot":
                conf = knot_conf(workdir / "knot", LOOPBACK, port, zones)
                return start_knot(conf, server_cpu, workdir / "knot.log")
            return start_kdns(manifests, port, server_cpu, workdir / "kdns.log")

        probe = next(s for s in model["sample"] if s["rcode"] == "NOERROR" and s["answer"])
        order = [s for s in ("knot", "kdns") if args.only in (None, s)]

        # 1. sanity: both up at once, same answers
        ports = {name: free_port() for name in order}
        running = {}
        try:
            for name in order:
                running[name] = launch(name, ports[name])
            for name, child in running.items():
                started, detail = wait_answer(child, ports[name], probe["name"], probe["type"], 120)
                if started is None:
                    raise RuntimeError(f"{name} did not answer: {detail}\n{child.log_tail()}")
            if len(running) == 2:
                sanity = sanity_check(model["sample"], {"kdns": ports["kdns"], "knot": ports["knot"]})
                results["sanity"] = sanity
                say(f"sanity: {sanity['queries']} queries, {len(sanity['mismatches'])} mismatches, "
                    f"{len(sanity['unanswered'])} unanswered")
                for line in sanity["mismatches"][:20] + sanity["unanswered"][:10]:
                    print(f"    MISMATCH {line}", flush=True)
            if "knot" in running:
                results["knot_config"] = knot_effective_conf(workdir / "knot" / "knot.conf")
        finally:
            for child in running.values():
                child.stop()

        # 2. each server alone, in turn
        for name in order:
            port = free_port()
            child = launch(name, port)
            try:
                startup, detail = wait_answer(child, port, probe["name"], probe["type"], 120)
                if startup is None:
                    raise RuntimeError(f"{name} did not answer: {detail}")
                rss_start = memory_kib(child.pid)["VmRSS"]
                pinning_check = pin_threads(child.pid, server_cpu)
                say(f"{name}: pid {child.pid}, first answer {startup:.2f} s after exec, RSS {rss_start / 1024:.0f} MiB, "
                    f"{pinning_check['threads']} threads on CPU {server_cpu}"
                    + (f" ({len(pinning_check['moved'])} re-pinned: {pinning_check['moved']})" if pinning_check["moved"] else ""))
                target = Target(name, port, child.pid, queries, server_cpu)
                throughput = measure_throughput(target, mode, client_cpu, workdir, budget)
                latency = measure_latency(target, mode, client_cpu, workdir, budget)
                memory = memory_kib(child.pid)
                pinning_end = pin_threads(child.pid, server_cpu)
                results["servers"][name] = {
                    "startup_s": startup,
                    "rss_after_start_mib": round(rss_start / 1024, 1),
                    "peak_rss_mib": round(memory["VmHWM"] / 1024, 1),
                    "throughput": throughput,
                    "latency": latency,
                    "threads_repinned_at_start": pinning_check["moved"],
                    "threads_off_cpu_at_end": pinning_end["moved"],
                }
            finally:
                code = child.stop()
                say(f"{name}: stopped (exit {code})")

        # 3. kdns alone: forwarding, registry changes, scale
        if "kdns" in order:
            cluster_max = results["servers"]["kdns"]["throughput"]["max_rate"]
            say("forward: kdns --upstream -> Knot (outside zone)")
            results["forward"] = optional(lambda: forward_test(workdir, manifests, model, mode, server_cpu, client_cpu,
                                                               cluster_max, budget))
            if "skipped" in results["forward"]:
                say(f"forward: skipped: {results['forward']['skipped']}")
            say("change: registry change -> visible answer")
            results["change"] = optional(lambda: change_test(workdir, manifests, model, mode, server_cpu, client_cpu,
                                                             help_text))
            if "skipped" in results["change"]:
                say(f"change: skipped: {results['change']['skipped']}")
            say(f"change: the same with --workers {CHANGE_WORKERS}, seen by every worker")
            results["change_workers"] = optional(lambda: change_test(
                workdir, manifests, model, mode, server_cpu, client_cpu, help_text, workers=CHANGE_WORKERS))
            if "skipped" in results["change_workers"]:
                say(f"change: skipped: {results['change_workers']['skipped']}")
            say(f"workers: --workers 1 and {WORKERS_SPLIT} on the one core, {SPLIT_CLIENTS} dnsperf sockets")
            results["workers"] = optional(lambda: workers_test(workdir, manifests, queries, model, mode, server_cpu,
                                                               client_cpu, help_text, budget))
            if "skipped" in results["workers"]:
                say(f"workers: skipped: {results['workers']['skipped']}")
            plan = churn.PLANS[mode.name]
            say(f"churn: answers while the registry is written, {plan.window_s:g} s windows from the first write")
            results["churn"] = optional(lambda: churn.churn_test(workdir, manifests, model, plan, server_cpu, client_cpu))
            if not args.skip_scale:
                results["scale"] = optional(lambda: scale_test(workdir, mode, server_cpu, client_cpu,
                                                               with_knot="knot" in order, budget=budget))

        knot_cfg = results.get("knot_config", {})
        results["notes"] += [
            (f"{pinning}; dnsperf -T 1 -c {CLIENTS}, EDNS0 (-e: the 10-pod SRV answers are ~800-900 bytes), "
            f"timeout {QUERY_TIMEOUT:g} s (a later answer counts as lost)."),
            (f"Knot: udp-workers/tcp-workers/background-workers set to 1 (its defaults: online CPUs / max(CPUs, 10) / "
            f"min(CPUs, 10)); read back with knotc: {knot_cfg or 'n/a'}. kdns: one process, one event loop."),
            (f"Max throughput: dnsperf -Q rate search (start at the unlimited-rate median, x1.25 up, bisect down, "
            f"{mode.search_steps} steps at most, {mode.search_s:g} s each), then {mode.repeats} runs of "
            f"{mode.confirm_s:g} s at the rate found, stepping down 10 % if their median loss is >= 0.1 %; a rate holds "
            f"when loss < 0.1 % and dnsperf sent >= {100 * SENT_RATIO_MIN:.0f} % of it. Unlimited rate: no -Q, "
            f"{OUTSTANDING_UNLIMITED} outstanding, median of {mode.repeats} x {mode.unlimited_s:g} s."),
            (f"Latency: dnsperf 2.10 has no latency histogram option (`dnsperf -H`), so dnsperf -v prints every "
            f"answer's latency (µs resolution, measured by dnsperf) and the percentiles are computed here "
            f"(nearest rank, answered queries only; lost ones are the loss column); {mode.repeats} runs of "
            f"{mode.latency_s:g} s per load, medians."),
            ("CPU per query: server utime+stime from /proc/PID/stat (all threads) over a run / answered queries. "
            "Peak memory: VmHWM from /proc/PID/status at the end of the server's runs."),
            ("One server runs at a time; the machine is shared and noisy: 'its core busy (others' share)' is the server "
            "core's busy time from /proc/stat over the confirm runs and the part of it that was not the server "
            "(other tenants' processes); small differences mean little. The harness itself runs on the client CPU."),
        ]
        if any(s["throughput"].get("client_bound") for s in results["servers"].values()):
            bound = [n for n, s in results["servers"].items() if s["throughput"].get("client_bound")]
            results["notes"].append(f"client-bound: the core of {', '.join(bound)} was less than 85 % busy at its max rate, so "
                                    f"that max is what one dnsperf core can offer (closed loop: {OUTSTANDING_UNLIMITED} in "
                                    f"flight / latency), not the server's limit; 'answers per CPU-second' "
                                    f"(1 / CPU time per query) estimates the server's one-core capacity.")
        results["targets"] = targets_table(results)
        results["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        if kdns_fingerprint() != results["machine"]["kdns_sources"]:
            results["notes"].append("kdns's sources changed on disk during this run: its figures may mix versions; "
                                    "run again.")
            say("warning: kdns's sources changed during the run")
        results["elapsed_s"] = round(time.monotonic() - T0, 1)
    finally:
        stop_all()
        if args.keep:
            say(f"working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    report(results, out, readme=args.readme)
    return 0


def report(results: dict[str, Any], out: Path, *, readme: bool) -> None:
    """results.md, results.png and (with `readme` and the default --out) the README section; the targets."""
    markdown = write_markdown(results, out / "results.md")
    problem = write_plot(results, out / "results.png")
    if problem:
        say(problem)
    if results.get("churn", {}).get("summary"):
        m = results["machine"]
        trouble = churn.plot(results["churn"], out / "churn.png",
                             f"kdns under registry churn — {m['date_utc']}, {m['cpu_model']} ({results['mode']} run)")
        if trouble:
            say(trouble)
    if readme and out == (HERE / "out").resolve() and update_readme(results, markdown, out):
        say("bench/README.md results section updated")
    say(f"wrote {out / 'results.json'}, {out / 'results.md'}" + ("" if problem else f", {out / 'results.png'}"))
    for row in results["targets"]:
        met = {True: "met", False: "NOT met", None: "not measured"}[row["met"]]
        if row["goal"] == "—":  # a context row: nothing to meet
            print(f"  {row['target']}: {row['value']}")
        else:
            print(f"  {row['target']}: {row['value']} (goal {row['goal']}): {met}")


if __name__ == "__main__":
    raise SystemExit(main())
