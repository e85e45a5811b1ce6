"""Static zones: RFC 1035 zone files served authoritatively beside the cluster zone.

`Zone.from_text(text, path)` parses one zone file's text with dnspython; reading the
files is kdns/zonefiles.py's (`load_zones`, `reload`), at the edge. The origin is the
file's leading `$ORIGIN`, else the file name (`example.test.zone` -> `example.test.`).
`$INCLUDE` is refused: a zone is one file, so an error names one file and line.

`StaticZones.answer(query)` answers from the zone closest enclosing the name, as RFC
1034 section 4.3.2 describes, or returns None for names outside every static zone:

* the records of the asked type, with A/AAAA of in-zone MX, SRV and NS targets added
  as additional data (RFC 1035 section 3.3.9 and friends);
* a CNAME, followed while its target is in the same zone (at most 8 links; a loop
  stops the chain); a target outside the zone ends the answer there and the asker's
  resolver follows it. The rcode is that of the last name (RFC 6604);
* NXDOMAIN or NODATA, AA, with the zone's SOA in the authority section, its TTL
  min(SOA TTL, SOA MINIMUM) (RFC 2308 section 3); an empty non-terminal is NODATA
  (RFC 8020);
* wildcards per RFC 4592: `*.<closest encloser>` answers a name that does not exist,
  with the owner re-spelled as the asked name;
* below a delegation (NS below the apex) a referral: NOERROR, not AA, the NS set in
  the authority section and glue as additional data. DS at the cut is the parent's
  and is answered authoritatively (RFC 4035 section 3.1.4.1).

Not supported: DNAME, DNSSEC signing or NSEC proofs (records in the file, RRSIG too,
are served as data), zone transfers, classes other than IN.

`assemble(files, old)` builds the zones from the files' texts (or the errors reading
them); a file that no longer loads keeps serving its old version from `old`, and the
errors are returned for logging (the SIGHUP path).
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
from dnslib import QTYPE, RCODE, RR, DNSBuffer, DNSError, DNSLabel

from kdns.errors import KdnsError
from kdns.message import Answer, Query


class ZoneError(KdnsError):
    """A zone file cannot be served."""

    def __init__(self, path: Path | str, detail: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {detail}")
        self.path = Path(path)
        self.line = line
        self.detail = detail


# A CNAME chain inside one zone longer than this is cut there (BIND's limit is 16; the
# asker's resolver may go on from the last target).
MAX_CHAIN = 8
SUFFIX = ".zone"
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
        """RFC 1034 section 4.3.2 step 3b: the child's NS set and glue, not authoritative."""
        ns = self.records[cut][QTYPE.NS]
        glue = self._addresses(self.targets.get((cut, QTYPE.NS), ()), glue=True)
        return Answer(rcode=RCODE.NOERROR, authority=ns, additional=tuple(glue))

    def _negative(self, rcode: int, chain: list[RR]) -> Answer:
        return Answer(
            rcode=rcode,
            answer=tuple(chain),
            authority=(self.negative_soa,),
            authoritative=True,
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
        for _ in range(MAX_CHAIN + 1):
            data = self.records.get(name)
            source = name
            if data is None:
                if name in self.names:
                    return self._negative(RCODE.NOERROR, chain)  # empty non-terminal
                # RFC 4592 section 3.3.1: the source of synthesis is `*.` + the closest
                # encloser, the longest ancestor that exists.
                encloser = name.parent()
                while encloser not in self.names:
                    encloser = encloser.parent()
                source = dns.name.Name((b"*", *encloser.labels))
                data = self.records.get(source)
                if data is None:
                    return self._negative(RCODE.NXDOMAIN, chain)
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
                return self._negative(RCODE.NOERROR, chain)  # NODATA
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
            rcode=RCODE.NOERROR,
            answer=tuple(chain),
            additional=tuple(rr for rr in additional if rr not in chain),
            authoritative=True,
        )


class StaticZones:
    """The static zones kdns serves, by origin; immutable once built."""

    __slots__ = ("_by_origin",)

    def __init__(self, zones: Iterable[Zone] = ()) -> None:
        by_origin: dict[dns.name.Name, Zone] = {}
        for zone in zones:
            if zone.origin in by_origin:
                raise ZoneError(
                    zone.path, f"zone {zone.origin} is also in {by_origin[zone.origin].path}"
                )
            by_origin[zone.origin] = zone
        self._by_origin: Mapping[dns.name.Name, Zone] = MappingProxyType(by_origin)

    def __len__(self) -> int:
        return len(self._by_origin)

    def __repr__(self) -> str:
        return f"StaticZones({', '.join(self.origins)})"

    @property
    def zones(self) -> tuple[Zone, ...]:
        return tuple(self._by_origin.values())

    @property
    def origins(self) -> tuple[str, ...]:
        """The zones' origins as absolute lower-case text, e.g. `example.test.`."""
        return tuple(sorted(origin.to_text().lower() for origin in self._by_origin))

    def zone_for(self, qname: dns.name.Name) -> Zone | None:
        """The static zone closest enclosing `qname` (a more specific zone wins)."""
        name = qname
        while True:
            zone = self._by_origin.get(name)
            if zone is not None:
                return zone
            if name == dns.name.root:
                return None
            name = name.parent()

    def answer(self, query: Query) -> Answer | None:
        """The authoritative answer to `query`, or None if no static zone holds its name."""
        if not self._by_origin or query.qclass != dns.rdataclass.IN:
            return None
        try:
            qname = dns.name.from_text(query.name, origin=dns.name.root)
        except dns.exception.DNSException:
            return None  # not a name any zone could hold; the codec reports it
        zone = self.zone_for(qname)
        if zone is None:
            return None
        return zone.answer(query, qname)


def assemble(files: Iterable[tuple[Path, str | ZoneError]], old: StaticZones) -> tuple[StaticZones, list[ZoneError]]:
    """The zones of `files` (each file's text, or the error reading it), in order; a file
    that fails keeps its zone in `old`, if it had one, and its error is returned. A file
    no longer among `files` takes its zone with it."""
    previous = {zone.path: zone for zone in old.zones}
    zones: dict[dns.name.Name, Zone] = {}
    errors: list[ZoneError] = []
    for path, text in files:
        zone: Zone | None = None
        if isinstance(text, ZoneError):
            errors.append(text)
        else:
            try:
                zone = Zone.from_text(text, path)
            except ZoneError as exc:
                errors.append(exc)
        if zone is None:
            zone = previous.get(path)
            if zone is None:
                continue
        other = zones.get(zone.origin)
        if other is not None:
            errors.append(ZoneError(path, f"zone {zone.origin} is also in {other.path}; ignored"))
            continue
        zones[zone.origin] = zone
    return StaticZones(zones.values()), errors
