"""CPU per answer, side by side: kdns (this tree, and another revision with --against) and Knot.

    python bench/cpu.py                          # 2-4 minutes: 3 rounds x (knot, kdns)
    python bench/cpu.py --against main           # the same with kdns at `main` as a third server
    python bench/cpu.py --syscalls --rounds 1    # also count system calls per answer (perf stat)
    python bench/cpu.py --only-kdns --against main --edns-option 10:0102030405060708   # the slow path

The cheap step of bench/run.py that the steady-registry target of issue 19 compares: the
benchmark cluster and query mix of bench/gen.py, each server pinned to one core (taskset,
every thread re-pinned), dnsperf on the other. Per server and round: every query of the
file asked once (dnsperf -n 1, not counted: kdns makes its ready replies), a closed-loop
run (dnsperf as fast as the server answers: throughput, CPU per answer and its user share)
and a run at a fixed rate (--rate, dnsperf -Q), where every server answers the same load.
CPU per answer is utime + stime from /proc/PID/stat over the run / answers. Each round
starts with a different server, so a busy spell falls on all of them alike; the figures
are medians over rounds, with the ratios kdns / Knot and kdns / kdns@REV.

`--against REV` exports that revision of kdns (`git archive`, into a temporary
directory, nothing checked out) and runs it as a third server, for an A/B of a change.
With `--syscalls`, `perf stat` counts the server's system calls over each run (the
tracepoints raw_syscalls:sys_enter and syscalls:sys_enter_{recvmmsg,sendmmsg,epoll_wait,
epoll_pwait,recvfrom,sendto}): system calls per answer, and answers per recvmmsg (the
mean batch a read returns, empty reads counted). The rate search and the latency runs
are bench/run.py's.

`--edns-option CODE:HEX` puts that EDNS option on every query (dnsperf -E), a client
cookie (code 10) for one: kdns keeps no ready reply for a request with options
(kdns/wire/fastpath.py), so every answer is made the whole way, as for a resolver that
sends cookies, and what is measured is the slow path. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gen
from common import CLIENTS, LOOPBACK, REPO
from measure import dnsperf
from procs import cpus, free_port, pin_threads, stop_all
from servers import knot_conf, start_kdns, start_knot, wait_answer, wait_settled

# The tracepoints --syscalls counts: every system call, and those of the UDP paths.
SYSCALL_EVENTS = ("raw_syscalls:sys_enter", *(f"syscalls:sys_enter_{call}" for call in
                                              ("recvmmsg", "sendmmsg", "epoll_wait", "epoll_pwait", "recvfrom", "sendto")))


def export(revision: str, into: Path) -> Path:
    """kdns's sources at `revision` (git archive of this repository), unpacked under `into`."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", revision, "kdns", "pyproject.toml"],
                             capture_output=True, check=True, timeout=60)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=60)
    return into


class SyscallCount:
    """`perf stat` attached to a process while it runs: counts of SYSCALL_EVENTS."""

    def __init__(self, pid: int, workdir: Path) -> None:
        self._out = workdir / "perf-stat.out"
        argv = ["perf", "stat", "-x", ",", "-o", str(self._out), "-p", str(pid)]
        for event in SYSCALL_EVENTS:
            argv += ["-e", event]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)

    def stop(self) -> dict[str, int]:
        """Stop counting (SIGINT, as perf stat expects); {event: count}."""
        os.kill(self._proc.pid, signal.SIGINT)
        self._proc.wait(10)
        counts = {}
        for line in self._out.read_text().splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2] in SYSCALL_EVENTS and fields[0].isdigit():
                counts[fields[2]] = int(fields[0])
        return counts


def warm_up(port: int, queries: Path, client_cpu: str, options: tuple[str, ...] = ()) -> None:
    """Ask every query of the file once (dnsperf -n 1): then kdns has a ready reply for each
    question, the steady state measured."""
    subprocess.run(["taskset", "-c", client_cpu, "dnsperf", "-s", LOOPBACK, "-p", str(port), "-d", str(queries),
                    "-n", "1", "-c", str(CLIENTS), "-T", "1", "-e", *options], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=True)


