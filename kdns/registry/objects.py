"""The registry's objects: typed, immutable views of Kubernetes documents.

Each object keeps the whole Kubernetes document it was read from (`manifest`, with the API
server's defaults applied and its metadata current), so that what a user wrote comes back
unchanged through the API; the typed fields are parsed from that document once, by
`manifests.from_manifest`, and are what DNS and the controllers read. Nothing builds an
object any other way, so the two never disagree. (The EndpointSlice controller's slices
are the exception: it makes their typed fields, and a new slice is stored from them
alone, `admission.controller_slice`; a test checks that they are what parsing their
manifests gives.) Treat the mappings as read-only: a change is a new object.

The document is held packed (`document`, `pack`), not as the tree of dicts and lists it
was read as: a pod's tree takes about 3.5 KB where its packed bytes take about 150 bytes,
and at 100,000 pods that is most of the registry's memory (bench/memory.py measures it).
Only the API, the journal, the controllers' checks on an update and the prober read it,
each an object at a time; `manifest` unpacks a fresh copy on every read, so whoever reads
it may change what it got. Packed is marshal, then zstd with a dictionary: marshal, not
JSON or pickle, because of the three it packs fastest (a pod's document in about a fifth
of json.dumps' time) and holds every value a manifest may carry (YAML's bytes and sets
too); zstd because most of a marshal'ed document is the keys and values every document
of its kind repeats (`_TYPICAL`), which a dictionary of them lets it write in a few
bytes: the scale cluster's documents average about 150 bytes instead of 630 (77 MiB ->
20 MiB), for about 2 µs more to pack and 1 µs to unpack one. The dictionary is in this
module, so a typed object saved by the journal (kdns/registry/sqlite.py
`object_format`, a digest of this file) is unpacked with the one it was packed with.
The EndpointSlices the controller writes hold no document at all: their typed fields
say all of it, and it is made again when read (`EndpointSlice`, `controller_manifest`).
The pods of a start-up load hold theirs `Deferred` until kdns answers, then packed.

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
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import zstandard

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

    def at_version(self, resource_version: int) -> ObjectMeta:
        """`dataclasses.replace(self, resource_version=resource_version)`, made by position:
        replace reads the fields by name, five times the cost, and the controller's slice
        of a readiness flip takes a new version so (tests/registry/test_objects.py holds
        the two equal, field by field)."""
        return ObjectMeta(self.name, self.namespace, self.labels, self.uid, resource_version,
                          self.creation_timestamp, self.deletion_timestamp)


# What documents of each kind repeat, as the API server leaves them: zstd's dictionary
# (raw content: it finds in it the longest runs a document shares, wherever they are).
# Changing it changes `object_format`, so saved typed objects are read again from JSON.
_TYPICAL: tuple[dict[str, Any], ...] = (
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "default", "labels": {"kubernetes.io/metadata.name": "default"},
        "uid": "00000000-0000-4000-8000-000000000000", "creationTimestamp": "2026-01-01T00:00:00Z",
        "resourceVersion": "1"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
    {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}, "uid": "", "creationTimestamp": "",
        "resourceVersion": "1"}, "status": {"addresses": [
            {"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "node-1"}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "web", "namespace": "default", "labels": {"app": "web"},
        "annotations": {"kdns.dev/manifest-source": "/etc/kdns/manifests/default.yaml"},
        "uid": "00000000-0000-4000-8000-000000000000", "creationTimestamp": "2026-01-01T00:00:00Z",
        "resourceVersion": "1", "generation": 1},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                           {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53}],
                 "sessionAffinity": "None", "internalTrafficPolicy": "Cluster", "clusterIPs": ["10.96.0.10"],
                 "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}, "status": {"loadBalancer": {}}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "web-0", "namespace": "default", "labels": {"app": "web"},
        "annotations": {"kdns.dev/manifest-source": "/etc/kdns/manifests/default.yaml"},
        "uid": "00000000-0000-4000-8000-000000000000", "creationTimestamp": "2026-01-01T00:00:00Z",
        "resourceVersion": "1", "generation": 1},
        "spec": {"hostname": "web-0", "subdomain": "web", "nodeName": "node-1", "containers": [
            {"name": "main", "image": "registry.example/app:1.0",
             "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}],
                   "conditions": [{"type": "Ready", "status": "True"}]}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {
        "name": "web-abcde", "generateName": "web-", "namespace": "default", "labels": {
            "app": "web", "kubernetes.io/service-name": "web",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            "service.kubernetes.io/headless": ""},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web",
                             "uid": "00000000-0000-4000-8000-000000000000", "controller": True,
                             "blockOwnerDeletion": True}],
        "uid": "00000000-0000-4000-8000-000000000000", "creationTimestamp": "2026-01-01T00:00:00Z",
        "resourceVersion": "1", "generation": 1},
        "addressType": "IPv4", "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True, "terminating": False},
             "hostname": "web-0", "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0",
                                                "uid": "00000000-0000-4000-8000-000000000000"},
             "nodeName": "node-1"},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "serving": False, "terminating": True},
             "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1",
                           "uid": "00000000-0000-4000-8000-000000000000"}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
)
_DICTIONARY = zstandard.ZstdCompressionDict(b"".join(marshal.dumps(doc) for doc in _TYPICAL),
                                            dict_type=zstandard.DICT_TYPE_RAWCONTENT)
_LEVEL = -1  # a fast level: 3 packs 15 % smaller, in twice the time
# Compressors are not safe to share between threads (the journal's writer unpacks too).
_CODECS = threading.local()


def _codec() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    """This thread's compressor and decompressor with the dictionary."""
    codec: tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor] | None = getattr(_CODECS, "codec", None)
    if codec is None:
        codec = _CODECS.codec = (
            zstandard.ZstdCompressor(level=_LEVEL, dict_data=_DICTIONARY, write_checksum=False, write_dict_id=False),
            zstandard.ZstdDecompressor(dict_data=_DICTIONARY),
        )
    return codec


