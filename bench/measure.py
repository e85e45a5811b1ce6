"""dnsperf runs and what they measure: throughput (a rate search), latency at fixed loads,
and runs repeated when other processes disturbed them. `parse_dnsperf` is the pure part."""

from __future__ import annotations

import math
import os
import re
import resource
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from common import (
    CLIENTS,
    CLK_TCK,
    FIXED_LOADS,
    LOOPBACK,
    LOSS_LIMIT_PCT,
    OUTSTANDING_RATE,
    OUTSTANDING_UNLIMITED,
    QUERY_TIMEOUT,
    SENT_RATIO_MIN,
    Mode,
    say,
)
from procs import core_ticks, cpu_seconds, rcvbuf_errors, share, steal_ticks, udp_drops

_STATS = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "runtime_s": r"Run time \(s\):\s+([\d.]+)",
    "avg_latency_s": r"Average Latency \(s\):\s+([\d.]+)",
    "request_bytes": r"Average packet size:\s+request (\d+)",
    "response_bytes": r"Average packet size:\s+request \d+, response (\d+)",
}


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def parse_dnsperf(text: str, *, seconds: float, rate: int | None, verbose: bool = False) -> dict[str, Any]:
    """What one dnsperf run printed, as figures: its statistics (None where missing: `sent`
    None means dnsperf failed), answers per second of the sending window, loss, whether
    the rate held, and with `verbose` (dnsperf -v) latency percentiles in ms."""
    run: dict[str, Any] = {"rate": rate, "seconds": seconds}
    for key, pattern in _STATS.items():
        m = re.search(pattern, text)
        run[key] = float(m.group(1)) if m else None
    if run["sent"] is None:
        return run
    m = re.search(r"Response codes:\s+(.*)", text)
    run["rcodes"] = {code: int(n) for code, n in re.findall(r"([A-Z]+) (\d+) \(", m.group(1))} if m else {}
    sent, completed = run["sent"], run["completed"] or 0
    # dnsperf's "Queries per second" divides by its run time, which includes waiting up to
    # the timeout for the last unanswered queries: answers per second of the sending window
    # is the figure wanted here.
    run["qps_dnsperf"] = run["qps"]
    run["qps"] = completed / seconds if seconds else None
    run["loss_pct"] = 100.0 * (sent - completed) / sent if sent else 100.0
    run["sent_ratio"] = sent / (rate * seconds) if rate else None
    run["holds"] = bool(sent and run["loss_pct"] < LOSS_LIMIT_PCT and (rate is None or run["sent_ratio"] >= SENT_RATIO_MIN))
    if verbose:
        latencies, timeouts = [], 0
        for line in text.splitlines():
            if not line.startswith("> "):
                continue
            parts = line.split()
            if parts[1] == "T":
                timeouts += 1
                continue
            try:
                latencies.append(float(parts[-1]) * 1000.0)
            except ValueError:
                continue
        latencies.sort()
        run["latency_samples"] = len(latencies)
        run["latency_ms"] = {f"p{q:g}": percentile(latencies, q) for q in (50, 90, 99, 99.9)}
        run["latency_ms"]["max"] = latencies[-1] if latencies else None
        run["latency_ms"]["mean"] = statistics.fmean(latencies) if latencies else None
    return run


