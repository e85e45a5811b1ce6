"""The standard, to the letter, where people debugging with dig look (issue 16, items 1-7).

Each test asks a real kdns over real sockets (dnspython, raw bytes where dnspython would
not send the request, or `dig`) and asserts what the RFC named in its name says; where
Knot (Debian's knotd) has the same data, it is asked the same question side by side and
must agree. The EDE tests that need an upstream are in test_resolver.py.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.e2e.dnscheck import lines
from tests.upstream import KnotServer, knotd_path

TIMEOUT = 3.0
Z = "cluster.local."
NEEDS_KNOT = pytest.mark.skipif(knotd_path() is None, reason="knotd (Debian package knot) is not installed")
DIG = shutil.which("dig")

CLUSTER = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  ports:
    - {name: http, port: 80}
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: shop}
spec:
  ports:
    - {port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  ports:
    - {port: 5432}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: shop
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports:
  - {port: 5432, protocol: TCP}
endpoints:
  - addresses: [10.244.7.1]
    hostname: db-0
    conditions: {ready: true}
---
apiVersion: v1
kind: Service
metadata: {name: chain, namespace: shop}
spec:
  type: ExternalName
  externalName: c0.std.test
"""

# The static zone both kdns and Knot serve.
STD = """\
$ORIGIN std.test.
$TTL 300
@        IN SOA ns.std.test. hostmaster.std.test. 7 7200 1800 86400 60
@        IN NS  ns
ns       IN A   192.0.2.1
www      IN A   192.0.2.2
; a referral whose in-domain glue does not fit in 512 bytes
wide     IN NS  ns01.wide
""" + "".join(
    f"wide IN NS ns{i:02d}.wide\nns{i:02d}.wide IN A 192.0.2.{i}\nns{i:02d}.wide IN AAAA 2001:db8::{i:x}\n"
    for i in range(1, 30)
) + """\
; a referral that fits with its glue
narrow   IN NS  ns1.narrow
ns1.narrow IN A 192.0.2.99
; a CNAME chain of 12
""" + "".join(f"c{i} IN CNAME c{i + 1}\n" for i in range(12)) + "c12 IN A 192.0.2.12\n" + "".join(
    f'huge IN TXT "{i:03d} {"x" * 240}"\n' for i in range(280)
)


def query_wire(name: str, rdtype: str = "A", *, edns: bool = True, **make: Any) -> bytes:
    return dns.message.make_query(name, rdtype, use_edns=0 if edns else False, **make).to_wire()


