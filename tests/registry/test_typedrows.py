"""Typed rows (kdns.registry.typedrows): every kind, every field, comes back as it was written."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kdns.registry import objects, typedrows
from kdns.registry.objects import (
    ContainerPort,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
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

META = ObjectMeta("web", "shop", {"app": "web"}, "0d3c-uid", 42, "2026-12-07T01:00:00Z", "2026-12-07T02:00:00Z")
DOCUMENT = objects.pack({"kind": "any", "metadata": {"name": "web"}})

EVERY_KIND = [
    Namespace(META, DOCUMENT),
    Service(META, "NodePort", ("10.96.0.10", "fd00::10"), True,
            (ServicePort("http", "TCP", 80, "web", 30080), ServicePort("", "UDP", 53, 5353, 30053)),
            {"app": "web"}, "db.example.", True, ("IPv4", "IPv6"), DOCUMENT),
    Pod(META, ("10.1.0.5", "fd00::5"), "Running", True, "web-0", "web", "node-1",
        (ContainerPort("http", 8080, "SCTP"),), DOCUMENT),
    Node(META, (NodeAddress("InternalIP", "192.0.2.1"), NodeAddress("Hostname", "node-1")), DOCUMENT),
    EndpointSlice(META, "IPv6",
                  (Endpoint(("fd00::5",), EndpointConditions(True, False, None), "web-0", "node-1",
                            ObjectReference("Pod", "shop", "web-0", "pod-uid")),),
                  (EndpointPort("http", 8080, "UDP"),), DOCUMENT, SliceOwner("svc-uid", 3)),
]


def _unset_fields(value: Any, path: str = "") -> list[str]:
    """The fields of `value` (and of the objects in it) left at their class's default."""
    if isinstance(value, tuple):
        return [name for i, item in enumerate(value) for name in _unset_fields(item, f"{path}[{i}]")]
    if not dataclasses.is_dataclass(value):
        return []
    unset = []
    for field in dataclasses.fields(value):
        if field.name == "conditions":  # EndpointConditions: its three states are the point
            continue
        current = getattr(value, field.name)
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = field.default
        if default is not dataclasses.MISSING and current == default:
            unset.append(f"{path}.{field.name}")
        unset.extend(_unset_fields(current, f"{path}.{field.name}"))
    return unset


def test_every_kind_is_covered_with_every_field_set():
    """The objects below set every field away from its default, so a field added to a
    class and forgotten by the rows fails the round trip."""
    assert {obj.kind for obj in EVERY_KIND} == set(objects.KIND_CLASSES)
    assert [name for obj in EVERY_KIND for name in _unset_fields(obj, obj.kind)] == []


@pytest.mark.parametrize("obj", EVERY_KIND, ids=lambda obj: obj.kind)
def test_a_row_gives_back_an_equal_object(obj):
    back = typedrows.Decoder().decode(obj.kind, typedrows.encode(obj))
    assert type(back) is type(obj)
    assert back == obj and back.document == obj.document
    if isinstance(obj, EndpointSlice):  # (not compared by ==, as the document is not)
        assert back.owner == obj.owner


def test_a_row_of_another_kind_is_refused():
    """Rows are read by the kind their key names: a Pod's row read as a Service's does not decode."""
    with pytest.raises(ValueError, match=r"^not enough values to unpack \(expected 10, got 9\)$"):
        typedrows.Decoder().decode("Service", typedrows.encode(EVERY_KIND[2]))


def _copy(row: bytes) -> bytes:
    """The row as another read of the file gives it (no string shared with `row`'s objects)."""
    return bytes(bytearray(row))


def test_one_load_shares_what_its_rows_repeat():
    """Decoded by one Decoder, objects hold one string for a value rows repeat, and an
    endpoint holds its pod's values (decoded before it), as objects read from manifests
    do: equal objects either way, fewer strings."""
    pod_meta = ObjectMeta("web-0", "shop", {"app": "web"}, "pod-uid-0", 7, "2026-12-07T01:00:00Z")
    pod = Pod(pod_meta, ("10.1.0.5",), "Running", True, "web-0", "web", "node-1", (), DOCUMENT)
    other = Pod(dataclasses.replace(pod_meta, name="web-1", uid="pod-uid-1"), ("10.1.0.6",), "Running", True,
                "web-1", "web", "node-1", (), DOCUMENT)
    endpoint = Endpoint(("10.1.0.5",), EndpointConditions(True, True, False), "web-0", "node-1",
                        ObjectReference("Pod", "shop", "web-0", "pod-uid-0"))
    # An endpoint whose reference is not its pod's (another name under that uid) keeps its own values.
    stranger = Endpoint(("10.1.0.9",), EndpointConditions(True, True, False), "", "node-2",
                        ObjectReference("Pod", "shop", "web-9", "pod-uid-1"))
    endpoint_slice = EndpointSlice(dataclasses.replace(META, name="web-abcde"), "IPv4", (endpoint, stranger),
                                   (EndpointPort("http", 8080, "TCP"),), DOCUMENT)
    service = Service(dataclasses.replace(META, name="web", labels={"app": "web"}), selector={"app": "web"})
    decoder = typedrows.Decoder()
    back = [decoder.decode(obj.kind, _copy(typedrows.encode(obj))) for obj in (pod, other, service, endpoint_slice)]
    assert back == [pod, other, service, endpoint_slice]
    pod_back, other_back, service_back, slice_back = back
    assert pod_back.meta.labels is other_back.meta.labels is service_back.selector is service_back.meta.labels
    assert pod_back.meta.namespace is other_back.meta.namespace is slice_back.meta.namespace
    assert pod_back.meta.creation_timestamp is other_back.meta.creation_timestamp
    assert pod_back.phase is other_back.phase and pod_back.node_name is other_back.node_name
    held, strange = slice_back.endpoints
    assert held.target_ref.name is pod_back.meta.name and held.target_ref.uid is pod_back.meta.uid
    assert held.addresses is pod_back.pod_ips and held.hostname is pod_back.hostname
    assert held.node_name is pod_back.node_name
    assert strange.target_ref == ObjectReference("Pod", "shop", "web-9", "pod-uid-1")
    assert strange.target_ref.name is not other_back.meta.name and strange.addresses != other_back.pod_ips
