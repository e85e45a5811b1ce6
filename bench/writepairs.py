"""Writes switched on and off under one DNS load: what they cost the answers, second by second.

    python bench/writepairs.py                                  # this tree, 3 runs
    python bench/writepairs.py --round 0 --round 0.05           # A/B: --api-accept-round off and on
    python bench/writepairs.py --src /tmp/old --src .           # A/B: two kdns trees
    python bench/writepairs.py --mix storm --rate 10            # the storm mix, 10 writes/s
    python bench/writepairs.py --writer kubelets                # writes on kept connections

bench/churn.py compares 3 s windows with writes to the no-write windows before them,
minutes apart on a fresh kdns: on a shared machine the answers/s of two no-write windows
a minute apart already differ by up to a fifth. Here one kdns (the bench cluster,
`--ephemeral`, pinned to one core as churn.py's) answers one closed-loop dnsperf (the
other core) for `--seconds`, reporting every second (`-S 1`), while the writes
(`writes.ConcurrentWriter`, `--rate` readiness flips a second, each on a connection of
its own; `--writer kubelets`: four clients each on a kept connection, as kubelets; the
others in bench/writes.py WRITERS) are switched on for `--period` seconds and off for as
long, over and over. Each second wholly inside a write period is divided by the median of the write-free
seconds around it (within two periods): the machine's slow drifts cancel, and a run
gives a dozen such ratios. The fast drifts do not: on a virtual machine the hypervisor
takes a share of both cores (steal) in bursts of seconds, and a second in which it took
10 % or more of either (`StealSampler`, /proc/stat) is left out, with or without writes,
and counted. The harness and its writer run on dnsperf's core, as churn.py's. Per
variant (tree x round) the median of the runs' medians is printed, with the quartiles of
all the seconds, the write-free answers/s, the writes acknowledged a second, their reply
time and the seconds stolen. Variants alternate run by run. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gen
from common import LOOPBACK, REPO, say
from measure import STEAL_LIMIT
from procs import cpus, free_port, pin_threads, share, steal_ticks, stop_all
from servers import wait_answer
from writes import WRITERS, new_writer, start, wait_api

EDGE_S = 0.3  # a second that ends this soon after the writes stopped is neither on nor off


@dataclass(frozen=True)
class Variant:
    src: Path
    accept_round: str | None  # --api-accept-round through its environment twin; None: kdns's default

    @property
    def name(self) -> str:
        return self.src.name + ("" if self.accept_round is None else f" round {self.accept_round}")


def per_second(out: str) -> list[tuple[float, float]]:
    """dnsperf -S's lines, `<unix time>: <queries per second>`: (end of the second, rate)."""
    seconds = []
    for line in out.splitlines():
        stamp, _, rate = line.partition(": ")
        try:
            seconds.append((float(stamp), float(rate)))
        except ValueError:  # dnsperf's other lines
            continue
    return seconds


def state(end: float, on: list[tuple[float, float]]) -> str:
    """The second ending at `end`: "on" (wholly inside a write period), "edge" (touching
    one, or ending within EDGE_S after it) or "off"."""
    begin = end - 1
    for a, b in on:
        if a <= begin and end <= b:
            return "on"
        if end > a and begin < b + EDGE_S:
            return "edge"
    return "off"


def ratios(seconds: list[tuple[float, float]], on: list[tuple[float, float]], period: float,
           stolen: frozenset[float] = frozenset()) -> tuple[list[float], list[float]]:
    """Each second wholly inside a write period over the median of the write-free seconds
    within two periods of it; and the write-free rates. The seconds ending at a time in
    `stolen` are neither (`StealSampler`)."""

    labelled = [(end - 1, q, "stolen" if end in stolen else state(end, on)) for end, q in seconds]
    free = [(begin, q) for begin, q, s in labelled if s == "off"]
    out = []
    for begin, q, s in labelled:
        if s != "on":
            continue
        near = [q2 for b2, q2 in free if abs(b2 - begin) <= 2 * period + 1]
        if near:
            out.append(q / statistics.median(near))
    return out, [q for _, q in free]


def over_limit(taken: dict[float, float]) -> frozenset[float]:
    """Of the seconds `StealSampler.shares` measured, those in which steal reached
    STEAL_LIMIT on either core."""
    return frozenset(end for end, share_ in taken.items() if share_ >= STEAL_LIMIT)


