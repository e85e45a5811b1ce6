"""The EndpointSlice controller end to end: registry writes show in DNS on the very next query.

Each test is a list of steps: a write to the running server's store (through
`kdns_server.write`, on its loop thread, as the API does), then a table of questions
asked at once over UDP and TCP, with no sleep and no retry in between. The serial the
negative answers carry is the store's resource version right after the write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tests.e2e.dnscheck import Case, check

Z = "cluster.local."
WEB = f"web.shop.svc.{Z}"

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
HEADLESS = f"""{NAMESPACE}---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 8080}}]
"""


FRONT = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "front", "namespace": "shop"},
    "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
}


def pod(
    name: str,
    ip: str,
    app: str = "web",
    *,
    ready: bool = True,
    deleting: bool = False,
    hostname: str | None = None,
) -> dict[str, Any]:
    """A running Pod manifest in namespace shop."""
    metadata: dict[str, Any] = {"name": name, "namespace": "shop", "labels": {"app": app}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "web:1"}]}
    if hostname:
        spec.update(hostname=hostname, subdomain="web")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec,
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def service(name: str, selector: dict[str, str] | None, **spec: Any) -> dict[str, Any]:
    """A headless Service manifest in namespace shop with one named port."""
    body: dict[str, Any] = {"clusterIP": "None", "ports": [{"name": "http", "port": 8080}], **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"}, "spec": body}


def apply(*docs: dict[str, Any]) -> Callable[[Any], int]:
    """A write: apply `docs` in one transaction; returns the new resource version."""

    def write(store: Any) -> int:
        with store.transaction() as txn:
            for doc in docs:
                txn.apply(doc)
        return store.resource_version

    return write


def delete(kind: str, namespace: str, name: str) -> Callable[[Any], int]:
    """A write: delete one object; returns the new resource version."""

    def write(store: Any) -> int:
        with store.transaction() as txn:
            txn.delete(kind, namespace, name)
        return store.resource_version

    return write


def addresses(name: str, *ips: str) -> Case:
    """The A answer of `name`: these addresses, or NXDOMAIN when there are none."""
    if not ips:
        return Case(name, "A", "NXDOMAIN")
    return Case(name, "A", answer=tuple(f"{name} 5 IN A {ip}" for ip in ips))


def ptr(ip: str, target: str | None) -> Case:
    name = ".".join(reversed(ip.split("."))) + ".in-addr.arpa."
    if target is None:
        return Case(name, "PTR", "NXDOMAIN")
    return Case(name, "PTR", answer=(f"{name} 5 IN PTR {target}",))


def run(server: Any, steps: Sequence[tuple[Callable[[Any], int], Sequence[Case]]]) -> None:
    """Each step's write, then at once its table, over UDP and TCP."""
    for number, (write, cases) in enumerate(steps):
        serial = server.write(write)
        try:
            check(server, cases, serial=serial)
        except AssertionError as exc:
            raise AssertionError(f"step {number}: {exc}") from None


