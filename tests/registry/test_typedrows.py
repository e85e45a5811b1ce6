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
                  (EndpointPort("http", 8080, "UDP"),), DOCUMENT),
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
    back = typedrows.decode(obj.kind, typedrows.encode(obj))
    assert type(back) is type(obj)
    assert back == obj and back.document == obj.document


def test_a_row_of_another_kind_is_refused():
    """Rows are read by the kind their key names: a Pod's row read as a Service's does not decode."""
    with pytest.raises(ValueError, match=r"^not enough values to unpack \(expected 10, got 9\)$"):
        typedrows.decode("Service", typedrows.encode(EVERY_KIND[2]))
