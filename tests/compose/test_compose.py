"""compose.yaml's cluster in real containers, driven from outside as a person would.

`compose up`, and every container healthy within a bound; from the client container, what
the README's compose section shows (its resolv.conf, getent, dig +search, SRV, curl through
the ClusterIP and the NodePort, the headless service's records); a replica stopped leaves DNS
at once, one killed with SIGKILL within the README's 3 s, and both come back when started;
`compose down` leaves nothing behind. The engine's own record says when a container died;
DNS is watched from the host through kdns's published port (127.0.0.1:10053).

It needs a running engine: tests/compose/run.sh starts one (podman) and sets KDNS_COMPOSE.
With Docker: `KDNS_COMPOSE=docker python -m pytest tests/compose`. Without KDNS_COMPOSE
it skips, so the ordinary `python -m pytest` runs without containers.

The tests run in file order on one cluster: each leaves it as it found it, but the last
takes it down.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.compose.engine import Engine, compose, health, timestamp

ENGINE = os.environ.get("KDNS_COMPOSE", "")
pytestmark = pytest.mark.skipif(
    ENGINE not in ("podman", "docker"),
    reason="needs a container engine: tests/compose/run.sh starts one and sets KDNS_COMPOSE=podman "
    "(with Docker: KDNS_COMPOSE=docker)",
)

PROJECT = os.environ.get("COMPOSE_PROJECT_NAME", "kdns-compose-test")
SERVICES = ("kdns", "flask-app-1", "flask-app-2", "client")
HEALTH_CHECKED = ("kdns", "flask-app-1", "flask-app-2")  # the client has nothing to check
KDNS = ("127.0.0.1", 10053)  # compose.yaml: kdns's DNS port, published on the host's loopback
SERVICE_CIDR = ipaddress.ip_network("172.28.0.128/25")  # compose.yaml: KDNS_SERVICE_CIDR
REPLICAS = {"flask-app-1": "172.28.0.11", "flask-app-2": "172.28.0.12"}
HEADLESS = "my-service-headless.default.svc.cluster.local"
NODE = "node-1.node.cluster.local"  # examples/flask-app/node.yaml: kdns's container, 172.28.0.2
# Measured on two busy cores (README): 13.8 s from `up` to every container healthy, at most
# 18.1 s in 6 runs; four times that leaves room for a slower machine.
HEALTHY_WITHIN = 75.0
# The README's bound for a replica killed with SIGKILL to leave DNS: compose.yaml's probe
# (periodSeconds 1, failureThreshold 2) allows 2 x 1 s + 0.5 s (kdns/prober.py), and a busy
# machine adds its delays.
KILLED_OUT_WITHIN = 3.0
STOP_TIMEOUT = 10  # compose's default: SIGKILL after 10 s of SIGTERM
POLL = 0.02


@dataclass
class Cluster:
    engine: Engine
    up_seconds: float
    volumes_before: list[str]
    figures: dict[str, float] = field(default_factory=dict)

    def client(self, *command: str) -> str:
        """Run a command in the client container (`compose exec`); its output."""
        return compose(PROJECT, "exec", "-T", "client", *command, timeout=60).stdout


def headless_addresses() -> set[str] | None:
    """my-service-headless's A records from the host, through the published port; None when
    kdns does not answer."""
    query = dns.message.make_query(HEADLESS, "A")
    try:
        reply = dns.query.udp(query, KDNS[0], port=KDNS[1], timeout=1)
    except (dns.exception.Timeout, OSError):
        return None
    if reply.rcode() == dns.rcode.NXDOMAIN:
        return set()
    return {item.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for item in rrset}


def wait_for(condition: Any, limit: float, what: str) -> float:
    """Poll `condition()` every 20 ms until it is true (at most `limit` s); the time.time() it first was."""
    deadline = time.monotonic() + limit
    for _ in range(int(limit / POLL) + 1):
        if condition():
            return time.time()
        if time.monotonic() > deadline:
            break
        time.sleep(POLL)
    raise AssertionError(f"not within {limit} s: {what}")


def states(engine: Engine) -> dict[str, str]:
    return {service: health(engine.container(service)) for service in SERVICES}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    engine = Engine(PROJECT)
    volumes_before = engine.volumes()
    started = time.monotonic()
    try:
        compose(PROJECT, "up", "-d")
        wanted = {service: "healthy" if service in HEALTH_CHECKED else "running" for service in SERVICES}
        try:
            wait_for(lambda: states(engine) == wanted, HEALTHY_WITHIN, "every container healthy")
        except AssertionError:
            raise AssertionError(f"{states(engine)}\n{compose(PROJECT, 'logs', '--no-color').stdout}") from None
        built = Cluster(engine, time.monotonic() - started, volumes_before)
        # Healthy is not yet Ready: the prober takes a replica in once its probe passes.
        wait_for(lambda: headless_addresses() == set(REPLICAS.values()), 30, "both replicas in DNS")
        yield built
    finally:
        if engine.containers():
            compose(PROJECT, "down", "--volumes", "--remove-orphans", "--timeout", "5")


def test_up_makes_every_container_healthy(cluster: Cluster, record_property: Any) -> None:
    """kdns and both app pods report healthy (their own checks), the client runs."""
    record_property("up_to_healthy_s", round(cluster.up_seconds, 2))
    print(f"\ncompose up to every container healthy: {cluster.up_seconds:.1f} s")
    assert cluster.up_seconds <= HEALTHY_WITHIN


def test_kdns_runs_as_the_user_and_group_the_dockerfile_names(cluster: Cluster) -> None:
    """USER 10001:10001 is the kdns user and group, and kdns binds port 53 as that user."""
    identity = compose(PROJECT, "exec", "-T", "kdns", "id").stdout.split()
    assert identity == ["uid=10001(kdns)", "gid=10001(kdns)", "groups=10001(kdns)"]


def test_the_client_resolves_like_a_pod(cluster: Cluster) -> None:
    """Its resolv.conf: kdns, the pod search path, ndots:5; glibc finds my-service by its short name."""
    lines = [line for line in cluster.client("cat", "/etc/resolv.conf").splitlines() if line.strip()]
    servers = [line.split()[1] for line in lines if line.startswith("nameserver")]
    # Docker's embedded DNS server (127.0.0.11) forwards to the `dns` servers, and says so.
    assert servers == ["172.28.0.2"] or (servers == ["127.0.0.11"] and any(
        line.startswith("# ExtServers:") and "172.28.0.2" in line for line in lines)), lines
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in lines
    assert "options ndots:5" in lines

    address, *names = cluster.client("getent", "hosts", "my-service").split()
    assert ipaddress.ip_address(address) in SERVICE_CIDR
    assert names == ["my-service.default.svc.cluster.local"]
    assert cluster.client("dig", "+search", "+short", "my-service").split() == [address]


def test_srv_names_the_port_and_the_nodeport(cluster: Cluster) -> None:
    """SRV for my-service's named port; kdns's NodePort SRV names the node and 30007."""
    srv = cluster.client("dig", "+short", "SRV", "_http._tcp.my-service.default.svc.cluster.local").split()
    assert srv == ["0", "100", "80", "my-service.default.svc.cluster.local."]
    nodeport = cluster.client("dig", "+short", "SRV", "_http._tcp.my-nodeport.default.nodeport.cluster.local")
    assert nodeport.split() == ["0", "100", "30007", f"{NODE}."]
    assert cluster.client("dig", "+short", NODE).split() == ["172.28.0.2"]


def test_curl_reaches_both_replicas_through_the_cluster_ip_and_the_node_port(cluster: Cluster) -> None:
    """kdns's proxy spreads my-service's connections over both replicas, and so does the node's 30007."""
    loop = 'for i in $(seq 20); do curl -s --max-time 3 "$0"; done'
    for url in ("http://my-service/", f"http://{NODE}:30007/", "http://172.28.0.2:30007/"):
        bodies = cluster.client("sh", "-c", loop, url).splitlines()
        assert set(bodies) == {f"hello from {name}" for name in REPLICAS}, (url, bodies)


