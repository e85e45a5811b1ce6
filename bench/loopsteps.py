"""How long a registry write holds kdns's event loop, step by step, and what the collector takes.

    python bench/loopsteps.py                                # this tree, journal on
    python bench/loopsteps.py --src /tmp/old --src .         # A/B: two kdns trees, runs alternated
    python bench/loopsteps.py --ephemeral --flips 3000
    python bench/loopsteps.py --steps                        # also each step of a write, named

A DNS datagram that arrives while the loop runs one callback waits for the rest of it:
the longest callback of a write is what that write can add to a DNS answer's latency.
This measures it in CPU time (the loop thread's `time.thread_time`), which other
processes on the core do not inflate, where dnsperf's p99 on a shared machine is their
queueing. kdns serves the bench cluster (bench/gen.py, seed 1) on one core; one client
sends `--flips` readiness flips (writes.Writer's PATCH) back to back. A probe loaded into
kdns (a sitecustomize on its PYTHONPATH, written here to a temporary directory) times
every callback of the event loop. So that every callback can be timed, kdns runs on
asyncio's own loop instead of uvloop (the probe hides uvloop): uvloop's callbacks are
cheaper, the steps of a write are the same. The probe also times each garbage
collection (`gc.callbacks`, CPU time) and counts the objects the oldest generation holds.

Per run: the longest callback of each write (median, p90, p99, max, over the flips),
the loop's CPU per flip in callbacks over 50 µs, and the full (generation 2) collections:
how many, the longest, and the tracked objects the oldest generation held at the end;
the longest young (generation 0 or 1) collection, and the collector's CPU per flip.
Medians of `--repeats` runs per tree are printed; nothing here is a test. `--steps`
also names each step (`print_steps`): which one a change to the write path should split.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gen
from procs import free_port
from servers import wait_answer
from writecost import BACK_TO_BACK
from writes import Writer, start, wait_api

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Loaded by kdns at start (sitecustomize): times every loop callback and collection,
# and writes a summary to $KDNS_LOOPSTEPS_OUT.<pid> on SIGUSR2 (then starts afresh).
PROBE = '''
import asyncio.events, gc, json, os, signal, time

_steps, _full, _young, _named = [], [], [], []
_run = asyncio.events.Handle._run
_clock = time.thread_time
_naming = bool(os.environ.get("KDNS_LOOPSTEPS_NAMES"))


def _where(handle):
    """A callback's name; for a task's step, the coroutines it is suspended in (innermost
    three), which name a step of a write by the awaits it runs between."""
    callback = handle._callback
    task = getattr(callback, "__self__", None)
    if not isinstance(task, asyncio.Task):
        return getattr(callback, "__qualname__", type(callback).__name__)
    names, coro = [], task.get_coro()
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        names.append(coro.cr_frame.f_code.co_name)
        coro = coro.cr_await
    return ">".join(names[-3:]) or "(task ends)"


def _timed(handle, _now=time.monotonic):
    at = _now()
    start = _where(handle) if _naming else ""
    begun = _clock()
    _run(handle)
    spent = _clock() - begun
    if spent >= 50e-6:  # shorter: the loop's own bookkeeping (bench/loopsteps.py's SLICE)
        _steps.append((at, spent))
        if _naming:
            _named.append((f"{start} -> {_where(handle)}", spent))


asyncio.events.Handle._run = _timed
_began = [0.0]


def _collected(phase, info):
    if phase == "start":
        _began[0] = _clock()
    else:
        (_full if info["generation"] == 2 else _young).append(_clock() - _began[0])


gc.callbacks.append(_collected)


def _report(*_):
    steps, full, young, named = list(_steps), list(_full), list(_young), list(_named)
    _steps.clear()
    _named.clear()
    _full.clear()
    _young.clear()
    summary = {"steps": steps, "named": named, "full": full, "young": young, "oldest": len(gc.get_objects(2))}
    path = os.environ["KDNS_LOOPSTEPS_OUT"] + f".{os.getpid()}"
    with open(path + ".part", "w") as out:
        json.dump(summary, out)
    os.replace(path + ".part", path)  # whole, or not there yet


signal.signal(signal.SIGUSR2, _report)
'''
NO_UVLOOP = 'raise ImportError("hidden by bench/loopsteps.py, so that each loop callback can be timed")\n'


def report(pid: int, out: Path) -> dict[str, Any]:
    os.kill(pid, signal.SIGUSR2)
    path = out.with_name(f"{out.name}.{pid}")
    for _ in range(200):  # bounded: the summary is written within a few ms
        if path.exists():
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise SystemExit(f"loopsteps: kdns {pid} wrote no summary")


def one_run(src: Path, args: argparse.Namespace, work: Path, pods: list[gen.Pod], probe: dict[str, Any]) -> dict[str, Any]:
    port, api_port = free_port(), free_port()
    data_dir = None if args.ephemeral else Path(tempfile.mkdtemp(prefix="kdns-loopsteps-", dir=args.data_parent))
    out = work / "summary"
    for old in work.glob("summary.*"):
        old.unlink()
    kdns = start(src, work / "cluster" / "manifests", data_dir, port, api_port, args.cpu, work / "kdns.log",
                 env={"PYTHONPATH": str(work / "probe"), "KDNS_LOOPSTEPS_OUT": str(out),
                      **({"KDNS_LOOPSTEPS_NAMES": "1"} if args.steps else {})})
    try:
        started, detail = wait_answer(kdns, port, probe["name"], probe["type"], 120)
        if started is None:
            raise SystemExit(f"loopsteps: kdns did not answer: {detail}\n{kdns.log_tail()}")
        api = f"http://127.0.0.1:{api_port}"
        wait_api(api, kdns)
        Writer(api, pods, BACK_TO_BACK, args.warmup).run()
        report(kdns.pid, out)  # (forget the start and the warm-up)
        (work / f"summary.{kdns.pid}").unlink()
        writer = Writer(api, pods, BACK_TO_BACK, args.flips, args.warmup)
        writer.run()
        summary = report(kdns.pid, out)
    finally:
        kdns.stop()
        if data_dir is not None:
            shutil.rmtree(data_dir)
    if writer.errors or len(writer.replied) != args.flips:
        raise SystemExit(f"loopsteps: {args.flips - len(writer.replied)} flips failed: {writer.errors[:3]}")
    steps = [d for _, d in summary["steps"]]
    longest = _longest_per_write(summary["steps"], writer.replied)
    full = sorted(summary["full"])
    young = summary["young"]
    return {
        "longest_us": {q: 1e6 * _quantile(longest, q) for q in (0.5, 0.9, 0.99, 1.0)},
        "loop_ms_per_flip": 1000 * sum(steps) / args.flips,
        "full_collections": len(full),
        "full_max_ms": 1000 * full[-1] if full else 0.0,
        "young_max_ms": 1000 * max(young, default=0.0),
        "collector_ms_per_flip": 1000 * (sum(full) + sum(young)) / args.flips,
        "oldest_objects": summary["oldest"],
        "named": summary["named"],
    }


def print_steps(runs: dict[Path, list[dict[str, Any]]], flips: int) -> None:
    """STEPS: the loop's callbacks over 50 µs, named by where they start and end (a task's
    step by the coroutines it was suspended in, innermost three: `a>b>c -> d>e>f` ran from
    the await in c to the one in f), over every run of a tree: how many per flip, their
    median and longest CPU time. A write's own steps come once per flip."""
    print("\n| tree | step (from -> to) | per flip | median µs | p90 µs |")
    print("| --- | --- | ---: | ---: | ---: |")
    for src, group in runs.items():
        by_name: dict[str, list[float]] = {}
        for run in group:
            for name, spent in run["named"]:
                by_name.setdefault(name, []).append(spent)
        for name, spent in sorted(by_name.items(), key=lambda item: -sum(item[1])):
            if len(spent) < flips * len(group) / 10:
                continue  # not a step of every write
            spent.sort()
            print(f"| {src.name} | `{name}` | {len(spent) / (flips * len(group)):.2f} "
                  f"| {1e6 * _quantile(spent, 0.5):.0f} | {1e6 * _quantile(spent, 0.9):.0f} |")


