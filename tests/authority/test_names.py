"""Query names parsed into their shapes, and the names kdns builds."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdns.authority.names import (
    APEX,
    DNS_VERSION,
    NAME_SERVER,
    EndpointName,
    InvalidName,
    NamespaceName,
    NodeName,
    NodePortName,
    NodePortProtocolName,
    NodePortServiceName,
    PodName,
    PortName,
    ProtocolName,
    ReverseName,
    ReversePrefix,
    ServiceName,
    Structural,
    ancestors,
    dashed,
    parse,
    reverse_name,
    target_name,
    zone_of,
)

Z = "cluster.local."
V6_FULL = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."

SHAPES = [
    (Z, APEX),
    ("in-addr.arpa.", APEX),
    ("ip6.arpa.", APEX),
    (f"dns-version.{Z}", DNS_VERSION),
    (f"ns.dns.{Z}", NAME_SERVER),
    *((f"{label}.{Z}", Structural(label)) for label in ("svc", "pod", "nodeport", "node", "dns")),
    (f"testns.svc.{Z}", NamespaceName("svc", "testns")),
    (f"testns.pod.{Z}", NamespaceName("pod", "testns")),
    (f"testns.nodeport.{Z}", NamespaceName("nodeport", "testns")),
    (f"svc1.testns.svc.{Z}", ServiceName("svc1", "testns")),
    (f"ep1a.svc1.testns.svc.{Z}", EndpointName("ep1a", "svc1", "testns")),
    (f"172-0-0-1.svc1.testns.svc.{Z}", EndpointName("172-0-0-1", "svc1", "testns")),
    (f"_tcp.svc1.testns.svc.{Z}", ProtocolName("tcp", "svc1", "testns")),
    (f"_http._tcp.svc1.testns.svc.{Z}", PortName("http", "tcp", "svc1", "testns")),
    (f"_dns._udp.svc1.testns.svc.{Z}", PortName("dns", "udp", "svc1", "testns")),
    (f"_x._sctp.svc1.testns.svc.{Z}", PortName("x", "sctp", "svc1", "testns")),
    (f"10-0-0-1.testns.pod.{Z}", PodName("10-0-0-1", "testns")),
    (f"fd00--1.testns.pod.{Z}", PodName("fd00--1", "testns")),
    (f"node-a.node.{Z}", NodeName("node-a")),
    (f"ip-10-0-0-1.ec2.internal.node.{Z}", NodeName("ip-10-0-0-1.ec2.internal")),
    (f"np.testns.nodeport.{Z}", NodePortServiceName("np", "testns")),
    (f"_udp.np.testns.nodeport.{Z}", NodePortProtocolName("udp", "np", "testns")),
    (f"_http._tcp.np.testns.nodeport.{Z}", NodePortName("http", "tcp", "np", "testns")),
    ("1.0.0.10.in-addr.arpa.", ReverseName("10.0.0.1")),
    ("0.0.10.in-addr.arpa.", ReversePrefix(("0", "0", "10"))),
    ("10.in-addr.arpa.", ReversePrefix(("10",))),
    (V6_FULL, ReverseName("fd00::1")),
    ("d.f.ip6.arpa.", ReversePrefix(("d", "f"), 6)),
    (V6_FULL[2:], ReversePrefix(tuple(V6_FULL[2:-10].split(".")), 6)),
]

INVALID = [
    f"foo.{Z}",
    f"svc1.testns.pood.{Z}",
    f"x.dns-version.{Z}",
    f"x.dns.{Z}",
    f"a.ns.dns.{Z}",
    f"x.10-0-0-1.testns.pod.{Z}",
    f"not-an-ip.testns.pod.{Z}",
    f"10-0-0-256.testns.pod.{Z}",
    f"1-2-3-4-5.testns.pod.{Z}",
    f"http.tcp.svc1.testns.svc.{Z}",  # underscores are required (docs/dns-rules.md R3)
    f"_http.tcp.svc1.testns.svc.{Z}",
    f"http._tcp.svc1.testns.svc.{Z}",
    f"_._tcp.svc1.testns.svc.{Z}",
    f"_http._quic.svc1.testns.svc.{Z}",
    f"_quic.svc1.testns.svc.{Z}",
    f"a.b.c.svc1.testns.svc.{Z}",
    f"_http._tcp.ep.svc1.testns.svc.{Z}",
    f"ep.np.testns.nodeport.{Z}",
    f"_http.np.testns.nodeport.{Z}",
    f"a._http._tcp.np.testns.nodeport.{Z}",
    "256.0.0.10.in-addr.arpa.",
    "01.0.0.10.in-addr.arpa.",
    "1.1.0.0.10.in-addr.arpa.",
    "x.in-addr.arpa.",
    "g.ip6.arpa.",
    "10.ip6.arpa.",
    "0." + V6_FULL,
    "example.com.",
]


@pytest.mark.parametrize(("name", "shape"), SHAPES, ids=[n for n, _ in SHAPES])
def test_shapes(name: str, shape: object) -> None:
    """Each name of a served zone parses into its shape."""
    assert parse(name, Z) == shape


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names(name: str) -> None:
    """Names no data could ever give meaning to raise InvalidName (NXDOMAIN)."""
    with pytest.raises(InvalidName):
        parse(name, Z)


def test_other_cluster_zone() -> None:
    """The cluster zone is a parameter; names of another cluster zone are not in it."""
    assert parse("svc1.testns.svc.corp.example.", "corp.example.") == ServiceName("svc1", "testns")
    with pytest.raises(InvalidName):
        parse(f"svc1.testns.svc.{Z}", "corp.example.")


def test_zone_of() -> None:
    """zone_of gives the most specific served zone, or None outside them all."""
    assert zone_of(Z, Z) == Z
    assert zone_of(f"a.b.{Z}", Z) == Z
    assert zone_of("1.0.0.10.in-addr.arpa.", Z) == "in-addr.arpa."
    assert zone_of(V6_FULL, Z) == "ip6.arpa."
    assert zone_of("1.0.0.10.in-addr.arpa.", Z, ("10.in-addr.arpa.",)) == "10.in-addr.arpa."
    assert zone_of("1.0.0.11.in-addr.arpa.", Z, ("10.in-addr.arpa.",)) is None
    for name in ("local.", "xcluster.local.", "cluster.local.x.", "arpa.", "."):
        assert zone_of(name, Z) is None, name


_ZONE_LABELS = st.lists(st.sampled_from(["a", "b", "ab", "in-addr", "arpa", "cluster", "local", "x.y"]), max_size=4)
_ZONE_NAMES = _ZONE_LABELS.map(lambda labels: ".".join(labels) + "." if labels else ".")


@given(_ZONE_NAMES, _ZONE_NAMES, st.lists(_ZONE_NAMES, max_size=3).map(tuple))
def test_zone_of_is_the_longest_zone_below(name: str, zone: str, reverse: tuple[str, ...]) -> None:
    """zone_of is `is_below`'s most specific match, first given first among equals."""
    want = None
    for candidate in (zone, *reverse):
        if (name == candidate or name.endswith("." + candidate)) and (want is None or len(candidate) > len(want)):
            want = candidate
    assert zone_of(name, zone, reverse) == want


