"""ClusterIP and NodePort allocation from ranges, with savepoints for transactions.

Allocation is deterministic, so that the same manifests always get the same addresses:
the lowest free value at or after a cursor that moves past each allocation, wrapping
around. As kube-apiserver does since KEP-3070 (service IPs) and KEP-3668 (node ports),
dynamic allocation starts above a small "static band" at the bottom of the range, so that
hand-picked values there (10.96.0.10 for kube-dns, nodePort 30007 from the docs) do not
collide with allocated ones; the band is used once the rest is full.

An allocator is changed in place. `savepoint()` starts recording undo steps and
`rollback(savepoint)` undoes everything since, cursor included, so a refused write leaves
the allocator exactly as it was; `commit()` forgets the steps.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from kdns.registry.addresses import dotted_quad, ipv4_text
from kdns.registry.errors import RegistryError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AllocationError(RegistryError):
    """The value cannot be allocated."""


class AlreadyAllocated(AllocationError):
    """provided value is already allocated"""


class NotInRange(AllocationError):
    """provided value is not in the valid range"""


class RangeFull(AllocationError):
    """range is full"""


class NotConfigured(AllocationError):
    """no range is configured for this IP family"""


def _static_band(size: int, low: int, high: int, step: int) -> int:
    """pkg/registry/core/service/ipallocator and portallocator calculateRangeOffset."""
    if size <= low:
        return 0
    return min(max(size // step, low), high)


class _Pool:
    """The integers first..last, some in use, handed out from a moving cursor."""

    __slots__ = ("cursor", "first", "last", "used")

    def __init__(self, first: int, last: int, offset: int) -> None:
        self.first, self.last = first, last
        self.used: set[int] = set()
        self.cursor = first + offset

    def __contains__(self, value: int) -> bool:
        return self.first <= value <= self.last

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def next_free(self) -> int | None:
        if len(self.used) >= self.size:
            return None
        value, first, last, used = self.cursor, self.first, self.last, self.used
        while value in used:
            value = value + 1 if value < last else first
        return value


class _Journaled:
    """Undo steps for savepoint/rollback, recorded only while a savepoint is open."""

    def __init__(self) -> None:
        self._journal: list[Callable[[], None]] | None = None

    def savepoint(self) -> int:
        """Start (or continue) recording; rollback(savepoint) returns to this state."""
        if self._journal is None:
            self._journal = []
        return len(self._journal)

    def rollback(self, savepoint: int = 0) -> None:
        journal = self._journal or []
        while len(journal) > savepoint:
            journal.pop()()

    def commit(self) -> None:
        """Keep every change and stop recording."""
        self._journal = None

    def _record(self, undo: Callable[[], None]) -> None:
        if self._journal is not None:
            self._journal.append(undo)

    def _take(self, pool: _Pool, value: int, advance: bool) -> None:
        cursor = pool.cursor
        pool.used.add(value)
        if advance:
            pool.cursor = value + 1 if value < pool.last else pool.first

        def undo() -> None:
            pool.used.discard(value)
            pool.cursor = cursor

        self._record(undo)

    def _give(self, pool: _Pool, value: int) -> None:
        pool.used.discard(value)
        self._record(lambda: pool.used.add(value))


class ClusterIPAllocator(_Journaled):
    """Service cluster IPs, one range per IP family ("IPv4", "IPv6").

    The network address is never handed out, nor an IPv4 range's broadcast address.
    `reserve` honours any explicit address, even outside the ranges (kdns runs manifests
    copied from real clusters), refusing only one that is already in use.
    """

    def __init__(self, networks: Iterable[IPNetwork | str]) -> None:
        super().__init__()
        self._networks: dict[str, IPNetwork] = {}
        self._pools: dict[str, _Pool] = {}
        self._outside: set[IPAddress] = set()
        self._ipv4: _Pool | None = None  # self._pools["IPv4"], for dotted quads
        for given in networks:
            network = ipaddress.ip_network(given) if isinstance(given, str) else given
            family = f"IPv{network.version}"
            if family in self._networks:
                raise AllocationError(f"service CIDR {network}: a second {family} range")
            base = int(network.network_address)
            last = int(network.broadcast_address) - (1 if network.version == 4 else 0)
            if last < base + 1:
                raise AllocationError(f"service CIDR {network}: too small to allocate from")
            self._networks[family] = network
            self._pools[family] = _Pool(base + 1, last, _static_band(network.num_addresses, 16, 256, 16))
        self._ipv4 = self._pools.get("IPv4")
        self._families = tuple(self._networks)

    @property
    def families(self) -> tuple[str, ...]:
        """The configured families, primary first."""
        return self._families

    def network(self, family: str) -> IPNetwork | None:
        return self._networks.get(family)

    def allocate(self, family: str) -> str:
        """The next free address of `family`'s range."""
        pool = self._pools.get(family)
        if pool is None:
            raise NotConfigured(f"no {family} service CIDR is configured")
        value = pool.next_free()
        if value is None:
            raise RangeFull(f"range is full: {self._networks[family]}")
        self._take(pool, value, advance=True)
        if family == "IPv4":
            return ipv4_text(value)
        return str(ipaddress.ip_address(value))

    def reserve(self, ip: str) -> str:
        """Mark an explicit address used; returns it in canonical form."""
        pool = self._ipv4
        if pool is not None:
            quad = _dotted_quad(ip)
            if quad is not None and pool.first <= quad[0] <= pool.last:
                # The common case, without ipaddress (which is slow); as below.
                value, text = quad
                if value in pool.used:
                    raise AlreadyAllocated("provided IP is already allocated")
                self._take(pool, value, advance=False)
                return text
        address = _address(ip)
        pool = self._pool_for(address)
        if pool is not None:
            if int(address) in pool.used:
                raise AlreadyAllocated("provided IP is already allocated")
            self._take(pool, int(address), advance=False)
        else:
            if address in self._outside:
                raise AlreadyAllocated("provided IP is already allocated")
            self._outside.add(address)
            self._record(lambda: self._outside.discard(address))
        return str(address)

    def release(self, ip: str) -> None:
        """Free an address; freeing a free address does nothing."""
        pool = self._ipv4
        if pool is not None:
            quad = _dotted_quad(ip)
            if quad is not None and pool.first <= quad[0] <= pool.last:
                if quad[0] in pool.used:
                    self._give(pool, quad[0])
                return
        address = _address(ip)
        pool = self._pool_for(address)
        if pool is not None:
            if int(address) in pool.used:
                self._give(pool, int(address))
        elif address in self._outside:
            self._outside.discard(address)
            self._record(lambda: self._outside.add(address))

    def skip(self, ip: str) -> None:
        """Start the next allocation after `ip` (kept through rollback): a write in flight
        elsewhere holds it, and the next write should not pick it too."""
        address = _address(ip)
        pool = self._pool_for(address)
        if pool is not None:
            pool.cursor = int(address) + 1 if int(address) < pool.last else pool.first

    def is_allocated(self, ip: str) -> bool:
        address = _address(ip)
        pool = self._pool_for(address)
        return int(address) in pool.used if pool is not None else address in self._outside

    def _pool_for(self, address: IPAddress) -> _Pool | None:
        pool = self._pools.get(f"IPv{address.version}")
        return pool if pool is not None and int(address) in pool else None


