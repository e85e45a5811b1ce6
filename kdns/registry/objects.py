"""The registry's objects: typed, immutable views of Kubernetes documents.

Each object keeps the whole Kubernetes document it was read from (`manifest`, with the API
server's defaults applied and its metadata current), so that what a user wrote comes back
unchanged through the API; the typed fields are parsed from that document once, by
`manifests.from_manifest`, and are what DNS and the controllers read. Nothing builds an
object any other way, so the two never disagree. (The EndpointSlice controller hands
`parse` the typed fields of the slices it writes along with their manifests; a test
checks that they are what parsing those manifests gives.) Treat the mappings as
read-only: a change is a new object.

The document is held packed (`document`, `pack`), not as the tree of dicts and lists it
was read as: a pod's tree takes about 3.5 KB where its packed bytes take 0.5 KB, and at
100,000 pods that is most of the registry's memory (bench/memory.py measures it). Only
the API, the journal, the controllers' checks on an update and the prober read it, each
an object at a time; `manifest` unpacks a fresh copy on every read, so whoever reads it
may change what it got. marshal, not JSON or pickle: of the three it packs fastest (a
pod's document in about a fifth of json.dumps' time) and holds every value a manifest
may carry (YAML's bytes and sets too); the bytes never leave the process.

Immutable by contract, not by `frozen=True`: nothing assigns to an object once it is made
(`dataclasses.replace` makes a changed copy). A frozen dataclass sets each field through
object.__setattr__, which makes building one four times slower (ObjectMeta: 0.89 vs
0.21 µs), and a load of 100,000 pods builds hundreds of thousands: not freezing them
saved 0.35 s of start-up. The small value types (Key, the ports, EndpointConditions,
NodeAddress) stay frozen, because they are hashed.

Cluster-scoped kinds (Namespace, Node) have namespace "".
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

NAMESPACE = "Namespace"
SERVICE = "Service"
POD = "Pod"
NODE = "Node"
ENDPOINT_SLICE = "EndpointSlice"

API_VERSIONS: Mapping[str, str] = {
    NAMESPACE: "v1",
    SERVICE: "v1",
    POD: "v1",
    NODE: "v1",
    ENDPOINT_SLICE: "discovery.k8s.io/v1",
}
NAMESPACED_KINDS = frozenset({SERVICE, POD, ENDPOINT_SLICE})

# Well-known labels (k8s.io/api/discovery/v1 well_known_labels.go).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
# kdns plays the control plane, so its slices carry the controller name Kubernetes uses.
CONTROLLER_NAME = "endpointslice-controller.k8s.io"

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PROTOCOLS = ("TCP", "UDP", "SCTP")
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")


@dataclass(frozen=True, slots=True)
class Key:
    """Where an object lives in the store."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


# Label sets seen lately, each held once: the pods of one workload carry equal labels,
# and a dict of them costs about 240 bytes a pod (24 MiB at 100,000 pods). Bounded:
# emptied when full, so label sets that come and go are not kept for ever.
_LABEL_SETS: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
_LABEL_SETS_MAX = 4096


def shared_labels(labels: dict[str, str]) -> Mapping[str, str]:
    """`labels`, or an equal mapping made before, to hold instead (read-only, as every
    object's mappings are)."""
    key = tuple(labels.items())
    found = _LABEL_SETS.get(key)
    if found is None:
        if len(_LABEL_SETS) >= _LABEL_SETS_MAX:
            _LABEL_SETS.clear()
        found = _LABEL_SETS[key] = labels
    return found


@dataclass(slots=True)
class ObjectMeta:
    name: str
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    uid: str = ""
    resource_version: int = 0
    creation_timestamp: str = ""
    deletion_timestamp: str | None = None


def pack(doc: dict[str, Any]) -> bytes:
    """A document of plain dicts and lists as an object holds it (`document`); `unpack`
    gives it back."""
    return marshal.dumps(doc)


def unpack(document: bytes) -> dict[str, Any]:
    """A fresh copy of the document `pack` made."""
    return marshal.loads(document)  # type: ignore[no-any-return]  # noqa: S302  (only bytes `pack` made in this process)


def may_mention(obj: KubeObject, text: str) -> bool:
    """False when no key or value of `obj`'s document is `text` (True says it may be): a
    look at the packed bytes, where marshal writes every string once in UTF-8, for those
    who read a big registry's documents for something most do not have."""
    return text.encode() in obj.document


EMPTY_DOCUMENT = pack({})


class KubeObject(Protocol):
    """What every registry object has."""

    kind: ClassVar[str]
    meta: ObjectMeta
    document: bytes

    @property
    def key(self) -> Key: ...

    @property
    def manifest(self) -> dict[str, Any]: ...


class _Keyed:
    """The `key` and `manifest` properties, shared by every kind (no fields, so slots stay intact)."""

    __slots__ = ()

    @property
    def key(self) -> Key:
        return Key(self.kind, self.meta.namespace, self.meta.name)  # type: ignore[attr-defined]

    @property
    def manifest(self) -> dict[str, Any]:
        """The object's Kubernetes document, unpacked afresh: read it once per use."""
        return unpack(self.document)  # type: ignore[attr-defined]


