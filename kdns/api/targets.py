"""What a resource URL names (`parse_target`), and the selector a list or watch of it reads."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from kdns.api import status
from kdns.api.resources import BY_PATH, UNSERVED, Resource
from kdns.api.selectors import (
    Selector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)


@dataclass(frozen=True, slots=True)
class Target:
    """What a resource URL names."""

    resource: Resource
    namespace: str | None  # None: every namespace (or a cluster-scoped kind)
    name: str | None
    subresource: str | None
    watch_path: bool  # the deprecated /watch/ prefix


def parse_target(group_version: str, tail: str) -> Target:
    parts = list(tail.split("/"))
    watch_path = False
    if parts[0] == "watch":
        watch_path, parts = True, parts[1:]
    namespace = None
    if len(parts) >= 3 and parts[0] == "namespaces":
        namespace, parts = parts[1], parts[2:]
    if not parts:
        raise status.path_not_found(tail)
    resource = BY_PATH.get((group_version, parts[0]))
    if resource is not None and len(parts) > 3 and (resource.plural, parts[2]) in UNSERVED:
        parts = parts[:3]  # .../proxy/<path>: the path (maybe empty) is the proxied request's
    if resource is None or len(parts) > 3 or not all(parts) or namespace == "":
        raise status.path_not_found(tail)
    if namespace is not None and not resource.namespaced:
        raise status.path_not_found(tail)
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    if sub is not None and sub not in resource.subresources and (resource.plural, sub) not in UNSERVED:
        raise status.path_not_found(tail)
    if resource.namespaced and name is not None and namespace is None:
        raise status.path_not_found(tail)
    if not resource.namespaced:
        namespace = ""
    return Target(resource, namespace, name, sub, watch_path)


def selector_of(request: web.Request, target: Target) -> Selector:
    kind = target.resource.kind
    try:
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        fields = parse_field_selector(kind, request.query.get("fieldSelector", ""))
    except SelectorError as exc:
        raise status.bad_request(str(exc)) from None
    namespace = target.namespace if target.resource.namespaced else None
    if target.name is not None:
        # /watch/namespaces/ns/pods/name: a watch of that one object.
        fields = (*fields, *parse_field_selector(kind, f"metadata.name={target.name}"))
    return Selector(kind, namespace, labels, fields)
