"""answer(query, index, settings): the authoritative answer for the served zones.

The served zones are the cluster zone and the reverse zones (`Settings.reverse_zones`);
`names.zone_of` tells whether a name is in one of them. For any other name `answer`
returns None and the router refuses or forwards the query.

Each name is parsed once (`names.parse`) and looked up for one type. A lookup says
"this name does not exist" (None: NXDOMAIN) or gives the records of the asked type,
possibly none (NODATA); both negatives carry the zone's SOA in authority, positive
answers carry nothing there, and every answer is authoritative (docs/dns-rules.md R20).
This module implements R3-R23 of docs/dns-rules.md; the choices that shape it most,
in short:

* NXDOMAIN versus NODATA is ordinary DNS (R4): empty non-terminals exist (`svc.`, `pod.`,
  `nodeport.`, `node.`, `dns.`, `_tcp.<svc>…`); a partial reverse name exists while a
  known address (a cluster IP, a ready endpoint) lies below it, and is NXDOMAIN otherwise;
  `dns-version` and every other name answer NODATA for types they lack; existence never
  depends on the type.
* Namespaces (R5): `<ns>.svc`, `<ns>.pod` and `<ns>.nodeport` exist exactly while the
  Namespace object exists; with `pods disabled` nothing exists below `pod.<zone>` (as
  CoreDNS). Services in a missing Namespace are invisible everywhere, PTR included; a
  name that does not exist because its namespace does not says so in an Extended DNS
  Error (R27).
* SRV (R11, R12): `_<port>._<proto>` names exist for named ports only; the bare service
  name and endpoint names list every port, named or not, as CoreDNS. Priority 0; the
  records of one answer share the weight 100 // n (at least 1), n the number of SRV
  records after (target, port) duplicates collapse.
* ExternalName (R13): the CNAME answers every type. For types other than CNAME and ANY
  the target is chased while it stays in a served zone, with at most MAX_CNAME_CHAIN
  CNAMEs in one answer, stopping before a name seen already (a loop ends with its last
  CNAME and NOERROR, for the resolver to judge); the rcode and the SOA then follow the
  last name (RFC 6604). A target outside the served zones ends the chain here: the
  Router completes it or leaves the CNAME alone (R30).
* ANY (R22, RFC 8482 §4.1): one RRset, the first the name has of ANY_ORDER; NODATA when
  it has none. AXFR and IXFR are REFUSED (R23).
* The NodePort tree (R16) mirrors the svc tree for named ports with a nodePort on
  NodePort and LoadBalancer Services: one SRV per Node with an InternalIP. Such a name
  exists as soon as its port does, so with no Node it is NODATA, not NXDOMAIN.
* PTR (R14) answers only names that exist, and names every Service sharing a cluster IP.

Spelling (R2): owners are written as asked; names built from objects are lower case,
followed by the zone as the asker spelt it (the reverse zones' PTR targets and SOA use
the configured spelling of the cluster zone, which the asker did not write).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dnslib import QTYPE, RR, DNSLabel

from kdns.authority import records
from kdns.authority.index import (
    ClusterIndex,
    ReadyEndpoint,
    ServiceEndpoints,
    ServiceRecord,
)
from kdns.authority.names import (
    Apex,
    DnsVersion,
    EndpointName,
    InvalidName,
    IPAddress,
    Name,
    NameServer,
    NamespaceName,
    NodeName,
    NodePortName,
    NodePortProtocolName,
    NodePortServiceName,
    PodName,
    PortName,
    ProtocolName,
    ReverseName,
    ReversePrefix,
    ServiceName,
    Structural,
    endpoint_fqdn,
    hostmaster_fqdn,
    nameserver_fqdn,
    namespace_of,
    node_fqdn,
    parse_in,
    service_fqdn,
    zone_of,
)
from kdns.config import Settings
from kdns.message import (
    MAX_CNAME_CHAIN,
    NOERROR,
    NXDOMAIN,
    REFUSED,
    Answer,
    EdeCode,
    ExtendedError,
    Query,
)
from kdns.reuse import (
    NODES,
    REVERSE_PREFIXES,
    UNSCOPED,
    AddressScope,
    EndpointScope,
    EndpointsScope,
    NamespaceScope,
    PodScope,
    Scope,
    ServiceScope,
    Shared,
)

SCHEMA_VERSION = "1.1.0"  # spec §2.2
SCHEMA_TTL = 28800  # docs/dns-rules.md R6
NODE_PORT_TYPES = frozenset({"NodePort", "LoadBalancer"})
ANY_ORDER = (QTYPE.CNAME, QTYPE.A, QTYPE.AAAA, QTYPE.SRV, QTYPE.PTR, QTYPE.TXT, QTYPE.SOA, QTYPE.NS)
_ZONE_TRANSFERS = frozenset({QTYPE.AXFR, QTYPE.IXFR})
_NO_ALIAS_CHASE = frozenset({QTYPE.CNAME, QTYPE.ANY})
# The address class of each address type (`isinstance`: `ip.version` is a Python property).
_FAMILY: dict[int, type[IPAddress]] = {QTYPE.A: ipaddress.IPv4Address, QTYPE.AAAA: ipaddress.IPv6Address}
# dnslib's QTYPE looks names up on every attribute access (a Python call): read the
# numbers the lookups compare with once.
_ANY, _SRV, _TXT, _SOA, _NS, _PTR = QTYPE.ANY, QTYPE.SRV, QTYPE.TXT, QTYPE.SOA, QTYPE.NS, QTYPE.PTR

# One SRV record to be: target name, port, the target's addresses.
_SrvEntry = tuple[str, int, tuple[IPAddress, ...]]


@dataclass(slots=True)
class _Found:
    """The name exists; these are its records of the asked type (none: NODATA)."""

    answer: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    alias: str | None = None  # the CNAME target, when the name is an alias


def answer(query: Query, index: ClusterIndex, settings: Settings) -> Answer | None:
    """The authoritative answer to `query`, or None if its name is in no served zone."""
    name = query.name
    zone = zone_of(name, settings.zone, settings.reverse_zones)
    if zone is None:
        return None
    if query.qtype in _ZONE_TRANSFERS:
        return Answer(rcode=REFUSED, authoritative=True, source="cluster", reuse=UNSCOPED)
    owner = query.qname
    chain: list[RR] = []
    additional: list[RR] = []
    seen = {name}
    reads: set[Scope] = set()  # what the answer reads, every name of the chain (kdns/reuse.py)
    while True:
        lookup = _Lookup(index, settings, owner, zone, query.qtype, reads)
        found = lookup.run(name)
        if found is None:
            errors = _why_missing(name, zone, index, settings, reads)
            return _negative(NXDOMAIN, chain, owner, zone, index, settings, reads, errors)
        chain += found.answer
        additional += found.additional
        if found.alias is None or query.qtype in _NO_ALIAS_CHASE:
            break
        next_name = found.alias.lower()
        next_zone = zone_of(next_name, settings.zone, settings.reverse_zones)
        if next_zone is None or next_name in seen or len(seen) >= MAX_CNAME_CHAIN:
            break
        owner, name, zone = found.alias, next_name, next_zone
        seen.add(name)
    if not found.answer:
        return _negative(NOERROR, chain, owner, zone, index, settings, reads)
    # The apex SOA shows the serial of the last commit, whatever it touched; it ends every
    # chain it is in (R22: ANY at the apex answers the SOA alone), so the wire layer
    # writes the current serial there as it does in a negative answer's.
    reuse = Shared(frozenset(reads), shows_serial=lookup.shows_serial)
    return Answer(
        answer=tuple(chain), additional=tuple(additional), authoritative=True, source="cluster", reuse=reuse
    )


def _why_missing(
    name: str, zone: str, index: ClusterIndex, settings: Settings, reads: set[Scope]
) -> tuple[ExtendedError, ...]:
    """The Extended DNS Error of an NXDOMAIN whose namespace does not exist; else none.
    Whether it does is read (`reads`): the error comes and goes with the Namespace."""
    try:
        namespace = namespace_of(parse_in(name, zone, settings.zone))
    except InvalidName:
        return ()
    if namespace is None:
        return ()
    reads.add(NamespaceScope(namespace))
    if namespace in index.namespaces:
        return ()
    return (ExtendedError(EdeCode.OTHER, f"namespace {namespace!r} does not exist"),)


def soa_record(owner: str, zone: str, index: ClusterIndex, settings: Settings) -> RR:
    """The SOA of `zone` (docs/dns-rules.md R19), its owner spelt as in `owner`, a name of that zone."""
    zone_text = owner[len(owner) - len(zone) :]
    cluster = zone_text if zone == settings.zone else settings.zone
    return records.soa(
        zone_text,
        nameserver_fqdn(cluster),
        hostmaster_fqdn(cluster),
        serial=index.serial,
        minimum=settings.ttl,
        ttl=settings.soa_ttl,
    )


def _negative(
    rcode: int,
    chain: list[RR],
    owner: str,
    zone: str,
    index: ClusterIndex,
    settings: Settings,
    reads: set[Scope],
    errors: tuple[ExtendedError, ...] = (),
) -> Answer:
    """NXDOMAIN or NODATA, with the zone's SOA (R19). Kept until a commit touches what it
    read; the serial, which every commit moves, the wire layer writes as it sends it
    (kdns/reuse.py `Shared.shows_serial`)."""
    soa = soa_record(owner, zone, index, settings)
    return Answer(
        rcode=rcode,
        answer=tuple(chain),
        authority=(soa,),
        authoritative=True,
        errors=errors,
        source="cluster",
        reuse=Shared(frozenset(reads), shows_serial=True),
    )


def _server_addresses(settings: Settings) -> tuple[IPAddress, ...]:
    """The address ns.dns.<zone> answers: the one kdns listens on, unless that is a
    wildcard (0.0.0.0, ::), which no client could use."""
    address = ipaddress.ip_address(settings.dns_address)
    return () if address.is_unspecified else (address,)


class _Lookup:
    """One name, one type: the records, or None when the name does not exist."""

    __slots__ = (
        "_label", "index", "owner", "qtype", "reads", "settings", "shows_serial", "ttl", "zone", "zone_text",
    )

    def __init__(
        self, index: ClusterIndex, settings: Settings, owner: str, zone: str, qtype: int, reads: set[Scope]
    ) -> None:
        self.index = index
        # What a commit may touch that this answer reads (kdns/reuse.py `Scope`), added to
        # as the lookup reads it; `shows_serial`: it wrote the serial of the last commit.
        self.reads = reads
        self.shows_serial = False
        self.settings = settings
        self.owner = owner  # the name as asked (or as the CNAME wrote it)
        self._label: DNSLabel | None = None
        self.zone = zone  # the served zone the owner is in, lower case
        self.zone_text = owner[len(owner) - len(zone) :]  # its zone, spelt the same way
        self.qtype = qtype
        self.ttl = settings.ttl

    @property
    def label(self) -> DNSLabel:
        """The owner, parsed once for all its records (only names that exist get here)."""
        if self._label is None:
            self._label = records.label(self.owner)
        return self._label

    def run(self, name: str) -> _Found | None:
        try:
            parsed = parse_in(name, self.zone, self.settings.zone)
        except InvalidName:
            return None
        if self.qtype != _ANY:
            return self._lookup(parsed, self.qtype)
        for qtype in ANY_ORDER:
            found = self._lookup(parsed, qtype)
            if found is None or found.answer:
                return found
        return _Found()

    def _lookup(self, name: Name, qtype: int) -> _Found | None:
        index = self.index
        match name:
            # (The shapes are distinct classes: the most asked come first.)
            case ServiceName(service=service, namespace=namespace):
                self.reads.add(ServiceScope(namespace, service))
                return self._service(qtype, service, namespace)
            case EndpointName(endpoint=endpoint, service=service, namespace=namespace):
                self.reads.add(ServiceScope(namespace, service))
                record = self._named_service(service, namespace)
                if record is None:
                    return None
                ready = self._endpoint(namespace, service, endpoint)
                if ready is None:
                    return None
                if qtype == _SRV:
                    target = endpoint_fqdn(ready.name, service, namespace, self.zone_text)
                    return self._srv([(target, p.port, ready.addresses) for p in ready.ports if p.port is not None])
                return self._addresses(qtype, ready.addresses)
            case PortName(port=port, protocol=protocol, service=service, namespace=namespace):
                self.reads.add(ServiceScope(namespace, service))
                srv = self._service_srv(service, namespace, port=port, protocol=protocol)
                if not srv:
                    return None
                return self._srv(srv) if qtype == _SRV else _Found()
            case ReverseName():
                ip = name.address
                self.reads.add(AddressScope(ip.packed))
                return self._reverse(qtype, ip)
            case Apex():
                return self._apex(qtype)
            case DnsVersion():
                if qtype == _TXT:
                    return _Found([records.txt(self.owner, SCHEMA_VERSION, SCHEMA_TTL)])
                return _Found()
            case Structural():
                return _Found()
            case ReversePrefix():
                self.reads.add(REVERSE_PREFIXES)
                return _Found() if index.has_reverse_below(name) else None
            case NameServer():
                return self._addresses(qtype, _server_addresses(self.settings))
            case NamespaceName(kind=kind, namespace=namespace):
                if kind == "pod" and self.settings.pods == "disabled":
                    return None
                return _Found() if self._namespace_exists(namespace) else None
            case ProtocolName(protocol=protocol, service=service, namespace=namespace):
                self.reads.add(ServiceScope(namespace, service))
                return _Found() if self._service_srv(service, namespace, protocol=protocol) else None
            case PodName(namespace=namespace):
                return self._pod(qtype, name.address, namespace)
            case NodeName(node=node):
                self.reads.add(NODES)
                node_record = index.node(node)
                if node_record is not None:
                    return self._addresses(qtype, node_record.internal_ips)
                return _Found() if index.has_node_branch(node) else None
            case NodePortServiceName(service=service, namespace=namespace):
                return self._node_ports(qtype, service, namespace)
            case NodePortProtocolName(protocol=protocol, service=service, namespace=namespace):
                return self._node_ports(None, service, namespace, protocol=protocol)
            case NodePortName(port=port, protocol=protocol, service=service, namespace=namespace):
                return self._node_ports(qtype, service, namespace, port=port, protocol=protocol)
        raise AssertionError(f"unhandled name {name!r}")  # pragma: no cover

    # --- the families ----------------------------------------------------------------------

    def _apex(self, qtype: int) -> _Found:
        zone = self.zone_text
        if qtype == _SOA:
            self.shows_serial = True
            return _Found([soa_record(zone, zone.lower(), self.index, self.settings)])
        if qtype == _NS:
            # The reverse zones name the cluster zone's server, as their SOA does.
            cluster = zone if zone.lower() == self.settings.zone else self.settings.zone
            target = nameserver_fqdn(cluster)
            glue = [records.address(target, ip, self.ttl) for ip in _server_addresses(self.settings)]
            return _Found([records.ns(zone, target, self.ttl)], glue)
        return _Found()

    def _service(self, qtype: int, service: str, namespace: str) -> _Found | None:
        record = self._visible_service(namespace, service)
        if record is None:
            return None
        if record.is_external:
            target = record.external_name
            if target is None:
                return None  # an IP address or no name: no record at all (R13)
            return _Found([records.cname(self.owner, target, self.ttl)], alias=target)
        if record.is_headless:
            addresses = self._endpoints(namespace, service).addresses
            if not addresses:
                return None  # spec §2.4.1: no ready endpoint, no name
        else:
            addresses = record.cluster_ips
        if qtype == _SRV:
            return self._srv(self._service_srv(service, namespace, unnamed=True) or [])
        return self._addresses(qtype, addresses)

    def _namespace_exists(self, namespace: str) -> bool:
        """Whether the Namespace object exists, read (R5)."""
        self.reads.add(NamespaceScope(namespace))
        return namespace in self.index.namespaces

    def _visible_service(self, namespace: str, service: str) -> ServiceRecord | None:
        """The Service if DNS may show it, read: its Namespace decides as much as it does."""
        self.reads.add(NamespaceScope(namespace))
        return self.index.visible_service(namespace, service)

    def _endpoints(self, namespace: str, service: str) -> ServiceEndpoints:
        """The Service's ready endpoints, read: a slice change drops the answer (a ClusterIP
        Service's own names never get here, so its slices leave them kept)."""
        self.reads.add(EndpointsScope(namespace, service))
        return self.index.endpoints(namespace, service)

    def _endpoint(self, namespace: str, service: str, endpoint: str) -> ReadyEndpoint | None:
        """The ready endpoint an endpoint name stands for, read: only a change of that
        name's endpoint drops the answer, not a flip of the Service's others."""
        self.reads.add(EndpointScope(namespace, service, endpoint))
        return self.index.endpoints(namespace, service).by_name.get(endpoint)

    def _named_service(self, service: str, namespace: str) -> ServiceRecord | None:
        """The visible Service, if names below it can exist (it is not an ExternalName)."""
        record = self._visible_service(namespace, service)
        return None if record is None or record.is_external else record

    def _service_srv(
        self,
        service: str,
        namespace: str,
        port: str | None = None,
        protocol: str | None = None,
        *,
        unnamed: bool = False,
    ) -> list[_SrvEntry] | None:
        """The SRV records of a Service's named ports (every port with `unnamed`, for the
        bare name as CoreDNS) matching port/protocol: the cluster IP service itself with
        the Service port (spec §2.3.2), or each ready endpoint with its slice's port (spec
        §2.4.2). None if the Service cannot have any."""
        record = self._named_service(service, namespace)
        if record is None:
            return None

        def wanted(name: str, proto: str) -> bool:
            return (unnamed or bool(name)) and (port is None or name.lower() == port) and (
                protocol is None or proto.lower() == protocol
            )

        if not record.is_headless:
            target = service_fqdn(service, namespace, self.zone_text)
            ips = record.cluster_ips
            return [(target, p.port, ips) for p in record.service.ports if wanted(p.name, p.protocol)]
        return [
            (endpoint_fqdn(ready.name, service, namespace, self.zone_text), p.port, ready.addresses)
            for ready in self._endpoints(namespace, service).by_name.values()
            for p in ready.ports
            if p.port is not None and wanted(p.name, p.protocol)
        ]

    def _pod(self, qtype: int, ip: IPAddress, namespace: str) -> _Found | None:
        mode = self.settings.pods
        if mode == "disabled" or not self._namespace_exists(namespace):
            return None
        if mode == "verified":
            self.reads.add(PodScope(namespace, ip.packed))
            if not self.index.has_pod(namespace, ip):
                return None
        return self._addresses(qtype, (ip,))

    def _node_ports(
        self,
        qtype: int | None,
        service: str,
        namespace: str,
        port: str | None = None,
        protocol: str | None = None,
    ) -> _Found | None:
        self.reads.update((ServiceScope(namespace, service), NODES))  # the SRV targets are Nodes
        record = self._visible_service(namespace, service)
        if record is None or record.service.type not in NODE_PORT_TYPES:
            return None
        node_ports = [
            p.node_port
            for p in record.service.ports
            if p.name
            and p.node_port is not None
            and (port is None or p.name.lower() == port)
            and (protocol is None or p.protocol.lower() == protocol)
        ]
        if not node_ports:
            return None
        if qtype != _SRV:
            return _Found()
        nodes = [n for n in self.index.nodes() if n.internal_ips]
        return self._srv(
            [(node_fqdn(n.name, self.zone_text), number, n.internal_ips) for number in node_ports for n in nodes]
        )

    def _reverse(self, qtype: int, ip: IPAddress) -> _Found | None:
        targets = self.index.ptr_targets(ip)
        if not targets:
            return None
        if qtype != _PTR:
            return _Found()
        zone = self.settings.zone  # PTR targets are in the cluster zone (R14)
        return _Found(
            [
                records.ptr(
                    self.label,
                    service_fqdn(t.service, t.namespace, zone)
                    if t.endpoint is None
                    else endpoint_fqdn(t.endpoint, t.service, t.namespace, zone),
                    self.ttl,
                )
                for t in targets
            ]
        )

    # --- record sets ---------------------------------------------------------------------

    def _addresses(self, qtype: int, ips: Iterable[IPAddress]) -> _Found:
        """The A or AAAA records among `ips` for an address query; NODATA for other types
        and for the other family."""
        family = _FAMILY.get(qtype)
        if family is None:
            return _Found()
        return _Found([records.address(self.label, ip, self.ttl) for ip in ips if isinstance(ip, family)])

    def _srv(self, entries: Sequence[_SrvEntry]) -> _Found:
        """SRV records, one per (target, port), with the targets' addresses in additional."""
        unique = list(dict.fromkeys((target, port) for target, port, _ in entries))
        if not unique:
            return _Found()
        weight = max(1, 100 // len(unique))
        labels = {target: records.label(target) for target, _ in unique}
        answer = [records.srv(self.label, labels[target], port, weight, self.ttl) for target, port in unique]
        glue = dict.fromkeys((target, ip) for target, _, ips in entries for ip in ips)
        return _Found(answer, [records.address(labels[target], ip, self.ttl) for target, ip in glue])