def test_narrow_reverse_zone_apex() -> None:
    """With a narrower reverse zone configured, its own name is its apex."""
    assert parse("10.in-addr.arpa.", Z, ("10.in-addr.arpa.",)) == APEX
    assert parse("1.0.0.10.in-addr.arpa.", Z, ("10.in-addr.arpa.",)) == ReverseName("10.0.0.1")


@pytest.mark.parametrize(
    ("ip", "label"),
    [
        ("172.0.0.2", "172-0-0-2"),
        ("5678:abcd::1", "5678-abcd--1"),
        ("2001:db8:1::", "2001-db8-1--0"),
        ("::1", "--1"),
        ("2001:0DB8:0:0:0:0:0:0001", "2001-db8--1"),
    ],
)
def test_dashed(ip: str, label: str) -> None:
    """Endpoint and pod labels come from the canonical address, a trailing '::' ending in '-0'."""
    assert dashed(ipaddress.ip_address(ip)) == label


addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@given(addresses)
def test_dashed_labels_parse_back(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Every dashed label kdns writes parses back to its address as a pod name."""
    name = parse(f"{dashed(ip)}.testns.pod.{Z}", Z)
    assert isinstance(name, PodName) and name.address == ip


@given(addresses)
def test_reverse_names_parse_back(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Every address's reverse name parses back to that address, in canonical text."""
    name = parse(reverse_name(ip), Z)
    assert name == ReverseName(str(ip)) and name.address == ip


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("example.org", "example.org."),
        ("Example.ORG.", "Example.ORG."),
        (" svc1.testns.svc.cluster.local ", "svc1.testns.svc.cluster.local."),
        ("1.2.3.4", None),
        ("fd00::1", None),
        ("", None),
        (".", None),
        ("a..b", None),
        ("x" * 64 + ".com", None),
    ],
)
def test_target_name(text: str, target: str | None) -> None:
    """An ExternalName target becomes an absolute name, or None when it cannot be one."""
    assert target_name(text) == target


def test_ancestors() -> None:
    """The names above a dotted node name are its empty non-terminals."""
    assert ancestors("a.b.c") == ["b.c", "c"]
    assert ancestors("node-a") == []
