"""ClusterIndex: the tables the answers read, filled by rebuild and kept by apply."""

from __future__ import annotations

import random
from ipaddress import ip_address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdns.authority import index as index_module
from kdns.authority.index import ClusterIndex, PtrTarget, ServiceRecord
from kdns.authority.names import IPAddress, dashed
from kdns.config import Settings
from kdns.reuse import (
    NODES,
    REVERSE_PREFIXES,
    AddressScope,
    EndpointScope,
    EndpointsScope,
    NamespaceScope,
    PodScope,
    ServiceScope,
)
from tests.authority import cluster as k

SETTINGS = Settings()


def fresh(*objects: object, version: int = 7) -> ClusterIndex:
    index = ClusterIndex(SETTINGS)
    index.rebuild(objects, version)
    return index


def addresses(*texts: str) -> tuple[IPAddress, ...]:
    return tuple(ip_address(t) for t in texts)


def service(index: ClusterIndex, namespace: str, name: str) -> ServiceRecord:
    record = index.service(namespace, name)
    assert record is not None
    return record


def test_rebuild_sets_serial_and_tells_anything_changed() -> None:
    """rebuild takes the store's version as serial and tells its listeners anything may have changed."""
    index = ClusterIndex(SETTINGS)
    heard: list[object] = []
    index.on_change(heard.append)
    assert index.serial == 0
    index.rebuild([k.namespace("a")], 12)
    assert (index.serial, heard) == (12, [None])


def test_rebuild_forgets_what_was_there() -> None:
    """A second rebuild starts from nothing."""
    index = fresh(k.namespace("a"), k.service("s", "a", "10.0.0.1"))
    index.rebuild([k.namespace("b")], 8)
    assert index.namespaces == {"b"}
    assert index.service("a", "s") is None
    assert index.ptr_targets(ip_address("10.0.0.1")) == ()


def test_apply_takes_the_last_version_as_serial() -> None:
    """apply sets serial to the commit's last resource_version and tells one change."""
    index = fresh()
    heard: list[object] = []
    index.on_change(heard.append)
    index.apply(k.added([k.namespace("a"), k.namespace("b")], 20))
    assert (index.serial, heard) == (21, [frozenset({NamespaceScope("a"), NamespaceScope("b")})])
    assert index.namespaces == {"a", "b"}


def _packed(text: str) -> bytes:
    return ip_address(text).packed


def test_each_kind_of_event_touches_its_own_scopes() -> None:
    """A commit tells exactly the scopes it touched (kdns/reuse.py): a slice its Service's
    endpoints (not the Service: its cluster IP answers stay), the name of each endpoint it
    changes (not the others') and the addresses it adds or removes; a Service its names, the PTR of the cluster IPs it
    takes or gives back, and of its endpoints when it stops naming them (ExternalName); a
    pod its address in its namespace, if that changes; a Node the node tree; a new /24 the
    reverse prefixes; a Namespace the names in it and the PTR of its addresses."""
    web = k.service("web", "a", "10.0.0.1")
    ready = k.slice_("web-1", "a", "web", [k.endpoint("10.1.0.1"), k.endpoint("10.1.0.2")], [k.HTTP])
    index = fresh(k.namespace("a"), web, ready, version=10)
    heard: list[object] = []
    index.on_change(heard.append)
    flipped = k.slice_("web-1", "a", "web", [k.endpoint("10.1.0.1"), k.endpoint("10.1.0.2", ready=False)], [k.HTTP])
    index.apply([k.modified(flipped, ready, 11)])
    index.apply([k.modified(k.service("web", "a", "10.0.0.1", ports=[k.port("grpc", 90)]), web, 12)])
    index.apply([k.modified(k.service("web", "a", external="web.example.test"), web, 12)])
    index.apply([k.modified(k.pod("p", "a", "10.2.0.1", phase="Running"), None, 13)])
    index.apply([k.modified(k.pod("p", "a", "10.2.0.1", phase="Pending"), None, 13)])  # same address
    index.apply([k.modified(k.node("n1", "10.3.0.1"), None, 14)])
    index.apply([k.modified(k.service("db", "a", "10.9.9.9"), None, 15)])  # a /24 nobody had
    index.apply([k.modified(k.namespace("b"), None, 16)])
    index.apply([k.deleted(k.namespace("a"), 17)])
    web_scope = ServiceScope("a", "web")
    assert heard == [
        frozenset({EndpointsScope("a", "web"), EndpointScope("a", "web", "10-1-0-2"), AddressScope(_packed("10.1.0.2"))}),
        frozenset({web_scope}),  # its ports: no PTR changes
        # an ExternalName: its cluster IP, the last under 0.0.10.in-addr.arpa., and its endpoints' PTR
        frozenset({web_scope, AddressScope(_packed("10.0.0.1")), AddressScope(_packed("10.1.0.1")), REVERSE_PREFIXES}),
        frozenset({PodScope("a", _packed("10.2.0.1"))}),
        frozenset(),
        frozenset({NODES}),
        frozenset({ServiceScope("a", "db"), AddressScope(_packed("10.9.9.9")), REVERSE_PREFIXES}),
        frozenset({NamespaceScope("b")}),  # nothing in it
        # every name in it, and the PTR of its Services' cluster IPs and ready endpoints
        frozenset({NamespaceScope("a"), AddressScope(_packed("10.9.9.9")), AddressScope(_packed("10.1.0.1"))}),
    ]


