"""The record builders make what dnslib's own constructors make, field for field."""

from __future__ import annotations

import ipaddress

import pytest
from dnslib import (
    AAAA,
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
from hypothesis import given
from hypothesis import strategies as st

from kdns.authority import records

# Names as text: plain ones, and the unusual (escapes, non-ASCII, empty and long labels,
# relative names) that `records.label` leaves to dnslib.
_LABEL = st.text(alphabet="abcXYZ09-_", min_size=1, max_size=8)
_PLAIN = st.lists(_LABEL, min_size=1, max_size=5).map(lambda labels: ".".join(labels) + ".")
_ODD = st.lists(st.sampled_from(["a", "B", ".", "\\", "0", "1", "2", "é", "-", "x" * 64]), max_size=12).map("".join)
_NAMES = st.one_of(_PLAIN, _ODD, st.just("."), st.just(""))


def _dnslib_label(text: str) -> tuple[bytes, ...] | type[BaseException]:
    try:
        return DNSLabel(text).label
    except Exception as exc:  # noqa: BLE001 - whatever dnslib raises, `label` must raise too
        return type(exc)


@given(_NAMES)
def test_label_is_dnslibs(text: str) -> None:
    want = _dnslib_label(text)
    try:
        got: tuple[bytes, ...] | type[BaseException] = records.label(text).label
    except Exception as exc:  # noqa: BLE001
        got = type(exc)
    assert got == want
    assert type(got) is type(want)


def _fields(rr: RR) -> tuple[object, ...]:
    """Everything an RR holds, names as their exact labels."""
    rdata = {k: (v.label if isinstance(v, DNSLabel) else v) for k, v in vars(rr.rdata).items()}
    own = {k: (v.label if isinstance(v, DNSLabel) else v) for k, v in vars(rr).items() if k != "rdata"}
    return type(rr), own, type(rr.rdata), rdata


def _packed(rr: RR) -> bytes:
    buffer = DNSBuffer()
    rr.pack(buffer)
    return bytes(buffer.data)


_OWNERS = st.one_of(_PLAIN, st.sampled_from(["Web.Default.svc.Cluster.Local.", "1.0.96.10.in-addr.arpa."]))
_IPS = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address), st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
)
_TTLS = st.integers(0, 3600)


@given(_OWNERS, _IPS, _TTLS)
def test_address_records(owner: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, ttl: int) -> None:
    data = A(tuple(ip.packed)) if ip.version == 4 else AAAA(tuple(ip.packed))
    want = RR(owner, QTYPE.A if ip.version == 4 else QTYPE.AAAA, ttl=ttl, rdata=data)
    for got in (records.address(owner, ip, ttl), records.address(records.label(owner), ip, ttl)):
        assert _fields(got) == _fields(want)
        assert _packed(got) == _packed(want)


@given(_OWNERS, _OWNERS, st.integers(1, 65535), st.integers(1, 100), _TTLS)
def test_srv(owner: str, target: str, port: int, weight: int, ttl: int) -> None:
    want = RR(owner, QTYPE.SRV, ttl=ttl, rdata=SRV(0, weight, port, target))
    got = records.srv(owner, records.label(target), port, weight, ttl)
    assert _fields(got) == _fields(want)
    assert _packed(got) == _packed(want)


@pytest.mark.parametrize(("build", "kind", "rtype"), [
    (records.ptr, PTR, "PTR"), (records.cname, CNAME, "CNAME"), (records.ns, NS, "NS"),
])
@given(owner=_OWNERS, target=_OWNERS, ttl=_TTLS)
def test_one_name_records(build, kind, rtype, owner: str, target: str, ttl: int) -> None:  # type: ignore[no-untyped-def]
    want = RR(owner, getattr(QTYPE, rtype), ttl=ttl, rdata=kind(target))
    got = build(owner, target, ttl)
    assert _fields(got) == _fields(want)
    assert _packed(got) == _packed(want)


@given(_OWNERS, st.integers(0, 2**40), st.integers(0, 3600), _TTLS)
def test_soa_and_txt(owner: str, serial: int, minimum: int, ttl: int) -> None:
    times = (records.zone_serial(serial), records.SOA_REFRESH, records.SOA_RETRY, records.SOA_EXPIRE, minimum)
    want = RR(owner, QTYPE.SOA, ttl=ttl, rdata=SOA("ns.dns." + owner, "hostmaster." + owner, times))
    got = records.soa(owner, "ns.dns." + owner, "hostmaster." + owner, serial, minimum, ttl)
    assert _fields(got) == _fields(want)
    assert _packed(got) == _packed(want)
    text = records.txt(owner, "1.1.0", ttl)
    assert _fields(text) == _fields(RR(owner, QTYPE.TXT, ttl=ttl, rdata=TXT(b"1.1.0")))