def pack(doc: dict[str, Any]) -> bytes:
    """A document of plain dicts and lists as an object holds it (`document`); `unpack`
    gives it back."""
    packed = _codec()[0].compress(marshal.dumps(doc))
    # A copy of the exact size: compress() returns bytes that keep the allocation of
    # zstd's bound for the input (the uncompressed size and more) behind a shorter length.
    return memoryview(packed).tobytes()


class Deferred:
    """A document whose packing waits until kdns answers (`Store.pack_deferred`): made,
    a new tree at every call, by `maker(remake, meta)` from what the reader kept of the
    document (`remake`: kdns/registry/declared.py `packer`) and the object's metadata
    (`admission.admitted`). A start-up load from manifests holds its pods' documents so
    (`admission.admit`'s `remake`) instead of packing 100,000 of them before the first
    answer: packing is a fifth of that load's CPU. (Three fields, not a closure: 56
    bytes a pod where a partial and its tuples took 250.)"""

    __slots__ = ("maker", "meta", "remake")

    def __init__(self, maker: Callable[[Callable[[], dict[str, Any]], ObjectMeta], dict[str, Any]],
                 remake: Callable[[], dict[str, Any]], meta: ObjectMeta) -> None:
        self.maker, self.remake, self.meta = maker, remake, meta

    def make(self) -> dict[str, Any]:
        return self.maker(self.remake, self.meta)


# What an object holds of its document: packed, or not yet (Deferred).
Held = bytes | Deferred


def unpack(document: Held) -> dict[str, Any]:
    """A fresh copy of the document `pack` made (or a Deferred one will)."""
    if isinstance(document, Deferred):
        return document.make()
    # Only bytes `pack` made (here, or saved by this kdns's journal under object_format).
    return marshal.loads(_codec()[1].decompress(document))  # type: ignore[no-any-return]  # noqa: S302


def packed(document: Held) -> bytes:
    """The document as `pack` makes it, packed now if it was Deferred (for the journal)."""
    return pack(document.make()) if isinstance(document, Deferred) else document


def may_mention(obj: KubeObject, text: str) -> bool:
    """False when no key or value of `obj`'s document is `text` (True says it may be): a
    look at the marshal'ed bytes, where every string is written once in UTF-8, for those
    who read a big registry's documents for something most do not have (no dicts made).
    A slice the controller wrote (no document held) is looked at string by string."""
    if isinstance(obj, EndpointSlice) and obj.owner is not None:
        return any(text in held for held in _controller_texts(obj, obj.owner))
    document = obj.document
    if isinstance(document, Deferred):
        return text.encode() in marshal.dumps(document.make())
    return text.encode() in _codec()[1].decompress(document)


