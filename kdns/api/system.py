"""Health, metrics and discovery: `/healthz`, `/livez`, `/readyz`, `/metrics`, `/version`,
`/api`, `/apis` (plain and aggregated discovery), `/openapi/v2` and `/openapi/v3`."""

from __future__ import annotations

import json

from aiohttp import web

from kdns.api import discovery, openapi, openapi_v2, status
from kdns.api.context import METRICS, READY
from kdns.api.encoding import JSON, json_response, media_types
from kdns.api.resources import GROUP_VERSIONS, in_group_version


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    if request.app[READY]():
        return web.Response(text="ok")
    return web.Response(text="not ready", status=503)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def version(request: web.Request) -> web.Response:
    return json_response(discovery.version())


def _aggregated_version(request: web.Request) -> str | None:
    """`v2` / `v2beta1` when the client accepts aggregated discovery, before plain JSON."""
    for media, params in media_types(request.headers.get("Accept", "")):
        if media == JSON and params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") in discovery.AGGREGATED:
                return params["v"]
        elif media in (JSON, "*/*", "application/*"):
            return None
    return None


def _aggregated_response(core: bool, version: str) -> web.Response:
    body = json.dumps(discovery.aggregated(core, version), separators=(",", ":")).encode()
    return web.Response(body=body, headers={"Content-Type": discovery.AGGREGATED[version]})


async def api(request: web.Request) -> web.Response:
    version = _aggregated_version(request)
    if version is not None:
        return _aggregated_response(True, version)
    return json_response(discovery.api_versions(request.host))


async def apis(request: web.Request) -> web.Response:
    version = _aggregated_version(request)
    if version is not None:
        return _aggregated_response(False, version)
    return json_response(discovery.api_group_list())


async def api_group(request: web.Request) -> web.Response:
    group = request.match_info["group"]
    if not any(gv.startswith(group + "/") for gv in GROUP_VERSIONS):
        raise status.path_not_found(request.path)
    return json_response(discovery.api_group(group))


async def resource_list(request: web.Request) -> web.Response:
    group = request.match_info.get("group")
    group_version = f"{group}/{request.match_info['version']}" if group else "v1"
    if group_version not in GROUP_VERSIONS or not in_group_version(group_version):
        raise status.path_not_found(request.path)
    return json_response(discovery.resource_list(group_version))


async def openapi_index(request: web.Request) -> web.Response:
    return json_response(openapi.index())


async def openapi_document(request: web.Request) -> web.Response:
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


def _wants_protobuf(request: web.Request) -> bool:
    """The client's first choice among the v2 document's encodings is protobuf (kubectl's)."""
    for media, _ in media_types(request.headers.get("Accept", "")):
        if media in openapi_v2.PROTOBUF_MEDIA_TYPES:
            return True
        if media in (JSON, "*/*", "application/*"):
            return False
    return False


async def openapi_v2_document(request: web.Request) -> web.Response:
    protobuf = _wants_protobuf(request)
    body, digest = openapi_v2.rendered(protobuf)
    headers = {
        "Content-Type": openapi_v2.PROTOBUF if protobuf else JSON,
        "ETag": f'"{digest}"',
        "Vary": "Accept",
    }
    return web.Response(body=body, headers=headers)
