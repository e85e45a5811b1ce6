"""The authority's answers, as tables of question -> rcode and records in zone text.

Every table runs against two indexes holding the same cluster: one filled by `rebuild`,
one by `apply` of ADDED events, so both paths answer alike.
"""

from __future__ import annotations

import pytest

from kdns.authority.index import ClusterIndex
from kdns.config import Settings
from kdns.registry.objects import Event
from tests.authority import cluster as k
from tests.authority.zonetext import Case, ask, lines, parsed, soa

SERIAL = k.SERIAL
SETTINGS = Settings(zone="cluster.local.", ttl=5, pods="verified", dns_address="127.0.0.1")
SOA = soa("cluster.local.", SERIAL)
SOA_V4 = soa("in-addr.arpa.", SERIAL)
SOA_V6 = soa("ip6.arpa.", SERIAL)
NXDOMAIN = "NXDOMAIN"
Z = "cluster.local."


def build(settings: Settings = SETTINGS, how: str = "rebuild") -> ClusterIndex:
    index = ClusterIndex(settings)
    objects = k.fixture_objects()
    if how == "rebuild":
        index.rebuild(objects, SERIAL)
    else:
        events = k.added(objects, SERIAL - len(objects) + 1)
        index.apply(events[:10])
        index.apply(events[10:])
    assert index.serial == SERIAL
    return index


@pytest.fixture(scope="module", params=["rebuild", "apply"])
def index(request: pytest.FixtureRequest) -> ClusterIndex:
    return build(how=request.param)


def run(cases: list[Case], index: ClusterIndex, settings: Settings = SETTINGS) -> None:
    for case in cases:
        try:
            case.check(index, settings)
        except AssertionError as exc:
            raise AssertionError(f"{case}: {exc}") from None


def ids(cases: list[Case]) -> list[str]:
    return [str(c) for c in cases]


APEX = [
    Case(Z, "SOA", answer=(SOA,)),
    Case(Z, "NS", answer=(f"{Z} 5 IN NS ns.dns.{Z}",), additional=(f"ns.dns.{Z} 5 IN A 127.0.0.1",)),
    Case(Z, "A"),
    Case(Z, "TXT"),
    Case(f"ns.dns.{Z}", "A", answer=(f"ns.dns.{Z} 5 IN A 127.0.0.1",)),
    Case(f"ns.dns.{Z}", "AAAA"),
    Case(f"dns.{Z}", "A"),
    Case(f"x.dns.{Z}", "A", NXDOMAIN),
    Case(f"x.ns.dns.{Z}", "A", NXDOMAIN),
    Case(f"dns-version.{Z}", "TXT", answer=(f'dns-version.{Z} 28800 IN TXT "1.1.0"',)),
    Case(f"dns-version.{Z}", "A"),
    Case(f"dns-version.{Z}", "SOA"),
    Case(f"x.dns-version.{Z}", "TXT", NXDOMAIN),
    Case(f"svc.{Z}", "A"),
    Case(f"pod.{Z}", "SRV"),
    Case(f"nodeport.{Z}", "A"),
    Case(f"node.{Z}", "A"),
    Case(f"testns.svc.{Z}", "A"),
    Case(f"default.svc.{Z}", "TXT"),
    Case(f"nons.svc.{Z}", "A", NXDOMAIN),
    Case(f"ghostns.svc.{Z}", "A", NXDOMAIN),
    Case(f"foo.{Z}", "A", NXDOMAIN),
    Case(f"svc1.testns.pood.{Z}", "A", NXDOMAIN),
    Case(f"*.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"any.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"svc1.*.svc.{Z}", "A", NXDOMAIN),
]


