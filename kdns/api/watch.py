"""Watch streams: a store listener feeding a bounded queue, drained onto an HTTP response.

The protocol is kube-apiserver's: newline-terminated JSON `{"type": ..., "object": ...}`,
ADDED / MODIFIED / DELETED, and ERROR carrying a Status (410 Expired when the asked-for
version is older than the store's event log, or when this watcher fell behind and its
queue overflowed: the client must list again). A change that moves an object into or
out of the selector is sent as ADDED or DELETED, as the API server's watch cache does.

Subscribing and reading the backlog happen in one synchronous step, with no `await`
between, so no event is missed or sent twice. `watch` is the handler of a watch request
(`?watch=true`, the `/watch/` prefix): it reads the query and streams with `serve_watch`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiohttp import web

from kdns.api import paging, status, tables
from kdns.api.context import (
    BOOKMARK_PERIOD,
    CLOCK,
    METRICS,
    STORE,
    WATCH_QUEUE_SIZE,
    WATCHES,
)
from kdns.api.encoding import wants_table
from kdns.api.selectors import Selector
from kdns.api.targets import Target, selector_of
from kdns.registry.errors import Expired
from kdns.registry.manifests import to_manifest
from kdns.registry.objects import ADDED, DELETED, MODIFIED, Event

ERROR = "ERROR"
BOOKMARK = "BOOKMARK"
QUEUE_SIZE = 1000
# kube-apiserver ends a watch after --min-request-timeout (1800 s) times a random factor;
# kdns ends it after this unless the client asks for less with timeoutSeconds.
MAX_TIMEOUT = 1800.0
# A watcher that allows bookmarks gets one after this long without a change, as from the
# API server's watch cache (once a minute): the version it can resume from moves on even
# when nothing it selects changes, so the event log does not leave it behind.
BOOKMARK_INTERVAL = 60.0

Change = tuple[str, Any, int]  # type, object, resource version of the change
Encode = Callable[[str, Any, int], Any]
# The BOOKMARK object at a version; True: the one that ends the initial events.
Bookmark = Callable[[int, bool], Any]


class Watch:
    """One watcher: a store listener that queues the changes its selector wants.

    It runs inside the store's commit, so it only does `put_nowait`. When the queue is
    full the watcher is marked as overflowed and gets nothing more; its stream then ends
    with 410.
    """

    def __init__(self, selector: Selector, queue_size: int = QUEUE_SIZE) -> None:
        self.selector = selector
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue(queue_size)
        self.overflowed = False
        self.closed = False

    def translate(self, event: Event) -> Change | None:
        """The change this watcher sees for one store event, or None."""
        matches = self.selector.matches
        if event.type == DELETED:
            return (DELETED, event.object, event.resource_version) if matches(event.object) else None
        now = matches(event.object)
        before = event.old is not None and matches(event.old)
        if now and before:
            return (MODIFIED, event.object, event.resource_version)
        if now:
            return (ADDED, event.object, event.resource_version)
        if before:
            return (DELETED, event.old, event.resource_version)
        return None

    def __call__(self, events: Sequence[Event]) -> None:
        if self.overflowed or self.closed:
            return
        for event in events:
            change = self.translate(event)
            if change is None:
                continue
            try:
                self.queue.put_nowait(change)
            except asyncio.QueueFull:
                self.overflowed = True
                return

    def close(self) -> None:
        """End the stream (server shutdown): queued changes are dropped."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


def _line(kind: str, obj: Any) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _expired_line(message: str) -> bytes:
    return _line(ERROR, status.gone(message).status())


