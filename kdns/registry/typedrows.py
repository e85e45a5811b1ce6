"""Typed registry objects as the journal keeps them: each one a marshal'ed tuple of its fields.

A start from the durable store builds every object of the registry from its row (120,000
of them for 10,000 Services and 100,000 pods), so decoding a row is most of that start.
A row is the object's fields in their class's order, nested values (ObjectMeta, ports,
endpoints) as tuples of theirs, and the decoder calls the classes' own constructors:
for 100,000 pods that is 0.14 s of CPU where unpickling each pod took 0.9 s, and a row
is a third smaller (588 bytes against 861 for a pod of the bench's scale cluster).

marshal makes plain values only (no class, no call), so a row that is not kdns's own
cannot make start-up run anything: it decodes to something of the wrong shape, and
`decode` raises ValueError or TypeError, which the journal reports naming the row. (A
row is read only after its tag says this kdns wrote it: `registry.sqlite.object_format`,
which digests this module too, so a change here makes older rows count as absent.)

Label sets and selectors are shared as `manifests.parse` shares them
(`objects.shared_labels`), and namespaces are interned: the objects of one namespace
hold one string for it, as those read from manifests do.
"""

from __future__ import annotations

import marshal
import sys
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
)

__all__ = ["decode", "encode"]


def encode(obj: KubeObject) -> bytes:
    """The row of `obj` (`decode` gives an equal object back, its document included)."""
    return marshal.dumps(_ENCODERS[obj.kind](obj))


def decode(kind: str, row: bytes | memoryview) -> KubeObject:
    """The object of kind `kind` that `row` holds; ValueError or TypeError when `row` is
    not one `encode` made for that kind (KeyError for a kind kdns does not serve)."""
    return _DECODERS[kind](marshal.loads(row))  # noqa: S302  (plain values only: see the module's docstring)


def _meta(meta: ObjectMeta) -> tuple[Any, ...]:
    return (meta.name, meta.namespace, dict(meta.labels), meta.uid, meta.resource_version,
            meta.creation_timestamp, meta.deletion_timestamp)


def _encode_namespace(obj: Any) -> tuple[Any, ...]:
    return _meta(obj.meta), obj.document


def _encode_service(obj: Any) -> tuple[Any, ...]:
    ports = tuple((p.name, p.protocol, p.port, p.target_port, p.node_port) for p in obj.ports)
    return (_meta(obj.meta), obj.type, obj.cluster_ips, obj.headless, ports, dict(obj.selector), obj.external_name,
            obj.publish_not_ready_addresses, obj.ip_families, obj.document)


def _encode_pod(obj: Any) -> tuple[Any, ...]:
    ports = tuple((p.name, p.container_port, p.protocol) for p in obj.container_ports)
    return (_meta(obj.meta), obj.pod_ips, obj.phase, obj.ready, obj.hostname, obj.subdomain, obj.node_name, ports,
            obj.document)


def _encode_node(obj: Any) -> tuple[Any, ...]:
    return _meta(obj.meta), tuple((a.type, a.address) for a in obj.addresses), obj.document


def _encode_endpoint_slice(obj: Any) -> tuple[Any, ...]:
    endpoints = tuple(
        (e.addresses, (e.conditions.ready, e.conditions.serving, e.conditions.terminating), e.hostname, e.node_name,
         None if e.target_ref is None else (e.target_ref.kind, e.target_ref.namespace, e.target_ref.name,
                                            e.target_ref.uid))
        for e in obj.endpoints
    )
    ports = tuple((p.name, p.port, p.protocol) for p in obj.ports)
    return _meta(obj.meta), obj.address_type, endpoints, ports, obj.document


_ENCODERS: Mapping[str, Callable[[Any], tuple[Any, ...]]] = {
    objects.NAMESPACE: _encode_namespace,
    objects.SERVICE: _encode_service,
    objects.POD: _encode_pod,
    objects.NODE: _encode_node,
    objects.ENDPOINT_SLICE: _encode_endpoint_slice,
}

_intern = sys.intern
_shared = objects.shared_labels


def _decode_meta(row: tuple[Any, ...]) -> ObjectMeta:
    name, namespace, labels, uid, version, created, deleted = row
    return ObjectMeta(name, _intern(namespace), _shared(labels), uid, version, created, deleted)


def _decode_namespace(row: tuple[Any, ...]) -> Namespace:
    meta, document = row
    return Namespace(_decode_meta(meta), document)


def _decode_service(row: tuple[Any, ...]) -> Service:
    meta, type_, cluster_ips, headless, ports, selector, external_name, publish, families, document = row
    return Service(_decode_meta(meta), type_, cluster_ips, headless, tuple([ServicePort(*p) for p in ports]),
                   _shared(selector), external_name, publish, families, document)


def _decode_pod(row: tuple[Any, ...]) -> Pod:
    meta, pod_ips, phase, ready, hostname, subdomain, node_name, ports, document = row
    return Pod(_decode_meta(meta), pod_ips, phase, ready, hostname, subdomain, node_name,
               tuple([ContainerPort(*p) for p in ports]) if ports else (), document)


def _decode_node(row: tuple[Any, ...]) -> Node:
    meta, addresses, document = row
    return Node(_decode_meta(meta), tuple([NodeAddress(*a) for a in addresses]), document)


def _decode_endpoint_slice(row: tuple[Any, ...]) -> EndpointSlice:
    meta, address_type, endpoints, ports, document = row
    return EndpointSlice(
        _decode_meta(meta), address_type,
        tuple([Endpoint(addresses, ENDPOINT_CONDITIONS[conditions], hostname, node_name,
                        None if ref is None else ObjectReference(*ref))
               for addresses, conditions, hostname, node_name, ref in endpoints]),
        tuple([EndpointPort(*p) for p in ports]), document,
    )


_DECODERS: Mapping[str, Callable[[Any], KubeObject]] = {
    objects.NAMESPACE: _decode_namespace,
    objects.SERVICE: _decode_service,
    objects.POD: _decode_pod,
    objects.NODE: _decode_node,
    objects.ENDPOINT_SLICE: _decode_endpoint_slice,
}
