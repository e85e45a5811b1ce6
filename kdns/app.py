"""The composition root: manifests into the store, the store into the index, sockets last.

Start order (stop is the reverse, under a timeout):
1. open the registry's journal under --data-dir (one kdns per directory) and restore the
   saved registry; then read every manifest and apply them all on top, create or update
   as `kubectl apply`, and prune what earlier manifests declared and these no longer do
   (kdns.registry.declared), in ONE store transaction; a bad manifest raises here, before
   any port is bound, so kdns never serves a half-loaded cluster (CoreDNS needs SERVFAIL
   for its "not yet synced" window; kdns has none). From here every commit is journaled
   by the journal's writer thread (kdns/journal.py), and the API acknowledges a write
   once it is on disk. With --store etcd://..., the registry is listed from etcd
   instead and followed by a watch, and the manifests go to etcd as one write
   (kdns/etcd/store.py);
2. build the ClusterIndex from the store and subscribe it, with no write in between;
3. read the static zones (--zones-dir); a zone file that cannot be served stops start-up;
4. open the Forwarder (when there are upstreams) with its cache, and build the Router;
5. bind UDP, then TCP on the same port;
6. ask the upstreams a probe question: if it comes back to kdns, the upstreams forward to
   kdns and every outside name would loop, so kdns stops (CoreDNS's `loop` plugin);
7. with --workers N, start N - 1 worker processes on the same port (SO_REUSEPORT), each
   with a copy of the registry kept in step by this one (kdns/replication.py), and wait
   until they serve;
8. serve the HTTP API, its modules imported on a thread meanwhile (DNS answers while they
   load); /readyz says ready from here (registry loaded, DNS bound);
9. with --proxy, the service proxy: ClusterIPs and NodePorts start to route;
10. the readiness prober (with etcd: the controller lease election, whose holder runs it);
11. the pods' documents the load left unpacked (kdns.registry.objects.Deferred) are
    packed, and the prober looks at the pods already stored, a few at a time while DNS is
    quiet (`LeftoverTurns`, `pack_deferred`).

SIGHUP (`serve`) reloads the static zones and applies the manifests again (pruning what
they no longer declare) while queries go on being answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import importlib
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kdns.authority.index import ClusterIndex
from kdns.authority.static import StaticZones, ZoneError
from kdns.config import ConfigError, Settings
from kdns.errors import KdnsError
from kdns.hostport import join_host_port
from kdns.journal import JournalWriter
from kdns.metrics import Metrics
from kdns.pipeline.cache import CachingForwarder, ResponseCache
from kdns.pipeline.chain import Router
from kdns.pipeline.forward import Forwarder, ForwardingLoop
from kdns.prober import Prober
from kdns.registry import declared
from kdns.registry.backend import Backend, LocalBackend, Unavailable
from kdns.registry.errors import ManifestError, RegistryError
from kdns.registry.events import EventLog
from kdns.registry.manifests import Loaded, read_paths
from kdns.registry.objects import API_VERSIONS
from kdns.registry.sqlite import FILE_NAME, SqliteJournal, StorageError
from kdns.registry.sqlite import load as load_saved
from kdns.registry.store import RestoreError, Store
from kdns.runtime import collect_rarely, give_back_memory, long_lived
from kdns.wire.fastpath import QueryStats
from kdns.wire.querylog import QueryLog
from kdns.wire.tcp import TcpServer
from kdns.wire.udp import UdpServer
from kdns.zonefiles import load_zones
from kdns.zonefiles import reload as reload_zones

# Imported where they are used, not here: the HTTP API and the etcd client (aiohttp and
# kdns.api: more than half of a start's imports, bench/startphases.py) are not needed to
# start answering DNS (_serve_api imports the API on a thread while DNS answers; etcd
# only with --store); nor are /debug/explain's (dnspython reads its names), the worker
# processes' (--workers) or the service proxy's (--proxy).
if TYPE_CHECKING:
    from kdns.api.http import Explainer
    from kdns.etcd.store import EtcdBackend, LeaderElection
    from kdns.pipeline.explain import Explanation
    from kdns.proxy import ServiceProxy
    from kdns.replication import WorkerPool

__all__ = ["App", "BindError", "DnsServers", "LoopError", "Reloader", "serve", "serve_dns", "start"]

log = logging.getLogger("kdns")

# Port 0 asks for a free UDP port; TCP then needs the same number, which another
# process may hold: try again with a new UDP port this many times.
BIND_ATTEMPTS = 8
STOP_TIMEOUT = 5.0
# Deferred documents packed in one go: about 2 ms of the loop (a pod's takes about 10 us:
# made again, then packed).
PACK_CHUNK = 200
# Start-up's leftover work (packing the deferred documents, the prober's first look at the
# stored pods) is not the askers': a chunk of it goes when no query was answered for
# LEFTOVER_QUIET seconds, and under a steady stream of queries one every LEFTOVER_EVERY
# seconds at most (2 % of the loop), so that the stream neither pays for it (100,000 pods
# are about 1 s of CPU) nor keeps it from ending (under a minute at 100,000 pods). Until
# then a Deferred document reads the same, a little slower, and a pod not yet looked at
# is not yet probed.
LEFTOVER_QUIET = 0.005
LEFTOVER_EVERY = 0.1


class BindError(KdnsError):
    """kdns cannot listen on its DNS address and port."""


class LoopError(KdnsError):
    """kdns's upstreams send its questions back to it."""