def _longest_per_write(steps: list[list[float]], replied: list[float]) -> list[float]:
    """The longest step of each write, sorted: the writes are sent one after the other, so
    a step started (time.monotonic, as the client's) before the reply to write i and
    after the reply to write i - 1 is write i's (its HTTP parsing, handler, commit, the
    journal's hand-off, its reply)."""
    longest = [0.0] * len(replied)
    for at, spent in steps:
        i = bisect.bisect_left(replied, at)
        if i < len(replied):
            longest[i] = max(longest[i], spent)
    return sorted(longest)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", type=Path, help="a kdns source tree (repeat for A/B; default this one)")
    parser.add_argument("--flips", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--cpu", default=str(max(os.sched_getaffinity(0))), help="the CPU kdns is pinned to")
    parser.add_argument("--ephemeral", action="store_true", help="no journal (--ephemeral)")
    parser.add_argument("--steps", action="store_true",
                        help="also each tree's steps over 50 µs by the awaits they run between (see STEPS)")
    parser.add_argument("--data-parent", default=str(REPO / "bench" / "out"), help="where journal directories go")
    args = parser.parse_args(argv)
    sources = [s.resolve() for s in (args.src or [REPO])]
    Path(args.data_parent).mkdir(parents=True, exist_ok=True)
    others = sorted(os.sched_getaffinity(0) - {int(args.cpu)})
    if others:  # the client off kdns's core
        os.sched_setaffinity(0, {others[0]})
    with tempfile.TemporaryDirectory(prefix="kdns-loopsteps-") as tmp:
        work = Path(tmp)
        (work / "probe").mkdir()
        (work / "probe" / "sitecustomize.py").write_text(PROBE)
        (work / "probe" / "uvloop.py").write_text(NO_UVLOOP)
        spec = gen.PRESETS["bench"]
        model = gen.generate(work / "cluster", spec, zones=False)
        pods = [p for p in gen.build(spec).pods if p.hostname]
        probe = next(s for s in model["sample"] if s["rcode"] == "NOERROR" and s["answer"])
        runs: dict[Path, list[dict[str, Any]]] = {src: [] for src in sources}
        for repeat in range(args.repeats):
            for src in sources if repeat % 2 == 0 else sources[::-1]:
                run = one_run(src, args, work, pods, probe)
                runs[src].append(run)
                print(f"loopsteps: {src.name} run {repeat + 1}: longest step p90 {run['longest_us'][0.9]:.0f} µs, "
                      f"{run['full_collections']} full collections (longest {run['full_max_ms']:.1f} ms)", file=sys.stderr)
    print(f"`python bench/loopsteps.py {' '.join(argv if argv is not None else sys.argv[1:])}` ({args.flips} flips "
          f"after {args.warmup}, kdns on CPU {args.cpu}, {'--ephemeral' if args.ephemeral else 'journal on disk'}, "
          f"asyncio's loop; medians of {args.repeats})\n")
    print("| tree | longest step per write: p50 µs | p90 µs | p99 µs | max µs | loop ms per flip (steps > 50 µs) "
          "| full collections | longest ms | longest young collection ms | collector ms per flip "
          "| oldest generation, objects |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for src, group in runs.items():
        def med(get: Any, group: list[dict[str, Any]] = group) -> float:
            return statistics.median(get(r) for r in group)
        print(f"| {src.name} | {med(lambda r: r['longest_us'][0.5]):.0f} | {med(lambda r: r['longest_us'][0.9]):.0f} "
              f"| {med(lambda r: r['longest_us'][0.99]):.0f} | {med(lambda r: r['longest_us'][1.0]):.0f} "
              f"| {med(lambda r: r['loop_ms_per_flip']):.2f} | {med(lambda r: r['full_collections']):g} "
              f"| {med(lambda r: r['full_max_ms']):.1f} | {med(lambda r: r['young_max_ms']):.1f} "
              f"| {med(lambda r: r['collector_ms_per_flip']):.3f} | {med(lambda r: r['oldest_objects']):.0f} |")
    if args.steps:
        print_steps(runs, args.flips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