def _controller_texts(endpoint_slice: EndpointSlice, owner: SliceOwner) -> Iterator[str]:
    """Every key and string value of controller_manifest(endpoint_slice, owner), without
    making it."""
    meta = endpoint_slice.meta
    yield from _CONTROLLER_TEXTS
    yield from meta.labels
    yield from meta.labels.values()
    yield from (meta.name, meta.namespace, meta.uid, meta.creation_timestamp, str(meta.resource_version),
                owner.service_uid, endpoint_slice.address_type)
    for endpoint in endpoint_slice.endpoints:
        yield from endpoint.addresses
        yield from (endpoint.hostname, endpoint.node_name)
        if endpoint.target_ref is not None:
            yield from (endpoint.target_ref.kind, endpoint.target_ref.name, endpoint.target_ref.uid)
    for port in endpoint_slice.ports:
        yield from (port.name, port.protocol)


EMPTY_DOCUMENT = pack({})


class KubeObject(Protocol):
    """What every registry object has."""

    kind: ClassVar[str]
    meta: ObjectMeta
    document: Held

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
    document: Held = field(default=EMPTY_DOCUMENT, compare=False, repr=False)  # pack(manifest)


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
    document: Held = field(default=EMPTY_DOCUMENT, compare=False, repr=False)  # pack(manifest)


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
    document: Held = field(default=EMPTY_DOCUMENT, compare=False, repr=False)  # pack(manifest)


@dataclass(frozen=True, slots=True)
class NodeAddress:
    type: str  # InternalIP, ExternalIP, Hostname, ...
    address: str


@dataclass(slots=True)
class Node(_Keyed):
    kind: ClassVar[str] = NODE
    meta: ObjectMeta
    addresses: tuple[NodeAddress, ...] = ()
    document: Held = field(default=EMPTY_DOCUMENT, compare=False, repr=False)  # pack(manifest)

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


@dataclass(frozen=True, slots=True)
class SliceOwner:
    """What a slice the EndpointSlice controller wrote holds besides its typed fields,
    for its document to be made from them (`EndpointSlice.owner`): its Service's uid (the
    owner reference's) and its metadata.generation."""

    service_uid: str
    generation: int


@dataclass(slots=True)
class EndpointSlice(_Keyed):
    """An EndpointSlice. Those the EndpointSlice controller writes (most of a cluster's:
    kdns/registry/endpoints.py) hold no document (`owner` set, `document` empty): their
    document is what the controller wrote, which their typed fields, labels and `owner`
    say all of (`controller_manifest`), so it is made again when read instead of held.
    Each new version of a slice is one (a pod's readiness flip writes its slice), and the
    store's event log holds the last 10,000 versions: a slice's packed document (700
    bytes for 10 endpoints, 7 KB for 100) cost more than its other fields together."""

    kind: ClassVar[str] = ENDPOINT_SLICE
    meta: ObjectMeta
    address_type: str = "IPv4"
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()
    document: Held = field(default=EMPTY_DOCUMENT, compare=False, repr=False)  # pack(manifest), unless `owner`
    owner: SliceOwner | None = field(default=None, compare=False, repr=False)

    @property
    def service_name(self) -> str:
        return self.meta.labels.get(SERVICE_NAME_LABEL, "")

    @property
    def managed_by(self) -> str:
        return self.meta.labels.get(MANAGED_BY_LABEL, "")

    @property
    def manifest(self) -> dict[str, Any]:
        """The slice's Kubernetes document, made afresh: read it once per use."""
        if self.owner is None:
            return unpack(self.document)
        return controller_manifest(self, self.owner)


# The keys of a document controller_manifest makes, in its order (the controller's
# manifest, then what admission adds: kdns/registry/endpoints.py, admission.py).
CONTROLLER_SLICE_KEYS = ("apiVersion", "kind", "metadata", "addressType", "endpoints", "ports")
CONTROLLER_SLICE_METADATA = ("name", "generateName", "namespace", "labels", "ownerReferences", "uid",
                             "creationTimestamp", "resourceVersion", "generation")


