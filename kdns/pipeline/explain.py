"""Why an answer is what it is: `explain(name, type, ...)` -> an `Explanation`.

The answer is the Router's own, for a client on loopback or the one named, so the
explanation never disagrees with what `dig` gets from there (the recursion ACL and
autopath depend on who asks).
Around it, the explanation names:

* the rule that applied, by its number in docs/dns-rules.md (R1, R2, ...), with the
  Kubernetes DNS specification's section or the RFC behind it, in words;
* where the answer came from (`Answer.source`): the registry ("cluster"), a static zone
  (which file), the forwarding cache or an upstream, or kdns itself (a refusal);
* the objects it was made from: the Service, its EndpointSlices and the Pods their
  endpoints point at, the Node, the pod address;
* every endpoint of those slices, and for each one left out, why: not ready,
  terminating, the other address family, another name (no hostname: named by its
  address), an FQDN slice;
* the TTL a resolver may keep it: the smallest record TTL, or for a negative answer the
  SOA's negative TTL (RFC 2308 §5).

It reads the live registry of a running kdns through the API (`GET /debug/explain`)
or, offline, one built from manifests (`kdns explain --manifests`).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import dns.exception
import dns.name

from kdns.authority.index import ClusterIndex
from kdns.authority.names import (
    Apex,
    DnsVersion,
    EndpointName,
    InvalidName,
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
    dashed,
    namespace_of,
    parse,
)
from kdns.authority.static import StaticZones
from kdns.config import Settings
from kdns.message import (
    NOERROR,
    NXDOMAIN,
    QTYPE,
    RR,
    Answer,
    EdeCode,
    Query,
    Source,
    rcode_text,
    type_text,
)
from kdns.registry.objects import (
    ENDPOINT_SLICE,
    POD,
    SERVICE,
    EndpointSlice,
    KubeObject,
    Pod,
    Service,
)

__all__ = ["EndpointNote", "Explanation", "explain", "qtype_number"]

# How long an explanation waits for an upstream before saying so.
UPSTREAM_TIMEOUT = 4.0
# The client an explanation asks as: loopback, which --allow-recursion admits by default.
CLIENT = "127.0.0.1"

# Reasons an endpoint is left out, as `EndpointNote.reason` words them.
NOT_READY = "not ready"
TERMINATING = "terminating"
OTHER_FAMILY = "wrong address family"
NO_HOSTNAME = "no hostname"
OTHER_NAME = "another name"
FQDN_SLICE = "FQDN slice: no address to publish"


@dataclass(frozen=True, slots=True)
class EndpointNote:
    """One address of an EndpointSlice, and whether it is in the answer (reason None) or why not."""

    slice: str
    address: str
    name: str  # its DNS label: the hostname, else the address dashed
    pod: str | None  # the Pod its targetRef names
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the answer to (name, type) is what it is; `render()` is the text people read."""

    name: str
    type: str
    rcode: str
    source: Source
    rule: str
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    ttl: int | None = None
    authoritative: bool = False
    errors: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    endpoints: tuple[EndpointNote, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        """The inverse of `to_dict` (the JSON of `GET /debug/explain`)."""
        fields = dict(data)
        for name in ("answer", "authority", "additional", "errors", "objects", "notes"):
            fields[name] = tuple(fields.get(name, ()))
        fields["endpoints"] = tuple(EndpointNote(**note) for note in fields.get("endpoints", ()))
        return cls(**fields)

    def render(self) -> str:
        lines = [
            f"{self.name} {self.type}: {self.rcode}"
            + (" (authoritative)" if self.authoritative else "")
            + f", from {_SOURCE_WORDS[self.source]}",
            f"rule: {self.rule}",
        ]
        if self.ttl is not None:
            lines.append(f"ttl: {self.ttl} s")
        for title, records in (("answer", self.answer), ("authority", self.authority), ("additional", self.additional)):
            if records:
                lines.append(f"{title}:")
                lines.extend(f"  {record}" for record in records)
        if self.errors:
            lines.append("extended errors (RFC 8914):")
            lines.extend(f"  {error}" for error in self.errors)
        if self.objects:
            lines.append("made from:")
            lines.extend(f"  {obj}" for obj in self.objects)
        used = [e for e in self.endpoints if e.reason is None]
        left = [e for e in self.endpoints if e.reason is not None]
        for title, notes in (("endpoints used", used), ("endpoints left out", left)):
            if notes:
                lines.append(f"{title}:")
                for note in notes:
                    pod = f" (pod {note.pod})" if note.pod else ""
                    why = f": {note.reason}" if note.reason else ""
                    lines.append(f"  {note.address} {note.name}{pod} in {note.slice}{why}")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines) + "\n"


