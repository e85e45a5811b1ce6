"""`python -m kdns serve` as a user runs it: start-up errors, the serving line, KDNS_*
environment variables, and stopping on a signal."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest

from tests.e2e.dnscheck import HERMETIC_FLAGS, Case, ask, check, recv_exactly

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURES = REPO / "tests" / "fixtures"
CLUSTER = FIXTURES / "cluster.yaml"
BAD = FIXTURES / "bad"
EXIT_TIMEOUT = 15.0


def run_kdns(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m kdns serve --dns-address 127.0.0.1 --dns-port 0 HERMETIC_FLAGS ARGS`, expected to exit by itself."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    environment.update(env or {})
    argv = [sys.executable, "-m", "kdns", "serve", "--dns-address", "127.0.0.1", "--dns-port", "0", *HERMETIC_FLAGS, *args]
    return subprocess.run(
        argv, check=False, cwd=REPO, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=EXIT_TIMEOUT
    )


def log_lines(kdns: Any, count: int, timeout: float = 5.0) -> list[str]:
    """The first `count` lines kdns logged; its stderr is read by a thread, so wait for them (bounded)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.01)):
        if len(kdns.output) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(kdns.output) >= count, kdns.output
    return kdns.output[:count]


BAD_MANIFESTS = [
    # (file, document index, what the message must name)
    ("service-port.yaml", 2, 'Service "web" is invalid: [spec.ports[1].port: Invalid value: 70000'),
    ("pod-ip.yaml", 3, 'Pod "bad" is invalid: [status.podIP: Invalid value: "10.244.0.300"'),
    ("slice-address-type.yaml", 1, 'addressType: Unsupported value: "IPv5"'),
    ("service-name.yaml", 2, 'metadata.name: Invalid value: "Web_Front"'),
    ("cluster-ip-taken.yaml", 2, "spec.clusterIPs[0]: Invalid value"),
    ("node-port-range.yaml", 1, "spec.ports[0].nodePort: Invalid value: 8080"),
    ("apply-order.yaml", 2, "spec.ports[0].targetPort: Invalid value: 70000"),
    ("yaml-syntax.yaml", 2, "YAML syntax error at line 10"),
    ("missing-namespace.yaml", 1, 'namespaces "nowhere" not found'),
]


@pytest.mark.parametrize(("name", "index", "detail"), BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS])
def test_bad_manifest_stops_start_up(name: str, index: int, detail: str) -> None:
    """A bad manifest is exit code 1 and one line naming the file, the document's index and the field path; nothing is served."""
    path = BAD / name
    result = run_kdns("--manifests", str(path))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], f"not one line:\n{result.stderr}"
    assert result.stderr.startswith(f"kdns: error: {path}: document {index}: "), result.stderr
    assert detail in result.stderr, result.stderr
    assert "serving DNS" not in result.stderr and "Traceback" not in result.stderr


def test_bad_manifest_in_a_directory_names_its_file(tmp_path: Path) -> None:
    """In a directory of manifests (read recursively), the error names the bad file, not the
    directory, and nothing is served."""
    (tmp_path / "a-good.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b-bad.yaml").write_text((BAD / "service-port.yaml").read_text())
    result = run_kdns("--manifests", str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"kdns: error: {tmp_path / 'sub' / 'b-bad.yaml'}: document 2: "), result.stderr
    assert "serving DNS" not in result.stderr


