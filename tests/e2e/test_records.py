"""Every record family of the Kubernetes DNS spec, asked over real UDP and TCP sockets.

Each test is a table: (qname, qtype) -> rcode and the records, as zone text, with its
negative twins next to the positive answers. The tables are checked against kdns serving
`tests/fixtures/cluster.yaml` (and, in the first test, the example cluster `kdns serve`
loads with no flags), both over UDP and over TCP.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.update
import pytest

from tests.e2e.dnscheck import Case, check, exchange

CLUSTER = Path(__file__).resolve().parent.parent / "fixtures" / "cluster.yaml"
Z = "cluster.local."


@pytest.fixture
def shop(kdns_server: Callable[..., Any]) -> Any:
    """kdns in this process, serving the test cluster."""
    return kdns_server(CLUSTER)


# --- the example cluster, as `kdns serve` runs it ------------------------------------------

EXAMPLE = [
    # Cluster IPs are allocated deterministically from 10.96.0.0/12 above its static band.
    Case(f"my-service.default.svc.{Z}", "A", answer=(f"my-service.default.svc.{Z} 5 IN A 10.96.1.2",)),
    Case(f"my-service.default.svc.{Z}", "AAAA"),
    Case(f"my-nodeport.default.svc.{Z}", "A", answer=(f"my-nodeport.default.svc.{Z} 5 IN A 10.96.1.1",)),
    Case(
        f"_http._tcp.my-service.default.svc.{Z}", "SRV",
        answer=(f"_http._tcp.my-service.default.svc.{Z} 5 IN SRV 0 100 80 my-service.default.svc.{Z}",),
        additional=(f"my-service.default.svc.{Z} 5 IN A 10.96.1.2",),
    ),
    Case(
        f"db.default.svc.{Z}", "A",
        answer=(f"db.default.svc.{Z} 5 IN A 10.244.1.20", f"db.default.svc.{Z} 5 IN A 10.244.2.20"),
    ),
    Case(f"db-0.db.default.svc.{Z}", "A", answer=(f"db-0.db.default.svc.{Z} 5 IN A 10.244.1.20",)),
    Case(f"db-2.db.default.svc.{Z}", "A", "NXDOMAIN"),  # not ready
    Case(
        f"_postgres._tcp.db.default.svc.{Z}", "SRV",
        answer=(
            f"_postgres._tcp.db.default.svc.{Z} 5 IN SRV 0 50 5432 db-0.db.default.svc.{Z}",
            f"_postgres._tcp.db.default.svc.{Z} 5 IN SRV 0 50 5432 db-1.db.default.svc.{Z}",
        ),
        additional=(f"db-0.db.default.svc.{Z} 5 IN A 10.244.1.20", f"db-1.db.default.svc.{Z} 5 IN A 10.244.2.20"),
    ),
    Case(f"docs.default.svc.{Z}", "A", answer=(f"docs.default.svc.{Z} 5 IN CNAME docs.example.com.",)),
    Case(f"legacy-db.default.svc.{Z}", "A", answer=(f"legacy-db.default.svc.{Z} 5 IN A 192.0.2.10",)),
    Case(f"primary.legacy-db.default.svc.{Z}", "A", answer=(f"primary.legacy-db.default.svc.{Z} 5 IN A 192.0.2.10",)),
    Case("2.1.96.10.in-addr.arpa.", "PTR", answer=(f"2.1.96.10.in-addr.arpa. 5 IN PTR my-service.default.svc.{Z}",)),
    Case("20.1.244.10.in-addr.arpa.", "PTR", answer=(f"20.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.{Z}",)),
    Case(
        f"_http._tcp.my-nodeport.default.nodeport.{Z}", "SRV",
        answer=(
            f"_http._tcp.my-nodeport.default.nodeport.{Z} 5 IN SRV 0 50 30007 node-1.node.{Z}",
            f"_http._tcp.my-nodeport.default.nodeport.{Z} 5 IN SRV 0 50 30007 node-2.node.{Z}",
        ),
        additional=(f"node-1.node.{Z} 5 IN A 10.0.0.11", f"node-2.node.{Z} 5 IN A 10.0.0.12"),
    ),
    Case(f"no-such-service.default.svc.{Z}", "A", "NXDOMAIN"),
]


def test_example_cluster(kdns_process: Callable[..., Any]) -> None:
    """`kdns serve` with no manifest flag answers the example cluster of zones/ over UDP and TCP."""
    check(kdns_process(manifests=None), EXAMPLE)


# --- one family per test --------------------------------------------------------------------


def test_cluster_ip_a(shop: Any) -> None:
    """A ClusterIP service answers its cluster IP, endpoints or not; other types are NODATA, unknown names NXDOMAIN."""
    check(shop, [
        Case(f"web.shop.svc.{Z}", "A", answer=(f"web.shop.svc.{Z} 5 IN A 10.96.0.10",)),  # no pods: still answers
        Case(f"plain.shop.svc.{Z}", "A", answer=(f"plain.shop.svc.{Z} 5 IN A 10.96.0.11",)),
        Case(f"web.shop.svc.{Z}", "AAAA"),
        Case(f"web.shop.svc.{Z}", "TXT"),
        Case(f"web.shop.svc.{Z}", "CNAME"),
        Case(f"web.shop.svc.{Z}", "MX"),
        Case(f"shop.svc.{Z}", "A"),  # a namespace: NODATA
        Case(f"default.svc.{Z}", "A"),  # even one without services
        Case(f"svc.{Z}", "A"),
        Case(f"nope.shop.svc.{Z}", "A", "NXDOMAIN"),
        Case(f"nope.shop.svc.{Z}", "TXT", "NXDOMAIN"),
        Case(f"web.nowhere.svc.{Z}", "A", "NXDOMAIN"),
        Case(f"nowhere.svc.{Z}", "A", "NXDOMAIN"),
        Case(f"web.shop.pood.{Z}", "A", "NXDOMAIN"),
        Case(f"foo.{Z}", "A", "NXDOMAIN"),
        Case(f"a.b.c.web.shop.svc.{Z}", "A", "NXDOMAIN"),  # too many labels
        Case(f"*.shop.svc.{Z}", "A", "NXDOMAIN"),  # no wildcards
        Case(f"web\\.shop.svc.{Z}", "A", "NXDOMAIN"),  # one label holding a dot is not two labels
    ])


def test_dual_stack(shop: Any) -> None:
    """A PreferDualStack service answers A and AAAA from its clusterIPs; a single-family service is NODATA for the other."""
    check(shop, [
        Case(f"dual.shop.svc.{Z}", "A", answer=(f"dual.shop.svc.{Z} 5 IN A 10.96.0.12",)),
        Case(f"dual.shop.svc.{Z}", "AAAA", answer=(f"dual.shop.svc.{Z} 5 IN AAAA fd00:10:96::12",)),
        Case(
            f"_http._tcp.dual.shop.svc.{Z}", "SRV",
            answer=(f"_http._tcp.dual.shop.svc.{Z} 5 IN SRV 0 100 80 dual.shop.svc.{Z}",),
            additional=(f"dual.shop.svc.{Z} 5 IN A 10.96.0.12", f"dual.shop.svc.{Z} 5 IN AAAA fd00:10:96::12"),
        ),
        Case(f"six.shop.svc.{Z}", "AAAA", answer=(f"six.shop.svc.{Z} 5 IN AAAA fd00:10:96::13",)),
        Case(f"six.shop.svc.{Z}", "A"),
        Case(f"web.shop.svc.{Z}", "AAAA"),
    ])


def test_headless(shop: Any) -> None:
    """A headless service answers one address per ready endpoint, and each endpoint by hostname or dashed IP."""
    check(shop, [
        Case(
            f"api.shop.svc.{Z}", "A",
            answer=(f"api.shop.svc.{Z} 5 IN A 10.244.0.10", f"api.shop.svc.{Z} 5 IN A 10.244.0.11"),
        ),
        Case(f"api.shop.svc.{Z}", "AAAA"),
        Case(f"api-0.api.shop.svc.{Z}", "A", answer=(f"api-0.api.shop.svc.{Z} 5 IN A 10.244.0.10",)),
        Case(f"10-244-0-11.api.shop.svc.{Z}", "A", answer=(f"10-244-0-11.api.shop.svc.{Z} 5 IN A 10.244.0.11",)),
        Case(f"10-244-0-10.api.shop.svc.{Z}", "A", "NXDOMAIN"),  # named by its hostname instead
        Case(f"api-2.api.shop.svc.{Z}", "A", "NXDOMAIN"),  # not ready
        Case(f"10-244-0-12.api.shop.svc.{Z}", "A", "NXDOMAIN"),
        Case(f"nobody.api.shop.svc.{Z}", "A", "NXDOMAIN"),
        Case(f"idle.shop.svc.{Z}", "A", "NXDOMAIN"),  # no ready endpoint at all (spec §2.4.1)
        Case(f"idle.shop.svc.{Z}", "SRV", "NXDOMAIN"),
        Case(f"v6db.shop.svc.{Z}", "AAAA", answer=(f"v6db.shop.svc.{Z} 5 IN AAAA fd00:10:244::20",)),
        Case(f"v6db.shop.svc.{Z}", "A"),
        Case(
            f"fd00-10-244--20.v6db.shop.svc.{Z}", "AAAA",
            answer=(f"fd00-10-244--20.v6db.shop.svc.{Z} 5 IN AAAA fd00:10:244::20",),
        ),
        # Dual-stack headless: one slice per family; each endpoint name answers its own family.
        Case(f"pair.shop.svc.{Z}", "A", answer=(f"pair.shop.svc.{Z} 5 IN A 10.244.0.40",)),
        Case(f"pair.shop.svc.{Z}", "AAAA", answer=(f"pair.shop.svc.{Z} 5 IN AAAA fd00:10:244::40",)),
        Case(f"10-244-0-40.pair.shop.svc.{Z}", "A", answer=(f"10-244-0-40.pair.shop.svc.{Z} 5 IN A 10.244.0.40",)),
        Case(f"10-244-0-40.pair.shop.svc.{Z}", "AAAA"),
        Case(
            f"fd00-10-244--40.pair.shop.svc.{Z}", "AAAA",
            answer=(f"fd00-10-244--40.pair.shop.svc.{Z} 5 IN AAAA fd00:10:244::40",),
        ),
    ])


def test_srv(shop: Any) -> None:
    """Named ports have SRV with the targets' addresses in additional; unnamed ports only on the bare name; wrong names none."""
    check(shop, [
        Case(
            f"_http._tcp.web.shop.svc.{Z}", "SRV",
            answer=(f"_http._tcp.web.shop.svc.{Z} 5 IN SRV 0 100 80 web.shop.svc.{Z}",),
            additional=(f"web.shop.svc.{Z} 5 IN A 10.96.0.10",),
        ),
        Case(
            f"web.shop.svc.{Z}", "SRV",
            answer=(f"web.shop.svc.{Z} 5 IN SRV 0 100 80 web.shop.svc.{Z}",),
            additional=(f"web.shop.svc.{Z} 5 IN A 10.96.0.10",),
        ),
        Case(
            f"_grpc._tcp.api.shop.svc.{Z}", "SRV",
            answer=(
                f"_grpc._tcp.api.shop.svc.{Z} 5 IN SRV 0 50 9000 api-0.api.shop.svc.{Z}",
                f"_grpc._tcp.api.shop.svc.{Z} 5 IN SRV 0 50 9000 10-244-0-11.api.shop.svc.{Z}",
            ),
            additional=(
                f"api-0.api.shop.svc.{Z} 5 IN A 10.244.0.10",
                f"10-244-0-11.api.shop.svc.{Z} 5 IN A 10.244.0.11",
            ),
        ),
        Case(
            f"api-0.api.shop.svc.{Z}", "SRV",
            answer=(f"api-0.api.shop.svc.{Z} 5 IN SRV 0 100 9000 api-0.api.shop.svc.{Z}",),
            additional=(f"api-0.api.shop.svc.{Z} 5 IN A 10.244.0.10",),
        ),
        Case(f"_http._tcp.web.shop.svc.{Z}", "A"),  # the SRV name exists, with SRV only
        Case(f"_tcp.web.shop.svc.{Z}", "SRV"),  # an empty non-terminal
        Case(f"_http._udp.web.shop.svc.{Z}", "SRV", "NXDOMAIN"),  # right name, wrong protocol
        Case(f"_https._tcp.web.shop.svc.{Z}", "SRV", "NXDOMAIN"),
        Case(f"http.tcp.web.shop.svc.{Z}", "SRV", "NXDOMAIN"),  # underscores are required
        # Its only port is unnamed: no _port name, but the bare name lists it (as CoreDNS).
        Case(
            f"plain.shop.svc.{Z}",
            "SRV",
            answer=(f"plain.shop.svc.{Z} 5 IN SRV 0 100 8080 plain.shop.svc.{Z}",),
            additional=(f"plain.shop.svc.{Z} 5 IN A 10.96.0.11",),
        ),
        Case(f"_tcp.plain.shop.svc.{Z}", "SRV", "NXDOMAIN"),
        Case(f"_grpc._tcp.idle.shop.svc.{Z}", "SRV", "NXDOMAIN"),  # no ready endpoint
    ])


