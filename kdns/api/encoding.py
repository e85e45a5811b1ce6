"""Reading requests and writing responses: media types, JSON, YAML and protobuf bodies
(kdns/api/protobuf.py), field validation, dry runs, and objects rendered as JSON, as
protobuf or as a Table (kdns/api/tables.py)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import yaml
from aiohttp import web

from kdns.api import protobuf, status, tables
from kdns.api.context import CLOCK, KIND, NAME, WARNINGS
from kdns.api.resources import Resource
from kdns.api.status import MAX_BODY, ApiError
from kdns.registry import schema
from kdns.registry.manifests import to_manifest

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
BODY_TYPES = (JSON, "application/yaml", protobuf.MEDIA)
FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


# The API's JSON, compact; one encoder for every reply (json.dumps with options makes one per call).
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode


def json_response(body: Any, code: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_COMPACT(body).encode(),
        status=code,
        content_type=JSON,
        headers=headers,
    )


def status_response(error: ApiError) -> web.Response:
    return json_response(error.status(), error.code)


def media_types(header: str) -> list[tuple[str, dict[str, str]]]:
    """An Accept header as (type, parameters) pairs."""
    result = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        params = {}
        for f in fields[1:]:
            if "=" in f:
                k, v = f.split("=", 1)
                params[k.strip().lower()] = v.strip().strip('"')
        result.append((fields[0].lower(), params))
    return result


def wants_table(request: web.Request) -> str | None:
    """The Table apiVersion the client asked for (`meta.k8s.io/v1`), or None."""
    return _table_version(request.headers.get("Accept", ""))


# An Accept header's answers are kept by its text (`wants_table`, `wants_protobuf`): a
# client sends the same one or two on every request, and each reply asks both.
@functools.lru_cache(maxsize=64)
def _table_version(accept: str) -> str | None:
    for media, params in media_types(accept):
        if (media == JSON and params.get("as") == "Table" and params.get("g") == "meta.k8s.io"
                and params.get("v") in ("v1", "v1beta1")):
            return f"meta.k8s.io/{params['v']}"
        if media in (JSON, "*/*", "application/*"):
            return None
    return None


def wants_protobuf(request: web.Request) -> bool:
    """Whether the client lists protobuf before any JSON it accepts, as client-go's typed
    clients do (`application/vnd.kubernetes.protobuf,application/json`)."""
    return _prefers_protobuf(request.headers.get("Accept", ""))


@functools.lru_cache(maxsize=64)
def _prefers_protobuf(accept: str) -> bool:
    for media, params in media_types(accept):
        if media == protobuf.MEDIA and set(params) <= {"q"}:  # (not `as=Table`, not `stream=watch`)
            return True
        if media in (JSON, "*/*", "application/*"):
            return False
    return False


def media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


class _Duplicates(Exception):
    """An object of the body names a key twice (`_unique_pairs`): the fast path's way out."""


def _unique_pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(items)
    if len(result) != len(items):
        raise _Duplicates
    return result


# A body with no key twice in an object (nearly every one) is read by one decoder made
# once; json.loads with a hook makes a decoder per call, half of a small patch's reading.
_UNIQUE = json.JSONDecoder(object_pairs_hook=_unique_pairs)


def loads_json(body: bytes) -> tuple[Any, list[str]]:
    """JSON, and the keys that occur twice in one object (strict decoding refuses those)."""
    try:
        # As json.loads reads bytes: the encoding its first bytes say (UTF-8, -16 or -32).
        return _UNIQUE.decode(body.decode(json.detect_encoding(body), "surrogatepass")), []
    except _Duplicates:
        pass  # read again below, naming them
    except (ValueError, UnicodeDecodeError) as exc:
        raise status.bad_request(f"the body of the request cannot be decoded as JSON: {exc}") from None
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    try:
        return json.loads(body, object_pairs_hook=pairs), duplicates
    except (ValueError, UnicodeDecodeError) as exc:
        raise status.bad_request(f"the body of the request cannot be decoded as JSON: {exc}") from None


def loads_yaml(body: bytes) -> Any:
    try:
        return yaml.safe_load(body)
    except yaml.YAMLError as exc:
        raise status.bad_request(f"the body of the request cannot be decoded as YAML: {exc}") from None


async def read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise status.too_large()
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise status.too_large() from None


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def is_dry_run(request: web.Request, options: dict[str, Any] | None = None) -> bool:
    values = request.query.getall("dryRun", [])
    if options and isinstance(options.get("dryRun"), list):
        values = [*values, *options["dryRun"]]
    for value in values:
        if value != "All":
            raise status.bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return bool(values)


def field_validation(request: web.Request) -> str:
    value = request.query.get("fieldValidation", "Warn") or "Warn"
    if value not in FIELD_VALIDATION:
        raise status.bad_request(
            f'fieldValidation: Unsupported value: "{value}": supported values: "Ignore", "Strict", "Warn"'
        )
    return value


