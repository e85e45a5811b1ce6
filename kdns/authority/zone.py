"""One static zone: an RFC 1035 zone file, parsed with dnspython and answered from.

`Zone.from_text(text, path)` parses one zone file's text; reading the files is
kdns/zonefiles.py's (`load_zones`, `reload`), at the edge, and the zones served are a
kdns.authority.static `StaticZones`, which imports this module (and with it dnspython)
only when a zone file is read: a start with no zone files does not import dnspython.
The origin is the file's leading `$ORIGIN`, else the file name (`example.test.zone` ->
`example.test.`). `$INCLUDE` is refused: a zone is one file, so an error names one file
and line.

`find(by_origin, query)` answers from the zone closest enclosing the name
(`Zone.answer`), as RFC 1034 section 4.3.2 describes, or returns None for names outside
every zone:

* the records of the asked type, with A/AAAA of in-zone MX, SRV and NS targets added
  as additional data (RFC 1035 section 3.3.9 and friends);
* a CNAME, followed while its target is in the same zone (at most MAX_CNAME_CHAIN, 8; a loop
  stops the chain); a target outside the zone ends the answer there and the asker's
  resolver follows it. The rcode is that of the last name (RFC 6604);
* NXDOMAIN or NODATA, AA, with the zone's SOA in the authority section, its TTL
  min(SOA TTL, SOA MINIMUM) (RFC 2308 section 3); an empty non-terminal is NODATA
  (RFC 8020);
* wildcards per RFC 4592: `*.<closest encloser>` answers a name that does not exist,
  with the owner re-spelled as the asked name;
* below a delegation (NS below the apex) a referral: NOERROR, not AA, the NS set in
  the authority section and glue as additional data. The glue of name servers below
  the cut (in-domain glue) is required: when it does not fit, the reply is truncated
  (TC) rather than sent without it (RFC 9471 §3); glue of other names of the zone
  (sibling glue) is left out first. DS at the cut is the parent's and is answered
  authoritatively (RFC 4035 section 3.1.4.1).

Not supported: DNAME (RFC 6672): a zone with a DNAME record is refused at load, with
the name of the record, rather than served with names below it answering NXDOMAIN;
DNSSEC signing or NSEC proofs (records in the file, RRSIG too, are served as data),
zone transfers, classes other than IN (QCLASS ANY is answered from IN).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tokenizer
import dns.zone
import dns.zonefile
from dnslib import QTYPE, RR, DNSBuffer, DNSError, DNSLabel

from kdns.authority.static import SUFFIX, ZoneError
from kdns.message import MAX_CNAME_CHAIN, NOERROR, NXDOMAIN, Answer, Query

_ORIGIN_LINE = re.compile(r"^\$ORIGIN\s+(\S+)", re.IGNORECASE)
# The rdata fields naming a host: MX, SRV and NS targets' addresses go in the additional
# section; CNAME targets are followed instead.
_ADDITIONAL = frozenset({QTYPE.MX, QTYPE.SRV, QTYPE.NS})
_TARGETS = {
    dns.rdatatype.MX: "exchange",
    dns.rdatatype.SRV: "target",
    dns.rdatatype.NS: "target",
    dns.rdatatype.CNAME: "target",
}


class _LineTokenizer(dns.tokenizer.Tokenizer):
    """dnspython's tokenizer, reporting the line a record is on rather than the next one.

    The tokenizer counts a newline when it reads it, even when it puts it back or
    returns it as the end of the record; dnspython then blames the line after the error.
    """

    _after_eol = False

    def get(self, want_leading: bool = False, want_comment: bool = False) -> dns.tokenizer.Token:
        token = super().get(want_leading, want_comment)
        self._after_eol = token.is_eol()
        return token

    def where(self) -> tuple[str, int]:
        filename, line = super().where()
        if self.ungotten_char == "\n" or self._after_eol:
            line -= 1
        return filename, line


def _declared_origin(text: str) -> bool:
    """Whether the file sets `$ORIGIN` before its first record (then that is the origin)."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(";"):
            continue
        if _ORIGIN_LINE.match(stripped):
            return True
        if not stripped.upper().startswith("$TTL"):
            return False
    return False


def _origin_from_path(path: Path) -> dns.name.Name:
    stem = path.name[: -len(SUFFIX)]
    try:
        return dns.name.from_text(stem, origin=dns.name.root)
    except dns.exception.DNSException as exc:
        raise ZoneError(path, f"the file name {stem!r} is not a zone name: {exc}") from None


