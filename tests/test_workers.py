"""`kdns serve --workers N`: worker processes on the same port, serving the primary's registry.

Real processes throughout: the `kdns` command, its `python -m kdns.worker` children, the
HTTP API and DNS over loopback. The kernel spreads UDP queries over the processes of a
SO_REUSEPORT group by source address and port, so a test asks from many sockets (each
its own source port) to reach every process: with 32 sockets and two processes, the
chance that one process gets none is 2**-31.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from kdns.config import ConfigError, Settings
from kdns.registry.store import Store
from kdns.replication import WorkerError, WorkerPool

SOCKETS = 32
SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.50, ports: [{name: http, port: 80}]}
"""


def children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """SOCKETS UDP sockets on loopback, each with its own source port."""
    made = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOCKETS)]
    for sock in made:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)  # dnspython waits on it with its own timeout
    yield made
    for sock in made:
        sock.close()


def ask(sock: socket.socket, port: int, name: str, rdtype: str = "A", timeout: float = 2.0) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout, sock=sock)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rr.address for rrset in reply.answer for rr in rrset if hasattr(rr, "address"))


def post(api_url: str, path: str, body: dict) -> int:
    request = urllib.request.Request(
        api_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def service(name: str, ip: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]},
    }


def test_every_process_answers_the_same_registry(kdns_process, sockets) -> None:
    kdns = kdns_process("--workers", "3", manifests=[SERVICE])
    workers = children(kdns.pid)
    assert len(workers) == 2, kdns.output
    name = "web.default.svc.cluster.local."
    for sock in sockets:
        assert addresses(ask(sock, kdns.port, name)) == ["10.96.0.50"]
    reply = dns.query.tcp(dns.message.make_query(name, "A"), "127.0.0.1", port=kdns.port, timeout=3)
    assert addresses(reply) == ["10.96.0.50"]

    # The primary stopped (SIGSTOP): the sockets the kernel sends to a worker still get
    # answers, so the workers answer on their own, from their own copy.
    os.kill(kdns.pid, signal.SIGSTOP)
    try:
        answered = 0
        for sock in sockets:
            with contextlib.suppress(dns.exception.Timeout):
                answered += addresses(ask(sock, kdns.port, name, timeout=0.3)) == ["10.96.0.50"]
    finally:
        os.kill(kdns.pid, signal.SIGCONT)
    assert 0 < answered < SOCKETS


def test_a_change_reaches_every_worker(kdns_process, sockets) -> None:
    kdns = kdns_process("--workers", "2", manifests=[SERVICE])
    workers = children(kdns.pid)
    name = "late.default.svc.cluster.local."
    for sock in sockets:
        assert ask(sock, kdns.port, name).rcode() == dns.rcode.NXDOMAIN
    assert post(kdns.api_url, "/api/v1/namespaces/default/services", service("late", "10.96.0.51")) == 201
    deadline = time.monotonic() + 5  # a bound for the test; bench/run.py measures the delay
    pending = list(sockets)
    while pending and time.monotonic() < deadline:
        pending = [sock for sock in pending if addresses(ask(sock, kdns.port, name)) != ["10.96.0.51"]]
    assert not pending, f"{len(pending)} sockets still get the old answer"
    # Applied by the worker that was there, not by a new one started from a snapshot.
    assert children(kdns.pid) == workers
    assert not [line for line in kdns.output if "error" in line or "warning" in line or "Warning" in line]


def soa_serial(reply: dns.message.Message) -> int:
    """The serial of the one SOA in a reply, in the answer (a SOA query) or authority (a negative)."""
    (serial,) = [rr.serial for rrset in (*reply.answer, *reply.authority) for rr in rrset if rrset.rdtype == dns.rdatatype.SOA]
    return serial


def test_every_worker_sends_its_kept_negatives_with_the_current_serial(kdns_process, sockets) -> None:
    """A write that cannot change a negative answer leaves it ready in every process, and
    each sends it with its own index's serial, the one its `SOA cluster.local` shows: the
    same in every process once they all have the write (docs/dns-rules.md R19)."""
    kdns = kdns_process("--workers", "2", manifests=[SERVICE])
    negative = "nope.default.svc.cluster.local."
    for _ in range(2):  # the second round comes from the processes' ready replies
        before = {soa_serial(ask(sock, kdns.port, negative)) for sock in sockets}
    assert post(kdns.api_url, "/api/v1/namespaces/default/services", service("late", "10.96.0.51")) == 201
    deadline = time.monotonic() + 5  # a bound for the test: every process has the write
    pending = list(sockets)
    while pending and time.monotonic() < deadline:
        pending = [sock for sock in pending if addresses(ask(sock, kdns.port, "late.default.svc.cluster.local.")) != ["10.96.0.51"]]
    assert not pending, f"{len(pending)} sockets still get the old answer"
    shown = {(soa_serial(ask(sock, kdns.port, negative)), soa_serial(ask(sock, kdns.port, "cluster.local.", "SOA"))) for sock in sockets}
    (after,) = {serial for pair in shown for serial in pair}
    assert len(before) == 1 and after > before.pop(), shown