def exchange(where: tuple[str, int], wire: bytes) -> bytes:
    """One UDP request, raw bytes in and out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(wire, where)
        return sock.recv(65535)


def flags(reply: bytes) -> int:
    return int(struct.unpack("!H", reply[2:4])[0])


@pytest.fixture
def zones(tmp_path: Path) -> Path:
    directory = tmp_path / "zones"
    directory.mkdir()
    (directory / "std.test.zone").write_text(STD)
    return directory


@pytest.fixture
def kdns(kdns_server: Callable[..., Any], zones: Path) -> Any:
    return kdns_server(CLUSTER, zones_dir=zones)


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[KnotServer]:
    with KnotServer(tmp_path / "knot", {"std.test.": STD}, host="127.0.0.63") as server:
        yield server


def both(kdns: Any, knot: KnotServer | None) -> list[tuple[str, tuple[str, int]]]:
    servers = [("kdns", (kdns.address, kdns.port))]
    if knot is not None:
        servers.append(("knot", (knot.host, knot.port)))
    return servers


# --- 1. EDNS in error replies (RFC 6891) ------------------------------------------------------


@NEEDS_KNOT
def test_notimp_to_an_edns_query_has_opt_and_no_cd_rfc6891_s7(kdns: Any, knot: KnotServer) -> None:
    """RFC 6891 §7: an EDNS query answered NOTIMP (opcode STATUS) gets an OPT record; the
    CD bit, meaningful only for QUERY (RFC 4035 §3.2.2), is not copied; RD is. As Knot."""
    request = dns.message.make_query("www.std.test.", "A", use_edns=0)
    request.set_opcode(dns.opcode.STATUS)
    request.flags |= dns.flags.CD | dns.flags.RD
    for who, where in both(kdns, knot):
        reply = dns.message.from_wire(exchange(where, request.to_wire()))
        assert reply.rcode() == dns.rcode.NOTIMP, who
        assert reply.edns == 0, who
        assert not reply.flags & dns.flags.CD and reply.flags & dns.flags.RD, who


def test_formerr_to_an_edns_query_has_opt_rfc6891_s7(kdns: Any) -> None:
    """RFC 6891 §7: a well-formed EDNS query kdns cannot take (two questions: FORMERR) still
    gets an OPT record in the reply."""
    request = dns.message.make_query("www.std.test.", "A", use_edns=0)
    wire = bytearray(request.to_wire())
    question_end = wire.index(b"\x00\x00\x01\x00\x01", 12) + 5
    question = wire[12:question_end]
    doubled = wire[:4] + b"\x00\x02" + wire[6:12] + question + question + wire[question_end:]
    reply = exchange((kdns.address, kdns.port), bytes(doubled))
    assert reply[3] & 0x0F == dns.rcode.FORMERR
    assert struct.unpack("!H", reply[10:12])[0] == 1  # ARCOUNT: the OPT record
    assert reply[-11:-8] == b"\x00\x00\x29"


@NEEDS_KNOT
def test_malformed_opt_option_length_is_formerr_rfc6891_s6_1_2(kdns: Any, knot: KnotServer) -> None:
    """RFC 6891 §6.1.2: options are code, length, data filling RDLENGTH exactly; an option
    whose length runs past the record is FORMERR (no OPT echoed: the OPT itself is broken), as Knot."""
    wire = bytearray(query_wire("www.std.test."))
    wire[-2:] = struct.pack("!H", 4)
    wire += struct.pack("!HH", 3, 10)  # NSID, claiming 10 bytes that are not there
    for who, where in both(kdns, knot):
        reply = exchange(where, bytes(wire))
        assert reply[3] & 0x0F == dns.rcode.FORMERR, who
        assert struct.unpack("!H", reply[10:12])[0] == 0, who


# --- 2. referrals: required glue (RFC 9471) -------------------------------------------------------


@NEEDS_KNOT
def test_referral_without_room_for_its_glue_is_truncated_rfc9471_s3(kdns: Any, knot: KnotServer) -> None:
    """RFC 9471 §3: in-domain glue of a referral must all be sent or TC set; without EDNS
    (512 bytes) the 29 name servers' addresses do not fit, so kdns, like Knot, sets TC;
    over TCP the whole referral comes, not authoritative, with every glue record."""
    request = query_wire("x.wide.std.test.", edns=False)
    for who, where in both(kdns, knot):
        reply = dns.message.from_wire(exchange(where, request))
        assert reply.flags & dns.flags.TC, who
    full = dns.query.tcp(dns.message.make_query("x.wide.std.test.", "A"), kdns.address, port=kdns.port, timeout=TIMEOUT)
    assert not full.flags & dns.flags.AA and not full.answer
    assert len(lines(full.authority)) == 29 and len(lines(full.additional)) == 58


def test_referral_that_fits_carries_its_glue_rfc9471(kdns: Any) -> None:
    """A referral whose glue fits is sent whole over UDP, without TC (RFC 9471 §3)."""
    reply = dns.message.from_wire(exchange((kdns.address, kdns.port), query_wire("a.narrow.std.test.", edns=False)))
    assert not reply.flags & dns.flags.TC
    assert lines(reply.authority) == ["narrow.std.test. 300 IN NS ns1.narrow.std.test."]
    assert lines(reply.additional) == ["ns1.narrow.std.test. 300 IN A 192.0.2.99"]


# --- 3. DNAME (RFC 6672) ----------------------------------------------------------------------


def test_a_zone_with_dname_is_refused_at_load_rfc6672(kdns_process: Callable[..., Any], tmp_path: Path) -> None:
    """RFC 6672: kdns does not synthesize from DNAME, so rather than serve NXDOMAIN below
    one it refuses the zone at start, naming the file and the record (exit 1)."""
    directory = tmp_path / "dname"
    directory.mkdir()
    (directory / "old.test.zone").write_text(
        "$TTL 300\n@ SOA ns hostmaster 1 7200 1800 86400 60\n@ NS ns\nns A 192.0.2.1\nlegacy DNAME new.test.\n"
    )
    with pytest.raises(AssertionError, match="kdns did not start") as failed:
        kdns_process("--zones-dir", str(directory))
    message = str(failed.value)
    assert "exit 1" in message
    assert "old.test.zone: legacy.old.test. DNAME: DNAME records (RFC 6672) are not supported" in message


# --- 4. NXDOMAIN where nothing is below (RFC 8020) -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "rcode"),
    [
        ("5.in-addr.arpa.", "NXDOMAIN"),  # no address known in 5/8
        ("10.in-addr.arpa.", "NOERROR"),  # the cluster IPs of 10.96/12 are below
        ("96.10.in-addr.arpa.", "NOERROR"),
        ("7.244.10.in-addr.arpa.", "NOERROR"),  # db's endpoint 10.244.7.1
        ("8.244.10.in-addr.arpa.", "NXDOMAIN"),
        ("0.ip6.arpa.", "NXDOMAIN"),
        ("d.f.ip6.arpa.", "NOERROR"),  # web's fd00:10:96:: cluster IP
        ("e.f.ip6.arpa.", "NXDOMAIN"),
    ],
)
def test_reverse_names_with_nothing_below_are_nxdomain_rfc8020(kdns: Any, name: str, rcode: str) -> None:
    """RFC 8020: NXDOMAIN means nothing exists below; a partial reverse name with a known
    address below is an empty non-terminal (NODATA), one with none is NXDOMAIN."""
    reply = kdns.resolve(name, "PTR")
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert not reply.answer and reply.flags & dns.flags.AA
    assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]


def test_reverse_prefix_follows_the_registry(kdns: Any) -> None:
    """When the last address below a prefix goes, the prefix is NXDOMAIN; when one comes back, NODATA."""
    assert kdns.resolve("7.244.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NOERROR

    def delete(store: Any) -> None:
        with store.transaction() as txn:
            txn.delete("EndpointSlice", "shop", "db-1")

    kdns.write(delete)
    assert kdns.resolve("7.244.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NXDOMAIN
    assert kdns.resolve("1.7.244.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NXDOMAIN


def test_pod_tree_with_pods_disabled_is_nxdomain_like_coredns(kdns_server: Callable[..., Any]) -> None:
    """With pods disabled nothing exists below pod.<zone> (CoreDNS answers NXDOMAIN there,
    RFC 8020); pod.<zone> itself stays an empty non-terminal."""
    kdns = kdns_server(CLUSTER, pods="disabled", zones_dir=None)
    for name in (f"shop.pod.{Z}", f"default.pod.{Z}", f"10-244-7-1.shop.pod.{Z}"):
        assert kdns.resolve(name).rcode() == dns.rcode.NXDOMAIN, name
    assert kdns.resolve(f"pod.{Z}").rcode() == dns.rcode.NOERROR
    assert kdns_server(CLUSTER, zones_dir=None).resolve(f"shop.pod.{Z}").rcode() == dns.rcode.NOERROR


# --- 5. QCLASS ANY, CNAME chains, TCP's limit, TCP under load ----------------------------------


@NEEDS_KNOT
def test_qclass_any_is_answered_like_knot_rfc1035_s3_2_5(kdns: Any, knot: KnotServer) -> None:
    """RFC 1035 §3.2.5: QCLASS * matches any class; kdns serves IN, and answers it from IN
    (not REFUSED), as Knot does: the question echoes class ANY, the records are IN."""
    request = query_wire("www.std.test.", rdclass=dns.rdataclass.ANY)
    for who, where in both(kdns, knot):
        reply = dns.message.from_wire(exchange(where, request))
        assert reply.rcode() == dns.rcode.NOERROR, who
        assert reply.question[0].rdclass == dns.rdataclass.ANY, who
        assert lines(reply.answer) == ["www.std.test. 300 IN A 192.0.2.2"], who
    cluster = dns.message.from_wire(exchange((kdns.address, kdns.port), query_wire(f"web.shop.svc.{Z}", rdclass="ANY")))
    assert [rrset.rdclass for rrset in cluster.answer] == [dns.rdataclass.IN]


def test_cname_chain_is_cut_after_8_everywhere_rfc1034_s3_6_2(kdns: Any) -> None:
    """RFC 1034 §3.6.2 lets a server follow CNAMEs; kdns follows at most 8 in one answer
    (README), in one zone and across zones (an ExternalName into a static zone's chain of 12)."""
    static = kdns.resolve("c0.std.test.")
    assert [rrset.rdtype for rrset in static.answer].count(dns.rdatatype.CNAME) == 8
    assert static.rcode() == dns.rcode.NOERROR
    crossing = kdns.resolve(f"chain.shop.svc.{Z}")
    cnames = [rrset for rrset in crossing.answer if rrset.rdtype == dns.rdatatype.CNAME]
    assert len(cnames) == 8 and crossing.rcode() == dns.rcode.NOERROR
    assert str(cnames[-1].name) == "c6.std.test."  # the ExternalName, then c0 ... c6


def test_rrset_too_large_for_tcp_is_servfail_rfc7766_s8(kdns: Any) -> None:
    """RFC 7766 §8 / RFC 1035 §4.2.2: a TCP message is at most 65535 bytes; an answer larger
    than that cannot be sent, and a truncated TCP reply would have nowhere to retry: SERVFAIL
    (with an Extended DNS Error saying why). Over UDP it is TC, as for any large answer."""
    over_tcp = kdns.resolve("huge.std.test.", "TXT", tcp=True, use_edns=0)
    assert over_tcp.rcode() == dns.rcode.SERVFAIL and not over_tcp.flags & dns.flags.TC
    assert [option.otype for option in over_tcp.options] == [dns.edns.OptionType.EDE]
    over_udp = kdns.resolve("huge.std.test.", "TXT", use_edns=0)
    assert over_udp.flags & dns.flags.TC and over_udp.rcode() == dns.rcode.NOERROR


def test_idle_tcp_clients_are_closed_fast_under_load_rfc7766_s6_2_3(kdns: Any) -> None:
    """RFC 7766 §6.2.3: under load a server may close idle connections. Past half of the 256
    connection slots, an idle client, or one stalled in the middle of a message, holds one
    for well under a second (not 10 s), and new clients are still answered."""
    stalled = socket.create_connection((kdns.address, kdns.port), timeout=TIMEOUT)
    stalled.sendall(b"\x00\x20\x12\x34")  # a 32-byte message announced, 2 bytes of it sent
    idle = [stalled] + [socket.create_connection((kdns.address, kdns.port), timeout=TIMEOUT) for _ in range(140)]
    try:
        started = time.monotonic()
        for sock in (stalled, idle[1]):
            assert sock.recv(1) == b""  # closed by kdns
        assert time.monotonic() - started < 2.0
        reply = kdns.resolve(f"web.shop.svc.{Z}", tcp=True)
        assert reply.rcode() == dns.rcode.NOERROR
    finally:
        for sock in idle:
            sock.close()


# --- 6. bare-name SRV lists unnamed ports (CoreDNS) ----------------------------------------------


@pytest.mark.skipif(DIG is None, reason="`dig` is not installed (Debian: apt-get install dnsutils)")
def test_bare_name_srv_lists_unnamed_ports_like_coredns(kdns: Any, tmp_path: Path) -> None:
    """Spec §2.3.2 gives SRV to named ports only; CoreDNS also lists unnamed ones on the bare
    service name, and dig users expect that: a ClusterIP service's port, a
    headless service's per ready endpoint. `_port._proto` names still need a named port."""
    assert DIG is not None
    argv = [DIG, f"@{kdns.address}", "-p", str(kdns.port), "+short", "SRV"]
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def short(name: str) -> list[str]:
        result = subprocess.run([*argv, name], capture_output=True, text=True, timeout=15, env=env, check=True)
        return sorted(result.stdout.split("\n")[:-1])

    assert short(f"plain.shop.svc.{Z}") == [f"0 100 8080 plain.shop.svc.{Z}"]
    assert short(f"db.shop.svc.{Z}") == [f"0 100 5432 db-0.db.shop.svc.{Z}"]
    assert short(f"_tcp.plain.shop.svc.{Z}") == []


# --- 7. Extended DNS Errors (RFC 8914) and NSID (RFC 5001) ---------------------------------------


@NEEDS_KNOT
def test_outside_name_without_forwarding_is_not_authoritative_rfc8914_s4_21(kdns: Any, knot: KnotServer) -> None:
    """RFC 8914 §4.21: REFUSED for a name the server is not authoritative for, with
    recursion off, carries EDE 20 Not Authoritative, as Knot's does."""
    for who, where in both(kdns, knot):
        reply = dns.message.from_wire(exchange(where, query_wire("www.example.org.")))
        assert reply.rcode() == dns.rcode.REFUSED, who
        assert [(o.code, o.otype) for o in reply.options] == [(20, dns.edns.OptionType.EDE)], who


def test_name_in_a_missing_namespace_says_so_rfc8914_s4_1(kdns: Any) -> None:
    """RFC 8914 §4.1 (Other, with EXTRA-TEXT): NXDOMAIN because the namespace does not exist
    says so; NXDOMAIN in a namespace that exists carries no EDE."""
    missing = kdns.resolve(f"web.nosuch.svc.{Z}", use_edns=0)
    assert missing.rcode() == dns.rcode.NXDOMAIN
    (option,) = missing.options
    assert (option.code, option.text) == (0, "namespace 'nosuch' does not exist")
    absent = kdns.resolve(f"nosuch.shop.svc.{Z}", use_edns=0)
    assert absent.rcode() == dns.rcode.NXDOMAIN and absent.options == ()


def test_nsid_names_the_replica_rfc5001(kdns_process: Callable[..., Any]) -> None:
    """RFC 5001 §2.1: a query with an empty NSID option gets the server's NSID (--nsid); one
    without the option gets none, and neither reply is sent to the other asker."""
    kdns = kdns_process("--nsid", "replica-7")
    asked = kdns.resolve(f"dns-version.{Z}", "TXT", use_edns=0, options=[dns.edns.NSIDOption(b"")])
    assert [option.nsid for option in asked.options] == [b"replica-7"]
    for _ in range(2):  # the second time from the ready-reply cache, if it kept one
        plain = kdns.resolve(f"dns-version.{Z}", "TXT", use_edns=0)
        assert plain.options == ()
        again = kdns.resolve(f"dns-version.{Z}", "TXT", use_edns=0, options=[dns.edns.NSIDOption(b"")])
        assert [option.nsid for option in again.options] == [b"replica-7"]


def test_nsid_is_off_by_default_rfc5001(kdns: Any) -> None:
    """Without --nsid, an NSID request gets no NSID option (RFC 5001 §2.1: MAY)."""
    reply = kdns.resolve(f"dns-version.{Z}", "TXT", use_edns=0, options=[dns.edns.NSIDOption(b"")])
    assert reply.rcode() == dns.rcode.NOERROR and reply.options == ()