def test_a_follower_advancing_the_serial_tells_an_empty_change() -> None:
    """advance: a new serial with nothing touched, told as an empty change (kept replies are sent with the new serial)."""
    index = fresh(version=10)
    heard: list[object] = []
    index.on_change(heard.append)
    index.advance(12)
    assert (index.serial, heard) == (12, [frozenset()])


def test_endpoints_collapse_across_slices() -> None:
    """Ready endpoints of every slice of a Service merge by name and address, in slice-name order."""
    index = fresh(
        k.slice_(
            "web-b",
            "ns",
            "web",
            [k.endpoint("10.0.0.3"), k.endpoint("10.0.0.1", hostname="Web-0")],
            [k.eport("http", 80), k.eport("", None)],
        ),
        k.slice_("web-a", "ns", "web", [k.endpoint("10.0.0.1", hostname="web-0"), k.endpoint("10.0.0.2", ready=False)], [k.eport("http", 80)]),
        k.slice_("web-v6", "ns", "web", [k.endpoint("fd00:0::1")], [k.eport("http", 8080)], address_type="IPv6"),
        k.slice_("fqdn", "ns", "web", [k.endpoint("example.org")], address_type="FQDN"),
        k.slice_("bad", "ns", "web", [k.endpoint("not-an-address")]),
        k.slice_("unlabelled", "ns", "", [k.endpoint("10.9.9.9")]),
    )
    endpoints = index.endpoints("ns", "web")
    assert endpoints.addresses == addresses("10.0.0.1", "10.0.0.3", "fd00::1")
    assert list(endpoints.by_name) == ["web-0", "10-0-0-3", "fd00--1"]
    assert endpoints.by_name["web-0"].addresses == addresses("10.0.0.1")
    assert endpoints.by_name["web-0"].ports == (k.eport("http", 80),)  # portless entries dropped
    assert endpoints.by_name["fd00--1"].ports == (k.eport("http", 8080),)
    assert index.endpoints("ns", "other").by_name == {}


def test_shared_hostname_collects_addresses() -> None:
    """Endpoints sharing a hostname make one name with all their addresses."""
    index = fresh(k.slice_("s", "ns", "db", [k.endpoint("10.0.0.1", hostname="x"), k.endpoint("10.0.0.2", hostname="x")]))
    assert index.endpoints("ns", "db").by_name["x"].addresses == addresses("10.0.0.1", "10.0.0.2")


def test_ptr_prefers_cluster_ips() -> None:
    """An address that is a cluster IP names its Services only; otherwise its ready endpoints."""
    index = fresh(
        k.namespace("ns"),
        k.service("a", "ns", "10.0.0.1"),
        k.service("b", "ns", "10.0.0.2"),
        k.service("c", "ns"),
        k.slice_("b-1", "ns", "b", [k.endpoint("10.0.0.1", hostname="h"), k.endpoint("10.1.0.1")]),
        k.slice_("c-1", "ns", "c", [k.endpoint("10.1.0.1")]),
        k.slice_("orphan", "ns", "nosvc", [k.endpoint("10.2.0.1")]),
    )
    assert index.ptr_targets(ip_address("10.0.0.1")) == (PtrTarget("ns", "a", None),)
    assert index.ptr_targets(ip_address("10.1.0.1")) == (
        PtrTarget("ns", "b", "10-1-0-1"),
        PtrTarget("ns", "c", "10-1-0-1"),
    )
    assert index.ptr_targets(ip_address("10.2.0.1")) == ()  # its Service does not exist


