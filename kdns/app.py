"""The composition root: manifests into the store, the store into the index, sockets last.

Start order (stop is the reverse, under a timeout):
1. open the registry's journal under --data-dir (one kdns per directory) and restore the
   saved registry; then read every manifest and apply them all on top, create or update
   as `kubectl apply`, in ONE store transaction; a bad manifest raises here, before any
   port is bound, so kdns never serves a half-loaded cluster (CoreDNS needs SERVFAIL for
   its "not yet synced" window; kdns has none). From here every commit is journaled
   before it is acknowledged;
2. build the ClusterIndex from the store and subscribe it, with no write in between;
3. read the static zones (--zones-dir); a zone file that cannot be served stops start-up;
4. open the Forwarder (when there are upstreams) with its cache, and build the Router;
5. bind UDP, then TCP on the same port;
6. ask the upstreams a probe question: if it comes back to kdns, the upstreams forward to
   kdns and every outside name would loop, so kdns stops (CoreDNS's `loop` plugin);
7. with --workers N, start N - 1 worker processes on the same port (SO_REUSEPORT), each
   with a copy of the registry kept in step by this one (kdns/replication.py), and wait
   until they serve;
8. serve the HTTP API; /readyz says ready from here (registry loaded, DNS bound);
9. with --proxy, the service proxy: ClusterIPs and NodePorts start to route.

SIGHUP (`serve`) reloads the static zones while queries go on being answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import logging
import os
import signal
import ssl
import time
from pathlib import Path
from typing import Self

from kdns.api.http import build_app, start_api
from kdns.authority.index import ClusterIndex
from kdns.authority.static import StaticZones, ZoneError, load_zones
from kdns.authority.static import reload as reload_zones
from kdns.config import ConfigError, Settings
from kdns.errors import KdnsError
from kdns.hostport import join_host_port
from kdns.metrics import Metrics
from kdns.pipeline.cache import CachingForwarder, ResponseCache
from kdns.pipeline.chain import Router
from kdns.pipeline.forward import Forwarder, ForwardingLoop
from kdns.prober import Prober
from kdns.proxy import ServiceProxy
from kdns.registry.manifests import load_paths
from kdns.registry.objects import API_VERSIONS
from kdns.registry.sqlite import FILE_NAME, SqliteJournal, StorageError
from kdns.registry.sqlite import load as load_saved
from kdns.registry.store import RestoreError, Store
from kdns.replication import WorkerPool
from kdns.wire.fastpath import QueryStats
from kdns.wire.tcp import TcpServer
from kdns.wire.udp import UdpServer

__all__ = ["App", "BindError", "LoopError", "serve"]

log = logging.getLogger("kdns")

# Port 0 asks for a free UDP port; TCP then needs the same number, which another
# process may hold: try again with a new UDP port this many times.
BIND_ATTEMPTS = 8
STOP_TIMEOUT = 5.0


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


class App:
    """kdns, running: `async with App(settings) as app:` serves DNS until the block ends.

    `.store`, `.index`, `.router`, `.dns_address` and `.dns_port` (the bound port, also
    when settings asked for 0), `.api_port` and `.api_url` (likewise) are there once the
    block is entered; `.metrics` from the start.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.index: ClusterIndex | None = None
        self.router: Router | None = None
        self.forwarder: Forwarder | None = None
        self.udp: UdpServer | None = None
        self.tcp: TcpServer | None = None
        self.dns_address = settings.dns_address
        self.dns_port = settings.dns_port
        self.metrics = Metrics()
        self.journal: SqliteJournal | None = None
        self.api_port = settings.api_port
        self.api_url = ""
        self.prober: Prober | None = None
        self.proxy: ServiceProxy | None = None
        self.workers: WorkerPool | None = None
        self._ready = False
        # The journal (and its lock), open from the load until the servers stop.
        self._storage = contextlib.ExitStack()
        self._stack: contextlib.AsyncExitStack | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False

    async def __aenter__(self) -> Self:
        settings = self.settings
        tls = self._tls_context()  # a certificate that does not load stops start-up at once
        store = self._load()
        index = ClusterIndex(settings)
        index.rebuild(store.objects(), store.resource_version)
        # ZoneError names the file and line; nothing is bound yet.
        static = load_zones(settings.zones_dir) if settings.zones_dir is not None else StaticZones()
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(store.subscribe(index.apply))
            self._observe_registry(stack, store)
            self.store, self.index = store, index
            self.router, self.forwarder = await open_router(stack, settings, index, static)
            stack.push_async_callback(self._stop_reloading)
            reuse_port = settings.workers > 1
            self.udp, self.tcp = await bind_dns(stack, settings, self.router, self.metrics, reuse_port=reuse_port)
            self.dns_port = self.udp.port
            if self.forwarder is not None:
                # Listening already, so a probe an upstream sends back reaches the Router.
                try:
                    await self.forwarder.check_loop()
                except ForwardingLoop as exc:
                    raise LoopError(str(exc)) from None
            if settings.workers > 1:  # on the port just bound, before /readyz says ready
                self.workers = await stack.enter_async_context(
                    WorkerPool(
                        dataclasses.replace(settings, dns_port=self.dns_port),
                        store,
                        settings.workers,
                        observe_sync=self.metrics.observe_worker_sync,
                    )
                )
                self.metrics.add_query_counts(self.workers.totals)
                self.metrics.add_udp_drops(self.workers.drops)
            await self._serve_api(stack, store, tls)
            if settings.proxy:  # ClusterIPs and NodePorts that route (kube-proxy's job)
                self.proxy = await stack.enter_async_context(ServiceProxy(
                    store,
                    interface=settings.proxy_interface,
                    node_address=settings.node_address,
                    max_connections_per_service=settings.proxy_max_connections,
                ))
            # The kubelet's readiness prober, for pods with a readinessProbe (kdns register).
            self.prober = await stack.enter_async_context(Prober(store))
            self._stack = stack.pop_all()
        # Counted, not listed: listing every object again costs a tenth of a second per
        # 100,000 of them, at every start.
        kinds = {kind: count for kind in API_VERSIONS if (count := store.count(kind))}
        log.info(
            "serving DNS on %s (udp, tcp)%s",
            join_host_port(self.dns_address, self.dns_port),
            f" in {settings.workers} processes" if settings.workers > 1 else "",
        )
        log.info(
            "zones %s; %s; resource version %s",
            ", ".join((settings.zone, *settings.reverse_zones)),
            ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "no objects",
            store.resource_version,
        )
        self._log_resolver(static)
        self._log_storage_and_api()
        return self

    def _log_resolver(self, static: StaticZones) -> None:
        """What kdns serves beyond the cluster, one line each: static zones, forwarding."""
        settings, router = self.settings, self.router
        assert router is not None
        if settings.zones_dir is not None:
            log.info("static zones from %s: %s", settings.zones_dir, _describe(static) or "none")
        for origin in router.shadowed:
            log.warning("static zone %s is a kdns zone: ignored, kdns answers it from the registry", origin)
        if self.forwarder is None:
            log.info("forwarding is off: names outside the served zones are REFUSED")
            return
        log.info(
            "forwarding to %s for clients in %s (cache %d entries)",
            ", ".join(map(str, self.forwarder.upstreams)),
            ", ".join(map(str, settings.allow_recursion)) or "no network",
            settings.cache_size,
        )

    def hangup(self) -> None:
        """SIGHUP: reload the static zones in the background while queries are answered.

        A SIGHUP during a reload makes it run once more when it ends: the files may have
        changed after they were read.
        """
        if self.workers is not None:
            self.workers.reload_zones()  # each worker reads the files itself
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload_loop(), name="kdns zone reload")

    async def _reload_loop(self) -> None:
        for _ in range(100):  # bounded: a SIGHUP storm cannot keep it going for ever
            self._reload_again = False
            try:
                await self.reload_zones()
            except Exception:  # a bug in reloading must not take the server down
                log.exception("reloading the static zones failed; the old zones stay in service")
            if not self._reload_again:
                return

    async def _stop_reloading(self) -> None:
        task, self._reloading = self._reloading, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def reload_zones(self) -> list[ZoneError]:
        """Read --zones-dir again and serve the result; returns the files' errors.

        The files are parsed in a worker thread, so the event loop goes on answering
        queries from the old zones; the new set replaces it in one assignment. A file that
        no longer loads keeps its previous version in service (`static.reload`).
        """
        router, directory = self.router, self.settings.zones_dir
        if router is None:
            return []
        if directory is None:
            log.info("reload: no --zones-dir, no static zones to reload")
            return []
        old = router.static
        zones, errors = await asyncio.to_thread(reload_zones, directory, old)
        kept = {zone.path for zone in zones.zones}
        for error in errors:
            if error.path in kept:
                log.error("reload: %s; its previous version stays in service", error)
            else:
                log.error("reload: %s; not served", error)
        router.static = zones
        for origin in router.shadowed:
            log.warning("static zone %s is a kdns zone: ignored, kdns answers it from the registry", origin)
        log.info("reloaded static zones from %s: %s", directory, _describe(zones) or "none")
        return errors

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await stack.aclose()
        except TimeoutError:
            log.error("stopping took longer than %s s; some connections were left open", STOP_TIMEOUT)

    def _load(self) -> Store:
        """The saved registry, then every manifest on top in one transaction: all of it, or
        an exception (and nothing is left open)."""
        settings = self.settings
        # A load builds millions of objects that all live on; the collector would walk
        # them again and again for nothing (a third of the load, for 100,000 pods), so it
        # is paused, and what was loaded is then moved out of its sight (gc.freeze).
        paused = gc.isenabled()
        gc.disable()
        try:
            documents, warnings = load_paths(settings.manifests)
            for warning in warnings:
                log.warning("%s", warning)
            store = Store(
                service_cidrs=settings.service_cidrs,
                node_port_range=settings.node_port_range,
                clock=time.time,
            )
            if settings.data_dir is not None:
                self._restore(store, settings.data_dir)
            with store.transaction() as txn:
                # In `apply_order` (Namespaces first, ...); a refusal names file and document.
                # The documents were read for this alone: the store keeps them (`owned`).
                txn.apply_documents(documents, owned=True)
        except BaseException:
            self._storage.close()
            raise
        finally:
            if paused:
                gc.enable()
        gc.freeze()
        return store

    def _restore(self, store: Store, data_dir: Path) -> None:
        """Open the journal in `data_dir` (made if missing), restore what it saved into
        `store`, and journal every commit from now on, before it is acknowledged."""
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot make the data directory {data_dir}: {_reason(exc)}") from None
        journal = self._storage.enter_context(SqliteJournal(data_dir / FILE_NAME))
        documents, version = load_saved(journal.path)
        try:
            store.restore(documents, version, owned=True)
        except RestoreError as exc:
            raise StorageError(f"{journal.path}: cannot restore the registry: {exc}") from exc
        if version == 0:  # a new file: save the initial namespaces too
            journal.replace_all(store.objects(), store.resource_version)
        self._storage.callback(store.subscribe(journal, critical=True))
        self.journal = journal

    def _tls_context(self) -> ssl.SSLContext | None:
        """The API's server-side TLS context, when --tls-cert and --tls-key are set."""
        cert, key = self.settings.tls_cert, self.settings.tls_key
        if cert is None or key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-cert {cert} / --tls-key {key}: {exc.strerror or exc}") from None
        return context

    def _observe_registry(self, stack: contextlib.AsyncExitStack, store: Store) -> None:
        """Hand the journal (and the frozen load, see _load) to `stack`, and keep the
        registry metrics in step with the store."""
        stack.callback(gc.unfreeze)  # stopped: what the load built may be collected again
        stack.callback(self._storage.close)
        for kind in API_VERSIONS:
            self.metrics.set_objects(kind, store.count(kind))
        stack.callback(store.subscribe(self.metrics.on_events))

    async def _serve_api(self, stack: contextlib.AsyncExitStack, store: Store, tls: ssl.SSLContext | None) -> None:
        """Serve the HTTP API, last: the registry is loaded and DNS is bound, so it is ready."""
        settings = self.settings
        self._ready = True
        api = build_app(store, metrics=self.metrics, token=settings.api_token, ready=lambda: self._ready)
        try:
            runner, self.api_port = await start_api(api, settings.api_address, settings.api_port, ssl_context=tls)
        except OSError as exc:
            where = join_host_port(settings.api_address, settings.api_port)
            raise BindError(f"cannot serve the API on {where}: {_reason(exc)}") from None
        stack.push_async_callback(runner.cleanup)
        stack.callback(setattr, self, "_ready", False)  # stopping: not ready any more, first
        scheme = "https" if tls is not None else "http"
        self.api_url = f"{scheme}://{join_host_port(settings.api_address, self.api_port)}"

    def _log_storage_and_api(self) -> None:
        settings = self.settings
        if self.journal is not None:
            log.info("registry saved in %s", self.journal.path)
        else:
            log.info("registry in memory only (--ephemeral): it is lost when kdns stops")
        if settings.api_token and settings.tls_cert is None:
            log.warning(
                "--api-token without --tls-cert: kubectl sends a token only over https, so it gets "
                "401 here; other clients send the token in clear text"
            )
        log.info("serving the API on %s", self.api_url)

