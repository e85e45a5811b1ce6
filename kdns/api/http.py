"""The registry's HTTP API: Kubernetes-shaped REST that kubectl and client libraries speak.

`build_app(backend, metrics=..., ready=...)` returns the aiohttp application; `start_api`
binds it. Routes:

* `/api/v1/...`, `/apis/discovery.k8s.io/v1/...`: namespaces, services (+status),
  pods (+status), nodes, endpointslices: GET, LIST (label and field selectors, paged:
  `paging`), WATCH, POST, PUT, PATCH (merge, strategic merge, JSON patch, server-side
  apply with field ownership: `ownership`) and DELETE, in JSON, YAML or protobuf
  (`protobuf`); endpoints, events and node leases, made when read: GET and LIST;
* discovery (`/version`, `/api`, `/apis`, ...), `/openapi/v2` and `/openapi/v3`;
* `/healthz`, `/livez`, `/readyz` (never need a token) and `/metrics`;
* `/debug/explain?name=&type=[&client=]`: why DNS answers a name what it answers
  (`debug`), behind the token like everything else.

Every refusal is a Kubernetes `Status` (see `status.py`), and a refused request changes
nothing: a write runs in one store transaction, which rolls back on any error.

This module is the routing; each concern has its module beside it: `context` (typed
keys), `encoding` (requests and responses), `targets` (what a URL names), `crud` (the
resource handlers), `watch` (watch streams), `tables` (kubectl's Table), `system`
(health, metrics, discovery), `debug` (explain), `middleware` (errors, the token,
durable writes), `rounds` (the listening socket: new connections in rounds while DNS is
busy).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from kdns.api import crud, debug, status, system
from kdns.api.context import (
    BACKEND,
    BOOKMARK_PERIOD,
    CLOCK,
    DURABLE,
    EVENTS,
    EXPLAIN,
    GROUP,
    METRICS,
    READY,
    RESOURCE,
    STORE,
    TOKEN,
    WATCH_QUEUE_SIZE,
    WATCHES,
    Explainer,
)
from kdns.api.encoding import flag
from kdns.api.middleware import authenticate, durable_writes, errors
from kdns.api.rounds import RoundSite
from kdns.api.status import MAX_BODY
from kdns.api.targets import parse_target
from kdns.api.watch import BOOKMARK_INTERVAL, QUEUE_SIZE, watch
from kdns.metrics import Metrics
from kdns.registry.backend import Backend
from kdns.registry.events import EventLog

__all__ = ["METRICS", "STORE", "Explainer", "build_app", "start_api"]


def build_app(
    backend: Backend,
    *,
    metrics: Metrics,
    token: str | None = None,
    ready: Callable[[], bool],
    clock: Callable[[], float] = time.time,
    watch_queue_size: int = QUEUE_SIZE,
    durable: Callable[[int], Awaitable[None]] | None = None,
    bookmark_interval: float = BOOKMARK_INTERVAL,
    events: EventLog | None = None,
    explain: Explainer | None = None,
) -> web.Application:
    """The API as an aiohttp application: reads from `backend.store`, writes through
    `backend`; `token` set means every request but the health checks needs
    `Authorization: Bearer <token>`. `clock` dates AGE columns;
    `watch_queue_size` bounds the changes a watcher may fall behind by; `durable(version)`
    returns once the store's commits up to `version` are on disk (kdns/journal.py), and
    a write is answered only then; `bookmark_interval` is how long a quiet watch waits for
    its next BOOKMARK; `events` are the Events `/api/v1/events` lists (the prober's);
    `explain` serves `/debug/explain` (404 without it)."""
    app = web.Application(middlewares=[errors, authenticate, durable_writes], client_max_size=MAX_BODY)
    app[STORE] = backend.store
    app[BACKEND] = backend
    app[METRICS] = metrics
    app[WATCHES] = set()
    app[TOKEN] = token
    app[READY] = ready
    app[CLOCK] = clock
    app[WATCH_QUEUE_SIZE] = watch_queue_size
    app[DURABLE] = durable
    app[BOOKMARK_PERIOD] = bookmark_interval
    app[EVENTS] = events if events is not None else EventLog()
    app[EXPLAIN] = explain
    add = app.router.add_route
    add("GET", "/healthz", system.healthz)
    add("GET", "/livez", system.healthz)
    add("GET", "/readyz", system.readyz)
    add("GET", "/metrics", system.metrics)
    if explain is not None:
        add("GET", "/debug/explain", debug.explain)
    add("GET", "/version", system.version)
    add("GET", "/api", system.api)
    add("GET", "/api/v1", system.resource_list)
    add("GET", "/apis", system.apis)
    add("GET", "/apis/{group}", system.api_group)
    add("GET", "/apis/{group}/{version}", system.resource_list)
    add("GET", "/openapi/v2", system.openapi_v2_document)
    add("GET", "/openapi/v3", system.openapi_index)
    add("GET", "/openapi/v3/{path:.+}", system.openapi_document)
    add("*", "/api/v1/{tail:.+}", _resources)
    add("*", "/apis/{group}/{version}/{tail:.+}", _resources)
    app.on_shutdown.append(_close_watches)
    return app


async def start_api(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    accept_round: float = 0.0,
    busy: Callable[[], bool] = lambda: False,
) -> tuple[web.AppRunner, int]:
    """Serve `app` on host (an IP address) and port (0 picks a free port); returns the
    runner and the bound port. While `busy()` (kdns.api.rounds.LoopLoad: DNS keeps the
    event loop busy), new connections are accepted in rounds of `accept_round` seconds
    (0: always as they come; kdns.api.rounds says why). Stop with `await
    runner.cleanup()`: open watches end first, then connections close."""
    # handler_cancellation: a watch whose client went away must stop waiting for events.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = RoundSite(runner, host, port, round_s=accept_round, busy=busy, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


async def _close_watches(app: web.Application) -> None:
    watches = app[WATCHES]
    for stream in list(watches):  # a closed watch leaves the set as its handler returns
        stream.close()


async def _resources(request: web.Request) -> web.StreamResponse:
    group = request.match_info.get("group")
    group_version = f"{group}/{request.match_info['version']}" if group else "v1"
    target = parse_target(group_version, request.match_info["tail"])
    request[RESOURCE] = target.resource.plural
    request[GROUP] = target.resource.group
    method = request.method
    if target.resource.derived:
        return crud.derived(request, target)
    if target.subresource is not None and target.subresource not in target.resource.subresources:
        return crud.unserved(request, target)
    if target.name is None:
        if method == "GET":
            if target.watch_path or flag(request, "watch"):
                return await watch(request, target)
            return crud.list_objects(request, target)
        if method == "POST" and target.namespace is not None and not target.watch_path:
            return await crud.create(request, target)
    elif not target.watch_path:
        if method == "GET":
            return crud.get(request, target)
        if method == "PUT":
            return await crud.update(request, target)
        if method == "PATCH":
            return await crud.patch_object(request, target)
        if method == "DELETE" and target.subresource is None:
            return await crud.delete(request, target)
    elif method == "GET":
        return await watch(request, target)
    raise status.method_not_allowed(method)