def test_ptr_matches_any_spelling() -> None:
    """Addresses are compared canonically, however the objects spell them."""
    index = fresh(
        k.namespace("ns"),
        k.service("a", "ns", "FD00:0:0::0A"),
        k.service("b", "ns"),
        k.slice_("b-1", "ns", "b", [k.endpoint("fd00:0000::b")], address_type="IPv6"),
    )
    assert index.ptr_targets(ip_address("fd00::a")) == (PtrTarget("ns", "a", None),)
    assert index.ptr_targets(ip_address("fd00::b")) == (PtrTarget("ns", "b", "fd00--b"),)
    assert service(index, "ns", "a").cluster_ips == addresses("fd00::a")


def test_services_hide_with_their_namespace() -> None:
    """visible_service and PTR need the Namespace object; service() does not."""
    index = fresh(k.service("a", "ns", "10.0.0.1"))
    assert index.service("ns", "a") is not None
    assert index.visible_service("ns", "a") is None
    assert index.ptr_targets(ip_address("10.0.0.1")) == ()
    index.apply(k.added([k.namespace("ns")], 8))
    assert index.visible_service("ns", "a") is not None
    assert index.ptr_targets(ip_address("10.0.0.1")) == (PtrTarget("ns", "a", None),)


def test_external_names() -> None:
    """An ExternalName's target is kept absolute; an IP address is no target."""
    index = fresh(
        k.service("e", "ns", external="example.org"),
        k.service("ip", "ns", external="192.0.2.1"),
        k.service("c", "ns", "10.0.0.1"),
    )
    e, ip, c = (service(index, "ns", name) for name in ("e", "ip", "c"))
    assert e.is_external and e.external_name == "example.org." and not e.is_headless
    assert ip.is_external and ip.external_name is None
    assert not c.is_external and c.external_name is None


def test_pods_verified_by_primary_address() -> None:
    """Only live pods count, by their first address, and two pods on one address count twice."""
    first = k.pod("a", "ns", "10.0.0.1", "fd00::1")
    second = k.pod("b", "ns", "10.0.0.1")
    index = fresh(
        first,
        second,
        k.pod("pending", "ns", "10.0.0.2", phase="Pending"),
        k.pod("unknown", "ns", "10.0.0.3", phase="Unknown"),
        k.pod("failed", "ns", "10.0.0.4", phase="Failed"),
        k.pod("leaving", "ns", "10.0.0.5", deleting=True),
        k.pod("no-ip", "ns"),
    )
    present = {str(ip) for ip in addresses("10.0.0.1", "fd00::1", *(f"10.0.0.{i}" for i in range(2, 6))) if index.has_pod("ns", ip)}
    assert present == {"10.0.0.1", "10.0.0.2"}
    assert not index.has_pod("other", ip_address("10.0.0.1"))
    index.apply([k.deleted(first, 8)])
    assert index.has_pod("ns", ip_address("10.0.0.1"))
    index.apply([k.deleted(second, 9)])
    assert not index.has_pod("ns", ip_address("10.0.0.1"))


@pytest.mark.parametrize(
    ("before", "after", "touched"),
    [
        ({"ips": ("10.0.0.1",)}, {"ips": ("10.0.0.1",)}, set()),  # a readiness report: the address stays
        ({"ips": ("10.0.0.1",)}, {"ips": ("10.0.0.1", "fd00::9")}, set()),  # the first address counts
        ({"ips": ("10.0.0.1",)}, {"ips": ("10.0.0.2",)}, {"10.0.0.1", "10.0.0.2"}),
        ({"ips": ("10.0.0.1",)}, {"ips": ("10.0.0.1",), "phase": "Failed"}, {"10.0.0.1"}),
        ({"ips": ("10.0.0.1",), "phase": "Pending"}, {"ips": ("10.0.0.1",), "deleting": True}, {"10.0.0.1"}),
        ({"ips": ()}, {"ips": ("10.0.0.3",)}, {"10.0.0.3"}),
        ({"ips": ("10.0.0.1",), "phase": "Succeeded"}, {"ips": ("10.0.0.2",), "phase": "Unknown"}, set()),
        ({"ips": ("10.0.0.1",)}, None, {"10.0.0.1"}),  # deleted
    ],
)
def test_a_pod_write_touches_its_names_only_when_its_address_changes(
    before: dict[str, Any], after: dict[str, Any] | None, touched: set[str],
) -> None:
    """A Pod event touches the PodScope of the address the index held and of the one it
    holds now, when they differ; and leaves what a rebuild of the new state makes."""
    def make(spec: dict[str, Any]) -> Any:
        return k.pod("p", "ns", *spec["ips"], phase=spec.get("phase", "Running"), deleting=spec.get("deleting", False))

    old = make(before)
    others = (k.pod("q", "ns", "10.0.0.1"),)
    index = fresh(old, *others)
    heard: list[Any] = []
    index.on_change(heard.append)
    new = make(after) if after is not None else None
    index.apply([k.modified(new, old, 8) if new is not None else k.deleted(old, 8)])
    assert heard == [frozenset(PodScope("ns", ip_address(t).packed) for t in touched)]
    rebuilt = fresh(*([new] if new is not None else []), *others)
    for text in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::9"):
        assert index.has_pod("ns", ip_address(text)) == rebuilt.has_pod("ns", ip_address(text))
    assert index._pods == rebuilt._pods and index._pod_ips == rebuilt._pod_ips


