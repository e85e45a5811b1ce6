"""The service proxy: kube-proxy's job in user space, for clusters that have no kube-proxy.

`ServiceProxy(store, ...)` makes every Service's ClusterIP:port reachable, and every
NodePort on the node's address, over TCP and UDP: it listens there and forwards each new
TCP connection, and each new UDP client flow, to a ready endpoint chosen at random (as
kube-proxy's iptables mode, `--probability` rules). What it reads from the store:

* Frontends (address, port, protocol) -> (namespace, service, port name), from Services
  (not headless, not ExternalName). Listeners are opened and closed to match, in a task
  that one store listener keeps running after each commit.
* Backends per (namespace, service, port name, protocol): the ready endpoints of the
  service's EndpointSlices, with the slice's port for that name (a named targetPort is
  resolved per pod by the EndpointSlice controller). This table is rebuilt inside the
  commit's listener call, so the choice made at accept time is never older than the last
  commit: a pod that is not ready, or deleted, gets no new connection.

Behaviour users see:
* Open TCP connections and UDP flows drain: an endpoint change never cuts them.
* A service port with no ready endpoint refuses new TCP connections at once: its listener
  is closed, so the kernel answers RST (ECONNREFUSED); a connection accepted before that
  is reset. UDP clients starting a new flow get nothing back: their datagrams are dropped
  (the listener stays, so open flows keep their socket), and they time out.
* A connection to an endpoint that refuses is tried on up to CONNECT_ATTEMPTS other
  ready endpoints, as kube-proxy's old userspace mode did.
* At most `max_connections_per_service` open TCP connections plus UDP flows per service;
  beyond that new ones are refused as above.
* UDP flows end after `udp_idle_timeout` seconds without a datagram either way (30 s,
  conntrack's UDP timeout).
* Stopping closes the listeners, lets open connections finish for `drain_timeout`,
  closes the rest and removes the addresses it added.

With `interface` set, ClusterIPs are added to that interface as /32 (IPv4) or /128 (IPv6)
addresses with `ip address add` (iproute2), so that the host answers ARP for them; this
needs CAP_NET_ADMIN. `interface=None` means the addresses are routable already (loopback
in tests) and nothing is added.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import shutil
import socket
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, Self, cast

from kdns.errors import KdnsError
from kdns.hostport import Peer, join_host_port
from kdns.registry.objects import ENDPOINT_SLICE, SERVICE, EndpointSlice, Event, Service
from kdns.registry.store import Store

__all__ = ["Frontend", "ProxyError", "ServiceProxy"]

log = logging.getLogger("kdns.proxy")

PROTOCOLS = ("TCP", "UDP")
CONNECT_ATTEMPTS = 3
CONNECT_TIMEOUT = 3.0
UDP_IDLE_TIMEOUT = 30.0
UDP_PENDING = 64  # datagrams kept per flow while its backend socket opens
DRAIN_TIMEOUT = 2.0
IP_TIMEOUT = 10.0
# Which backend a connection goes to: unpredictable to clients, as kube-proxy's random choice.
_SYSTEM_RANDOM = random.SystemRandom()
# A copy of `ip` with CAP_NET_ADMIN (the image's, see the Dockerfile) comes first.
IP_COMMANDS = ("kdns-ip", "ip")


class ProxyError(KdnsError):
    """The service proxy cannot run."""


@dataclass(frozen=True, slots=True)
class Frontend:
    """One address, port and protocol the proxy listens on."""

    address: str
    port: int
    protocol: str

    def __str__(self) -> str:
        return f"{join_host_port(self.address, self.port)}/{self.protocol.lower()}"


# (namespace, service, port name, protocol)
Target = tuple[str, str, str, str]
Backend = tuple[str, int]


class _Listener(Protocol):
    """A frontend's listener: an asyncio.Server (TCP) or a _UdpFrontend."""

    def close(self) -> None: ...


class _Open(Protocol):
    """A TCP connection or a UDP flow: counted against max_connections, drained on stop."""

    @property
    def closed(self) -> asyncio.Future[None]: ...

    def abort(self) -> None: ...