def test_ptr(shop: Any) -> None:
    """Cluster and ready endpoint IPs (IPv4, full-nibble IPv6) have PTR; other addresses are NXDOMAIN with the reverse SOA."""
    v6_service = "2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa."
    v6_endpoint = "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa."
    v6_pair = "0.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa."
    v6_pod = "0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa."
    check(shop, [
        Case("10.0.96.10.in-addr.arpa.", "PTR", answer=(f"10.0.96.10.in-addr.arpa. 5 IN PTR web.shop.svc.{Z}",)),
        Case("12.0.96.10.in-addr.arpa.", "PTR", answer=(f"12.0.96.10.in-addr.arpa. 5 IN PTR dual.shop.svc.{Z}",)),
        Case(v6_service, "PTR", answer=(f"{v6_service} 5 IN PTR dual.shop.svc.{Z}",)),
        Case("10.0.244.10.in-addr.arpa.", "PTR", answer=(f"10.0.244.10.in-addr.arpa. 5 IN PTR api-0.api.shop.svc.{Z}",)),
        Case(
            "11.0.244.10.in-addr.arpa.", "PTR",
            answer=(f"11.0.244.10.in-addr.arpa. 5 IN PTR 10-244-0-11.api.shop.svc.{Z}",),
        ),
        Case(v6_endpoint, "PTR", answer=(f"{v6_endpoint} 5 IN PTR fd00-10-244--20.v6db.shop.svc.{Z}",)),
        Case(v6_pair, "PTR", answer=(f"{v6_pair} 5 IN PTR fd00-10-244--40.pair.shop.svc.{Z}",)),
        Case("10.0.96.10.in-addr.arpa.", "A"),
        Case("12.0.244.10.in-addr.arpa.", "PTR", "NXDOMAIN"),  # not ready
        Case("20.0.244.10.in-addr.arpa.", "PTR", "NXDOMAIN"),  # idle's not-ready pod
        Case("30.0.244.10.in-addr.arpa.", "PTR", "NXDOMAIN"),  # a pod no service selects
        Case(v6_pod, "PTR", "NXDOMAIN"),
        Case("9.9.9.9.in-addr.arpa.", "PTR", "NXDOMAIN"),
        Case("1.0.0.10.in-addr.arpa.", "PTR", "NXDOMAIN"),  # a node address
        Case("0.96.10.in-addr.arpa.", "PTR"),  # an empty non-terminal
        Case("300.0.96.10.in-addr.arpa.", "PTR", "NXDOMAIN"),
        Case(f"web.shop.svc.{Z}", "PTR"),  # a forward name that exists
    ])


