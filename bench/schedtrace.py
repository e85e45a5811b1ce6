"""Who holds kdns's core while its event loop's thread waits for it: the scheduler's record.

    python bench/writes.py --sched ...               # one recording per run, its columns in the table
    python bench/schedtrace.py DATA --pid PID --cpu 1  # a recording made by `perf sched record`

A DNS datagram that arrives while the event loop's thread is runnable but not running
waits for whatever runs on the core instead. dnsperf's p99 cannot say what that was; the
kernel's scheduler events can. `record` runs `perf record` of the events `sched_switch`
and `sched_wakeup` on every CPU (the perf process on the client's core) for a while, and
`analyse` replays them for one kdns process:

- the loop thread's waits for the core (from a wake-up, or from being preempted, to
  running again), in total and their p99 and max, and who ran on its core meanwhile: the
  journal's writer, another kdns thread, the idle task (the wake-up itself), other
  processes (named, the three that took most); the waits in which the writer ran: how
  many, and the p99 and max of its time in one;
- its preemptions: how often it was taken off the core while runnable, and by whom;
- its sleeps that a kdns thread ended (the writer releasing the GIL or a lock the loop
  waited for, or waking the loop to say a save is done): how many, how long;
- each kdns thread's time on the CPU.

The loop is kdns's main thread (its pid); the writer is the other kdns thread that ran
the longest (the journal's writer in a run with writes: the others are asyncio's
executor, idle). Figures are in milliseconds per second recorded unless named otherwise;
the recording's overhead (a few µs per event) falls on every tree alike. Nothing here is
a test.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

EVENTS = ("sched:sched_switch", "sched:sched_wakeup")


def record(seconds: float, out: Path, perf_cpu: str) -> subprocess.Popen[bytes]:
    """Start recording the scheduler's events of every CPU for `seconds` into `out`, the
    perf process itself pinned to `perf_cpu`; wait for the returned process."""
    argv = ["taskset", "-c", perf_cpu, "perf", "record", "-q", "-a", "-o", str(out)]
    for event in EVENTS:
        argv += ["-e", event]
    return subprocess.Popen([*argv, "--", "sleep", f"{seconds:g}"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class _SchedAttr(ctypes.Structure):
    """struct sched_attr (linux/sched/types.h, its first version)."""
    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32), ("sched_flags", ctypes.c_uint64),
                ("sched_nice", ctypes.c_int32), ("sched_priority", ctypes.c_uint32),
                ("sched_runtime", ctypes.c_uint64), ("sched_deadline", ctypes.c_uint64),
                ("sched_period", ctypes.c_uint64)]


SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "riscv64": 274}  # the system call's number


def set_slice(thread_id: int, nanoseconds: int) -> None:
    """Ask EEVDF (Linux 6.12+) for a slice of `nanoseconds` for the thread (normal policy,
    its niceness kept): a task whose slice is shorter than the running one's preempts it
    when it wakes (if it is owed time). OSError when the kernel refuses."""
    number = SCHED_SETATTR.get(platform.machine())
    if number is None:
        raise OSError(f"no sched_setattr number known for {platform.machine()}")
    attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr), sched_policy=0,
                      sched_nice=os.getpriority(os.PRIO_PROCESS, thread_id), sched_runtime=nanoseconds)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, thread_id, ctypes.byref(attr), 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


# One event as `perf script -F tid,cpu,time,event,trace` prints it (the event's name is
# padded to the longest recorded).
_EVENT = re.compile(r"\s*(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<time>[\d.]+):\s+sched:(?P<event>\w+):\s(?P<trace>.*)")


def _fields(trace: str) -> dict[str, str]:
    """`key=value` pairs of a tracepoint's text (a comm may hold spaces: values before
    the next ` key=` are joined)."""
    out: dict[str, str] = {}
    key = None
    for word in trace.replace(" ==> ", " ").split():
        name, eq, value = word.partition("=")
        if eq and name.replace("_", "").isalpha():
            key = name
            out[key] = value
        elif key is not None:
            out[key] += " " + word
    return out


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q / 100))]


def analyse(data: Path, pid: int, cpu: str, kdns_threads: set[int] | None = None) -> dict[str, Any]:
    """Replay the recording `data` for the kdns process `pid` on CPU `cpu` (see the module's
    docstring). `kdns_threads`: its thread ids (default: every thread whose events name it,
    found in /proc while it runs)."""
    threads = set(kdns_threads or ()) | {pid}
    if kdns_threads is None:
        with contextlib.suppress(OSError):  # (it has ended: its ids were not given)
            threads |= {int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()}
    text = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,cpu,time,event,trace"],
                          capture_output=True, text=True, check=True, timeout=600).stdout
    return replay(text.splitlines(), pid, cpu, threads)


def replay(lines: list[str], pid: int, cpu: str, threads: set[int]) -> dict[str, Any]:
    """`analyse` of the lines `perf script -F tid,cpu,time,event,trace` printed (events
    in time order); `threads`: kdns's thread ids, `pid` among them."""
    server = int(cpu)
    comm: dict[int, str] = {}
    running_since: dict[int, float] = {}  # cpu -> when its current task started
    current: dict[int, int] = {}  # cpu -> tid on it
    on_cpu: Counter[int] = Counter()  # tid -> seconds on a CPU
    waits: list[float] = []  # the loop's runnable-to-running times
    held_by: Counter[int] = Counter()  # tid -> seconds it ran on the server's core while the loop waited
    held_in_wait: Counter[int] = Counter()  # the same, in the current wait only
    holds: list[tuple[int, float]] = []  # (tid, seconds) per wait and tid that held the core in it
    preempted_by: Counter[int] = Counter()
    woken_by_kdns: list[tuple[int, float]] = []  # (waker, sleep length)
    runnable_since: float | None = None
    sleeping_since: float | None = None
    first = last = None
    for line in lines:
        match = _EVENT.match(line)
        if match is None:  # (perf's own lines)
            continue
        waker, on, now = int(match["tid"]), int(match["cpu"]), float(match["time"])
        event, fields = match["event"], _fields(match["trace"])
        first = now if first is None else first
        last = now
        if event == "sched_wakeup":
            woken = int(fields["pid"])
            comm[woken] = fields.get("comm", "?")
            if woken == pid and runnable_since is None and current.get(server) != pid:
                runnable_since = now
                if sleeping_since is not None and waker in threads and waker != pid:
                    woken_by_kdns.append((waker, now - sleeping_since))
                sleeping_since = None
            continue
        if event != "sched_switch":
            continue
        prev, nxt = int(fields["prev_pid"]), int(fields["next_pid"])
        comm[prev], comm[nxt] = fields.get("prev_comm", "?"), fields.get("next_comm", "?")
        began = running_since.get(on)
        if began is not None:
            on_cpu[prev] += now - began
            if on == server and runnable_since is not None and prev != pid:
                held = now - max(began, runnable_since)
                held_by[prev] += held
                held_in_wait[prev] += held
        if prev == pid:
            if fields.get("prev_state", "").startswith("R"):
                runnable_since = now
                preempted_by[nxt] += 1
            else:
                sleeping_since = now
        if nxt == pid:
            if runnable_since is not None:
                waits.append(now - runnable_since)
            holds.extend(held_in_wait.items())
            held_in_wait.clear()
            runnable_since = sleeping_since = None
        current[on], running_since[on] = nxt, now
    seconds = (last - first) if first is not None and last is not None and last > first else 0.0
    kdns_on_cpu = {tid: on_cpu[tid] for tid in threads if on_cpu[tid]}
    writer = max((tid for tid in kdns_on_cpu if tid != pid), key=lambda tid: kdns_on_cpu[tid], default=None)

    def kind(tid: int) -> str:
        if tid == writer:
            return "writer"
        if tid in threads:
            return "kdns"
        return "idle" if tid == 0 else "others"

    by_kind: defaultdict[str, float] = defaultdict(float)
    for tid, held in held_by.items():
        by_kind[kind(tid)] += held
    preempt_kinds: Counter[str] = Counter()
    for tid, count in preempted_by.items():
        preempt_kinds[kind(tid)] += count
    others = Counter({comm.get(tid, str(tid)): held for tid, held in held_by.items() if kind(tid) == "others"})
    per_second = 1000 / seconds if seconds else 0.0
    by_writer = [length for waker, length in woken_by_kdns if waker == writer]
    writer_holds = [held for tid, held in holds if tid == writer]
    return {
        "seconds": seconds,
        "loop_wait_ms_s": per_second * sum(waits),
        "loop_waits_s": len(waits) / seconds if seconds else 0.0,
        "loop_wait_p99_us": 1e6 * _percentile(waits, 99),
        "loop_wait_max_us": 1e6 * max(waits, default=0.0),
        "loop_wait_ms_s_by": {name: per_second * value for name, value in sorted(by_kind.items())},
        "writer_holds_s": len(writer_holds) / seconds if seconds else 0.0,
        "writer_hold_p99_us": 1e6 * _percentile(writer_holds, 99),
        "writer_hold_max_us": 1e6 * max(writer_holds, default=0.0),
        "loop_wait_others": {name: per_second * value for name, value in others.most_common(3)},
        "loop_preempted_s": {name: count / seconds for name, count in preempt_kinds.items()} if seconds else {},
        "loop_woken_by_writer_s": len(by_writer) / seconds if seconds else 0.0,
        "loop_sleep_before_writer_wake_p50_us": 1e6 * _percentile(by_writer, 50),
        "on_cpu_ms_s": {("loop" if tid == pid else kind(tid) + f" {tid}"): per_second * value
                        for tid, value in sorted(kdns_on_cpu.items())},
        "writer_tid": writer,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a perf.data of sched_switch and sched_wakeup (perf record -a)")
    parser.add_argument("--pid", type=int, required=True, help="kdns's pid (its event loop's thread)")
    parser.add_argument("--cpu", required=True, help="the CPU kdns ran on")
    parser.add_argument("--threads", type=int, nargs="*", help="kdns's thread ids (default: from /proc, if it runs)")
    args = parser.parse_args(argv)
    result = analyse(args.data, args.pid, args.cpu, set(args.threads) if args.threads else None)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
