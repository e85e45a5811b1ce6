"""The registry on etcd v3, shared by any number of kdns replicas (`--store etcd://...`).

Each replica keeps the whole registry in its own `Store`, which serves every read (DNS,
the API's GET, LIST and WATCH) at once and never waits on etcd. The store is fed by one
etcd watch of the prefix, from the revision its initial list was read at: every commit
of every replica, its own included, reaches every store the same way, in revision order.

Writes (`EtcdBackend.write`), as kube-apiserver makes them on etcd:
1. the change runs as a preview on the local store (`Store.preview`): admission, the
   allocation of cluster IPs and node ports, and the EndpointSlice controller, exactly as
   in a local commit, then undone;
2. what it touched goes to etcd as ONE transaction that compares each object's mod
   revision with the one the preview started from (absent: create revision 0) and puts
   or deletes them; a cluster IP or node port it takes is a key under `allocations/`
   created in the same transaction (create revision 0), and one it gives back is
   deleted there: two replicas can never commit the same address;
3. a failed compare means this replica's view was behind: it waits for its watch to catch
   up and runs the change again (a client's own resourceVersion precondition is then
   checked against the newer state, giving the 409 the client should see);
4. once committed, the call returns after the replica's own watch has applied the
   revision, so a read through the same replica sees the write. resourceVersion is the
   etcd mod revision: one revision for everything one write changed.

The EndpointSlice controller's slices are part of the transaction of the write that
changed the pods or service they follow, so they are compared and committed with it:
no replica ever writes a slice from a state that is not the latest. What runs on its own
schedule, the readiness prober, runs on one replica at a time: the holder of the
controller lease (`LeaderElection`), a Lease object at `leases/kube-system/kdns-controller`
bound to an etcd lease. Every write the prober makes is fenced: its transaction also
compares the lease key's create revision with the one this replica created, so a replica
that lost the lease (expired while it was paused or cut off) cannot write once another
holds it.

etcd unreachable: reads go on from the store as it is; writes raise `Unavailable` (the
API's 503), `ready()` is false (/readyz 503); the watch is retried and resumes from the
next revision when etcd is back; if etcd compacted that revision meanwhile, the replica
lists again and `Store.resync` applies the difference. API watchers that were behind
that relist get 410 Gone and list again themselves.

Key layout under the prefix (default /kdns), as kube-apiserver's under /registry:
`registry/<resource>/<namespace>/<name>` (cluster-scoped: `registry/<resource>/<name>`),
the value a JSON document without resourceVersion; `allocations/clusterips/<ip>` and
`allocations/nodeports/<port>`, the value the service holding it;
`leases/kube-system/kdns-controller`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any, Self, TypeVar, cast

from kdns.etcd.client import (
    Compacted,
    Compare,
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    WatchEvent,
    delete,
    put,
)
from kdns.registry.backend import NotLeader, Unavailable
from kdns.registry.errors import RESOURCES, Conflict, RegistryError
from kdns.registry.manifests import to_manifest, with_resource_version
from kdns.registry.objects import (
    NAMESPACE,
    NAMESPACED_KINDS,
    KubeObject,
    Service,
    _Keyed,
)
from kdns.registry.store import (
    INITIAL_NAMESPACES,
    Committed,
    Preview,
    Store,
    Transaction,
)

log = logging.getLogger("kdns.etcd")

T = TypeVar("T")

# A write whose compare fails (the replica was behind) runs again on the newer state this
# many times before it is a 409 Conflict: more would only mean a key written ever again.
WRITE_ATTEMPTS = 8
# How long a write waits for the replica's own watch to bring a revision (after a commit:
# so that its reads see it; after a failed compare: so that the retry sees what won).
CATCH_UP_TIMEOUT = 2.0
# Watch retries while etcd is unreachable: the first soon, then no more than this apart.
RETRY_MIN, RETRY_MAX = 0.05, 1.0
# How often a replica that is not ready asks whether etcd is back (the watch may be idle).
HEALTH_INTERVAL = 1.0
KIND_BY_RESOURCE = {resource: kind for kind, resource in RESOURCES.items()}
LEASE_NAMESPACE, LEASE_NAME = "kube-system", "kdns-controller"


def _int(value: object) -> int:
    return value if isinstance(value, int) else int(str(value))


class Keys:
    """Where things live under the prefix."""

    def __init__(self, prefix: str) -> None:
        self.root = prefix.rstrip("/").encode() + b"/"
        self.registry = self.root + b"registry/"
        self.lease = self.root + f"leases/{LEASE_NAMESPACE}/{LEASE_NAME}".encode()

    def object(self, kind: str, namespace: str, name: str) -> bytes:
        resource = RESOURCES[kind]
        if kind in NAMESPACED_KINDS:
            return self.registry + f"{resource}/{namespace}/{name}".encode()
        return self.registry + f"{resource}/{name}".encode()

    def parse(self, key: bytes) -> tuple[str, str, str] | None:
        """(kind, namespace, name) of an object's key; None for any other key."""
        if not key.startswith(self.registry):
            return None
        parts = key[len(self.registry):].decode().split("/")
        kind = KIND_BY_RESOURCE.get(parts[0])
        if kind is None:
            return None
        if kind in NAMESPACED_KINDS and len(parts) == 3:
            return kind, parts[1], parts[2]
        if kind not in NAMESPACED_KINDS and len(parts) == 2:
            return kind, "", parts[1]
        return None

    def cluster_ip(self, ip: str) -> bytes:
        return self.root + b"allocations/clusterips/" + ip.encode()

    def node_port(self, port: int) -> bytes:
        return self.root + b"allocations/nodeports/" + str(port).encode()