_SOURCE_WORDS: dict[str, str] = {
    "cluster": "the cluster registry",
    "zone": "a static zone",
    "cache": "the forwarding cache",
    "upstream": "an upstream resolver",
    "server": "kdns itself (no data)",
}


def qtype_number(text: str) -> int:
    """`A`, `srv`, `TYPE65` or `28` -> the type number; ValueError if it is none."""
    word = text.strip().upper()
    if word.isdigit():
        return int(word)
    if word.startswith("TYPE") and word[4:].isdigit():
        return int(word[4:])
    number: int | None = QTYPE.reverse.get(word)
    if number is None:
        raise ValueError(f"unknown record type {text!r}")
    return number


def _absolute(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValueError("a name is required")
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise ValueError(f"{name!r}: not a domain name: {exc}") from None
    return name if name.endswith(".") else name + "."


def explain(
    name: str,
    qtype: int,
    *,
    router: Callable[[Query], Answer | Awaitable[Answer]],
    index: ClusterIndex,
    static: StaticZones,
    objects: Callable[[str, str | None], list[KubeObject]],
    settings: Settings,
    client: str = CLIENT,
) -> Awaitable[Explanation]:
    """Explain the answer to `name` `qtype` as `client` gets it (ValueError for a name,
    type or client address that is none).

    `router` answers the question as kdns does; `objects(kind, namespace)` lists the
    registry's objects (`Store.list`).
    """
    try:
        client = str(ipaddress.ip_address(client))
    except ValueError:
        raise ValueError(f"client {client!r}: not an IP address") from None
    query = Query(id=0, qname=_absolute(name), qtype=qtype, client=client, edns=True, payload=65535)
    return _explained(query, router, index, static, objects, settings)


async def _explained(
    query: Query,
    router: Callable[[Query], Answer | Awaitable[Answer]],
    index: ClusterIndex,
    static: StaticZones,
    objects: Callable[[str, str | None], list[KubeObject]],
    settings: Settings,
) -> Explanation:
    result = router(query)
    if not isinstance(result, Answer):
        try:
            async with asyncio.timeout(UPSTREAM_TIMEOUT):
                result = await result
        except TimeoutError:
            return Explanation(
                name=query.qname,
                type=type_text(query.qtype),
                rcode="SERVFAIL",
                source="upstream",
                rule=f"forwarded: no upstream answered within {UPSTREAM_TIMEOUT:g} s",
            )
    rule, objs, endpoints, notes = _why(query, result, index, static, objects, settings)
    return Explanation(
        name=query.qname,
        type=type_text(query.qtype),
        rcode=rcode_text(result.rcode),
        source=result.source,
        rule=rule,
        answer=tuple(_text(rr) for rr in result.answer),
        authority=tuple(_text(rr) for rr in result.authority),
        additional=tuple(_text(rr) for rr in result.additional),
        ttl=_ttl(result),
        authoritative=result.authoritative,
        errors=tuple(f"{int(e.code)} {EdeCode(e.code).name.replace('_', ' ').title()}: {e.text}" for e in result.errors),
        objects=tuple(objs),
        endpoints=tuple(endpoints),
        notes=tuple(notes),
    )


def _text(rr: RR) -> str:
    return " ".join(rr.toZone().split())


def _ttl(result: Answer) -> int | None:
    """How long a resolver may keep the answer: the smallest record TTL; for a negative
    answer, min(SOA TTL, SOA MINIMUM) (RFC 2308 §5)."""
    if result.rcode not in (NOERROR, NXDOMAIN):
        return None
    if result.answer and result.rcode == NOERROR and any(rr.rtype != QTYPE.CNAME for rr in result.answer):
        return min(int(rr.ttl) for rr in result.answer)
    soas = [rr for rr in result.authority if rr.rtype == QTYPE.SOA]
    if soas:
        return min(min(int(rr.ttl), int(rr.rdata.times[-1])) for rr in soas)
    return min((int(rr.ttl) for rr in result.answer), default=None)


_Why = tuple[str, list[str], list[EndpointNote], list[str]]


def _why(
    query: Query,
    result: Answer,
    index: ClusterIndex,
    static: StaticZones,
    objects: Callable[[str, str | None], list[KubeObject]],
    settings: Settings,
) -> _Why:
    """(rule, objects, endpoints, notes) for `result`, by where it came from."""
    notes = []
    cnames = [rr for rr in result.answer if rr.rtype == QTYPE.CNAME]
    if len(cnames) > 1 or (cnames and len(result.answer) > 1):
        notes.append(
            f"CNAME chain of {len(cnames)}: followed to {cnames[-1].rdata.label!s} "
            "(at most 8 CNAMEs in one answer)"
        )
    match result.source:
        case "cluster":
            rule, objs, endpoints = _cluster(query, result, index, objects, settings)
            return rule, objs, endpoints, notes
        case "zone":
            zone = static.zone_for(dns.name.from_text(query.name))
            where = f"static zone {zone.origin} ({zone.path}, serial {zone.serial})" if zone is not None else "a static zone"
            return _zone_rule(result) + f" in {where}", [where], [], notes
        case "cache" | "upstream":
            stale = any(e.code in (EdeCode.STALE_ANSWER, EdeCode.STALE_NXDOMAIN_ANSWER) for e in result.errors)
            rule = (
                "R33: forwarded: every upstream failed, so an expired cached answer is served (RFC 8767)"
                if stale
                else "R32: forwarded: a name outside the served zones, asked upstream (--upstream)"
                if result.source == "upstream"
                else "R33: forwarded: a name outside the served zones, answered from the forwarding cache"
            )
            return rule, [], [], notes
    reasons = "; ".join(e.text for e in result.errors) or "no zone kdns serves holds this name"
    return f"R29: not answered from data: {reasons}", [], [], notes


def _zone_rule(result: Answer) -> str:
    if result.rcode == NXDOMAIN:
        return "R35: NXDOMAIN: no such name (RFC 1034 §4.3.2), negative TTL from the zone's SOA (RFC 2308)"
    if not result.authoritative and result.authority:
        return "R35: referral: a delegation below the zone's apex, with its NS set and glue (RFC 1034 §4.3.2)"
    if not result.answer:
        return "R35: NODATA: the name exists without this type (RFC 2308)"
    return "R35: records of the zone file (RFC 1035), wildcards per RFC 4592"


def _cluster(
    query: Query,
    result: Answer,
    index: ClusterIndex,
    objects: Callable[[str, str | None], list[KubeObject]],
    settings: Settings,
) -> tuple[str, list[str], list[EndpointNote]]:
    """The rule, objects and endpoints of an answer from the cluster zone or a reverse zone."""
    try:
        shape = parse(query.name, settings.zone, settings.reverse_zones)
    except InvalidName as exc:
        return f"R3: NXDOMAIN: no name of this shape can exist in the cluster zone ({exc})", [], []
    namespace = namespace_of(shape)
    if namespace is not None and namespace not in index.namespaces:
        return f"R5: NXDOMAIN: namespace {namespace!r} does not exist (names in it exist only with it)", [], []
    qtype = query.qtype
    match shape:
        case Apex():
            return "R18, R19: the zone apex: its SOA and NS (serial = the registry's resourceVersion)", [], []
        case DnsVersion():
            return "R6 (spec §2.2): dns-version TXT gives the schema version; NODATA for other types", [], []
        case Structural(label=label):
            return f"R4: empty non-terminal {label}.<zone>: exists, no data (RFC 8020)", [], []
        case NameServer():
            return "R18: ns.dns.<zone>: the address kdns serves DNS on", [], []
        case ReversePrefix():
            if result.rcode == NXDOMAIN:
                return "R4: partial reverse name with no known address below it: NXDOMAIN (RFC 8020)", [], []
            return "R4: partial reverse name with known addresses below it: empty non-terminal, NODATA", [], []
        case NamespaceName(kind=kind):
            if kind == "pod" and settings.pods == "disabled":
                return "R5, R15: --pods disabled: nothing exists below pod.<zone> (as CoreDNS)", [], []
            return f"R5: namespace node {namespace}.{kind}.<zone>: exists while the Namespace does, no data", [f"Namespace {namespace}"], []
        case PodName(namespace=ns):
            ip = shape.address
            if settings.pods == "disabled":
                return "R15: --pods disabled: no pod records (as CoreDNS `pods disabled`)", [], []
            if settings.pods == "insecure":
                return "R15 (pods insecure): any dashed address answers itself", [], []
            pods = [p for p in objects(POD, ns) if isinstance(p, Pod) and str(ip) in p.pod_ips[:1]]
            if result.rcode == NXDOMAIN:
                return f"R15: --pods verified: no running pod in {ns} has the address {ip}", [f"Pod {ns}/{p.meta.name}" for p in pods], []
            return f"R15: --pods verified: a running pod in {ns} has the address {ip}", [f"Pod {ns}/{p.meta.name}" for p in pods], []
        case NodeName(node=node):
            record = index.node(node)
            if record is None:
                return "R17: kdns extension node.<zone>: no Node of that name", [], []
            return "R17: kdns extension: a Node's InternalIP addresses", [f"Node {node}"], []
        case NodePortServiceName() | NodePortProtocolName() | NodePortName():
            rule = (
                "R16: kdns extension nodeport.<zone>: one SRV per Node with an InternalIP, port = the nodePort "
                "of a named port of a NodePort or LoadBalancer Service"
            )
            return (
                rule,
                [f"Service {shape.namespace}/{shape.service}", *(f"Node {n.name}" for n in index.nodes())],
                [],
            )
        case ReverseName():
            return _reverse(shape, result, index, objects)
        case ServiceName() | EndpointName() | ProtocolName() | PortName():
            return _service(shape, qtype, result, index, objects)
    raise AssertionError(f"unhandled name {shape!r}")  # pragma: no cover


def _reverse(
    shape: ReverseName, result: Answer, index: ClusterIndex, objects: Callable[[str, str | None], list[KubeObject]]
) -> tuple[str, list[str], list[EndpointNote]]:
    targets = index.ptr_targets(shape.address)
    if not targets:
        return "R14 (spec §2.3.3, §2.4.3): no Service has this cluster IP and no ready endpoint this address: NXDOMAIN", [], []
    objs = [f"Service {namespace}/{service}" for namespace, service in dict.fromkeys((t.namespace, t.service) for t in targets)]
    if targets[0].endpoint is None:
        return "R14 (spec §2.3.3): PTR of a cluster IP names its Service (every Service sharing it)", objs, []
    endpoints: list[EndpointNote] = []
    for target in targets:
        endpoints += _endpoint_notes(target.namespace, target.service, objects, want=None, address=str(shape.address))
    return "R14 (spec §2.4.3): PTR of a ready endpoint's address names the endpoint", objs, endpoints


def _service(
    shape: ServiceName | EndpointName | ProtocolName | PortName,
    qtype: int,
    result: Answer,
    index: ClusterIndex,
    objects: Callable[[str, str | None], list[KubeObject]],
) -> tuple[str, list[str], list[EndpointNote]]:
    ns, name = shape.namespace, shape.service
    service = next((s for s in objects(SERVICE, ns) if s.meta.name == name), None)
    if not isinstance(service, Service):
        return f"R7, R8: NXDOMAIN: no Service {name!r} in namespace {ns!r}", [], []
    objs = [f"Service {ns}/{name} (type {service.type}{', headless' if service.headless else ''})"]
    slices = [s for s in objects(ENDPOINT_SLICE, ns) if isinstance(s, EndpointSlice) and s.service_name == name]
    objs += [f"EndpointSlice {ns}/{s.meta.name}" for s in slices]
    if service.type == "ExternalName":
        if isinstance(shape, ServiceName):
            return "R13 (spec §2.5): an ExternalName Service is a CNAME to its externalName, for every type", objs, []
        return "R13 (spec §2.5): nothing exists below an ExternalName Service", objs, []
    headless = service.headless
    family = {QTYPE.A: 4, QTYPE.AAAA: 6}.get(qtype)
    match shape:
        case ServiceName() if qtype == QTYPE.SRV:
            rule = (
                "R11: bare-name SRV: every port of the Service, named or not, as CoreDNS does "
                + ("(spec §2.4.2: one per ready endpoint)" if headless else "(spec §2.3.2: the Service's ports)")
            )
            want = None
        case ServiceName() if headless:
            rule = "R8, R9 (spec §2.4.1): a headless Service answers one record per ready endpoint"
            if result.rcode == NXDOMAIN:
                rule += "; with no ready endpoint it has no name (NXDOMAIN)"
            want = None
        case ServiceName():
            rule = "R7 (spec §2.3.1): a ClusterIP Service answers its cluster IPs" + (
                "; none of this family (NODATA)" if result.rcode == NOERROR and not result.answer else ""
            )
            return rule, objs, []
        case EndpointName(endpoint=endpoint):
            rule = "R10 (spec §2.4.1): <endpoint>.<service> names a ready endpoint by its hostname, else its dashed address"
            if result.rcode == NXDOMAIN:
                rule += f"; no ready endpoint is named {endpoint!r} (NXDOMAIN)"
            want = endpoint
        case PortName(protocol=protocol) | ProtocolName(protocol=protocol):
            rule = (
                f"R11 (spec §2.3.2, §2.4.2): SRV of the named port {shape.port!r}/{protocol}"
                if isinstance(shape, PortName)
                else f"R11: _{protocol}.<service>: exists while a named port of that protocol does"
            )
            if result.rcode == NXDOMAIN:
                rule += "; the Service has no such named port (NXDOMAIN)"
            if not headless:
                return rule, objs, []
            want = None
    notes = []
    for endpoint_slice in slices:
        notes += _slice_notes(endpoint_slice, want=want, family=family)
    pods = sorted({n.pod for n in notes if n.pod})
    objs += [f"Pod {ns}/{pod}" for pod in pods]
    return rule, objs, notes


def _endpoint_notes(
    namespace: str,
    service: str,
    objects: Callable[[str, str | None], list[KubeObject]],
    *,
    want: str | None,
    address: str | None = None,
) -> list[EndpointNote]:
    notes = []
    for endpoint_slice in objects(ENDPOINT_SLICE, namespace):
        if isinstance(endpoint_slice, EndpointSlice) and endpoint_slice.service_name == service:
            notes += _slice_notes(endpoint_slice, want=want, family=None, address=address)
    return notes


def _slice_notes(
    endpoint_slice: EndpointSlice, *, want: str | None, family: int | None, address: str | None = None
) -> list[EndpointNote]:
    """Every address of a slice, with the reason it is left out of the answer (None: in it).

    `want`: the endpoint name asked (None: any); `family`: 4 or 6 for A or AAAA queries;
    `address`: only this address (a PTR question).
    """
    notes = []
    slice_name = f"{endpoint_slice.meta.namespace}/{endpoint_slice.meta.name}"
    fqdn = endpoint_slice.address_type not in ("IPv4", "IPv6")
    for endpoint in endpoint_slice.endpoints:
        pod = endpoint.target_ref.name if endpoint.target_ref is not None and endpoint.target_ref.kind == "Pod" else None
        for text in endpoint.addresses:
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                ip = None
            if address is not None and (ip is None or str(ip) != address):
                continue
            label = endpoint.hostname.lower() or (dashed(ip) if ip is not None else text)
            reason: str | None = None
            if fqdn or ip is None:
                reason = FQDN_SLICE
            elif not endpoint.is_ready:
                reason = TERMINATING if endpoint.conditions.terminating else NOT_READY
            elif want is not None and label != want:
                if not endpoint.hostname and pod == want:
                    reason = f"{NO_HOSTNAME}: named by its address, {label}"
                else:
                    reason = f"{OTHER_NAME}: {label}"
            elif family is not None and ip.version != family:
                reason = f"{OTHER_FAMILY}: IPv{ip.version}"
            notes.append(EndpointNote(slice_name, text, label, pod, reason))
    return notes
