"""Processes and the machine: tools installed, CPUs, ports, the processes the benchmark
starts (stopped by their PID), and what /proc says about them."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import CLK_TCK, LOOPBACK, REPO, say


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


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """(utime, stime) in seconds of each thread of the process, by thread id (the main
    thread's id is the pid); a thread that ended meanwhile is left out."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        times[int(tid)] = (int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)
    return times


def udp_drops(port: int) -> int:
    """Datagrams dropped at the receive buffer of the UDP socket(s) bound to `port`."""
    total = 0
    suffix = f":{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(suffix):
            total += int(fields[-1])
    return total


def _cpu_ticks(cpu: str) -> tuple[int, ...]:
    """One CPU's clock ticks since boot from /proc/stat: user, nice, system, idle, iowait,
    irq, softirq, steal; zeros if it is not listed."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            return tuple(int(v) for v in line.split()[1:9])
    return (0,) * 8


def core_ticks(cpu: str) -> tuple[int, int]:
    """(busy, total) clock ticks of one CPU since boot, from /proc/stat. Busy is user,
    nice, system and steal: interrupt and softirq time is left out, as it is mostly the
    packets of the server under test, which the kernel does not charge to its PID."""
    user, nice, system, idle, iowait, irq, softirq, steal = _cpu_ticks(cpu)
    return user + nice + system + steal, user + nice + system + idle + iowait + irq + softirq + steal


def steal_ticks(cpu: str) -> tuple[int, int]:
    """(stolen, total) clock ticks of one CPU since boot: the time a virtual machine's
    hypervisor ran something else while this CPU had work (/proc/stat's steal). On a
    shared host it comes in bursts of seconds that take a share of both cores, the
    server's and dnsperf's alike, which a ratio of answers/s cannot tell from a cost of
    the server's (measure.STEAL_LIMIT)."""
    ticks = _cpu_ticks(cpu)
    return ticks[7], sum(ticks)


def share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The share of the ticks between two readings of (part, total); None if no time passed."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else None


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
