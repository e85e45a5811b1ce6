"""The registry's HTTP API: Kubernetes-shaped REST that kubectl and client libraries speak.

`build_app(store, metrics=..., ready=...)` returns the aiohttp application; `start_api`
binds it. Routes:

* `/api/v1/...`, `/apis/discovery.k8s.io/v1/...`: namespaces, services (+status),
  pods (+status), nodes, endpointslices: GET, LIST (label and field selectors), WATCH,
  POST, PUT, PATCH (merge, strategic merge, JSON patch, server-side apply) and DELETE;
* discovery (`/version`, `/api`, `/apis`, ...) and `/openapi/v3`;
* `/healthz`, `/livez`, `/readyz` (never need a token) and `/metrics`.

Every refusal is a Kubernetes `Status` (see `status.py`), and a refused request changes
nothing: a write runs in one store transaction, which rolls back on any error.

kdns plays the whole control plane, kubelet included, so a write to the main resource may
carry `status` (that is how a pod gets its IP); a PUT without `status` keeps the stored
one. Writes to `/status` change only `status`.
"""

from __future__ import annotations

import hmac
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from kdns.api import discovery, openapi, patch, status, tables
from kdns.api.resources import BY_PATH, GROUP_VERSIONS, Resource, in_group_version
from kdns.api.selectors import (
    Selector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from kdns.api.status import MAX_BODY, ApiError
from kdns.api.watch import MAX_TIMEOUT, QUEUE_SIZE, Watch, serve_watch
from kdns.metrics import Metrics
from kdns.registry import errors as registry_errors
from kdns.registry import schema
from kdns.registry.manifests import to_manifest
from kdns.registry.store import Store

__all__ = ["METRICS", "STORE", "build_app", "start_api"]

log = logging.getLogger("kdns.api")

STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
WATCHES: web.AppKey[set[Watch]] = web.AppKey("watches")
_TOKEN: web.AppKey[str | None] = web.AppKey("token")
_READY: web.AppKey[Callable[[], bool]] = web.AppKey("ready")
_CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
_QUEUE_SIZE = web.AppKey("watch_queue_size", int)
# What a resource request is about, for the error and metrics middleware.
_RESOURCE = web.RequestKey("resource", str)
_GROUP = web.RequestKey("group", str)
_KIND = web.RequestKey("kind", str)
_NAME = web.RequestKey("name", str)
_WARNINGS = web.RequestKey("warnings", list)

UNAUTHENTICATED = frozenset({"/healthz", "/livez", "/readyz"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
BODY_TYPES = (JSON, "application/yaml")
FIELD_VALIDATION = ("Ignore", "Warn", "Strict")
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class _DryRun(Exception):
    """Raised inside a transaction to roll back a dry run; carries its result."""

    def __init__(self, result: Any) -> None:
        super().__init__("dry run")
        self.result = result


# --- requests and responses --------------------------------------------------------------


def _json_response(body: Any, code: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=code,
        content_type=JSON,
        headers=headers,
    )


def _status_response(error: ApiError) -> web.Response:
    return _json_response(error.status(), error.code)


def _media_types(header: str) -> list[tuple[str, dict[str, str]]]:
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


def _wants_table(request: web.Request) -> str | None:
    """The Table apiVersion the client asked for (`meta.k8s.io/v1`), or None."""
    for media, params in _media_types(request.headers.get("Accept", "")):
        if (media == JSON and params.get("as") == "Table" and params.get("g") == "meta.k8s.io"
                and params.get("v") in ("v1", "v1beta1")):
            return f"meta.k8s.io/{params['v']}"
        if media in (JSON, "*/*", "application/*"):
            return None
    return None


def _media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _loads_json(body: bytes) -> tuple[Any, list[str]]:
    """JSON, and the keys that occur twice in one object (strict decoding refuses those)."""
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


def _loads_yaml(body: bytes) -> Any:
    try:
        return yaml.safe_load(body)
    except yaml.YAMLError as exc:
        raise status.bad_request(f"the body of the request cannot be decoded as YAML: {exc}") from None


async def _read(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise status.too_large()
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise status.too_large() from None


@dataclass(frozen=True, slots=True)
class Target:
    """What a resource URL names."""

    resource: Resource
    namespace: str | None  # None: every namespace (or a cluster-scoped kind)
    name: str | None
    subresource: str | None
    watch_path: bool  # the deprecated /watch/ prefix


def _parse_target(group_version: str, tail: str) -> Target:
    parts = list(tail.split("/"))
    if any(not p for p in parts):
        raise status.path_not_found(tail)
    watch_path = False
    if parts[0] == "watch":
        watch_path, parts = True, parts[1:]
    namespace = None
    if len(parts) >= 3 and parts[0] == "namespaces":
        namespace, parts = parts[1], parts[2:]
    if not parts:
        raise status.path_not_found(tail)
    resource = BY_PATH.get((group_version, parts[0]))
    if resource is None or len(parts) > 3:
        raise status.path_not_found(tail)
    if namespace is not None and not resource.namespaced:
        raise status.path_not_found(tail)
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    if sub is not None and sub not in resource.subresources:
        raise status.path_not_found(tail)
    if resource.namespaced and name is not None and namespace is None:
        raise status.path_not_found(tail)
    if not resource.namespaced:
        namespace = ""
    return Target(resource, namespace, name, sub, watch_path)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _dry_run(request: web.Request, options: dict[str, Any] | None = None) -> bool:
    values = request.query.getall("dryRun", [])
    if options and isinstance(options.get("dryRun"), list):
        values = [*values, *options["dryRun"]]
    for value in values:
        if value != "All":
            raise status.bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return bool(values)


def _field_validation(request: web.Request) -> str:
    value = request.query.get("fieldValidation", "Warn") or "Warn"
    if value not in FIELD_VALIDATION:
        raise status.bad_request(
            f'fieldValidation: Unsupported value: "{value}": supported values: "Ignore", "Strict", "Warn"'
        )
    return value


# --- the application ---------------------------------------------------------------------


def build_app(
    store: Store,
    *,
    metrics: Metrics,
    token: str | None = None,
    ready: Callable[[], bool],
    clock: Callable[[], float] = time.time,
    watch_queue_size: int = QUEUE_SIZE,
) -> web.Application:
    """The API as an aiohttp application; `token` set means every request but the health
    checks needs `Authorization: Bearer <token>`. `clock` dates AGE columns;
    `watch_queue_size` bounds the changes a watcher may fall behind by."""
    app = web.Application(middlewares=[_errors, _authenticate], client_max_size=MAX_BODY)
    app[STORE] = store
    app[METRICS] = metrics
    app[WATCHES] = set()
    app[_TOKEN] = token
    app[_READY] = ready
    app[_CLOCK] = clock
    app[_QUEUE_SIZE] = watch_queue_size
    add = app.router.add_route
    add("GET", "/healthz", _healthz)
    add("GET", "/livez", _healthz)
    add("GET", "/readyz", _readyz)
    add("GET", "/metrics", _metrics)
    add("GET", "/version", _version)
    add("GET", "/api", _api)
    add("GET", "/api/v1", _resource_list)
    add("GET", "/apis", _apis)
    add("GET", "/apis/{group}", _api_group)
    add("GET", "/apis/{group}/{version}", _resource_list)
    add("GET", "/openapi/v3", _openapi_index)
    add("GET", "/openapi/v3/{path:.+}", _openapi_document)
    add("*", "/api/v1/{tail:.+}", _resources)
    add("*", "/apis/{group}/{version}/{tail:.+}", _resources)
    app.on_shutdown.append(_close_watches)
    return app


async def start_api(
    app: web.Application, host: str, port: int, ssl_context: Any = None
) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0 picks a free port); returns the runner and the bound port.
    Stop with `await runner.cleanup()`: open watches end first, then connections close."""
    # handler_cancellation: a watch whose client went away must stop waiting for events.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


async def _close_watches(app: web.Application) -> None:
    watches = app[WATCHES]
    for watch in list(watches):  # a closed watch leaves the set as its handler returns
        watch.close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a Status; writes are counted with their final code."""
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _status_response(exc)
    except registry_errors.RegistryError as exc:
        response = _status_response(_from_registry(exc, request))
    except web.HTTPException as exc:
        if exc.status == 404:
            response = _status_response(status.path_not_found(request.path))
        elif exc.status == 405:
            response = _status_response(status.method_not_allowed(request.method))
        elif exc.status == 413:
            response = _status_response(status.too_large())
        elif exc.status >= 400:
            response = _status_response(ApiError(exc.status, exc.reason, exc.text or exc.reason))
        else:
            raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path_qs)
        response = _status_response(status.internal("see the server log"))
    resource = request.get(_RESOURCE)
    if resource is not None and request.method in WRITE_METHODS:
        request.app[METRICS].observe_write(_VERBS[request.method], resource, response.status)
    for warning in request.get(_WARNINGS, ()):
        if not response.prepared:
            response.headers.add("Warning", f'299 - "{_escape(warning)}"')
    return response


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[_TOKEN]
    if token is not None and request.path not in UNAUTHENTICATED:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), str(token).encode()
        ):
            raise status.unauthorized()
    return await handler(request)