def test_pods_come_and_go(kdns_server: Callable[..., Any]) -> None:
    """Pods appearing, turning ready, leaving and rejoining the selector, terminating and being deleted show at once."""
    server = kdns_server(HEADLESS)
    web1, web2 = f"web-1.{WEB}", f"10-244-0-2.{WEB}"
    run(server, [
        (apply(), [addresses(WEB), Case(f"web.shop.svc.{Z}", "SRV", "NXDOMAIN")]),
        (apply(pod("web-1", "10.244.0.1", hostname="web-1")), [
            addresses(WEB, "10.244.0.1"),
            addresses(web1, "10.244.0.1"),
            ptr("10.244.0.1", web1),
        ]),
        (apply(pod("web-2", "10.244.0.2", ready=False)), [
            addresses(WEB, "10.244.0.1"),
            addresses(web2),
            ptr("10.244.0.2", None),
        ]),
        (apply(pod("web-2", "10.244.0.2")), [  # its Ready condition turns True
            addresses(WEB, "10.244.0.1", "10.244.0.2"),
            addresses(web2, "10.244.0.2"),
            ptr("10.244.0.2", web2),
            Case(
                f"_http._tcp.{WEB}", "SRV",
                answer=(f"_http._tcp.{WEB} 5 IN SRV 0 50 8080 {web1}", f"_http._tcp.{WEB} 5 IN SRV 0 50 8080 {web2}"),
                additional=(f"{web1} 5 IN A 10.244.0.1", f"{web2} 5 IN A 10.244.0.2"),
            ),
        ]),
        (apply(pod("web-1", "10.244.0.1", app="other", hostname="web-1")), [  # leaves the selector
            addresses(WEB, "10.244.0.2"),
            addresses(web1),
            ptr("10.244.0.1", None),
        ]),
        (apply(pod("web-1", "10.244.0.1", hostname="web-1")), [  # joins again
            addresses(WEB, "10.244.0.1", "10.244.0.2"),
            addresses(web1, "10.244.0.1"),
        ]),
        (apply(pod("web-2", "10.244.0.2", ready=False)), [  # Ready turns False
            addresses(WEB, "10.244.0.1"),
            addresses(web2),
        ]),
        (apply(pod("web-2", "10.244.0.2")), [
            addresses(WEB, "10.244.0.1", "10.244.0.2"),
            addresses(f"10-244-0-2.shop.pod.{Z}", "10.244.0.2"),  # a verified pod name
        ]),
        (apply(pod("web-2", "10.244.0.2", deleting=True)), [  # terminating: not ready
            addresses(WEB, "10.244.0.1"),
            addresses(web2),
            ptr("10.244.0.2", None),
            addresses(f"10-244-0-2.shop.pod.{Z}"),  # verified mode ignores terminating pods
        ]),
        (delete("Pod", "shop", "web-2"), [addresses(WEB, "10.244.0.1"), addresses(web2)]),
        (delete("Pod", "shop", "web-1"), [addresses(WEB), addresses(web1), ptr("10.244.0.1", None)]),
    ])


def test_selector_change(kdns_server: Callable[..., Any]) -> None:
    """Changing a service's selector swaps its endpoints on the next query."""
    server = kdns_server(HEADLESS)
    run(server, [
        (apply(pod("a", "10.244.0.11", app="a"), pod("b", "10.244.0.12", app="b")), [addresses(WEB)]),
        (apply(service("web", {"app": "a"})), [addresses(WEB, "10.244.0.11"), ptr("10.244.0.12", None)]),
        (apply(service("web", {"app": "b"})), [
            addresses(WEB, "10.244.0.12"),
            addresses(f"10-244-0-11.{WEB}"),
            ptr("10.244.0.11", None),
            ptr("10.244.0.12", f"10-244-0-12.{WEB}"),
        ]),
        (apply(service("web", {"app": "nobody"})), [addresses(WEB), ptr("10.244.0.12", None)]),
    ])


def test_publish_not_ready_addresses(kdns_server: Callable[..., Any]) -> None:
    """publishNotReadyAddresses makes not-ready pods count; turning it off hides them again."""
    server = kdns_server(HEADLESS)
    run(server, [
        (apply(pod("slow", "10.244.0.21", ready=False)), [addresses(WEB)]),
        (apply(service("web", {"app": "web"}, publishNotReadyAddresses=True)), [
            addresses(WEB, "10.244.0.21"),
            addresses(f"10-244-0-21.{WEB}", "10.244.0.21"),
        ]),
        (apply(service("web", {"app": "web"})), [addresses(WEB), addresses(f"10-244-0-21.{WEB}")]),
    ])


def test_namespace_deletion(kdns_server: Callable[..., Any]) -> None:
    """Deleting a namespace makes every name in it NXDOMAIN at once, and a new namespace of that name starts empty."""
    server = kdns_server(HEADLESS, pods="verified")
    server.write(apply(FRONT))
    front = f"front.shop.svc.{Z}"
    run(server, [
        (apply(pod("web-1", "10.244.0.1")), [
            addresses(WEB, "10.244.0.1"),
            addresses(front, "10.96.0.20"),
            Case(f"shop.svc.{Z}", "A"),
            addresses(f"10-244-0-1.shop.pod.{Z}", "10.244.0.1"),
            ptr("10.96.0.20", front),
        ]),
        (delete("Namespace", "", "shop"), [
            addresses(WEB),
            addresses(front),
            Case(f"shop.svc.{Z}", "A", "NXDOMAIN"),
            Case(f"_http._tcp.{front}", "SRV", "NXDOMAIN"),
            addresses(f"10-244-0-1.shop.pod.{Z}"),
            ptr("10.96.0.20", None),
            ptr("10.244.0.1", None),
        ]),
        (apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}), [
            Case(f"shop.svc.{Z}", "A"),
            addresses(WEB),
            addresses(front),
        ]),
        # The deleted service gave its cluster IP back: a new one may take it.
        (apply(FRONT), [addresses(front, "10.96.0.20"), ptr("10.96.0.20", front)]),
    ])