def test_external_name(shop: Any) -> None:
    """An ExternalName service is a CNAME, chased inside the zone; without an upstream an outside target is the CNAME alone."""
    check(shop, [
        Case(f"ext.shop.svc.{Z}", "CNAME", answer=(f"ext.shop.svc.{Z} 5 IN CNAME www.example.com.",)),
        Case(f"ext.shop.svc.{Z}", "A", answer=(f"ext.shop.svc.{Z} 5 IN CNAME www.example.com.",)),
        Case(f"ext.shop.svc.{Z}", "AAAA", answer=(f"ext.shop.svc.{Z} 5 IN CNAME www.example.com.",)),
        Case(
            f"alias.shop.svc.{Z}", "A",
            answer=(f"alias.shop.svc.{Z} 5 IN CNAME web.shop.svc.{Z}", f"web.shop.svc.{Z} 5 IN A 10.96.0.10"),
        ),
        Case(f"alias.shop.svc.{Z}", "CNAME", answer=(f"alias.shop.svc.{Z} 5 IN CNAME web.shop.svc.{Z}",)),
        # The chain ends in NODATA: the CNAME, and the SOA of the zone it ends in (RFC 6604).
        Case(
            f"alias.shop.svc.{Z}", "AAAA",
            answer=(f"alias.shop.svc.{Z} 5 IN CNAME web.shop.svc.{Z}",),
            negative=True,
        ),
        # A chain into the zone that ends nowhere: the CNAME, NXDOMAIN, and the SOA (RFC 6604).
        Case(f"dangling.shop.svc.{Z}", "A", "NXDOMAIN", answer=(f"dangling.shop.svc.{Z} 5 IN CNAME gone.shop.svc.{Z}",)),
        Case(f"x.ext.shop.svc.{Z}", "A", "NXDOMAIN"),
        Case(f"ipext.shop.svc.{Z}", "A", "NXDOMAIN"),  # an IP address is no CNAME target
        Case(f"ipext.shop.svc.{Z}", "CNAME", "NXDOMAIN"),
        Case(f"_http._tcp.ext.shop.svc.{Z}", "SRV", "NXDOMAIN"),
    ])