async def serve_watch(
    request: web.Request,
    *,
    store: Any,
    selector: Selector,
    resource_version: int | None,
    duration: float,
    encode: Encode,
    bookmark: Bookmark | None = None,
    initial_events_end: bool = False,
    bookmark_interval: float = BOOKMARK_INTERVAL,
    watches: set[Watch],
    on_open: Callable[[], None] = lambda: None,
    on_close: Callable[[], None] = lambda: None,
    queue_size: int = QUEUE_SIZE,
) -> web.StreamResponse:
    """Stream changes from `resource_version` on (None: the current objects as ADDED first)
    for `duration` seconds (timeoutSeconds), then end the response as the API server does.

    `bookmark`, when given (allowWatchBookmarks), makes a BOOKMARK after every
    `bookmark_interval` seconds without a change, and, with `initial_events_end`
    (sendInitialEvents), one right after the initial ADDED events.
    """
    watch = Watch(selector, queue_size)
    backlog: Iterable[Change] = ()
    expired: str | None = None
    # One synchronous step: subscribe, then read what happened before (no await between).
    unsubscribe = store.subscribe(watch)
    current = store.resource_version
    try:
        if resource_version is None:
            objs = store.list(selector.kind, selector.namespace)
            backlog = [(ADDED, o, o.meta.resource_version) for o in objs if selector.matches(o)]
        else:
            changes = (watch.translate(e) for e in store.events_since(resource_version))
            backlog = [c for c in changes if c is not None]
    except Expired as exc:
        expired = str(exc)

    watches.add(watch)
    on_open()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    try:
        await response.prepare(request)
        if expired is not None:
            await response.write(_expired_line(expired))
            return response
        lines = [_line(kind, encode(kind, obj, rv)) for kind, obj, rv in backlog]
        if bookmark is not None and initial_events_end:
            lines.append(_line(BOOKMARK, bookmark(current, True)))
        if lines:
            await response.write(b"".join(lines))
        try:
            async with asyncio.timeout(duration):
                await _pump(watch, response, encode, bookmark, bookmark_interval, lambda: store.resource_version)
        except TimeoutError:
            pass
        return response
    except (ConnectionResetError, ConnectionError):
        # The client went away; nothing to tell it.
        return response
    finally:
        unsubscribe()
        watches.discard(watch)
        on_close()


async def _pump(
    watch: Watch,
    response: web.StreamResponse,
    encode: Encode,
    bookmark: Bookmark | None,
    interval: float,
    version: Callable[[], int],
) -> None:
    while True:
        try:
            async with asyncio.timeout(interval if bookmark is not None else None):
                change = await watch.queue.get()
        except TimeoutError:
            # Nothing queued: every change up to the store's version has been sent.
            assert bookmark is not None
            await response.write(_line(BOOKMARK, bookmark(version(), False)))
            continue
        if change is None:
            return
        batch = [change]
        # Whatever else is already queued goes out in the same write.
        while not watch.queue.empty():
            more = watch.queue.get_nowait()
            if more is None:
                watch.queue.put_nowait(None)
                break
            batch.append(more)
        if watch.overflowed:
            await response.write(
                _expired_line("the watcher fell behind and its queue overflowed; list again")
            )
            return
        await response.write(b"".join(_line(k, encode(k, o, rv)) for k, o, rv in batch))


async def watch(request: web.Request, target: Target) -> web.StreamResponse:
    app = request.app
    store = app[STORE]
    selector = selector_of(request, target)
    resource = target.resource
    options = paging.watch_options(request.query, store.resource_version)
    try:
        timeout = min(float(request.query.get("timeoutSeconds", MAX_TIMEOUT)), MAX_TIMEOUT)
    except ValueError:
        raise status.bad_request("timeoutSeconds: must be a number") from None
    table_version = wants_table(request)
    include = request.query.get("includeObject", "Metadata")
    clock = app[CLOCK]
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

    def bookmark(rv: int, initial_events_end: bool) -> Any:
        # As the API server's: an empty object of the kind, only its version set.
        metadata: dict[str, Any] = {"resourceVersion": str(rv), "creationTimestamp": None}
        if initial_events_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": resource.kind, "apiVersion": resource.group_version, "metadata": metadata}

    metrics = app[METRICS]
    return await serve_watch(
        request,
        store=store,
        selector=selector,
        resource_version=options.resource_version,
        duration=timeout,
        encode=encode,
        bookmark=bookmark if options.bookmarks else None,
        initial_events_end=options.initial_events_end,
        bookmark_interval=app[BOOKMARK_PERIOD],
        watches=app[WATCHES],
        on_open=metrics.watch_opened,
        on_close=metrics.watch_closed,
        queue_size=app[WATCH_QUEUE_SIZE],
    )