def test_hand_written_endpoint_slice(kdns_server: Callable[..., Any]) -> None:
    """A selector-less service's hand-written EndpointSlice is served, survives unrelated writes, and follows its edits."""
    server = kdns_server(NAMESPACE)
    db = f"db.shop.svc.{Z}"

    def endpoint_slice(*ips: str) -> dict[str, Any]:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "db-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "protocol": "TCP", "port": 5432}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        }

    run(server, [
        (apply(service("db", None), endpoint_slice("192.0.2.10")), [
            addresses(db, "192.0.2.10"),
            Case(
                f"_http._tcp.{db}", "SRV",
                answer=(f"_http._tcp.{db} 5 IN SRV 0 100 5432 192-0-2-10.{db}",),
                additional=(f"192-0-2-10.{db} 5 IN A 192.0.2.10",),
            ),
            ptr("192.0.2.10", f"192-0-2-10.{db}"),
        ]),
        # The controller leaves it alone: the service changes, pods come and go.
        (apply(service("db", None, publishNotReadyAddresses=True)), [addresses(db, "192.0.2.10")]),
        (apply(pod("db-0", "10.244.0.31", app="db"), pod("other", "10.244.0.32", app="web")), [
            addresses(db, "192.0.2.10"),
        ]),
        (delete("Pod", "shop", "db-0"), [addresses(db, "192.0.2.10")]),
        (apply(endpoint_slice("192.0.2.10", "192.0.2.11")), [addresses(db, "192.0.2.10", "192.0.2.11")]),
        (delete("EndpointSlice", "shop", "db-1"), [addresses(db), ptr("192.0.2.10", None)]),
    ])


@pytest.mark.parametrize("order", ["service first", "slice first"])
def test_hand_written_slice_in_one_batch(kdns_server: Callable[..., Any], order: str) -> None:
    """A selector-less service and its slice written in one transaction are served, whichever comes first."""
    server = kdns_server(NAMESPACE)
    slice_doc = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "cache-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "cache"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.20"]}],  # ready absent: counts as ready
    }
    docs = [service("cache", None), slice_doc]
    if order == "slice first":
        docs.reverse()
    run(server, [(apply(*docs), [addresses(f"cache.shop.svc.{Z}", "192.0.2.20")])])


def test_nodes_join_and_leave(kdns_server: Callable[..., Any]) -> None:
    """A NodePort's SRV under nodeport.<zone> lists the nodes there are right now; with none it is NODATA."""
    server = kdns_server(NAMESPACE)
    srv = f"_http._tcp.shop-front.shop.nodeport.{Z}"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}
    front = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop-front", "namespace": "shop"},
             "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}
    run(server, [
        (apply(front), [Case(srv, "SRV"), Case(f"node-a.node.{Z}", "A", "NXDOMAIN")]),
        (apply(node), [
            Case(srv, "SRV", answer=(f"{srv} 5 IN SRV 0 100 30080 node-a.node.{Z}",),
                 additional=(f"node-a.node.{Z} 5 IN A 10.0.0.1",)),
            Case(f"node-a.node.{Z}", "A", answer=(f"node-a.node.{Z} 5 IN A 10.0.0.1",)),
        ]),
        (delete("Node", "", "node-a"), [Case(srv, "SRV"), Case(f"node-a.node.{Z}", "A", "NXDOMAIN")]),
    ])