def frontends_of(service: Service, node_address: str | None) -> dict[Frontend, Target]:
    """Where a Service is reachable: each ClusterIP:port, and the node's address:nodePort."""
    if service.headless or service.type == "ExternalName":
        return {}
    result = {}
    for port in service.ports:
        if port.protocol not in PROTOCOLS:
            continue
        target = (service.meta.namespace, service.meta.name, port.name, port.protocol)
        for ip in service.cluster_ips:
            result[Frontend(ip, port.port, port.protocol)] = target
        if node_address is not None and port.node_port:
            result[Frontend(node_address, port.node_port, port.protocol)] = target
    return result


def backends_of(slices: Iterable[EndpointSlice]) -> dict[tuple[str, str], tuple[Backend, ...]]:
    """(port name, protocol) -> the ready endpoints' (address, port), from a service's slices."""
    result: dict[tuple[str, str], list[Backend]] = {}
    for piece in slices:
        if piece.address_type not in ("IPv4", "IPv6"):
            continue
        for port in piece.ports:
            if port.port is None:
                continue
            found = result.setdefault((port.name, port.protocol), [])
            found.extend((endpoint.addresses[0], port.port)
                         for endpoint in piece.endpoints if endpoint.is_ready and endpoint.addresses)
    return {key: tuple(sorted(set(value))) for key, value in result.items()}


