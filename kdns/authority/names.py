"""Query names of the cluster zone and the reverse zones, parsed into types.

This is the only module that splits a name on dots: `parse` reads a
lower-cased absolute name from the right, as CoreDNS `plugin/kubernetes/parse.go` does,
and returns one frozen value per shape, or raises `InvalidName`, which means NXDOMAIN
whatever the data. Whether a well-shaped name exists is for the answer logic to decide.

Shapes, labels left of the cluster zone (docs/dns-rules.md R3, with kdns's own trees):

    (none)                                  Apex
    dns-version                             DnsVersion
    svc | pod | nodeport | node | dns       Structural      (always exist: NODATA)
    ns.dns                                  NameServer
    <ns>.svc | <ns>.pod | <ns>.nodeport     NamespaceName
    <svc>.<ns>.svc                          ServiceName
    <endpoint>.<svc>.<ns>.svc               EndpointName
    _<proto>.<svc>.<ns>.svc                 ProtocolName    (parent of the SRV names)
    _<port>._<proto>.<svc>.<ns>.svc         PortName
    <dashed-ip>.<ns>.pod                    PodName
    <node>.node                             NodeName        (node names may hold dots)
    <svc>.<ns>.nodeport                     NodePortServiceName
    _<proto>.<svc>.<ns>.nodeport            NodePortProtocolName
    _<port>._<proto>.<svc>.<ns>.nodeport    NodePortName

and below the reverse zones: the apex (Apex), a whole address (ReverseName: 4 octets
under in-addr.arpa., 32 nibbles under ip6.arpa.), or a shorter, well-formed prefix
(ReversePrefix, an empty non-terminal while an address lies below it, R4). Port and
protocol labels need their leading underscore, and no label is a wildcard (R3; CoreDNS
reads `http.tcp` as `_http._tcp`).

The builders at the bottom go the other way: the names kdns writes into records.
`split_search` and `search_list` read and write the expansions a pod's resolver makes of
a name from its search path (the Router's autopath).
"""

from __future__ import annotations

import ipaddress

from kdns.errors import KdnsError
from kdns.values import value

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IN_ADDR_ARPA = "in-addr.arpa."
IP6_ARPA = "ip6.arpa."
REVERSE_ZONES = (IN_ADDR_ARPA, IP6_ARPA)
# SRV protocol labels (spec §2.3.2: lower case), from the Service protocols.
PROTOCOLS = frozenset({"tcp", "udp", "sctp"})
STRUCTURAL_LABELS = frozenset({"svc", "pod", "nodeport", "node", "dns"})
_HEX_NIBBLES = frozenset("0123456789abcdef")


class InvalidName(KdnsError):
    """The name has no possible meaning in the served zones (NXDOMAIN)."""


@value
class Apex:
    """The apex of a served zone (the cluster zone or a reverse zone)."""


@value
class DnsVersion:
    """`dns-version.<zone>`: the schema TXT record."""


@value
class NameServer:
    """`ns.dns.<zone>`: the target of the apex NS record."""


@value
class Structural:
    """`svc`, `pod`, `nodeport`, `node` or `dns` right below the zone: always exists, no data."""

    label: str


@value
class NamespaceName:
    """`<ns>.svc`, `<ns>.pod` or `<ns>.nodeport` (kind says which)."""

    kind: str
    namespace: str


@value
class ServiceName:
    service: str
    namespace: str


@value
class EndpointName:
    endpoint: str
    service: str
    namespace: str


@value
class ProtocolName:
    """`_<proto>.<svc>.<ns>.svc`: exists when an SRV name exists below it."""

    protocol: str
    service: str
    namespace: str


@value
class PortName:
    """`_<port>._<proto>.<svc>.<ns>.svc`; port and protocol without underscores, lower case."""

    port: str
    protocol: str
    service: str
    namespace: str


@value
class PodName:
    """`<dashed-ip>.<ns>.pod`; parse has checked that the label is an address."""

    dashed_ip: str
    namespace: str

    @property
    def address(self) -> IPAddress:
        return _undash(self.dashed_ip)


@value
class NodeName:
    node: str


@value
class NodePortServiceName:
    service: str
    namespace: str


@value
class NodePortProtocolName:
    protocol: str
    service: str
    namespace: str


@value
class NodePortName:
    port: str
    protocol: str
    service: str
    namespace: str


@value
class ReverseName:
    """A whole address under in-addr.arpa. or ip6.arpa.; `ip` is its canonical text."""

    ip: str

    @property
    def address(self) -> IPAddress:
        if ":" in self.ip:
            return ipaddress.IPv6Address(self.ip)
        # Four decimal octets, as `parse` made them: from their bytes, without
        # ipaddress's reading of the text (four Python calls, one an octet).
        return ipaddress.IPv4Address(bytes(map(int, self.ip.split("."))))


