"""Registry objects for the authority tests, built directly from `objects.py`.

`fixture_objects()` is one small cluster that holds every record family of docs/dns-rules.md and
its negative twins; the builders make more of the same for single tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from kdns.registry.objects import (
    ADDED,
    DELETED,
    MODIFIED,
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    Event,
    Namespace,
    Node,
    NodeAddress,
    ObjectMeta,
    Pod,
    Service,
    ServicePort,
)

SERIAL = 42


def namespace(name: str) -> Namespace:
    return Namespace(ObjectMeta(name))


def port(name: str, number: int, protocol: str = "TCP", node_port: int | None = None) -> ServicePort:
    return ServicePort(name, protocol, number, number, node_port)


def service(
    name: str,
    ns: str,
    *ips: str,
    ports: Sequence[ServicePort] = (),
    type: str = "ClusterIP",
    external: str | None = None,
) -> Service:
    """A Service: ClusterIP with `ips`, headless without, ExternalName with `external`."""
    if external is not None:
        type = "ExternalName"
    return Service(
        ObjectMeta(name, ns),
        type=type,
        cluster_ips=tuple(ips),
        headless=not ips and type != "ExternalName",
        ports=tuple(ports),
        external_name=external,
    )


def endpoint(*addresses: str, hostname: str = "", ready: bool | None = True) -> Endpoint:
    return Endpoint(tuple(addresses), EndpointConditions(ready=ready), hostname=hostname)


def slice_(
    name: str,
    ns: str,
    service_name: str,
    endpoints: Sequence[Endpoint],
    ports: Sequence[EndpointPort] = (),
    address_type: str = "IPv4",
) -> EndpointSlice:
    labels = {SERVICE_NAME_LABEL: service_name} if service_name else {}
    return EndpointSlice(
        ObjectMeta(name, ns, labels=labels),
        address_type=address_type,
        endpoints=tuple(endpoints),
        ports=tuple(ports),
    )


def eport(name: str, number: int | None, protocol: str = "TCP") -> EndpointPort:
    return EndpointPort(name, number, protocol)


def pod(name: str, ns: str, *ips: str, phase: str = "Running", deleting: bool = False) -> Pod:
    meta = ObjectMeta(name, ns, deletion_timestamp="2026-01-01T00:00:00Z" if deleting else None)
    return Pod(meta, pod_ips=tuple(ips), phase=phase)


def node(name: str, *internal_ips: str, external: str = "") -> Node:
    addresses = [NodeAddress("InternalIP", ip) for ip in internal_ips]
    if external:
        addresses.append(NodeAddress("ExternalIP", external))
    return Node(ObjectMeta(name), addresses=tuple(addresses))


def added(objects: Iterable[Any], first_version: int = 1) -> list[Event]:
    """ADDED events for `objects`, numbered from `first_version`."""
    return [Event(ADDED, obj, None, first_version + i) for i, obj in enumerate(objects)]


def modified(obj: Any, old: Any, version: int) -> Event:
    return Event(MODIFIED, obj, old, version)


def deleted(obj: Any, version: int) -> Event:
    return Event(DELETED, obj, obj, version)


HTTP = eport("http", 8080)


def fixture_objects() -> list[Any]:
    """The test cluster (zone cluster.local.). Namespaces testns and default exist;
    ghostns does not, though a Service and a slice claim it."""
    big = [endpoint(f"10.200.{i // 100}.{i % 100 + 1}") for i in range(200)]
    return [
        namespace("testns"),
        namespace("default"),
        # Cluster-IP services.
        service("svc1", "testns", "10.0.0.1", ports=[port("http", 80)]),
        slice_(
            "svc1-abc",
            "testns",
            "svc1",
            [
                endpoint("172.0.0.1", hostname="ep1a"),
                endpoint("172.0.0.2", ready=None),  # unknown counts as ready
                endpoint("172.0.0.3", ready=False),
            ],
            [HTTP],
        ),
        service("svc6", "testns", "fd00::1", ports=[port("http", 80)]),
        service(
            "dual",
            "testns",
            "10.0.0.2",
            "fd00::2",
            ports=[port("http", 80), port("dns", 53, "UDP"), port("dns-tcp", 53)],
        ),
        service("svcempty", "testns", "10.0.0.3", ports=[port("http", 80)]),
        service("unnamed", "testns", "10.0.0.4", ports=[port("", 8080)]),
        # Headless services.
        service("hdls1", "testns", ports=[port("http", 8080)]),
        slice_(
            "hdls1-a",
            "testns",
            "hdls1",
            [
                endpoint("172.0.0.10", hostname="dup-name"),
                endpoint("172.0.0.11", hostname="dup-name"),
                endpoint("172.0.0.12"),
                endpoint("172.0.0.13", ready=False),
            ],
            [HTTP],
        ),
        slice_("hdls1-b", "testns", "hdls1", [endpoint("172.0.0.12")], [HTTP]),  # a duplicate
        slice_(
            "hdls1-v6",
            "testns",
            "hdls1",
            [endpoint("5678:abcd::1"), endpoint("5678:abcd:1::")],
            [HTTP],
            address_type="IPv6",
        ),
        service("hdlsprtls", "testns"),
        slice_("hdlsprtls-a", "testns", "hdlsprtls", [endpoint("172.0.0.20")]),
        service("notready", "testns", ports=[port("http", 8080)]),
        slice_("notready-a", "testns", "notready", [endpoint("172.0.0.30", ready=False)], [HTTP]),
        service("noslice", "testns", ports=[port("http", 8080)]),
        service("big", "testns", ports=[port("http", 8080)]),
        slice_("big-a", "testns", "big", big[:100], [HTTP]),
        slice_("big-b", "testns", "big", big[100:], [HTTP]),
        # ExternalName services.
        service("external", "testns", external="Ext.Interwebs.Test."),
        service("ext-ip", "testns", external="1.2.3.4"),
        service("external-to-service", "testns", external="svc1.testns.svc.cluster.local"),
        service("external-to-missing", "testns", external="nope.testns.svc.cluster.local"),
        service("external-to-external", "testns", external="external.testns.svc.cluster.local"),
        service("loop-a", "testns", external="loop-b.testns.svc.cluster.local"),
        service("loop-b", "testns", external="loop-a.testns.svc.cluster.local"),
        # NodePort and LoadBalancer services, and the nodes.
        service(
            "np",
            "testns",
            "10.0.0.5",
            type="NodePort",
            ports=[port("http", 80, node_port=30080), port("dns", 53, "UDP", node_port=30053)],
        ),
        service("lb", "testns", "10.0.0.6", type="LoadBalancer", ports=[port("https", 443, node_port=30443)]),
        service("np-unnamed", "testns", "10.0.0.8", type="NodePort", ports=[port("", 8080, node_port=30808)]),
        node("node-a", "10.1.0.1"),
        node("node-b", "10.1.0.2", "fd00:1::2"),
        node("node-c.zone.internal", "10.1.0.3"),
        node("node-d", external="203.0.113.4"),  # no InternalIP
        # Pods.
        pod("running", "testns", "10.244.0.1"),
        pod("done", "testns", "10.244.0.2", phase="Succeeded"),
        pod("leaving", "testns", "10.244.0.3", deleting=True),
        pod("v6", "testns", "fd00:244::1"),
        pod("dual-pod", "testns", "10.244.0.4", "fd00:244::4"),
        pod("elsewhere", "default", "10.244.1.1"),
        # Two services claiming one cluster IP; an orphan Service in a missing namespace.
        service("twin-a", "default", "10.0.0.7"),
        service("twin-b", "default", "10.0.0.7"),
        service("ghost", "ghostns", "10.0.0.9", ports=[port("http", 80)]),
        slice_("ghost-a", "ghostns", "ghost", [endpoint("172.0.0.99")], [HTTP]),
        service("kubernetes", "default", "10.96.0.1", ports=[port("https", 443)]),
    ]
