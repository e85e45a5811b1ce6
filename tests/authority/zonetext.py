"""Answer checks written as zone text: expected records are lines such as
`web.default.svc.cluster.local. 5 IN A 10.96.0.10`, compared order-insensitively and with
owner names case-sensitively (the answers must echo the asker's spelling)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dnslib import CLASS, QTYPE, RCODE, RR

from kdns.authority.answer import answer
from kdns.authority.index import ClusterIndex
from kdns.config import Settings
from kdns.message import Answer, Query


def line(rr: RR) -> str:
    return f"{rr.rname} {rr.ttl} {CLASS[rr.rclass]} {QTYPE[rr.rtype]} {rr.rdata.toZone()}"


def lines(rrs: Iterable[RR]) -> list[str]:
    return sorted(line(rr) for rr in rrs)


def parsed(texts: Iterable[str]) -> list[str]:
    """Zone text lines in the form `line` writes, sorted."""
    return sorted(line(rr) for text in texts for rr in RR.fromZone(text))


def soa(zone: str, serial: int, ttl: int = 5, minimum: int = 5, cluster: str = "cluster.local.") -> str:
    """A zone's SOA line; `cluster` is the cluster zone as the SOA must spell it."""
    return f"{zone} {ttl} IN SOA ns.dns.{cluster} hostmaster.{cluster} {serial} 7200 1800 86400 {minimum}"


def ask(index: ClusterIndex, settings: Settings, qname: str, qtype: str) -> Answer | None:
    return answer(Query(id=1, qname=qname, qtype=getattr(QTYPE, qtype)), index, settings)


@dataclass(frozen=True)
class Case:
    """One question and everything the answer must hold.

    `authority` None means: the zone's SOA for a negative answer (NXDOMAIN, or NOERROR
    with an empty answer section), nothing for a positive one.
    """

    qname: str
    qtype: str
    rcode: str = "NOERROR"
    answer: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    authority: tuple[str, ...] | None = None

    def __str__(self) -> str:
        return f"{self.qname} {self.qtype}"

    def check(self, index: ClusterIndex, settings: Settings) -> None:
        got = ask(index, settings, self.qname, self.qtype)
        assert got is not None, "the name is in a served zone"
        assert RCODE[got.rcode] == self.rcode, f"rcode {RCODE[got.rcode]}"
        assert got.authoritative, "AA"
        _same("answer", lines(got.answer), parsed(self.answer))
        _same("additional", lines(got.additional), parsed(self.additional))
        authority = self.authority
        if authority is None:
            negative = self.rcode != "NOERROR" or not self.answer
            authority = (soa(_zone(self.qname.lower()), index.serial, settings.soa_ttl, settings.ttl),) if negative else ()
        _same("authority", lines(got.authority), parsed(authority))


def _same(section: str, got: list[str], expected: list[str]) -> None:
    assert got == expected, f"{section}:\n  got      {got}\n  expected {expected}"


def _zone(name: str) -> str:
    for zone in ("in-addr.arpa.", "ip6.arpa."):
        if name.endswith(zone):
            return zone
    return "cluster.local."