async def open_router(
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


async def bind_dns(
    stack: contextlib.AsyncExitStack, settings: Settings, router: Router, metrics: Metrics, *, reuse_port: bool
) -> tuple[UdpServer, TcpServer]:
    """UDP first, then TCP on the port UDP got: one port number for both transports.

    `reuse_port` (SO_REUSEPORT) lets the processes of --workers share the port.
    """
    address, port = settings.dns_address, settings.dns_port
    # Plain integer counters on the hot path, summed by /metrics when it is scraped.
    stats = QueryStats()
    metrics.add_query_counts(stats.totals)
    attempts = BIND_ATTEMPTS if port == 0 else 1
    for attempt in range(attempts):
        try:
            udp = await stack.enter_async_context(
                UdpServer(router, address, port, stats=stats, observe=metrics.observe_duration, reuse_port=reuse_port)
            )
        except OSError as exc:
            raise BindError(f"cannot listen on {join_host_port(address, port)}/udp: {_reason(exc)}") from None
        try:
            tcp = await stack.enter_async_context(
                TcpServer(router, address, udp.port, stats=stats, reuse_port=reuse_port)
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
    """`example.internal. (serial 7), other.test. (serial 1)`."""
    return ", ".join(f"{zone.origin} (serial {zone.serial})" for zone in sorted(zones.zones, key=lambda z: z.origin))


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve DNS until `stop` is set (or forever, until cancelled); SIGHUP reloads the static zones."""
    stop = stop or asyncio.Event()
    async with App(settings) as app:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, app.hangup)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            hangup = False
        else:
            hangup = True
        try:
            await stop.wait()
        finally:
            if hangup:
                loop.remove_signal_handler(signal.SIGHUP)
