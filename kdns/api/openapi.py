"""`/openapi/v3`: one OpenAPI 3.0 document per group-version, and the index pointing to them.

kubectl reads these to learn that the server validates fields itself: for each kind it looks
for the PATCH operation tagged with `x-kubernetes-group-version-kind` and a `fieldValidation`
query parameter (k8s.io/cli-runtime resource/query_param_verifier_v3.go); finding it, it sends
`?fieldValidation=Strict` and skips client-side validation.

The component schemas are kdns's own (kdns/registry/schema.py: the fields it reads and keeps,
with their merge keys and patch strategies). Each served kind and its list carry
`x-kubernetes-group-version-kind`, by which `kubectl explain` finds them. Client-side apply
also looks a kind's merge keys up by it; where a document reaches into an `OPEN` part these
schemas do not spell out, kubectl's lookup fails and it falls back to its own compiled-in
types (k8s.io/kubectl apply/patcher.go), which know every field.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from kdns import __version__
from kdns.api.resources import GROUP_VERSIONS, Resource, in_group_version
from kdns.registry import schema as s

KUBERNETES_VERSION = "v1.32.0"
_REF = "#/components/schemas/"


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def _schema(node: s.Schema, components: dict[str, Any], gvk: dict[str, str] | None = None) -> dict[str, Any]:
    """`node` as OpenAPI; named objects go to `components` (`gvk`: the kind it is the root of)."""
    if node.type == "object":
        body: dict[str, Any] = {"type": "object"}
        if node.properties:
            body["properties"] = {k: _schema(v, components) for k, v in node.properties.items()}
        if node.open:
            body["x-kubernetes-preserve-unknown-fields"] = True
        if node.name:
            if gvk is not None:
                body["x-kubernetes-group-version-kind"] = [gvk]
            components.setdefault(node.name, body)
            return {"$ref": _REF + node.name}
        return body
    if node.type == "array":
        assert node.items is not None
        body = {"type": "array", "items": _schema(node.items, components)}
        if node.merge_key:
            body["x-kubernetes-patch-merge-key"] = node.merge_key
            body["x-kubernetes-list-type"] = "map"
            body["x-kubernetes-list-map-keys"] = [node.merge_key]
        elif node.strategy and "merge" in node.strategy:
            body["x-kubernetes-list-type"] = "set"
        else:
            body["x-kubernetes-list-type"] = "atomic"
        if node.strategy:
            body["x-kubernetes-patch-strategy"] = node.strategy
        return body
    if node.type == "map":
        assert node.items is not None
        return {"type": "object", "additionalProperties": _schema(node.items, components)}
    if node.type == "int-or-string":
        return {"type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": True}
    if node.type == "quantity":
        return {"type": "string", "format": "quantity", "x-kubernetes-int-or-string": True}
    if node.type == "any":
        return {"x-kubernetes-preserve-unknown-fields": True}
    body = {"type": node.type}
    if node.format:
        body["format"] = node.format
    return body


def _param(name: str, kind: str = "string", where: str = "query", **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": {"type": kind}, **extra}


_WRITE_PARAMS = [
    _param("dryRun", description="When present, modifications are not persisted (All)."),
    _param("fieldManager"),
    _param(
        "fieldValidation",
        description="Ignore, Warn or Strict: what to do with unknown or duplicate fields.",
    ),
]
_LIST_PARAMS = [
    _param("labelSelector"),
    _param("fieldSelector"),
    _param("watch", "boolean"),
    _param("resourceVersion"),
    _param("resourceVersionMatch"),
    _param("timeoutSeconds", "integer"),
    _param("limit", "integer"),
    _param("continue"),
    _param("allowWatchBookmarks", "boolean"),
    _param("sendInitialEvents", "boolean"),
]
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def _operation(
    resource: Resource, action: str, verb: str, response: str, params: list[dict[str, Any]], body: str | None = None
) -> dict[str, Any]:
    gvk = _gvk(resource.group, resource.version, resource.kind)
    op: dict[str, Any] = {
        "operationId": f"{verb}{resource.kind}",
        "parameters": list(params),
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": _REF + response}}},
            },
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if body is not None:
        types = _PATCH_TYPES if action == "patch" else ("application/json", "application/yaml")
        op["requestBody"] = {
            "required": True,
            "content": {t: {"schema": {"$ref": _REF + body}} for t in types},
        }
    return op


def _paths_for(resource: Resource, prefix: str, object_schema: str) -> dict[str, Any]:
    list_schema = f"{object_schema}List"
    name_param = _param("name", where="path", required=True)
    ns_param = _param("namespace", where="path", required=True)
    if resource.namespaced:
        collection = f"{prefix}/namespaces/{{namespace}}/{resource.plural}"
        scope = [ns_param]
    else:
        collection = f"{prefix}/{resource.plural}"
        scope = []
    item = f"{collection}/{{name}}"
    patch_params = [*_WRITE_PARAMS, _param("force", "boolean")]
    paths: dict[str, Any] = {
        collection: {
            "parameters": scope,
            "get": _operation(resource, "list", "list", list_schema, _LIST_PARAMS),
            "post": _operation(resource, "post", "create", object_schema, _WRITE_PARAMS, object_schema),
        },
        item: {
            "parameters": [*scope, name_param],
            "get": _operation(resource, "get", "read", object_schema, []),
            "put": _operation(resource, "put", "replace", object_schema, _WRITE_PARAMS, object_schema),
            "patch": _operation(
                resource, "patch", "patch", object_schema, patch_params, "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
            ),
            "delete": _operation(resource, "delete", "delete", object_schema, [_param("dryRun")]),
        },
    }
    for sub in resource.subresources:
        paths[f"{item}/{sub}"] = {
            "parameters": [*scope, name_param],
            "get": _operation(resource, "get", "read", object_schema, []),
            "put": _operation(resource, "put", "replace", object_schema, _WRITE_PARAMS, object_schema),
            "patch": _operation(
                resource, "patch", "patch", object_schema, patch_params, "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
            ),
        }
    if resource.namespaced:
        paths[f"{prefix}/{resource.plural}"] = {
            "get": _operation(resource, "list", "list", list_schema, _LIST_PARAMS)
        }
    # Only the operations the resource has (Endpoints and Events: get and list).
    for path, operations in list(paths.items()):
        for method, operation in list(operations.items()):
            if method != "parameters" and _VERB_OF_ACTION[operation["x-kubernetes-action"]] not in resource.verbs:
                del operations[method]
        if set(operations) <= {"parameters"}:
            del paths[path]
    return paths


_VERB_OF_ACTION = {"list": "list", "get": "get", "post": "create", "put": "update", "patch": "patch", "delete": "delete"}


def _meta_components() -> dict[str, Any]:
    string = {"type": "string"}
    return {
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta": {
            "type": "object",
            "properties": {"resourceVersion": string, "continue": string, "remainingItemCount": {"type": "integer"}},
        },
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch": {"type": "object"},
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status": {
            "type": "object",
            "properties": {
                "apiVersion": string,
                "kind": string,
                "status": string,
                "message": string,
                "reason": string,
                "code": {"type": "integer"},
                "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
    }


def document(group_version: str) -> dict[str, Any]:
    """The OpenAPI document of one group-version (`v1`, `discovery.k8s.io/v1`)."""
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    components: dict[str, Any] = _meta_components()
    paths: dict[str, Any] = {}
    for resource in in_group_version(group_version):
        root = s.BY_KIND[resource.kind]
        assert root.name is not None
        _schema(root, components, _gvk(resource.group, resource.version, resource.kind))
        components[f"{root.name}List"] = {
            "type": "object",
            "x-kubernetes-group-version-kind": [_gvk(resource.group, resource.version, resource.list_kind)],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"$ref": _REF + "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"},
                "items": {"type": "array", "items": {"$ref": _REF + root.name}},
            },
            "required": ["items"],
        }
        paths.update(_paths_for(resource, prefix, root.name))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kdns)", "version": f"{KUBERNETES_VERSION}+kdns.{__version__}"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        },
        "security": [{"BearerToken": []}],
    }


def path_of(group_version: str) -> str:
    """`api/v1`, `apis/discovery.k8s.io/v1`: how the index names a document."""
    return "api/v1" if group_version == "v1" else f"apis/{group_version}"


@cache
def rendered(group_version: str) -> tuple[bytes, str]:
    """The document's bytes and their hash (the `?hash=` of the index, and the ETag)."""
    body = json.dumps(document(group_version), separators=(",", ":")).encode()
    return body, hashlib.sha512(body).hexdigest().upper()


def index() -> dict[str, Any]:
    return {
        "paths": {
            path_of(gv): {"serverRelativeURL": f"/openapi/v3/{path_of(gv)}?hash={rendered(gv)[1]}"}
            for gv in GROUP_VERSIONS
        }
    }


def group_version_of(path: str) -> str | None:
    """The group-version a `/openapi/v3/<path>` names, or None."""
    for gv in GROUP_VERSIONS:
        if path == path_of(gv):
            return gv
    return None