class ServiceProxy:
    """`async with ServiceProxy(store, ...) as proxy:` forwards while the block runs.

    `proxy.frontends` is what it listens on (bound), `await proxy.settled()` waits until
    the listeners match the store, `proxy.open_count(namespace, service)` counts open
    TCP connections and UDP flows.
    """

    def __init__(
        self,
        store: Store,
        *,
        interface: str | None,
        node_address: str | None,
        max_connections_per_service: int = 1000,
        udp_idle_timeout: float = UDP_IDLE_TIMEOUT,
        drain_timeout: float = DRAIN_TIMEOUT,
        rng: random.Random = _SYSTEM_RANDOM,
    ) -> None:
        if max_connections_per_service < 1:
            raise ValueError("max_connections_per_service must be at least 1")
        self.store = store
        self.interface = interface
        self.node_address = node_address
        self.max_connections = max_connections_per_service
        self.udp_idle_timeout = udp_idle_timeout
        self.drain_timeout = drain_timeout
        self.rng = rng
        self._wanted: dict[Frontend, Target] = {}
        self._backends: dict[Target, tuple[Backend, ...]] = {}
        self._servers: dict[Frontend, _Listener] = {}
        self._open: dict[tuple[str, str], set[_Open]] = {}  # (namespace, service) -> connections and flows
        self._addresses: set[str] = set()  # what this proxy added to the interface
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconciling: asyncio.Task[None] | None = None
        self._again = False
        self._unsubscribe: Callable[[], None] | None = None
        self._closing = False
        self._ip: str | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self.interface is not None:
            self._ip = next((path for name in IP_COMMANDS if (path := shutil.which(name))), None)
            if self._ip is None:
                raise ProxyError("the service proxy adds ClusterIPs with `ip` (iproute2), which is not installed")
        self._unsubscribe = self.store.subscribe(self._on_commit)
        try:
            self._rebuild_all()
            # The first round raises (an `ip` failure, no NET_ADMIN, stops start-up); commits
            # during it wait for it, as for any round, and run one more after it.
            self._reconciling = asyncio.get_running_loop().create_task(self._reconcile())
            await self._reconciling
            if self._again:
                self._schedule()
        except BaseException:
            await self._shutdown()
            raise
        log.info("service proxy: %d listeners%s", len(self._servers),
                 f", ClusterIPs on {self.interface}" if self.interface else "")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._closing = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._reconciling is not None:
            self._reconciling.cancel()
            await asyncio.gather(self._reconciling, return_exceptions=True)
        for frontend in list(self._servers):
            self._close_listener(frontend)
        pending = [c for conns in self._open.values() for c in conns]
        if pending:  # let open connections finish, then close what is left
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.drain_timeout):
                    await asyncio.gather(*(c.closed for c in pending), return_exceptions=True)
            for conns in list(self._open.values()):
                for connection in list(conns):
                    connection.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for address in sorted(self._addresses):
            try:
                await self._ip_address("del", address)
            except ProxyError as exc:
                log.error("%s", exc)
        self._addresses.clear()

    async def settled(self) -> None:
        """Wait until the listeners match the store's last commit."""
        for _ in range(100):  # each round is one reconcile; commits may keep coming
            task = self._reconciling
            if task is None or task.done():
                return
            await asyncio.shield(task)

    def open_count(self, namespace: str, service: str) -> int:
        return len(self._open.get((namespace, service), ()))

    @property
    def frontends(self) -> tuple[Frontend, ...]:
        return tuple(sorted(self._servers, key=str))

    # --- the store's view -------------------------------------------------------------------

    def _on_commit(self, events: Sequence[Event]) -> None:
        touched: set[tuple[str, str]] = set()
        for event in events:
            obj = event.object
            if isinstance(obj, Service):
                touched.add((obj.meta.namespace, obj.meta.name))
            elif isinstance(obj, EndpointSlice):
                for version in (obj, event.old):
                    if isinstance(version, EndpointSlice) and version.service_name:
                        touched.add((version.meta.namespace, version.service_name))
        if not touched:
            return
        for namespace, name in touched:
            self._rebuild(namespace, name)
        self._schedule()

    def _rebuild_all(self) -> None:
        self._wanted.clear()
        self._backends.clear()
        for service in self.store.list(SERVICE):
            self._rebuild(service.meta.namespace, service.meta.name)

    def _rebuild(self, namespace: str, name: str) -> None:
        """Frontends and backends of one service, from the store as committed now."""
        for frontend in [f for f, t in self._wanted.items() if t[:2] == (namespace, name)]:
            del self._wanted[frontend]
        for target in [t for t in self._backends if t[:2] == (namespace, name)]:
            del self._backends[target]
        service = self.store.get(SERVICE, namespace, name)
        if not isinstance(service, Service):  # (None: deleted)
            return
        self._wanted.update(frontends_of(service, self.node_address))
        slices = [s for s in self.store.list(ENDPOINT_SLICE, namespace)
                  if isinstance(s, EndpointSlice) and s.service_name == name]
        for (port_name, protocol), backends in backends_of(slices).items():
            self._backends[(namespace, name, port_name, protocol)] = backends

    def _choose(self, target: Target, exclude: Iterable[Backend] = ()) -> Backend | None:
        """A ready endpoint at random, as of the last commit; None when there is none."""
        backends = [b for b in self._backends.get(target, ()) if b not in exclude]
        return self.rng.choice(backends) if backends else None

    # --- listeners and addresses --------------------------------------------------------------

    def _schedule(self) -> None:
        if self._closing:
            return
        if self._reconciling is not None and not self._reconciling.done():
            self._again = True
            return
        self._reconciling = asyncio.get_running_loop().create_task(self._reconcile_loop(), name="kdns proxy reconcile")

    async def _reconcile_loop(self) -> None:
        for _ in range(1000):  # bounded; each round catches up with every commit before it
            self._again = False
            try:
                await self._reconcile()
            except Exception:  # one bad port must not stop the others being served
                log.exception("service proxy: updating the listeners failed")
            if not self._again:
                return

    def _listening_wanted(self) -> dict[Frontend, Target]:
        """Every UDP frontend, and the TCP ones whose service port has a ready endpoint: the
        kernel refuses connections to the others (RST, ECONNREFUSED)."""
        return {f: t for f, t in self._wanted.items() if f.protocol == "UDP" or self._backends.get(t)}

    async def _reconcile(self) -> None:
        wanted = self._listening_wanted()
        cluster_ips = {f.address for f in self._wanted if f.address != self.node_address}
        if self.interface is not None:
            for address in sorted(cluster_ips - self._addresses):
                if await self._ip_address("add", address):
                    self._addresses.add(address)
        for frontend in [f for f in self._servers if f not in wanted]:
            self._close_listener(frontend)
        for frontend, target in wanted.items():
            if frontend in self._servers or self._closing:
                continue
            try:
                self._servers[frontend] = await self._listen(frontend, target)
            except OSError as exc:
                log.error("service proxy: cannot listen on %s for %s/%s: %s", frontend, target[0], target[1], exc)
        if self.interface is not None:
            for address in sorted(self._addresses - cluster_ips):
                self._addresses.discard(address)
                await self._ip_address("del", address)

    async def _listen(self, frontend: Frontend, target: Target) -> _Listener:
        loop = asyncio.get_running_loop()
        if frontend.protocol == "TCP":
            return await loop.create_server(lambda: _TcpFront(self, target), frontend.address, frontend.port,
                                            reuse_address=True, backlog=1024)
        udp = _UdpFrontend(self, target)
        await loop.create_datagram_endpoint(lambda: udp, local_addr=(frontend.address, frontend.port))
        return udp

    def _close_listener(self, frontend: Frontend) -> None:
        server = self._servers.pop(frontend)
        server.close()  # TCP: stop accepting; open connections go on. UDP: its flows go on

    async def _ip_address(self, verb: str, address: str) -> bool:
        """`ip address add|del ADDRESS/32 dev IFACE`; False when it was there (add) or gone (del)."""
        assert self._ip is not None and self.interface is not None
        length = 32 if ipaddress.ip_address(address).version == 4 else 128
        argv = [self._ip, "address", verb, f"{address}/{length}", "dev", self.interface]
        process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(IP_TIMEOUT):
                _, stderr = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ProxyError(f"{' '.join(argv)}: no answer in {IP_TIMEOUT} s") from None
        text = stderr.decode(errors="replace").strip()
        if process.returncode == 0:
            return True
        if "File exists" in text or "Cannot assign" in text:
            return False  # someone else's address (add) or already gone (del): not ours to touch
        if "not permitted" in text:
            raise ProxyError(f"{' '.join(argv)}: {text}: --proxy needs CAP_NET_ADMIN to add ClusterIPs "
                             f"(compose: cap_add: [NET_ADMIN]; or --proxy-interface none if they are routed already)")
        raise ProxyError(f"{' '.join(argv)}: {text}")

    # --- connection accounting ----------------------------------------------------------------

    def _admit(self, target: Target, connection: _Open) -> bool:
        conns = self._open.setdefault(target[:2], set())
        if len(conns) >= self.max_connections or self._closing:
            return False
        conns.add(connection)
        return True

    def _release(self, target: Target, connection: _Open) -> None:
        conns = self._open.get(target[:2])
        if conns is not None:
            conns.discard(connection)
            if not conns:
                del self._open[target[:2]]

    def _track(self, coroutine: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# --- TCP ----------------------------------------------------------------------------------------


def _reset(transport: asyncio.Transport) -> None:
    """Close with RST, not FIN: the client sees the refusal at once."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    transport.abort()


class _Pipe(asyncio.Protocol):
    """One side of a forwarded connection: what it reads goes to `peer`'s transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream's transport is a Transport, though uvloop's does not subclass the class.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
        return peer is None or not peer.eof  # False when both halves are done: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # Flow control: a slow reader on one side pauses reading on the other.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _TcpFront(_Pipe):
    """A client's connection to a frontend: admitted, then joined to a backend."""

    def __init__(self, proxy: ServiceProxy, target: Target) -> None:
        super().__init__()
        self.proxy, self.target = proxy, target
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.backend: Backend | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        front = cast(asyncio.Transport, transport)  # (as in _Pipe.connection_made)
        if self.proxy._choose(self.target) is None or not self.proxy._admit(self.target, self):
            _reset(front)
            return
        # Until the backend is connected. uvloop may deliver data read before the pause took
        # hold, so that is kept (it is at most one read) and sent first.
        front.pause_reading()
        self.proxy._track(self._connect())

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.early.append(data)
        else:
            super().data_received(data)

    def eof_received(self) -> bool:
        if self.peer is None:
            self.early_eof = True
            return True
        return super().eof_received()

    early_eof = False

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        tried: list[Backend] = []
        for _ in range(CONNECT_ATTEMPTS):
            backend = self.proxy._choose(self.target, exclude=tried)
            if backend is None or self.transport is None or self.transport.is_closing():
                break
            tried.append(backend)
            back = _Pipe()
            back.peer = self
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await loop.create_connection(lambda: back, backend[0], backend[1])  # noqa: B023  (called in this iteration)
            except (OSError, TimeoutError) as exc:
                log.debug("service proxy: %s:%s refused %s/%s: %s", *backend, *self.target[:2], exc)
                continue
            if self.transport.is_closing():  # the client left while we connected
                assert back.transport is not None
                back.transport.close()
                return
            self.backend, self.peer = backend, back
            assert back.transport is not None
            for data in self.early:
                back.transport.write(data)
            self.early.clear()
            if self.early_eof:
                self.eof_received()
            self.transport.resume_reading()
            return
        if self.transport is not None:
            _reset(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.proxy._release(self.target, self)
        if not self.closed.done():
            self.closed.set_result(None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.abort()


# --- UDP ----------------------------------------------------------------------------------------


class _UdpFrontend(asyncio.DatagramProtocol):
    """A ClusterIP:port/udp: each client (address, port) is a flow to one backend."""

    def __init__(self, proxy: ServiceProxy, target: Target) -> None:
        self.proxy, self.target = proxy, target
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[Peer, _UdpFlow] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # (uvloop's does not subclass it)

    def datagram_received(self, data: bytes, addr: Peer) -> None:
        flow = self.flows.get(addr)
        if flow is None:
            backend = self.proxy._choose(self.target)
            if backend is None:
                return  # no ready endpoint: dropped (the listener closes in this loop turn)
            flow = _UdpFlow(self, addr, backend)
            if not self.proxy._admit(self.target, flow):
                return  # over the bound: dropped
            self.flows[addr] = flow
            self.proxy._track(flow.open())
        flow.send(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("service proxy: udp %s/%s: %s", *self.target[:2], exc)

    def close(self) -> None:
        """The service port is gone: stop, and end its flows (their replies have no socket)."""
        for flow in list(self.flows.values()):
            flow.abort()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.close()

    def forget(self, flow: _UdpFlow) -> None:
        self.flows.pop(flow.client, None)


class _UdpFlow(asyncio.DatagramProtocol):
    """One client's datagrams to one backend and back, until idle for the timeout."""

    def __init__(self, front: _UdpFrontend, client: Peer, backend: Backend) -> None:
        self.front, self.client, self.backend = front, client, backend
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last = asyncio.get_running_loop().time()
        self.timer: asyncio.TimerHandle | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: self, remote_addr=self.backend)
        except OSError as exc:
            log.debug("service proxy: udp to %s:%s: %s", *self.backend, exc)
            self.abort()
            return
        self.timer = loop.call_later(self.front.proxy.udp_idle_timeout, self._check_idle)
        assert self.transport is not None
        for data in self.pending:
            self.transport.sendto(data)
        self.pending.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # (uvloop's does not subclass it)

    def send(self, data: bytes) -> None:
        self.last = asyncio.get_running_loop().time()
        if self.transport is not None:
            self.transport.sendto(data)
        elif len(self.pending) < UDP_PENDING:
            self.pending.append(data)

    def datagram_received(self, data: bytes, addr: Peer) -> None:
        self.last = asyncio.get_running_loop().time()
        transport = self.front.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        log.debug("service proxy: udp from %s:%s: %s", *self.backend, exc)

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        left = self.last + self.front.proxy.udp_idle_timeout - loop.time()
        if left > 0:
            self.timer = loop.call_later(left, self._check_idle)
        else:
            self.abort()

    def abort(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()
        self.front.forget(self)
        self.front.proxy._release(self.front.target, self)
        if not self.closed.done():
            self.closed.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.abort()