def _errno(exc: BaseException | None) -> int | None:
    """The errno behind a bind failure; uvloop keeps it on the exception's __cause__."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno:
            return exc.errno
        exc = exc.__cause__
    return None


def _reason(exc: OSError) -> str:
    number = _errno(exc)
    return os.strerror(number) if number else str(exc)


@dataclasses.dataclass(frozen=True, slots=True)
class DnsServers:
    """What answers DNS in one process: the Router over the index and the static zones
    (with the Forwarder and its cache when there are upstreams), and its UDP and TCP
    servers on one port. The primary and every worker build it with `serve_dns`."""

    router: Router
    forwarder: Forwarder | None
    udp: UdpServer
    tcp: TcpServer


@contextlib.asynccontextmanager
async def serve_dns(
    settings: Settings, index: ClusterIndex, static: StaticZones, metrics: Metrics, *, reuse_port: bool
) -> AsyncIterator[DnsServers]:
    """Answer DNS from `index` and `static` on settings' address and port until the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        router, forwarder = await _open_router(stack, settings, index, static)
        udp, tcp = await _bind_dns(stack, settings, router, metrics, reuse_port=reuse_port)
        yield DnsServers(router, forwarder, udp, tcp)


def load_static(settings: Settings) -> StaticZones:
    """--zones-dir's zones; ZoneError names the file and line of one that cannot be served."""
    return load_zones(settings.zones_dir) if settings.zones_dir is not None else StaticZones()


async def reload_static(router: Router, directory: Path) -> list[ZoneError]:
    """Read `directory` again and serve the result from `router`; returns the files' errors.

    The files are parsed in a worker thread, so the event loop goes on answering queries
    from the old zones; the new set replaces it in one assignment. A file that no longer
    loads keeps its previous version in service (`kdns.zonefiles.reload`).
    """
    zones, errors = await asyncio.to_thread(reload_zones, directory, router.static)
    kept = {zone.path for zone in zones.zones}
    for error in errors:
        if error.path in kept:
            log.error("reload: %s; its previous version stays in service", error)
        else:
            log.error("reload: %s; not served", error)
    router.static = zones
    for origin in router.shadowed:
        log.warning("static zone %s is a kdns zone: ignored, kdns answers it from the registry", origin)
    log.info("reloaded static zones from %s: %s", directory, _describe(zones))
    return errors


