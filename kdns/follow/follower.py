"""`kdns serve --follow KUBECONFIG`: DNS for a cluster kdns does not own.

Start order (stop is the reverse):
1. read the kubeconfig (a bad one stops start-up: exit 2);
2. list every followed kind, in pages (`PAGE_SIZE`, as client-go's reflector), until all
   are complete, retrying while the API cannot be reached (401 / 403 stop start-up),
   and build the ClusterIndex from the lists at once; nothing is bound before, so the
   follower never answers from half a cluster;
3. read the static zones, open the Router (and the Forwarder), bind UDP and TCP;
4. serve health checks and /metrics on the API port (the follower's registry API is
   off: the followed cluster's API is where objects are read and written);
5. one reflector per kind: a watch from its list's version, with bookmarks. A watch that
   ends or breaks is resumed from the last version seen (a change's or a bookmark's);
   410 (the API's log no longer reaches back that far: compaction, a restarted API)
   means a new paged list, built aside while the previous one goes on answering and
   then swapped in in one step (`Mirror.replace`).

The follower runs no controller, allocator, prober or proxy: objects are served as the
followed API sends them. What is followed: Namespaces (a Service is served only while
its Namespace exists), Services, EndpointSlices, Pods (verified pod names) and Nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from dataclasses import dataclass
from typing import Self

import aiohttp
from aiohttp import web
from prometheus_client import Counter

from kdns.api import status
from kdns.api.http import start_api
from kdns.app import BindError, DnsServers, Reloader, load_static, serve_dns
from kdns.authority.index import ClusterIndex
from kdns.config import Settings
from kdns.errors import KdnsError
from kdns.follow import kubeconfig
from kdns.follow.client import ApiStatus, Client, Gone
from kdns.follow.mirror import Mirror, read_object
from kdns.hostport import join_host_port
from kdns.metrics import Metrics
from kdns.pipeline.chain import Router
from kdns.registry.objects import (
    ENDPOINT_SLICE,
    NAMESPACE,
    NAMESPACED_KINDS,
    NODE,
    POD,
    SERVICE,
    KubeObject,
)

__all__ = ["FOLLOWED", "FollowError", "Follower", "serve"]

log = logging.getLogger("kdns.follow")

PAGE_SIZE = 500
# A list whose continue token expires this many times in a row is read in one piece.
LIST_ATTEMPTS = 3
# Reconnecting: the first retry after MIN_DELAY, doubling up to MAX_DELAY (a DNS
# replica wants to be back soon after its API is).
MIN_DELAY = 0.2
MAX_DELAY = 2.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Followed:
    kind: str
    path: str  # the list and watch path, every namespace


FOLLOWED = (
    Followed(NAMESPACE, "/api/v1/namespaces"),
    Followed(SERVICE, "/api/v1/services"),
    Followed(ENDPOINT_SLICE, "/apis/discovery.k8s.io/v1/endpointslices"),
    Followed(POD, "/api/v1/pods"),
    Followed(NODE, "/api/v1/nodes"),
)

# Network trouble with the followed API: wait and try again.
_TRANSIENT = (aiohttp.ClientError, OSError, TimeoutError, ApiStatus)


class FollowError(KdnsError):
    """The followed API refuses the follower (its credentials, its permissions)."""


class _Backoff:
    def __init__(self) -> None:
        self.delay = MIN_DELAY

    async def wait(self) -> None:
        # Jitter, so that followers of one API do not all come back at once (not a secret).
        await asyncio.sleep(self.delay * random.uniform(0.8, 1.2))  # noqa: S311
        self.delay = min(self.delay * 2, MAX_DELAY)

    def reset(self) -> None:
        self.delay = MIN_DELAY


def _why(exc: BaseException) -> str:
    """What went wrong, for a log line (some exceptions have no message)."""
    return str(exc) or type(exc).__name__


def _version(text: str, what: str) -> int:
    if not text.isdigit():
        raise ApiStatus(200, "BadResponse", f"{what} has resourceVersion {text!r}, not a decimal number")
    return int(text)


class Follower:
    """`async with Follower(settings) as follower:` serves DNS for `settings.follow`'s cluster.

    `.index`, `.router`, `.dns_address`, `.dns_port`, `.api_port` and `.api_url` are
    there once the block is entered; `.metrics` from the start.
    """

    def __init__(self, settings: Settings) -> None:
        assert settings.follow is not None
        self.settings = settings
        self.metrics = Metrics()
        self.relists = Counter(
            "kdns_follow_relists", "Lists of a followed kind made and swapped in after its watch was told 410 (Gone).",
            ("kind",), registry=self.metrics.registry,
        )
        self.reconnects = Counter(
            "kdns_follow_watch_failures", "Watches of the followed API that broke and were resumed.",
            ("kind",), registry=self.metrics.registry,
        )
        self.index: ClusterIndex | None = None
        self.zones: Reloader | None = None
        self.router: Router | None = None
        self.dns_address = settings.dns_address
        self.dns_port = settings.dns_port
        self.api_port = settings.api_port
        self.api_url = ""
        self._mirror: Mirror | None = None
        self._client: Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        settings = self.settings
        assert settings.follow is not None
        access = kubeconfig.load(settings.follow, settings.follow_context)
        static = load_static(settings)
        async with contextlib.AsyncExitStack() as stack:
            client = self._client = await stack.enter_async_context(Client(access))
            log.info("following %s (context %s)", access.server, access.context)
            lists, versions = await self._first_lists(client)
            index = self.index = ClusterIndex(settings)
            mirror = self._mirror = Mirror(index, self.metrics, (f.kind for f in FOLLOWED))
            mirror.load(lists, max(versions.values()))
            dns: DnsServers = await stack.enter_async_context(
                serve_dns(settings, index, static, self.metrics, reuse_port=False)
            )
            self.router, self.dns_port = dns.router, dns.udp.port
            self.zones = Reloader(dns.router, settings.zones_dir, None)
            stack.push_async_callback(self.zones.aclose)
            await self._serve_health(stack, access.server)
            tasks = [
                asyncio.get_running_loop().create_task(self._reflect(followed, versions[followed.kind]),
                                                       name=f"kdns follow {followed.kind}")
                for followed in FOLLOWED
            ]
            stack.push_async_callback(_cancel, tasks)
            stack.push_async_callback(client.aclose)  # before the cancel: see Client.aclose
            self._stack = stack.pop_all()
        log.info("serving DNS on %s (udp, tcp)", join_host_port(self.dns_address, self.dns_port))
        log.info(
            "followed cluster at resource version %s: %s", index.serial,
            ", ".join(f"{mirror.count(f.kind)} {f.kind}" for f in FOLLOWED),
        )
        log.info("the API serves health checks and metrics only (--follow); serving the API on %s", self.api_url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await stack.aclose()
        except TimeoutError:
            log.error("stopping took longer than %s s", STOP_TIMEOUT)

    # --- listing ---------------------------------------------------------------------

    async def _first_lists(self, client: Client) -> tuple[dict[str, list[KubeObject]], dict[str, int]]:
        """Every followed kind, listed completely; retried while the API is unreachable."""
        backoff = _Backoff()
        while True:
            try:
                lists, versions = {}, {}
                for followed in FOLLOWED:
                    lists[followed.kind], versions[followed.kind] = await self._list(client, followed)
                return lists, versions
            except ApiStatus as exc:
                if exc.code in (401, 403):
                    raise FollowError(f"the API at {client.access.server} refuses us: {exc}") from None
                log.warning("cannot list the followed cluster yet: %s; trying again", exc)
            except aiohttp.ClientConnectorCertificateError as exc:
                # Waiting will not make the certificate trusted: say so at once.
                raise FollowError(
                    f"cannot verify the certificate of {client.access.server}: {exc.certificate_error}"
                ) from None
            except _TRANSIENT as exc:
                log.warning("cannot reach the followed API at %s yet: %s; trying again", client.access.server, _why(exc))
            await backoff.wait()

    async def _list(self, client: Client, followed: Followed) -> tuple[list[KubeObject], int]:
        """A complete list of one kind, in pages of one snapshot; (objects, its version).
        Gone between pages starts the list again; the last attempt reads it in one piece."""
        for attempt in range(LIST_ATTEMPTS):
            limit = PAGE_SIZE if attempt < LIST_ATTEMPTS - 1 else None
            objects: list[KubeObject] = []
            token: str | None = None
            version = ""
            try:
                while True:
                    page = await client.list(followed.path, limit, token)
                    version = version or page.resource_version
                    for doc in page.items:
                        obj = read_object(followed.kind, doc)
                        if obj is not None:
                            objects.append(obj)
                    token = page.continue_token
                    if token is None:
                        return objects, _version(version, f"the list of {followed.path}")
            except Gone:
                log.info("the list of %s expired between two pages; listing it again", followed.path)
        raise AssertionError("unreachable: the last attempt is not paged")

    # --- following -------------------------------------------------------------------

    async def _reflect(self, followed: Followed, version: int) -> None:
        """Watch one kind for ever: resume on a broken watch, list again on 410."""
        assert self._client is not None and self._mirror is not None
        client, mirror, kind = self._client, self._mirror, followed.kind
        backoff = _Backoff()
        broken = False
        loop = asyncio.get_running_loop()
        while True:
            started, events = loop.time(), 0
            try:
                log.debug("watching %s from resource version %s", followed.path, version)
                async for change, doc in client.watch(followed.path, str(version)):
                    events += 1
                    if broken:
                        log.info("watching %s again from resource version %s", followed.path, version)
                        broken = False
                    backoff.reset()
                    version = self._apply(followed, change, doc)
                # The API ended the watch (its timeout): resume at once, unless it ends
                # them as soon as they start, which is trouble like any other.
                if events or loop.time() - started > MAX_DELAY:
                    continue
                raise ConnectionError("the watch ended as soon as it started")
            except Gone as exc:
                log.info("%s: %s; listing it again (the previous list answers until then)", followed.path, exc)
                objects, version = await self._relist(client, followed)
                changed = mirror.replace(kind, objects, version)
                self.relists.labels(kind).inc()
                log.info("listed %s again at resource version %s: %d objects, %d changed", followed.path, version,
                         len(objects), changed)
            except asyncio.CancelledError:
                raise
            except _TRANSIENT as exc:
                if client.closed:
                    return  # kdns is stopping: the connections were closed on purpose
                self.reconnects.labels(kind).inc()
                if not broken:
                    log.warning("the watch of %s broke (%s); resuming from resource version %s",
                                followed.path, _why(exc), version)
                else:
                    log.debug("watching %s: %s", followed.path, _why(exc))
                broken = True
                await backoff.wait()
            except Exception:  # a bug here must not stop following for good
                log.exception("following %s failed; listing it again", followed.path)
                await backoff.wait()
                objects, version = await self._relist(client, followed)
                mirror.replace(kind, objects, version)

    def _apply(self, followed: Followed, change: str, doc: object) -> int:
        """One watch event into the mirror; the version to resume from after it."""
        assert self._mirror is not None
        metadata = doc.get("metadata") if isinstance(doc, dict) else None
        if not isinstance(metadata, dict):
            raise ApiStatus(200, "BadResponse", f"the watch of {followed.path} sent an object without metadata")
        version = _version(str(metadata.get("resourceVersion", "")), f"a {change} event of {followed.path}")
        if change == "BOOKMARK":
            return version
        if change not in ("ADDED", "MODIFIED", "DELETED"):
            raise ApiStatus(200, "BadResponse", f"the watch of {followed.path} sent a {change!r} event")
        namespace = str(metadata.get("namespace") or "") if followed.kind in NAMESPACED_KINDS else ""
        where = (namespace, str(metadata.get("name") or ""))
        obj = read_object(followed.kind, doc) if change != "DELETED" else None
        self._mirror.apply(followed.kind, change, obj, where, version)
        return version

    async def _relist(self, client: Client, followed: Followed) -> tuple[list[KubeObject], int]:
        backoff = _Backoff()
        while True:
            try:
                return await self._list(client, followed)
            except _TRANSIENT as exc:
                log.warning("cannot list %s: %s; trying again", followed.path, _why(exc))
                await backoff.wait()

    # --- health ----------------------------------------------------------------------

    async def _serve_health(self, stack: contextlib.AsyncExitStack, server: str) -> None:
        settings = self.settings
        app = health_app(self.metrics, server)
        try:
            runner, self.api_port = await start_api(app, settings.api_address, settings.api_port)
        except OSError as exc:
            where = join_host_port(settings.api_address, settings.api_port)
            raise BindError(f"cannot serve the API on {where}: {exc.strerror or exc}") from None
        stack.push_async_callback(runner.cleanup)
        self.api_url = f"http://{join_host_port(settings.api_address, self.api_port)}"


def health_app(metrics: Metrics, server: str) -> web.Application:
    """/healthz, /livez, /readyz and /metrics; every other path a 404 Status that says
    where the registry's API is."""
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def elsewhere(request: web.Request) -> web.Response:
        error = status.ApiError(
            404, "NotFound",
            f"this kdns follows the cluster at {server} and serves no registry API: use that API",
        )
        return web.json_response(error.status(), status=404)

    app = web.Application()
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, ok)
    app.router.add_get("/metrics", scrape)
    app.router.add_route("*", "/{tail:.*}", elsewhere)
    return app




async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Follow and serve DNS until `stop` is set (or for ever, until cancelled); SIGHUP
    reloads the static zones, as `kdns serve` without --follow. A stop while the first
    lists are still being waited for ends the wait."""
    stop = stop or asyncio.Event()
    running = asyncio.ensure_future(_serve(settings, stop))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((running, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not running.done():
            running.cancel()
        await asyncio.gather(running, stopping, return_exceptions=True)
    if not running.cancelled():
        running.result()  # what stopped the follower, if it failed


async def _serve(settings: Settings, stop: asyncio.Event) -> None:
    async with Follower(settings) as follower:
        assert follower.zones is not None
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, follower.zones.hangup)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            hangup = False
        else:
            hangup = True
        try:
            await stop.wait()
        finally:
            if hangup:
                loop.remove_signal_handler(signal.SIGHUP)