def _parse_zone(text: str, path: Path) -> dns.zone.Zone:
    """Parse one zone file's text; every failure is a ZoneError naming the file (and the line)."""
    origin = None if _declared_origin(text) else _origin_from_path(path)
    filename = str(path)
    tokenizer = _LineTokenizer(text, filename)
    # dns.zone.from_text, with the tokenizer above and relativize=False: names stay
    # absolute, as the answers need them.
    zone = dns.zone.Zone(origin, dns.rdataclass.IN, relativize=False)
    try:
        with zone.writer(True) as txn:
            dns.zonefile.Reader(tokenizer, dns.rdataclass.IN, txn, allow_include=False).read()
    except dns.exception.SyntaxError as exc:
        # dnspython's message is "FILE:LINE: DETAIL"; take it apart to rebuild it alike.
        message = str(exc).removeprefix(f"{filename}:")
        line, sep, detail = message.partition(": ")
        if sep and line.isdigit():
            raise ZoneError(path, detail, int(line)) from None
        raise ZoneError(path, str(exc)) from None
    except dns.zonefile.UnknownOrigin:
        detail = "unknown origin: a leading $ORIGIN must be absolute (end it with a dot)"
        raise ZoneError(path, detail, tokenizer.where()[1]) from None
    except dns.exception.DNSException as exc:
        raise ZoneError(path, str(exc) or type(exc).__name__, tokenizer.where()[1]) from None
    try:
        zone.check_origin()
    except dns.exception.DNSException as exc:
        raise ZoneError(path, f"zone {zone.origin}: {exc}") from None
    return zone


def _to_dnslib(
    rrset_name: dns.name.Name, rdataset: dns.rdataset.Rdataset, path: Path
) -> tuple[RR, ...]:
    """A dnspython rdataset -> dnslib RRs, through uncompressed wire format."""
    wire = io.BytesIO()
    count = rdataset.to_wire(rrset_name, wire)
    buffer = DNSBuffer(wire.getvalue())
    try:
        return tuple(RR.parse(buffer) for _ in range(count))
    except DNSError as exc:
        raise ZoneError(
            path, f"{rrset_name} {dns.rdatatype.to_text(rdataset.rdtype)}: cannot serve: {exc}"
        ) from None