def controller_manifest(endpoint_slice: EndpointSlice, owner: SliceOwner) -> dict[str, Any]:
    """The document of a slice the EndpointSlice controller wrote, from what the slice
    holds: the one it wrote, key for key and in the same order (the store holds a slice
    this way only when its document has these keys: Transaction._write)."""
    meta = endpoint_slice.meta
    service = meta.labels[SERVICE_NAME_LABEL]
    return {
        "apiVersion": API_VERSIONS[ENDPOINT_SLICE],
        "kind": ENDPOINT_SLICE,
        "metadata": {
            "name": meta.name,
            "generateName": f"{service}-",
            "namespace": meta.namespace,
            "labels": dict(meta.labels),
            "ownerReferences": [owner_reference(service, owner.service_uid)],
            "uid": meta.uid,
            "creationTimestamp": meta.creation_timestamp,
            "resourceVersion": str(meta.resource_version),
            "generation": owner.generation,
        },
        "addressType": endpoint_slice.address_type,
        "endpoints": [endpoint_document(endpoint) for endpoint in endpoint_slice.endpoints],
        "ports": [{"name": port.name, "port": port.port, "protocol": port.protocol} for port in endpoint_slice.ports],
    }


def endpoint_document(endpoint: Endpoint) -> dict[str, Any]:
    """The document of one endpoint of a slice the EndpointSlice controller writes, from
    its typed fields (the controller writes none besides: kdns/registry/endpoints.py)."""
    conditions, ref = endpoint.conditions, endpoint.target_ref
    written: dict[str, Any] = {
        "addresses": list(endpoint.addresses),
        "conditions": {"ready": conditions.ready, "serving": conditions.serving, "terminating": conditions.terminating},
    }
    if endpoint.hostname:
        written["hostname"] = endpoint.hostname
    if endpoint.node_name:
        written["nodeName"] = endpoint.node_name
    if ref is not None:
        written["targetRef"] = {"kind": ref.kind, "namespace": ref.namespace, "name": ref.name, "uid": ref.uid}
    return written


# The keys and fixed values of every controller_manifest (the rest: _controller_texts).
_CONTROLLER_TEXTS = (
    *CONTROLLER_SLICE_KEYS, *CONTROLLER_SLICE_METADATA, "discovery.k8s.io/v1", "EndpointSlice", "v1", "Service",
    "controller", "blockOwnerDeletion", "addresses", "conditions", "ready", "serving", "terminating", "hostname",
    "nodeName", "targetRef", "kind", "namespace", "name", "uid", "port", "protocol",
)


def owner_reference(service: str, uid: str) -> dict[str, Any]:
    """The ownerReference of a slice the EndpointSlice controller writes for a Service."""
    return {"apiVersion": "v1", "kind": SERVICE, "name": service, "uid": uid, "controller": True,
            "blockOwnerDeletion": True}


def controller_owner(endpoint_slice: EndpointSlice, document: Mapping[str, Any]) -> SliceOwner | None:
    """The SliceOwner to hold instead of `document`, the one `endpoint_slice` was made
    from by the EndpointSlice controller (its typed fields are the controller's, made
    with the document), if `document` is all controller_manifest makes again: its keys
    (no annotations, managedFields or deletionTimestamp a writer left) and its owner."""
    metadata = document.get("metadata")
    if tuple(document) != CONTROLLER_SLICE_KEYS or not isinstance(metadata, dict):
        return None
    if tuple(metadata) != CONTROLLER_SLICE_METADATA or len(document["endpoints"]) != len(endpoint_slice.endpoints):
        return None
    service = endpoint_slice.meta.labels.get(SERVICE_NAME_LABEL)
    references, generation = metadata["ownerReferences"], metadata["generation"]
    if not (service and metadata["generateName"] == f"{service}-" and type(generation) is int
            and isinstance(references, list) and len(references) == 1):
        return None
    uid = references[0].get("uid") if isinstance(references[0], dict) else None
    if not isinstance(uid, str) or references[0] != owner_reference(service, uid):
        return None
    return SliceOwner(uid, generation)


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
    object: KubeObject
    old: KubeObject | None
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
