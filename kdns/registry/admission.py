"""Admission: what kube-apiserver does to one write before it stores the object.

`admit(doc, old, context, resource_version)` applies, in the API server's order: the
metadata the server owns (uid, creationTimestamp, generation, resourceVersion; with
`restore`, the saved values are kept), the v1
defaults (pkg/apis/*/v1/defaults.go), the values carried over from the stored object on
an update (pkg/registry/core/service/storage patchAllocatedValues), validation, and the
allocation of cluster IPs and node ports. It returns the object to store, or raises
Invalid leaving the allocators exactly as they were. `release(obj, context)` gives a
deleted object's addresses and ports back.

Nothing here knows about the store: the caller finds `old` and decides what to do with
the result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kdns.registry import manifests, objects
from kdns.registry.allocator import (
    AllocationError,
    ClusterIPAllocator,
    NodePortAllocator,
    NotConfigured,
    RangeFull,
)
from kdns.registry.errors import Invalid, invalid
from kdns.registry.manifests import CLUSTER_IP_NONE
from kdns.registry.objects import (
    EndpointSlice,
    KubeObject,
    ObjectMeta,
    Service,
    SliceOwner,
)

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
EXTERNAL_NAME = "ExternalName"
# The top-level fields whose change bumps metadata.generation, per kind.
_GENERATION_FIELDS: Mapping[str, tuple[str, ...]] = {
    objects.SERVICE: ("spec",),
    objects.POD: ("spec",),
    objects.ENDPOINT_SLICE: ("addressType", "endpoints", "ports"),
}
# Metadata the server owns or kdns does not keep. managedFields are kept as
# kube-apiserver's field manager keeps them: a write that carries some replaces them, one
# that leaves them out keeps the stored ones, and `[{}]` clears them.
_DROPPED_METADATA = ("selfLink", "generation", "resourceVersion")


class RandomUids:
    """New object uids: random (version 4) UUIDs, as `str(uuid.uuid4())` writes them.

    uuid4() makes a system call and a UUID object per uid, a tenth of the time a bulk
    load of pods takes; this draws random bytes for thousands of uids at a time and
    writes them all into the UUID's pattern at once, column by column (slice assignments
    in C: 0.5 us a uid, where formatting each took 1.2). One source per store, used like
    the store from one thread at a time.
    """

    _BATCH = 4096  # uids per read of os.urandom

    def __init__(self) -> None:
        self._uids: list[str] = []

    def __call__(self) -> str:
        uids = self._uids
        if not uids:
            uids = self._uids = _uid_batch(self._BATCH)
        return uids.pop()


# The 8-4-4-4-12 groups of a uid's 32 hex digits: where each starts in the text.
_UID_GROUPS = ((0, 8), (9, 4), (14, 4), (19, 4), (24, 12))
# A hex digit -> the RFC 4122 variant's (binary 10xx) with its two low bits.
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")


def _uid_batch(count: int) -> list[str]:
    """`count` random version 4 uids."""
    digits = os.urandom(16 * count).hex().encode()
    text = bytearray(b"\n" * (37 * count))  # 36 characters a uid, and a newline
    taken = 0
    for start, length in _UID_GROUPS:
        for column in range(length):
            text[start + column::37] = digits[taken + column::32]
        taken += length
    for dash in (8, 13, 18, 23):
        text[dash::37] = b"-" * count
    text[14::37] = b"4" * count  # the version, over the 13th digit
    text[19::37] = text[19::37].translate(_VARIANT)  # the variant in the 17th
    return text.decode().split("\n", count)[:count]


@dataclass(frozen=True, slots=True)
class Context:
    """What admission needs besides the write itself."""

    cluster_ips: ClusterIPAllocator
    node_ports: NodePortAllocator
    clock: Callable[[], float] = time.time
    new_uid: Callable[[], str] = field(default_factory=RandomUids)


@lru_cache(maxsize=4)
def _timestamp(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with a Z, to the second, as metav1.Time is serialised."""
    return _timestamp(int(seconds))