def test_schema_version(shop: Any) -> None:
    """dns-version.<zone> answers TXT "1.1.0" with TTL 28800, and NODATA for other types."""
    check(shop, [
        Case(f"dns-version.{Z}", "TXT", answer=(f'dns-version.{Z} 28800 IN TXT "1.1.0"',)),
        Case(f"dns-version.{Z}", "A"),
        Case(f"x.dns-version.{Z}", "TXT", "NXDOMAIN"),
    ])


def test_apex(shop: Any) -> None:
    """The apex answers SOA (serial = the registry's resource version) and NS with glue; other types are NODATA."""
    serial = shop.write(lambda store: store.resource_version)
    soa = f"{Z} 5 IN SOA ns.dns.{Z} hostmaster.{Z} {serial} 7200 1800 86400 5"
    check(shop, [
        Case(Z, "SOA", answer=(soa,)),
        Case(Z, "NS", answer=(f"{Z} 5 IN NS ns.dns.{Z}",), additional=(f"ns.dns.{Z} 5 IN A 127.0.0.1",)),
        Case(Z, "A"),
        Case(Z, "TXT"),
        Case(f"ns.dns.{Z}", "A", answer=(f"ns.dns.{Z} 5 IN A 127.0.0.1",)),
        Case(f"dns.{Z}", "A"),
        Case(
            "in-addr.arpa.", "SOA",
            answer=(f"in-addr.arpa. 5 IN SOA ns.dns.{Z} hostmaster.{Z} {serial} 7200 1800 86400 5",),
        ),
        Case("ip6.arpa.", "A"),
    ], serial=serial)