@value
class ReversePrefix:
    """A well-formed part of a reverse name (`10.in-addr.arpa.`), as labels under the
    reverse zone of IP `version` 4 or 6. It exists, as an empty non-terminal (NODATA),
    while a known address lies below it; else it is NXDOMAIN (RFC 8020: nothing below)."""

    labels: tuple[str, ...]
    version: int = 4


Name = (
    Apex
    | DnsVersion
    | NameServer
    | Structural
    | NamespaceName
    | ServiceName
    | EndpointName
    | ProtocolName
    | PortName
    | PodName
    | NodeName
    | NodePortServiceName
    | NodePortProtocolName
    | NodePortName
    | ReverseName
    | ReversePrefix
)

APEX = Apex()
DNS_VERSION = DnsVersion()
NAME_SERVER = NameServer()


def namespace_of(name: Name) -> str | None:
    """The namespace a name is in, for the shapes that are in one."""
    match name:
        case (
            NamespaceName(namespace=namespace)
            | ServiceName(namespace=namespace)
            | EndpointName(namespace=namespace)
            | ProtocolName(namespace=namespace)
            | PortName(namespace=namespace)
            | PodName(namespace=namespace)
            | NodePortServiceName(namespace=namespace)
            | NodePortProtocolName(namespace=namespace)
            | NodePortName(namespace=namespace)
        ):
            return namespace
    return None


def is_below(name: str, zone: str) -> bool:
    """`name` is `zone` or inside it (both lower case, absolute)."""
    return name == zone or name.endswith("." + zone)


def zone_of(name: str, zone: str, reverse_zones: tuple[str, ...] = REVERSE_ZONES) -> str | None:
    """The served zone `name` belongs to, the most specific one, or None if kdns does not
    serve it (the router then refuses or forwards it). Lower case, absolute in and out."""
    best = None
    size = len(name)
    # is_below, inline: every question asks this once or twice.
    for candidate in (zone, *reverse_zones):
        if name.endswith(candidate):
            length = len(candidate)
            if (length == size or name[size - length - 1] == ".") and (best is None or length > len(best)):
                best = candidate
    return best


def parse(name: str, zone: str, reverse_zones: tuple[str, ...] = REVERSE_ZONES) -> Name:
    """Read a lower-case absolute name of a served zone; InvalidName if it cannot exist."""
    served = zone_of(name, zone, reverse_zones)
    if served is None:
        raise InvalidName(f"{name}: not in a served zone")
    return parse_in(name, served, zone)


def parse_in(name: str, served: str, zone: str) -> Name:
    """`parse(name, zone, ...)` for a name whose served zone (`zone_of`) is known: `served`."""
    if name == served:
        return APEX
    if served == zone:
        return _parse_cluster(_labels(name, zone))
    if is_below(name, IN_ADDR_ARPA):
        return _parse_in_addr(_labels(name, IN_ADDR_ARPA))
    if is_below(name, IP6_ARPA):
        return _parse_ip6(_labels(name, IP6_ARPA))
    raise InvalidName(f"{name}: a reverse zone outside in-addr.arpa. and ip6.arpa.")


def _labels(name: str, zone: str) -> list[str]:
    """The labels of `name` left of `zone`, which it is strictly below."""
    labels = name[: len(name) - len(zone) - 1].split(".")
    if "" in labels:
        raise InvalidName(f"{name}: empty label")
    return labels


def _parse_cluster(labels: list[str]) -> Name:
    *rest, top = labels
    if top == "dns-version" and not rest:
        return DNS_VERSION
    if top not in STRUCTURAL_LABELS:
        raise InvalidName(f"{top!r}: not a type label of the cluster zone")
    if not rest:
        return Structural(top)
    if top == "dns":
        if rest == ["ns"]:
            return NAME_SERVER
        raise InvalidName("only ns.dns exists below dns")
    if top == "node":
        # Node names are DNS subdomains, so they may span labels (ip-10-0-0-1.ec2.internal).
        return NodeName(".".join(rest))
    *rest, namespace = rest
    if not rest:
        return NamespaceName(top, namespace)
    if top == "pod":
        if len(rest) == 1:
            _undash(rest[0])
            return PodName(rest[0], namespace)
        raise InvalidName("a pod name is one dashed address")
    *rest, service = rest
    if top == "svc":
        if not rest:
            return ServiceName(service, namespace)
        if len(rest) == 1:
            if rest[0].startswith("_"):
                return ProtocolName(_protocol(rest[0]), service, namespace)
            return EndpointName(rest[0], service, namespace)
        if len(rest) == 2:
            return PortName(_port(rest[0]), _protocol(rest[1]), service, namespace)
        raise InvalidName("too many labels left of the service")
    # nodeport: the same shapes as svc, without endpoint names.
    if not rest:
        return NodePortServiceName(service, namespace)
    if len(rest) == 1:
        return NodePortProtocolName(_protocol(rest[0]), service, namespace)
    if len(rest) == 2:
        return NodePortName(_port(rest[0]), _protocol(rest[1]), service, namespace)
    raise InvalidName("too many labels left of the service")