def test_bad_environment_variable_is_exit_2() -> None:
    """A KDNS_* variable that does not parse is exit code 2 and one line naming it."""
    result = run_kdns("--manifests", str(CLUSTER), env={"KDNS_TTL": "five"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "kdns: error: KDNS_TTL 'five': not an integer", result.stderr


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_port_in_use_is_exit_1(transport: str) -> None:
    """A DNS port another process holds (UDP or TCP) is exit code 1 and one line naming address, port and transport."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        if transport == "tcp":
            holder.listen()
        port = holder.getsockname()[1]
        result = run_kdns("--manifests", str(CLUSTER), "--dns-port", str(port))
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"kdns: error: cannot listen on 127.0.0.1:{port}/{transport}: Address already in use\n"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("127.0.0.1", "127.0.0.1"),
        pytest.param("::1", "[::1]", marks=pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")),
    ],
)
def test_good_start_logs_the_bound_address(kdns_process: Callable[..., Any], address: str, shown: str) -> None:
    """A good start logs the address and port it really bound (not port 0), then what it loaded, and answers there."""
    kdns = kdns_process("--dns-address", address, manifests=[CLUSTER])
    assert kdns.port != 0 and kdns.address == address
    serving, loaded = log_lines(kdns, 2)
    assert serving == f"kdns: serving DNS on {shown}:{kdns.port} (udp, tcp)\n"
    assert re.match(r"kdns: zones cluster\.local\., in-addr\.arpa\., ip6\.arpa\.; .*; resource version \d+$", loaded)
    for transport in ("udp", "tcp"):
        reply = ask(kdns.address, kdns.port, "web.shop.svc.cluster.local.", "A", transport)
        assert [rdata.to_text() for rrset in reply.answer for rdata in rrset] == ["10.96.0.10"]
    # The name server's glue is the address kdns serves on.
    glue = ask(kdns.address, kdns.port, "ns.dns.cluster.local.", "AAAA" if ":" in address else "A", "udp")
    assert [rdata.to_text() for rrset in glue.answer for rdata in rrset] == [address]


def test_environment_variables(kdns_process: Callable[..., Any], tmp_path: Path) -> None:
    """KDNS_MANIFESTS (several paths), KDNS_ZONE, KDNS_TTL and KDNS_PODS set what kdns serves, and the answers follow."""
    zone = "example.internal."
    blog = tmp_path / "blog.yaml"
    blog.write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: blog}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: posts, namespace: blog}\n"
        "spec: {clusterIP: 10.96.0.50, ports: [{port: 80}]}\n"
    )
    kdns = kdns_process(
        manifests=None,
        env={
            "KDNS_MANIFESTS": f"{CLUSTER}{os.pathsep}{blog}",
            "KDNS_ZONE": "example.internal",
            "KDNS_TTL": "30",
            "KDNS_PODS": "disabled",
        },
    )
    assert log_lines(kdns, 2)[1].startswith(f"kdns: zones {zone}, in-addr.arpa., ip6.arpa.;"), kdns.output
    web = f"web.shop.svc.{zone}"
    check(kdns, [
        Case(web, "A", answer=(f"{web} 30 IN A 10.96.0.10",)),
        Case(
            f"_http._tcp.{web}", "SRV",
            answer=(f"_http._tcp.{web} 30 IN SRV 0 100 80 {web}",),
            additional=(f"{web} 30 IN A 10.96.0.10",),
        ),
        Case(f"posts.blog.svc.{zone}", "A", answer=(f"posts.blog.svc.{zone} 30 IN A 10.96.0.50",)),
        Case(f"nope.shop.svc.{zone}", "A", "NXDOMAIN"),  # SOA TTL and minimum 30
        Case(f"dns-version.{zone}", "TXT", answer=(f'dns-version.{zone} 28800 IN TXT "1.1.0"',)),
        Case(f"10-244-0-30.shop.pod.{zone}", "A", "NXDOMAIN"),  # pods disabled
        Case("10.0.96.10.in-addr.arpa.", "PTR", answer=(f"10.0.96.10.in-addr.arpa. 30 IN PTR {web}",)),
        Case("9.9.9.9.in-addr.arpa.", "PTR", "NXDOMAIN"),
    ], ttl=30, cluster=zone)
    for transport in ("udp", "tcp"):  # the default zone is not served any more
        reply = ask(kdns.address, kdns.port, "web.shop.svc.cluster.local.", "A", transport)
        assert reply.rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_0(kdns_process: Callable[..., Any], signum: int) -> None:
    """SIGTERM and SIGINT stop kdns with exit code 0, without a traceback, and free its port."""
    kdns = kdns_process(manifests=[CLUSTER])
    # UDP: a TCP connection closing just as the signal comes hits the bug of the next test.
    assert ask(kdns.address, kdns.port, "web.shop.svc.cluster.local.", "A", "udp").answer
    assert kdns.stop(signum) == 0, "".join(kdns.output)
    assert "Traceback" not in "".join(kdns.output), "".join(kdns.output)
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((kdns.address, kdns.port))  # the port is free again


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_with_an_open_tcp_connection(kdns_process: Callable[..., Any], signum: int) -> None:
    """Stopping while a client holds a TCP connection open exits 0 and logs no traceback (errors are one line, cli.py)."""
    kdns = kdns_process(manifests=[CLUSTER])
    held = socket.create_connection((kdns.address, kdns.port), timeout=5)
    try:
        # One query answered on it: kdns has accepted the connection and waits for the next.
        wire = dns.message.make_query("web.shop.svc.cluster.local.", "A").to_wire()
        held.sendall(struct.pack("!H", len(wire)) + wire)
        assert dns.message.from_wire(recv_exactly(held, struct.unpack("!H", recv_exactly(held, 2))[0])).answer
        assert kdns.stop(signum) == 0, "".join(kdns.output)
    finally:
        held.close()
    assert "Traceback" not in "".join(kdns.output), "".join(kdns.output)