def test_query_counts_of_the_workers_are_in_the_metrics(kdns_process, sockets) -> None:
    kdns = kdns_process("--workers", "2", manifests=[SERVICE])

    def answered() -> int:
        with urllib.request.urlopen(kdns.api_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith("kdns_dns_queries_total{") and 'qtype="TXT"' in line
        )

    for sock in sockets:
        ask(sock, kdns.port, "web.default.svc.cluster.local.", "TXT")
    deadline = time.monotonic() + 5  # workers report once a second
    while answered() != SOCKETS and time.monotonic() < deadline:
        time.sleep(0.1)
    assert answered() == SOCKETS

    # How long after a commit the worker had it: one observation per commit and worker.
    def synced() -> float:
        with urllib.request.urlopen(kdns.api_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(float(line.split()[1]) for line in text.splitlines() if line.startswith("kdns_worker_sync_seconds_count"))

    assert synced() == 0
    with urllib.request.urlopen(kdns.api_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    # Summed over the primary and the worker: no drops here, but the series is there.
    assert 'kdns_dns_udp_dropped_total{reason="in_flight"} 0.0' in text
    assert post(kdns.api_url, "/api/v1/namespaces/default/services", service("late", "10.96.0.51")) == 201
    deadline = time.monotonic() + 5
    while synced() < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert synced() == 1


def test_a_worker_that_dies_is_started_again(kdns_process, sockets) -> None:
    kdns = kdns_process("--workers", "2", manifests=[SERVICE])
    [worker] = children(kdns.pid)
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("serves DNS" in line for line in kdns.output[-3:]):
        time.sleep(0.05)
    [again] = children(kdns.pid)
    assert again != worker
    assert any(f"pid {worker}) exited" in line for line in kdns.output), kdns.output
    for sock in sockets:
        assert addresses(ask(sock, kdns.port, "web.default.svc.cluster.local.")) == ["10.96.0.50"]


def test_workers_stop_with_the_primary_even_when_it_is_killed(kdns_process) -> None:
    kdns = kdns_process("--workers", "3", manifests=[SERVICE])
    workers = children(kdns.pid)
    assert kdns.stop(signal.SIGKILL) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:  # ours (our child's children): do not leave them behind on failure
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers outlived a killed primary"


def test_sigterm_stops_primary_and_workers(kdns_process) -> None:
    kdns = kdns_process("--workers", "2", manifests=[SERVICE])
    workers = children(kdns.pid)
    assert kdns.stop() == 0
    assert not any(alive(pid) for pid in workers)


def test_sighup_reloads_the_static_zones_of_every_worker(kdns_process, sockets, tmp_path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    zone = zones / "example.test.zone"
    record = "$TTL 60\n@ IN SOA ns h {serial} 1 1 1 1\n@ IN NS ns\nns IN A 127.0.0.1\nwww IN A {address}\n"
    zone.write_text(record.format(serial=1, address="192.0.2.1"))
    kdns = kdns_process("--workers", "2", "--zones-dir", str(zones), manifests=[SERVICE])
    for sock in sockets:
        assert addresses(ask(sock, kdns.port, "www.example.test.")) == ["192.0.2.1"]
    zone.write_text(record.format(serial=2, address="192.0.2.2"))
    os.kill(kdns.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    pending = list(sockets)
    while pending and time.monotonic() < deadline:
        pending = [sock for sock in pending if addresses(ask(sock, kdns.port, "www.example.test.")) != ["192.0.2.2"]]
        time.sleep(0.02)
    assert not pending


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_bad_worker_counts_are_refused(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kdns", "serve", "--workers", value],
        check=False, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "workers" in result.stderr and value in result.stderr
    with pytest.raises(ConfigError, match="workers"):
        Settings(workers=0)


def test_a_worker_that_cannot_start_fails_the_start() -> None:
    async def main() -> None:
        pool = WorkerPool(Settings(), Store(), 2, command=(sys.executable, "-c", "raise SystemExit(3)"))
        with pytest.raises(WorkerError, match="code 3 while starting"):
            async with pool:
                pass

    asyncio.run(main())


def test_the_worker_command_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kdns.worker"], check=False, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 2 and "kdns serve --workers" in result.stderr