def encode(obj: KubeObject) -> bytes:
    """The value stored for an object: its document, without resourceVersion (the mod
    revision is the version, as in kube-apiserver's storage)."""
    doc = to_manifest(obj)
    doc.get("metadata", {}).pop("resourceVersion", None)
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _holdings(obj: KubeObject | None) -> tuple[set[str], set[int]]:
    """The cluster IPs and node ports an object holds."""
    if not isinstance(obj, Service):
        return set(), set()
    return set(obj.cluster_ips), {port.node_port for port in obj.ports if port.node_port}


class EtcdBackend:
    """A replica of the registry in etcd: `async with EtcdBackend(store, client, prefix)`
    lists the registry into the (new) store, then keeps it in step with a watch."""

    def __init__(self, store: Store, client: EtcdClient, prefix: str) -> None:
        self._store = store
        self._client = client
        self.keys = Keys(prefix)
        self._revision = 0  # the newest etcd revision this replica's store has applied
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._watching = False  # the watch stream is open: the store is current
        self._reachable = False  # etcd answered the last call
        self._tasks: list[asyncio.Task[None]] = []
        # Set by LeaderElection while this replica holds the controller lease: the
        # compare that fences the prober's writes.
        self.fence: dict[str, Any] | None = None

    @property
    def store(self) -> Store:
        return self._store

    @property
    def client(self) -> EtcdClient:
        return self._client

    def ready(self) -> bool:
        return self._watching and self._reachable

    async def __aenter__(self) -> Self:
        await self._seed_namespaces()
        kvs, revision = await self._client.range_all(self.keys.registry)
        documents = []
        for kv in kvs:
            if self.keys.parse(kv.key) is not None:
                doc = json.loads(kv.value)
                doc.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
                documents.append(doc)
        self._store.restore(documents, revision, owned=True)
        self._revision = revision
        self._reachable = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow(), name="kdns etcd watch"),
            loop.create_task(self._heal(), name="kdns etcd health"),
        ]
        await self.wait_for(revision, CATCH_UP_TIMEOUT)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watching = False

    async def _heal(self) -> None:
        """While a write found etcd unreachable and no watch message has come since, ask
        etcd now and then, so that /readyz says ready again when it is back even if
        nothing is written."""
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)
            if not self._reachable:
                await self.check()

    async def _seed_namespaces(self) -> None:
        """default and kube-system, as every cluster has them: created once, by the first
        replica that starts on an empty prefix."""
        for name in INITIAL_NAMESPACES:
            obj = self._store.get(NAMESPACE, "", name)
            assert obj is not None
            key = self.keys.object(NAMESPACE, "", name)
            await self._client.txn([Compare.create_revision(key, 0)], [put(key, encode(obj))])

    # --- the watch -------------------------------------------------------------------------

    async def _follow(self) -> None:
        """Apply every revision under the prefix to the store, for as long as kdns runs."""
        delay = RETRY_MIN
        while True:
            try:
                async for revision, events in self._client.watch(self.keys.root, self._revision + 1):
                    self._watching = self._reachable = True
                    delay = RETRY_MIN
                    self._apply(revision, events)
                # The member closed the stream (it is stopping): watch again at once.
            except Compacted as exc:
                log.warning("%s: listing the registry again", exc)
                try:
                    await self._relist()
                except EtcdError as relist_error:
                    log.error("cannot list the registry again (%s): trying again", relist_error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
            except Exception as exc:  # whatever it was, the replica must go on following
                if not isinstance(exc, (EtcdError, ValueError)):  # ValueError: a reply cut in the middle
                    log.exception("the etcd watch failed")
                elif self._watching or self._reachable:
                    log.error("etcd watch lost (%s): DNS goes on from the registry as it is", exc)
                self._watching = self._reachable = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            else:
                self._watching = False

    def _apply(self, revision: int, events: list[WatchEvent]) -> None:
        if not revision:
            log.debug("following etcd from revision %d", self._revision + 1)
            return  # the watch is open
        changes: list[Committed] = []
        for event in events:
            where = self.keys.parse(event.kv.key)
            if where is None:
                continue
            kind, namespace, name = where
            if event.deleted:
                changes.append((kind, namespace, name, None, revision))
            else:
                changes.append((kind, namespace, name, json.loads(event.kv.value), revision))
        self._store.apply_committed(changes)
        self._revision = max(self._revision, revision)
        self._wake()

    async def _relist(self) -> None:
        kvs, revision = await self._client.range_all(self.keys.registry)
        documents = [
            (json.loads(kv.value), kv.mod_revision) for kv in kvs if self.keys.parse(kv.key) is not None
        ]
        self._store.resync(documents, revision)
        self._revision = revision
        self._wake()

    def _wake(self) -> None:
        if not self._waiters:
            return
        waiting = []
        for revision, future in self._waiters:
            if revision <= self._revision:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((revision, future))
        self._waiters = waiting

    async def wait_for(self, revision: int, seconds: float) -> bool:
        """Wait until the store has applied `revision` (at most `seconds`); whether it has."""
        if revision <= self._revision:
            return True
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, future))
        try:
            async with asyncio.timeout(seconds):
                await future
        except TimeoutError:
            return False
        return True

    async def check(self) -> None:
        """Ask etcd whether it is reachable (a quorum read), for /readyz between watches."""
        try:
            await self._client.revision()
        except EtcdError:
            self._reachable = False
        else:
            self._reachable = True

    # --- writing ---------------------------------------------------------------------------

    async def write(self, change: Callable[[Transaction], T], *, dry_run: bool = False, fenced: bool = False) -> T:
        preview = self._store.preview(change)
        if dry_run:
            return preview.result
        return await self._commit(change, preview, fenced)

    async def _commit(self, change: Callable[[Transaction], T], preview: Preview[T] | None, fenced: bool) -> T:
        """Commit `preview` as one compare-and-swap; on a lost compare, preview `change`
        again on the newer state and try again."""
        for attempt in range(WRITE_ATTEMPTS):
            if preview is None:
                preview = self._store.preview(change)
            compares, operations = self._transaction(preview)
            if not operations:
                return preview.result  # nothing changes (an unchanged object is not written)
            if fenced:
                if self.fence is None:
                    raise NotLeader("this replica does not hold the controller lease")
                compares.append(self.fence)
            try:
                result = await self._client.txn(compares, operations)
            except EtcdUnavailable as exc:
                self._reachable = False
                raise Unavailable(f"the registry's etcd is unreachable, writes are refused until it is back: {exc}") from None
            except EtcdError as exc:
                raise RegistryError(f"etcd refused the write: {exc}") from None
            self._reachable = True
            if result.succeeded:
                await self.wait_for(result.revision, CATCH_UP_TIMEOUT)
                return _at_revision(preview.result, result.revision)
            if fenced and not await self._holds_lease():
                raise NotLeader("the controller lease has passed to another replica")
            # Behind: let the watch bring what won, then decide again on the newer state
            # (after a moment's jitter, so that two replicas racing do not race again).
            await self.wait_for(result.revision, CATCH_UP_TIMEOUT)
            await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # noqa: S311  (jitter, not a secret)
            last, preview = preview, None
        kind, _namespace, name = next(iter(last.after))
        raise Conflict(kind, name)

    async def _holds_lease(self) -> bool:
        fence = self.fence
        if fence is None:
            return False
        held = await self._client.get(self.keys.lease)
        return held is not None and held.create_revision == _int(fence["create_revision"])

    def _transaction(self, preview: Preview[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The compares and operations that commit `preview` if nothing it read changed."""
        keys = self.keys
        compares: list[dict[str, Any]] = []
        operations: list[dict[str, Any]] = []
        for where, after in preview.after.items():
            before = preview.before[where]
            if before is None and after is None:
                continue  # made and deleted within the write
            key = keys.object(*where)
            if before is None:
                compares.append(Compare.create_revision(key, 0))
            else:
                compares.append(Compare.mod_revision(key, before.meta.resource_version))
            operations.append(delete(key) if after is None else put(key, encode(after)))
            ips_before, ports_before = _holdings(before)
            ips_after, ports_after = _holdings(after)
            holder = f"{where[1]}/{where[2]}".encode()
            for ip in ips_after - ips_before:
                compares.append(Compare.create_revision(keys.cluster_ip(ip), 0))
                operations.append(put(keys.cluster_ip(ip), holder))
            for port in ports_after - ports_before:
                compares.append(Compare.create_revision(keys.node_port(port), 0))
                operations.append(put(keys.node_port(port), holder))
            operations.extend(delete(keys.cluster_ip(ip)) for ip in ips_before - ips_after)
            operations.extend(delete(keys.node_port(port)) for port in ports_before - ports_after)
        return compares, operations


def _at_revision(result: T, revision: int) -> T:
    """A write's result as committed: objects at the revision etcd gave the commit."""
    # (_Keyed: the base of every kind's class; KubeObject is a Protocol.)
    if isinstance(result, _Keyed):
        return with_resource_version(cast(KubeObject, result), revision)  # type: ignore[no-any-return]
    if isinstance(result, list):
        return [with_resource_version(o, revision) if isinstance(o, _Keyed) else o for o in result]  # type: ignore[return-value,arg-type]
    return result


class LeaderElection:
    """The controller lease: at most one replica runs `lead()` at a time.

    The Lease object (coordination.k8s.io/v1, as kube-controller-manager's) is created
    with an etcd lease of `duration` seconds, only if no replica holds it (create
    revision 0), and renewed every duration / 3. The holder stops leading as soon as a
    renewal fails for longer than the lease has left, and before it could have
    expired in etcd; the others look for it every duration / 10 (a read), so a holder
    that dies is replaced within duration * 1.1. A holder that stops revokes the lease
    at once.
    """

    def __init__(
        self,
        backend: EtcdBackend,
        client: EtcdClient,
        duration: float,
        lead: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
        *,
        identity: str | None = None,
    ) -> None:
        self._backend = backend
        self._client = client
        self._duration = duration
        self._lead = lead
        self.identity = identity or f"{socket.gethostname()}_{os.getpid()}"
        self.leading = False
        self.transitions = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="kdns leader election")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _lease_document(self, now: float) -> bytes:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1e6) % 1_000_000:06d}Z"
        return json.dumps({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self._duration),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": self.transitions,
            },
        }, separators=(",", ":")).encode()

    async def _run(self) -> None:
        period, retry = self._duration / 3, max(0.1, self._duration / 10)
        while True:
            try:
                lease, created = await self._acquire()
            except EtcdError as exc:
                log.debug("controller lease: %s", exc)
                lease, created = 0, 0
            if not created:
                await asyncio.sleep(retry)
                continue
            try:
                await self._hold(lease, created, period)
            finally:
                with contextlib.suppress(EtcdError, asyncio.CancelledError):
                    await asyncio.shield(self._client.revoke(lease))

    async def _acquire(self) -> tuple[int, int]:
        """(etcd lease, create revision of the Lease object) if this replica took it; (_, 0) if not."""
        key = self._backend.keys.lease
        held = await self._client.get(key)
        if held is not None:
            return 0, 0
        lease = await self._client.grant(max(1, round(self._duration)))
        result = await self._client.txn([Compare.create_revision(key, 0)], [put(key, self._lease_document(time.time()), lease)])
        if not result.succeeded:
            with contextlib.suppress(EtcdError):
                await self._client.revoke(lease)
            return 0, 0
        return lease, result.revision

    async def _hold(self, lease: int, created: int, period: float) -> None:
        """Lead while the lease is renewed; return when it is lost."""
        deadline = time.monotonic() + self._duration * 2 / 3  # stop before etcd could expire it
        self._backend.fence = Compare.create_revision(self._backend.keys.lease, created)
        self.leading = True
        self.transitions += 1
        log.info("controller lease taken by %s: the readiness prober runs here", self.identity)
        try:
            async with self._lead():
                while True:
                    await asyncio.sleep(period)
                    try:
                        async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                            ttl = await self._client.keepalive(lease)
                    except (EtcdError, TimeoutError) as exc:
                        if time.monotonic() >= deadline:
                            log.error("controller lease not renewed (%s): the prober stops here", exc)
                            return
                        continue
                    if ttl <= 0:
                        log.error("controller lease expired: the prober stops here")
                        return
                    deadline = time.monotonic() + ttl * 2 / 3
        finally:
            self._backend.fence = None
            self.leading = False
