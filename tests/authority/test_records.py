"""The record builders: what they make is what dnslib's own constructors make."""

from __future__ import annotations

import ipaddress

from dnslib import AAAA, QTYPE, RR, SRV, A, DNSBuffer, DNSLabel
from hypothesis import given
from hypothesis import strategies as st

from kdns.authority import records

_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?", fullmatch=True)
_NAMES = st.lists(_LABEL, min_size=1, max_size=5).map(lambda labels: ".".join(labels) + ".")
_OWNERS = st.one_of(_NAMES, _NAMES.map(DNSLabel))
_TTLS = st.integers(0, 2**31 - 1)
_SHORT = st.integers(0, 65535)


def _same(built: RR, expected: RR) -> None:
    """The same fields, the same rdata fields, the same wire bytes and zone text."""
    assert vars(built).keys() == vars(expected).keys()
    assert (built.rname, built.rtype, built.rclass, built.ttl) == (
        expected.rname, expected.rtype, expected.rclass, expected.ttl,
    )
    assert vars(built.rdata) == vars(expected.rdata)
    wires = []
    for record in (built, expected):
        buffer = DNSBuffer()
        record.pack(buffer)
        wires.append(buffer.data)
    assert wires[0] == wires[1]
    assert str(built) == str(expected)


def test_the_installed_dnslib_gets_the_fast_builders() -> None:
    """The fields are stored where this dnslib keeps them, so the unchecked builders are
    the ones in use (the tests below then test those)."""
    assert records.FAST_BUILDERS


@given(_OWNERS, st.ip_addresses(), _TTLS)
def test_address_records_are_dnslibs(owner: str | DNSLabel, ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                                     ttl: int) -> None:
    rdata = A(tuple(ip.packed)) if ip.version == 4 else AAAA(tuple(ip.packed))
    rtype = QTYPE.A if ip.version == 4 else QTYPE.AAAA
    _same(records.address(owner, ip, ttl), RR(owner, rtype, ttl=ttl, rdata=rdata))


@given(_OWNERS, _OWNERS, _SHORT, _SHORT, _SHORT, _TTLS)
def test_srv_records_are_dnslibs(owner: str | DNSLabel, target: str | DNSLabel, port: int, weight: int,
                                 priority: int, ttl: int) -> None:
    _same(
        records.srv(owner, target, port, weight, ttl, priority),
        RR(owner, QTYPE.SRV, ttl=ttl, rdata=SRV(priority, weight, port, target)),
    )