CLUSTER_IP = [
    Case(f"svc1.testns.svc.{Z}", "A", answer=(f"svc1.testns.svc.{Z} 5 IN A 10.0.0.1",)),
    *(Case(f"svc1.testns.svc.{Z}", t) for t in ("AAAA", "TXT", "PTR", "CNAME", "SOA", "NS", "MX", "HINFO")),
    Case(f"svc6.testns.svc.{Z}", "AAAA", answer=(f"svc6.testns.svc.{Z} 5 IN AAAA fd00::1",)),
    Case(f"svc6.testns.svc.{Z}", "A"),
    Case(f"dual.testns.svc.{Z}", "A", answer=(f"dual.testns.svc.{Z} 5 IN A 10.0.0.2",)),
    Case(f"dual.testns.svc.{Z}", "AAAA", answer=(f"dual.testns.svc.{Z} 5 IN AAAA fd00::2",)),
    Case(f"svcempty.testns.svc.{Z}", "A", answer=(f"svcempty.testns.svc.{Z} 5 IN A 10.0.0.3",)),
    Case(f"np.testns.svc.{Z}", "A", answer=(f"np.testns.svc.{Z} 5 IN A 10.0.0.5",)),
    Case(f"nosuch.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"nosuch.testns.svc.{Z}", "TXT", NXDOMAIN),
    Case(f"svc1.default.svc.{Z}", "A", NXDOMAIN),
    Case(f"ghost.ghostns.svc.{Z}", "A", NXDOMAIN),
    # Endpoint names of a cluster-IP service (docs/dns-rules.md R10).
    Case(f"ep1a.svc1.testns.svc.{Z}", "A", answer=(f"ep1a.svc1.testns.svc.{Z} 5 IN A 172.0.0.1",)),
    Case(f"172-0-0-2.svc1.testns.svc.{Z}", "A", answer=(f"172-0-0-2.svc1.testns.svc.{Z} 5 IN A 172.0.0.2",)),
    Case(f"172-0-0-2.svc1.testns.svc.{Z}", "AAAA"),
    Case(f"172-0-0-3.svc1.testns.svc.{Z}", "A", NXDOMAIN),  # not ready
    Case(f"172-0-0-1.svc1.testns.svc.{Z}", "A", NXDOMAIN),  # named by its hostname instead
    Case(f"nope.svc1.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"x.ep1a.svc1.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"a.b.c.svc1.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"ep.ghost.ghostns.svc.{Z}", "A", NXDOMAIN),
]

SRV = [
    Case(
        f"_http._tcp.svc1.testns.svc.{Z}",
        "SRV",
        answer=(f"_http._tcp.svc1.testns.svc.{Z} 5 IN SRV 0 100 80 svc1.testns.svc.{Z}",),
        additional=(f"svc1.testns.svc.{Z} 5 IN A 10.0.0.1",),
    ),
    Case(f"_http._tcp.svc1.testns.svc.{Z}", "A"),  # NODATA (docs/dns-rules.md R11)
    Case(f"_http._tcp.svc1.testns.svc.{Z}", "TXT"),
    Case(f"_http._udp.svc1.testns.svc.{Z}", "SRV", NXDOMAIN),
    Case(f"_nope._tcp.svc1.testns.svc.{Z}", "SRV", NXDOMAIN),
    Case(f"http.tcp.svc1.testns.svc.{Z}", "SRV", NXDOMAIN),  # underscores required (docs/dns-rules.md R3)
    Case(f"_http.tcp.svc1.testns.svc.{Z}", "SRV", NXDOMAIN),
    Case(f"_http._tcp.x.svc1.testns.svc.{Z}", "SRV", NXDOMAIN),
    Case(f"_tcp.svc1.testns.svc.{Z}", "A"),  # an empty non-terminal (docs/dns-rules.md R4)
    Case(f"_udp.svc1.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"_quic.svc1.testns.svc.{Z}", "A", NXDOMAIN),
    Case(
        f"svc1.testns.svc.{Z}",
        "SRV",
        answer=(f"svc1.testns.svc.{Z} 5 IN SRV 0 100 80 svc1.testns.svc.{Z}",),
        additional=(f"svc1.testns.svc.{Z} 5 IN A 10.0.0.1",),
    ),
    Case(
        f"dual.testns.svc.{Z}",
        "SRV",
        answer=(
            f"dual.testns.svc.{Z} 5 IN SRV 0 50 80 dual.testns.svc.{Z}",
            f"dual.testns.svc.{Z} 5 IN SRV 0 50 53 dual.testns.svc.{Z}",
        ),
        additional=(f"dual.testns.svc.{Z} 5 IN A 10.0.0.2", f"dual.testns.svc.{Z} 5 IN AAAA fd00::2"),
    ),
    Case(
        f"_dns._udp.dual.testns.svc.{Z}",
        "SRV",
        answer=(f"_dns._udp.dual.testns.svc.{Z} 5 IN SRV 0 100 53 dual.testns.svc.{Z}",),
        additional=(f"dual.testns.svc.{Z} 5 IN A 10.0.0.2", f"dual.testns.svc.{Z} 5 IN AAAA fd00::2"),
    ),
    Case(f"_dns._tcp.dual.testns.svc.{Z}", "SRV", NXDOMAIN),
    Case(f"_sctp.dual.testns.svc.{Z}", "SRV", NXDOMAIN),
    # Unnamed ports have no `_port._proto` name (spec), but the bare name lists them, as
    # CoreDNS does (docs/dns-rules.md R11).
    Case(
        f"unnamed.testns.svc.{Z}",
        "SRV",
        answer=(f"unnamed.testns.svc.{Z} 5 IN SRV 0 100 8080 unnamed.testns.svc.{Z}",),
        additional=(f"unnamed.testns.svc.{Z} 5 IN A 10.0.0.4",),
    ),
    Case(f"_tcp.unnamed.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"hdlsprtls.testns.svc.{Z}", "SRV"),
    Case(f"_http._tcp.hdlsprtls.testns.svc.{Z}", "SRV", NXDOMAIN),
    # SRV on a cluster-IP service's endpoint: its slice ports.
    Case(
        f"ep1a.svc1.testns.svc.{Z}",
        "SRV",
        answer=(f"ep1a.svc1.testns.svc.{Z} 5 IN SRV 0 100 8080 ep1a.svc1.testns.svc.{Z}",),
        additional=(f"ep1a.svc1.testns.svc.{Z} 5 IN A 172.0.0.1",),
    ),
]

HDLS1_SRV = (
    "0 25 8080 dup-name.hdls1.testns.svc.cluster.local.",
    "0 25 8080 172-0-0-12.hdls1.testns.svc.cluster.local.",
    "0 25 8080 5678-abcd--1.hdls1.testns.svc.cluster.local.",
    "0 25 8080 5678-abcd-1--0.hdls1.testns.svc.cluster.local.",
)
HDLS1_ADDITIONAL = (
    f"dup-name.hdls1.testns.svc.{Z} 5 IN A 172.0.0.10",
    f"dup-name.hdls1.testns.svc.{Z} 5 IN A 172.0.0.11",
    f"172-0-0-12.hdls1.testns.svc.{Z} 5 IN A 172.0.0.12",
    f"5678-abcd--1.hdls1.testns.svc.{Z} 5 IN AAAA 5678:abcd::1",
    f"5678-abcd-1--0.hdls1.testns.svc.{Z} 5 IN AAAA 5678:abcd:1::",
)

HEADLESS = [
    Case(
        f"hdls1.testns.svc.{Z}",
        "A",
        answer=tuple(f"hdls1.testns.svc.{Z} 5 IN A 172.0.0.{i}" for i in (10, 11, 12)),
    ),
    Case(
        f"hdls1.testns.svc.{Z}",
        "AAAA",
        answer=(f"hdls1.testns.svc.{Z} 5 IN AAAA 5678:abcd::1", f"hdls1.testns.svc.{Z} 5 IN AAAA 5678:abcd:1::"),
    ),
    Case(f"hdls1.testns.svc.{Z}", "TXT"),
    Case(
        f"dup-name.hdls1.testns.svc.{Z}",
        "A",
        answer=(f"dup-name.hdls1.testns.svc.{Z} 5 IN A 172.0.0.10", f"dup-name.hdls1.testns.svc.{Z} 5 IN A 172.0.0.11"),
    ),
    Case(
        f"dup-name.hdls1.testns.svc.{Z}",
        "SRV",
        answer=(f"dup-name.hdls1.testns.svc.{Z} 5 IN SRV 0 100 8080 dup-name.hdls1.testns.svc.{Z}",),
        additional=HDLS1_ADDITIONAL[:2],
    ),
    Case(f"172-0-0-12.hdls1.testns.svc.{Z}", "A", answer=(f"172-0-0-12.hdls1.testns.svc.{Z} 5 IN A 172.0.0.12",)),
    Case(f"172-0-0-13.hdls1.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"172-0-0-10.hdls1.testns.svc.{Z}", "A", NXDOMAIN),
    Case(
        f"5678-abcd--1.hdls1.testns.svc.{Z}",
        "AAAA",
        answer=(f"5678-abcd--1.hdls1.testns.svc.{Z} 5 IN AAAA 5678:abcd::1",),
    ),
    Case(
        f"5678-abcd-1--0.hdls1.testns.svc.{Z}",
        "AAAA",
        answer=(f"5678-abcd-1--0.hdls1.testns.svc.{Z} 5 IN AAAA 5678:abcd:1::",),
    ),
    Case(f"5678-abcd-1--0.hdls1.testns.svc.{Z}", "A"),
    Case(f"5678-abcd-1-.hdls1.testns.svc.{Z}", "AAAA", NXDOMAIN),
    Case(
        f"_http._tcp.hdls1.testns.svc.{Z}",
        "SRV",
        answer=tuple(f"_http._tcp.hdls1.testns.svc.{Z} 5 IN SRV {r}" for r in HDLS1_SRV),
        additional=HDLS1_ADDITIONAL,
    ),
    Case(
        f"hdls1.testns.svc.{Z}",
        "SRV",
        answer=tuple(f"hdls1.testns.svc.{Z} 5 IN SRV {r}" for r in HDLS1_SRV),
        additional=HDLS1_ADDITIONAL,
    ),
    Case(f"_tcp.hdls1.testns.svc.{Z}", "TXT"),
    Case(f"hdlsprtls.testns.svc.{Z}", "A", answer=(f"hdlsprtls.testns.svc.{Z} 5 IN A 172.0.0.20",)),
    # No ready endpoint: the name does not exist, whatever the type (spec §2.4.1).
    Case(f"notready.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"notready.testns.svc.{Z}", "SRV", NXDOMAIN),
    Case(f"_http._tcp.notready.testns.svc.{Z}", "SRV", NXDOMAIN),
    Case(f"_tcp.notready.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"172-0-0-30.notready.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"noslice.testns.svc.{Z}", "AAAA", NXDOMAIN),
]

EXTERNAL_CNAME = f"external.testns.svc.{Z} 5 IN CNAME Ext.Interwebs.Test."
TO_SVC1 = f"external-to-service.testns.svc.{Z} 5 IN CNAME svc1.testns.svc.{Z}"
EXTERNAL = [
    *(Case(f"external.testns.svc.{Z}", t, answer=(EXTERNAL_CNAME,)) for t in ("A", "AAAA", "CNAME", "SRV", "TXT", "MX")),
    Case(f"x.external.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"_http._tcp.external.testns.svc.{Z}", "SRV", NXDOMAIN),
    Case(f"_tcp.external.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"ext-ip.testns.svc.{Z}", "A", NXDOMAIN),
    Case(f"ext-ip.testns.svc.{Z}", "CNAME", NXDOMAIN),
    Case(f"external-to-service.testns.svc.{Z}", "A", answer=(TO_SVC1, f"svc1.testns.svc.{Z} 5 IN A 10.0.0.1")),
    Case(f"external-to-service.testns.svc.{Z}", "CNAME", answer=(TO_SVC1,)),
    # The chased name has no AAAA: NODATA after the CNAME, with the SOA.
    Case(f"external-to-service.testns.svc.{Z}", "AAAA", answer=(TO_SVC1,), authority=(SOA,)),
    Case(
        f"external-to-service.testns.svc.{Z}",
        "SRV",
        answer=(TO_SVC1, f"svc1.testns.svc.{Z} 5 IN SRV 0 100 80 svc1.testns.svc.{Z}"),
        additional=(f"svc1.testns.svc.{Z} 5 IN A 10.0.0.1",),
    ),
    # The chased name does not exist: NXDOMAIN after the CNAME (RFC 6604).
    Case(
        f"external-to-missing.testns.svc.{Z}",
        "A",
        NXDOMAIN,
        answer=(f"external-to-missing.testns.svc.{Z} 5 IN CNAME nope.testns.svc.{Z}",),
        authority=(SOA,),
    ),
    Case(
        f"external-to-external.testns.svc.{Z}",
        "A",
        answer=(f"external-to-external.testns.svc.{Z} 5 IN CNAME external.testns.svc.{Z}", EXTERNAL_CNAME),
    ),
    # A loop ends before it repeats a name, NOERROR, for the resolver to judge.
    Case(
        f"loop-a.testns.svc.{Z}",
        "A",
        answer=(
            f"loop-a.testns.svc.{Z} 5 IN CNAME loop-b.testns.svc.{Z}",
            f"loop-b.testns.svc.{Z} 5 IN CNAME loop-a.testns.svc.{Z}",
        ),
    ),
]

PODS_VERIFIED = [
    Case(f"10-244-0-1.testns.pod.{Z}", "A", answer=(f"10-244-0-1.testns.pod.{Z} 5 IN A 10.244.0.1",)),
    Case(f"10-244-0-1.testns.pod.{Z}", "AAAA"),
    Case(f"10-244-0-2.testns.pod.{Z}", "A", NXDOMAIN),  # Succeeded
    Case(f"10-244-0-3.testns.pod.{Z}", "A", NXDOMAIN),  # being deleted
    Case(f"fd00-244--1.testns.pod.{Z}", "AAAA", answer=(f"fd00-244--1.testns.pod.{Z} 5 IN AAAA fd00:244::1",)),
    Case(f"fd00-244-0-0-0-0-0-1.testns.pod.{Z}", "AAAA", answer=(f"fd00-244-0-0-0-0-0-1.testns.pod.{Z} 5 IN AAAA fd00:244::1",)),
    Case(f"fd00-244--1.testns.pod.{Z}", "A"),
    Case(f"10-244-0-4.testns.pod.{Z}", "A", answer=(f"10-244-0-4.testns.pod.{Z} 5 IN A 10.244.0.4",)),
    Case(f"fd00-244--4.testns.pod.{Z}", "AAAA", NXDOMAIN),  # only status.podIP is verified
    Case(f"10-244-1-1.testns.pod.{Z}", "A", NXDOMAIN),  # that pod lives in default
    Case(f"10-244-1-1.default.pod.{Z}", "A", answer=(f"10-244-1-1.default.pod.{Z} 5 IN A 10.244.1.1",)),
    Case(f"10-244-0-1.nons.pod.{Z}", "A", NXDOMAIN),
    Case(f"not-an-ip.testns.pod.{Z}", "A", NXDOMAIN),
    Case(f"10-244-0-256.testns.pod.{Z}", "A", NXDOMAIN),
    Case(f"x.10-244-0-1.testns.pod.{Z}", "A", NXDOMAIN),
    Case(f"testns.pod.{Z}", "A"),
    Case(f"nons.pod.{Z}", "A", NXDOMAIN),
]

NODE_ADDITIONAL = (
    f"node-a.node.{Z} 5 IN A 10.1.0.1",
    f"node-b.node.{Z} 5 IN A 10.1.0.2",
    f"node-b.node.{Z} 5 IN AAAA fd00:1::2",
    f"node-c.zone.internal.node.{Z} 5 IN A 10.1.0.3",
)


def node_srv(owner: str, weight: int, *ports: int) -> tuple[str, ...]:
    return tuple(
        f"{owner} 5 IN SRV 0 {weight} {p} {n}.node.{Z}" for p in ports for n in ("node-a", "node-b", "node-c.zone.internal")
    )


NODES = [
    Case(f"node-a.node.{Z}", "A", answer=(f"node-a.node.{Z} 5 IN A 10.1.0.1",)),
    Case(f"node-a.node.{Z}", "AAAA"),
    Case(f"node-b.node.{Z}", "AAAA", answer=(f"node-b.node.{Z} 5 IN AAAA fd00:1::2",)),
    Case(f"node-c.zone.internal.node.{Z}", "A", answer=(f"node-c.zone.internal.node.{Z} 5 IN A 10.1.0.3",)),
    Case(f"zone.internal.node.{Z}", "A"),  # empty non-terminals of a dotted node name
    Case(f"internal.node.{Z}", "A"),
    Case(f"node-d.node.{Z}", "A"),  # a Node without an InternalIP
    Case(f"nope.node.{Z}", "A", NXDOMAIN),
    Case(f"x.node-a.node.{Z}", "A", NXDOMAIN),
    Case(
        f"_http._tcp.np.testns.nodeport.{Z}",
        "SRV",
        answer=node_srv(f"_http._tcp.np.testns.nodeport.{Z}", 33, 30080),
        additional=NODE_ADDITIONAL,
    ),
    Case(
        f"_dns._udp.np.testns.nodeport.{Z}",
        "SRV",
        answer=node_srv(f"_dns._udp.np.testns.nodeport.{Z}", 33, 30053),
        additional=NODE_ADDITIONAL,
    ),
    Case(
        f"np.testns.nodeport.{Z}",
        "SRV",
        answer=node_srv(f"np.testns.nodeport.{Z}", 16, 30080, 30053),
        additional=NODE_ADDITIONAL,
    ),
    Case(
        f"_https._tcp.lb.testns.nodeport.{Z}",
        "SRV",
        answer=node_srv(f"_https._tcp.lb.testns.nodeport.{Z}", 33, 30443),
        additional=NODE_ADDITIONAL,
    ),
    Case(f"_http._tcp.np.testns.nodeport.{Z}", "A"),
    Case(f"np.testns.nodeport.{Z}", "A"),
    Case(f"_tcp.np.testns.nodeport.{Z}", "A"),
    Case(f"_sctp.np.testns.nodeport.{Z}", "A", NXDOMAIN),
    Case(f"_dns._tcp.np.testns.nodeport.{Z}", "SRV", NXDOMAIN),
    Case(f"x.np.testns.nodeport.{Z}", "A", NXDOMAIN),
    Case(f"svc1.testns.nodeport.{Z}", "SRV", NXDOMAIN),  # a ClusterIP service has no node ports
    Case(f"np-unnamed.testns.nodeport.{Z}", "SRV", NXDOMAIN),  # unnamed ports get no name
    Case(f"testns.nodeport.{Z}", "A"),
    Case(f"ghostns.nodeport.{Z}", "A", NXDOMAIN),
    # The service's own SRV is the Service port, never the nodePort (docs/dns-rules.md R7, R11).
    Case(
        f"_http._tcp.np.testns.svc.{Z}",
        "SRV",
        answer=(f"_http._tcp.np.testns.svc.{Z} 5 IN SRV 0 100 80 np.testns.svc.{Z}",),
        additional=(f"np.testns.svc.{Z} 5 IN A 10.0.0.5",),
    ),
]

V6_SVC6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."
V6_HDLS = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.8.7.6.5.ip6.arpa."
V6_HDLS_TRAILING = "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.d.c.b.a.8.7.6.5.ip6.arpa."
REVERSE = [
    Case("1.0.0.10.in-addr.arpa.", "PTR", answer=(f"1.0.0.10.in-addr.arpa. 5 IN PTR svc1.testns.svc.{Z}",)),
    Case("1.0.0.172.in-addr.arpa.", "PTR", answer=(f"1.0.0.172.in-addr.arpa. 5 IN PTR ep1a.svc1.testns.svc.{Z}",)),
    Case("2.0.0.172.in-addr.arpa.", "PTR", answer=(f"2.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-2.svc1.testns.svc.{Z}",)),
    Case("3.0.0.172.in-addr.arpa.", "PTR", NXDOMAIN),  # not ready
    Case("10.0.0.172.in-addr.arpa.", "PTR", answer=(f"10.0.0.172.in-addr.arpa. 5 IN PTR dup-name.hdls1.testns.svc.{Z}",)),
    Case("12.0.0.172.in-addr.arpa.", "PTR", answer=(f"12.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-12.hdls1.testns.svc.{Z}",)),
    Case(
        "7.0.0.10.in-addr.arpa.",
        "PTR",
        answer=(
            f"7.0.0.10.in-addr.arpa. 5 IN PTR twin-a.default.svc.{Z}",
            f"7.0.0.10.in-addr.arpa. 5 IN PTR twin-b.default.svc.{Z}",
        ),
    ),
    Case("9.0.0.10.in-addr.arpa.", "PTR", NXDOMAIN),  # its namespace does not exist
    Case("99.0.0.172.in-addr.arpa.", "PTR", NXDOMAIN),
    Case("1.0.244.10.in-addr.arpa.", "PTR", NXDOMAIN),  # pods get no PTR
    Case("1.0.1.10.in-addr.arpa.", "PTR", NXDOMAIN),  # nor nodes
    Case("1.0.0.10.in-addr.arpa.", "A"),
    Case("0.10.in-addr.arpa.", "PTR"),  # an empty non-terminal (docs/dns-rules.md R4)
    Case("10.in-addr.arpa.", "PTR"),
    Case("in-addr.arpa.", "SOA", answer=(SOA_V4,)),
    Case("in-addr.arpa.", "NS", answer=(f"in-addr.arpa. 5 IN NS ns.dns.{Z}",), additional=(f"ns.dns.{Z} 5 IN A 127.0.0.1",)),
    Case("in-addr.arpa.", "PTR"),
    Case("256.0.0.10.in-addr.arpa.", "PTR", NXDOMAIN),
    Case("01.0.0.10.in-addr.arpa.", "PTR", NXDOMAIN),
    Case("1.1.0.0.10.in-addr.arpa.", "PTR", NXDOMAIN),
    Case("x.10.in-addr.arpa.", "PTR", NXDOMAIN),
    Case(V6_SVC6, "PTR", answer=(f"{V6_SVC6} 5 IN PTR svc6.testns.svc.{Z}",)),
    Case(V6_HDLS, "PTR", answer=(f"{V6_HDLS} 5 IN PTR 5678-abcd--1.hdls1.testns.svc.{Z}",)),
    Case(V6_HDLS_TRAILING, "PTR", answer=(f"{V6_HDLS_TRAILING} 5 IN PTR 5678-abcd-1--0.hdls1.testns.svc.{Z}",)),
    Case("2" + V6_SVC6[1:], "PTR", answer=(f"2{V6_SVC6[1:]} 5 IN PTR dual.testns.svc.{Z}",)),
    Case("3" + V6_SVC6[1:], "PTR", NXDOMAIN),
    Case(V6_SVC6[2:], "PTR"),
    Case("d.f.ip6.arpa.", "PTR"),
    Case("ip6.arpa.", "SOA", answer=(SOA_V6,)),
    Case("g.ip6.arpa.", "PTR", NXDOMAIN),
    Case("10.d.f.ip6.arpa.", "PTR", NXDOMAIN),
    Case("0." + V6_SVC6, "PTR", NXDOMAIN),
    # Service-shaped names in a reverse zone, IP-shaped names in the forward zone.
    Case("svc1.testns.svc.in-addr.arpa.", "PTR", NXDOMAIN),
    Case(f"1.0.0.10.{Z}", "PTR", NXDOMAIN),
]

CASE_ECHO = [
    Case("SVC1.TestNS.svc.CLUSTER.Local.", "A", answer=("SVC1.TestNS.svc.CLUSTER.Local. 5 IN A 10.0.0.1",)),
    Case(
        "_HTTP._TCP.svc1.testns.SVC.cLuStEr.LoCaL.",
        "SRV",
        answer=("_HTTP._TCP.svc1.testns.SVC.cLuStEr.LoCaL. 5 IN SRV 0 100 80 svc1.testns.svc.cLuStEr.LoCaL.",),
        additional=("svc1.testns.svc.cLuStEr.LoCaL. 5 IN A 10.0.0.1",),
    ),
    Case(
        "Dup-Name.HDLS1.testns.svc.cluster.local.",
        "A",
        answer=(
            "Dup-Name.HDLS1.testns.svc.cluster.local. 5 IN A 172.0.0.10",
            "Dup-Name.HDLS1.testns.svc.cluster.local. 5 IN A 172.0.0.11",
        ),
    ),
    Case(
        "NOPE.testns.svc.Cluster.Local.",
        "A",
        NXDOMAIN,
        authority=(soa("Cluster.Local.", SERIAL, cluster="Cluster.Local."),),
    ),
    Case("Cluster.Local.", "SOA", answer=(soa("Cluster.Local.", SERIAL, cluster="Cluster.Local."),)),
    Case(
        "Cluster.Local.",
        "NS",
        answer=("Cluster.Local. 5 IN NS ns.dns.Cluster.Local.",),
        additional=("ns.dns.Cluster.Local. 5 IN A 127.0.0.1",),
    ),
    Case("1.0.0.10.IN-ADDR.ARPA.", "PTR", answer=(f"1.0.0.10.IN-ADDR.ARPA. 5 IN PTR svc1.testns.svc.{Z}",)),
    Case("9.9.9.10.In-Addr.Arpa.", "PTR", NXDOMAIN, authority=(soa("In-Addr.Arpa.", SERIAL),)),
    Case(V6_SVC6.upper(), "PTR", answer=(f"{V6_SVC6.upper()} 5 IN PTR svc6.testns.svc.{Z}",)),
    Case(
        "External-To-Service.TESTNS.svc.Cluster.Local.",
        "A",
        answer=(
            f"External-To-Service.TESTNS.svc.Cluster.Local. 5 IN CNAME svc1.testns.svc.{Z}",
            f"svc1.testns.svc.{Z} 5 IN A 10.0.0.1",
        ),
    ),
    Case(
        "_HTTP._tcp.NP.testns.nodeport.Cluster.Local.",
        "SRV",
        answer=tuple(
            f"_HTTP._tcp.NP.testns.nodeport.Cluster.Local. 5 IN SRV 0 33 30080 {n}.node.Cluster.Local."
            for n in ("node-a", "node-b", "node-c.zone.internal")
        ),
        additional=tuple(a.replace(Z, "Cluster.Local.") for a in NODE_ADDITIONAL),
    ),
    Case(f"10-244-0-1.TestNS.POD.{Z}", "A", answer=(f"10-244-0-1.TestNS.POD.{Z} 5 IN A 10.244.0.1",)),
    Case(f"FD00-244--1.testns.pod.{Z}", "AAAA", answer=(f"FD00-244--1.testns.pod.{Z} 5 IN AAAA fd00:244::1",)),
]

# ANY gets one RRset (RFC 8482): the first of CNAME, A, AAAA, SRV, PTR, TXT, SOA, NS.
ANY = [
    Case(f"svc1.testns.svc.{Z}", "ANY", answer=(f"svc1.testns.svc.{Z} 5 IN A 10.0.0.1",)),
    Case(f"dual.testns.svc.{Z}", "ANY", answer=(f"dual.testns.svc.{Z} 5 IN A 10.0.0.2",)),
    Case(f"svc6.testns.svc.{Z}", "ANY", answer=(f"svc6.testns.svc.{Z} 5 IN AAAA fd00::1",)),
    Case(f"external-to-service.testns.svc.{Z}", "ANY", answer=(TO_SVC1,)),
    Case(
        f"_http._tcp.svc1.testns.svc.{Z}",
        "ANY",
        answer=(f"_http._tcp.svc1.testns.svc.{Z} 5 IN SRV 0 100 80 svc1.testns.svc.{Z}",),
        additional=(f"svc1.testns.svc.{Z} 5 IN A 10.0.0.1",),
    ),
    Case("1.0.0.10.in-addr.arpa.", "ANY", answer=(f"1.0.0.10.in-addr.arpa. 5 IN PTR svc1.testns.svc.{Z}",)),
    Case(f"dns-version.{Z}", "ANY", answer=(f'dns-version.{Z} 28800 IN TXT "1.1.0"',)),
    Case(Z, "ANY", answer=(SOA,)),
    Case(f"testns.svc.{Z}", "ANY"),
    Case(f"nosuch.testns.svc.{Z}", "ANY", NXDOMAIN),
]

TABLES = {
    "apex": APEX,
    "cluster-ip": CLUSTER_IP,
    "srv": SRV,
    "headless": HEADLESS,
    "external": EXTERNAL,
    "pods-verified": PODS_VERIFIED,
    "nodes": NODES,
    "reverse": REVERSE,
    "case-echo": CASE_ECHO,
    "any": ANY,
}


@pytest.mark.parametrize("table", list(TABLES))
def test_table(table: str, index: ClusterIndex) -> None:
    """Each question of the table gets exactly its rcode, records, additional data and SOA."""
    run(TABLES[table], index)


def test_outside_the_served_zones(index: ClusterIndex) -> None:
    """Names in no served zone are not answered, so the router can refuse or forward them."""
    for name in ("example.com.", "local.", "cluster.local.example.", "xcluster.local.", "arpa.", "."):
        assert ask(index, SETTINGS, name, "A") is None, name


def test_zone_transfers_are_refused(index: ClusterIndex) -> None:
    """AXFR and IXFR of a served zone are REFUSED: kdns offers no zone transfer."""
    for qtype in ("AXFR", "IXFR"):
        got = ask(index, SETTINGS, Z, qtype)
        assert got is not None and got.rcode == 5 and not got.answer and not got.authority


def test_big_headless_service(index: ClusterIndex) -> None:
    """A headless service with 200 ready endpoints in two slices answers all 200 addresses."""
    got = ask(index, SETTINGS, f"big.testns.svc.{Z}", "A")
    assert got is not None
    expected = [f"big.testns.svc.{Z} 5 IN A 10.200.{i // 100}.{i % 100 + 1}" for i in range(200)]
    assert lines(got.answer) == parsed(expected)
    srv = ask(index, SETTINGS, f"_http._tcp.big.testns.svc.{Z}", "SRV")
    assert srv is not None and len(srv.answer) == 200 and len(srv.additional) == 200
    assert {rr.rdata.weight for rr in srv.answer} == {1}  # 100 // 200, at least 1


def test_wildcard_listen_address_has_no_glue() -> None:
    """With kdns listening on a wildcard address the apex NS has no glue and ns.dns has no A."""
    for address in ("0.0.0.0", "::"):
        settings = Settings(dns_address=address)
        index = build(settings)
        run(
            [
                Case(Z, "NS", answer=(f"{Z} 5 IN NS ns.dns.{Z}",)),
                Case(f"ns.dns.{Z}", "A"),
                Case(f"ns.dns.{Z}", "AAAA"),
            ],
            index,
            settings,
        )


def test_ipv6_listen_address() -> None:
    """An IPv6 listen address is the AAAA glue of the NS and of ns.dns."""
    settings = Settings(dns_address="fd00::53")
    run(
        [
            Case(Z, "NS", answer=(f"{Z} 5 IN NS ns.dns.{Z}",), additional=(f"ns.dns.{Z} 5 IN AAAA fd00::53",)),
            Case(f"ns.dns.{Z}", "A"),
            Case(f"ns.dns.{Z}", "AAAA", answer=(f"ns.dns.{Z} 5 IN AAAA fd00::53",)),
        ],
        build(settings),
        settings,
    )


@pytest.mark.parametrize(("ttl", "soa_ttl"), [(0, 0), (30, 30), (600, 300)])
def test_ttls_follow_the_settings(ttl: int, soa_ttl: int) -> None:
    """Records use the ttl setting, the SOA record min(ttl, 300), its minimum the ttl; TXT 28800."""
    settings = Settings(ttl=ttl)
    index = build(settings)
    zone_soa = soa(Z, SERIAL, soa_ttl, ttl)
    run(
        [
            Case(f"svc1.testns.svc.{Z}", "A", answer=(f"svc1.testns.svc.{Z} {ttl} IN A 10.0.0.1",)),
            Case(f"svc1.testns.svc.{Z}", "AAAA", authority=(zone_soa,)),
            Case(f"nope.testns.svc.{Z}", "A", NXDOMAIN, authority=(zone_soa,)),
            Case(Z, "SOA", answer=(zone_soa,)),
            Case(f"dns-version.{Z}", "TXT", answer=(f'dns-version.{Z} 28800 IN TXT "1.1.0"',)),
        ],
        index,
        settings,
    )


def test_other_cluster_zone() -> None:
    """A cluster zone other than cluster.local. serves the same names and leaves cluster.local. alone."""
    settings = Settings(zone="Corp.Example")
    index = build(settings)
    zone = "corp.example."
    run(
        [
            Case(f"svc1.testns.svc.{zone}", "A", answer=(f"svc1.testns.svc.{zone} 5 IN A 10.0.0.1",)),
            Case(zone, "SOA", answer=(soa(zone, SERIAL, cluster=zone),)),
            Case("1.0.0.10.in-addr.arpa.", "PTR", answer=(f"1.0.0.10.in-addr.arpa. 5 IN PTR svc1.testns.svc.{zone}",)),
            Case("9.9.9.10.in-addr.arpa.", "PTR", NXDOMAIN, authority=(soa("in-addr.arpa.", SERIAL, cluster=zone),)),
            Case(
                f"external-to-service.testns.svc.{zone}",
                "A",
                answer=(f"external-to-service.testns.svc.{zone} 5 IN CNAME svc1.testns.svc.cluster.local.",),
            ),
        ],
        index,
        settings,
    )
    assert ask(index, settings, f"svc1.testns.svc.{Z}", "A") is None


PODS_INSECURE = [
    Case(f"10-9-9-9.testns.pod.{Z}", "A", answer=(f"10-9-9-9.testns.pod.{Z} 5 IN A 10.9.9.9",)),
    Case(f"10-9-9-9.testns.pod.{Z}", "AAAA"),
    Case(f"10-244-0-2.testns.pod.{Z}", "A", answer=(f"10-244-0-2.testns.pod.{Z} 5 IN A 10.244.0.2",)),
    Case(f"fd00--9.testns.pod.{Z}", "AAAA", answer=(f"fd00--9.testns.pod.{Z} 5 IN AAAA fd00::9",)),
    Case(f"10-9-9-9.nons.pod.{Z}", "A", NXDOMAIN),
    Case(f"10-9-9-9.ghostns.pod.{Z}", "A", NXDOMAIN),
    Case(f"not-an-ip.testns.pod.{Z}", "A", NXDOMAIN),
    Case(f"testns.pod.{Z}", "A"),
    Case(f"pod.{Z}", "A"),
]

PODS_DISABLED = [
    Case(f"10-244-0-1.testns.pod.{Z}", "A", NXDOMAIN),
    Case(f"10-9-9-9.testns.pod.{Z}", "A", NXDOMAIN),
    # Nothing exists below pod.<zone>, as in CoreDNS (docs/dns-rules.md R5).
    Case(f"testns.pod.{Z}", "A", NXDOMAIN),
    Case(f"nons.pod.{Z}", "A", NXDOMAIN),
    Case(f"pod.{Z}", "A"),
]


@pytest.mark.parametrize(("mode", "cases"), [("insecure", PODS_INSECURE), ("disabled", PODS_DISABLED)])
def test_pods_modes(mode: str, cases: list[Case]) -> None:
    """Pod names follow the pods setting: any address in insecure mode, none in disabled mode."""
    settings = Settings(pods=mode)
    run(cases, build(settings), settings)


# --- incremental updates ------------------------------------------------------------------


class Cluster:
    """An index fed one commit at a time, with the store's version counter."""

    def __init__(self) -> None:
        self.index = build()
        self.version = SERIAL

    def commit(self, *changes: tuple[str, object, object]) -> None:
        events = []
        for kind, obj, old in changes:
            self.version += 1
            events.append(Event(kind, obj, old, self.version))
        heard: list[object] = []
        stop = self.index.on_change(heard.append)
        self.index.apply(events)
        stop()
        assert self.index.serial == self.version and len(heard) == 1

    def add(self, *objects: object) -> None:
        self.commit(*(("ADDED", o, None) for o in objects))

    def change(self, new: object, old: object) -> None:
        self.commit(("MODIFIED", new, old))

    def delete(self, *objects: object) -> None:
        self.commit(*(("DELETED", o, o) for o in objects))

    def check(self, *cases: Case) -> None:
        run(list(cases), self.index)

    def soa(self) -> str:
        return soa(Z, self.version)


def test_services_come_change_and_go() -> None:
    """Adding, changing and deleting a Service shows in the next answer, PTR and serial included."""
    c = Cluster()
    new = k.service("new", "testns", "10.0.0.50", ports=[k.port("http", 80)])
    c.add(new)
    c.check(
        Case(f"new.testns.svc.{Z}", "A", answer=(f"new.testns.svc.{Z} 5 IN A 10.0.0.50",)),
        Case("50.0.0.10.in-addr.arpa.", "PTR", answer=(f"50.0.0.10.in-addr.arpa. 5 IN PTR new.testns.svc.{Z}",)),
    )
    moved = k.service("new", "testns", "10.0.0.51", "fd00::51", ports=[k.port("web", 80)])
    c.change(moved, new)
    c.check(
        Case(f"new.testns.svc.{Z}", "A", answer=(f"new.testns.svc.{Z} 5 IN A 10.0.0.51",)),
        Case(f"new.testns.svc.{Z}", "AAAA", answer=(f"new.testns.svc.{Z} 5 IN AAAA fd00::51",)),
        Case("50.0.0.10.in-addr.arpa.", "PTR", NXDOMAIN, authority=(soa("in-addr.arpa.", c.version),)),
        Case(f"_http._tcp.new.testns.svc.{Z}", "SRV", NXDOMAIN, authority=(c.soa(),)),
    )
    c.delete(moved)
    c.check(
        Case(f"new.testns.svc.{Z}", "A", NXDOMAIN, authority=(c.soa(),)),
        Case("51.0.0.10.in-addr.arpa.", "PTR", NXDOMAIN, authority=(soa("in-addr.arpa.", c.version),)),
    )


def test_service_turns_external_and_back() -> None:
    """A Service that becomes an ExternalName loses its address and endpoint names, and regains them."""
    c = Cluster()
    old = k.fixture_objects()[2]
    assert old.meta.name == "svc1"
    external = k.service("svc1", "testns", external="example.org")
    c.change(external, old)
    c.check(
        Case(f"svc1.testns.svc.{Z}", "A", answer=(f"svc1.testns.svc.{Z} 5 IN CNAME example.org.",)),
        Case(f"ep1a.svc1.testns.svc.{Z}", "A", NXDOMAIN, authority=(c.soa(),)),
        Case("1.0.0.172.in-addr.arpa.", "PTR", NXDOMAIN, authority=(soa("in-addr.arpa.", c.version),)),
    )
    c.change(old, external)
    c.check(
        Case(f"svc1.testns.svc.{Z}", "A", answer=(f"svc1.testns.svc.{Z} 5 IN A 10.0.0.1",)),
        Case("1.0.0.172.in-addr.arpa.", "PTR", answer=(f"1.0.0.172.in-addr.arpa. 5 IN PTR ep1a.svc1.testns.svc.{Z}",)),
    )


def test_slices_come_change_and_go() -> None:
    """EndpointSlice changes update headless answers, endpoint names, SRV and PTR at once."""
    c = Cluster()
    hdls = f"notready.testns.svc.{Z}"
    first = k.slice_("notready-b", "testns", "notready", [k.endpoint("172.0.1.1", hostname="web-0")], [k.HTTP])
    c.add(first)
    c.check(
        Case(hdls, "A", answer=(f"{hdls} 5 IN A 172.0.1.1",)),
        Case(f"web-0.{hdls}", "A", answer=(f"web-0.{hdls} 5 IN A 172.0.1.1",)),
        Case(
            f"_http._tcp.{hdls}",
            "SRV",
            answer=(f"_http._tcp.{hdls} 5 IN SRV 0 100 8080 web-0.{hdls}",),
            additional=(f"web-0.{hdls} 5 IN A 172.0.1.1",),
        ),
        Case("1.1.0.172.in-addr.arpa.", "PTR", answer=(f"1.1.0.172.in-addr.arpa. 5 IN PTR web-0.{hdls}",)),
    )
    second = k.slice_(
        "notready-b",
        "testns",
        "notready",
        [k.endpoint("172.0.1.1", hostname="web-0", ready=False), k.endpoint("172.0.1.2", hostname="web-1")],
        [k.HTTP],
    )
    c.change(second, first)
    c.check(
        Case(hdls, "A", answer=(f"{hdls} 5 IN A 172.0.1.2",)),
        Case(f"web-0.{hdls}", "A", NXDOMAIN, authority=(c.soa(),)),
        Case("1.1.0.172.in-addr.arpa.", "PTR", NXDOMAIN, authority=(soa("in-addr.arpa.", c.version),)),
        Case("2.1.0.172.in-addr.arpa.", "PTR", answer=(f"2.1.0.172.in-addr.arpa. 5 IN PTR web-1.{hdls}",)),
    )
    # Relabelled to another Service: it leaves the first and joins the second.
    relabelled = k.slice_("notready-b", "testns", "noslice", second.endpoints, [k.HTTP])
    c.change(relabelled, second)
    c.check(
        Case(hdls, "A", NXDOMAIN, authority=(c.soa(),)),
        Case(f"noslice.testns.svc.{Z}", "A", answer=(f"noslice.testns.svc.{Z} 5 IN A 172.0.1.2",)),
        Case(
            "2.1.0.172.in-addr.arpa.",
            "PTR",
            answer=(f"2.1.0.172.in-addr.arpa. 5 IN PTR web-1.noslice.testns.svc.{Z}",),
        ),
    )
    c.delete(relabelled)
    c.check(
        Case(f"noslice.testns.svc.{Z}", "A", NXDOMAIN, authority=(c.soa(),)),
        Case("2.1.0.172.in-addr.arpa.", "PTR", NXDOMAIN, authority=(soa("in-addr.arpa.", c.version),)),
    )


def test_one_of_two_duplicate_slices_goes() -> None:
    """An address two slices share stays while either slice still holds it."""
    c = Cluster()
    objects = {o.meta.name: o for o in k.fixture_objects()}
    c.delete(objects["hdls1-b"])
    c.check(
        Case(f"172-0-0-12.hdls1.testns.svc.{Z}", "A", answer=(f"172-0-0-12.hdls1.testns.svc.{Z} 5 IN A 172.0.0.12",)),
        Case("12.0.0.172.in-addr.arpa.", "PTR", answer=(f"12.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-12.hdls1.testns.svc.{Z}",)),
    )


def test_namespaces_come_and_go() -> None:
    """Deleting a Namespace hides everything in it, PTR included; creating it shows them again."""
    c = Cluster()
    testns = k.namespace("testns")
    c.delete(testns)
    nx = (c.soa(),)
    c.check(
        Case(f"testns.svc.{Z}", "A", NXDOMAIN, authority=nx),
        Case(f"svc1.testns.svc.{Z}", "A", NXDOMAIN, authority=nx),
        Case(f"ep1a.svc1.testns.svc.{Z}", "A", NXDOMAIN, authority=nx),
        Case(f"10-244-0-1.testns.pod.{Z}", "A", NXDOMAIN, authority=nx),
        Case(f"_http._tcp.np.testns.nodeport.{Z}", "SRV", NXDOMAIN, authority=nx),
        Case("1.0.0.10.in-addr.arpa.", "PTR", NXDOMAIN, authority=(soa("in-addr.arpa.", c.version),)),
        Case("1.0.0.172.in-addr.arpa.", "PTR", NXDOMAIN, authority=(soa("in-addr.arpa.", c.version),)),
    )
    c.add(testns, k.namespace("ghostns"))
    c.check(
        Case(f"svc1.testns.svc.{Z}", "A", answer=(f"svc1.testns.svc.{Z} 5 IN A 10.0.0.1",)),
        Case(f"ghost.ghostns.svc.{Z}", "A", answer=(f"ghost.ghostns.svc.{Z} 5 IN A 10.0.0.9",)),
        Case("9.0.0.10.in-addr.arpa.", "PTR", answer=(f"9.0.0.10.in-addr.arpa. 5 IN PTR ghost.ghostns.svc.{Z}",)),
        Case("99.0.0.172.in-addr.arpa.", "PTR", answer=(f"99.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-99.ghost.ghostns.svc.{Z}",)),
    )


def test_shared_cluster_ip_hands_over() -> None:
    """When one of two Services sharing a cluster IP goes, the PTR names the other."""
    c = Cluster()
    objects = {o.meta.name: o for o in k.fixture_objects()}
    c.delete(objects["twin-a"])
    c.check(Case("7.0.0.10.in-addr.arpa.", "PTR", answer=(f"7.0.0.10.in-addr.arpa. 5 IN PTR twin-b.default.svc.{Z}",)))


def test_pods_come_change_and_go() -> None:
    """A pod name is verified while its pod runs, and not once it has finished or is gone."""
    c = Cluster()
    name = f"10-244-0-9.testns.pod.{Z}"
    running = k.pod("late", "testns", "10.244.0.9")
    c.add(running)
    c.check(Case(name, "A", answer=(f"{name} 5 IN A 10.244.0.9",)))
    failed = k.pod("late", "testns", "10.244.0.9", phase="Failed")
    c.change(failed, running)
    c.check(Case(name, "A", NXDOMAIN, authority=(c.soa(),)))
    c.change(running, failed)
    c.check(Case(name, "A", answer=(f"{name} 5 IN A 10.244.0.9",)))
    c.delete(running)
    c.check(Case(name, "A", NXDOMAIN, authority=(c.soa(),)))


def test_nodes_come_and_go() -> None:
    """Nodes added and deleted change NodePort SRV answers and the node. tree."""
    c = Cluster()
    objects = {o.meta.name: o for o in k.fixture_objects()}
    for name in ("node-a", "node-b", "node-c.zone.internal"):
        c.delete(objects[name])
    owner = f"_http._tcp.np.testns.nodeport.{Z}"
    c.check(
        Case(owner, "SRV", authority=(c.soa(),)),  # the port exists, no node to serve it
        Case(f"zone.internal.node.{Z}", "A", NXDOMAIN, authority=(c.soa(),)),
    )
    c.add(k.node("node-e", "10.1.0.5"))
    c.check(
        Case(
            owner,
            "SRV",
            answer=(f"{owner} 5 IN SRV 0 100 30080 node-e.node.{Z}",),
            additional=(f"node-e.node.{Z} 5 IN A 10.1.0.5",),
        ),
        Case(f"node-e.node.{Z}", "A", answer=(f"node-e.node.{Z} 5 IN A 10.1.0.5",)),
    )


def test_empty_commit_changes_nothing() -> None:
    """A commit with no events leaves the serial alone and tells no change."""
    index = build()
    before, heard = index.serial, []
    index.on_change(heard.append)
    index.apply([])
    assert (index.serial, heard) == (before, [])


def test_cname_chain_is_bounded() -> None:
    """A chain of ExternalNames is followed for at most MAX_CNAME_CHAIN CNAMEs, then left to the resolver."""
    from kdns.authority.answer import MAX_CNAME_CHAIN

    c = Cluster()
    links = MAX_CNAME_CHAIN + 3
    c.add(*(k.service(f"hop{i}", "testns", external=f"hop{i + 1}.testns.svc.{Z}") for i in range(links)))
    got = ask(c.index, SETTINGS, f"hop0.testns.svc.{Z}", "A")
    assert got is not None and got.rcode == 0 and not got.authority
    assert lines(got.answer) == parsed(
        f"hop{i}.testns.svc.{Z} 5 IN CNAME hop{i + 1}.testns.svc.{Z}" for i in range(MAX_CNAME_CHAIN)
    )
    # Entering the chain near its end follows it to the missing last name: NXDOMAIN.
    tail = ask(c.index, SETTINGS, f"hop{links - 2}.testns.svc.{Z}", "A")
    assert tail is not None and tail.rcode == 3 and len(tail.answer) == 2
    assert lines(tail.authority) == parsed([c.soa()])