POD_CASES = {
    # name -> answer in verified, insecure, disabled mode (None: NXDOMAIN; "": NODATA)
    ("10-244-0-30.shop.pod", "A"): ("10.244.0.30", "10.244.0.30", None),
    ("10-244-0-30.shop.pod", "AAAA"): ("", "", None),
    ("10-1-2-3.shop.pod", "A"): (None, "10.1.2.3", None),  # no such pod
    ("10-244-0-30.default.pod", "A"): (None, "10.244.0.30", None),  # the pod is in another namespace
    ("fd00-10-244--30.shop.pod", "AAAA"): (None, "fd00:10:244::30", None),  # secondary podIPs are not verified
    ("10-244-0-30.nowhere.pod", "A"): (None, None, None),
    ("not-an-ip.shop.pod", "A"): (None, None, None),
    ("shop.pod", "A"): ("", "", None),  # pods disabled: nothing below pod.<zone> (as CoreDNS)
    ("nowhere.pod", "A"): (None, None, None),
    ("pod", "A"): ("", "", ""),
}


@pytest.mark.parametrize("mode", ["verified", "insecure", "disabled"])
def test_pods(kdns_server: Callable[..., Any], mode: str) -> None:
    """Pod names answer per the pods mode: only real pods (verified), any address (insecure), or nothing (disabled)."""
    column = ("verified", "insecure", "disabled").index(mode)
    cases = []
    for (relative, qtype), answers in POD_CASES.items():
        name, value = f"{relative}.{Z}", answers[column]
        if value is None:
            cases.append(Case(name, qtype, "NXDOMAIN"))
        else:
            cases.append(Case(name, qtype, answer=(f"{name} 5 IN {qtype} {value}",) if value else ()))
    check(kdns_server(CLUSTER, pods=mode), cases)