def admit(
    doc: Mapping[str, Any],
    old: KubeObject | None,
    context: Context,
    resource_version: int,
    *,
    owned: bool = False,
    restore: bool = False,
    kind: str | None = None,
    fields: dict[str, Any] | None = None,
    stored: Mapping[str, Any] | None = None,
    remake: Callable[[], dict[str, Any]] | None = None,
) -> KubeObject:
    """The object to store for a create (`old` None) or an update of `old`. With `owned`,
    `doc` is a fresh dict nobody else holds, used as is instead of copied. With `restore`,
    `doc` is one the store wrote before: its uid, creationTimestamp and generation are
    kept, and `resource_version` is its own. `kind` is manifests.kind_of(doc), when the
    caller has it already (the store has, from the key it looked the object up by);
    `fields` the typed fields `doc` was made from, if it was (manifests.parse). `stored` is
    `old.manifest` when the caller has unpacked it already (read here, never changed):
    an update reads it for the generation and managedFields, and so does the store after.

    `remake` makes `doc` again, a new tree at every call (the store's bulk load has one:
    manifests.Document.packed): then a new Pod holds its document Deferred, which
    `admitted_pod` makes from it by doing again what this does to `doc`, instead of packing
    it now (objects.Deferred). Only Pods: what admission does to them depends on the
    document and the new uid and creationTimestamp alone (not on the allocators, or on
    the clock later, as a Node's Ready condition does)."""
    kind = kind or manifests.kind_of(doc)
    if remake is not None and kind == objects.POD and old is None and not restore and fields is None:
        pod = new_pod(doc, context, resource_version, remake)
        if pod is not None:
            return pod
    if old is not None and old.kind != kind:
        raise ValueError(f"admit: {kind} document for a stored {old.kind}")
    if old is not None and stored is None:
        stored = old.manifest
    body: dict[str, Any] = doc if owned else manifests.copy_tree(doc)  # type: ignore[assignment]
    generation = _metadata(body, kind, old, stored, context, resource_version, restore)
    _DEFAULTS[kind](body)
    if kind == objects.SERVICE:
        # Only a Service allocates: what it took goes back if it is refused after that.
        savepoints = context.cluster_ips.savepoint(), context.node_ports.savepoint()
        try:
            meta, fields = _service(body, old, stored, context)  # type: ignore[arg-type]
            _set_generation(body, kind, stored, generation)
            # (The document packed once, with its generation: set after it was read.)
            return Service(meta=meta, document=objects.pack(body), **fields)
        except BaseException:
            context.cluster_ips.rollback(savepoints[0])
            context.node_ports.rollback(savepoints[1])
            raise
    if kind == objects.NODE and not restore:
        _node_ready(body, stored, context.clock())
    if (
        kind == objects.ENDPOINT_SLICE
        and old is not None
        and stored is not None
        and body.get("addressType") != stored.get("addressType")
    ):
        raise Invalid(kind, old.meta.name, [invalid("addressType", body.get("addressType"), "field is immutable")])
    _set_generation(body, kind, stored, generation)
    if remake is not None and kind == objects.POD and old is None and not restore:
        meta, fields = manifests.checked(body, kind, fields)
        return objects.Pod(meta=meta, document=objects.Deferred(admitted_pod, remake, meta), **fields)
    if fields is not None and kind == objects.ENDPOINT_SLICE:
        # The controller's slice (only it gives `fields`): held as its typed fields and
        # owner when the document is all controller_manifest makes again (nearly always),
        # so packing it would be work thrown away; a readiness flip writes one.
        meta, fields = manifests.checked(body, kind, fields)
        written = objects.EndpointSlice(meta=meta, **fields)
        owner = objects.controller_owner(written, body)
        if owner is None:
            written.document = objects.pack(body)
        else:
            written.owner = owner
        return written
    return manifests.parse(body, kind, fields)


def new_pod(
    doc: Mapping[str, Any], context: Context, resource_version: int, remake: Callable[[], dict[str, Any]]
) -> objects.Pod | None:
    """`admit(doc, None, context, resource_version, remake=remake)` for a new Pod whose
    document is plain (manifests.new_pod: nearly every pod of a bulk load), its fields
    read from `doc` as admit's steps would leave it, without taking those steps in a
    tree thrown away; None for any other pod, which admit takes step by step. (No
    keywords: the store calls this for each of a bulk load's 100,000 pods.)"""
    read = manifests.new_pod(doc)
    if read is None:
        return None
    name, namespace, labels, deleted, pod_fields = read
    # (_timestamp: timestamp without its call.)
    meta = ObjectMeta(name, namespace, labels, context.new_uid(), resource_version, _timestamp(int(context.clock())),
                      deleted)
    return objects.Pod(meta, *pod_fields, objects.Deferred(admitted_pod, remake, meta))