_CAUSE_REASONS = (
    ("Invalid value", "FieldValueInvalid"),
    ("Required value", "FieldValueRequired"),
    ("Forbidden", "FieldValueForbidden"),
    ("Duplicate value", "FieldValueDuplicate"),
    ("Unsupported value", "FieldValueNotSupported"),
    ("Too many", "FieldValueTooMany"),
    ("Too long", "FieldValueTooLong"),
)


def _cause_reason(message: str) -> str:
    for prefix, reason in _CAUSE_REASONS:
        if message.startswith(prefix):
            return reason
    return "FieldValueInvalid"


def _from_registry(exc: registry_errors.RegistryError, request: web.Request) -> ApiError:
    message = str(exc)
    if isinstance(exc, registry_errors.NotFound):
        resource = registry_errors.resource(exc.kind)
        return ApiError(404, "NotFound", message, {"name": exc.name, "kind": resource})
    if isinstance(exc, registry_errors.AlreadyExists):
        resource = registry_errors.resource(exc.kind)
        return ApiError(409, "AlreadyExists", message, {"name": exc.name, "kind": resource})
    if isinstance(exc, registry_errors.Conflict):
        resource = registry_errors.resource(exc.kind)
        return ApiError(409, "Conflict", message, {"name": exc.name, "kind": resource})
    if isinstance(exc, registry_errors.Invalid):
        details: dict[str, Any] = {
            "name": exc.name,
            "kind": exc.kind,
            "causes": [
                {"reason": _cause_reason(m), "message": m, "field": f} for f, m in exc.causes
            ],
        }
        group = request.get(_GROUP)
        if group:
            details["group"] = group
        return ApiError(422, "Invalid", message, details)
    if isinstance(exc, registry_errors.Expired):
        return status.gone(message)
    if isinstance(exc, registry_errors.ManifestError):
        kind, name = request.get(_KIND, ""), request.get(_NAME, "")
        field, _, detail = exc.detail.partition(": ")
        if not detail or " " in field:
            field, detail = "", exc.detail
        cause = {"reason": _cause_reason(detail), "message": detail, "field": field}
        head = f'{kind} "{name}" is invalid: ' if kind else ""
        return ApiError(422, "Invalid", head + exc.detail, {"name": name, "kind": kind, "causes": [cause]})
    return ApiError(400, "BadRequest", message)