def test_node_ports(shop: Any) -> None:
    """A NodePort's named port has SRV under nodeport.<zone>, one per node, with the node addresses in additional."""
    srv = f"_http._tcp.web.shop.nodeport.{Z}"
    nodes = (f"node-a.node.{Z} 5 IN A 10.0.0.1", f"node-b.node.{Z} 5 IN A 10.0.0.2")
    check(shop, [
        Case(
            srv, "SRV",
            answer=(f"{srv} 5 IN SRV 0 50 30080 node-a.node.{Z}", f"{srv} 5 IN SRV 0 50 30080 node-b.node.{Z}"),
            additional=nodes,
        ),
        Case(
            f"web.shop.nodeport.{Z}", "SRV",
            answer=(
                f"web.shop.nodeport.{Z} 5 IN SRV 0 50 30080 node-a.node.{Z}",
                f"web.shop.nodeport.{Z} 5 IN SRV 0 50 30080 node-b.node.{Z}",
            ),
            additional=nodes,
        ),
        Case(srv, "A"),
        Case(f"_http._udp.web.shop.nodeport.{Z}", "SRV", "NXDOMAIN"),
        Case(f"plain.shop.nodeport.{Z}", "SRV", "NXDOMAIN"),  # a ClusterIP service has no node port
        Case(f"node-a.node.{Z}", "A", answer=(nodes[0],)),
        Case(f"node-b.node.{Z}", "A", answer=(nodes[1],)),
        Case(f"node-a.node.{Z}", "AAAA"),
        Case(f"node-c.node.{Z}", "A", "NXDOMAIN"),
    ])


def test_case_insensitive_and_echoed(shop: Any) -> None:
    """Names match in any case; owners and the zone part of SOA and SRV targets echo the asker's spelling."""
    zone = "cLuStEr.LoCaL."
    check(shop, [
        Case(f"WeB.ShOp.SvC.{zone}", "A", answer=(f"WeB.ShOp.SvC.{zone} 5 IN A 10.96.0.10",)),
        Case(
            f"_HTTP._TCP.web.shop.svc.{zone}", "SRV",
            answer=(f"_HTTP._TCP.web.shop.svc.{zone} 5 IN SRV 0 100 80 web.shop.svc.{zone}",),
            additional=(f"web.shop.svc.{zone} 5 IN A 10.96.0.10",),
        ),
        Case(f"API-0.Api.shop.svc.{zone}", "A", answer=(f"API-0.Api.shop.svc.{zone} 5 IN A 10.244.0.10",)),
        Case(f"NoPe.shop.svc.{zone}", "A", "NXDOMAIN"),  # SOA owner spelt as asked
        Case(f"WEB.shop.svc.{zone}", "AAAA"),
        Case("10.0.96.10.IN-ADDR.ARPA.", "PTR", answer=(f"10.0.96.10.IN-ADDR.ARPA. 5 IN PTR web.shop.svc.{Z}",)),
        Case("9.9.9.9.In-Addr.Arpa.", "PTR", "NXDOMAIN"),  # SOA owner as asked, naming the configured zone
        Case(f"DNS-VERSION.{zone}", "TXT", answer=(f'DNS-VERSION.{zone} 28800 IN TXT "1.1.0"',)),
    ])