def admitted_pod(remake: Callable[[], dict[str, Any]], meta: ObjectMeta) -> dict[str, Any]:
    """The document `admit` made of a new Pod's `remake()`, given the metadata it gave
    the Pod (its uid, creationTimestamp and resourceVersion): the same steps, in order."""
    body = remake()
    _metadata(body, objects.POD, None, None, None, meta.resource_version, False, (meta.uid, meta.creation_timestamp))
    _pod_defaults(body)
    _set_generation(body, objects.POD, None, None)
    return body


def controller_slice(
    name: str, namespace: str, labels: dict[str, str], fields: dict[str, Any], service_uid: str, context: Context,
    resource_version: int,
) -> EndpointSlice:
    """A new EndpointSlice of the EndpointSlice controller, made from its typed fields, as
    admitting its manifest (`endpoints.DesiredSlice.manifest`) would make it: a new uid
    and creationTimestamp, generation 1, and no document held (its `owner` says the rest:
    objects.controller_manifest). Nothing to validate or default: the controller writes
    its Service's namespace and labels (admitted with the Service), a name it made valid,
    and ports and endpoints whose every value is set (tests/registry/test_endpoints.py
    checks both ways agree)."""
    meta = ObjectMeta(name, namespace, objects.shared_labels(labels), context.new_uid(), resource_version,
                      timestamp(context.clock()))
    # By position (a call by keywords costs several times one without: a load makes 10,000).
    return EndpointSlice(meta, fields["address_type"], fields["endpoints"], fields["ports"], objects.EMPTY_DOCUMENT,
                         SliceOwner(service_uid, 1))


def reserve(obj: KubeObject, context: Context) -> None:
    """Take what a restored object holds, as admitting its document would: a Service's
    cluster IPs and node ports (Invalid, naming the field, when one is taken already)."""
    if not isinstance(obj, Service):
        return
    for i, ip in enumerate(obj.cluster_ips):
        try:
            context.cluster_ips.reserve(ip)
        except AllocationError as exc:
            raise Invalid(objects.SERVICE, obj.meta.name, [
                invalid(f"spec.clusterIPs[{i}]", list(obj.cluster_ips), f"failed to allocate IP {ip}: {exc}")]) from None
    held: set[int] = set()
    for i, port in enumerate(obj.ports):
        if port.node_port and port.node_port not in held:  # (ports of one number share one)
            try:
                context.node_ports.reserve(port.node_port)
            except AllocationError as exc:
                raise Invalid(objects.SERVICE, obj.meta.name, [
                    invalid(f"spec.ports[{i}].nodePort", port.node_port, str(exc))]) from None
            held.add(port.node_port)


def release(obj: KubeObject, context: Context) -> None:
    """Give back what a deleted object held: a Service's cluster IPs and node ports."""
    if isinstance(obj, Service):
        for ip in obj.cluster_ips:
            context.cluster_ips.release(ip)
        for port in obj.ports:
            if port.node_port:
                context.node_ports.release(port.node_port)


# --- Metadata ----------------------------------------------------------------------------


def _metadata(
    body: dict[str, Any], kind: str, old: KubeObject | None, stored: Mapping[str, Any] | None,
    context: Context | None, version: int, restore: bool, identity: tuple[str, str] | None = None,
) -> int | None:
    """Set the metadata the server owns; returns the saved generation to keep (restore).
    A new object gets a new uid and creationTimestamp from `context`, or `identity`'s
    (`admitted_pod`)."""
    metadata = body.get("metadata")
    if metadata is None:
        metadata = body["metadata"] = {}
    if not isinstance(metadata, dict):
        return None  # validation reports it
    if kind in objects.NAMESPACED_KINDS:
        if not metadata.get("namespace"):
            metadata["namespace"] = "default"
    else:
        metadata.pop("namespace", None)
    generation = metadata.get("generation") if restore and kind in _GENERATION_FIELDS else None
    if not (isinstance(generation, int) and not isinstance(generation, bool) and generation > 0):
        generation = None
    for key in _DROPPED_METADATA:
        metadata.pop(key, None)
    if old is not None or "managedFields" in metadata:  # (a new object without any: nothing to do)
        _managed_fields(metadata, kind, stored)
    if restore and metadata.get("uid") and metadata.get("creationTimestamp"):
        pass  # a saved object keeps its identity
    elif old is not None:
        metadata["uid"] = old.meta.uid
        metadata["creationTimestamp"] = old.meta.creation_timestamp
    elif identity is not None:
        metadata["uid"], metadata["creationTimestamp"] = identity
    else:
        assert context is not None  # (only admitted_pod gives none, and an identity)
        metadata["uid"] = context.new_uid()
        metadata["creationTimestamp"] = timestamp(context.clock())
    metadata["resourceVersion"] = str(version)
    name = metadata.get("name")
    if kind == objects.NAMESPACE and isinstance(name, str):
        # Every namespace carries its own name as a label, for namespace selectors (1.21+).
        labels = metadata.get("labels")
        if labels is None:
            labels = metadata["labels"] = {}
        if isinstance(labels, dict):
            labels[NAMESPACE_NAME_LABEL] = name
    return generation