def test_the_headless_service_answers_per_pod(cluster: Cluster) -> None:
    """One A record per ready pod, one SRV record per pod, whose target names that pod alone."""
    assert sorted(cluster.client("dig", "+search", "+short", "my-service-headless").split()) == sorted(
        REPLICAS.values())
    srv = cluster.client("dig", "+short", "SRV", f"_http._tcp.{HEADLESS}").splitlines()
    targets = sorted(line.split()[3] for line in srv)
    assert [cluster.client("dig", "+short", target).split() for target in targets] == [
        [address] for address in sorted(REPLICAS.values())]
    for name, address in REPLICAS.items():
        assert cluster.client("curl", "-s", "--max-time", "3", f"http://{address}:5000/") == f"hello from {name}\n"


def test_a_stopped_replica_leaves_dns_at_once(cluster: Cluster, record_property: Any) -> None:
    """`compose stop` deregisters the pod before the app stops: out of DNS when stop returns."""
    compose(PROJECT, "stop", "flask-app-1")
    assert headless_addresses() == {REPLICAS["flask-app-2"]}
    started = time.time()
    compose(PROJECT, "start", "flask-app-1")
    back = wait_for(lambda: headless_addresses() == set(REPLICAS.values()), 30, "flask-app-1 back in DNS")
    record_property("stopped_replica_back_s", round(back - started, 2))


