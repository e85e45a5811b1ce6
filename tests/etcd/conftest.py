"""A real etcd cluster for the replicated-registry tests: three members on loopback ports.

`etcd_cluster()` starts Debian's `etcd` (package etcd-server) three times, each member
with its own data directory under the test's tmp_path and its own free client and peer
ports on 127.0.0.1, and waits until the cluster has a leader. Members are stopped by PID
(`kill(i)` is SIGKILL, as a crash; `start(i)` brings one back on its data), and all that
are still running are killed at teardown. Tests skip when etcd is not installed; CI
installs it (.ci/run).

`replica(cluster, ...)` starts a `kdns serve --store etcd://...` process on the cluster.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Process
from tests.e2e.kubeapi import Client

ETCD = shutil.which("etcd")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# A lease short enough for a quick handover test, long enough for a loaded 2-core machine.
LEASE = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    scheme: str = "http"  # https: give the cluster the TLS flags as `extra`

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"


@dataclass
class EtcdCluster:
    members: list[Member]
    _initial: str = ""
    extra: tuple[str, ...] = ()  # more etcd flags for every member
    _started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def store_flag(self) -> str:
        return "etcd://" + ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)

    def start(self, index: int) -> None:
        member = self.members[index]
        assert ETCD is not None
        argv = [
            ETCD, "--name", member.name, "--data-dir", str(member.data_dir),
            "--listen-client-urls", member.url, "--advertise-client-urls", member.url,
            "--listen-peer-urls", f"http://127.0.0.1:{member.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{member.peer_port}",
            "--initial-cluster", self._initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", f"kdns-test-{self.members[0].client_port}",
            # Short Raft timers: a lost member is noticed, and a leader elected, quickly.
            "--heartbeat-interval", "50", "--election-timeout", "500", *self.extra,
        ]
        log = member.log.open("ab")
        member.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        self._started.append(member.proc)

    def kill(self, index: int, signum: int = signal.SIGKILL) -> None:
        """Stop one member by its PID (SIGKILL by default: a crash) and wait for it."""
        proc = self.members[index].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signum)
            proc.wait(STOP_TIMEOUT)

    def wait_healthy(
        self, timeout: float = START_TIMEOUT, members: range | None = None, context: ssl.SSLContext | None = None
    ) -> None:
        """Until every (given) member says the cluster has a leader and takes reads
        (`context`: the client side of https)."""
        deadline = time.monotonic() + timeout
        for member in (self.members[i] for i in (members or range(len(self.members)))):
            while True:
                try:
                    with urllib.request.urlopen(member.url + "/health", timeout=1, context=context) as response:
                        if json.load(response).get("health") == "true":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"etcd {member.name} not healthy:\n" + member.log.read_text()[-3000:])
                time.sleep(0.1)

    def compact(self) -> int:
        """Compact etcd's history up to now; the revision compacted."""
        request = urllib.request.Request(self.members[0].url + "/v3/kv/range", data=b'{"key":"AA=="}', method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            revision = int(json.load(response)["header"]["revision"])
        body = json.dumps({"revision": str(revision), "physical": True}).encode()
        request = urllib.request.Request(self.members[0].url + "/v3/kv/compaction", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5):
            return revision

    def stop_all(self) -> None:
        for proc in self._started:
            if proc.poll() is None:
                proc.kill()  # its data is thrown away with tmp_path: no need to wait for a clean stop
        for proc in self._started:
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[Callable[..., EtcdCluster]]:
    """Factory: `etcd_cluster()` -> a running three-member etcd cluster on loopback."""
    if ETCD is None:
        pytest.skip("etcd is not installed (Debian: apt-get install etcd-server)")
    clusters: list[EtcdCluster] = []

    def make(size: int = 3, *extra: str, scheme: str = "http", context: ssl.SSLContext | None = None) -> EtcdCluster:
        """`size` members; `extra`: more etcd flags (TLS with scheme "https" and `context`)."""
        number = len(clusters)
        members = [
            Member(f"m{i}", free_port(), free_port(), tmp_path / f"etcd-{number}-m{i}",
                   tmp_path / f"etcd-{number}-m{i}.log", scheme=scheme)
            for i in range(size)
        ]
        cluster = EtcdCluster(members, ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in members), extra)
        clusters.append(cluster)
        for index in range(size):
            cluster.start(index)
        cluster.wait_healthy(context=context)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop_all()


def replica_args(cluster: EtcdCluster, *extra: str, prefix: str = "/kdns") -> tuple[str, ...]:
    return ("--store", cluster.store_flag, "--etcd-prefix", prefix, "--leader-elect-lease-duration", str(LEASE), *extra)


def client(process: Process, tmp_path: Path) -> Client:
    return Client(process.api_url, tmp_path)


def eventually(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """`check()`'s first truthy result, polled until `timeout` (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            last = check()
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {what} (last: {last!r})")