class Reloader:
    """SIGHUP's work, in a tracked background task while queries are answered: reload the
    static zones (and have every worker do the same), and apply the manifests again,
    pruning what they no longer declare (`reload_manifests`).

    A SIGHUP during a reload makes it run once more when it ends: the files may have
    changed after they were read. `aclose` cancels a reload under way.
    """

    def __init__(
        self, router: Router, directory: Path | None, workers: WorkerPool | None,
        manifests: tuple[Backend, Settings] | None = None,
    ) -> None:
        # `manifests`: where they are applied and the settings naming them; None when kdns
        # has none (--follow serves another cluster's objects).
        self._router = router
        self._directory = directory
        self._workers = workers
        self._manifests = manifests
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def hangup(self) -> None:
        if self._workers is not None:
            self._workers.reload_zones()  # each worker reads the files itself
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="kdns reload")

    async def reload(self) -> list[ZoneError]:
        """Read --zones-dir again now (see `reload_static`); returns the files' errors."""
        if self._directory is None:
            log.info("reload: no --zones-dir, no static zones to reload")
            return []
        return await reload_static(self._router, self._directory)

    async def reload_manifests(self) -> declared.Applied | None:
        """Read --manifests again and apply them, pruning what they no longer declare, as one
        write: a file that does not load (or a document the registry refuses) is logged and
        changes nothing. The applied result, or None after an error (or without manifests)."""
        if self._manifests is None:
            return None
        backend, settings = self._manifests
        loaded = await asyncio.to_thread(read_paths, settings.manifests)
        try:
            applied = await _apply_manifests(backend, loaded)
        except RegistryError as exc:
            log.error("reload: %s; the registry is unchanged", exc)
            return None
        _log_manifests(settings, applied, "reloaded")
        return applied

    async def _loop(self) -> None:
        for _ in range(100):  # bounded: a SIGHUP storm cannot keep it going for ever
            self._again = False
            try:
                await self.reload()
            except Exception:  # a bug in reloading must not take the server down
                log.exception("reloading the static zones failed; the old zones stay in service")
            try:
                await self.reload_manifests()
            except Exception:
                log.exception("reloading the manifests failed; the registry stays as it was")
            # What the reload read (every document, as trees) is garbage now: give back
            # what malloc holds of it (scale cluster: 410 -> 400 MiB; the rest is in
            # CPython's small-object arenas, which go back only when wholly empty).
            give_back_memory()
            if not self._again:
                return

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@dataclasses.dataclass(frozen=True, slots=True)
class ApiServer:
    """The HTTP API, served: its bound port and its URL (https with --tls-cert)."""

    port: int
    url: str


@dataclasses.dataclass(frozen=True, slots=True)
class App:
    """kdns, running: `async with start(settings) as app:` serves until the block ends.

    Every part is there once the block is entered; those that are None are off by
    settings: `journal` with --ephemeral, `forwarder` without upstreams, `workers` with
    --workers 1, `proxy` without --proxy.
    """

    settings: Settings
    metrics: Metrics
    store: Store
    backend: Backend  # where writes are committed: this process, or etcd (--store)
    journal: SqliteJournal | None
    index: ClusterIndex
    dns: DnsServers
    workers: WorkerPool | None
    api: ApiServer
    proxy: ServiceProxy | None
    prober: Prober | None  # None with --store etcd: the holder of the controller lease runs it
    election: LeaderElection | None  # with --store etcd: who holds the controller lease
    reloader: Reloader
    # What applying the manifests did at start (for the log and tests).
    applied: declared.Applied

    @property
    def router(self) -> Router:
        return self.dns.router

    @property
    def dns_address(self) -> str:
        return self.settings.dns_address

    @property
    def dns_port(self) -> int:
        """The bound port, also when settings asked for 0."""
        return self.dns.udp.port

    @property
    def api_port(self) -> int:
        return self.api.port

    @property
    def api_url(self) -> str:
        return self.api.url

    def hangup(self) -> None:
        """SIGHUP: reload the static zones and the manifests in the background (`Reloader`)."""
        self.reloader.hangup()

    async def reload_zones(self) -> list[ZoneError]:
        """Read --zones-dir again and serve the result; returns the files' errors."""
        return await self.reloader.reload()

    async def reload_manifests(self) -> declared.Applied | None:
        """Apply --manifests again, pruning what they no longer declare (`Reloader`)."""
        return await self.reloader.reload_manifests()


@contextlib.asynccontextmanager
async def start(settings: Settings) -> AsyncIterator[App]:
    """Start kdns in the order of this module's docstring; stop it in reverse (under
    STOP_TIMEOUT) when the block ends. A failure to start closes what was opened."""
    async with contextlib.AsyncExitStack() as starting:
        app = await _start(starting, settings)
        stack = starting.pop_all()
    try:
        yield app
    finally:
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await stack.aclose()
        except TimeoutError:
            log.error("stopping took longer than %s s; some connections were left open", STOP_TIMEOUT)


