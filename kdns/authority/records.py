"""dnslib resource records, one builder per type.

Builders take plain values: owner and target names exactly as they must appear on the
wire (the caller decides their spelling, docs/dns-rules.md R2), as text or as a `DNSLabel` when one
name owns many records (parsed once), addresses as `ipaddress` objects, and the TTL.
Nothing here knows Kubernetes or decides what exists.
"""

from __future__ import annotations

from typing import TypeAlias

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RR, SOA, SRV, TXT, A, DNSLabel

from kdns.authority.names import IPAddress

# SOA timers (docs/dns-rules.md R19, CoreDNS's): refresh, retry and expire matter only to secondaries.
SOA_REFRESH = 7200
SOA_RETRY = 1800
SOA_EXPIRE = 86400

DomainName: TypeAlias = str | DNSLabel


def a(owner: DomainName, address: IPAddress, ttl: int) -> RR:
    return RR(owner, QTYPE.A, ttl=ttl, rdata=A(tuple(address.packed)))


def aaaa(owner: DomainName, address: IPAddress, ttl: int) -> RR:
    return RR(owner, QTYPE.AAAA, ttl=ttl, rdata=AAAA(tuple(address.packed)))


def address(owner: DomainName, ip: IPAddress, ttl: int) -> RR:
    """A for an IPv4 address, AAAA for an IPv6 one."""
    return a(owner, ip, ttl) if ip.version == 4 else aaaa(owner, ip, ttl)


def srv(owner: DomainName, target: DomainName, port: int, weight: int, ttl: int, priority: int = 0) -> RR:
    return RR(owner, QTYPE.SRV, ttl=ttl, rdata=SRV(priority, weight, port, target))


def ptr(owner: DomainName, target: DomainName, ttl: int) -> RR:
    return RR(owner, QTYPE.PTR, ttl=ttl, rdata=PTR(target))


def cname(owner: DomainName, target: DomainName, ttl: int) -> RR:
    return RR(owner, QTYPE.CNAME, ttl=ttl, rdata=CNAME(target))


def txt(owner: DomainName, text: str, ttl: int) -> RR:
    return RR(owner, QTYPE.TXT, ttl=ttl, rdata=TXT(text.encode()))


def ns(owner: DomainName, target: DomainName, ttl: int) -> RR:
    return RR(owner, QTYPE.NS, ttl=ttl, rdata=NS(target))


def zone_serial(version: int) -> int:
    """The SOA serial that registry version `version` shows: SOA serials are 32-bit
    numbers compared with RFC 1982 serial arithmetic (SERIAL_BITS 32), so the version
    wraps modulo 2^32 and 2^32 + 5 follows 2^32 - 1 as 5 (RFC 1982 §3.1: an increment
    of 1 is always less than 2^31)."""
    return version % 2**32


def soa(owner: DomainName, mname: DomainName, rname: DomainName, serial: int, minimum: int, ttl: int) -> RR:
    """The zone's SOA; `serial` is the registry version (`zone_serial` makes it 32-bit),
    `minimum` the negative-caching TTL (RFC 2308 §4)."""
    times = (zone_serial(serial), SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, minimum)
    return RR(owner, QTYPE.SOA, ttl=ttl, rdata=SOA(mname, rname, times))
