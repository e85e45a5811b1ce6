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
(the HTTP API), when kdns has `--api-port`. Writes results.json, results.md and
results.png under --out and, for the default --out, the results section of
bench/README.md. Every process it starts is stopped by its PID; everything is loopback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import gen  # noqa: E402  (a sibling script, found through the path set just above)

LOOPBACK = "127.0.0.1"
UPSTREAM_ADDRESS = "127.0.0.2"  # the outside world's server, for kdns --upstream
LOSS_LIMIT_PCT = 0.1
SENT_RATIO_MIN = 0.97  # a rate "holds" only when dnsperf managed to send 97 % of it
QUERY_TIMEOUT = 1.0  # dnsperf -t: an answer later than this counts as lost
CLIENTS = 4  # dnsperf -c: UDP sockets (source ports)
# dnsperf -q for rate-limited runs. dnsperf shares its core between its sender and
# receiver threads; when the sender gets the CPU back it catches up with a burst of up to
# -q queries, and a burst larger than the server's socket receive buffer (Linux default
# 208 KiB: about 270 small datagrams) is dropped there however idle the server is (seen
# with Knot: -q 2000 lost ~1 % at 60,000 qps, -q 200 none up to 180,000 qps). 200 in
# flight also means a rate holds only while latency stays under 200 / rate.
OUTSTANDING_RATE = 200
OUTSTANDING_UNLIMITED = 100  # dnsperf's default, closed loop
FIXED_LOADS = (2000, 10000, 20000)
CHANGE_LOAD = 20000
# --workers for the change test run with workers, and the sockets (source ports) that
# ask, so that every process of the SO_REUSEPORT group is asked.
CHANGE_WORKERS = 2
# The --workers cost and load-share test: processes, and dnsperf sockets (source ports)
# enough for SO_REUSEPORT's hash of the 4-tuple to spread them evenly.
WORKERS_SPLIT = 2
SPLIT_CLIENTS = 32
WORKER_SOCKETS = 16
TARGETS = {
    "throughput_ratio": 0.8,
    "p99_ms_at_20k": 1.0,
    "change_p99_ms": 10.0,
    "scale_load_s": 5.0,
    "scale_rss_mib": 1024.0,
    "forward_ratio": 0.8,
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Mode:
    name: str
    repeats: int
    unlimited_s: float
    search_s: float
    search_steps: int
    search_tol: float
    confirm_s: float
    latency_s: float
    change_count: int
    scale_timeout_s: float
    retries: int  # disturbed runs repeated, at most, in the whole benchmark


QUICK = Mode("quick", repeats=3, unlimited_s=3, search_s=3, search_steps=6, search_tol=0.10, confirm_s=3,
             latency_s=3, change_count=40, scale_timeout_s=120, retries=6)
DEFAULT = Mode("default", repeats=3, unlimited_s=5, search_s=4, search_steps=8, search_tol=0.04, confirm_s=6,
               latency_s=6, change_count=200, scale_timeout_s=180, retries=10)

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


# ---------------------------------------------------------------------------- tools


def ensure_tools() -> list[str]:
    """dnsperf, knotd, taskset from Debian when missing; matplotlib from PyPI. Returns notes."""
    notes = []
    wanted = {"dnsperf": "dnsperf", "knotd": "knot", "knotc": "knot", "taskset": "util-linux"}
    missing = sorted({pkg for binary, pkg in wanted.items() if shutil.which(binary) is None})
    if missing:
        if shutil.which("apt-get") is None:
            sys.exit(f"bench: missing {', '.join(missing)} and no apt-get to install them")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        say(f"installing {' '.join(missing)} from Debian's packages")
        subprocess.run([*sudo, "apt-get", "update"], check=True, timeout=600)
        subprocess.run([*sudo, "apt-get", "install", "-y", "--no-install-recommends", *missing],
                       check=True, timeout=900, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        notes.append(f"installed from Debian: {' '.join(missing)}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        say("installing matplotlib (pip)")
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"], timeout=900, check=False)
        notes.append("installed matplotlib" if result.returncode == 0 else "matplotlib could not be installed")
    for module in ("dns.message", "yaml"):
        try:
            __import__(module)
        except ImportError:
            sys.exit(f"bench: Python module {module} missing: install kdns first (pip install -e '.[speed]')")
    return notes


def cpus() -> tuple[str, str, str]:
    """(server cpu, client cpu, note): CPU 1 for the server and CPU 0 for dnsperf."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2:
        client, server = allowed[0], allowed[1]
        return str(server), str(client), f"server on CPU {server}, dnsperf on CPU {client}"
    only = allowed[0]
    return str(only), str(only), f"one CPU only: server and dnsperf share CPU {only} (figures are not comparable)"


def free_port(address: str = LOOPBACK) -> int:
    """A port free for both UDP and TCP on `address`."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def version_of(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout + out.stderr).strip().splitlines()
    return next((line for line in text if re.search(r"\d+\.\d+", line)), text[0] if text else "unknown").strip()


def kdns_fingerprint() -> str:
    """A hash of kdns's sources as they are on disk: shows whether kdns changed during a run."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "kdns").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), platform.processor())
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    osname = "Linux"
    if Path("/etc/os-release").exists():
        m = re.search(r'PRETTY_NAME="([^"]+)"', Path("/etc/os-release").read_text())
        osname = m.group(1) if m else osname
    git = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True,
                         check=False)
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": model,
        "cpus_online": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kb / 2**20, 1),
        "os": osname,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kdns_event_loop": loop,
        "kdns_commit": git.stdout.strip() or "unknown",
        "knot": version_of(["knotd", "-V"]),
        "dnsperf": "dnsperf " + version_of(["dnsperf", "-h"]).split()[-1],
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


# ---------------------------------------------------------------------------- processes

_CHILDREN: list[Child] = []


class Child:
    """A process we started: stopped by its PID (SIGTERM, then SIGKILL), never by name."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path | None = None, env: dict | None = None):
        self.name, self.argv, self.log_path = name, argv, log
        self._log = open(log, "wb")  # noqa: SIM115  (closed in stop())
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=cwd, env=env)
        _CHILDREN.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        if self in _CHILDREN:
            _CHILDREN.remove(self)
        return self.proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_all() -> None:
    for child in _CHILDREN:
        try:
            child.stop(5)
        except Exception as exc:  # noqa: BLE001  (best effort on the way out)
            print(f"bench: could not stop {child.name} (pid {child.pid}): {exc}", file=sys.stderr)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def udp_drops(port: int) -> int:
    """Datagrams dropped at the receive buffer of the UDP socket(s) bound to `port`."""
    total = 0
    suffix = f":{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(suffix):
            total += int(fields[-1])
    return total


def core_ticks(cpu: str) -> tuple[int, int]:
    """(busy, total) clock ticks of one CPU since boot, from /proc/stat. Busy is user,
    nice, system and steal: interrupt and softirq time is left out, as it is mostly the
    packets of the server under test, which the kernel does not charge to its PID."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
            return user + nice + system + steal, user + nice + system + idle + iowait + irq + softirq + steal
    return 0, 0


def rcvbuf_errors() -> int:
    """Every UDP datagram the kernel dropped for a full receive buffer (all sockets)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1], strict=True)).get("RcvbufErrors", 0))


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started (kdns --workers: its workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def pin_threads(pid: int, cpu: str) -> dict[str, Any]:
    """Pin every thread of `pid` to `cpu` and report what each was allowed before.

    `taskset` pins the process it starts, but a server may set its threads' affinity
    itself: knotd 3.2 pins its UDP worker i to CPU i, so with one worker that thread
    leaves the server's core for CPU 0, dnsperf's. Re-pinned here after start-up."""
    moved = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        tid = int(task.name)
        try:
            before = sorted(os.sched_getaffinity(tid))
            if before != [int(cpu)]:
                os.sched_setaffinity(tid, {int(cpu)})
                moved.append({"tid": tid, "name": (task / "comm").read_text().strip(), "was": before})
        except OSError:
            continue  # a thread that ended meanwhile
    threads = [sorted(os.sched_getaffinity(int(t.name))) for t in Path(f"/proc/{pid}/task").iterdir()]
    return {"threads": len(threads), "moved": moved, "all_on_cpu": all(t == [int(cpu)] for t in threads)}


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


# ---------------------------------------------------------------------------- DNS probes


def query(port: int, name: str, qtype: str, address: str = LOOPBACK, timeout: float = 1.0,
          sock: socket.socket | None = None):
    """One UDP query (EDNS 1232, RD set as stub resolvers and dnsperf send it), from `sock`
    (non-blocking) or a new socket; the dns.message response or None."""
    import dns.message
    import dns.query

    q = dns.message.make_query(name, qtype, use_edns=0, payload=1232)
    try:
        return dns.query.udp(q, address, port=port, timeout=timeout, sock=sock)
    except Exception:  # noqa: BLE001  (timeouts, refused ports while starting)
        return None


def worker_sync(base: str, headers: dict[str, str]) -> dict[str, Any] | None:
    """kdns's own account of its workers' lag, from /metrics: `kdns_worker_sync_seconds`,
    how long after each commit each worker had applied it (the time between the
    primary's commit and the worker's, on the machine's one monotonic clock)."""
    request = urllib.request.Request(base + "/metrics", headers={k: v for k, v in headers.items() if k != "Accept"})
    text = ""
    for _ in range(3):  # workers report once a second: wait for the last report
        time.sleep(1.2)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return None
    buckets = []
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("kdns_worker_sync_seconds_bucket{"):
            le = re.search(r'le="([^"]+)"', line)
            buckets.append((float(le.group(1)), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("kdns_worker_sync_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith("kdns_worker_sync_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
    if not count:
        return None
    within = {f"{bound * 1000:g} ms": cumulative / count for bound, cumulative in buckets if bound <= 0.01}
    p99_bound = next((bound for bound, cumulative in buckets if cumulative >= 0.99 * count), None)
    return {"applied": int(count), "mean_ms": total / count * 1000, "share_within": within,
            "p99_at_most_ms": p99_bound * 1000 if p99_bound is not None else None}


def ask_all(sockets: list[socket.socket], port: int, name: str, timeout: float = 0.5) -> list[tuple[socket.socket, Any]]:
    """Ask `name` A from every socket at once (non-blocking, each its own source port) and
    wait for the replies: one round trip for all, so the time measured is the server's,
    not that of asking one socket after another. Each socket with its response or None."""
    import selectors

    import dns.exception
    import dns.message

    q = dns.message.make_query(name, "A", use_edns=0, payload=1232)
    responses: dict[socket.socket, Any] = {}
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            q.id = (q.id + 1) & 0xFFFF
            sock.sendto(q.to_wire(), (LOOPBACK, port))
            selector.register(sock, selectors.EVENT_READ, q.id)
        deadline = time.monotonic() + timeout
        while len(responses) < len(sockets) and time.monotonic() < deadline:
            for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
                try:
                    wire = key.fileobj.recv(65535)  # type: ignore[union-attr]
                    response = dns.message.from_wire(wire)
                except (BlockingIOError, dns.exception.DNSException):
                    continue
                if response.id == key.data:  # a late reply to an earlier round is skipped
                    responses[key.fileobj] = response  # type: ignore[index]
                    selector.unregister(key.fileobj)
    return [(sock, responses.get(sock)) for sock in sockets]


def wait_answer(child: Child, port: int, name: str, qtype: str, deadline_s: float,
                ok: Callable[[Any], bool] | None = None, watch_rss_kib: int = 0,
                address: str = LOOPBACK) -> tuple[float | None, Any]:
    """Seconds from the child's start to its first acceptable answer (None on timeout/exit)."""
    import dns.rcode

    ok = ok or (lambda r: r.rcode() == dns.rcode.NOERROR and bool(r.answer))
    limit = child.started + deadline_s
    while time.monotonic() < limit:
        if not child.alive():
            return None, f"exited with {child.proc.returncode}: {child.log_tail(5)}"
        if watch_rss_kib and memory_kib(child.pid).get("VmRSS", 0) > watch_rss_kib:
            return None, f"RSS above {watch_rss_kib // 1024} MiB while loading; stopped"
        response = query(port, name, qtype, address=address, timeout=0.2)
        if response is not None and ok(response):
            return time.monotonic() - child.started, response
        time.sleep(0.05)
    return None, f"no answer within {deadline_s:.0f} s"


# ---------------------------------------------------------------------------- servers


# Flags every kdns under test gets, when its `serve --help` knows them (set in main()):
# the registry in memory only (no state from an earlier run), no static zones beside the
# cluster, one process.
KDNS_COMMON: list[str] = []


def kdns_common_flags(help_text: str) -> list[str]:
    flags = []
    if "--ephemeral" in help_text:
        flags.append("--ephemeral")
    if "--zones-dir" in help_text:
        flags += ["--zones-dir", "none"]
    if "--workers" in help_text:
        flags += ["--workers", "1"]
    return flags


def start_kdns(manifests: Path, port: int, cpu: str, log: Path, extra: list[str] | None = None) -> Child:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    argv = ["taskset", "-c", cpu, sys.executable, "-m", "kdns", "serve", "--manifests", str(manifests),
            "--dns-address", LOOPBACK, "--dns-port", str(port), *KDNS_COMMON, *(extra or ["--upstream", "none"])]
    return Child("kdns", argv, log, cwd=REPO, env=env)


def knot_conf(directory: Path, address: str, port: int, zones: dict[str, Path]) -> Path:
    """A knot.conf: one UDP, one TCP and one background worker (one core against one core)."""
    (directory / "run").mkdir(parents=True, exist_ok=True)
    (directory / "db").mkdir(parents=True, exist_ok=True)
    lines = [
        "# generated by bench/run.py",
        "server:",
        f'    rundir: "{directory / "run"}"',
        f"    listen: {address}@{port}",
        "    # Knot's defaults: udp-workers = online CPUs, tcp-workers = max(online CPUs, 10),",
        "    # background-workers = min(online CPUs, 10). One of each: one core against kdns's one.",
        "    udp-workers: 1",
        "    tcp-workers: 1",
        "    background-workers: 1",
        "log:",
        "  - target: stderr",
        "    any: notice",
        "database:",
        f'    storage: "{directory / "db"}"',
        "template:",
        "  - id: default",
        "    zonefile-sync: -1",
        "    zonefile-load: whole",
        "    journal-content: none",
        "zone:",
    ]
    for domain, path in zones.items():
        lines += [f"  - domain: {domain}", f'    file: "{path}"']
    conf = directory / "knot.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def start_knot(conf: Path, cpu: str, log: Path) -> Child:
    return Child("knot", ["taskset", "-c", cpu, "knotd", "-c", str(conf)], log)


def knot_effective_conf(conf: Path) -> dict[str, str]:
    """The running knotd's server knobs, read back with knotc."""
    out = {}
    for item in ("udp-workers", "tcp-workers", "background-workers"):
        try:
            result = subprocess.run(["knotc", "-c", str(conf), "-t", "5", "conf-read", f"server.{item}"],
                                    capture_output=True, text=True, timeout=15, check=False)
            m = re.search(r"=\s*(\S+)", result.stdout)
            out[item] = m.group(1) if m else (result.stdout + result.stderr).strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            out[item] = f"unknown ({exc})"
    return out


# ---------------------------------------------------------------------------- dnsperf

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


def dnsperf(port: int, queries: Path, seconds: float, client_cpu: str, server_pid: int | None, workdir: Path,
            rate: int | None = None, verbose: bool = False, address: str = LOOPBACK,
            server_cpu: str | None = None, clients: int = CLIENTS) -> dict[str, Any]:
    """One dnsperf run; its statistics, the server's CPU time over it and, with verbose,
    latency percentiles from dnsperf's per-answer lines."""
    argv = ["taskset", "-c", client_cpu, "dnsperf", "-s", address, "-p", str(port), "-d", str(queries),
            "-l", f"{seconds:g}", "-c", str(clients), "-T", "1", "-t", f"{QUERY_TIMEOUT:g}", "-e",
            "-q", str(OUTSTANDING_RATE if rate else OUTSTANDING_UNLIMITED)]
    if rate:
        argv += ["-Q", str(int(rate))]
    if verbose:
        argv.append("-v")
    out_path = workdir / "dnsperf.out"
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    drops_before, errors_before = udp_drops(port), rcvbuf_errors()
    core_before = core_ticks(server_cpu) if server_cpu else (0, 0)
    client_before = core_ticks(client_cpu)
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
    other_drops = rcvbuf_errors() - errors_before - server_drops
    text = out_path.read_text(errors="replace")
    run: dict[str, Any] = {"rate": rate, "seconds": seconds, "server_socket_drops": server_drops,
                           "other_socket_drops": other_drops}
    for key, pattern in _STATS.items():
        m = re.search(pattern, text)
        run[key] = float(m.group(1)) if m else None
    if run["sent"] is None:
        raise RuntimeError(f"dnsperf failed ({proc.returncode}): {text[-800:]}")
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
    client_cpu_s = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    run["client_cpu_util"] = client_cpu_s / seconds if seconds else None
    busy, total = client_after[0] - client_before[0], client_after[1] - client_before[1]
    if total > 0 and server_cpu != client_cpu:
        # Other processes on dnsperf's core (the harness itself is nearly idle meanwhile).
        run["client_core_others"] = max(0.0, (busy - client_cpu_s * CLK_TCK) / total)
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
RETRIES = {"left": 0}  # runs the whole benchmark may repeat because they were disturbed (set in main)


def quiet(run_once: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A run in which other processes took < 15 % of the server's core: a disturbed run is
    repeated once while the benchmark's retry budget lasts (so a machine that stays busy
    costs bounded time); the less disturbed of the two is kept, marked `disturbed` if
    it still was."""
    def others_of(run: dict[str, Any]) -> float:
        return max(run.get("server_core_others") or 0.0, run.get("client_core_others") or 0.0)

    r = run_once()
    others = others_of(r)
    if others < NOISY:
        return r
    if RETRIES["left"] <= 0:
        say(f"    other processes used {100 * others:.0f} % of the server's or dnsperf's core (no retries left)")
        r["disturbed"] = True
        return r
    RETRIES["left"] -= 1
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


def measure_throughput(t: Target, mode: Mode, client_cpu: str, workdir: Path) -> dict[str, Any]:
    """Unlimited-rate throughput (median of repeats), then the highest -Q rate with loss
    under 0.1 %: bracket and bisect, then confirm with repeats (stepping down if needed)."""
    def run(rate: int | None, secs: float, verbose: bool = False) -> dict[str, Any]:
        return dnsperf(t.port, t.queries, secs, client_cpu, t.pid, workdir,
                       rate=rate, verbose=verbose, address=t.address, server_cpu=t.cpu)

    unlimited = [quiet(lambda: run(None, mode.unlimited_s)) for _ in range(mode.repeats)]
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
        confirm = [quiet(partial(run, candidate, mode.confirm_s)) for _ in range(mode.repeats)]
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
        "confirm_runs": [_slim(r) for r in confirm],
        "unlimited_runs": [_slim(r) for r in unlimited],
        # The server's core had idle time at the server's "max": dnsperf (one core) was the limit.
        "client_bound": (summary["server_core_busy"] or 0) < 0.85,
        # What one fully used core would answer at the measured CPU cost per query.
        "per_cpu_second": (1e6 / summary["cpu_us_per_query"]) if summary["cpu_us_per_query"] else None,
    }


def measure_latency(t: Target, mode: Mode, client_cpu: str, workdir: Path, loads=FIXED_LOADS) -> list[dict[str, Any]]:
    out = []
    for load in loads:
        runs = [quiet(partial(dnsperf, t.port, t.queries, mode.latency_s, client_cpu, t.pid, workdir, rate=load,
                              verbose=True, address=t.address, server_cpu=t.cpu))
                for _ in range(mode.repeats)]
        s = summarize(runs)
        lat = s["latency_ms"]
        say(f"  {t.name}: {load:>6,} qps offered: p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms, "
            f"p99.9 {lat['p99.9']:.3f} ms, loss {s['loss_pct']:.3f} %, {s['cpu_us_per_query'] or 0:.1f} us CPU/query")
        out.append({"load": load, **s, "runs_detail": [_slim(r) for r in runs]})
    return out


def _slim(run: dict[str, Any]) -> dict[str, Any]:
    keep = ("rate", "seconds", "sent", "completed", "lost", "loss_pct", "qps", "qps_dnsperf", "sent_ratio", "holds",
            "server_cpu_s", "cpu_us_per_query", "client_cpu_util", "server_cpu_util", "rcodes",
            "response_bytes", "latency_ms", "latency_samples", "server_socket_drops", "other_socket_drops",
            "server_core_busy", "server_core_others", "client_core_others", "attempt", "disturbed", "cpu_share_pct")
    return {k: run[k] for k in keep if k in run}


# ---------------------------------------------------------------------------- sanity check


def _section(rrsets, skip_opt: bool = True) -> list[str]:
    import dns.rdatatype

    out = []
    for rrset in rrsets:
        if skip_opt and rrset.rdtype == dns.rdatatype.OPT:
            continue
        for rd in rrset:
            text = rd.to_text()
            if rrset.rdtype == dns.rdatatype.SOA:  # serials differ (kdns: resource version)
                parts = text.split()
                parts[2] = "SERIAL"
                text = " ".join(parts)
            out.append(f"{rrset.name.to_text().lower()} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {text}")
    return sorted(out)


def sanity_check(sample: list[dict], ports: dict[str, int]) -> dict[str, Any]:
    """Ask both servers the sample queries; compare rcode, AA and every section (TTLs
    included; SOA serials excepted), and each against the generator's expectation."""
    import dns.flags
    import dns.rcode

    mismatches, unanswered = [], []
    for item in sample:
        got: dict[str, dict[str, Any]] = {}
        for server, port in ports.items():
            response = query(port, item["name"], item["type"], timeout=2.0)
            if response is None:
                unanswered.append(f"{server}: {item['name']} {item['type']}: no answer")
                continue
            got[server] = {
                "rcode": dns.rcode.to_text(response.rcode()),
                "aa": bool(response.flags & dns.flags.AA),
                "answer": _section(response.answer),
                "authority": _section(response.authority),
                "additional": _section(response.additional),
            }
            answer_rdata = sorted(line.split(" ", 3)[3] for line in got[server]["answer"]
                                  if line.split(" ", 3)[2] == item["type"])
            expected = [a if item["type"] != "SOA" else _soa_no_serial(a) for a in item["answer"]]
            if got[server]["rcode"] != item["rcode"] or answer_rdata != sorted(expected):
                mismatches.append(f"{server} vs model: {item['name']} {item['type']}: got {got[server]['rcode']} "
                                  f"{answer_rdata[:3]}, expected {item['rcode']} {item['answer'][:3]}")
        if len(got) == 2:
            a, b = got.values()
            mismatches.extend(f"kdns vs knot: {item['name']} {item['type']}: {key}: "
                              f"kdns {got['kdns'][key]} / knot {got['knot'][key]}"
                              for key in ("rcode", "aa", "answer", "authority", "additional") if a[key] != b[key])
    return {"queries": len(sample), "mismatches": mismatches, "unanswered": unanswered,
            "ok": not mismatches and not unanswered}


def _soa_no_serial(text: str) -> str:
    parts = text.split()
    parts[2] = "SERIAL"
    return " ".join(parts)


# ---------------------------------------------------------------------------- kdns only


def kdns_help() -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "kdns", "serve", "--help"], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`python -m kdns serve --help` failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def scale_test(workdir: Path, mode: Mode, server_cpu: str, client_cpu: str, with_knot: bool) -> dict[str, Any]:
    """10,000 services and 100,000 pods: seconds from exec to the first answer, peak RSS,
    then whether the throughput holds at that size: closed-loop dnsperf with the scale
    cluster's own query mix against kdns, then (`with_knot`) Knot serving the same
    cluster as zone files, CPU per answer beside answers per second."""
    spec = gen.PRESETS["scale"]
    t = time.monotonic()
    summary = gen.generate(workdir / "scale", spec, zones=with_knot)
    gen_s = time.monotonic() - t
    size = sum(Path(p).stat().st_size for p in summary["manifests"])
    say(f"scale: generated {summary['services_clusterip'] + summary['services_headless']:,} services, "
        f"{summary['pods']:,} pods ({size / 2**20:.0f} MiB of YAML) in {gen_s:.1f} s; starting kdns")
    port = free_port()
    child = start_kdns(workdir / "scale" / "manifests", port, server_cpu, workdir / "kdns-scale.log")
    # the last object of the generator: the answer shows the whole cluster was loaded
    last = next(s for s in reversed(gen.build(spec).services) if s.headless)
    name = f"{last.pods[-1].endpoint_name}.{last.fqdn}"
    queries = Path(summary["queries"])
    throughput: dict[str, Any] = {}
    try:
        seconds, detail = wait_answer(child, port, name, "A", mode.scale_timeout_s, watch_rss_kib=4 * 2**20)
        cpu = cpu_seconds(child.pid) if child.alive() else None
        if seconds is not None:
            throughput["kdns"] = _closed_loop(child, port, queries, mode, server_cpu, client_cpu, workdir)
        memory = memory_kib(child.pid) if child.alive() else {}  # VmHWM: the load and the load test
    finally:
        child.stop()
    if seconds is not None and with_knot:
        knot_port = free_port()
        zones = {zone: Path(path) for zone, path in summary["zones"].items()}
        knot = start_knot(knot_conf(workdir / "knot-scale", LOOPBACK, knot_port, zones), server_cpu,
                          workdir / "knot-scale.log")
        try:
            sample = summary["sample"][0]
            if wait_answer(knot, knot_port, sample["name"], sample["type"], 120, ok=lambda r: True)[0] is not None:
                throughput["knot"] = _closed_loop(knot, knot_port, queries, mode, server_cpu, client_cpu, workdir)
        finally:
            knot.stop()
    result = {
        "services": summary["services_clusterip"] + summary["services_headless"],
        "pods": summary["pods"],
        "namespaces": summary["namespaces"],
        "yaml_mib": round(size / 2**20, 1),
        "load_s": seconds,
        "load_cpu_s": cpu,
        "peak_rss_mib": round(memory["VmHWM"] / 1024, 1) if memory else None,
        "probe": f"{name} A",
        "note": None if seconds is not None else str(detail),
        "throughput": throughput,
        "query_count": summary["query_count"],
    }
    k, n = throughput.get("kdns"), throughput.get("knot")
    if k and n and n["qps"]:
        result["qps_ratio"] = k["qps"] / n["qps"]
        if k["cpu_us_per_query"] and n["cpu_us_per_query"]:
            result["cpu_ratio"] = n["cpu_us_per_query"] / k["cpu_us_per_query"]  # answers per CPU-second
        say(f"scale: closed loop, kdns {k['qps']:,.0f} vs Knot {n['qps']:,.0f} answers/s "
            f"({result['qps_ratio']:.2f}); CPU per answer {k['cpu_us_per_query']:.2f} vs {n['cpu_us_per_query']:.2f} µs")
    say(f"scale: first answer after {seconds if seconds is not None else 'n/a'} s, peak RSS "
        f"{result['peak_rss_mib']} MiB" + (f" ({detail})" if seconds is None else ""))
    return result


def _closed_loop(child: Child, port: int, queries: Path, mode: Mode, server_cpu: str, client_cpu: str,
                 workdir: Path) -> dict[str, Any]:
    """Unlimited-rate dnsperf (closed loop), median of the mode's repeats."""
    pin_threads(child.pid, server_cpu)
    runs = [quiet(partial(dnsperf, port, queries, mode.unlimited_s, client_cpu, child.pid, workdir,
                          server_cpu=server_cpu)) for _ in range(mode.repeats)]
    summary = summarize(runs)
    say(f"  scale, {child.name}: {summary['qps']:,.0f} answers/s closed loop, loss {summary['loss_pct']:.3f} %, "
        f"{summary['cpu_us_per_query'] or 0:.2f} µs CPU/answer")
    return {"qps": summary["qps"], "loss_pct": summary["loss_pct"], "cpu_us_per_query": summary["cpu_us_per_query"],
            "client_bound": (summary["server_core_busy"] or 0) < 0.85, "runs": [_slim(r) for r in runs]}


def forward_test(workdir: Path, cluster: Path, model: dict, mode: Mode, server_cpu: str, client_cpu: str,
                 cluster_max: int | None) -> dict[str, Any]:
    """kdns --upstream -> Knot serving ext.example. (TTL 3600): warm the cache, then the
    max throughput of forwarded names, compared with kdns's cluster answers."""
    up_port = free_port(UPSTREAM_ADDRESS)
    up_dir = workdir / "knot-upstream"
    conf = knot_conf(up_dir, UPSTREAM_ADDRESS, up_port, {gen.FORWARD_ZONE: Path(model["forward"]["file"])})
    upstream = start_knot(conf, client_cpu, workdir / "knot-upstream.log")  # the outside world: off the server's core
    first = f"host-0000.{gen.FORWARD_ZONE}"
    kdns = None
    try:
        if wait_answer(upstream, up_port, first, "A", 30, address=UPSTREAM_ADDRESS)[0] is None:
            return {"skipped": f"the upstream Knot did not start: {upstream.log_tail(5)}"}
        pin_threads(upstream.pid, client_cpu)
        port = free_port()
        kdns = start_kdns(cluster, port, server_cpu, workdir / "kdns-forward.log",
                          extra=["--upstream", f"{UPSTREAM_ADDRESS}:{up_port}"])
        started, _ = wait_answer(kdns, port, model["sample"][0]["name"], model["sample"][0]["type"], 120,
                                 ok=lambda r: True)
        if started is None:
            return {"skipped": f"kdns with --upstream did not start: {kdns.log_tail(5)}"}
        pin_threads(kdns.pid, server_cpu)
        import dns.rcode

        response = query(port, first, "A", timeout=2.0)
        if response is None or response.rcode() != dns.rcode.NOERROR or not response.answer:
            rcode = "no answer" if response is None else dns.rcode.to_text(response.rcode())
            return {"skipped": f"kdns does not forward yet (a forwarded name got {rcode}; kdns says: "
                               f"{_grep(kdns.log_path, 'forward')})"}
        queries = Path(model["forward"]["queries"])
        # warm: every name once, at a gentle rate
        warm = dnsperf(port, queries, 10, client_cpu, kdns.pid, workdir, rate=2000)
        up_cpu_before = cpu_seconds(upstream.pid)
        t = Target("kdns-forward", port, kdns.pid, queries, server_cpu)
        throughput = measure_throughput(t, mode, client_cpu, workdir)
        latency = measure_latency(t, mode, client_cpu, workdir, loads=(CHANGE_LOAD,))
        up_cpu = cpu_seconds(upstream.pid) - up_cpu_before
        maxrate = throughput["max_rate"]
        return {
            "names": len(queries.read_text().splitlines()),
            "warm_loss_pct": warm["loss_pct"],
            "upstream_cpu_s_during_measurement": up_cpu,
            "throughput": throughput,
            "latency": latency,
            "ratio_to_cluster": (maxrate / cluster_max) if cluster_max else None,
            "peak_rss_mib": round(memory_kib(kdns.pid)["VmHWM"] / 1024, 1),
        }
    finally:
        if kdns is not None:
            kdns.stop()
        upstream.stop()


def workers_test(workdir: Path, cluster: Path, queries: Path, model: dict, mode: Mode, server_cpu: str,
                 client_cpu: str, help_text: str) -> dict[str, Any]:
    """What `--workers` costs and how the kernel shares the load, on the one server core:
    closed-loop dnsperf from SPLIT_CLIENTS source ports against kdns --workers 1, then
    --workers WORKERS_SPLIT (every process pinned to that core), in turn. Answers per
    second and CPU per answer side by side, and each process's share of the CPU. (On this
    2-core machine the second core is dnsperf's, so the workers cannot be given a core
    each: this measures what sharing one costs, not what a core per worker gains.)"""
    if "--workers" not in help_text:
        return {"skipped": "kdns serve has no --workers flag"}
    result: dict[str, Any] = {"clients": SPLIT_CLIENTS, "workers": WORKERS_SPLIT}
    for workers in (1, WORKERS_SPLIT):
        port = free_port()
        kdns = start_kdns(cluster, port, server_cpu, workdir / f"kdns-workers-{workers}.log",
                          extra=["--upstream", "none", "--workers", str(workers)])
        try:
            sample = model["sample"][0]
            if wait_answer(kdns, port, sample["name"], sample["type"], 120, ok=lambda r: True)[0] is None:
                return {"skipped": f"kdns --workers {workers} did not start: {kdns.log_tail(5)}"}
            deadline = time.monotonic() + 120
            while len(child_pids(kdns.pid)) < workers - 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            pids = [kdns.pid, *child_pids(kdns.pid)]
            for pid in pids:
                pin_threads(pid, server_cpu)
            time.sleep(1.5)  # every worker has reported ready and synced
            def once(pids: list[int], port: int) -> dict[str, Any]:
                before = {pid: cpu_seconds(pid) for pid in pids}
                run = dnsperf(port, queries, mode.unlimited_s, client_cpu, None, workdir,
                              server_cpu=server_cpu, clients=SPLIT_CLIENTS)
                spent = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
                total = sum(spent.values())
                run["server_cpu_s"] = total
                run["cpu_us_per_query"] = 1e6 * total / run["completed"] if run.get("completed") else None
                run["cpu_share_pct"] = sorted((100 * spent[pid] / total if total else 0.0 for pid in pids), reverse=True)
                return run

            runs = [quiet(partial(once, pids, port)) for _ in range(mode.repeats)]
            summary = summarize(runs)
            split = [round(statistics.median(r["cpu_share_pct"][i] for r in runs), 1) for i in range(len(pids))]
            say(f"  --workers {workers}: {summary['qps']:,.0f} answers/s, "
                f"{summary['cpu_us_per_query'] or 0:.2f} us CPU/answer, CPU share by process {split} %")
            result[f"workers_{workers}"] = {"qps": summary["qps"], "cpu_us_per_query": summary["cpu_us_per_query"],
                                           "loss_pct": summary["loss_pct"], "cpu_share_pct": split,
                                           "runs": [_slim(r) for r in runs]}
        finally:
            kdns.stop()
    one, many = result["workers_1"], result[f"workers_{WORKERS_SPLIT}"]
    if one["qps"] and many["qps"]:
        result["qps_ratio"] = many["qps"] / one["qps"]
    if one["cpu_us_per_query"] and many["cpu_us_per_query"]:
        result["cpu_ratio"] = many["cpu_us_per_query"] / one["cpu_us_per_query"]
    return result


def _grep(path: Path, word: str) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if word in line.lower()]
    except OSError:
        return ""
    return lines[0].strip() if lines else "(nothing in its log)"


def change_test(workdir: Path, cluster: Path, model: dict, mode: Mode, server_cpu: str, client_cpu: str,
                help_text: str, workers: int = 1) -> dict[str, Any]:
    """Registry change -> visible answer while dnsperf offers 20,000 qps: flip a headless
    pod's Ready condition with a PUT of the whole pod (GET, edit, PUT, as kubectl does),
    then ask its DNS name until the answer shows the change (NXDOMAIN when not ready, its
    address when ready again). Time from just before the PUT to that answer.

    With `workers` > 1 (`kdns serve --workers N`, every process on the server's core) the
    name is asked from WORKER_SOCKETS sockets, each its own source port, which the kernel
    spreads over the processes: the time is until the last of them shows the change, so
    every worker's copy of the registry has it."""
    if "--api-port" not in help_text:
        return {"skipped": "kdns serve has no --api-port flag yet (the HTTP API is not wired into the CLI)"}
    if workers > 1 and "--workers" not in help_text:
        return {"skipped": "kdns serve has no --workers flag"}
    api_port = free_port()
    port = free_port()
    extra = ["--upstream", "none", "--api-port", str(api_port)]
    if workers > 1:
        extra += ["--workers", str(workers)]  # after KDNS_COMMON's `--workers 1`: the last one counts
    if "--api-address" in help_text:
        extra += ["--api-address", LOOPBACK]
    token = None
    if "--api-token" in help_text:
        token = "bench-token"
        extra += ["--api-token", token]
    log_name = "kdns-change.log" if workers == 1 else f"kdns-change-workers-{workers}.log"
    kdns = start_kdns(cluster, port, server_cpu, workdir / log_name, extra=extra)
    load: subprocess.Popen | None = None
    sockets: list[socket.socket] = []
    try:
        if wait_answer(kdns, port, model["sample"][0]["name"], model["sample"][0]["type"], 120, ok=lambda r: True)[0] is None:
            return {"skipped": f"kdns with --api-port did not start: {kdns.log_tail(5)}"}
        pin_threads(kdns.pid, server_cpu)
        if workers > 1:
            deadline = time.monotonic() + 120
            while len(child_pids(kdns.pid)) < workers - 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid in child_pids(kdns.pid):
                pin_threads(pid, server_cpu)
            sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(WORKER_SOCKETS)]
            for sock in sockets:
                sock.bind((LOOPBACK, 0))
                sock.setblocking(False)
        cluster_model = gen.build(gen.Spec(**model["spec"]))
        pods = [p for p in cluster_model.pods if p.hostname]
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        base = f"http://{LOOPBACK}:{api_port}"

        def http(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status, json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode(errors="replace")[:300]
            except (urllib.error.URLError, OSError, ValueError) as exc:
                return 0, str(exc)

        # kdns may accept --api-port before it serves the API: wait for it, bounded.
        api_deadline = time.monotonic() + 15
        code, reply = 0, ""
        while time.monotonic() < api_deadline:
            code, reply = http("GET", "/version")
            if code == 200:
                break
            time.sleep(0.2)
        if code != 200:
            return {"skipped": f"kdns serve accepts --api-port, but nothing answered HTTP on {LOOPBACK}:{api_port} "
                               f"within 15 s ({reply}): the API is not served by `kdns serve` yet"}

        import dns.rcode

        duration = max(5.0, mode.change_count * 0.06 + 5)
        with open(workdir / "dnsperf-change.out", "wb") as perf_out:
            load = subprocess.Popen(
                ["taskset", "-c", client_cpu, "dnsperf", "-s", LOOPBACK, "-p", str(port), "-d", model["queries"],
                 "-l", f"{duration:g}", "-c", str(CLIENTS), "-T", "1", "-t", "1", "-e", "-q", str(OUTSTANDING_RATE),
                 "-Q", str(CHANGE_LOAD)],
                stdin=subprocess.DEVNULL, stdout=perf_out, stderr=subprocess.STDOUT)
        time.sleep(1.0)
        latencies, after_commit, errors = [], [], []
        end = time.monotonic() + duration - 1.5
        for i in range(mode.change_count):
            if time.monotonic() > end:
                break
            pod = pods[i % len(pods)]
            path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"
            code, obj = http("GET", path)
            if code != 200 or not isinstance(obj, dict):
                errors.append(f"GET {path}: {code} {obj}")
                continue
            ready = not any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in obj.get("status", {}).get("conditions", []))
            obj.setdefault("status", {})["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
            name = f"{pod.endpoint_name}.{pod.service}.{pod.namespace}.svc.{gen.ZONE}"
            t0 = time.monotonic()
            code, reply = http("PUT", path, obj)
            committed = time.monotonic()  # kdns replies once the change is committed
            if code not in (200, 201):
                errors.append(f"PUT {path}: {code} {reply}")
                continue

            def visible(response: Any, ready: bool = ready, ip: str = pod.ip) -> bool:
                if response is None:
                    return False
                if ready:
                    return response.rcode() == dns.rcode.NOERROR and any(ip in rr.to_text() for rr in response.answer)
                return response.rcode() == dns.rcode.NXDOMAIN

            seen = None
            if sockets:
                pending = list(sockets)
                while pending and time.monotonic() - t0 < 2.0:
                    pending = [sock for sock, response in ask_all(pending, port, name) if not visible(response)]
                if not pending:
                    seen = time.monotonic() - t0
            while seen is None and time.monotonic() - t0 < 2.0:
                if visible(query(port, name, "A", timeout=0.5)):
                    seen = time.monotonic() - t0
            if seen is None:
                errors.append(f"{name}: change not visible within 2 s")
            else:
                latencies.append(seen * 1000)
                after_commit.append((seen - (committed - t0)) * 1000)
        load.wait(duration + 30)
        latencies.sort()
        after_commit.sort()
        sync = worker_sync(base, headers) if workers > 1 else None
        perf = (workdir / "dnsperf-change.out").read_text(errors="replace")
        m = re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", perf)
        return {
            "workers": workers,
            "changes": len(latencies),
            "errors": errors[:10],
            "error_count": len(errors),
            "background_load_qps": CHANGE_LOAD,
            "background_loss_pct": float(m.group(1)) if m else None,
            "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                           "max": latencies[-1] if latencies else None},
            # From the PUT's reply (the commit is done) to the answer: the API's own time left out.
            "after_commit_ms": {"p50": percentile(after_commit, 50), "p99": percentile(after_commit, 99),
                                "max": after_commit[-1] if after_commit else None},
            "worker_sync": sync,
        }
    finally:
        if load is not None and load.poll() is None:
            os.kill(load.pid, signal.SIGTERM)
            load.wait(10)
        for sock in sockets:
            sock.close()
        kdns.stop()


# ---------------------------------------------------------------------------- reports


def fmt(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}{unit}"
    return str(value)


def targets_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    servers = results.get("servers", {})
    k, n = servers.get("kdns"), servers.get("knot")
    if k and n:
        ratio = k["throughput"]["max_rate"] / n["throughput"]["max_rate"] if n["throughput"]["max_rate"] else None
        kc, nc = k["throughput"].get("per_cpu_second"), n["throughput"].get("per_cpu_second")
        cpu_ratio = kc / nc if kc and nc else None
        met, note = ratio is not None and ratio >= TARGETS["throughput_ratio"], ""
        if n["throughput"].get("client_bound") and met:
            # Knot's max is dnsperf's, so the ratio is only an upper bound: judge by CPU per answer.
            met = cpu_ratio is not None and cpu_ratio >= TARGETS["throughput_ratio"]
            note = (f"Knot's max is dnsperf's (Knot's core was not full), so {fmt(ratio, 2)} is an upper bound; "
                    f"judged by answers per CPU-second instead: {fmt(cpu_ratio, 2)}")
        elif n["throughput"].get("client_bound"):
            note = "Knot's max is dnsperf's: the true ratio is lower still"
        rows.append({"target": "cluster answers, max qps with < 0.1 % loss, kdns/Knot", "goal": f">= {TARGETS['throughput_ratio']}",
                     "value": f"{fmt(ratio, 3)} ({fmt(k['throughput']['max_rate'])} / {fmt(n['throughput']['max_rate'])})",
                     "met": met, "note": note})
        if cpu_ratio is not None:
            rows.append({"target": "(context) answers per CPU-second at max, kdns/Knot", "goal": "—",
                         "value": f"{fmt(cpu_ratio, 3)} ({fmt(kc)} / {fmt(nc)})", "met": None,
                         "note": "1 / (server utime+stime per answered query): one full core's worth, not limited by the client"})
    if k:
        at20 = next((x for x in k["latency"] if x["load"] == 20000), None)
        if at20:
            p99 = at20["latency_ms"]["p99"]
            reached = (at20["sent_ratio"] or 0) >= SENT_RATIO_MIN
            ok = p99 is not None and p99 < TARGETS["p99_ms_at_20k"] and (at20["loss_pct"] or 0) < LOSS_LIMIT_PCT and reached
            rows.append({"target": "kdns p99 latency at 20,000 qps", "goal": f"< {TARGETS['p99_ms_at_20k']} ms",
                         "value": f"{fmt(p99, 3)} ms (answered {fmt(at20['qps'])}/s, loss {fmt(at20['loss_pct'], 2)} %)",
                         "met": ok, "note": "" if reached else
                         f"the offered load was not reached: with {OUTSTANDING_RATE} queries in flight dnsperf "
                         "waited for kdns (saturated), so these latencies are a closed loop's"})
    for key, target in (("change", "registry change -> visible answer p99, under 20,000 qps"),
                        ("change_workers", (f"--workers {CHANGE_WORKERS}: commit -> applied in every worker, "
                                            "under 20,000 qps"))):
        change = results.get(key, {})
        if "skipped" in change:
            rows.append({"target": target, "goal": "< 10 ms", "value": "not measured", "met": None,
                         "note": change["skipped"]})
        elif change and key == "change":  # from just before the API write to the answer
            p99 = change["latency_ms"]["p99"]
            rows.append({"target": target, "goal": "< 10 ms",
                         "value": f"{fmt(p99, 2)} ms ({change['changes']} changes)", "met": p99 is not None and p99 < 10,
                         "note": f"{change['error_count']} errors" if change["error_count"] else ""})
        elif change:
            # "Every worker serves the same state within 10 ms of a change": judged by kdns's
            # own clock (commit in the primary -> applied in the worker, one monotonic clock),
            # as asking from outside adds the client's time: the harness shares dnsperf's core.
            sync = change.get("worker_sync") or {}
            within = sync.get("share_within", {}).get("10 ms")
            outside = change["after_commit_ms"]
            note = (f"kdns_worker_sync_seconds, mean {fmt(sync.get('mean_ms'), 2)} ms, {sync.get('applied', 0)} "
                    f"commits; both kdns processes share the server core. Asked from outside (16 source ports, "
                    f"from the PUT's reply): p50 {fmt(outside['p50'], 2)} ms, p99 {fmt(outside['p99'], 2)} ms")
            if change["error_count"]:
                note += f"; {change['error_count']} errors"
            rows.append({"target": target, "goal": "< 10 ms",
                         "value": (f"p99 <= {fmt(sync.get('p99_at_most_ms'), 1)} ms, "
                                   f"{fmt(100 * within if within is not None else None, 1)} % within 10 ms"),
                         "met": within is not None and within >= 0.99, "note": note})
    workers = results.get("workers", {})
    if "skipped" in workers:
        rows.append({"target": "(context) --workers: cost and load share on one core", "goal": "—",
                     "value": "not measured", "met": None, "note": workers["skipped"]})
    elif workers.get("workers_1"):
        many = workers.get(f"workers_{workers['workers']}", {})
        rows.append({"target": f"(context) --workers {workers['workers']} vs 1 on the one core, closed loop",
                     "goal": "—",
                     "value": (f"answers/s x{fmt(workers.get('qps_ratio'), 2)}, CPU per answer "
                               f"x{fmt(workers.get('cpu_ratio'), 2)}, CPU share by process "
                               f"{' / '.join(fmt(x, 0) for x in many.get('cpu_share_pct', []))} %"),
                     "met": None,
                     "note": (f"{workers['clients']} dnsperf sockets; {fmt(workers['workers_1']['qps'])} vs "
                              f"{fmt(many.get('qps'))} answers/s, {fmt(workers['workers_1']['cpu_us_per_query'], 2)} vs "
                              f"{fmt(many.get('cpu_us_per_query'), 2)} µs. The second core is dnsperf's, so here the "
                              "processes take turns on one core: this is the cost of sharing it and the kernel's "
                              "split of the load, not the gain of a core per worker, which this machine cannot show")})
    scale = results.get("scale", {})
    if scale:
        rows.append({"target": f"scale: {scale.get('services', 0):,} services + {scale.get('pods', 0):,} pods, start-up to first answer",
                     "goal": "< 5 s", "value": fmt(scale.get("load_s"), 1, " s"),
                     "met": scale.get("load_s") is not None and scale["load_s"] < TARGETS["scale_load_s"], "note": scale.get("note") or ""})
        if "qps_ratio" in scale:
            met = scale["qps_ratio"] >= TARGETS["throughput_ratio"]
            note = (f"closed loop (no rate search), the scale cluster's own {fmt(scale.get('query_count'))}-query mix: "
                    f"{fmt(scale['throughput']['kdns']['qps'])} vs {fmt(scale['throughput']['knot']['qps'])} answers/s, "
                    f"CPU per answer {fmt(scale['throughput']['kdns']['cpu_us_per_query'], 2)} vs "
                    f"{fmt(scale['throughput']['knot']['cpu_us_per_query'], 2)} µs")
            if scale["throughput"]["knot"].get("client_bound") or scale["throughput"]["kdns"].get("client_bound"):
                met = (scale.get("cpu_ratio") or 0) >= TARGETS["throughput_ratio"]
                note += f"; a server core was not full, so judged by answers per CPU-second: {fmt(scale.get('cpu_ratio'), 2)}"
            rows.append({"target": "scale: cluster answers, kdns/Knot, same cluster and queries", "goal": f">= {TARGETS['throughput_ratio']}",
                         "value": fmt(scale["qps_ratio"], 2), "met": met, "note": note})
        rows.append({"target": "scale: peak RSS (VmHWM)", "goal": "< 1 GiB", "value": fmt(scale.get("peak_rss_mib"), 0, " MiB"),
                     "met": scale.get("peak_rss_mib") is not None and scale["peak_rss_mib"] < TARGETS["scale_rss_mib"]
                     and scale.get("load_s") is not None, "note": ""})
    forward = results.get("forward", {})
    if "skipped" in forward:
        rows.append({"target": "forwarded names from the cache / cluster answers (max qps)", "goal": ">= 0.8",
                     "value": "not measured", "met": None, "note": forward["skipped"]})
    elif forward:
        ratio = forward.get("ratio_to_cluster")
        fc = forward["throughput"].get("per_cpu_second")
        kc = k["throughput"].get("per_cpu_second") if k else None
        cpu_ratio = fc / kc if fc and kc else None
        met, note = ratio is not None and ratio >= TARGETS["forward_ratio"], ""
        bound = forward["throughput"].get("client_bound") or (k and k["throughput"].get("client_bound"))
        if bound and cpu_ratio is not None:
            met = cpu_ratio >= TARGETS["forward_ratio"]
            note = (f"a max here is dnsperf's (a server core was not full): judged by answers per CPU-second, "
                    f"{fmt(cpu_ratio, 2)}")
        rows.append({"target": "forwarded names from the cache / cluster answers (max qps)", "goal": ">= 0.8",
                     "value": f"{fmt(ratio, 3)} ({fmt(forward['throughput']['max_rate'])} qps)", "met": met, "note": note})
        if cpu_ratio is not None:
            rows.append({"target": "(context) answers per CPU-second, forwarded from the cache / cluster", "goal": "—",
                         "value": f"{fmt(cpu_ratio, 3)} ({fmt(fc)} / {fmt(kc)})", "met": None,
                         "note": "CPU cost per answer, less sensitive to the shared machine than max qps"})
    return rows


def write_markdown(results: dict[str, Any], path: Path) -> str:
    m = results["machine"]
    lines = [
        "# kdns beside Knot DNS: benchmark results",
        "",
        (f"**{m['date_utc']}**, mode `{results['mode']}`; {m['cpu_model']}, {m['cpus_online']} CPUs, "
        f"{m['memory_gib']} GiB, {m['os']} (kernel {m['kernel']}), load average at start {' '.join(m['loadavg_start'])}; "
        f"Python {m['python']} ({m['kdns_event_loop']}), kdns `{m['kdns_commit']}` (sources "
        f"`{m.get('kdns_sources', '?')}`), {m['knot']}, {m['dnsperf']}. "
        f"{results['pinning']}."),
        "",
        (f"Cluster: {results['cluster']['namespaces']} namespaces, {results['cluster']['services_clusterip']:,} ClusterIP services "
        f"(named ports, SRV), {results['cluster']['services_headless']} headless services with "
        f"{results['cluster']['spec']['headless_pods']} pods each, {results['cluster']['records']:,} records; "
        f"{results['cluster']['query_count']:,} queries in the file, realistic mix (see bench/README.md)."),
        "",
        "## Targets",
        "",
        "| target | goal | measured | met | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in results["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        lines.append(f"| {row['target']} | {row['goal']} | {row['value']} | {met} | {row['note']} |")
    lines += [
        "",
        "## Throughput (UDP, one server core)",
        "",
        ("| server | max qps, loss < 0.1 % | answered/s there | loss there | unlimited-rate qps | CPU per query at max | "
        "server CPU use at max | its core busy (others' share: server core / dnsperf core) | answers per CPU-second | peak RSS "
        "| start-up to first answer |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in results.get("servers", {}).items():
        th = s["throughput"]
        lines.append(
            f"| {name} | {fmt(th['max_rate'])} | {fmt(th['max']['qps'])} | {fmt(th['max']['loss_pct'], 3)} % | "
            f"{fmt(th['unlimited']['qps'])} | {fmt(th['max']['cpu_us_per_query'], 1)} µs | "
            f"{fmt(100 * (th['max']['server_cpu_util'] or 0), 0)} % | "
            f"{fmt(100 * (th['max']['server_core_busy'] or 0), 0)} % ({fmt(100 * (th['max']['server_core_others'] or 0), 0)} % / "
            f"{fmt(100 * (th['max'].get('client_core_others') or 0), 0)} %)"
            f"{' client-bound' if th.get('client_bound') else ''}"
            f"{' disturbed' if th['max'].get('disturbed_runs') else ''} | "
            f"{fmt(th.get('per_cpu_second'))} | "
            f"{fmt(s['peak_rss_mib'], 1)} MiB | {fmt(s['startup_s'], 2)} s |")
    lines += [
        "",
        "## Latency at fixed loads (dnsperf -v, per-answer latency; median of the runs)",
        "",
        ("| server | offered qps | sent (of offered) | answered/s | loss | p50 | p90 | p99 | p99.9 | max | CPU per query "
        "| others' share: server core / dnsperf core |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in results.get("servers", {}).items():
        for x in s["latency"]:
            lat = x["latency_ms"]
            lines.append(
                f"| {name} | {x['load']:,} | {fmt(100 * (x['sent_ratio'] or 0), 0)} % | {fmt(x['qps'])} | "
                f"{fmt(x['loss_pct'], 3)} % | {fmt(lat['p50'], 3)} ms | "
                f"{fmt(lat['p90'], 3)} ms | {fmt(lat['p99'], 3)} ms | {fmt(lat['p99.9'], 3)} ms | {fmt(lat['max'], 3)} ms | "
                f"{fmt(x['cpu_us_per_query'], 1)} µs | {fmt(100 * (x['server_core_others'] or 0), 0)} % / "
                f"{fmt(100 * (x.get('client_core_others') or 0), 0)} %"
                f"{' (disturbed)' if x.get('disturbed_runs') else ''} |")
    scale = results.get("scale")
    if scale:
        lines += ["", "## Scale (kdns)", "",
                  f"{scale['services']:,} services and {scale['pods']:,} pods in {scale['namespaces']} namespaces "
                  f"({scale['yaml_mib']} MiB of YAML): first answer ({scale['probe']}) "
                  f"{fmt(scale['load_s'], 2)} s after exec, {fmt(scale['load_cpu_s'], 1)} s CPU, "
                  f"peak RSS {fmt(scale['peak_rss_mib'], 0)} MiB." + (f" {scale['note']}" if scale.get("note") else "")]
        for who, t in scale.get("throughput", {}).items():
            lines.append(f"* {who}, closed-loop dnsperf with the scale cluster's queries: {fmt(t['qps'])} answers/s, "
                         f"loss {fmt(t['loss_pct'], 3)} %, {fmt(t['cpu_us_per_query'], 2)} µs CPU per answer"
                         f"{' (client-bound)' if t.get('client_bound') else ''}.")
    forward = results.get("forward", {})
    lines += ["", "## Forwarded names from the cache (kdns)", ""]
    if "skipped" in forward:
        lines.append(f"Not measured: {forward['skipped']}")
    elif forward:
        th = forward["throughput"]
        lat = forward["latency"][0]
        lines.append(f"{forward['names']:,} names of {gen.FORWARD_ZONE} (TTL {gen.FORWARD_TTL} s) from Knot on "
                     f"{UPSTREAM_ADDRESS}, warmed once: max {fmt(th['max_rate'])} qps with < 0.1 % loss "
                     f"({fmt(forward['ratio_to_cluster'], 3)} x cluster answers), unlimited {fmt(th['unlimited']['qps'])} qps, "
                     f"{fmt(th['max']['cpu_us_per_query'], 1)} µs CPU/query; at {lat['load']:,} qps p50 "
                     f"{fmt(lat['latency_ms']['p50'], 3)} ms, p99 {fmt(lat['latency_ms']['p99'], 3)} ms; "
                     f"upstream CPU during the measurement {fmt(forward['upstream_cpu_s_during_measurement'], 2)} s.")
    lines += ["", "## Registry change to visible answer (kdns)", ""]
    for key, who in (("change", "one process"),
                     ("change_workers", (f"`--workers {CHANGE_WORKERS}` on the one core, asked from "
                                         f"{WORKER_SOCKETS} source ports until all see it"))):
        change = results.get(key, {})
        if "skipped" in change:
            lines.append(f"* {who}: not measured: {change['skipped']}")
        elif change:
            lat = change["latency_ms"]
            after = change.get("after_commit_ms", {})
            lines.append(f"* {who}: {change['changes']} readiness flips by PUT under {change['background_load_qps']:,} qps "
                         f"(background loss {fmt(change['background_loss_pct'], 3)} %): from before the PUT p50 "
                         f"{fmt(lat['p50'], 2)} ms, p99 {fmt(lat['p99'], 2)} ms, max {fmt(lat['max'], 2)} ms; from its "
                         f"reply (committed) p50 {fmt(after.get('p50'), 2)} ms, p99 {fmt(after.get('p99'), 2)} ms; "
                         f"{change['error_count']} errors.")
    workers = results.get("workers", {})
    if workers:
        lines += ["", "## `--workers` on the one core (kdns)", ""]
        if "skipped" in workers:
            lines.append(f"Not measured: {workers['skipped']}")
        else:
            lines += [(f"Closed-loop dnsperf from {workers['clients']} sockets (source ports), "
                       f"{workers['workers_1']['runs'][0]['seconds']:g} s runs, medians; every kdns process pinned "
                       "to the server core, so this shows what several processes cost and how the kernel's "
                       "SO_REUSEPORT hash shares the load among them, not a throughput gain (that needs a core per "
                       "worker, and the second core is dnsperf's)."), "",
                      "| processes | answers/s | loss | CPU per answer | CPU share by process |",
                      "| --- | ---: | ---: | ---: | --- |"]
            for key in ("workers_1", f"workers_{workers['workers']}"):
                w = workers.get(key)
                if w:
                    lines.append(f"| {key.split('_')[1]} | {fmt(w['qps'])} | {fmt(w['loss_pct'], 3)} % | "
                                 f"{fmt(w['cpu_us_per_query'], 2)} µs | "
                                 f"{' / '.join(fmt(x, 1) for x in w['cpu_share_pct'])} % |")
    sanity = results.get("sanity", {})
    lines += ["", "## Sanity check", "",
              (f"{sanity.get('queries', 0)} queries asked of both servers (rcode, AA, answer, authority and additional "
              f"sections with TTLs; SOA serials excepted) and checked against the generator: "
              f"{len(sanity.get('mismatches', []))} mismatches, {len(sanity.get('unanswered', []))} unanswered.")]
    for line in sanity.get("mismatches", [])[:20] + sanity.get("unanswered", [])[:10]:
        lines.append(f"* {line}")
    lines += ["", "## Notes", ""] + [f"* {note}" for note in results["notes"]]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def write_plot(results: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    servers = results.get("servers", {})
    if not servers:
        return "no server was measured: no plot"
    colors = {"kdns": "#3b6fb6", "knot": "#d9822b"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.4), gridspec_kw={"width_ratios": [1, 1.6]})
    names = [n for n in ("kdns", "knot") if n in servers]
    groups = ["max, loss < 0.1 %", "unlimited rate\n(closed loop)"]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        th = servers[name]["throughput"]
        values = [th["max_rate"], th["unlimited"]["qps"] or 0]
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        bars = left.bar(xs, values, width, label=name, color=colors.get(name))
        for bar, value in zip(bars, values, strict=True):
            left.annotate(f"{value:,.0f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8)
    forward = results.get("forward", {})
    if forward and "throughput" in forward:
        value = forward["throughput"]["max_rate"]
        left.bar([len(groups)], [value], width, color=colors["kdns"], hatch="//", label="kdns, forwarded names from cache")
        left.annotate(f"{value:,.0f}", (len(groups), value), ha="center", va="bottom", fontsize=8)
        groups.append("forwarded,\nfrom the cache")
    left.set_xticks(range(len(groups)), groups)
    left.set_yscale("log")
    tallest = max([servers[n]["throughput"]["max_rate"] for n in names]
                  + [servers[n]["throughput"]["unlimited"]["qps"] or 0 for n in names])
    left.set_ylim(1000, max(tallest, 1000) * 3)  # room for the labels under the title
    left.set_ylabel("queries per second (log scale)")
    left.set_title("Throughput, one server core (UDP)")
    left.legend(fontsize=8)
    loads = [x["load"] for x in servers[names[0]]["latency"]]
    pcts = ["p50", "p99", "p99.9"]
    slots = [(load, p) for load in loads for p in pcts]
    for i, name in enumerate(names):
        by_load = {x["load"]: x for x in servers[name]["latency"]}
        values, hatches = [], []
        for load, p in slots:
            x = by_load[load]
            values.append(x["latency_ms"][p] or 0)
            degraded = (x["loss_pct"] or 0) >= LOSS_LIMIT_PCT or (x["sent_ratio"] or 0) < SENT_RATIO_MIN
            hatches.append("xx" if degraded else "")
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(slots))]
        bars = right.bar(xs, values, width, label=name, color=colors.get(name))
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
    for j in range(1, len(loads)):
        right.axvline(j * len(pcts) - 0.5, color="lightgrey", linewidth=1)
    right.set_xticks(range(len(slots)), [f"{p}\n{load:,} qps" for load, p in slots], fontsize=7)
    right.set_yscale("log")
    right.set_ylabel("latency, ms (log scale)")
    right.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    right.set_title("Latency at fixed offered loads\n(crossed: offered load not reached or loss >= 0.1 %)", fontsize=10)
    right.legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(f"kdns beside Knot DNS {m['knot'].split()[-1] if m['knot'] else ''} — {m['date_utc']}, "
                 f"{m['cpu_model']}, {m['cpus_online']} CPUs ({results['mode']} run)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


def update_readme(results: dict[str, Any], markdown: str, out: Path) -> bool:
    """Rewrite the results section of bench/README.md, with the plot copied beside it as
    bench/results.png (bench/out/ is git-ignored; the README's record must not be)."""
    readme = HERE / "README.md"
    if not readme.exists():
        return False
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    image = ""
    if (out / "results.png").exists():
        shutil.copyfile(out / "results.png", HERE / "results.png")
        image = "![throughput and latency, kdns beside Knot](results.png)\n\n"
    body = markdown.split("\n", 2)[2]  # without the title line
    body = body.replace("\n## ", "\n### ")
    rel = os.path.relpath(out, HERE)
    block = (f"{README_START}\n_Written by `python bench/run.py` ({results['mode']} run); the plot is "
             f"`results.png` beside this file, all figures in `{rel}/results.json`._\n\n{image}{body}\n{README_END}")
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    readme.write_text(text[:start] + block + text[end:])
    return True


# ---------------------------------------------------------------------------- main


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
    parser.add_argument("--quick", action="store_true", help="short runs (about 5 minutes instead of about 8)")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="where results go (default bench/out)")
    parser.add_argument("--seed", type=int, default=1, help="cluster generator seed")
    parser.add_argument("--only", choices=["knot", "kdns"], help="measure one server only")
    parser.add_argument("--skip-scale", action="store_true", help="no 10,000-service / 100,000-pod start-up test")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the results section of bench/README.md")
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
        report(results, out, readme=not args.no_readme)
        return 0
    mode = QUICK if args.quick else DEFAULT
    RETRIES["left"] = mode.retries

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
            KDNS_COMMON[:] = kdns_common_flags(help_text)
            results["kdns_flags"] = KDNS_COMMON[:]
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
                throughput = measure_throughput(target, mode, client_cpu, workdir)
                latency = measure_latency(target, mode, client_cpu, workdir)
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
                                                               cluster_max))
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
                                                               client_cpu, help_text))
            if "skipped" in results["workers"]:
                say(f"workers: skipped: {results['workers']['skipped']}")
            if not args.skip_scale:
                results["scale"] = optional(lambda: scale_test(workdir, mode, server_cpu, client_cpu,
                                                               with_knot="knot" in order))

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
    report(results, out, readme=not args.no_readme)
    return 0


def report(results: dict[str, Any], out: Path, *, readme: bool) -> None:
    """results.md, results.png and (with the default --out) the README section; the targets."""
    markdown = write_markdown(results, out / "results.md")
    problem = write_plot(results, out / "results.png")
    if problem:
        say(problem)
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
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