def dnsperf(port: int, queries: Path, seconds: float, client_cpu: str, server_pid: int | None, workdir: Path,
            rate: int | None = None, verbose: bool = False, address: str = LOOPBACK,
            server_cpu: str | None = None, clients: int = CLIENTS, options: tuple[str, ...] = ()) -> dict[str, Any]:
    """One dnsperf run; its statistics, the server's CPU time over it and, with verbose,
    latency percentiles from dnsperf's per-answer lines. `options`: more of dnsperf's
    arguments (`-E CODE:HEX`, an EDNS option on every query)."""
    argv = ["taskset", "-c", client_cpu, "dnsperf", "-s", address, "-p", str(port), "-d", str(queries),
            "-l", f"{seconds:g}", "-c", str(clients), "-T", "1", "-t", f"{QUERY_TIMEOUT:g}", "-e",
            "-q", str(OUTSTANDING_RATE if rate else OUTSTANDING_UNLIMITED)]
    if rate:
        argv += ["-Q", str(int(rate))]
    if verbose:
        argv.append("-v")
    argv += options
    out_path = workdir / "dnsperf.out"
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    drops_before, errors_before = udp_drops(port), rcvbuf_errors()
    core_before = core_ticks(server_cpu) if server_cpu else (0, 0)
    client_before = core_ticks(client_cpu)
    steal_before = [steal_ticks(cpu) for cpu in (server_cpu, client_cpu) if cpu]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(seconds + QUERY_TIMEOUT + 60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    wall = time.monotonic() - wall
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = cpu_seconds(server_pid) if server_pid else 0.0
    server_drops = udp_drops(port) - drops_before
    core_after = core_ticks(server_cpu) if server_cpu else (0, 0)
    client_after = core_ticks(client_cpu)
    steal_after = [steal_ticks(cpu) for cpu in (server_cpu, client_cpu) if cpu]
    other_drops = rcvbuf_errors() - errors_before - server_drops
    text = out_path.read_text(errors="replace")
    run = parse_dnsperf(text, seconds=seconds, rate=rate, verbose=verbose)
    if run["sent"] is None:
        raise RuntimeError(f"dnsperf failed ({proc.returncode}): {text[-800:]}")
    run["server_socket_drops"], run["other_socket_drops"] = server_drops, other_drops
    completed = run["completed"] or 0
    client_cpu_s = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    run["client_cpu_util"] = client_cpu_s / seconds if seconds else None
    busy, total = client_after[0] - client_before[0], client_after[1] - client_before[1]
    if total > 0 and server_cpu != client_cpu:
        # Other processes on dnsperf's core (the harness itself is nearly idle meanwhile).
        run["client_core_others"] = max(0.0, (busy - client_cpu_s * CLK_TCK) / total)
    # The hypervisor's share of each core over the run (a virtual machine's steal): the
    # highest of the server's and the client's, as either one starves a closed loop.
    stolen = [share(a, b) for a, b in zip(steal_before, steal_after, strict=True)]
    run["steal"] = max((x for x in stolen if x is not None), default=None)
    if server_pid:
        run["server_cpu_s"] = cpu_after - cpu_before
        run["server_cpu_util"] = run["server_cpu_s"] / wall if wall else None
        run["cpu_us_per_query"] = 1e6 * run["server_cpu_s"] / completed if completed else None
        busy, total = core_after[0] - core_before[0], core_after[1] - core_before[1]
        if total > 0:
            # How busy the server's core was, and how much of that was other processes
            # (the machine is shared): the server is CPU-bound only if its core was full.
            run["server_core_busy"] = busy / total
            run["server_core_others"] = max(0.0, (busy - run["server_cpu_s"] * CLK_TCK) / total)
    out_path.unlink(missing_ok=True)
    return run


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def median_latency(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    keys = runs[0].get("latency_ms", {}).keys() if runs else ()
    return {k: statistics.median([r["latency_ms"][k] for r in runs if r["latency_ms"].get(k) is not None] or [math.nan])
            for k in keys}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: median_of(runs, k) for k in ("qps", "loss_pct", "sent_ratio", "cpu_us_per_query", "server_cpu_util",
                                             "client_cpu_util", "avg_latency_s", "response_bytes",
                                             "server_core_busy", "server_core_others", "client_core_others")}
    out["runs"] = len(runs)
    out["disturbed_runs"] = sum(1 for r in runs if r.get("disturbed"))
    if runs and "latency_ms" in runs[0]:
        out["latency_ms"] = median_latency(runs)
    return out


NOISY = 0.15  # other processes took more than this share of the server's core in a run
# A run (or a second of one) in which the hypervisor took this share of the server's core
# or the client's (steal, procs.steal_ticks) measured the host, not the server: churn.py
# and writepairs.py leave it out, and say how many they did.
STEAL_LIMIT = 0.1


class RetryBudget:
    """How many disturbed runs the whole benchmark may still repeat (`Mode.retries` at first)."""

    def __init__(self, left: int) -> None:
        self.left = left


def quiet(run_once: Callable[[], dict[str, Any]], budget: RetryBudget) -> dict[str, Any]:
    """A run in which other processes took < 15 % of the server's core: a disturbed run is
    repeated once while the benchmark's retry `budget` lasts (so a machine that stays busy
    costs bounded time); the less disturbed of the two is kept, marked `disturbed` if
    it still was."""
    def others_of(run: dict[str, Any]) -> float:
        return max(run.get("server_core_others") or 0.0, run.get("client_core_others") or 0.0)

    r = run_once()
    others = others_of(r)
    if others < NOISY:
        return r
    if budget.left <= 0:
        say(f"    other processes used {100 * others:.0f} % of the server's or dnsperf's core (no retries left)")
        r["disturbed"] = True
        return r
    budget.left -= 1
    say(f"    other processes used {100 * others:.0f} % of the server's or dnsperf's core during that run; "
        "running it again")
    again = run_once()
    again["attempt"] = 2
    best = again if others_of(again) < others else r
    if others_of(best) >= NOISY:
        best["disturbed"] = True
    return best


@dataclass
class Target:
    name: str
    port: int
    pid: int
    queries: Path
    cpu: str
    address: str = LOOPBACK


def measure_throughput(t: Target, mode: Mode, client_cpu: str, workdir: Path, budget: RetryBudget) -> dict[str, Any]:
    """Unlimited-rate throughput (median of repeats), then the highest -Q rate with loss
    under 0.1 %: bracket and bisect, then confirm with repeats (stepping down if needed)."""
    def run(rate: int | None, secs: float, verbose: bool = False) -> dict[str, Any]:
        return dnsperf(t.port, t.queries, secs, client_cpu, t.pid, workdir,
                       rate=rate, verbose=verbose, address=t.address, server_cpu=t.cpu)

    unlimited = [quiet(lambda: run(None, mode.unlimited_s), budget) for _ in range(mode.repeats)]
    u = median_of(unlimited, "qps") or 1000.0
    say(f"  {t.name}: unlimited-rate (closed loop, {OUTSTANDING_UNLIMITED} outstanding) {u:,.0f} qps")
    steps = []
    best, fail = 0, None
    rate = max(100, int(u))
    for _ in range(mode.search_steps):
        r = run(rate, mode.search_s)
        steps.append(r)
        say(f"  {t.name}: -Q {rate:>8,} -> {r['qps']:>10,.0f} qps, loss {r['loss_pct']:.3f} % "
            f"(server socket drops {r['server_socket_drops']}), sent {100 * r['sent_ratio']:.0f} % "
            f"{'ok' if r['holds'] else 'FAIL'}")
        holds = r["holds"]
        if not holds:  # the machine is shared: a rate fails only if it fails twice
            r = run(rate, mode.search_s)
            steps.append(r)
            holds = r["holds"]
            say(f"  {t.name}: -Q {rate:>8,} -> {r['qps']:>10,.0f} qps, loss {r['loss_pct']:.3f} % "
                f"(server socket drops {r['server_socket_drops']}), sent {100 * r['sent_ratio']:.0f} % "
                f"{'ok' if holds else 'FAIL'} (again)")
        if holds:
            best = rate
            rate = int(rate * 1.25) if fail is None else (rate + fail) // 2
        else:
            fail = rate
            rate = (best + rate) // 2 if best else max(50, rate // 2)
        if fail is not None and best and (fail - best) / fail <= mode.search_tol:
            break
    confirm: list[dict[str, Any]] = []
    candidate = best or max(50, rate)
    for _ in range(3):  # bounded step-down
        confirm = [quiet(partial(run, candidate, mode.confirm_s), budget) for _ in range(mode.repeats)]
        loss = median_of(confirm, "loss_pct") or 0.0
        sent_ratio = median_of(confirm, "sent_ratio") or 0.0
        if loss < LOSS_LIMIT_PCT and sent_ratio >= SENT_RATIO_MIN:
            break
        say(f"  {t.name}: confirm at {candidate:,} failed (median loss {loss:.3f} %, sent {100 * sent_ratio:.0f} % "
            f"of the rate), stepping down 10 %")
        candidate = int(candidate * 0.9)
    summary = summarize(confirm)
    say(f"  {t.name}: max throughput with < {LOSS_LIMIT_PCT} % loss: {candidate:,} qps "
        f"(median {summary['qps']:,.0f} answered/s, loss {summary['loss_pct']:.3f} %, "
        f"{summary['cpu_us_per_query'] or 0:.1f} us CPU/query)")
    return {
        "max_rate": candidate,
        "max": summary,
        "unlimited": summarize(unlimited),
        "search": [{k: s[k] for k in ("rate", "qps", "loss_pct", "sent_ratio", "holds", "server_socket_drops")}
                   for s in steps],
        "confirm_runs": [slim(r) for r in confirm],
        "unlimited_runs": [slim(r) for r in unlimited],
        # The server's core had idle time at the server's "max": dnsperf (one core) was the limit.
        "client_bound": (summary["server_core_busy"] or 0) < 0.85,
        # What one fully used core would answer at the measured CPU cost per query.
        "per_cpu_second": (1e6 / summary["cpu_us_per_query"]) if summary["cpu_us_per_query"] else None,
    }


def measure_latency(t: Target, mode: Mode, client_cpu: str, workdir: Path, budget: RetryBudget,
                    loads=FIXED_LOADS) -> list[dict[str, Any]]:
    out = []
    for load in loads:
        runs = [quiet(partial(dnsperf, t.port, t.queries, mode.latency_s, client_cpu, t.pid, workdir, rate=load,
                              verbose=True, address=t.address, server_cpu=t.cpu), budget)
                for _ in range(mode.repeats)]
        s = summarize(runs)
        lat = s["latency_ms"]
        say(f"  {t.name}: {load:>6,} qps offered: p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms, "
            f"p99.9 {lat['p99.9']:.3f} ms, loss {s['loss_pct']:.3f} %, {s['cpu_us_per_query'] or 0:.1f} us CPU/query")
        out.append({"load": load, **s, "runs_detail": [slim(r) for r in runs]})
    return out


def slim(run: dict[str, Any]) -> dict[str, Any]:
    keep = ("rate", "seconds", "sent", "completed", "lost", "loss_pct", "qps", "qps_dnsperf", "sent_ratio", "holds",
            "server_cpu_s", "cpu_us_per_query", "client_cpu_util", "server_cpu_util", "rcodes",
            "response_bytes", "latency_ms", "latency_samples", "server_socket_drops", "other_socket_drops",
            "server_core_busy", "server_core_others", "client_core_others", "steal", "attempt", "disturbed",
            "cpu_share_pct")
    return {k: run[k] for k in keep if k in run}