def test_pod_changes_its_address_hostname_and_phase(kdns_server: Callable[..., Any]) -> None:
    """A pod's new IP, new hostname and finished phase replace its old records on the next query."""
    server = kdns_server(HEADLESS)
    run(server, [
        (apply(pod("web-1", "10.244.0.1", hostname="a")), [
            addresses(f"a.{WEB}", "10.244.0.1"),
            ptr("10.244.0.1", f"a.{WEB}"),
        ]),
        (apply(pod("web-1", "10.244.0.5", hostname="a")), [  # re-scheduled with a new IP
            addresses(WEB, "10.244.0.5"),
            addresses(f"a.{WEB}", "10.244.0.5"),
            ptr("10.244.0.1", None),
            ptr("10.244.0.5", f"a.{WEB}"),
        ]),
        (apply(pod("web-1", "10.244.0.5", hostname="b")), [
            addresses(f"a.{WEB}"),
            addresses(f"b.{WEB}", "10.244.0.5"),
            ptr("10.244.0.5", f"b.{WEB}"),
        ]),
        (apply({**pod("web-1", "10.244.0.5", hostname="b"), "status": {"phase": "Succeeded", "podIP": "10.244.0.5"}}), [
            addresses(WEB),
            addresses(f"b.{WEB}"),
            ptr("10.244.0.5", None),
            addresses(f"10-244-0-5.shop.pod.{Z}"),
        ]),
    ])


def test_service_ports_change(kdns_server: Callable[..., Any]) -> None:
    """Renaming, renumbering or removing a service's port changes its SRV records on the next query."""
    server = kdns_server(HEADLESS)
    target = f"10-244-0-1.{WEB}"
    glue = (f"{target} 5 IN A 10.244.0.1",)
    run(server, [
        (apply(pod("web-1", "10.244.0.1")), [
            Case(f"_http._tcp.{WEB}", "SRV", answer=(f"_http._tcp.{WEB} 5 IN SRV 0 100 8080 {target}",), additional=glue),
        ]),
        (apply(service("web", {"app": "web"}, ports=[{"name": "admin", "port": 9090}])), [
            Case(f"_http._tcp.{WEB}", "SRV", "NXDOMAIN"),
            Case(f"_admin._tcp.{WEB}", "SRV", answer=(f"_admin._tcp.{WEB} 5 IN SRV 0 100 9090 {target}",), additional=glue),
        ]),
        (apply(service("web", {"app": "web"}, ports=[{"name": "admin", "port": 9091, "protocol": "UDP"}])), [
            Case(f"_admin._tcp.{WEB}", "SRV", "NXDOMAIN"),
            Case(f"_admin._udp.{WEB}", "SRV", answer=(f"_admin._udp.{WEB} 5 IN SRV 0 100 9091 {target}",), additional=glue),
        ]),
        (apply(service("web", {"app": "web"}, ports=[])), [  # portless: the name stays, SRV goes
            addresses(WEB, "10.244.0.1"),
            Case(WEB, "SRV"),
            Case(f"_admin._udp.{WEB}", "SRV", "NXDOMAIN"),
        ]),
    ])


def test_two_services_select_one_pod(kdns_server: Callable[..., Any]) -> None:
    """A pod selected by two headless services is in both, its PTR names both, and leaving one keeps the other."""
    server = kdns_server(HEADLESS)
    api = f"api.shop.svc.{Z}"
    run(server, [
        (apply(service("api", {"tier": "back"}), {**pod("web-1", "10.244.0.1"),
                                                  "metadata": {"name": "web-1", "namespace": "shop",
                                                               "labels": {"app": "web", "tier": "back"}}}), [
            addresses(WEB, "10.244.0.1"),
            addresses(api, "10.244.0.1"),
            Case("1.0.244.10.in-addr.arpa.", "PTR", answer=(
                f"1.0.244.10.in-addr.arpa. 5 IN PTR 10-244-0-1.{api}",
                f"1.0.244.10.in-addr.arpa. 5 IN PTR 10-244-0-1.{WEB}",
            )),
        ]),
        (delete("Service", "shop", "api"), [
            addresses(api),
            addresses(WEB, "10.244.0.1"),
            ptr("10.244.0.1", f"10-244-0-1.{WEB}"),
        ]),
    ])
