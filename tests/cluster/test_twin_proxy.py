"""The twin with `kdns serve --proxy`: my-service's ClusterIP and my-nodeport's NodePort route.

compose.yaml gives kdns KDNS_PROXY=1, a service CIDR inside the cluster network and
NET_ADMIN; in the twin kdns adds the ClusterIPs to its namespace's eth0, and the client
reaches them over the bridge with no route of its own.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from tests.cluster.conftest import COMPOSE, DOCKERFILE
from tests.cluster.netns import Twin
from tests.cluster.test_twin import APPS, client
from tests.cluster.topology import load

CONNECTIONS = 1000
CHI2_CRITICAL = 10.828  # chi-square, 1 degree of freedom, p = 0.001


def chi_square(counts: list[int]) -> float:
    expected = sum(counts) / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)


def spread(twin: Twin, url: str, count: int) -> dict[str, int]:
    return client(twin, "spread", url, str(count), timeout=120)


def test_compose_gives_kdns_the_proxy() -> None:
    """kdns runs with --proxy, ClusterIPs from the cluster network's upper half, NodePorts on its address."""
    topology = load(COMPOSE, DOCKERFILE)
    env = topology["kdns"].environment
    assert env["KDNS_PROXY"] == "1" and env["KDNS_PROXY_INTERFACE"] == "eth0"
    assert env["KDNS_NODE_ADDRESS"] == topology["kdns"].address
    assert ipaddress.ip_network(env["KDNS_SERVICE_CIDR"]).subnet_of(topology.subnet)


@pytest.mark.netns
def test_cluster_ip_and_node_port_route_to_ready_pods(twin: Twin, record_property: Any) -> None:
    """my-service:80 reaches the app on 5000, fairly over both replicas; after a kill only the other; :30007 too."""
    first, second = (twin.topology[name].address for name in APPS)
    try:
        client(twin, "wait", "my-service-headless", "--with", first, "--with", second, "--limit", "30", timeout=40)
    except AssertionError:
        raise AssertionError("\n".join(f"--- {name}\n{twin.log(name)}" for name in ("kdns", *APPS))) from None
    (cluster_ip,) = client(twin, "resolve", "my-service")
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network("172.28.0.128/25")

    counts = spread(twin, "http://my-service/", CONNECTIONS)  # port 80, through the search path
    assert counts.keys() == {"hello from flask-app-1\n", "hello from flask-app-2\n"}, counts
    statistic = chi_square(list(counts.values()))
    record_property("proxy_spread", json.dumps(counts))
    assert statistic < CHI2_CRITICAL, (counts, statistic)

    node = twin.topology["kdns"].address
    assert spread(twin, f"http://{node}:30007/", 20).keys() <= {"hello from flask-app-1\n",
                                                                 "hello from flask-app-2\n"}

    twin.kill("flask-app-1")
    # At once, before the prober notices: a refused connection is tried on the other pod.
    assert spread(twin, "http://my-service/", 100) == {"hello from flask-app-2\n": 100}
    client(twin, "wait", "my-service-headless", "--without", first, "--limit", "15", timeout=25)
    assert spread(twin, "http://my-service/", 200) == {"hello from flask-app-2\n": 200}
    assert spread(twin, f"http://{node}:30007/", 50) == {"hello from flask-app-2\n": 50}
    print(f"\n{CONNECTIONS} connections through {cluster_ip}:80: {counts} (chi-square {statistic:.2f})")