async def _start(stack: contextlib.AsyncExitStack, settings: Settings) -> App:
    metrics = Metrics()
    tls = _tls_context(settings)  # a certificate that does not load stops start-up at once
    stack.callback(gc.unfreeze)  # stopped: what the load built may be collected again
    stack.callback(collect_rarely())  # and the collector's own thresholds come back
    with long_lived():
        backend: Backend
        election = None
        if settings.etcd_endpoints:
            from kdns.etcd.store import LeaderElection

            (backend, applied), journal = await _open_etcd(stack, settings), None
            election = LeaderElection(backend, backend.client, settings.leader_elect_lease_duration,
                                      lambda: Prober(backend))
        else:
            store, journal, applied = _load(stack, settings)
            backend = LocalBackend(store)
        store = backend.store
        index = ClusterIndex(settings)
        index.rebuild(store.objects(), store.resource_version)
    writer = None
    if journal is not None:  # from here, saved on the writer's thread (kdns/journal.py)
        writer = await stack.enter_async_context(JournalWriter(journal, saved=store.resource_version))
        stack.callback(store.subscribe(writer, critical=True))
    static = load_static(settings)  # nothing is bound yet
    stack.callback(store.subscribe(index.apply))
    for kind in API_VERSIONS:
        metrics.set_objects(kind, store.count(kind))
    stack.callback(store.subscribe(metrics.on_events))
    dns = await stack.enter_async_context(
        serve_dns(settings, index, static, metrics, reuse_port=settings.workers > 1)
    )
    _count_forwarding(dns, metrics)
    if dns.forwarder is not None:
        # Listening already, so a probe an upstream sends back reaches the Router.
        try:
            await dns.forwarder.check_loop()
        except ForwardingLoop as exc:
            raise LoopError(str(exc)) from None
    workers = None
    if settings.workers > 1:  # on the port just bound, before /readyz says ready
        from kdns.replication import WorkerPool

        workers = await stack.enter_async_context(
            WorkerPool(
                dataclasses.replace(settings, dns_port=dns.udp.port),
                store,
                settings.workers,
                observe_sync=metrics.observe_worker_sync,
            )
        )
        metrics.add_query_counts(workers.totals)
        metrics.add_udp_drops(workers.drops)
    reloader = Reloader(dns.router, settings.zones_dir, workers, (backend, settings))
    stack.push_async_callback(reloader.aclose)
    events = EventLog()

    def explainer(name: str, type_text: str, client: str) -> Awaitable[Explanation]:
        """`GET /debug/explain`: the live registry, the zones served now, the cache."""
        # Imported with the API (kdns.api.debug), on its thread, not before DNS answers.
        from kdns.pipeline.explain import explain, qtype_number

        router = dns.router
        return explain(
            name,
            qtype_number(type_text),
            router=router,
            index=index,
            static=router.static,
            objects=store.list,
            settings=settings,
            client=client,
        )

    api = await _serve_api(stack, settings, backend, metrics, tls, writer, events, explainer, dns.udp.stats.answered)
    proxy = None
    if settings.proxy:  # ClusterIPs and NodePorts that route (kube-proxy's job)
        from kdns.proxy import ServiceProxy

        proxy = await stack.enter_async_context(ServiceProxy(
            store,
            interface=settings.proxy_interface,
            node_address=settings.node_address,
            max_connections_per_service=settings.proxy_max_connections,
        ))
    # The kubelet's readiness prober, for pods with a readinessProbe (kdns register); with
    # etcd, on the one replica that holds the controller lease.
    # Start-up's leftover work goes in the turns DNS leaves it, from here on.
    turns = LeftoverTurns(dns.udp.stats.answered)
    prober = None
    if election is None:
        prober = await stack.enter_async_context(Prober(backend, events=events, pace=turns))
    else:
        await stack.enter_async_context(election)
    app = App(settings, metrics, store, backend, journal, index, dns, workers, api, proxy, prober, election, reloader, applied)
    _log_started(app, static)
    # Started: the documents the load left unpacked are packed from here on, while DNS is quiet.
    packing = asyncio.get_running_loop().create_task(pack_deferred(store, turns), name="kdns pack documents")
    stack.push_async_callback(_cancel, packing)
    return app


