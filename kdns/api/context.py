"""What the API's handlers share: typed application and request keys, and the write methods.

`build_app` (kdns/api/http.py) sets the application keys once; a handler reads them with
`request.app[KEY]`, typed. The request keys say what a resource request is about, for the
error and metrics middleware (kdns/api/middleware.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from kdns.metrics import Metrics
from kdns.registry.backend import Backend
from kdns.registry.events import EventLog
from kdns.registry.store import Store

if TYPE_CHECKING:
    from kdns.api.watch import Watch


STORE = web.AppKey("store", Store)
BACKEND: web.AppKey[Backend] = web.AppKey("backend")  # where writes are committed
METRICS = web.AppKey("metrics", Metrics)
WATCHES: web.AppKey[set[Watch]] = web.AppKey("watches")
TOKEN: web.AppKey[str | None] = web.AppKey("token")
READY: web.AppKey[Callable[[], bool]] = web.AppKey("ready")
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
WATCH_QUEUE_SIZE = web.AppKey("watch_queue_size", int)
DURABLE: web.AppKey[Callable[[int], Awaitable[None]] | None] = web.AppKey("durable")
BOOKMARK_PERIOD: web.AppKey[float] = web.AppKey("bookmark_period")  # watch.BOOKMARK_INTERVAL
EVENTS = web.AppKey("events", EventLog)
# What a resource request is about, for the error and metrics middleware.
RESOURCE = web.RequestKey("resource", str)
GROUP = web.RequestKey("group", str)
KIND = web.RequestKey("kind", str)
NAME = web.RequestKey("name", str)
WARNINGS = web.RequestKey("warnings", list)
UNAUTHENTICATED = frozenset({"/healthz", "/livez", "/readyz"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