def test_a_flip_keeps_the_other_endpoints_as_they_were() -> None:
    """A slice written again with one endpoint flipped keeps the ReadyEndpoint of every
    other (the same object: nothing about it changed), touches only the flipped name and
    its address, and leaves what a rebuild makes."""
    def web(ready: bool) -> Any:
        return k.slice_("web-1", "ns", "web", [
            k.endpoint("10.0.0.1", hostname="a"), k.endpoint("10.0.0.2", hostname="b", ready=ready),
            k.endpoint("10.0.0.3", hostname="c")], [k.HTTP])

    before, after = web(True), web(False)
    index = fresh(k.namespace("ns"), k.service("web", "ns"), before)
    kept = dict(index.endpoints("ns", "web").by_name)
    heard: list[Any] = []
    index.on_change(heard.append)
    index.apply([k.modified(after, before, 8)])
    now = index.endpoints("ns", "web").by_name
    assert list(now) == ["a", "c"] and now["a"] is kept["a"] and now["c"] is kept["c"]
    assert heard == [frozenset({EndpointsScope("ns", "web"), EndpointScope("ns", "web", "b"),
                                AddressScope(ip_address("10.0.0.2").packed)})]
    assert now == fresh(k.namespace("ns"), k.service("web", "ns"), after).endpoints("ns", "web").by_name


@pytest.mark.parametrize("ips", [(), ("10.0.0.1",), ("10.0.0.1", "fd00::1"), ("fd00::1",), ("010.0.0.1",), ("x",),
                                 ("::ffff:10.0.0.1",), ("", "10.0.0.2")])
@pytest.mark.parametrize(("phase", "deleting"), [("Running", False), ("Pending", False), ("Succeeded", False),
                                                 ("Failed", False), ("Unknown", False), ("Running", True)])
def test_pod_address_is_what_put_pod_holds(ips: tuple[str, ...], phase: str, deleting: bool) -> None:
    """_pod_address (apply's) says what _put_pod (rebuild's, inline) holds for a pod."""
    pod = k.pod("p", "ns", *ips, phase=phase, deleting=deleting)
    assert index_module._pod_address(pod) == fresh(pod)._pod_ip("ns", "p")


def test_deletion_uses_what_the_index_holds() -> None:
    """A DELETED event removes the stored state even if its object is a different version."""
    stored = k.slice_("s", "ns", "web", [k.endpoint("10.0.0.1")])
    stale = k.slice_("s", "ns", "web", [k.endpoint("10.0.0.9")])
    index = fresh(k.namespace("ns"), k.service("web", "ns"), stored)
    index.apply([k.deleted(stale, 8)])
    assert index.endpoints("ns", "web").addresses == ()
    assert index.ptr_targets(ip_address("10.0.0.1")) == ()


def test_modified_without_old_replaces() -> None:
    """A MODIFIED event replaces what the index holds for that object, whatever `old` says."""
    index = fresh(k.namespace("ns"), k.service("a", "ns", "10.0.0.1"))
    index.apply([k.modified(k.service("a", "ns", "10.0.0.2"), None, 8)])
    assert service(index, "ns", "a").cluster_ips == addresses("10.0.0.2")
    assert index.ptr_targets(ip_address("10.0.0.1")) == ()