class LeftoverTurns:
    """Turns for start-up's leftover work, awaited before each chunk of it: a turn comes
    once no query was answered for LEFTOVER_QUIET seconds (`answered`: how many queries
    were answered so far), or, under a steady stream of queries, LEFTOVER_EVERY seconds
    after the last turn given to any of its users, so that all of them together take one
    share of the loop."""

    def __init__(self, answered: Callable[[], int]) -> None:
        self._answered = answered
        self._last: float | None = None  # when the last turn was given (loop time)

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        if self._last is None:
            self._last = loop.time()
        while True:
            seen = self._answered()
            await asyncio.sleep(LEFTOVER_QUIET)
            now = loop.time()
            if self._answered() == seen or now - self._last >= LEFTOVER_EVERY:
                self._last = now
                return


async def pack_deferred(store: Store, turns: Callable[[], Awaitable[None]]) -> None:
    """Pack the documents a start-up load left Deferred (kdns.registry.objects), PACK_CHUNK
    at a time, each chunk in one of `turns` (LeftoverTurns); then give the memory their
    makers held back to the system."""
    count = store.deferred
    if not count:
        return
    loop = asyncio.get_running_loop()
    began = loop.time()
    log.info("start-up: %d documents left to pack while DNS is quiet", count)
    while store.deferred:
        await turns()
        store.pack_deferred(PACK_CHUNK)
    give_back_memory()
    # (bench/servers.py wait_settled waits for this line before measuring a steady registry)
    log.info("start-up: %d documents packed in %.1f s", count, loop.time() - began)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _load(
    stack: contextlib.AsyncExitStack, settings: Settings
) -> tuple[Store, SqliteJournal | None, declared.Applied]:
    """The saved registry, then every manifest on top in one transaction, pruning what
    earlier manifests declared and these do not: all of it, or an exception. The journal
    (and its lock) is `stack`'s to close.

    The order keeps the process's peak down (a big cluster's start sets kdns's largest
    resident size; VmHWM from `python bench/memory.py`, scale cluster): the saved
    registry is restored before the manifests are read, so that the memory the restore
    made and dropped is taken again by the documents instead of left between them (a
    restart: 300 -> 288 MiB). With a journal the apply packs every document, so what was
    read is all garbage once applied: it is let go before the commit, whose
    EndpointSlices then take its memory (a first start: 294 -> 268 MiB). Without one the
    pods' documents stay Deferred, and packing them after the first answer takes that
    memory instead (let go before the commit there, --ephemeral went 290 -> 294 MiB)."""
    store = _new_store(settings)
    journal = _restore(stack, store, settings.data_dir) if settings.data_dir is not None else None
    loaded = read_paths(settings.manifests, declared.packer())  # marked and packed as read
    _check_loaded(loaded)
    files = len(loaded.files)
    # Saved inside the commit, before kdns serves anything (the writer thread takes over).
    journaling = store.subscribe(journal, critical=True) if journal is not None else None
    with store.transaction() as txn:
        # In `apply_order` (Namespaces first, ...); a refusal names file and document.
        # The documents were read for this alone: the store keeps them (`owned`).
        applied = declared.apply(txn, loaded.documents, owned=True)
        if journal is not None:
            del loaded  # before the commit (see above)
    if journaling is not None:
        journaling()
    return store, journal, dataclasses.replace(applied, files=files)


async def _open_etcd(stack: contextlib.AsyncExitStack, settings: Settings) -> tuple[EtcdBackend, declared.Applied]:
    """The registry from etcd (closed by `stack`): list it and follow it, then apply the
    manifests on top as one write (pruning what they no longer declare), as `_load` does
    for the embedded store."""
    from kdns.etcd.client import EtcdClient, EtcdError
    from kdns.etcd.store import EtcdBackend

    loaded = read_paths(settings.manifests)
    _check_loaded(loaded)
    store = _new_store(settings)
    client = await stack.enter_async_context(EtcdClient(settings.etcd_endpoints, ssl_context=_etcd_tls(settings)))
    try:
        backend = await stack.enter_async_context(EtcdBackend(store, client, settings.etcd_prefix))
        applied = await _apply_manifests(backend, loaded, checked=True)
    except (EtcdError, Unavailable) as exc:
        where = ", ".join(settings.etcd_endpoints)
        raise StorageError(f"cannot open the registry on etcd ({where}): {exc}") from None
    return backend, applied