# --- health, metrics, discovery ----------------------------------------------------------


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _readyz(request: web.Request) -> web.Response:
    if request.app[_READY]():
        return web.Response(text="ok")
    return web.Response(text="not ready", status=503)


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _version(request: web.Request) -> web.Response:
    return _json_response(discovery.version())


def _aggregated_version(request: web.Request) -> str | None:
    """`v2` / `v2beta1` when the client accepts aggregated discovery, before plain JSON."""
    for media, params in _media_types(request.headers.get("Accept", "")):
        if media == JSON and params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") in discovery.AGGREGATED:
                return params["v"]
        elif media in (JSON, "*/*", "application/*"):
            return None
    return None


def _aggregated_response(core: bool, version: str) -> web.Response:
    body = json.dumps(discovery.aggregated(core, version), separators=(",", ":")).encode()
    return web.Response(body=body, headers={"Content-Type": discovery.AGGREGATED[version]})


async def _api(request: web.Request) -> web.Response:
    version = _aggregated_version(request)
    if version is not None:
        return _aggregated_response(True, version)
    return _json_response(discovery.api_versions(request.host))


async def _apis(request: web.Request) -> web.Response:
    version = _aggregated_version(request)
    if version is not None:
        return _aggregated_response(False, version)
    return _json_response(discovery.api_group_list())