def user_system(pid: int) -> tuple[int, int]:
    """(utime, stime) of a process, in clock ticks: how its CPU time splits between itself and the kernel."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]), int(fields[12])


def syscalls_per_answer(calls: dict[str, int], answers: int) -> dict[str, float]:
    """What `SyscallCount` counted, per answer: "all", each call by name, and "batch" (answers
    per recvmmsg, the mean batch a read returns; empty reads counted)."""
    if not calls or not answers:
        return {}
    per = {event.removeprefix("syscalls:sys_enter_"): count / answers for event, count in calls.items()
           if event != "raw_syscalls:sys_enter" and count}
    per["all"] = calls.get("raw_syscalls:sys_enter", 0) / answers
    reads = calls.get("syscalls:sys_enter_recvmmsg", 0)
    if reads:
        per["batch"] = answers / reads
    return per


def measure(name: str, start: Any, port: int, queries: Path, probe: str, args: argparse.Namespace,
            cpu: tuple[str, str], workdir: Path) -> dict[str, Any]:
    """One server's round: start it, warm it up, a closed-loop and a fixed-rate run."""
    server_cpu, client_cpu = cpu
    child = start(port)
    runs: dict[str, dict[str, Any]] = {}
    try:
        ready, why = wait_answer(child, port, probe, "A", 120.0)
        if ready is None:
            raise RuntimeError(f"{name} did not start: {why}\n{child.log_tail()}")
        pin_threads(child.pid, server_cpu)
        if wait_settled(child) is None:  # a steady registry: start-up's leftover work done
            raise RuntimeError(f"{name} did not finish its start-up's packing\n{child.log_tail()}")
        options = ("-E", args.edns_option) if args.edns_option else ()
        warm_up(port, queries, client_cpu, options)
        for kind, rate in (("closed", None), ("fixed", args.rate)):
            before = user_system(child.pid)
            counter = SyscallCount(child.pid, workdir) if args.syscalls else None
            run = dnsperf(port, queries, args.seconds, client_cpu, child.pid, workdir, rate=rate,
                          server_cpu=server_cpu, options=options)
            calls = counter.stop() if counter is not None else {}
            user, system = (a - b for a, b in zip(user_system(child.pid), before, strict=True))
            runs[kind] = {
                "qps": run["qps"] or 0.0,
                "cpu_us": run.get("cpu_us_per_query") or 0.0,
                "user_share": user / (user + system) if user + system else 0.0,
                "loss_pct": run["loss_pct"],
                "others": run.get("server_core_others") or 0.0,
                "syscalls": syscalls_per_answer(calls, int(run["completed"] or 0)),
            }
    finally:
        child.stop()
    return runs


