"""The composition root: manifests into the store, the store into the index, sockets last.

Start order (stop is the reverse, under a timeout):
1. read every manifest and apply them all in ONE store transaction; a bad manifest
   raises here, before any port is bound, so kdns never serves a half-loaded cluster
   (CoreDNS needs SERVFAIL for its "not yet synced" window; kdns has none);
2. build the ClusterIndex from the store and subscribe it, with no write in between;
3. bind UDP, then TCP on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import time
from collections import Counter
from typing import Self

from kdns.authority.index import ClusterIndex
from kdns.config import Settings
from kdns.errors import KdnsError
from kdns.pipeline.chain import Router
from kdns.registry.manifests import load_paths
from kdns.registry.objects import API_VERSIONS
from kdns.registry.store import Store
from kdns.wire.tcp import TcpServer
from kdns.wire.udp import UdpServer

__all__ = ["App", "BindError", "serve"]

log = logging.getLogger("kdns")

# Port 0 asks for a free UDP port; TCP then needs the same number, which another
# process may hold: try again with a new UDP port this many times.
BIND_ATTEMPTS = 8
STOP_TIMEOUT = 5.0


class BindError(KdnsError):
    """kdns cannot listen on its DNS address and port."""


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


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ipaddress.ip_address(address).version == 6 else f"{address}:{port}"


class App:
    """kdns, running: `async with App(settings) as app:` serves DNS until the block ends.

    `.store`, `.index`, `.router`, `.dns_address` and `.dns_port` (the bound port, also
    when settings asked for 0) are there once the block is entered.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.index: ClusterIndex | None = None
        self.router: Router | None = None
        self.udp: UdpServer | None = None
        self.tcp: TcpServer | None = None
        self.dns_address = settings.dns_address
        self.dns_port = settings.dns_port
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        settings = self.settings
        store = self._load()
        index = ClusterIndex(settings)
        index.rebuild(_all_objects(store), store.resource_version)
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(store.subscribe(index.apply))
            self.store, self.index = store, index
            self.router = Router(index, settings)
            self.udp, self.tcp = await self._bind(stack, self.router)
            self.dns_port = self.udp.port
            self._stack = stack.pop_all()
        kinds = Counter(obj.kind for obj in _all_objects(store))
        log.info(
            "serving DNS on %s (udp, tcp)",
            _host_port(self.dns_address, self.dns_port),
        )
        log.info(
            "zones %s; %s; resource version %s",
            ", ".join((settings.zone, *settings.reverse_zones)),
            ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "no objects",
            store.resource_version,
        )
        if settings.upstreams:
            log.warning(
                "forwarding is not available yet: upstreams %s are ignored; names outside %s are REFUSED",
                ", ".join(settings.upstreams),
                ", ".join((settings.zone, *settings.reverse_zones)),
            )
        return self

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
        """Every manifest, applied in one transaction: all of it, or an exception."""
        documents, warnings = load_paths(self.settings.manifests)
        for warning in warnings:
            log.warning("%s", warning)
        store = Store(
            service_cidrs=self.settings.service_cidrs,
            node_port_range=self.settings.node_port_range,
            clock=time.time,
        )
        with store.transaction() as txn:
            # In `apply_order` (Namespaces first, ...); a refusal names file and document.
            txn.apply_documents(documents)
        return store

    async def _bind(self, stack: contextlib.AsyncExitStack, router: Router) -> tuple[UdpServer, TcpServer]:
        """UDP first, then TCP on the port UDP got: one port number for both transports."""
        address, port = self.settings.dns_address, self.settings.dns_port
        attempts = BIND_ATTEMPTS if port == 0 else 1
        for attempt in range(attempts):
            try:
                udp = await stack.enter_async_context(UdpServer(router, address, port))
            except OSError as exc:
                raise BindError(f"cannot listen on {_host_port(address, port)}/udp: {_reason(exc)}") from None
            try:
                tcp = await stack.enter_async_context(TcpServer(router, address, udp.port))
            except OSError as exc:
                if _errno(exc) == errno.EADDRINUSE and attempt + 1 < attempts:
                    await udp.aclose()
                    continue
                raise BindError(f"cannot listen on {_host_port(address, udp.port)}/tcp: {_reason(exc)}") from None
            return udp, tcp
        raise AssertionError("unreachable")


def _all_objects(store: Store) -> list:
    """Every object in the store, kind by kind."""
    result: list = []
    for kind in API_VERSIONS:
        result.extend(store.list(kind))
    return result


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve DNS until `stop` is set (or forever, until cancelled)."""
    stop = stop or asyncio.Event()
    async with App(settings):
        await stop.wait()