async def _api_group(request: web.Request) -> web.Response:
    group = request.match_info["group"]
    if not any(gv.startswith(group + "/") for gv in GROUP_VERSIONS):
        raise status.path_not_found(request.path)
    return _json_response(discovery.api_group(group))


async def _resource_list(request: web.Request) -> web.Response:
    group = request.match_info.get("group")
    group_version = f"{group}/{request.match_info['version']}" if group else "v1"
    if group_version not in GROUP_VERSIONS or not in_group_version(group_version):
        raise status.path_not_found(request.path)
    return _json_response(discovery.resource_list(group_version))


async def _openapi_index(request: web.Request) -> web.Response:
    return _json_response(openapi.index())


async def _openapi_document(request: web.Request) -> web.Response:
    group_version = openapi.group_version_of(request.match_info["path"])
    if group_version is None:
        raise status.path_not_found(request.path)
    body, digest = openapi.rendered(group_version)
    headers = {
        "Content-Type": JSON,
        "ETag": f'"{digest}"',
        # As kube-apiserver: a URL with the current hash never changes.
        "Cache-Control": "public, immutable" if request.query.get("hash") == digest else "no-cache",
    }
    return web.Response(body=body, headers=headers)


# --- resources ---------------------------------------------------------------------------


async def _resources(request: web.Request) -> web.StreamResponse:
    group = request.match_info.get("group")
    group_version = f"{group}/{request.match_info['version']}" if group else "v1"
    target = _parse_target(group_version, request.match_info["tail"])
    request[_RESOURCE] = target.resource.plural
    request[_GROUP] = target.resource.group
    method = request.method
    if target.name is None:
        if method == "GET":
            if target.watch_path or _flag(request, "watch"):
                return await _watch(request, target)
            return _list(request, target)
        if method == "POST" and target.namespace is not None and not target.watch_path:
            return await _create(request, target)
    elif not target.watch_path:
        if method == "GET":
            return _get(request, target)
        if method == "PUT":
            return await _update(request, target)
        if method == "PATCH":
            return await _patch(request, target)
        if method == "DELETE" and target.subresource is None:
            return await _delete(request, target)
    elif method == "GET":
        return await _watch(request, target)
    raise status.method_not_allowed(method)


def _render(request: web.Request, resource: Resource, obj: Any, code: int = 200) -> web.Response:
    doc = obj if isinstance(obj, dict) else to_manifest(obj)
    table_version = _wants_table(request)
    if table_version is not None:
        body = tables.table(
            resource.kind,
            [doc],
            request.app[_CLOCK](),
            resource_version=None,
            include_object=request.query.get("includeObject", "Metadata"),
            api_version=table_version,
        )
        return _json_response(body, code)
    return _json_response(doc, code)


def _selector(request: web.Request, target: Target) -> Selector:
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


def _get(request: web.Request, target: Target) -> web.Response:
    store = request.app[STORE]
    assert target.name is not None
    obj = store.get(target.resource.kind, target.namespace or "", target.name)
    if obj is None:
        raise status.not_found(target.resource.group_resource, target.name)
    return _render(request, target.resource, obj)


def _list(request: web.Request, target: Target) -> web.Response:
    store = request.app[STORE]
    selector = _selector(request, target)
    resource = target.resource
    # Read the version with the objects, in the same synchronous step.
    version = str(store.resource_version)
    docs = [to_manifest(o) for o in store.list(resource.kind, selector.namespace) if selector.matches(o)]
    table_version = _wants_table(request)
    if table_version is not None:
        body = tables.table(
            resource.kind,
            docs,
            request.app[_CLOCK](),
            resource_version=version,
            include_object=request.query.get("includeObject", "Metadata"),
            api_version=table_version,
        )
        return _json_response(body)
    return _json_response(
        {
            "kind": resource.list_kind,
            "apiVersion": resource.group_version,
            "metadata": {"resourceVersion": version},
            "items": docs,
        }
    )