def _new_store(settings: Settings) -> Store:
    """An empty registry allocating from the settings' ranges."""
    return Store(
        service_cidrs=settings.service_cidrs,
        node_port_range=settings.node_port_range,
        clock=time.time,
        event_log_size=settings.event_log_size,
    )


def load_registry(settings: Settings) -> tuple[Store, list[str]]:
    """The registry the manifests alone make, in memory, and the loader's warnings
    (`kdns explain --manifests`); raises the loader's first error."""
    loaded = read_paths(settings.manifests)
    if loaded.errors:
        raise loaded.errors[0]
    store = _new_store(settings)
    declared.mark(loaded.documents)
    with store.transaction() as txn:
        declared.apply(txn, loaded.documents, owned=True)
    return store, [str(warning) for warning in loaded.warnings]


def _count_forwarding(dns: DnsServers, metrics: Metrics) -> None:
    """Export the forwarder's and its cache's counters (kdns_forward_*, kdns_cache_*)."""
    forward = dns.router.forward
    if dns.forwarder is None or not isinstance(forward, CachingForwarder):
        return
    metrics.add_forward_counts(dns.forwarder.counts)
    metrics.add_cache_counts(forward.cache.counts)


def _check_loaded(loaded: Loaded) -> None:
    """Log read_paths' warnings; raise its first error, saying how many more there are
    (`kdns validate` lists them all)."""
    for warning in loaded.warnings:
        log.warning("%s", warning)
    if loaded.errors:
        first, more = loaded.errors[0], len(loaded.errors) - 1
        if more:
            raise ManifestError(f"{first} (and {more} more: `kdns validate` lists them)")
        raise first


async def _apply_manifests(backend: Backend, loaded: Loaded, *, checked: bool = False) -> declared.Applied:
    """Apply what read_paths loaded as one write through `backend`, pruning (declared.apply)."""
    if not checked:
        _check_loaded(loaded)
    declared.mark(loaded.documents)
    applied = await backend.write(lambda txn: declared.apply(txn, loaded.documents))
    return dataclasses.replace(applied, files=len(loaded.files))


def _log_manifests(settings: Settings, applied: declared.Applied, verb: str) -> None:
    """`manifests applied: 12 documents from 3 files in zones; pruned 1 no longer declared:
    Service default/web`."""
    where = ", ".join(map(str, settings.manifests)) or "no --manifests"
    line = f"manifests {verb}: {applied.documents} documents from {applied.files} files in {where}"
    if applied.pruned:
        line += f"; pruned {len(applied.pruned)} no longer declared: " + ", ".join(
            f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}" for kind, namespace, name in applied.pruned
        )
    log.info("%s", line)


