"""A pod's view: glibc and Python resolve through kdns with the Kubernetes resolv.conf.

Each test makes a network namespace with its own loopback, runs kdns there on
127.0.0.1:53 and, as its upstream, a second kdns on 127.0.0.2:53 serving a static root
zone (it answers every outside name, as a recursive resolver would). The namespace's
/etc/netns/<name>/resolv.conf is what kubelet writes for a pod of namespace `default`:
`search default.svc.cluster.local svc.cluster.local cluster.local` and `options ndots:5`;
`ip netns exec` mounts it over /etc/resolv.conf for the commands it runs. Skipped, with
the reason, where namespaces cannot be made (not root, no iproute2, no privileges).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLE = REPO / "zones"  # the example cluster: my-service.default is 10.96.1.2
WAIT = 15.0
RESOLV_CONF = """\
nameserver 127.0.0.1
search default.svc.cluster.local svc.cluster.local cluster.local
options ndots:5 timeout:2 attempts:1
"""
ROOT_ZONE = """\
$ORIGIN .
$TTL 300
@                 IN SOA ns.upstream.test. hostmaster.upstream.test. 1 3600 600 86400 30
@                 IN NS  ns.upstream.test.
ns.upstream.test. IN A   127.0.0.2
www.example.test. IN A   192.0.2.1
"""
# The client of every command run in the namespace is 127.0.0.1: as a pod of `default`
# it lets --autopath recognise it.
LOOPBACK_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: shell, namespace: default}
spec:
  containers: [{name: shell, image: busybox}]
status:
  phase: Running
  podIP: 127.0.0.1
  podIPs: [{ip: 127.0.0.1}]
"""
NAMES = [
    ("my-service", "10.96.1.2"),  # a short Service name: the first search domain
    ("my-service.default.svc.cluster.local", "10.96.1.2"),  # a full name (4 dots < ndots)
    ("www.example.test", "192.0.2.1"),  # from the upstream, after the search list
]


def _run(*argv: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with loopback up and the pod resolv.conf; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (`ip netns add`); run the suite as root to include this test")
    if shutil.which("ip") is None or shutil.which("getent") is None:
        pytest.skip("needs `ip` (iproute2) and `getent` (libc-bin)")
    name = f"kdns-test-{os.getpid()}"
    made = _run("ip", "netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"`ip netns add` failed, no network namespaces here: {made.stderr.strip()}")
    parent = Path("/etc/netns")
    parent_existed = parent.exists()
    etc = parent / name
    try:
        _run("ip", "-n", name, "link", "set", "lo", "up").check_returncode()
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(RESOLV_CONF)
        probe = _run("ip", "netns", "exec", name, "cat", "/etc/resolv.conf")
        if probe.returncode != 0 or probe.stdout != RESOLV_CONF:
            pytest.skip(f"`ip netns exec` cannot mount /etc/netns/{name}/resolv.conf here: {probe.stderr.strip()}")
        yield name
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        if not parent_existed:
            with contextlib.suppress(OSError):  # someone else's namespace config appeared meanwhile
                parent.rmdir()
        _run("ip", "netns", "delete", name)


class NetnsKdns:
    """`kdns serve ARGS` inside a namespace; `ip netns exec` execs it, so its PID is kdns's."""

    def __init__(self, netns: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "kdns", "serve", "--ephemeral", "--api-port", "0"]
        self.proc = subprocess.Popen(
            [*argv, *args], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )
        self.output: list[str] = []
        serving = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.output.append(line)
                if line.startswith("kdns: forwarding "):  # logged once DNS is served
                    serving.set()
            serving.set()  # EOF: the process is gone

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not serving.wait(WAIT) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("kdns did not start in the namespace:\n" + "".join(self.output))

    def stop(self) -> int:
        """SIGTERM this kdns (by its PID), wait for it; SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(WAIT)
        self._reader.join(WAIT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code


@pytest.fixture
def in_netns(netns: str, tmp_path: Path) -> Iterator[Callable[..., NetnsKdns]]:
    """Factory: kdns in the namespace; stopped (exit 0 after SIGTERM) at teardown."""
    started: list[NetnsKdns] = []

    def start(*args: str) -> NetnsKdns:
        kdns = NetnsKdns(netns, *args)
        started.append(kdns)
        return kdns

    yield start
    for kdns in reversed(started):
        running = kdns.proc.poll() is None
        code = kdns.stop()
        if running:
            assert code == 0, "".join(kdns.output)


@pytest.mark.parametrize("autopath", [False, True], ids=["plain", "autopath"])
def test_glibc_and_python_resolve_through_kdns(netns: str, in_netns: Callable[..., NetnsKdns], tmp_path: Path, autopath: bool) -> None:
    """getent hosts and socket.getaddrinfo in the namespace resolve a short Service name, a full cluster name and an upstream name."""
    root = tmp_path / "upstream-zones"
    root.mkdir()
    (root / "root.zone").write_text(ROOT_ZONE)
    empty = tmp_path / "no-manifests"
    empty.mkdir()
    in_netns(
        "--dns-address", "127.0.0.2", "--dns-port", "53", "--zones-dir", str(root), "--upstream", "none",
        "--manifests", str(empty),
    )
    pod = tmp_path / "pod.yaml"
    pod.write_text(LOOPBACK_POD)
    extra = ["--autopath", "--manifests", str(EXAMPLE), "--manifests", str(pod)] if autopath else []
    kdns = in_netns(
        "--dns-address", "127.0.0.1", "--dns-port", "53", "--upstream", "127.0.0.2", "--zones-dir", "none", *extra
    )
    assert any("kdns: forwarding to 127.0.0.2:53" in line for line in kdns.output)
    for name, address in NAMES:
        glibc = _run("ip", "netns", "exec", netns, "getent", "hosts", name)
        assert glibc.returncode == 0, f"getent hosts {name}: exit {glibc.returncode} {glibc.stderr}\n" + "".join(kdns.output)
        assert glibc.stdout.split()[0] == address, glibc.stdout
        python = _run(
            "ip", "netns", "exec", netns, sys.executable, "-c",
            "import socket, sys; "
            "print(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 80, proto=socket.IPPROTO_TCP)}))",
            name,
        )
        assert python.returncode == 0, f"getaddrinfo {name}: {python.stderr}"
        assert python.stdout.strip() == repr([address]), python.stdout
