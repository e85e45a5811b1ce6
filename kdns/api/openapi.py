"""`/openapi/v3`: one OpenAPI 3.0 document per group-version, and the index pointing to them.

kubectl reads these to learn that the server validates fields itself: for each kind it looks
for the PATCH operation tagged with `x-kubernetes-group-version-kind` and a `fieldValidation`
query parameter (k8s.io/cli-runtime resource/query_param_verifier_v3.go); finding it, it sends
`?fieldValidation=Strict` and skips client-side validation.

The component schemas are kube-apiserver's: every message of the published Kubernetes
schemas, with their descriptions and patch-strategy and list-type markers
(`k8s_pb/definitions.json`, made from the .proto files), and the served kinds tagged with
`x-kubernetes-group-version-kind`, by which `kubectl explain` finds them and client-side
apply reads their merge keys, as against a real cluster.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kdns import __version__
from kdns.api.k8s_pb import openapi_v2_pb2
from kdns.api.resources import GROUP_VERSIONS, Resource, in_group_version

KUBERNETES_VERSION = "v1.32.0"
_REF = "#/components/schemas/"


# The OpenAPI definitions of every message of the Kubernetes schemas kdns serves, made by
# kdns/api/k8s_pb/generate.py from the published .proto files and their comments.
_DEFINITIONS = Path(__file__).resolve().parent / "k8s_pb" / "definitions.json"
# The kinds kdns serves, with their lists, carry the extension that kubectl looks
# schemas up by (`kubectl explain`, client-side apply's patch strategies).
_SERVED_KINDS = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status": ("", "v1", "Status"),
}


def definition_name(resource: Resource) -> str:
    """`io.k8s.api.core.v1.Service`: the kind's definition, named as kube-apiserver names it."""
    package = resource.group.split(".", 1)[0] if resource.group else "core"
    return f"io.k8s.api.{package}.{resource.version}.{resource.kind}"


def _gvk(group: str, version: str, kind: str) -> list[dict[str, str]]:
    return [{"group": group, "kind": kind, "version": version}]


def _v3(node: Any) -> Any:
    """A v2 definition as OpenAPI 3 writes it: refs into components, a ref with a
    description beside it wrapped in allOf (siblings of $ref are ignored in 3.0), and
    int-or-string marked as kube-apiserver marks it."""
    if isinstance(node, list):
        return [_v3(item) for item in node]
    if not isinstance(node, dict):
        return node
    body = {key: _v3(value) for key, value in node.items()}
    ref = body.get("$ref")
    if isinstance(ref, str):
        body["$ref"] = ref.replace("#/definitions/", _REF)
        if len(body) > 1:
            body = {"allOf": [{"$ref": body.pop("$ref")}], **body}
    if body.get("format") == "int-or-string":
        body["x-kubernetes-int-or-string"] = True
    return body


@cache
def _definitions() -> dict[str, Any]:
    """The definitions, v2's form (`#/definitions/` refs), the served kinds tagged."""
    definitions: dict[str, Any] = json.loads(_DEFINITIONS.read_text())
    served = dict(_SERVED_KINDS)
    for gv in GROUP_VERSIONS:
        for resource in in_group_version(gv):
            name = definition_name(resource)
            served[name] = (resource.group, resource.version, resource.kind)
            served[f"{name}List"] = (resource.group, resource.version, resource.list_kind)
    for name, (group, version, kind) in served.items():
        definitions[name]["x-kubernetes-group-version-kind"] = _gvk(group, version, kind)
    # A patch body is any of the patch media types: its schema is not the object's.
    definitions["io.k8s.apimachinery.pkg.apis.meta.v1.Patch"] = {
        "type": "object",
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
    }
    return definitions


@cache
def _components() -> dict[str, Any]:
    return {name: _v3(body) for name, body in _definitions().items()}


# --- /openapi/v2 ---------------------------------------------------------------------------

# What kubectl asks for; the answer's Content-Type spells the version with a dot, which
# (unlike `@`) Go's mime parser reads, as kube-openapi's handler does.
V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
V2_PROTOBUF_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def document_v2() -> dict[str, Any]:
    """The Swagger 2.0 document: the same definitions as v3's components (what kubectl
    validates a `kind: List` with); the operations are described in v3 only."""
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes (kdns)", "version": f"{KUBERNETES_VERSION}+kdns.{__version__}"},
        "paths": {},
        "definitions": _definitions(),
    }


def _gnostic_schema(body: dict[str, Any]) -> Any:
    """One definition as gnostic's openapi_v2.Schema message, as kube-apiserver encodes it."""
    schema = openapi_v2_pb2.Schema()
    for key, value in body.items():
        if key == "$ref":
            schema._ref = value  # the message's field is called `_ref`
        elif key in ("description", "format"):
            setattr(schema, key, value)
        elif key == "type":
            schema.type.value.append(value)
        elif key == "properties":
            schema.properties.additional_properties.extend(
                openapi_v2_pb2.NamedSchema(name=name, value=_gnostic_schema(prop)) for name, prop in value.items()
            )
        elif key == "items":
            schema.items.schema.append(_gnostic_schema(value))
        elif key == "additionalProperties":
            schema.additional_properties.schema.CopyFrom(_gnostic_schema(value))
        elif key.startswith("x-"):
            schema.vendor_extension.append(
                openapi_v2_pb2.NamedAny(name=key, value=openapi_v2_pb2.Any(yaml=yaml.safe_dump(value)))
            )
    return schema


@cache
def rendered_v2() -> tuple[bytes, bytes]:
    """/openapi/v2 as JSON and as gnostic protobuf (which kubectl asks for)."""
    doc = document_v2()
    message = openapi_v2_pb2.Document(
        swagger=doc["swagger"],
        info=openapi_v2_pb2.Info(title=doc["info"]["title"], version=doc["info"]["version"]),
        paths=openapi_v2_pb2.Paths(),
        definitions=openapi_v2_pb2.Definitions(additional_properties=[
            openapi_v2_pb2.NamedSchema(name=name, value=_gnostic_schema(body)) for name, body in doc["definitions"].items()
        ]),
    )
    return json.dumps(doc, separators=(",", ":")).encode(), message.SerializeToString()


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
    gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
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
    # Only the operations the resource has (Endpoints: get and list).
    for path, item in list(paths.items()):
        for method, operation in list(item.items()):
            if method != "parameters" and _VERB_OF_ACTION[operation["x-kubernetes-action"]] not in resource.verbs:
                del item[method]
        if set(item) <= {"parameters"}:
            del paths[path]
    return paths


_VERB_OF_ACTION = {"list": "list", "get": "get", "post": "create", "put": "update", "patch": "patch", "delete": "delete"}


def document(group_version: str) -> dict[str, Any]:
    """The OpenAPI document of one group-version (`v1`, `discovery.k8s.io/v1`)."""
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    paths: dict[str, Any] = {}
    for resource in in_group_version(group_version):
        paths.update(_paths_for(resource, prefix, definition_name(resource)))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kdns)", "version": f"{KUBERNETES_VERSION}+kdns.{__version__}"},
        "paths": paths,
        "components": {
            "schemas": _components(),
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
