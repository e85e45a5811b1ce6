"""kdns replicas sharing one registry on a real three-member etcd cluster.

Each test starts its own etcd cluster (tests/etcd/conftest.py) and real `kdns serve
--store etcd://...` processes, talks to them over HTTP and DNS, and kills what it
started by PID. Every wait is bounded.
"""

from __future__ import annotations

import concurrent.futures
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdatatype

from tests.conftest import Process
from tests.etcd.conftest import LEASE, EtcdCluster, client, eventually, replica_args

ZONE = "cluster.local"
# A write through one replica reaches another's DNS within this (the target is 50 ms;
# the bound leaves room for a loaded 2-core CI machine).
VISIBLE_WITHIN = 5.0


def service(name: str, *, selector: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": 80}], "selector": selector or {"app": name}, **spec},
    }


def pod(name: str, ip: str, labels: dict[str, str], probe_port: int | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "app"}
    if probe_port is not None:
        container["ports"] = [{"containerPort": probe_port}]
        container["readinessProbe"] = {
            "tcpSocket": {"port": probe_port}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1,
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [container]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


def addresses(replica: Process, name: str) -> set[str]:
    answer = replica.resolve(f"{name}.{ZONE}", "A")
    if answer.rcode() != dns.rcode.NOERROR:
        return set()
    return {item.address for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for item in rrset}


def test_a_write_through_one_replica_is_answered_by_another(
    etcd_cluster: Callable[..., EtcdCluster], kdns_process: Callable[..., Process], tmp_path: Path
) -> None:
    """A service created through A is in B's DNS and API at the same resourceVersion (etcd's
    mod revision); a stale update through B is a 409 Conflict; a delete through B leaves A."""
    cluster = etcd_cluster()
    a = kdns_process(*replica_args(cluster))
    b = kdns_process(*replica_args(cluster))
    api_a, api_b = client(a, tmp_path), client(b, tmp_path)

    created = api_a.request("POST", "/api/v1/namespaces/default/services", service("web"))
    assert created.status == 201, created.body
    ip = created.json["spec"]["clusterIP"]
    version = created.json["metadata"]["resourceVersion"]
    eventually(lambda: addresses(b, "web.default.svc") == {ip}, VISIBLE_WITHIN, "B answers web")
    seen = api_b.request("GET", "/api/v1/namespaces/default/services/web")
    assert seen.status == 200
    assert (seen.json["metadata"]["resourceVersion"], seen.json["metadata"]["uid"]) == (
        version, created.json["metadata"]["uid"])

    changed = service("web")
    changed["spec"]["ports"][0]["port"] = 8080
    assert api_a.request("PUT", "/api/v1/namespaces/default/services/web", changed).status == 200
    stale = service("web")
    stale["metadata"]["resourceVersion"] = version
    refused = api_b.request("PUT", "/api/v1/namespaces/default/services/web", stale)
    assert refused.status == 409, refused.body
    assert refused.json["reason"] == "Conflict"
    assert refused.json["message"] == (
        'Operation cannot be fulfilled on services "web": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    again = api_b.request("POST", "/api/v1/namespaces/default/services", service("web"))
    assert (again.status, again.json["reason"]) == (409, "AlreadyExists")

    assert api_b.request("DELETE", "/api/v1/namespaces/default/services/web").status == 200
    eventually(lambda: addresses(a, "web.default.svc") == set(), VISIBLE_WITHIN, "A forgets web")
    assert api_a.request("GET", "/api/v1/namespaces/default/services/web").status == 404


def test_two_replicas_allocating_at_once_never_share_an_address(
    etcd_cluster: Callable[..., EtcdCluster], kdns_process: Callable[..., Process], tmp_path: Path
) -> None:
    """Services created through A and B at the same moment all get distinct cluster IPs and
    node ports, and both replicas list the same services with the same allocations."""
    cluster = etcd_cluster()
    replicas = [kdns_process(*replica_args(cluster)) for _ in range(2)]
    apis = [client(r, tmp_path) for r in replicas]
    per_replica = 12
    start = threading.Barrier(2)

    def create(number: int) -> list[int]:
        start.wait(10)
        codes = []
        for i in range(per_replica):
            body = service(f"s{number}-{i}", type="NodePort")
            codes.append(apis[number].request("POST", "/api/v1/namespaces/default/services", body).status)
        return codes

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(create, range(2), timeout=60))
    assert results == [[201] * per_replica] * 2

    def allocations(api: Any) -> dict[str, tuple[str, int]]:
        items = api.request("GET", "/api/v1/namespaces/default/services").json["items"]
        return {s["metadata"]["name"]: (s["spec"]["clusterIP"], s["spec"]["ports"][0]["nodePort"]) for s in items}

    expected = eventually(lambda: len(found := allocations(apis[0])) == 2 * per_replica and found, VISIBLE_WITHIN,
                          "A lists every service")
    eventually(lambda: allocations(apis[1]) == expected, VISIBLE_WITHIN, "B lists the same allocations")
    assert len({ip for ip, _ in expected.values()}) == 2 * per_replica
    assert len({port for _, port in expected.values()}) == 2 * per_replica


def test_the_prober_hands_over_when_the_leader_is_killed(
    etcd_cluster: Callable[..., EtcdCluster], kdns_process: Callable[..., Process], tmp_path: Path
) -> None:
    """kill -9 the replica holding the controller lease; a pod whose probe then fails leaves
    the survivor's DNS within the lease's handover time plus the probe's bound."""
    cluster = etcd_cluster()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    a = kdns_process(*replica_args(cluster))
    leader = eventually(lambda: any("controller lease taken" in line for line in a.output), 10, "A leads")
    assert leader
    b = kdns_process(*replica_args(cluster))
    api = client(b, tmp_path)
    assert api.request("POST", "/api/v1/namespaces/default/services", service("web", clusterIP="None")).status == 201
    for name, ip in (("web-0", "127.0.0.1"), ("web-1", "127.0.0.2")):
        body = pod(name, ip, {"app": "web"}, probe_port=port if name == "web-0" else None)
        assert api.request("POST", "/api/v1/namespaces/default/pods", body).status == 201
    eventually(lambda: addresses(b, "web.default.svc") == {"127.0.0.1", "127.0.0.2"}, VISIBLE_WITHIN,
               "both pods are ready in B's DNS")

    a.stop(signal.SIGKILL)
    killed = time.monotonic()
    listener.close()  # web-0 dies: its probe fails from now on
    # Handover: the lease expires (LEASE), B looks every LEASE / 10; then one failed
    # probe (period 1 s, timeout 1 s, failureThreshold 1); slack for a loaded machine.
    bound = LEASE * 1.1 + 2 + 4
    eventually(lambda: addresses(b, "web.default.svc") == {"127.0.0.2"}, bound, "web-0 leaves B's DNS")
    took = time.monotonic() - killed
    assert any("controller lease taken" in line for line in b.output), "".join(b.output)
    assert took < bound


def test_every_acknowledged_write_survives_an_etcd_member_killed_under_load(
    etcd_cluster: Callable[..., EtcdCluster], kdns_process: Callable[..., Process], tmp_path: Path
) -> None:
    """200 pod creations through two replicas; one etcd member is killed with SIGKILL after
    50: every creation acknowledged with 201 is afterwards on both replicas."""
    cluster = etcd_cluster()
    replicas = [kdns_process(*replica_args(cluster)) for _ in range(2)]
    apis = [client(r, tmp_path) for r in replicas]
    acknowledged, refused = [], []
    for number in range(200):
        if number == 50:
            cluster.kill(0)
        body = pod(f"p{number}", f"127.0.1.{number % 250 + 1}", {"app": "load"})
        reply = apis[number % 2].request("POST", "/api/v1/namespaces/default/pods", body)
        (acknowledged if reply.status == 201 else refused).append((number, reply.status))
    # A write in flight when the member died may be committed and still unanswered (it is
    # then AlreadyExists when retried), as with any etcd client; none may be lost.
    assert all(status in (409, 503) for _, status in refused), refused
    assert len(acknowledged) >= 150, refused
    wanted = {f"p{number}" for number, _ in acknowledged}

    def names(api: Any) -> set[str]:
        return {p["metadata"]["name"] for p in api.request("GET", "/api/v1/namespaces/default/pods").json["items"]}

    for api in apis:
        eventually(lambda api=api: wanted <= names(api), VISIBLE_WITHIN, "every acknowledged pod on the replica")


def test_dns_keeps_answering_with_etcd_down_and_catches_up_when_it_returns(
    etcd_cluster: Callable[..., EtcdCluster], kdns_process: Callable[..., Process], tmp_path: Path
) -> None:
    """With every etcd member stopped: both replicas answer DNS from what they have,
    refuse writes with a 503 ServiceUnavailable and say not ready; when etcd is back they
    are ready again without a restart, and a write through one is answered by the other."""
    cluster = etcd_cluster()
    a = kdns_process(*replica_args(cluster))
    b = kdns_process(*replica_args(cluster))
    api_a, api_b = client(a, tmp_path), client(b, tmp_path)
    created = api_a.request("POST", "/api/v1/namespaces/default/services", service("web"))
    ip = created.json["spec"]["clusterIP"]
    eventually(lambda: addresses(b, "web.default.svc") == {ip}, VISIBLE_WITHIN, "B answers web")

    for index in range(3):
        cluster.kill(index)
    for replica, api in ((a, api_a), (b, api_b)):
        eventually(lambda api=api: api.request("GET", "/readyz").status == 503, 10, "not ready")
        assert addresses(replica, "web.default.svc") == {ip}
        refused = api.request("POST", "/api/v1/namespaces/default/services", service("other"))
        assert (refused.status, refused.json["reason"]) == (503, "ServiceUnavailable")
        assert refused.json["message"].startswith(
            "the registry's etcd is unreachable, writes are refused until it is back: etcd is unreachable (")
        assert api.request("GET", "/api/v1/namespaces/default/services/web").status == 200

    for index in range(3):
        cluster.start(index)
    cluster.wait_healthy()
    for api in (api_a, api_b):
        eventually(lambda api=api: api.request("GET", "/readyz").status == 200, 15, "ready again")
    later = api_b.request("POST", "/api/v1/namespaces/default/services", service("later"))
    assert later.status == 201, later.body
    eventually(lambda: addresses(a, "later.default.svc") == {later.json["spec"]["clusterIP"]}, VISIBLE_WITHIN,
               "A answers what B wrote after the outage")


def test_a_replica_behind_a_compaction_lists_again(
    etcd_cluster: Callable[..., EtcdCluster], kdns_process: Callable[..., Process], tmp_path: Path
) -> None:
    """B follows one member; while that member is down, A creates and deletes services and
    etcd compacts its history. When the member returns B cannot resume its watch (the
    revision is compacted): it lists again and serves exactly what etcd holds, and an API
    watch from B's old resourceVersion gets 410 Gone."""
    cluster = etcd_cluster()
    a = kdns_process(*replica_args(cluster))
    api_a = client(a, tmp_path)
    assert api_a.request("POST", "/api/v1/namespaces/default/services", service("gone")).status == 201
    only_last = ("--store", f"etcd://127.0.0.1:{cluster.members[2].client_port}")
    b = kdns_process(*replica_args(cluster), *only_last)
    api_b = client(b, tmp_path)
    eventually(lambda: addresses(b, "gone.default.svc"), VISIBLE_WITHIN, "B answers gone")
    old_version = api_b.request("GET", "/api/v1/namespaces/default/services").json["metadata"]["resourceVersion"]

    cluster.kill(2)
    kept = api_a.request("POST", "/api/v1/namespaces/default/services", service("kept"))
    assert kept.status == 201
    assert api_a.request("DELETE", "/api/v1/namespaces/default/services/gone").status == 200
    cluster.compact()
    cluster.start(2)
    cluster.wait_healthy(members=range(2, 3))

    eventually(lambda: addresses(b, "kept.default.svc") == {kept.json["spec"]["clusterIP"]}, 15, "B answers kept")
    assert addresses(b, "gone.default.svc") == set()
    assert any("compacted" in line for line in b.output), "".join(b.output)
    watch = api_b.request("GET", f"/api/v1/namespaces/default/services?watch=1&resourceVersion={old_version}"
                          "&timeoutSeconds=1")
    assert b'"code":410' in watch.body.replace(b" ", b"")