async def _watch(request: web.Request, target: Target) -> web.StreamResponse:
    app = request.app
    store = app[STORE]
    selector = _selector(request, target)
    resource = target.resource
    raw_version = request.query.get("resourceVersion", "")
    send_initial = _flag(request, "sendInitialEvents")
    resource_version: int | None
    if raw_version in ("", "0") or send_initial:
        resource_version = None
    else:
        try:
            resource_version = int(raw_version)
        except ValueError:
            raise status.bad_request(f"resourceVersion: Invalid value: {raw_version!r}") from None
    try:
        timeout = min(float(request.query.get("timeoutSeconds", MAX_TIMEOUT)), MAX_TIMEOUT)
    except ValueError:
        raise status.bad_request("timeoutSeconds: must be a number") from None
    table_version = _wants_table(request)
    include = request.query.get("includeObject", "Metadata")
    clock = app[_CLOCK]
    first = [True]

    def encode(kind: str, obj: Any, rv: int) -> Any:
        doc = to_manifest(obj)
        if kind == "DELETED":
            # The deletion has its own version: resuming from it must not replay it.
            doc = {**doc, "metadata": {**doc.get("metadata", {}), "resourceVersion": str(rv)}}
        if table_version is None:
            return doc
        with_columns, first[0] = first[0], False
        return tables.table(
            resource.kind,
            [doc],
            clock(),
            resource_version=str(rv),
            include_object=include,
            api_version=table_version,
            with_columns=with_columns,
        )

    def bookmark(rv: int) -> Any:
        return {
            "kind": resource.kind,
            "apiVersion": resource.group_version,
            "metadata": {
                "resourceVersion": str(rv),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        }

    metrics = app[METRICS]
    return await serve_watch(
        request,
        store=store,
        selector=selector,
        resource_version=resource_version,
        duration=timeout,
        encode=encode,
        bookmark=bookmark if send_initial else None,
        watches=app[WATCHES],
        on_open=metrics.watch_opened,
        on_close=metrics.watch_closed,
        queue_size=app[_QUEUE_SIZE],
    )


def _check_kind(doc: Any, resource: Resource) -> dict[str, Any]:
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


def _decode(
    request: web.Request, resource: Resource, doc: Any, duplicates: list[str] = ()  # type: ignore[assignment]
) -> dict[str, Any]:
    """Field validation as `?fieldValidation=` asks: unknown or duplicate fields refused
    (Strict), reported in Warning headers (Warn, the default) or dropped (Ignore)."""
    doc = _check_kind(doc, resource)
    mode = _field_validation(request)
    decoded = schema.decode(doc, schema.BY_KIND[resource.kind])
    if decoded.wrong_types:
        raise status.bad_request(
            f"{resource.kind} in version \"{resource.group_version}\" cannot be handled as a "
            f"{resource.kind}: " + "; ".join(decoded.wrong_types)
        )
    problems = [f'unknown field "{path}"' for path in decoded.unknown]
    problems += [f'duplicate field "{key}"' for key in duplicates]
    if problems and mode == "Strict":
        raise status.bad_request("strict decoding error: " + ", ".join(problems))
    if problems and mode == "Warn":
        request.setdefault(_WARNINGS, []).extend(problems)
    request[_KIND] = resource.kind
    document: dict[str, Any] = decoded.document  # (the schema of a kind is an object's)
    request[_NAME] = document.get("metadata", {}).get("name", "")
    return document


async def _read_document(request: web.Request, resource: Resource) -> dict[str, Any]:
    media = _media_type(request)
    body = await _read(request)
    if media in ("", JSON):
        doc, duplicates = _loads_json(body)
    elif media in ("application/yaml", "application/x-yaml", "text/yaml"):
        doc, duplicates = _loads_yaml(body), []
    else:
        raise status.unsupported_media_type(media, BODY_TYPES)
    return _decode(request, resource, doc, duplicates)


def _place(doc: dict[str, Any], target: Target, *, creating: bool) -> dict[str, Any]:
    """Check the body's namespace and name against the URL; fill in what it leaves out."""
    metadata = doc["metadata"]
    if target.resource.namespaced:
        given = metadata.get("namespace")
        if given and given != target.namespace:
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        metadata["namespace"] = target.namespace
    else:
        metadata.pop("namespace", None)
    if target.name is not None:
        name = metadata.get("name")
        if name and name != target.name:
            raise status.bad_request(
                f"the name of the object ({name}) does not match the name on the URL ({target.name})"
            )
        metadata["name"] = target.name
    elif creating and not metadata.get("name") and metadata.get("generateName"):
        # generateName: the API server appends five random lower-case alphanumerics.
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        metadata["name"] = metadata["generateName"] + "".join(random.choices(alphabet, k=5))  # noqa: S311  (a name, not a secret)
    return doc


def _commit(request: web.Request, write: Callable[[Any], Any], *, dry_run: bool) -> Any:
    """Run `write(txn)` in one transaction and return what it returned (the object as
    stored, with its resource version); a dry run rolls the transaction back instead."""
    store = request.app[STORE]
    try:
        with store.transaction() as txn:
            result = write(txn)
            if dry_run:
                raise _DryRun(result)
    except _DryRun as done:
        return done.result
    return result


async def _create(request: web.Request, target: Target) -> web.Response:
    doc = _place(await _read_document(request, target.resource), target, creating=True)
    dry_run = _dry_run(request)
    result = _commit(request, lambda txn: txn.create(doc), dry_run=dry_run)
    return _render(request, target.resource, result, 201)


def _live(request: web.Request, target: Target) -> Any:
    assert target.name is not None
    obj = request.app[STORE].get(target.resource.kind, target.namespace or "", target.name)
    if obj is None:
        raise status.not_found(target.resource.group_resource, target.name)
    return obj


def _status_only(live: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A /status write: the live object with the new status (and the new resourceVersion
    precondition, if any); metadata, spec and the rest are not changed through /status."""
    result = {k: v for k, v in live.items() if k != "status"}
    if "status" in new:
        result["status"] = new["status"]
    metadata = dict(result.get("metadata", {}))
    new_version = new.get("metadata", {}).get("resourceVersion")
    if new_version:
        metadata["resourceVersion"] = new_version
    result["metadata"] = metadata
    return result


async def _update(request: web.Request, target: Target) -> web.Response:
    doc = _place(await _read_document(request, target.resource), target, creating=False)
    dry_run = _dry_run(request)
    live = to_manifest(_live(request, target))
    if target.subresource == "status":
        doc = _status_only(live, doc)
    elif "status" not in doc and "status" in live:
        doc["status"] = live["status"]
    result = _commit(request, lambda txn: txn.update(doc), dry_run=dry_run)
    return _render(request, target.resource, result)


async def _patch(request: web.Request, target: Target) -> web.Response:
    media = _media_type(request)
    if media not in PATCH_TYPES:
        raise status.unsupported_media_type(media, PATCH_TYPES)
    body = await _read(request)
    dry_run = _dry_run(request)
    resource = target.resource
    kind_schema = schema.BY_KIND[resource.kind]
    store = request.app[STORE]
    assert target.name is not None
    current = store.get(resource.kind, target.namespace or "", target.name)

    if media == APPLY_PATCH:
        return _apply(request, target, _loads_yaml(body), current, dry_run)
    if current is None:
        raise status.not_found(resource.group_resource, target.name)

    patch_doc, duplicates = _loads_json(body)
    live = to_manifest(current)
    try:
        if media == MERGE_PATCH:
            if not isinstance(patch_doc, dict):
                raise patch.BadPatch("a merge patch must be a JSON object")
            patched = patch.merge_patch(live, patch_doc)
        elif media == STRATEGIC_PATCH:
            patched = patch.strategic_merge_patch(live, patch_doc, kind_schema)
        else:
            patched = patch.json_patch(live, patch_doc)
    except patch.BadPatch as exc:
        raise status.bad_request(str(exc)) from None
    except patch.PatchError as exc:
        raise status.unprocessable(str(exc)) from None
    doc = _place(_decode(request, resource, patched, duplicates), target, creating=False)
    if target.subresource == "status":
        doc = _status_only(live, doc)
    # A patch applies to what was read: the same version, unless it names one itself.
    doc["metadata"].setdefault("resourceVersion", live["metadata"].get("resourceVersion"))
    result = _commit(request, lambda txn: txn.update(doc), dry_run=dry_run)
    return _render(request, resource, result)


def _apply(
    request: web.Request, target: Target, config: Any, current: Any, dry_run: bool
) -> web.Response:
    """Server-side apply, approximated: create the object, or merge the configuration into it."""
    resource = target.resource
    if not request.query.get("fieldManager"):
        raise status.invalid(
            "PatchOptions",
            "",
            [("fieldManager", "Required value: is required for apply patch")],
            group="meta.k8s.io",
            reason="FieldValueRequired",
        )
    if not isinstance(config, dict):
        raise status.bad_request("an apply patch must be a YAML or JSON object")
    for required in ("apiVersion", "kind"):
        if not config.get(required):
            raise status.bad_request(f"{required} must be set in an apply patch")
    config = _place(_decode(request, resource, config), target, creating=False)
    if target.subresource == "status" and current is None:
        raise status.not_found(resource.group_resource, target.name or "")
    if current is None:
        result = _commit(request, lambda txn: txn.create(config), dry_run=dry_run)
        code = 201
    else:
        live = to_manifest(current)
        # Without managedFields, what a manager owns is what it applied last. kubectl's
        # own manager ("kubectl") takes over what `kubectl apply` applied client-side
        # (csaupgrade) and keeps the last-applied annotation current, so for it that
        # annotation is the previous configuration; other managers only add and change.
        by_kubectl = request.query["fieldManager"] == KUBECTL_MANAGER
        previous = _last_applied(live) if by_kubectl else None
        merged = patch.apply_configuration(live, config, schema.BY_KIND[resource.kind], previous)
        if previous is not None:
            # As kube-apiserver's lastAppliedUpdater: an apply by "kubectl" keeps the
            # client-side annotation, where there is one, equal to what was applied.
            annotations = merged["metadata"].setdefault("annotations", {})
            annotations[LAST_APPLIED] = _configuration_text(config)
        if target.subresource == "status":
            merged = _status_only(live, merged)
        if not config["metadata"].get("resourceVersion"):
            merged["metadata"]["resourceVersion"] = live["metadata"].get("resourceVersion")
        result = _commit(request, lambda txn: txn.update(merged), dry_run=dry_run)
        code = 200
    return _render(request, resource, result, code)


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KUBECTL_MANAGER = "kubectl"


def _last_applied(live: dict[str, Any]) -> dict[str, Any] | None:
    """The configuration kubectl last applied (client-side, or server-side: kubectl keeps
    the annotation current in both), or None."""
    text = (live.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        previous = json.loads(text)
    except ValueError:
        return None
    return previous if isinstance(previous, dict) else None


def _configuration_text(config: dict[str, Any]) -> str:
    applied = json.loads(json.dumps(config))
    metadata = applied.get("metadata", {})
    annotations = metadata.get("annotations") or {}
    annotations.pop(LAST_APPLIED, None)
    if not annotations:
        metadata.pop("annotations", None)
    return json.dumps(applied, separators=(",", ":"), sort_keys=True) + "\n"


async def _delete(request: web.Request, target: Target) -> web.Response:
    body = await _read(request)
    options: dict[str, Any] = {}
    if body.strip():
        options, _ = _loads_json(body)
        if not isinstance(options, dict):
            raise status.bad_request("the body of a DELETE must be DeleteOptions")
    dry_run = _dry_run(request, options)
    live = _live(request, target)
    preconditions = options.get("preconditions") or {}
    assert target.name is not None
    if preconditions.get("uid") and preconditions["uid"] != live.meta.uid:
        raise status.conflict(
            target.resource.group_resource,
            target.name,
            f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: {live.meta.uid}",
        )
    wanted_version = preconditions.get("resourceVersion")
    if wanted_version and wanted_version != str(live.meta.resource_version):
        raise status.conflict(
            target.resource.group_resource,
            target.name,
            f"Precondition failed: ResourceVersion in precondition: {wanted_version}, "
            f"ResourceVersion in object meta: {live.meta.resource_version}",
        )
    _commit(
        request,
        lambda txn: txn.delete(target.resource.kind, target.namespace or "", target.name),
        dry_run=dry_run,
    )
    return _render(request, target.resource, live)
