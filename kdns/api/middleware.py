"""The API's middleware: every failure a Kubernetes Status, the bearer token, and a
write's reply held until its commit is on disk."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kdns.api import status
from kdns.api.context import (
    DURABLE,
    GROUP,
    KIND,
    METRICS,
    NAME,
    RESOURCE,
    STORE,
    TOKEN,
    UNAUTHENTICATED,
    VERBS,
    WARNINGS,
    WRITE_METHODS,
)
from kdns.api.encoding import status_response
from kdns.api.status import ApiError
from kdns.registry import errors as registry_errors
from kdns.registry.backend import Unavailable

log = logging.getLogger("kdns.api")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a Status; writes are counted with their final code."""
    try:
        response = await handler(request)
    except ApiError as exc:
        response = status_response(exc)
    except registry_errors.RegistryError as exc:
        response = status_response(from_registry(exc, request))
    except web.HTTPException as exc:
        if exc.status == 404:
            response = status_response(status.path_not_found(request.path))
        elif exc.status == 405:
            response = status_response(status.method_not_allowed(request.method))
        elif exc.status == 413:
            response = status_response(status.too_large())
        elif exc.status >= 400:
            response = status_response(ApiError(exc.status, exc.reason, exc.text or exc.reason))
        else:
            raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path_qs)
        response = status_response(status.internal("see the server log"))
    resource = request.get(RESOURCE)
    if resource is not None and request.method in WRITE_METHODS:
        request.app[METRICS].observe_write(VERBS[request.method], resource, response.status)
    warnings = request.get(WARNINGS)
    if warnings:
        # (Each once: a write made again after a conflict decodes its body again.)
        for warning in dict.fromkeys(warnings):
            if not response.prepared:
                response.headers.add("Warning", f'299 - "{_escape(warning)}"')
    return response


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[TOKEN]
    if token is not None and request.path not in UNAUTHENTICATED:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), str(token).encode()
        ):
            raise status.unauthorized()
    return await handler(request)


@web.middleware
async def durable_writes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A write's reply waits until the commit it made is on disk: a 2xx means saved. The
    store's version covers that commit (and any made since, saved in order with it).

    A write first gives the event loop a turn (`yield_to_dns`): reading the request was
    one slice of the loop's time, and the handler's decoding the next (then its commit,
    kdns/api/crud.py); DNS datagrams that came in meanwhile are answered in between."""
    writing = request.method in WRITE_METHODS
    if writing:
        await yield_to_dns()
    response = await handler(request)
    durable = request.app[DURABLE]
    if durable is not None and writing and response.status < 400:
        await durable(request.app[STORE].resource_version)
    return response


async def yield_to_dns() -> None:
    """Let the event loop run once: it polls its sockets, and the UDP server answers the
    datagrams waiting (up to a batch) before this coroutine goes on. For the API's long
    synchronous steps (a write is about a millisecond of the loop), at points where
    nothing has been read yet, everything is committed already, or what was read is
    checked again by the commit (kdns/api/crud.py's `_commit_from_current`), so that
    nothing another request does in between can change what this one answers."""
    await asyncio.sleep(0)


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


def from_registry(exc: registry_errors.RegistryError, request: web.Request) -> ApiError:
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
        group = request.get(GROUP)
        if group:
            details["group"] = group
        return ApiError(422, "Invalid", message, details)
    if isinstance(exc, registry_errors.Expired):
        return status.gone(message)
    if isinstance(exc, Unavailable):
        return status.unavailable(message)
    if isinstance(exc, registry_errors.ManifestError):
        kind, name = request.get(KIND, ""), request.get(NAME, "")
        field, _, detail = exc.detail.partition(": ")
        if not detail or " " in field:
            field, detail = "", exc.detail
        cause = {"reason": _cause_reason(detail), "message": detail, "field": field}
        head = f'{kind} "{name}" is invalid: ' if kind else ""
        return ApiError(422, "Invalid", head + exc.detail, {"name": name, "kind": kind, "causes": [cause]})
    return ApiError(400, "BadRequest", message)