def test_nodes_and_their_branches() -> None:
    """Nodes are listed by name with their InternalIPs; dotted names make branches while they exist."""
    dotted = k.node("b.zone.internal", "10.0.0.2", "fd00::2", external="203.0.113.1")
    index = fresh(k.node("c", "10.0.0.3"), dotted, k.node("a"))
    assert [n.name for n in index.nodes()] == ["a", "b.zone.internal", "c"]
    node = index.node("b.zone.internal")
    assert node is not None and node.internal_ips == addresses("10.0.0.2", "fd00::2")
    assert index.has_node_branch("zone.internal") and index.has_node_branch("internal")
    assert not index.has_node_branch("b.zone.internal") and not index.has_node_branch("zone")
    index.apply([k.deleted(dotted, 8)])
    assert [n.name for n in index.nodes()] == ["a", "c"]
    assert not index.has_node_branch("internal")


def test_one_commit_many_slices() -> None:
    """Several slice events of one Service in one commit leave the same tables as a rebuild."""
    slices = [k.slice_(f"s{i}", "ns", "web", [k.endpoint(f"10.0.{i}.1")]) for i in range(5)]
    incremental = fresh(k.namespace("ns"))
    incremental.apply([*k.added(slices, 8), k.deleted(slices[0], 13)])
    rebuilt = fresh(k.namespace("ns"), *slices[1:])
    assert incremental.endpoints("ns", "web") == rebuilt.endpoints("ns", "web")
    assert incremental.ptr_targets(ip_address("10.0.0.1")) == ()


@pytest.mark.parametrize("seed", range(20))
def test_slice_writes_of_a_big_service_leave_what_a_rebuild_makes(seed: int) -> None:
    """A Service of several slices, each endpoint name in one of them (a big Service), whose
    slices are written one or two at a time, as readiness flips and moves write them; now
    and then a hostname taken twice. Each commit leaves the endpoints and PTR targets a
    rebuild makes, and touches the AddressScope of every address whose PTR it changed."""
    r = random.Random(seed)
    texts = [f"10.1.{i // 100}.{i % 100 + 1}" for i in range(60)]
    ready = dict.fromkeys(texts, True)
    hostname = {text: f"h{i}" for i, text in enumerate(texts)}
    home = {text: f"s{i // 20}" for i, text in enumerate(texts)}

    def slices(names: set[str]) -> list[Any]:
        return [k.slice_(name, "ns", "web", [k.endpoint(t, hostname=hostname[t], ready=ready[t])
                                              for t in texts if home[t] == name], [k.HTTP])
                for name in sorted(names)]

    current = {s.meta.name: s for s in slices({"s0", "s1", "s2"})}
    index = fresh(k.namespace("ns"), k.service("web", "ns"), *current.values())
    heard: list[Any] = []
    index.on_change(heard.append)
    version = 7
    for _ in range(12):
        written: set[str] = set()
        for text in r.sample(texts, r.randint(1, 3)):
            change = r.choice(["ready", "ready", "move", "hostname"])
            if change == "ready":
                ready[text] = not ready[text]
            elif change == "move":
                written.add(home[text])
                home[text] = r.choice(["s0", "s1", "s2"])
            else:
                hostname[text] = r.choice(["h0", f"x{version}"])
            written.add(home[text])
        before = {text: index.ptr_targets(ip_address(text)) for text in texts}
        events = []
        for new in slices(written):
            version += 1
            events.append(k.modified(new, current[new.meta.name], version))
            current[new.meta.name] = new
        heard.clear()
        index.apply(events)
        rebuilt = fresh(k.namespace("ns"), k.service("web", "ns"), *current.values())
        assert index.endpoints("ns", "web") == rebuilt.endpoints("ns", "web")
        assert list(index.endpoints("ns", "web").by_name) == list(rebuilt.endpoints("ns", "web").by_name)
        for text in texts:
            targets = index.ptr_targets(ip_address(text))
            assert targets == rebuilt.ptr_targets(ip_address(text))
            if targets != before[text]:
                assert AddressScope(ip_address(text).packed) in heard[-1]


# --- Reading addresses, and apply against rebuild ------------------------------------------