def _managed_fields(metadata: dict[str, Any], kind: str, stored: Mapping[str, Any] | None) -> None:
    """managedFields as kube-apiserver's field manager treats a write's: its own replace
    the stored ones (`stored`: the document updated), none keeps the stored ones (so a
    client that does not know the field cannot drop it), and a single empty entry clears
    them."""
    given = metadata.get("managedFields")
    if given == [{}]:
        del metadata["managedFields"]
    elif not given:
        metadata.pop("managedFields", None)
        kept = stored.get("metadata", {}).get("managedFields") if stored is not None else None
        if kept:
            metadata["managedFields"] = manifests.copy_tree(kept)  # (`stored` is the caller's)
    elif not isinstance(given, list) or not _all_dicts(given):
        raise Invalid(kind, str(metadata.get("name", "")),
                      [invalid("metadata.managedFields", given, "must be a list of ManagedFieldsEntry objects")])


def _set_generation(body: dict[str, Any], kind: str, stored: Mapping[str, Any] | None, saved: int | None) -> None:
    """metadata.generation: `saved` (a restored object's), else counted from the `stored`
    document's (None: a create)."""
    if saved is None:
        _generation(body, kind, stored)
    else:
        body["metadata"]["generation"] = saved


def _generation(body: dict[str, Any], kind: str, before: Mapping[str, Any] | None) -> None:
    fields = _GENERATION_FIELDS.get(kind)
    metadata = body.get("metadata")
    if not fields or not isinstance(metadata, dict):
        return
    if before is None:
        metadata["generation"] = 1
        return
    previous = before.get("metadata", {}).get("generation", 1)
    changed = False
    for name in fields:  # (a loop: any() of a generator is a call of its own, every update)
        if body.get(name) != before.get(name):
            changed = True
            break
    metadata["generation"] = previous + 1 if changed else previous


def _all_dicts(items: list[Any]) -> bool:
    """Whether every item is a dict (a loop: all() of a generator is a call per item)."""
    for item in items:  # noqa: SIM110
        if not isinstance(item, dict):
            return False
    return True


# --- Defaults (pkg/apis/core/v1/defaults.go, pkg/apis/discovery/v1/defaults.go) ------------