@dataclass(slots=True)
class Namespace(_Keyed):
    kind: ClassVar[str] = NAMESPACE
    meta: ObjectMeta
    document: bytes = field(default=EMPTY_DOCUMENT, compare=False, repr=False)  # pack(manifest)


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str  # "" when the port is unnamed (then it has no SRV name)
    protocol: str
    port: int
    target_port: int | str  # a number, or the name of a container port
    node_port: int | None = None


@dataclass(slots=True)
class Service(_Keyed):
    kind: ClassVar[str] = SERVICE
    meta: ObjectMeta
    type: str = "ClusterIP"
    # Every entry of spec.clusterIPs; () for headless and ExternalName services.
    cluster_ips: tuple[str, ...] = ()
    headless: bool = False
    ports: tuple[ServicePort, ...] = ()
    # Empty: the service has no selector and its EndpointSlices are written by hand.
    selector: Mapping[str, str] = field(default_factory=dict)
    external_name: str | None = None
    publish_not_ready_addresses: bool = False
    ip_families: tuple[str, ...] = ()
    document: bytes = field(default=EMPTY_DOCUMENT, compare=False, repr=False)  # pack(manifest)


@dataclass(frozen=True, slots=True)
class ContainerPort:
    name: str
    container_port: int
    protocol: str = "TCP"


@dataclass(slots=True)
class Pod(_Keyed):
    kind: ClassVar[str] = POD
    meta: ObjectMeta
    # status.podIPs (status.podIP first); () until the pod has an address.
    pod_ips: tuple[str, ...] = ()
    phase: str = "Pending"
    # The Ready condition of status.conditions is "True".
    ready: bool = False
    hostname: str = ""
    subdomain: str = ""
    node_name: str = ""
    container_ports: tuple[ContainerPort, ...] = ()
    document: bytes = field(default=EMPTY_DOCUMENT, compare=False, repr=False)  # pack(manifest)


@dataclass(frozen=True, slots=True)
class NodeAddress:
    type: str  # InternalIP, ExternalIP, Hostname, ...
    address: str


@dataclass(slots=True)
class Node(_Keyed):
    kind: ClassVar[str] = NODE
    meta: ObjectMeta
    addresses: tuple[NodeAddress, ...] = ()
    document: bytes = field(default=EMPTY_DOCUMENT, compare=False, repr=False)  # pack(manifest)

    @property
    def internal_ips(self) -> tuple[str, ...]:
        return tuple(a.address for a in self.addresses if a.type == "InternalIP")


@dataclass(slots=True)
class ObjectReference:
    kind: str
    namespace: str
    name: str
    uid: str = ""


@dataclass(frozen=True, slots=True)
class EndpointConditions:
    # None means unknown; for `ready` the discovery API says to treat unknown as ready.
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


# Every EndpointConditions there is (each field None, True or False), to share: the
# manifest reader and the EndpointSlice controller make 100,000 endpoints in a big load.
ENDPOINT_CONDITIONS: Mapping[tuple[bool | None, bool | None, bool | None], EndpointConditions] = {
    (ready, serving, terminating): EndpointConditions(ready, serving, terminating)
    for ready in (None, True, False) for serving in (None, True, False) for terminating in (None, True, False)
}


@dataclass(slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    conditions: EndpointConditions = EndpointConditions()
    hostname: str = ""
    node_name: str = ""
    target_ref: ObjectReference | None = None

    @property
    def is_ready(self) -> bool:
        return self.conditions.ready is not False


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str = ""
    port: int | None = None
    protocol: str = "TCP"


@dataclass(slots=True)
class EndpointSlice(_Keyed):
    kind: ClassVar[str] = ENDPOINT_SLICE
    meta: ObjectMeta
    address_type: str = "IPv4"
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()
    document: bytes = field(default=EMPTY_DOCUMENT, compare=False, repr=False)  # pack(manifest)

    @property
    def service_name(self) -> str:
        return self.meta.labels.get(SERVICE_NAME_LABEL, "")

    @property
    def managed_by(self) -> str:
        return self.meta.labels.get(MANAGED_BY_LABEL, "")


KIND_CLASSES: Mapping[str, Callable[..., KubeObject]] = {
    NAMESPACE: Namespace,
    SERVICE: Service,
    POD: Pod,
    NODE: Node,
    ENDPOINT_SLICE: EndpointSlice,
}

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


@dataclass(slots=True)
class Event:
    """One committed change, as listeners and watches see it.

    `object` is the new state, or for DELETED the last state; `old` is the state before
    (None for ADDED). `resource_version` is the store's version after this change.
    """

    type: str
    object: Any
    old: Any
    resource_version: int


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Service selector (equality only) matches labels; an empty selector matches nothing,
    because a Service without a selector has no managed endpoints."""
    if not selector:
        return False
    for key, value in selector.items():  # noqa: SIM110  (a loop, not all(): this runs for every pod of a load)
        if labels.get(key) != value:
            return False
    return True