def describe(run: dict[str, Any]) -> str:
    """One run as a line of text."""
    text = (f"{run['qps']:>9,.0f} answers/s {run['cpu_us']:5.2f} µs/answer ({100 * run['user_share']:.0f} % user), "
            f"loss {run['loss_pct']:.2f} %, others on the core {100 * run['others']:.0f} %")
    calls = run["syscalls"]
    if calls:
        text += f"; system calls per answer {calls['all']:.3f} (" + ", ".join(
            f"{call} {value:.3f}" for call, value in calls.items() if call not in ("all", "batch")) + ")"
        if "batch" in calls:
            text += f", {calls['batch']:.1f} answers per recvmmsg"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV", help="also run kdns at this git revision (e.g. main)")
    parser.add_argument("--only-kdns", action="store_true", help="no Knot (an A/B of kdns revisions only)")
    parser.add_argument("--preset", choices=sorted(gen.PRESETS), default="bench",
                        help="the cluster and its query mix (default bench; scale: 10,000 services, 100,000 pods)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one measured dnsperf run (default 5)")
    parser.add_argument("--rate", type=int, default=20000, help="queries per second of the fixed-rate run (default 20000)")
    parser.add_argument("--syscalls", action="store_true", help="count system calls over the fixed-rate run (perf stat)")
    parser.add_argument("--edns-option", metavar="CODE:HEX",
                        help="an EDNS option on every query (dnsperf -E; 10:0102030405060708, a client cookie, "
                             "sends every answer down kdns's slow path)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for tool in ("dnsperf", "taskset", *(("knotd",) if not args.only_kdns else ()), *(("perf",) if args.syscalls else ())):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt-get install dnsperf knot util-linux linux-perf)")
    server_cpu, client_cpu, pinning = cpus()
    os.sched_setaffinity(0, {int(client_cpu)})
    workdir = Path(tempfile.mkdtemp(prefix="kdns-cpu-"))
    try:
        model = gen.generate(workdir / "cluster", gen.PRESETS[args.preset], zones=not args.only_kdns)
        queries = Path(model["queries"])
        manifests = workdir / "cluster" / "manifests"
        probe = next(line.split()[0] for line in queries.read_text().splitlines() if line.endswith(" A"))
        servers: dict[str, Any] = {}
        if not args.only_kdns:
            zones = {zone: Path(p) for zone, p in model["zones"].items()}
            servers["knot"] = lambda port: start_knot(knot_conf(workdir / f"knot-{port}", LOOPBACK, port, zones),
                                                      server_cpu, workdir / "knot.log")
        # --api-port 0: the API on a free port, not on 8080, which another process may hold.
        flags = ["--upstream", "none", "--api-port", "0"]
        servers["kdns"] = lambda port: start_kdns(manifests, port, server_cpu, workdir / "kdns.log", flags)
        if args.against:
            base = export(args.against, workdir / "base")
            servers[f"kdns@{args.against}"] = lambda port: start_kdns(manifests, port, server_cpu,
                                                                      workdir / "kdns-base.log", flags, repo=base)
        print(f"cpu bench: {pinning}; {args.preset} cluster, {model['query_count']:,} queries; {args.rounds} rounds; "
              f"closed loop and {args.rate:,}/s, {args.seconds:g} s each", flush=True)
        results: dict[str, list[dict[str, dict[str, Any]]]] = {name: [] for name in servers}
        names = list(servers)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                run = measure(name, servers[name], free_port(), queries, probe, args, (server_cpu, client_cpu), workdir)
                results[name].append(run)
                print(f"  round {round_number + 1} {name}\n    closed loop   {describe(run['closed'])}\n"
                      f"    {args.rate:>7,}/s     {describe(run['fixed'])}", flush=True)
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print("medians:")
    medians = {name: {(kind, key): statistics.median(r[kind][key] for r in runs)
                      for kind in ("closed", "fixed") for key in ("qps", "cpu_us")}
               for name, runs in results.items()}
    for name, m in medians.items():
        print(f"  {name:12} {m['closed', 'qps']:>9,.0f} answers/s  {m['closed', 'cpu_us']:5.2f} µs/answer closed loop  "
              f"{m['fixed', 'cpu_us']:5.2f} µs/answer at {args.rate:,}/s")
    versus = [("knot", name) for name in medians if name != "knot" and "knot" in medians]
    if args.against:
        versus.append((f"kdns@{args.against}", "kdns"))
    for base, name in versus:
        a, b = medians[name], medians[base]
        print(f"  {name} / {base}: throughput x{a['closed', 'qps'] / b['closed', 'qps']:.2f}; CPU per answer "
              f"x{a['closed', 'cpu_us'] / b['closed', 'cpu_us']:.2f} closed loop, "
              f"x{a['fixed', 'cpu_us'] / b['fixed', 'cpu_us']:.2f} at {args.rate:,}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