def _dicts(value: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(value, list):
        for item in value:  # (a loop: a comprehension is a call of its own, every Pod written)
            if isinstance(item, dict):
                found.append(item)  # noqa: PERF401
    return found


def _section(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        value = body[name] = {}
    return value if isinstance(value, dict) else None


def _namespace_defaults(body: dict[str, Any]) -> None:
    status = _section(body, "status")
    if status is not None and not status.get("phase"):
        status["phase"] = "Active"


def _service_defaults(body: dict[str, Any]) -> None:
    spec = _section(body, "spec")
    if spec is None:
        return
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    kind = spec["type"]
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if kind in ("ClusterIP", "NodePort", "LoadBalancer") and not spec.get("internalTrafficPolicy"):
        spec["internalTrafficPolicy"] = "Cluster"
    if kind in ("NodePort", "LoadBalancer") and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    ports = spec.get("ports")
    if isinstance(ports, list):
        for port in ports:
            if not isinstance(port, dict):
                continue  # (validation says what is wrong with it)
            if not port.get("protocol"):
                port["protocol"] = "TCP"
            if port.get("targetPort") in (None, 0, "") and isinstance(port.get("port"), int):
                port["targetPort"] = port["port"]


def _pod_defaults(body: dict[str, Any]) -> None:
    spec = _section(body, "spec")
    if spec is not None:
        for container in _dicts(spec.get("containers")):
            ports = container.get("ports")
            if ports:  # (most containers of a big load have none)
                for port in _dicts(ports):
                    if not port.get("protocol"):
                        port["protocol"] = "TCP"
    status = _section(body, "status")
    if status is None:
        return
    if not status.get("phase"):
        status["phase"] = "Pending"
    # v1 conversion keeps podIP and podIPs[0] the same; podIP wins when they differ.
    pod_ip, pod_ips = status.get("podIP"), status.get("podIPs")
    if isinstance(pod_ip, str) and pod_ip:
        if type(pod_ips) is list and pod_ips and type(pod_ips[0]) is dict and pod_ips[0].get("ip") == pod_ip:
            return  # they agree (the common case, read without copying the list)
        first = _dicts(pod_ips)[:1]
        if not pod_ips or (first and first[0].get("ip") != pod_ip):
            status["podIPs"] = [{"ip": pod_ip}]
    elif isinstance(pod_ips, list) and pod_ips:
        first = _dicts(pod_ips)[:1]
        if first and isinstance(first[0].get("ip"), str):
            status["podIP"] = first[0]["ip"]


def _endpoint_slice_defaults(body: dict[str, Any]) -> None:
    for port in _dicts(body.get("ports")):
        if port.get("name") is None:
            port["name"] = ""
        if not port.get("protocol"):
            port["protocol"] = "TCP"


_DEFAULTS: Mapping[str, Callable[[dict[str, Any]], None]] = {
    objects.NAMESPACE: _namespace_defaults,
    objects.SERVICE: _service_defaults,
    objects.POD: _pod_defaults,
    objects.NODE: lambda body: None,
    objects.ENDPOINT_SLICE: _endpoint_slice_defaults,
}


# --- Nodes: the Ready condition ----------------------------------------------------------------

# The reasons of the Ready condition kdns sets; any other Ready condition is a writer's own
# (a kubelet's, followed from a cluster, or a hand-written status) and is kept as written.
NODE_READY_REASONS = ("KdnsNodeAddressKnown", "KdnsNoInternalIP")


def _ready_condition(status: Any) -> dict[str, Any] | None:
    for condition in _dicts(status.get("conditions")) if isinstance(status, dict) else ():
        if condition.get("type") == "Ready":
            return condition
    return None


def _internal_ips(status: Any) -> list[str]:
    addresses = _dicts(status.get("addresses")) if isinstance(status, dict) else []
    return [str(a.get("address")) for a in addresses if a.get("type") == "InternalIP" and a.get("address")]


def _node_ready(body: dict[str, Any], stored: Mapping[str, Any] | None, now: float) -> None:
    """Give a Node the Ready condition of what kdns does with it, unless its writer gave one.

    kdns runs no kubelet and never contacts a node: what it knows is whether the node has an
    InternalIP, the address its `<node>.node.<zone>` and NodePort SRV answers give. That is
    Ready "True"; a node without one is "False" (it is left out of those answers). Nothing
    heartbeats, so lastHeartbeatTime is when kdns last set the condition's status, as is
    lastTransitionTime; a write that leaves the status as it was keeps both.
    """
    status = body.get("status")
    if status is None:
        status = body["status"] = {}
    if not isinstance(status, dict):
        return  # validation reports it
    given = _ready_condition(status)
    if given is not None and given.get("reason") not in NODE_READY_REASONS:
        return
    ips = _internal_ips(status)
    if ips:
        ready, reason = "True", NODE_READY_REASONS[0]
        message = (f"kdns runs no kubelet: the node is Ready as declared; DNS answers give its InternalIP "
                   f"{', '.join(ips)}")
    else:
        ready, reason = "False", NODE_READY_REASONS[1]
        message = "kdns runs no kubelet, and the node has no InternalIP: DNS answers leave it out"
    before = _ready_condition(stored.get("status")) if stored is not None else None
    if before is not None and before.get("status") == ready and before.get("reason") == reason:
        since = before.get("lastTransitionTime") or timestamp(now)
    else:
        since = timestamp(now)
    condition = {
        "type": "Ready", "status": ready, "lastHeartbeatTime": since, "lastTransitionTime": since,
        "reason": reason, "message": message,
    }
    conditions = [c for c in _dicts(status.get("conditions")) if c.get("type") != "Ready"]
    status["conditions"] = [*conditions, condition]


# --- Services: IP families, cluster IPs, node ports ------------------------------------------

CLUSTER_IP = "ClusterIP"
NODE_PORT = "NodePort"


class AllocationFailed(Invalid):
    """A ClusterIP or NodePort (`what`) the Service asks for is taken or out of range. It
    and RangeExhausted say what could not be allocated: the API records an Event for them
    (kdns/api/crud.py)."""

    def __init__(self, what: str, name: str, causes: list[tuple[str, str]]) -> None:
        super().__init__(objects.SERVICE, name, causes)
        self.what = what


class RangeExhausted(RangeFull):
    """range is full"""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what



def _service(
    body: dict[str, Any], old: Service | None, stored: Mapping[str, Any] | None, context: Context
) -> tuple[ObjectMeta, dict[str, Any]]:
    """Defaults that depend on the cluster, validation, then the allocation of cluster IPs
    and node ports. Returns the Service's metadata and typed fields, as manifests.checked
    reads them from the body allocation leaves."""
    spec = body.get("spec")
    name = body["metadata"].get("name", "") if isinstance(body.get("metadata"), dict) else ""
    if not isinstance(spec, dict) or not _well_formed(spec):
        manifests.parse(body)  # says what is wrong with the shape
        raise Invalid(objects.SERVICE, name, [invalid("spec", spec, "is not a valid ServiceSpec")])
    kind = spec.get("type")
    old_spec: Mapping[str, Any] = stored.get("spec", {}) if stored is not None else {}
    needs_ips = kind != EXTERNAL_NAME
    had_ips = old is not None and old.type != EXTERNAL_NAME

    _carry_over(spec, old, old_spec, needs_ips, had_ips)
    cluster_ips: list[str] = list(spec.get("clusterIPs") or [])
    if needs_ips:
        _ip_families(spec, cluster_ips, old_spec if had_ips else None, context, name)
        cluster_ips = list(spec.get("clusterIPs") or [])

    checked = manifests.checked(body, objects.SERVICE)  # validation, before anything is allocated
    # What allocation may write: the cluster IPs, which _allocate_cluster_ips replaces
    # (their list is not changed in place), and node ports, which _allocate_node_ports reports.
    ip_before, ips_before = spec.get("clusterIP"), spec.get("clusterIPs")

    if needs_ips and had_ips:
        causes = _cluster_ip_changes(list(old_spec.get("clusterIPs") or []), cluster_ips, spec.get("ipFamilyPolicy"))
        if causes:
            raise Invalid(objects.SERVICE, name, causes)
    old_ips = set(old.cluster_ips) if old is not None else set()
    new_ips: set[str] = set()
    if needs_ips and cluster_ips[:1] != [CLUSTER_IP_NONE]:
        new_ips = _allocate_cluster_ips(spec, cluster_ips, old_ips, context, name)
    for ip in old_ips - new_ips:
        context.cluster_ips.release(ip)
    wrote_node_ports = _allocate_node_ports(spec, old, context, name)
    # parse reads the body alone, and nothing admission writes later (metadata.generation)
    # is a typed field: a body whose allocations are as they were reads the same again.
    if (not wrote_node_ports and spec.get("clusterIP") == ip_before
            and list(spec.get("clusterIPs") or []) == list(ips_before or [])):
        return checked
    # Allocation wrote addresses or node ports: the typed fields they make, read again
    # (as manifests.parse reads them; valid, as allocation made them), instead of
    # validating the whole body again (every Service of a load allocates).
    meta, fields = checked
    if not fields["headless"] and fields["type"] != EXTERNAL_NAME:
        fields["cluster_ips"] = tuple([ip for ip in spec.get("clusterIPs") or () if ip])
    if wrote_node_ports:
        fields["ports"] = tuple([
            manifests.service_port(port.name, port.protocol, port.port, port.target_port, item.get("nodePort") or None)
            for port, item in zip(fields["ports"], spec["ports"], strict=True)
        ])
    return meta, fields


def _well_formed(spec: dict[str, Any]) -> bool:
    """The fields allocation reads have the right shapes (else validation says why). A
    falsy value of any type counts as absent."""
    for key, kind in _SCALAR_SHAPES:
        value = spec.get(key)
        if value and not isinstance(value, kind):
            return False
    for key, kind in _LIST_SHAPES:
        value = spec.get(key)
        if value:
            if not isinstance(value, list):
                return False
            for item in value:  # (a loop, not all(): this runs for every Service of a load)
                if not isinstance(item, kind):
                    return False
    return True


_SCALAR_SHAPES = (("clusterIP", str), ("ipFamilyPolicy", str), ("selector", dict))
_LIST_SHAPES = (("clusterIPs", str), ("ipFamilies", str), ("ports", dict))


def _carry_over(
    spec: dict[str, Any], old: Service | None, old_spec: Mapping[str, Any], needs_ips: bool, had_ips: bool
) -> None:
    """Fill what an update left out from the stored service, and drop what a type change
    makes meaningless (patchAllocatedValues and dropTypeDependentFields in
    pkg/registry/core/service)."""
    cluster_ip = spec.get("clusterIP") or ""
    cluster_ips = list(spec.get("clusterIPs") or [])
    if needs_ips and had_ips:
        old_ip, old_ips = old_spec.get("clusterIP") or "", list(old_spec.get("clusterIPs") or [])
        cluster_ip = cluster_ip or old_ip
        cluster_ips = cluster_ips or old_ips
        # normalizeClusterIPs: a client that changed only the singular field means it.
        if cluster_ips == old_ips and cluster_ip != old_ip:
            cluster_ips = [cluster_ip]
        if not spec.get("ipFamilyPolicy") and old_spec.get("ipFamilyPolicy"):
            spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
        if not spec.get("ipFamilies") and old_spec.get("ipFamilies"):
            spec["ipFamilies"] = list(old_spec["ipFamilies"])
    elif not needs_ips and had_ips:
        # Becoming ExternalName: the cluster IPs the client echoed back are released.
        if cluster_ip == old_spec.get("clusterIP"):
            cluster_ip = ""
        if cluster_ips == list(old_spec.get("clusterIPs") or []):
            cluster_ips = []
    if cluster_ip and not cluster_ips:
        cluster_ips = [cluster_ip]
    elif cluster_ips and not cluster_ip:
        cluster_ip = cluster_ips[0]
    for key, value in (("clusterIP", cluster_ip), ("clusterIPs", cluster_ips)):
        if value:
            spec[key] = value
        else:
            spec.pop(key, None)
    if not needs_ips:
        spec.pop("ipFamilies", None)
        spec.pop("ipFamilyPolicy", None)

    if old is None:
        return
    old_node_ports = {(p.port, p.protocol): p.node_port for p in old.ports if p.node_port}
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        for port in spec.get("ports") or []:
            if not port.get("nodePort"):
                carried = old_node_ports.get((port.get("port"), port.get("protocol")))
                if carried:
                    port["nodePort"] = carried
    elif spec.get("type") in ("ClusterIP", EXTERNAL_NAME):
        for port in spec.get("ports") or []:
            if port.get("nodePort") and port["nodePort"] == old_node_ports.get((port.get("port"), port.get("protocol"))):
                del port["nodePort"]


def _ip_families(
    spec: dict[str, Any], cluster_ips: list[str], old_spec: Mapping[str, Any] | None, context: Context, name: str
) -> None:
    """ipFamilyPolicy and ipFamilies, as pkg/registry/core/service/ipallocator's
    initIPFamilyFields decides them."""
    configured = context.cluster_ips.families
    dual_stack_cluster = len(configured) == 2
    policy = spec.get("ipFamilyPolicy") or None
    families = list(spec.get("ipFamilies") or [])
    if old_spec is not None and policy == "SingleStack":
        # Setting SingleStack on a dual-stack service releases its secondary IP family.
        if len(cluster_ips) > 1 and cluster_ips == list(old_spec.get("clusterIPs") or []):
            cluster_ips = cluster_ips[:1]
        if len(families) > 1 and families == list(old_spec.get("ipFamilies") or []):
            families = families[:1]
    headless = bool(cluster_ips) and cluster_ips[0] == CLUSTER_IP_NONE
    given = [manifests.ip_family(ip) for ip in cluster_ips if ip != CLUSTER_IP_NONE]
    if None in given:
        return  # validation reports the address
    if headless and not spec.get("selector"):
        # Headless without a selector: any family goes, both on a dual-stack cluster.
        if not families:
            families = [configured[0]]
        if policy is None:
            policy = "RequireDualStack" if dual_stack_cluster else "SingleStack"
    else:
        if policy is None:
            policy = "RequireDualStack" if len(families) == 2 or len(given) == 2 else "SingleStack"
        if policy == "RequireDualStack" and not dual_stack_cluster:
            raise Invalid(objects.SERVICE, name, [
                invalid("spec.ipFamilyPolicy", policy, "this cluster is not configured for dual-stack services")])
        if not families:
            families = list(given) or [configured[0]]
        elif len(families) < len(given):
            families += given[len(families):]
    if policy != "SingleStack" and len(families) == 1 and dual_stack_cluster:
        families.append(next(f for f in configured if f != families[0]))
    spec["ipFamilyPolicy"] = policy
    spec["ipFamilies"] = families
    if cluster_ips:
        spec["clusterIPs"] = cluster_ips


def _cluster_ip_changes(old: list[str], new: list[str], policy: Any) -> list[tuple[str, str]]:
    """validateUpgradeDowngradeClusterIPs: the primary address never changes; a secondary
    may be added, or released by setting ipFamilyPolicy SingleStack."""
    if old[:1] == [CLUSTER_IP_NONE] and new[:1] == [CLUSTER_IP_NONE]:
        return []
    causes = []
    if len(old) == len(new):
        causes = [invalid(f"spec.clusterIPs[{i}]", new, "may not change once set")
                  for i, (before, after) in enumerate(zip(old, new, strict=True)) if before != after]
    elif len(old) > len(new):
        if not new:
            causes.append(invalid("spec.clusterIPs[0]", new, "primary clusterIP can not be unset"))
        elif new[0] != old[0]:
            causes.append(invalid("spec.clusterIPs[0]", new, "may not change once set"))
        if len(new) == 1 and policy != "SingleStack":
            causes.append(invalid("spec.clusterIPs[0]", new,
                                  "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary clusterIP"))
    elif old and new[0] != old[0]:
        causes.append(invalid("spec.clusterIPs[0]", new, "may not change once set"))
    return causes


def _allocate_cluster_ips(
    spec: dict[str, Any], cluster_ips: list[str], old_ips: set[str], context: Context, name: str
) -> set[str]:
    """Reserve the requested addresses, allocate one for every family still without one."""
    allocator = context.cluster_ips
    for i, ip in enumerate(cluster_ips):
        if ip in old_ips:
            continue
        try:
            allocator.reserve(ip)
        except AllocationError as exc:
            raise AllocationFailed(CLUSTER_IP, name, [
                invalid(f"spec.clusterIPs[{i}]", cluster_ips, f"failed to allocate IP {ip}: {exc}")]) from None
    families = spec.get("ipFamilies") or []
    for i in range(len(cluster_ips), len(families)):
        try:
            cluster_ips.append(allocator.allocate(families[i]))
        except NotConfigured:
            raise Invalid(objects.SERVICE, name, [
                invalid(f"spec.ipFamilies[{i}]", families[i], "not configured on this cluster")]) from None
        except RangeFull as exc:
            raise RangeExhausted(CLUSTER_IP, f"failed to allocate a serviceIP: {exc}") from None
    spec["clusterIP"] = cluster_ips[0]
    spec["clusterIPs"] = cluster_ips
    return set(cluster_ips)


def _needs_node_ports(spec: Mapping[str, Any]) -> bool:
    kind = spec.get("type")
    return kind == "NodePort" or (kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)


def _allocate_node_ports(spec: dict[str, Any], old: Service | None, context: Context, name: str) -> bool:
    """Every port of a NodePort or LoadBalancer service gets a node port; a requested one
    is honoured when free. Ports of one number (TCP and UDP 53) share a node port, as
    kube-apiserver's initNodePorts does. Returns whether it wrote one into `spec`."""
    allocator = context.node_ports
    ports = spec.get("ports") or []
    held = {p.node_port for p in old.ports if p.node_port} if old is not None else set()
    used: set[int] = set()
    by_number: dict[int, int] = {}
    for i, port in enumerate(ports):
        node_port = port.get("nodePort")
        if not node_port:
            continue
        if node_port not in held and node_port not in used:
            try:
                allocator.reserve(node_port)
            except AllocationError as exc:
                raise AllocationFailed(
                    NODE_PORT, name, [invalid(f"spec.ports[{i}].nodePort", node_port, str(exc))]) from None
        used.add(node_port)
        by_number.setdefault(port["port"], node_port)
    wrote = False
    if _needs_node_ports(spec):
        for port in ports:
            if port.get("nodePort"):
                continue
            node_port = by_number.get(port["port"])
            if node_port is None:
                try:
                    node_port = allocator.allocate()
                except RangeFull as exc:
                    raise RangeExhausted(NODE_PORT, f"failed to allocate a nodePort: {exc}") from None
                by_number[port["port"]] = node_port
            port["nodePort"] = node_port
            used.add(node_port)
            wrote = True
    for node_port in held - used:
        allocator.release(node_port)
    return wrote