_OCTET_TEXTS = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "010", "0x7f", "", " 1", "1 ", "٣"]))
_ADDRESS_TEXTS = st.one_of(
    st.lists(_OCTET_TEXTS, min_size=1, max_size=5).map(".".join),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda ip: ip.exploded.upper()),
    st.sampled_from(["::ffff:10.0.0.1", "10.0.0.1\x00", "10.0.0.1 x", "\ud800", "fd00::1%eth0", "1.2.3.4/32"]),
    st.text(max_size=20),
)


@given(_ADDRESS_TEXTS)
def test_addresses_read_as_ipaddress_reads_them(text: str) -> None:
    """The index's quick reading of an address text (dotted quads in C) is ip_address's."""
    try:
        expected: IPAddress | None = ip_address(text)
    except ValueError:
        expected = None
    assert index_module._address(text) == expected
    assert index_module._packed(text) == (expected.packed if expected is not None else None)
    assert index_module._read(text) == ((expected, expected.packed, dashed(expected)) if expected is not None else None)


_NAMESPACES = ["a", "b"]
_TEXTS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "010.0.0.1", "fd00::1", "fd00:0::1", "::ffff:10.0.0.1", "2001:db8::", "x"]


def _random_object(r: random.Random) -> Any:
    ns = r.choice(_NAMESPACES)
    kind = r.choice(["namespace", "service", "slice", "slice", "pod", "node"])
    if kind == "namespace":
        return k.namespace(ns)
    if kind == "service":
        shape = r.choice(["ips", "headless", "external"])
        name = r.choice(["s1", "s2"])
        if shape == "ips":
            return k.service(name, ns, *r.sample(_TEXTS, r.randint(1, 2)))
        return k.service(name, ns) if shape == "headless" else k.service(name, ns, external="example.org")
    if kind == "slice":
        endpoints = [
            k.endpoint(*r.sample(_TEXTS, r.randint(0, 2)), hostname=r.choice(["", "", "h", "H"]), ready=r.choice([True, None, False]))
            for _ in range(r.randint(0, 4))
        ]
        ports = [k.eport(r.choice(["http", ""]), r.choice([80, 53, None])) for _ in range(r.randint(0, 2))]
        address_type = r.choice(["IPv4", "IPv6", "FQDN"])
        return k.slice_(f"sl{r.randint(0, 3)}", ns, r.choice(["s1", "s2", ""]), endpoints, ports, address_type)
    if kind == "pod":
        return k.pod(f"p{r.randint(0, 3)}", ns, *r.sample(_TEXTS, r.randint(0, 1)), phase=r.choice(["Running", "Failed"]))
    return k.node(r.choice(["n1", "a.n2"]), *r.sample(_TEXTS, r.randint(0, 2)))


def _view(index: ClusterIndex) -> dict[Any, Any]:
    """Everything the index answers for the names and addresses _random_object uses."""
    view: dict[Any, Any] = {"namespaces": index.namespaces, "nodes": index.nodes()}
    for ns in _NAMESPACES:
        for name in ["s1", "s2"]:
            view[ns, name] = (index.service(ns, name), index.visible_service(ns, name), index.endpoints(ns, name))
    for ip in {ip_address(t) for t in _TEXTS if t not in ("010.0.0.1", "x")}:
        view[ip] = (index.ptr_targets(ip), [index.has_pod(ns, ip) for ns in _NAMESPACES])
    for name in ["n1", "a.n2", "n2"]:
        view[name] = (index.node(name), index.has_node_branch(name))
    return view


@pytest.mark.parametrize("seed", range(300))
def test_apply_leaves_what_a_rebuild_makes(seed: int) -> None:
    """Random commits applied one after another leave the tables a rebuild of the result makes."""
    r = random.Random(seed)
    objects = {o.key: o for o in (_random_object(r) for _ in range(r.randint(0, 10)))}
    index = fresh(*objects.values())
    version = 7
    for _ in range(r.randint(1, 8)):
        events = []
        for _ in range(r.randint(1, 5)):
            version += 1
            if objects and r.random() < 0.3:
                gone = objects.pop(r.choice(list(objects)))
                events.append(k.deleted(gone, version))
            else:
                obj = _random_object(r)
                old = objects.get(obj.key)
                objects[obj.key] = obj
                events.append(k.modified(obj, old, version) if old is not None else k.added([obj], version)[0])
        index.apply(events)
        rebuilt = fresh(*objects.values())
        assert _view(index) == _view(rebuilt)
        # Counted address by address, and in bulk by the rebuild (longest prefixes first).
        assert index._reverse_prefixes == rebuilt._reverse_prefixes
