"""The servers under test: starting kdns and Knot, asking them, and checking that they
give the same answers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from common import LOOPBACK, REPO
from procs import Child, memory_kib


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


PROBE_TIMEOUT = 0.05  # seconds
PROBE_PAUSE = 0.01


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
        # A probe unanswered after PROBE_TIMEOUT is given up and sent again: the first
        # answer is known to within PROBE_TIMEOUT + PROBE_PAUSE (a 0.2 s timeout made
        # start-up times come in steps of a quarter of a second).
        response = query(port, name, qtype, address=address, timeout=PROBE_TIMEOUT)
        if response is not None and ok(response):
            return time.monotonic() - child.started, response
        time.sleep(PROBE_PAUSE)
    return None, f"no answer within {deadline_s:.0f} s"


def wait_settled(child: Child, deadline_s: float = 120.0) -> float | None:
    """Once kdns answers, wait for the end of its start-up's leftover work: the documents
    a load from manifests leaves to pack while DNS is quiet (kdns.app.pack_deferred logs
    "start-up: N documents left to pack ..." then "... documents packed in X s"). A steady
    registry is measured after it. Returns the seconds waited, 0.0 if there was nothing to
    pack (or the tree does not defer it), None if the deadline passed first."""
    began = time.monotonic()
    while time.monotonic() - began < deadline_s:
        text = child.log_path.read_text(errors="replace")
        if "documents left to pack" not in text:
            return 0.0
        if "documents packed in" in text:
            return time.monotonic() - began
        if not child.alive():
            return None
        time.sleep(0.05)
    return None


def kdns_common_flags(help_text: str) -> list[str]:
    flags = []
    if "--ephemeral" in help_text:
        flags.append("--ephemeral")
    if "--zones-dir" in help_text:
        flags += ["--zones-dir", "none"]
    if "--workers" in help_text:
        flags += ["--workers", "1"]
    return flags


@cache
def installed(repo: Path) -> Path:
    """`repo`, its modules compiled to bytecode as `pip install` leaves an installed kdns, so
    that a start reads them instead of compiling each module (about 0.2 s of a start).
    These machines set PYTHONDONTWRITEBYTECODE, so nothing else would write them, and a
    tree that happened to hold them would start faster than one that did not."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(repo / "kdns")], check=True, capture_output=True)
    return repo


def start_kdns(manifests: Path, port: int, cpu: str, log: Path, extra: list[str] | None = None,
               durable: bool = False, repo: Path = REPO) -> Child:
    """kdns serving `manifests`, pinned to `cpu`; in memory only unless `durable` (then
    `extra` names the --data-dir); from the sources in `repo` (this tree by default;
    bench/cpu.py also runs another revision's)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    common = [flag for flag in kdns_common_flags(kdns_help()) if not (durable and flag == "--ephemeral")]
    argv = ["taskset", "-c", cpu, sys.executable, "-m", "kdns", "serve", "--manifests", str(manifests),
            "--dns-address", LOOPBACK, "--dns-port", str(port), *common, *(extra or ["--upstream", "none"])]
    return Child("kdns", argv, log, cwd=installed(repo), env=env)


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


@cache
def kdns_help() -> str:
    """`python -m kdns serve --help` of the tree under test (read once)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "kdns", "serve", "--help"], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`python -m kdns serve --help` failed: {result.stderr.strip()[-500:]}")
    return result.stdout
