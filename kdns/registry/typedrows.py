"""Typed registry objects as the journal keeps them: each one a marshal'ed tuple of its fields.

A start from the durable store builds every object of the registry from its row (120,000
of them for 10,000 Services and 100,000 pods), so decoding a row is most of that start.
A row is the object's fields in their class's order, nested values (ObjectMeta, ports,
endpoints) as tuples of theirs, and the decoder calls the classes' own constructors:
for 100,000 pods that is 0.14 s of CPU where unpickling each pod took 0.9 s, and a row
is a third smaller (588 bytes against 861 for a pod of the bench's scale cluster).

marshal makes plain values only (no class, no call), so a row that is not kdns's own
cannot make start-up run anything: it decodes to something of the wrong shape, and
`Decoder.decode` raises ValueError or TypeError, which the journal reports naming the row. (A
row is read only after its tag says this kdns wrote it: `registry.sqlite.object_format`,
which digests this module too, so a change here makes older rows count as absent.)

Label sets and selectors are shared, as `manifests.parse` shares them, and so are the
values rows repeat (`Decoder`).
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Mapping
from typing import Any

from kdns.registry import objects
from kdns.registry.objects import (
    ENDPOINT_CONDITIONS,
    ContainerPort,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    KubeObject,
    Namespace,
    Node,
    NodeAddress,
    ObjectMeta,
    ObjectReference,
    Pod,
    Service,
    ServicePort,
    SliceOwner,
)

__all__ = ["Decoder", "encode"]


def encode(obj: KubeObject) -> bytes:
    """The row of `obj` (`Decoder.decode` gives an equal object back, its document
    included, packed: objects.packed)."""
    return marshal.dumps(_row(obj))


def _row(obj: KubeObject) -> tuple[Any, ...]:
    document = objects.packed(obj.document)
    match obj:
        case Namespace():
            return _meta(obj.meta), document
        case Service():
            ports = tuple((p.name, p.protocol, p.port, p.target_port, p.node_port) for p in obj.ports)
            return (_meta(obj.meta), obj.type, obj.cluster_ips, obj.headless, ports, dict(obj.selector),
                    obj.external_name, obj.publish_not_ready_addresses, obj.ip_families, document)
        case Pod():
            container_ports = tuple((p.name, p.container_port, p.protocol) for p in obj.container_ports)
            return (_meta(obj.meta), obj.pod_ips, obj.phase, obj.ready, obj.hostname, obj.subdomain, obj.node_name,
                    container_ports, document)
        case Node():
            return _meta(obj.meta), tuple((a.type, a.address) for a in obj.addresses), document
        case EndpointSlice():
            endpoints = tuple(
                (e.addresses, (e.conditions.ready, e.conditions.serving, e.conditions.terminating), e.hostname,
                 e.node_name, None if e.target_ref is None else (e.target_ref.kind, e.target_ref.namespace,
                                                                 e.target_ref.name, e.target_ref.uid))
                for e in obj.endpoints
            )
            slice_ports = tuple((p.name, p.port, p.protocol) for p in obj.ports)
            owner = None if obj.owner is None else (obj.owner.service_uid, obj.owner.generation)
            return _meta(obj.meta), obj.address_type, endpoints, slice_ports, document, owner
    raise TypeError(f"not a registry object: {obj!r}")


def _meta(meta: ObjectMeta) -> tuple[Any, ...]:
    return (meta.name, meta.namespace, dict(meta.labels), meta.uid, meta.resource_version,
            meta.creation_timestamp, meta.deletion_timestamp)


class Decoder:
    """Decodes the rows of one load, sharing what rows repeat as a load from manifests
    shares it.

    Each row is marshal'ed alone, so every string it holds comes back as an object of its
    own: decoded row by row, the scale cluster held 43 MiB more than the same objects read
    from manifests (bench/memory.py), where a creation time, a phase or a node name is one
    string for every object that has it, and an endpoint holds its pod's name, uid, node
    name and addresses. Here too: values of few spellings (namespaces, times, phases,
    node names, types) are shared through a table kept for the load, ports (frozen) are
    shared, and an endpoint takes its pod's values where they are equal; its pod must be
    decoded first (`registry.sqlite.load` reads EndpointSlices last).
    """

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}
        self._values: dict[tuple[Any, ...], Any] = {}  # a port's fields -> the frozen port
        # Every label set and selector of the load, each held once: objects.shared_labels
        # keeps the last 4,096, which rows read kind by kind outrun (a Service's selector
        # is its pods' labels, read 100,000 rows before it).
        self._labels: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
        self._pods: dict[str, Pod] = {}  # by uid

    def decode(self, kind: str, row: bytes | memoryview) -> KubeObject:
        """The object of kind `kind` that `row` holds; ValueError or TypeError when `row` is
        not one `encode` made for that kind (KeyError for a kind kdns does not serve)."""
        fields = marshal.loads(row)  # noqa: S302  (plain values only: see the module's docstring)
        match kind:
            case objects.POD:
                return self._pod(fields)
            case objects.ENDPOINT_SLICE:
                return self._endpoint_slice(fields)
            case objects.SERVICE:
                return self._service(fields)
            case objects.NAMESPACE:
                meta, document = fields
                return Namespace(self._meta(meta), document)
            case objects.NODE:
                meta, addresses, document = fields
                return Node(self._meta(meta), tuple([NodeAddress(*a) for a in addresses]), document)
        raise KeyError(kind)

    def _share(self, text: str) -> str:
        return self._strings.setdefault(text, text)

    def _label_set(self, labels: dict[str, str]) -> Mapping[str, str]:
        return self._labels.setdefault(tuple(labels.items()), labels)

    def _port(self, cls: Callable[..., Any], fields: tuple[Any, ...]) -> Any:
        key = (cls, *fields)
        port = self._values.get(key)
        if port is None:
            port = self._values[key] = cls(*fields)
        return port

    def _meta(self, row: tuple[Any, ...]) -> ObjectMeta:
        name, namespace, labels, uid, version, created, deleted = row
        share = self._share
        return ObjectMeta(name, share(namespace), self._label_set(labels), uid, version, share(created),
                          None if deleted is None else share(deleted))

    def _service(self, row: tuple[Any, ...]) -> Service:
        meta, type_, cluster_ips, headless, ports, selector, external_name, publish, families, document = row
        return Service(self._meta(meta), self._share(type_), cluster_ips, headless,
                       tuple([self._port(ServicePort, p) for p in ports]), self._label_set(selector), external_name,
                       publish, families, document)

    def _pod(self, row: tuple[Any, ...]) -> Pod:
        meta, pod_ips, phase, ready, hostname, subdomain, node_name, ports, document = row
        share = self._share
        pod = Pod(self._meta(meta), pod_ips, share(phase), ready, hostname, share(subdomain), share(node_name),
                  tuple([self._port(ContainerPort, p) for p in ports]) if ports else (), document)
        self._pods[pod.meta.uid] = pod
        return pod

    def _endpoint_slice(self, row: tuple[Any, ...]) -> EndpointSlice:
        meta, address_type, endpoints, ports, document, owner = row
        return EndpointSlice(self._meta(meta), self._share(address_type),
                             tuple([self._endpoint(*endpoint) for endpoint in endpoints]),
                             tuple([self._port(EndpointPort, p) for p in ports]), document,
                             None if owner is None else SliceOwner(*owner))

    def _endpoint(self, addresses: tuple[str, ...], conditions: tuple[bool | None, bool | None, bool | None],
                  hostname: str,
                  node_name: str, ref: tuple[str, str, str, str] | None) -> Endpoint:
        if ref is None:
            return Endpoint(addresses, ENDPOINT_CONDITIONS[conditions], hostname, self._share(node_name))
        kind, namespace, name, uid = ref
        pod = self._pods.get(uid)
        if pod is not None and kind == objects.POD and pod.meta.name == name and pod.meta.namespace == namespace:
            # The pod's own values where they are equal (as the controller made them).
            meta = pod.meta
            target = ObjectReference(objects.POD, meta.namespace, meta.name, meta.uid)
            if addresses == pod.pod_ips:
                addresses = pod.pod_ips
            if hostname == pod.hostname:
                hostname = pod.hostname
        else:
            target = ObjectReference(self._share(kind), self._share(namespace), name, uid)
        return Endpoint(addresses, ENDPOINT_CONDITIONS[conditions], hostname, self._share(node_name), target)