def _respelled(records: Iterable[RR], owner: str) -> tuple[RR, ...]:
    """Copies of `records` owned by `owner`, spelled as asked (RFC 4343); rdata shared."""
    label = DNSLabel(owner)
    return tuple(RR(label, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in records)


@dataclass(frozen=True, slots=True)
class Zone:
    """One static zone, ready to answer from: records as dnslib RRs by name and type."""

    origin: dns.name.Name
    path: Path
    serial: int
    records: Mapping[dns.name.Name, Mapping[int, tuple[RR, ...]]]
    # Hosts named by the MX/SRV/NS/CNAME records at (name, type).
    targets: Mapping[tuple[dns.name.Name, int], tuple[dns.name.Name, ...]]
    # Every name that exists: owners, and their ancestors up to the apex (RFC 8020's
    # empty non-terminals exist too).
    names: frozenset[dns.name.Name]
    # Delegation points: names below the apex with an NS set (RFC 1034 section 4.2.2).
    cuts: frozenset[dns.name.Name]
    negative_soa: RR

    @classmethod
    def from_text(cls, text: str, path: Path) -> Zone:
        """Parse and check the text of the zone file `path`; raises ZoneError."""
        zone = _parse_zone(text, path)
        origin = zone.origin
        assert origin is not None  # check_origin() passed
        records: dict[dns.name.Name, Mapping[int, tuple[RR, ...]]] = {}
        targets: dict[tuple[dns.name.Name, int], tuple[dns.name.Name, ...]] = {}
        names = {origin}
        cuts = set()
        for name, node in zone.nodes.items():
            by_type: dict[int, tuple[RR, ...]] = {}
            for rdataset in node.rdatasets:
                if rdataset.rdtype == dns.rdatatype.DNAME:
                    raise ZoneError(
                        path,
                        f"{name} DNAME: DNAME records (RFC 6672) are not supported; "
                        "write CNAME records for the names below it instead",
                    )
                by_type[int(rdataset.rdtype)] = _to_dnslib(name, rdataset, path)
                field = _TARGETS.get(rdataset.rdtype)
                if field is not None:
                    targets[name, int(rdataset.rdtype)] = tuple(
                        getattr(rdata, field) for rdata in rdataset
                    )
            if not by_type:
                continue
            records[name] = MappingProxyType(by_type)
            if name != origin and dns.rdatatype.NS in by_type:
                cuts.add(name)
            ancestor = name
            while ancestor != origin and ancestor not in names:
                names.add(ancestor)
                ancestor = ancestor.parent()
        (soa_rr,) = records[origin][QTYPE.SOA]
        serial, minimum = soa_rr.rdata.times[0], soa_rr.rdata.times[-1]
        # RFC 2308 section 3: the SOA in a negative answer has TTL min(SOA TTL, MINIMUM).
        negative_soa = RR(
            soa_rr.rname, soa_rr.rtype, soa_rr.rclass, min(soa_rr.ttl, minimum), soa_rr.rdata
        )
        return cls(
            origin=origin,
            path=path,
            serial=serial,
            records=MappingProxyType(records),
            targets=MappingProxyType(targets),
            names=frozenset(names),
            cuts=frozenset(cuts),
            negative_soa=negative_soa,
        )

    def _cut_above(self, name: dns.name.Name, qtype: int) -> dns.name.Name | None:
        """The highest delegation point at or above `name`, if any.

        DS at the cut itself is the parent's data (RFC 4035 section 3.1.4.1), so it does
        not count as below the cut.
        """
        found = None
        ancestor = name
        while ancestor != self.origin:
            if ancestor in self.cuts and not (ancestor == name and qtype == QTYPE.DS):
                found = ancestor
            ancestor = ancestor.parent()
        return found

    def _addresses(self, hosts: Iterable[dns.name.Name], *, glue: bool = False) -> list[RR]:
        """A and AAAA of `hosts` held in this zone: authoritative ones, or glue below a cut."""
        out: list[RR] = []
        for host in hosts:
            if not host.is_subdomain(self.origin):
                continue
            if not glue and self._cut_above(host, QTYPE.A) is not None:
                continue
            data = self.records.get(host, {})
            out.extend(data.get(QTYPE.A, ()))
            out.extend(data.get(QTYPE.AAAA, ()))
        return out

    def _additional(self, name: dns.name.Name, rtype: int) -> list[RR]:
        """Addresses of the hosts named by the MX, SRV or NS set at `name` (RFC 1035 3.3.9)."""
        if rtype not in _ADDITIONAL:
            return []
        return self._addresses(self.targets.get((name, rtype), ()))

    def _referral(self, cut: dns.name.Name) -> Answer:
        """RFC 1034 section 4.3.2 step 3b: the child's NS set and glue, not authoritative.

        In-domain glue (name servers below the cut) first, marked required (RFC 9471);
        sibling glue after it, left out first when the reply is too big.
        """
        ns = self.records[cut][QTYPE.NS]
        hosts = self.targets.get((cut, QTYPE.NS), ())
        required = self._addresses((h for h in hosts if h.is_subdomain(cut)), glue=True)
        sibling = self._addresses((h for h in hosts if not h.is_subdomain(cut)), glue=True)
        return Answer(
            rcode=NOERROR,
            authority=ns,
            additional=tuple(required + sibling),
            required_glue=len(required),
            source="zone",
        )

    def _negative(self, rcode: int, chain: list[RR]) -> Answer:
        return Answer(
            rcode=rcode,
            answer=tuple(chain),
            authority=(self.negative_soa,),
            authoritative=True,
            source="zone",
        )

    def answer(self, query: Query, qname: dns.name.Name) -> Answer:
        """The authoritative answer to `query`, whose name `qname` is in this zone."""
        qtype = query.qtype
        cut = self._cut_above(qname, qtype)
        if cut is not None:
            return self._referral(cut)
        chain: list[RR] = []
        additional: list[RR] = []
        name, owner = qname, query.qname
        seen = {qname}
        for _ in range(MAX_CNAME_CHAIN):
            data = self.records.get(name)
            source = name
            if data is None:
                if name in self.names:
                    return self._negative(NOERROR, chain)  # empty non-terminal
                # RFC 4592 section 3.3.1: the source of synthesis is `*.` + the closest
                # encloser, the longest ancestor that exists.
                encloser = name.parent()
                while encloser not in self.names:
                    encloser = encloser.parent()
                source = dns.name.Name((b"*", *encloser.labels))
                data = self.records.get(source)
                if data is None:
                    return self._negative(NXDOMAIN, chain)
            if qtype == QTYPE.ANY:
                for rtype, rrset in data.items():
                    chain.extend(_respelled(rrset, owner))
                    additional.extend(self._additional(source, rtype))
                break
            records = data.get(qtype)
            if records:
                chain.extend(_respelled(records, owner))
                additional.extend(self._additional(source, qtype))
                break
            cname = data.get(QTYPE.CNAME)
            if cname is None:
                return self._negative(NOERROR, chain)  # NODATA
            chain.extend(_respelled(cname, owner))
            (target,) = self.targets[source, QTYPE.CNAME]
            if (
                not target.is_subdomain(self.origin)
                or target in seen
                or self._cut_above(target, qtype) is not None
            ):
                break  # the asker's resolver follows it from here
            seen.add(target)
            name, owner = target, target.to_text()
        return Answer(
            rcode=NOERROR,
            answer=tuple(chain),
            additional=tuple(rr for rr in additional if rr not in chain),
            authoritative=True,
            source="zone",
        )


def find(by_origin: Mapping[dns.name.Name, Zone], query: Query) -> Answer | None:
    """The answer of the zone of `by_origin` closest enclosing `query`'s name (a more
    specific zone wins), or None if none holds it."""
    try:
        qname = dns.name.from_text(query.name, origin=dns.name.root)
    except dns.exception.DNSException:
        return None  # not a name any zone could hold; the codec reports it
    zone = closest(by_origin, qname)
    return zone.answer(query, qname) if zone is not None else None


def closest(by_origin: Mapping[dns.name.Name, Zone], qname: dns.name.Name) -> Zone | None:
    """The zone of `by_origin` closest enclosing `qname`."""
    name = qname
    while True:
        zone = by_origin.get(name)
        if zone is not None:
            return zone
        if name == dns.name.root:
            return None
        name = name.parent()
