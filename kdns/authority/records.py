"""dnslib resource records, one builder per type.

Builders take plain values: owner and target names exactly as they must appear on the
wire (the caller decides their spelling, docs/dns-rules.md R2), as text or as a `DNSLabel` when one
name owns many records (parsed once), addresses as `ipaddress` objects, and the TTL.
Nothing here knows Kubernetes or decides what exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from dnslib import (
    AAAA,
    CLASS,
    CNAME,
    NS,
    PTR,
    QTYPE,
    RR,
    SOA,
    SRV,
    TXT,
    A,
    DNSBuffer,
    DNSLabel,
)

from kdns.authority.names import IPAddress

# SOA timers (docs/dns-rules.md R19, CoreDNS's): refresh, retry and expire matter only to secondaries.
SOA_REFRESH = 7200
SOA_RETRY = 1800
SOA_EXPIRE = 86400

DomainName: TypeAlias = str | DNSLabel


# The records most answers are made of (A, AAAA, SRV) are built without dnslib's checks.
# dnslib's constructors pass every field through a validating property (a range check or
# an isinstance each): for the ten-endpoint A and SRV answers a registry write sends back
# through the slow path that was most of the answer's CPU (bench/README.md "Where the
# answer path's extra CPU goes under writes"). What these builders are given is valid by
# construction (packed addresses, ports and weights of 16 bits, TTLs bounded by
# kdns.config), so they store the fields where dnslib's properties keep them, if this
# dnslib keeps them where `_stored_as_dnslib_does` found them when this module was
# loaded; otherwise they go through dnslib's constructors.
_new = object.__new__
_IN = CLASS.IN


def _fast_rr(owner: DomainName, rtype: int, ttl: int, rdata: Any) -> RR:
    record = _new(RR)
    record._rname = owner if isinstance(owner, DNSLabel) else DNSLabel(owner)
    record._rtype = rtype
    record._rclass = _IN
    record._ttl = ttl
    record.rdata = rdata
    return record


def _fast_address(rdata_type: type[A] | type[AAAA], packed: bytes) -> A | AAAA:
    rdata = _new(rdata_type)
    rdata._data = tuple(packed)
    return rdata


def _fast_srv(priority: int, weight: int, port: int, target: DomainName) -> SRV:
    rdata = _new(SRV)
    rdata._priority = priority
    rdata._weight = weight
    rdata._port = port
    rdata._target = target if isinstance(target, DNSLabel) else DNSLabel(target)
    return rdata


def _checked_rr(owner: DomainName, rtype: int, ttl: int, rdata: Any) -> RR:
    return RR(owner, rtype, ttl=ttl, rdata=rdata)


def _checked_address(rdata_type: type[A] | type[AAAA], packed: bytes) -> A | AAAA:
    return rdata_type(tuple(packed))


def _checked_srv(priority: int, weight: int, port: int, target: DomainName) -> SRV:
    return SRV(priority, weight, port, target)


def _stored_as_dnslib_does() -> bool:
    """Whether the fast builders make what dnslib's constructors make: the same fields
    and the same wire bytes, for one record of each type."""
    owner = DNSLabel("probe.example.")
    pairs = [
        (_checked_rr(owner, QTYPE.A, 7, _checked_address(A, bytes((192, 0, 2, 1)))),
         _fast_rr(owner, QTYPE.A, 7, _fast_address(A, bytes((192, 0, 2, 1))))),
        (_checked_rr("probe.example.", QTYPE.AAAA, 7, _checked_address(AAAA, bytes(range(16)))),
         _fast_rr("probe.example.", QTYPE.AAAA, 7, _fast_address(AAAA, bytes(range(16))))),
        (_checked_rr(owner, QTYPE.SRV, 7, _checked_srv(1, 2, 3, "target.example.")),
         _fast_rr(owner, QTYPE.SRV, 7, _fast_srv(1, 2, 3, "target.example."))),
    ]
    for checked, fast in pairs:
        if vars(checked).keys() != vars(fast).keys() or vars(checked.rdata) != vars(fast.rdata):
            return False
        wires = []
        for record in (checked, fast):
            buffer = DNSBuffer()
            record.pack(buffer)
            wires.append(buffer.data)
        if wires[0] != wires[1]:
            return False
    return True


_rr: Callable[[DomainName, int, int, Any], RR] = _checked_rr
_address_rdata: Callable[[type[A] | type[AAAA], bytes], A | AAAA] = _checked_address
_srv_rdata: Callable[[int, int, int, DomainName], SRV] = _checked_srv
FAST_BUILDERS = _stored_as_dnslib_does()
if FAST_BUILDERS:
    _rr, _address_rdata, _srv_rdata = _fast_rr, _fast_address, _fast_srv


def a(owner: DomainName, address: IPAddress, ttl: int) -> RR:
    return _rr(owner, QTYPE.A, ttl, _address_rdata(A, address.packed))


def aaaa(owner: DomainName, address: IPAddress, ttl: int) -> RR:
    return _rr(owner, QTYPE.AAAA, ttl, _address_rdata(AAAA, address.packed))


def address(owner: DomainName, ip: IPAddress, ttl: int) -> RR:
    """A for an IPv4 address, AAAA for an IPv6 one."""
    return a(owner, ip, ttl) if ip.version == 4 else aaaa(owner, ip, ttl)


def srv(owner: DomainName, target: DomainName, port: int, weight: int, ttl: int, priority: int = 0) -> RR:
    return _rr(owner, QTYPE.SRV, ttl, _srv_rdata(priority, weight, port, target))


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