def test_a_killed_replica_leaves_dns_within_the_bound_and_comes_back(cluster: Cluster,
                                                                    record_property: Any) -> None:
    """SIGKILL: no goodbye; kdns's probes take the replica out within 3 s of its death."""
    compose(PROJECT, "kill", "-s", "SIGKILL", "flask-app-1")
    out = wait_for(lambda: headless_addresses() == {REPLICAS["flask-app-2"]}, 30, "flask-app-1 out of DNS")
    state = cluster.engine.container("flask-app-1")["State"]
    assert (state["Status"], state["Running"]) == ("exited", False), state
    died = timestamp(state["FinishedAt"])  # the engine's record of the process's end
    killed_out = out - died
    started = time.time()
    compose(PROJECT, "start", "flask-app-1")
    back = wait_for(lambda: headless_addresses() == set(REPLICAS.values()), 30, "flask-app-1 back in DNS")
    assert cluster.client("curl", "-s", "--max-time", "3", "http://172.28.0.11:5000/") == "hello from flask-app-1\n"

    record_property("killed_replica_out_of_dns_s", round(killed_out, 3))
    record_property("killed_replica_back_s", round(back - started, 2))
    print(f"\nkilled replica out of DNS {killed_out:.3f} s after it died; back {back - started:.1f} s after start")
    assert 0 < killed_out <= KILLED_OUT_WITHIN


def test_the_client_stops_at_sigterm_and_down_leaves_nothing_behind(cluster: Cluster,
                                                                     record_property: Any) -> None:
    """The client's `sleep` runs under an init, which stops it at SIGTERM rather than at the stop
    timeout; `compose down` leaves no container, network or volume of the project, nor an
    anonymous volume (kdns's state lived in its container)."""
    stopped = cluster.engine.stop("client", STOP_TIMEOUT)
    record_property("client_stop_s", round(stopped, 2))
    assert stopped < STOP_TIMEOUT / 2, f"the client took {stopped:.1f} s to stop: it waited out the stop timeout"
    started = time.monotonic()
    compose(PROJECT, "down")
    record_property("down_s", round(time.monotonic() - started, 2))
    assert cluster.engine.containers() == []
    assert cluster.engine.networks() == []
    assert cluster.engine.volumes() == cluster.volumes_before
    assert headless_addresses() is None  # nothing answers on the published port any more