def test_any_is_minimal(shop: Any) -> None:
    """ANY answers one RRset the name has (RFC 8482), NODATA when it has none, NXDOMAIN when it does not exist."""
    check(shop, [
        Case(f"web.shop.svc.{Z}", "ANY", answer=(f"web.shop.svc.{Z} 5 IN A 10.96.0.10",)),
        Case(f"dual.shop.svc.{Z}", "ANY", answer=(f"dual.shop.svc.{Z} 5 IN A 10.96.0.12",)),
        Case(f"six.shop.svc.{Z}", "ANY", answer=(f"six.shop.svc.{Z} 5 IN AAAA fd00:10:96::13",)),
        Case(f"ext.shop.svc.{Z}", "ANY", answer=(f"ext.shop.svc.{Z} 5 IN CNAME www.example.com.",)),
        Case(
            f"_http._tcp.web.shop.svc.{Z}", "ANY",
            answer=(f"_http._tcp.web.shop.svc.{Z} 5 IN SRV 0 100 80 web.shop.svc.{Z}",),
            additional=(f"web.shop.svc.{Z} 5 IN A 10.96.0.10",),
        ),
        Case(f"dns-version.{Z}", "ANY", answer=(f'dns-version.{Z} 28800 IN TXT "1.1.0"',)),
        Case(f"shop.svc.{Z}", "ANY"),
        Case(f"nope.shop.svc.{Z}", "ANY", "NXDOMAIN"),
    ])


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("qname", ["example.com.", "local.", "cluster.local.example.com.", "."])
def test_outside_the_zones_is_refused(shop: Any, qname: str, transport: str) -> None:
    """With no forwarding configured, a name outside the served zones is REFUSED with RA=0 and AA=0."""
    query = dns.message.make_query(qname, "A")
    reply = dns.message.from_wire(exchange(shop.address, shop.port, query.to_wire(), transport))
    assert reply.id == query.id
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & (dns.flags.RA | dns.flags.AA)
    assert [q.name.to_text() for q in reply.question] == [qname]
    assert not reply.answer and not reply.authority and not reply.additional


def _two_questions() -> bytes:
    query = dns.message.make_query(f"web.shop.svc.{Z}", "A", id=4242)
    wire = query.to_wire()
    question = wire[12:]
    return wire[:4] + struct.pack("!H", 2) + wire[6:12] + question + question


def _with_opcode(opcode: dns.opcode.Opcode) -> bytes:
    if opcode == dns.opcode.UPDATE:  # its first section is the zone, asked as SOA
        query: dns.message.Message = dns.update.UpdateMessage(Z, id=4242)
    else:
        query = dns.message.make_query(f"web.shop.svc.{Z}", "A", id=4242)
        query.set_opcode(opcode)
    return query.to_wire()


HEADER_ERRORS = [
    # (what, wire, rcode)
    ("opcode STATUS", _with_opcode(dns.opcode.STATUS), dns.rcode.NOTIMP),
    ("opcode NOTIFY", _with_opcode(dns.opcode.NOTIFY), dns.rcode.NOTIMP),
    ("opcode UPDATE", _with_opcode(dns.opcode.UPDATE), dns.rcode.NOTIMP),
    ("class CH", dns.message.make_query("version.bind.", "TXT", "CH", id=4242).to_wire(), dns.rcode.REFUSED),
    ("class CH in the zone", dns.message.make_query(f"web.shop.svc.{Z}", "A", "CH", id=4242).to_wire(), dns.rcode.REFUSED),
    ("EDNS version 1", dns.message.make_query(f"web.shop.svc.{Z}", "A", use_edns=1, id=4242).to_wire(), dns.rcode.BADVERS),
    ("AXFR", dns.message.make_query(Z, "AXFR", id=4242).to_wire(), dns.rcode.REFUSED),
    ("two questions", _two_questions(), dns.rcode.FORMERR),
    ("no question", struct.pack("!6H", 4242, 0x0100, 0, 0, 0, 0), dns.rcode.FORMERR),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(("what", "wire", "rcode"), HEADER_ERRORS, ids=[e[0] for e in HEADER_ERRORS])
def test_header_errors(shop: Any, transport: str, what: str, wire: bytes, rcode: dns.rcode.Rcode) -> None:
    """Requests kdns cannot serve get their defined error rcode, with the ID echoed and no records."""
    raw = exchange(shop.address, shop.port, wire, transport)
    reply = dns.message.from_wire(raw)
    assert raw[:2] == wire[:2], "ID echoed"
    assert reply.flags & dns.flags.QR
    assert reply.rcode() == rcode, dns.rcode.to_text(reply.rcode())
    assert reply.opcode() == dns.opcode.from_flags(struct.unpack("!H", wire[2:4])[0]), "opcode echoed"
    assert not reply.answer and not reply.authority and not reply.additional
    if rcode == dns.rcode.BADVERS:
        assert reply.edns == 0, "the reply's OPT says the version kdns speaks"
    # The connection (TCP) or socket is not spoiled: an ordinary question right after is answered.
    after = dns.message.from_wire(
        exchange(shop.address, shop.port, dns.message.make_query(f"web.shop.svc.{Z}", "A").to_wire(), transport)
    )
    assert after.rcode() == dns.rcode.NOERROR and len(after.answer) == 1