class StealSampler(threading.Thread):
    """The hypervisor's share of the server's and the client's core (steal), read from
    /proc/stat every SAMPLE_S while a run lasts: `shares` gives each second of dnsperf's
    report the highest share of the two cores over it."""

    SAMPLE_S = 0.1

    def __init__(self, cpus: tuple[str, ...]) -> None:
        super().__init__(name="bench steal sampler", daemon=True)
        self.cpus = cpus
        self.samples: list[tuple[float, list[tuple[int, int]]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), [steal_ticks(cpu) for cpu in self.cpus]))
            self.stop.wait(self.SAMPLE_S)

    def shares(self, ends: list[float]) -> dict[float, float]:
        """For each second ending at one of `ends`, the highest steal share of the cores
        over it (seconds with fewer than two samples are left out)."""
        out = {}
        for end in ends:
            inside = [ticks for stamp, ticks in self.samples if end - 1 - self.SAMPLE_S <= stamp <= end + self.SAMPLE_S]
            if len(inside) < 2:
                continue
            shares = [share(a, b) for a, b in zip(inside[0], inside[-1], strict=True)]
            out[end] = max((x for x in shares if x is not None), default=0.0)
        return out


def one_run(variant: Variant, args: argparse.Namespace, work: Path, queries: Path, pods: list[gen.Pod],
            probe: dict[str, Any], server_cpu: str, client_cpu: str, first: int) -> dict[str, Any]:
    port, api_port = free_port(), free_port()
    env = {} if variant.accept_round is None else {"KDNS_API_ACCEPT_ROUND": variant.accept_round}
    kdns = start(variant.src, work / "cluster" / "manifests", None, port, api_port, server_cpu,
                 work / "kdns-writepairs.log", env=env)
    try:
        started, detail = wait_answer(kdns, port, probe["name"], probe["type"], 120)
        if started is None:
            raise SystemExit(f"writepairs: kdns did not answer: {detail}\n{kdns.log_tail()}")
        wait_api(f"http://{LOOPBACK}:{api_port}", kdns)
        pin_threads(kdns.pid, server_cpu)
        dnsperf = ["taskset", "-c", client_cpu, "dnsperf", "-s", LOOPBACK, "-p", str(port), "-d", str(queries), "-q", "100"]
        subprocess.run([*dnsperf, "-l", "4"], capture_output=True, check=False)  # the ready replies made
        steal = StealSampler((server_cpu, client_cpu))
        steal.start()
        load = subprocess.Popen([*dnsperf, "-l", str(args.seconds), "-S", "1"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        on: list[tuple[float, float]] = []
        acknowledged: list[float] = []
        sent = errors = 0
        ends = time.time() + args.seconds - 1
        time.sleep(args.period)
        while time.time() + 2 * args.period < ends:
            writer = new_writer(args.writer, api_port, pods, args.rate, int(args.rate * args.period * 2), first=first + sent)
            began = time.time()
            writer.start()
            time.sleep(args.period)
            writer.stop.set()
            on.append((began, time.time()))
            writer.join(10)
            sent += writer.sent
            errors += len(writer.errors)
            acknowledged += writer.acknowledged
            time.sleep(args.period)
        out, _ = load.communicate(timeout=args.seconds + 60)
        steal.stop.set()
        steal.join(5)
    finally:
        kdns.stop()
    seconds = per_second(out)
    taken = steal.shares([end for end, _ in seconds])
    stolen = over_limit(taken)
    # Steal in the seconds with writes and without, all of them: whether the hypervisor
    # took the seconds with writes more than the others can then be seen.
    steal_on = [x for end, x in taken.items() if state(end, on) == "on"]
    steal_off = [x for end, x in taken.items() if state(end, on) == "off"]
    found, free = ratios(seconds, on, args.period, stolen)
    if not seconds:
        raise SystemExit(f"writepairs: dnsperf reported no second:\n{out[-2000:]}")
    written = sum(b - a for a, b in on)
    # A run whose every second with writes the hypervisor took is reported, not judged.
    return {"variant": variant.name, "ratios": found, "median": statistics.median(found) if found else None,
            "free_qps": statistics.median(free) if free else None, "writes_per_s": len(acknowledged) / written,
            "reply_p50_ms": 1000 * statistics.median(acknowledged) if acknowledged else None,
            "write_errors": errors, "sent": sent, "seconds": len(seconds), "stolen": len(stolen),
            "steal_on": statistics.median(steal_on) if steal_on else None,
            "steal_off": statistics.median(steal_off) if steal_off else None,
            # every second as (end, answers, steal share or None), and the write periods
            "per_second": [(end, q, taken.get(end)) for end, q in seconds], "on": on}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", type=Path, help="a kdns source tree (repeat for A/B; default this one)")
    parser.add_argument("--round", action="append", help="kdns's --api-accept-round (repeat for A/B; default kdns's)")
    parser.add_argument("--mix", choices=("bench", "storm"), default="bench")
    parser.add_argument("--rate", type=float, default=100.0, help="writes a second while on (default 100)")
    parser.add_argument("--seconds", type=int, default=60, help="one run's dnsperf (default 60)")
    parser.add_argument("--period", type=float, default=4.0, help="seconds on, then off (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--json", type=Path, help="also write every run here")
    parser.add_argument("--writer", choices=WRITERS, default="concurrent",
                        help="how the writes are sent (bench/writes.py WRITERS; default: each on a connection of its own)")
    args = parser.parse_args(argv)
    variants = [Variant(src.resolve(), r) for src in (args.src or [REPO]) for r in (args.round or [None])]
    server_cpu, client_cpu, pinning = cpus()
    # The harness and its writer off kdns's core, as churn.py's: the clients' work is not
    # kdns's, and a writer thread the scheduler moved onto kdns's core would charge it so.
    os.sched_setaffinity(0, {int(client_cpu)})
    command = "python bench/writepairs.py " + " ".join(argv if argv is not None else sys.argv[1:])
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="kdns-writepairs-") as tmp:
            work = Path(tmp)
            spec = gen.PRESETS["bench"]
            model = gen.generate(work / "cluster", spec, zones=False)
            pods = [p for p in gen.build(spec).pods if p.hostname]
            probe = next(s for s in model["sample"] if s["rcode"] == "NOERROR" and s["answer"])
            queries = Path(model["queries"] if args.mix == "bench" else model["storm_queries"])
            for repeat in range(args.repeats):
                for variant in variants if repeat % 2 == 0 else variants[::-1]:
                    run = one_run(variant, args, work, queries, pods, probe, server_cpu, client_cpu, 1000 * repeat)
                    runs.append(run)
                    say(f"writepairs: {variant.name} run {repeat + 1}: median {_ratio(run['median'])} of "
                        f"{len(run['ratios'])} seconds, write-free {run['free_qps'] or 0:,.0f}/s, "
                        f"{run['writes_per_s']:.0f} writes/s acknowledged, reply p50 {run['reply_p50_ms'] or 0:.1f} ms, "
                        f"{run['stolen']} of {run['seconds']} seconds stolen (steal median with writes "
                        f"{100 * (run['steal_on'] or 0):.0f} %, without {100 * (run['steal_off'] or 0):.0f} %)")
    finally:
        stop_all()
    if args.json:
        args.json.write_text(json.dumps({"command": command, "pinning": pinning, "runs": runs}, indent=1) + "\n")
    print(f"`{command.strip()}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {pinning}, "
          f"{args.mix} mix, {args.rate:g} writes/s ({args.writer} writer) on and off every {args.period:g} s, {args.seconds} s a run)\n")
    print("| variant | x write-free answers/s (median of runs) | runs | quartiles of all seconds "
          "| write-free answers/s | writes/s acknowledged | reply p50 | seconds stolen |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for variant in variants:
        mine = [run for run in runs if run["variant"] == variant.name]
        every = [r for run in mine for r in run["ratios"]]
        replies = [run["reply_p50_ms"] for run in mine if run["reply_p50_ms"] is not None]
        each = ", ".join(_ratio(run["median"]) for run in mine)
        judged = [run for run in mine if run["median"] is not None]
        if not every or not judged:
            print(f"| {variant.name} | no second judged | {each} | - | - | - | - | "
                  f"{sum(run['stolen'] for run in mine)} of {sum(run['seconds'] for run in mine)} |")
            continue
        quartiles = statistics.quantiles(every, n=4) if len(every) > 1 else [every[0]] * 3
        reply = f"{statistics.median(replies):.1f} ms" if replies else "-"
        print(f"| {variant.name} | **{statistics.median(run['median'] for run in judged):.3f}** | {each} | "
              f"{quartiles[0]:.3f}-{quartiles[2]:.3f} | {statistics.median(run['free_qps'] for run in judged):,.0f} | "
              f"{statistics.median(run['writes_per_s'] for run in mine):.0f} | {reply} | "
              f"{sum(run['stolen'] for run in mine)} of {sum(run['seconds'] for run in mine)} |")
    return 0


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