def render(request: web.Request, resource: Resource, obj: Any, code: int = 200) -> web.Response:
    doc = obj if isinstance(obj, dict) else to_manifest(obj)
    table_version = wants_table(request)
    if table_version is not None:
        body = tables.table(
            resource.kind,
            [doc],
            request.app[CLOCK](),
            resource_version=None,
            include_object=request.query.get("includeObject", "Metadata"),
            api_version=table_version,
        )
        return json_response(body, code)
    return object_response(request, doc, resource.kind, code)


def object_response(request: web.Request, doc: dict[str, Any], kind: str, code: int = 200) -> web.Response:
    """An object or a list (`kind` ServiceList, ...) in protobuf when the client prefers
    it and every field of it has a place in protobuf.py's messages, else in JSON."""
    if wants_protobuf(request):
        body = protobuf.encode(doc, kind)
        if body is not None:
            return web.Response(body=body, status=code, content_type=protobuf.MEDIA)
    return json_response(doc, code)


def check_kind(doc: Any, resource: Resource) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise status.bad_request(f"the body must be a {resource.kind} object")
    api_version = doc.setdefault("apiVersion", resource.group_version)
    kind = doc.setdefault("kind", resource.kind)
    if kind != resource.kind:
        raise status.bad_request(
            f'{kind} in version "{api_version}" cannot be handled as a {resource.kind}: '
            f"the body is a {kind}, the URL names {resource.plural}"
        )
    if api_version != resource.group_version:
        raise status.bad_request(
            f"the API version in the data ({api_version}) does not match the expected "
            f"API version ({resource.group_version})"
        )
    metadata = doc.get("metadata")
    if metadata is None:
        doc["metadata"] = {}
    elif not isinstance(metadata, dict):
        raise status.bad_request("metadata must be an object")
    return doc


def decode(
    request: web.Request, resource: Resource, doc: Any, duplicates: Sequence[str] = (), unknown: Sequence[str] = ()
) -> dict[str, Any]:
    """Field validation as `?fieldValidation=` asks: unknown or duplicate fields refused
    (Strict), reported in Warning headers (Warn, the default) or dropped (Ignore).
    `unknown` are fields the body's decoder found and could not name (protobuf's)."""
    doc = check_kind(doc, resource)
    mode = field_validation(request)
    decoded = schema.decode(doc, schema.BY_KIND[resource.kind])
    if decoded.wrong_types:
        raise status.bad_request(
            f"{resource.kind} in version \"{resource.group_version}\" cannot be handled as a "
            f"{resource.kind}: " + "; ".join(decoded.wrong_types)
        )
    if unknown or decoded.unknown or duplicates:  # (nearly never: no lists made for nothing)
        problems = [f'unknown field "{path}"' for path in [*unknown, *decoded.unknown]]
        problems += [f'duplicate field "{key}"' for key in duplicates]
        if mode == "Strict":
            raise status.bad_request("strict decoding error: " + ", ".join(problems))
        if mode == "Warn":
            request.setdefault(WARNINGS, []).extend(problems)
    request[KIND] = resource.kind
    document: dict[str, Any] = decoded.document  # (the schema of a kind is an object's)
    request[NAME] = document.get("metadata", {}).get("name", "")
    return document


async def read_document(request: web.Request, resource: Resource) -> dict[str, Any]:
    media = media_type(request)
    body = await read_body(request)
    if media in ("", JSON):
        doc, duplicates = loads_json(body)
    elif media in ("application/yaml", "application/x-yaml", "text/yaml"):
        doc, duplicates = loads_yaml(body), []
    elif media == protobuf.MEDIA:
        message = loads_protobuf(body)
        # A kind with no message here is named, not decoded: check_kind refuses it.
        doc = message.document or {"apiVersion": message.api_version, "kind": message.kind}
        return decode(request, resource, doc, unknown=message.unknown)
    else:
        raise status.unsupported_media_type(media, BODY_TYPES)
    return decode(request, resource, doc, duplicates)


def loads_protobuf(body: bytes) -> protobuf.Body:
    try:
        return protobuf.decode(body)
    except protobuf.Malformed as exc:
        raise status.bad_request(f"the body of the request cannot be decoded as protobuf: {exc}") from None


def delete_options(request: web.Request, body: bytes) -> dict[str, Any]:
    """The DeleteOptions a DELETE carries (none: {}), in JSON or protobuf. Fields they do
    not have are ignored, as in JSON."""
    if not body.strip():
        return {}
    if media_type(request) == protobuf.MEDIA:
        message = loads_protobuf(body)
        options: Any = message.document if message.kind == "DeleteOptions" else None
    else:
        options, _ = loads_json(body)
    if not isinstance(options, dict):
        raise status.bad_request("the body of a DELETE must be DeleteOptions")
    return options