def _dotted_quad(ip: str) -> tuple[int, str] | None:
    """The value and the (canonical) text of an IPv4 address written as ipaddress writes
    it, or None for anything else, which ipaddress may still read."""
    packed = dotted_quad(ip)
    return None if packed is None else (int.from_bytes(packed, "big"), ip)


def _address(ip: str) -> IPAddress:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        raise AllocationError(f"{ip!r} is not an IP address") from None


class NodePortAllocator(_Journaled):
    """Node ports from an inclusive range (kube-apiserver's --service-node-port-range)."""

    def __init__(self, low: int = 30000, high: int = 32767) -> None:
        super().__init__()
        if not 1 <= low <= high <= 65535:
            raise AllocationError(f"node port range {low}-{high}: need 1 <= low <= high <= 65535")
        self.low, self.high = low, high
        self._pool = _Pool(low, high, _static_band(high - low + 1, 16, 128, 32))

    def allocate(self) -> int:
        """The next free port."""
        value = self._pool.next_free()
        if value is None:
            raise RangeFull(f"range is full: {self.low}-{self.high}")
        self._take(self._pool, value, advance=True)
        return value

    def reserve(self, port: int) -> int:
        """Mark an explicit port used."""
        if port not in self._pool:
            raise NotInRange(
                "provided port is not in the valid range. "
                f"The range of valid ports is {self.low}-{self.high}"
            )
        if port in self._pool.used:
            raise AlreadyAllocated("provided port is already allocated")
        self._take(self._pool, port, advance=False)
        return port

    def release(self, port: int) -> None:
        """Free a port; freeing a free or out-of-range port does nothing."""
        if port in self._pool.used:
            self._give(self._pool, port)

    def skip(self, port: int) -> None:
        """Start the next allocation after `port` (see ClusterIPAllocator.skip)."""
        if port in self._pool:
            self._pool.cursor = port + 1 if port < self._pool.last else self._pool.first

    def is_allocated(self, port: int) -> bool:
        return port in self._pool.used
