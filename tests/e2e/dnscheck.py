"""Answer checks for the end-to-end tests, written as zone text and asked over real sockets.

A `Case` is one question and what the reply must hold; `check` asks it over UDP and over
TCP with dnspython and compares every section order-insensitively, owner names and
target names case-sensitively (kdns must echo the asker's spelling). A negative answer
(NXDOMAIN, or NOERROR with an empty answer) must carry the zone's SOA in authority;
a positive one nothing there. Every answer from a served zone has AA set and RA clear.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TIMEOUT = 2.0
# `kdns serve` flags that keep a test's kdns to itself: registry in memory, no forwarding
# (names outside the zones are REFUSED whatever the host's resolv.conf says), API on a free port.
HERMETIC_FLAGS = ("--upstream", "none", "--ephemeral", "--api-port", "0")
TRANSPORTS = ("udp", "tcp")
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")


def soa(zone: str, serial: int, *, ttl: int = 5, cluster: str = "cluster.local.") -> str:
    """The SOA line kdns puts in authority for `zone` (docs/dns-rules.md R19); `cluster` as the SOA spells it."""
    return f"{zone} {min(ttl, 300)} IN SOA ns.dns.{cluster} hostmaster.{cluster} {serial} 7200 1800 86400 {ttl}"


def zone_of(qname: str, cluster: str = "cluster.local.") -> str:
    """The served zone of `qname`, spelt as the asker spelt it."""
    lower = qname.lower()
    for zone in (*REVERSE_ZONES, cluster):
        if lower == zone or lower.endswith("." + zone):
            return qname[len(qname) - len(zone) :]
    raise ValueError(f"{qname} is in no served zone")


def lines(section: Iterable[dns.rrset.RRset]) -> list[str]:
    """A reply section as sorted zone-text lines, names spelt as they came over the wire."""
    out: list[str] = []
    for rrset in section:
        head = f"{rrset.name.to_text()} {rrset.ttl} {dns.rdataclass.to_text(rrset.rdclass)} "
        head += dns.rdatatype.to_text(rrset.rdtype)
        out.extend(f"{head} {rdata.to_text()}" for rdata in rrset)
    return sorted(out)


def parsed(texts: Iterable[str]) -> list[str]:
    """Expected zone-text lines (`owner ttl class type rdata`) in the form `lines` writes."""
    out: list[str] = []
    for text in texts:
        owner, ttl, rdclass, rdtype, rdata = text.split(None, 4)
        value = dns.rdata.from_text(rdclass, rdtype, rdata)
        out.append(f"{owner} {int(ttl)} {rdclass.upper()} {rdtype.upper()} {value.to_text()}")
    return sorted(out)


def ask(address: str, port: int, qname: str, qtype: str, transport: str, **make: Any) -> dns.message.Message:
    """One question over `transport` ("udp" or "tcp"); dnspython checks ID and question."""
    query = dns.message.make_query(qname, qtype, **make)
    if transport == "tcp":
        return dns.query.tcp(query, address, port=port, timeout=TIMEOUT)
    return dns.query.udp(query, address, port=port, timeout=TIMEOUT)


@dataclass(frozen=True)
class Case:
    """One question and everything the reply must hold.

    `authority` None means: the zone's SOA (serial from the check) for a negative
    answer, nothing for a positive one. `negative` None means: NXDOMAIN, or an empty
    answer; True marks a CNAME chain that ends in NODATA. `zone` names the SOA's owner
    when it is not the zone of `qname` (a chain ending in another zone).
    """

    qname: str
    qtype: str
    rcode: str = "NOERROR"
    answer: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    authority: tuple[str, ...] | None = None
    negative: bool | None = None
    zone: str | None = None

    def __str__(self) -> str:
        return f"{self.qname} {self.qtype}"


def verify(reply: dns.message.Message, case: Case, serial: int, *, ttl: int = 5, cluster: str = "cluster.local.") -> None:
    """`reply` holds exactly what `case` says, AA set, RA clear, question echoed as asked."""
    where = f"{case}"
    assert dns.rcode.to_text(reply.rcode()) == case.rcode, f"{where}: rcode {dns.rcode.to_text(reply.rcode())}"
    assert reply.flags & dns.flags.AA, f"{where}: AA not set"
    assert not reply.flags & dns.flags.RA, f"{where}: RA set"
    assert not reply.flags & dns.flags.TC, f"{where}: TC set"
    assert [q.name.to_text() for q in reply.question] == [case.qname], f"{where}: question not echoed as asked"
    _same(where, "answer", lines(reply.answer), parsed(case.answer))
    _same(where, "additional", lines(reply.additional), parsed(case.additional))
    authority = case.authority
    if authority is None:
        negative = case.negative
        if negative is None:
            negative = case.rcode != "NOERROR" or not case.answer
        zone = case.zone or zone_of(case.qname, cluster)
        # The forward zone's SOA names its server in the asker's spelling (docs/dns-rules.md R2); the
        # reverse zones' SOA names the cluster zone as configured, which nobody asked.
        spelt = zone if zone.lower() == cluster else cluster
        authority = (soa(zone, serial, ttl=ttl, cluster=spelt),) if negative else ()
    _same(where, "authority", lines(reply.authority), parsed(authority))


def check(
    server: Any,
    cases: Sequence[Case],
    *,
    serial: int | None = None,
    ttl: int = 5,
    cluster: str = "cluster.local.",
    transports: Sequence[str] = TRANSPORTS,
) -> None:
    """Ask every case of the table over each transport and verify the replies.

    `server` has `.address` and `.port`; `serial` defaults to the one its apex SOA
    reports (asked over UDP once, before the table).
    """
    if serial is None:
        serial = apex_serial(server, cluster)
    for transport in transports:
        for case in cases:
            reply = ask(server.address, server.port, case.qname, case.qtype, transport)
            verify(reply, case, serial, ttl=ttl, cluster=cluster)


def apex_serial(server: Any, cluster: str = "cluster.local.") -> int:
    """The serial the zone's apex SOA carries right now."""
    reply = ask(server.address, server.port, cluster, "SOA", "udp")
    return reply.answer[0][0].serial


def _same(where: str, section: str, got: list[str], expected: list[str]) -> None:
    assert got == expected, f"{where}: {section}\n  got      {got}\n  expected {expected}"


# --- raw packets -----------------------------------------------------------------------


def exchange(address: str, port: int, wire: bytes, transport: str, timeout: float = TIMEOUT) -> bytes:
    """Send one raw message and return the raw reply (TCP framed by its 2-byte length)."""
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(wire, (address, port))
            data, _ = sock.recvfrom(65535)
            return data
    with socket.create_connection((address, port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        length = struct.unpack("!H", recv_exactly(sock, 2))[0]
        return recv_exactly(sock, length)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes from a stream socket; ConnectionError if it closes first."""
    data = b""
    while len(data) < size:  # bounded: each turn reads at least one byte or raises
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data