def _etcd_tls(settings: Settings) -> ssl.SSLContext | None:
    """The client-side TLS context for etcd, when a CA or a client certificate is given."""
    if settings.etcd_cafile is None and settings.etcd_certfile is None:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.etcd_cafile)
        if settings.etcd_certfile is not None and settings.etcd_keyfile is not None:
            context.load_cert_chain(settings.etcd_certfile, settings.etcd_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--etcd-cafile / --etcd-certfile / --etcd-keyfile: {exc.strerror or exc}") from None
    return context


def _restore(stack: contextlib.AsyncExitStack, store: Store, data_dir: Path) -> SqliteJournal:
    """Open the journal in `data_dir` (made if missing) and restore what it saved into `store`."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot make the data directory {data_dir}: {_reason(exc)}") from None
    journal = stack.enter_context(SqliteJournal(data_dir / FILE_NAME))
    saved = load_saved(journal.path)
    try:
        store.restore(saved.documents, saved.version, owned=True, typed=saved.objects, derived=saved.derived)
    except RestoreError as exc:
        raise StorageError(f"{journal.path}: cannot restore the registry: {exc}") from exc
    # A new file: save the initial namespaces too. One written by another version: write
    # this kdns's typed objects, so that the next start takes them as they are.
    if saved.version == 0 or saved.stale:
        journal.replace_all(store.objects(), store.resource_version)
    return journal


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The API's server-side TLS context, when --tls-cert and --tls-key are set."""
    cert, key = settings.tls_cert, settings.tls_key
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-cert {cert} / --tls-key {key}: {exc.strerror or exc}") from None
    return context


async def _serve_api(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    backend: Backend,
    metrics: Metrics,
    tls: ssl.SSLContext | None,
    writer: JournalWriter | None,
    events: EventLog,
    explainer: Explainer,
    answered: Callable[[], int],
) -> ApiServer:
    """Serve the HTTP API, last: the registry is loaded and DNS is bound, so it is ready
    (with etcd: while etcd can take writes). `answered` counts the queries this process
    answered: while they keep its loop busy, new connections are accepted in rounds
    (`--api-accept-round`, kdns/api/rounds.py)."""
    # DNS answers from here on: its modules (aiohttp's and kdns.api's, more than half of
    # what a start imports) are imported on a thread, so that the event loop answers
    # meanwhile instead of waiting for them.
    await asyncio.to_thread(importlib.import_module, "kdns.api.http")
    from kdns.api.http import build_app, start_api
    from kdns.api.rounds import LoopLoad

    ready = asyncio.Event()
    ready.set()
    api = build_app(
        backend,
        metrics=metrics,
        token=settings.api_token,
        ready=lambda: ready.is_set() and backend.ready(),
        durable=writer.durable if writer is not None else None,
        events=events,
        explain=explainer,
    )
    load = LoopLoad(answered)
    if settings.api_accept_round > 0:
        load.start()
        stack.callback(load.stop)
    try:
        runner, port = await start_api(api, settings.api_address, settings.api_port, ssl_context=tls,
                                       accept_round=settings.api_accept_round, busy=load.busy)
    except OSError as exc:
        where = join_host_port(settings.api_address, settings.api_port)
        raise BindError(f"cannot serve the API on {where}: {_reason(exc)}") from None
    stack.push_async_callback(runner.cleanup)
    stack.callback(ready.clear)  # stopping: not ready any more, first
    scheme = "https" if tls is not None else "http"
    return ApiServer(port, f"{scheme}://{join_host_port(settings.api_address, port)}")


def _log_started(app: App, static: StaticZones) -> None:
    settings, store = app.settings, app.store
    # Counted, not listed: listing every object again costs a tenth of a second per
    # 100,000 of them, at every start.
    kinds = {kind: count for kind in API_VERSIONS if (count := store.count(kind))}
    log.info(
        "serving DNS on %s (udp, tcp)%s",
        join_host_port(app.dns_address, app.dns_port),
        f" in {settings.workers} processes" if settings.workers > 1 else "",
    )
    log.info(
        "zones %s; %s; resource version %s",
        ", ".join((settings.zone, *settings.reverse_zones)),
        ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "no objects",
        store.resource_version,
    )
    _log_manifests(settings, app.applied, "applied")
    # What kdns serves beyond the cluster, one line each: static zones, forwarding.
    if settings.zones_dir is not None:
        log.info("static zones from %s: %s", settings.zones_dir, _describe(static))
    for origin in app.router.shadowed:
        log.warning("static zone %s is a kdns zone: ignored, kdns answers it from the registry", origin)
    forwarder = app.dns.forwarder
    if forwarder is None:
        log.info("forwarding is off: names outside the served zones are REFUSED")
    else:
        log.info(
            "forwarding to %s for clients in %s (cache %d entries)",
            ", ".join(map(str, forwarder.upstreams)),
            ", ".join(map(str, settings.allow_recursion)) or "no network",
            settings.cache_size,
        )
    if settings.etcd_endpoints:
        log.info("registry on etcd %s under %s, shared with every kdns there", ",".join(settings.etcd_endpoints),
                 settings.etcd_prefix)
    elif app.journal is not None:
        log.info("registry saved in %s", app.journal.path)
    else:
        log.info("registry in memory only (--ephemeral): it is lost when kdns stops")
    if settings.api_token and settings.tls_cert is None:
        log.warning(
            "--api-token without --tls-cert: kubectl sends a token only over https, so it gets "
            "401 here; other clients send the token in clear text"
        )
    log.info("serving the API on %s", app.api_url)


async def _open_router(
    stack: contextlib.AsyncExitStack, settings: Settings, index: ClusterIndex, static: StaticZones
) -> tuple[Router, Forwarder | None]:
    """The Router over `index` and `static`, with the Forwarder and its cache when there are
    upstreams (closed by `stack`)."""
    if not settings.upstreams:
        return Router(index, settings, static=static), None
    forwarder = await stack.enter_async_context(
        Forwarder(
            settings.upstreams,
            own_addresses=[(settings.dns_address, settings.dns_port)],
            try_timeout=settings.forward_timeout,
            deadline=settings.forward_deadline,
        )
    )
    cache = ResponseCache(
        settings.cache_size,
        max_ttl=settings.cache_max_ttl,
        max_negative_ttl=settings.cache_max_negative_ttl,
        stale_window=settings.cache_stale_window,
    )
    return Router(index, settings, static=static, forward=CachingForwarder(cache, forwarder)), forwarder


async def _bind_dns(
    stack: contextlib.AsyncExitStack, settings: Settings, router: Router, metrics: Metrics, *, reuse_port: bool
) -> tuple[UdpServer, TcpServer]:
    """UDP first, then TCP on the port UDP got: one port number for both transports.

    `reuse_port` (SO_REUSEPORT) lets the processes of --workers share the port.
    """
    address, port = settings.dns_address, settings.dns_port
    # Plain integer counters on the hot path, summed by /metrics when it is scraped.
    stats = QueryStats()
    metrics.add_query_counts(stats.totals)
    nsid = settings.nsid.encode("utf-8")
    query_log = None
    if settings.log_queries:
        query_log = QueryLog(
            sys.stdout, settings.log_queries_format, settings.log_queries_sample, (settings.zone, *settings.reverse_zones)
        )
        stack.callback(query_log.close)  # after the servers stop: the last answers are written
    attempts = BIND_ATTEMPTS if port == 0 else 1
    for attempt in range(attempts):
        try:
            udp = await stack.enter_async_context(
                UdpServer(
                    router,
                    address,
                    port,
                    stats=stats,
                    observe=metrics.observe_duration,
                    reuse_port=reuse_port,
                    nsid=nsid,
                    query_log=query_log,
                )
            )
        except OSError as exc:
            raise BindError(f"cannot listen on {join_host_port(address, port)}/udp: {_reason(exc)}") from None
        try:
            tcp = await stack.enter_async_context(
                TcpServer(router, address, udp.port, stats=stats, reuse_port=reuse_port, nsid=nsid, query_log=query_log)
            )
        except OSError as exc:
            if _errno(exc) == errno.EADDRINUSE and attempt + 1 < attempts:
                await udp.aclose()
                continue
            raise BindError(f"cannot listen on {join_host_port(address, udp.port)}/tcp: {_reason(exc)}") from None
        metrics.add_udp_drops(udp.drops)
        return udp, tcp
    raise AssertionError("unreachable")


def _describe(zones: StaticZones) -> str:
    """`2 zones: example.internal. (serial 7), other.test. (serial 1)`, or `none`."""
    if not zones.zones:
        return "none"
    listed = ", ".join(f"{zone.origin} (serial {zone.serial})" for zone in sorted(zones.zones, key=lambda z: z.origin))
    return f"{len(zones.zones)} zone{'s' if len(zones.zones) > 1 else ''}: {listed}"


async def serve(
    settings: Settings, stop: asyncio.Event | None = None, started: Callable[[App], None] | None = None
) -> None:
    """Serve DNS until `stop` is set (or forever, until cancelled); SIGHUP reloads the static
    zones and the manifests. `started` is called once kdns serves (the CLI logs the
    configuration then, so that a failed start is one line)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handled from before the start: a SIGHUP while starting (the default action would end
    # the process) is a reload once started, as the files may have changed meanwhile.
    running: list[App] = []
    pending: list[bool] = []
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: running[0].hangup() if running else pending.append(True))
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        hangup = False
    else:
        hangup = True
    try:
        async with start(settings) as app:
            running.append(app)
            if started is not None:
                started(app)
            if pending:
                app.hangup()
            await stop.wait()
    finally:
        if hangup:
            loop.remove_signal_handler(signal.SIGHUP)
