"""dnslib resource records, one builder per type.

Builders take plain values: owner and target names exactly as they must appear on the
wire (the caller decides their spelling, docs/dns-rules.md R2), as text or as a `DNSLabel` when one
name owns many records (parsed once, `label`), addresses as `ipaddress` objects, and the TTL.
Nothing here knows Kubernetes or decides what exists.

The records are dnslib's own `RR` objects, made without dnslib's constructors: those
check every field through Python-level property setters and encode every name with
the idna codec, which made most of the cost of an answer. Here the fields are stored
as dnslib's constructors store them (tests/authority/test_records.py holds each
builder equal to dnslib's construction, attribute by attribute); the values need no
checks: TTLs and ports are checked where they come in (kdns.config, the registry's
validation), weights and serials are made in range, and names are checked as dnslib
checks them (`label`).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TypeAlias

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RR, SOA, SRV, TXT, A, DNSLabel

from kdns.authority.names import IPAddress

# SOA timers (docs/dns-rules.md R19, CoreDNS's): refresh, retry and expire matter only to secondaries.
SOA_REFRESH = 7200
SOA_RETRY = 1800
SOA_EXPIRE = 86400

DomainName: TypeAlias = str | DNSLabel

_new = object.__new__
# dnslib's QTYPE looks names up on every attribute access: read the numbers once.
_A, _AAAA, _SRV, _PTR, _CNAME, _TXT, _NS, _SOA = (
    QTYPE.A, QTYPE.AAAA, QTYPE.SRV, QTYPE.PTR, QTYPE.CNAME, QTYPE.TXT, QTYPE.NS, QTYPE.SOA,
)
_CLASS_IN = 1
_MAX_LABEL = 63


def label(name: DomainName) -> DNSLabel:
    """`DNSLabel(name)`, the same labels, without the idna codec for a plain name.

    A plain name is absolute, ASCII, without escapes, every label 1-63 bytes: dnslib's
    idna encoding leaves its bytes as they are. Anything else (an escape, a non-ASCII
    character, an empty or long label, a relative name) is dnslib's to read, and to
    refuse as it does."""
    if type(name) is not str:
        return name  # a DNSLabel already
    if name[-1:] == "." and name.isascii() and "\\" not in name and len(name) > 1:
        parts = name[:-1].encode("ascii").split(b".")
        if b"" not in parts and max(map(len, parts)) <= _MAX_LABEL:
            made = _new(DNSLabel)
            made.label = tuple(parts)
            return made
    return DNSLabel(name)


def _record(owner: DomainName, rtype: int, ttl: int, rdata: object) -> RR:
    """RR(owner, rtype, ttl=ttl, rdata=rdata), its fields stored as dnslib's setters store them."""
    made = _new(RR)
    made.__dict__ = {
        "_rname": owner if type(owner) is DNSLabel else label(owner), "_rtype": rtype, "_rclass": _CLASS_IN, "_ttl": ttl, "rdata": rdata,
    }
    return made


def _named(kind: type[CNAME], target: DomainName) -> CNAME:
    """CNAME/PTR/NS(target): RDATA that is one name."""
    made = _new(kind)
    made._label = label(target)
    return made


def address(owner: DomainName, ip: IPAddress, ttl: int) -> RR:
    """A for an IPv4 address, AAAA for an IPv6 one."""
    v4 = isinstance(ip, IPv4Address)
    rdata = _new(A if v4 else AAAA)
    rdata._data = tuple(ip.packed)
    return _record(owner, _A if v4 else _AAAA, ttl, rdata)


def srv(owner: DomainName, target: DomainName, port: int, weight: int, ttl: int, priority: int = 0) -> RR:
    rdata = _new(SRV)
    rdata.__dict__ = {"_priority": priority, "_weight": weight, "_port": port, "_target": label(target)}
    return _record(owner, _SRV, ttl, rdata)


def ptr(owner: DomainName, target: DomainName, ttl: int) -> RR:
    return _record(owner, _PTR, ttl, _named(PTR, target))


def cname(owner: DomainName, target: DomainName, ttl: int) -> RR:
    return _record(owner, _CNAME, ttl, _named(CNAME, target))


def txt(owner: DomainName, text: str, ttl: int) -> RR:
    return _record(owner, _TXT, ttl, TXT(text.encode()))


def ns(owner: DomainName, target: DomainName, ttl: int) -> RR:
    return _record(owner, _NS, ttl, _named(NS, target))


def zone_serial(version: int) -> int:
    """The SOA serial that registry version `version` shows: SOA serials are 32-bit
    numbers compared with RFC 1982 serial arithmetic (SERIAL_BITS 32), so the version
    wraps modulo 2^32 and 2^32 + 5 follows 2^32 - 1 as 5 (RFC 1982 §3.1: an increment
    of 1 is always less than 2^31)."""
    return version % 2**32


def soa(owner: DomainName, mname: DomainName, rname: DomainName, serial: int, minimum: int, ttl: int) -> RR:
    """The zone's SOA; `serial` is the registry version (`zone_serial` makes it 32-bit),
    `minimum` the negative-caching TTL (RFC 2308 §4)."""
    rdata = _new(SOA)
    rdata.__dict__ = {
        "_mname": label(mname),
        "_rname": label(rname),
        "_times": (zone_serial(serial), SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, minimum),
    }
    return _record(owner, _SOA, ttl, rdata)