def _protocol(label: str) -> str:
    if label.startswith("_") and label[1:] in PROTOCOLS:
        return label[1:]
    raise InvalidName(f"{label!r}: not a protocol label (_tcp, _udp, _sctp)")


def _port(label: str) -> str:
    if label.startswith("_") and len(label) > 1:
        return label[1:]
    raise InvalidName(f"{label!r}: not a port label (_<name>)")


def _parse_in_addr(labels: list[str]) -> Name:
    if len(labels) > 4:
        raise InvalidName("more than four octets below in-addr.arpa.")
    for label in labels:
        # Decimal 0-255 without leading zeros: the only spelling an address reverses to.
        if not (label.isdigit() and label.isascii() and str(int(label)) == label and int(label) < 256):
            raise InvalidName(f"{label!r}: not an octet")
    if len(labels) < 4:
        return ReversePrefix(tuple(labels))
    return ReverseName(".".join(reversed(labels)))


def _parse_ip6(labels: list[str]) -> Name:
    if len(labels) > 32:
        raise InvalidName("more than 32 nibbles below ip6.arpa.")
    for label in labels:
        if len(label) != 1 or label not in _HEX_NIBBLES:
            raise InvalidName(f"{label!r}: not a nibble")
    if len(labels) < 32:
        return ReversePrefix(tuple(labels), 6)
    return ReverseName(str(ipaddress.IPv6Address(int("".join(reversed(labels)), 16))))


def _undash(label: str) -> IPAddress:
    """The address a dashed label spells: three dashes and no `--` is IPv4, else IPv6."""
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
    else:
        text = label.replace("-", ":")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidName(f"{label!r}: not a dashed IP address") from None


# --- names kdns writes --------------------------------------------------------------


def dashed(address: IPAddress) -> str:
    """The endpoint or pod label of an address: `10-0-0-1`, `fd00--1`.

    Built from the canonical text, so every spelling of an address gets one label
    (docs/dns-rules.md R10; CoreDNS uses the text as written). A trailing `::` would leave a trailing dash, so `0` is appended
    (`2001:db8::` -> `2001-db8--0`), as CoreDNS does.
    """
    text = str(address).replace(":", "-").replace(".", "-")
    return text + "0" if text.endswith("-") else text


def reverse_name(address: IPAddress) -> str:
    """`10.0.0.1` -> `1.0.0.10.in-addr.arpa.`; IPv6 in full nibbles."""
    return address.reverse_pointer + "."


def service_fqdn(service: str, namespace: str, zone: str) -> str:
    return f"{service}.{namespace}.svc.{zone}"


def endpoint_fqdn(endpoint: str, service: str, namespace: str, zone: str) -> str:
    return f"{endpoint}.{service}.{namespace}.svc.{zone}"


def node_fqdn(node: str, zone: str) -> str:
    return f"{node}.node.{zone}"


def nameserver_fqdn(zone: str) -> str:
    return f"ns.dns.{zone}"


def hostmaster_fqdn(zone: str) -> str:
    return f"hostmaster.{zone}"


def ancestors(relative: str) -> list[str]:
    """`a.b.c` -> [`b.c`, `c`]: the names strictly above a relative name (a dotted node
    name's empty non-terminals under node.<zone>)."""
    parts = relative.split(".")
    return [".".join(parts[i:]) for i in range(1, len(parts))]


def target_name(text: str) -> str | None:
    """An ExternalName's target as an absolute name (a trailing dot accepted, case kept),
    or None when it cannot be a CNAME target: empty, an IP address (spec §2.5,
    docs/dns-rules.md R13), or not a valid domain name."""
    text = text.strip().rstrip(".")
    if not text or len(text) > 253:
        return None
    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        pass
    if any(not label or len(label) > 63 for label in text.split(".")):
        return None
    return text + "."


def search_list(namespace: str, zone: str) -> tuple[str, str, str]:
    """The search domains kubelet writes into a ClusterFirst pod's resolv.conf, in order:
    `<ns>.svc.<zone>`, `svc.<zone>`, `<zone>` (Kubernetes spec §1, "Pod DNS")."""
    return (f"{namespace}.svc.{zone}", f"svc.{zone}", zone)


def split_search(name: str, zone: str) -> tuple[str, str] | None:
    """`www.example.com.shop.svc.cluster.local.` -> (`www.example.com`, `shop`): the name a
    pod of namespace `shop` asked for, if `name` is it expanded by the pod's first search
    domain (`search_list`); None for any other name. Lower case, `name` absolute."""
    suffix = ".svc." + zone
    if not name.endswith(suffix):
        return None
    asked, dot, namespace = name[: -len(suffix)].rpartition(".")
    if not dot or not asked or not namespace or asked.startswith(".") or ".." in asked:
        return None
    return asked, namespace
