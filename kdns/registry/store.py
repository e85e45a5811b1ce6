"""The Store: every registry object, changed only through transactions, observed by listeners.

A transaction applies each write to the store's tables at once, with an undo journal, so
that its own reads see its writes and indexes stay current; a write that raises is undone
on its own (objects, indexes, allocations, versions), and a transaction that raises is
undone whole. Each change gets the next resource_version when it is written; committing
makes them the store's, appends the events to a bounded log and hands them to every
listener, in one synchronous step. A transaction therefore must not span an `await`:
the store is owned by one event loop, and reading the store while a transaction is open
is refused rather than answered with uncommitted state.

The EndpointSlice controller runs inside the transaction: a write that touches a Pod or
a Service marks the Services whose selector matched the pod before or after the write,
and those are reconciled once, before the transaction next reads or writes an
EndpointSlice and at the latest before it commits. The result is the same as running the
controller after every write, at a cost of O(pods) rather than O(pods²) for a bulk load.

Durability: one listener may be subscribed as `critical` (the journal, e.g.
`registry.sqlite.SqliteJournal`). It is called inside the commit, before the commit is
visible; if it raises, the transaction is undone (objects, allocations, resource
version) and the error propagates to the writer, so a write is acknowledged only once
it is saved. `restore(documents, resource_version)` loads a saved state into a new
store: objects keep their identity and versions, and the store goes on from there.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from itertools import takewhile
from types import MappingProxyType, TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar

from kdns import multimap
from kdns.config import Settings
from kdns.registry import admission, endpoints, manifests, objects
from kdns.registry.allocator import ClusterIPAllocator, IPNetwork, NodePortAllocator
from kdns.registry.errors import (
    AlreadyExists,
    Conflict,
    Expired,
    ManifestError,
    NotFound,
    RegistryError,
)
from kdns.registry.manifests import Document
from kdns.registry.objects import (
    ADDED,
    API_VERSIONS,
    CONTROLLER_NAME,
    DELETED,
    ENDPOINT_SLICE,
    MODIFIED,
    NAMESPACE,
    NODE,
    POD,
    SERVICE,
    EndpointSlice,
    Event,
    KubeObject,
    Pod,
    Service,
    SliceOwner,
    selector_matches,
)


class TransactionError(RegistryError):
    """A transaction is already open: transactions do not nest."""


class RestoreError(RegistryError):
    """A saved registry state cannot be restored."""


log = logging.getLogger(__name__)

DEFAULT_SERVICE_CIDRS: tuple[IPNetwork, ...] = next(
    f.default for f in dataclasses.fields(Settings) if f.name == "service_cidrs"  # type: ignore[misc]
)
INITIAL_NAMESPACES = ("default", "kube-system")
_NONE: Mapping[str, KubeObject] = MappingProxyType({})  # a namespace without objects of a kind
Listener = Callable[[Sequence[Event]], None]
_P = ParamSpec("_P")
_T = TypeVar("_T")
# A change committed elsewhere: kind, namespace, name, document (None: deleted), version.
Committed = tuple[str, str, str, Mapping[str, Any] | None, int]


@dataclasses.dataclass(frozen=True, slots=True)
class Preview(Generic[_T]):
    """What a transaction would do (`Store.preview`): its result, and every object it
    touched as it was before (None: absent) and would be after (None: deleted)."""

    result: _T
    before: Mapping[tuple[str, str, str], KubeObject | None]
    after: Mapping[tuple[str, str, str], KubeObject | None]

_ORDER = {NAMESPACE: 0, NODE: 1, SERVICE: 3, POD: 4, ENDPOINT_SLICE: 5}
# apply_order of a restored typed object: its Service holds its addresses (it reserves them).
_TYPED_ORDER = {**_ORDER, SERVICE: 2}


def apply_order(doc: Mapping[str, Any] | Document) -> int:
    """Where a document goes when a batch is applied: Namespaces, Nodes, Services asking
    for particular cluster IPs or node ports, other Services, Pods, EndpointSlices (so
    that what a document needs exists, and requested addresses are reserved before any
    are allocated). Unknown kinds go last and are refused when their turn comes."""
    if isinstance(doc, Document):  # (a plain class: isinstance is quick)
        if doc.order is not None:
            return doc.order
        body = doc.body
    else:
        body = doc
    kind = body.get("kind")  # (every body is a mapping: load_text refuses the others)
    if kind == SERVICE and _requests_allocation(body):
        return 2
    return _ORDER.get(kind, 6) if isinstance(kind, str) else 6


def _requests_allocation(body: Mapping[str, Any]) -> bool:
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return False
    listed = spec.get("clusterIPs")
    ips = [spec.get("clusterIP"), *(listed if isinstance(listed, list) else [])]
    if any(ip not in (None, "", manifests.CLUSTER_IP_NONE) for ip in ips):
        return True
    ports = spec.get("ports")
    return isinstance(ports, list) and any(isinstance(p, Mapping) and p.get("nodePort") for p in ports)


class Store:
    """The registry: objects by kind, namespace and name; versions; events; listeners."""

    def __init__(
        self,
        *,
        service_cidrs: Iterable[IPNetwork | str] = DEFAULT_SERVICE_CIDRS,
        node_port_range: tuple[int, int] = (30000, 32767),
        clock: Callable[[], float] = time.time,
        event_log_size: int = 10_000,
    ) -> None:
        self._context = admission.Context(
            cluster_ips=ClusterIPAllocator(service_cidrs),
            node_ports=NodePortAllocator(*node_port_range),
            clock=clock,
        )
        # Each kind's objects by namespace ("" for cluster-scoped kinds), then by name: one
        # dict a namespace, not one keyed by (namespace, name), whose key tuples took 64
        # bytes an object (and listing a namespace needed a set of its names besides).
        # A namespace's dict goes with its last object.
        self._tables: dict[str, dict[str, dict[str, KubeObject]]] = {kind: {} for kind in objects.KIND_CLASSES}
        # Indexes, kept current by _put: pods by (namespace, label, value) (new ones filed
        # when it is next read: _index_pods); services by (namespace, one pair of their
        # selector); slices by (namespace, kubernetes.io/service-name).
        self._pods_by_label: dict[tuple[str, str, str], tuple[str, ...] | set[str]] = {}
        # Pods put in their table and not yet filed under their labels: filed together
        # when the index is next read or a pod leaves it (_index_pods).
        self._unindexed: builtins.list[Pod] = []
        self._services_by_selector: dict[tuple[str, str, str], tuple[str, ...] | set[str]] = {}
        self._slices_by_service: dict[tuple[str, str], tuple[str, ...] | set[str]] = {}
        # Each Service's slices (every one labelled with its name, in name order) as the
        # EndpointSlice controller last left them: while they are still these very
        # objects, a pod's update that leaves its endpoints where they are remakes only
        # those endpoints (Transaction._reconcile).
        self._settled: dict[tuple[str, str], tuple[KubeObject, ...]] = {}
        # The last answer of _selecting_in_order: namespace, labels, service names.
        self._last_selecting: tuple[str, Mapping[str, str], tuple[str, ...]] | None = None
        self._version = 0  # last committed
        self._next = 0  # last assigned; ahead of _version while a transaction is open
        self._log: deque[Event] = deque(maxlen=event_log_size)
        # The newest version whose events are not all in the log any more: a watcher may
        # resume from a version at or after it. (Versions need not be consecutive: with
        # etcd they are its revisions, shared with keys that are not objects.)
        self._log_floor = 0
        self._listeners: list[Listener] = []
        self._critical: Listener | None = None
        self._pending: deque[tuple[Event, ...]] = deque()
        # Objects a bulk load made with their documents Deferred, to pack (pack_deferred).
        self._deferred: builtins.list[KubeObject] = []
        self._deferred_mark = 0  # their number when the open transaction began
        self._delivering = False
        self._open: Transaction | None = None
        self._savepoints = (0, 0)
        # The namespaces every cluster has, as one batch: default is version 1, kube-system 2.
        with self.transaction() as txn:
            for name in INITIAL_NAMESPACES:
                txn.create({"apiVersion": "v1", "kind": NAMESPACE, "metadata": {"name": name}})
        self._fresh = True  # nothing but the initial namespaces: restore() may still run

    # --- Reading ---------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The version of the last committed change (the DNS zone's serial)."""
        return self._version

    def get(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        """One object; namespace "" for Namespaces and Nodes."""
        self._refuse_while_open()
        return self._get(kind, namespace, name)

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[KubeObject]:
        """Every object of a kind (in one namespace), sorted by namespace and name."""
        self._refuse_while_open()
        return self._list(kind, namespace)

    def objects(self) -> builtins.list[KubeObject]:
        """Every object, kind by kind in API_VERSIONS order (Namespaces first), each kind sorted."""
        self._refuse_while_open()
        return [obj for kind in API_VERSIONS for obj in self._list(kind, None)]

    def count(self, kind: str) -> int:
        """How many objects of a kind there are: len(list(kind)), without sorting them all."""
        self._refuse_while_open()
        return sum(map(len, self._table(kind).values()))

    def events_since(self, resource_version: int) -> builtins.list[Event]:
        """The committed events after `resource_version`, oldest first; Expired when the
        log no longer reaches back that far."""
        self._refuse_while_open()
        if resource_version >= self._version:
            return []
        if resource_version < self._log_floor:
            raise Expired(resource_version, self._log_floor)
        events = list(takewhile(lambda event: event.resource_version > resource_version, reversed(self._log)))
        events.reverse()
        return events

    # --- Writing ---------------------------------------------------------------------------

    def transaction(self) -> Transaction:
        """`with store.transaction() as txn:` commits at the end of the block, or undoes
        everything if the block raises."""
        return Transaction(self)

    def subscribe(self, listener: Listener, *, critical: bool = False) -> Callable[[], None]:
        """Call `listener` with each commit's events; returns the function that stops it.

        A listener is called after the commit, in version order, and what it raises is
        logged. A `critical` listener (at most one: the journal) is called inside the
        commit, before anything of it is visible; what it raises undoes the transaction
        and goes to the writer."""
        if critical:
            if self._critical is not None:
                raise TransactionError("a store has at most one critical listener")
            self._critical = listener

            def unsubscribe_critical() -> None:
                if self._critical is listener:
                    self._critical = None

            return unsubscribe_critical
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def restore(
        self, documents: Iterable[Mapping[str, Any]], resource_version: int, *, owned: bool = False,
        typed: Iterable[KubeObject] = (), derived: Iterable[KubeObject] | None = None,
    ) -> None:
        """Load a saved state into this new store, before anything else is written to it
        or subscribed to it (TransactionError otherwise).

        `documents` are objects as the store wrote them (`to_manifest`, e.g. from
        `registry.sqlite.load`): each keeps its uid, creationTimestamp, generation and
        resourceVersion, and a Service its cluster IPs and node ports. Saved Namespaces
        replace the initial default and kube-system. The EndpointSlice controller then
        runs for every Service; the slices it writes, and the store, are at
        max(resource_version, every document's version), so versions never go back.
        Listeners are not called: subscribe afterwards and read the store. A document that
        cannot be restored raises RestoreError naming it, and the store is left new. With
        `owned`, the documents are fresh dicts nobody else holds (sqlite.load's): the store
        changes them instead of copying them, and empties each once it is stored.

        `typed` are objects a store of this kdns held (`registry.sqlite.load`'s typed
        objects): they are taken as they are, their cluster IPs and node ports reserved,
        without reading their documents again. `derived` are the slices the EndpointSlice
        controller had written for them, saved with them: then the controller does not
        run again for the typed Services (only for those restored from documents)."""
        self._refuse_while_open()
        if not self._fresh or self._listeners or self._critical is not None:
            raise TransactionError("restore needs a new store, before any write or subscription")
        txn = Transaction(self)
        txn.__enter__()
        try:
            top = txn._restore(documents, typed, derived, max(resource_version, self._version), owned)
        except BaseException:
            txn._state = "closed"
            self._end(txn, commit=False)
            raise
        txn._state = "closed"
        # Silent: no events, and the log starts empty at `top` (older versions are Expired).
        self._version = self._next = top
        self._log.clear()
        self._log_floor = top
        self._context.cluster_ips.commit()
        self._context.node_ports.commit()
        self._open = None
        self._fresh = False

    @property
    def deferred(self) -> int:
        """How many documents a bulk load left Deferred, still to pack (pack_deferred)."""
        return len(self._deferred)

    def pack_deferred(self, limit: int) -> int:
        """Pack up to `limit` of the documents a bulk load left Deferred (admission.admit's
        `remake`); how many are left. Reads of them are exact before and after: this
        only changes how an object holds its document."""
        deferred = self._deferred
        for _ in range(min(limit, len(deferred))):
            obj = deferred.pop()
            obj.document = objects.packed(obj.document)
        return len(deferred)

    # --- Commits made elsewhere (the etcd store) ---------------------------------------------

    def preview(self, change: Callable[[Transaction], _T]) -> Preview[_T]:
        """Run `change(txn)` in a transaction, EndpointSlice controller included, and undo
        it: what it returned, and each object it touched as it was before and after.

        For a replica whose commits are made elsewhere (`kdns.etcd.store`): the writer sends
        the preview as one compare-and-swap, and the store learns the result from the
        watch (`apply_committed`) like every other replica. What `change` raises
        propagates, and nothing of it remains."""
        self._refuse_while_open()
        txn = Transaction(self)
        txn.__enter__()
        try:
            result = change(txn)
            txn._atomic(txn._flush)
            before: dict[tuple[str, str, str], KubeObject | None] = {}
            for kind, namespace, name, old in txn._journal:
                before.setdefault((kind, namespace, name), old)
            after = {key: self._at(*key) for key in before}
        finally:
            txn._state = "closed"
            self._end(txn, commit=False)
        # What the preview allocated is free again, but its write is on its way: the next
        # preview starts after it, so that writes in flight together take other addresses.
        context = self._context
        for obj in after.values():
            if isinstance(obj, Service):
                for ip in obj.cluster_ips:
                    context.cluster_ips.skip(ip)
                for port in obj.ports:
                    if port.node_port:
                        context.node_ports.skip(port.node_port)
        return Preview(result, before, after)

    def apply_committed(self, changes: Sequence[Committed]) -> None:
        """Apply changes another process committed (etcd's watch, in revision order):
        each (kind, namespace, name, document or None for a deletion, version). The
        documents are as a store wrote them, admitted again with their identity (as
        `restore`); the EndpointSlice controller does not run (its slices come in the
        same commits). Listeners get the events, like those of a local commit."""
        self._refuse_while_open()
        if not changes:
            return
        context = self._context
        olds = []
        for kind, namespace, name, _doc, _version in changes:  # give back first: a batch may move an IP
            old = self._table(kind).get(namespace, _NONE).get(name)
            if old is not None:
                admission.release(old, context)
            olds.append(old)
        events: list[Event] = []
        for (kind, namespace, name, doc, version), old in zip(changes, olds, strict=True):
            new: KubeObject | None = None
            if doc is not None:
                try:
                    new = admission.admit(doc, None, context, version, restore=True, kind=kind)
                except RegistryError:
                    # Written by a kdns that admitted it: only a newer kdns's document can
                    # fail here. Not served, rather than served half-read.
                    log.exception("%s %s/%s at version %d cannot be read: not served", kind, namespace, name, version)
            if new is None and old is None:
                continue
            self._put(kind, namespace, name, new, old)
            if new is None:
                events.append(Event(DELETED, manifests.with_resource_version(old, version), old, version))  # type: ignore[arg-type]
            else:
                events.append(Event(MODIFIED if old is not None else ADDED, new, old, version))
        context.cluster_ips.commit()
        context.node_ports.commit()
        self._version = self._next = max(self._version, *(change[4] for change in changes))
        if events:
            self._fresh = False
            self._append_log(events)
            self._deliver(tuple(events))

    def resync(self, documents: Iterable[tuple[Mapping[str, Any], int]], resource_version: int) -> None:
        """Make the store hold exactly `documents` (each with its version), read at
        `resource_version`: the relist after a watch could not resume. What differs is
        applied as `apply_committed` does; watchers of the API older than it get 410."""
        wanted = {manifests.key_parts(doc): (doc, version) for doc, version in documents}
        changes: list[Committed] = []
        for kind, table in self._tables.items():
            for namespace, names in table.items():
                changes.extend((kind, namespace, name, None, resource_version) for name in names
                               if (kind, namespace, name) not in wanted)
        for (kind, namespace, name), (doc, version) in sorted(wanted.items(), key=lambda item: apply_order(item[1][0])):
            current = self._at(kind, namespace, name)
            if current is None or current.meta.resource_version != version:
                changes.append((kind, namespace, name, doc, version))
        self.apply_committed(changes)
        self._version = self._next = max(self._version, resource_version)
        # The changes in between are not in the log: a watcher from before must relist.
        self._log_floor = max(self._log_floor, resource_version)

    # --- Internals -------------------------------------------------------------------------

    def _refuse_while_open(self) -> None:
        if self._open is not None:
            raise TransactionError("a transaction is open: read through it, and do not await inside it")

    def _table(self, kind: str) -> dict[str, dict[str, KubeObject]]:
        table = self._tables.get(kind)
        if table is None:
            raise ManifestError(f'no matches for kind "{kind}"')
        return table

    def _at(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        """The object of a known kind at (namespace, name), "" for a cluster-scoped one's."""
        return self._tables[kind].get(namespace, _NONE).get(name)

    def _get(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        if kind not in objects.NAMESPACED_KINDS:
            namespace = ""
        return self._table(kind).get(namespace, _NONE).get(name)

    def _list(self, kind: str, namespace: str | None) -> builtins.list[KubeObject]:
        table = self._table(kind)
        if namespace is None or kind not in objects.NAMESPACED_KINDS:
            return [names[name] for space in sorted(table) for names in (table[space],) for name in sorted(names)]
        names = table.get(namespace, _NONE)
        return [names[name] for name in sorted(names)]

    def _put(self, kind: str, namespace: str, name: str, new: KubeObject | None, old: KubeObject | None) -> None:
        """Replace `old` (None: absent) by `new` (None: delete) in the table and indexes."""
        table = self._tables[kind]
        if old is not None and new is not None and _indexed_by(old) == _indexed_by(new):
            table[namespace][name] = new  # (a readiness report: the indexes stay)
            return
        if old is not None:
            self._index(old, add=False)
        if new is None:
            names = table[namespace]
            del names[name]
            if not names:
                del table[namespace]
        else:
            held = table.get(namespace)
            if held is None:
                held = table[namespace] = {}
            held[name] = new
            self._index(new, add=True)

    def _index(self, obj: KubeObject, *, add: bool) -> None:
        if add and isinstance(obj, Pod):  # (first: a bulk load puts 100,000)
            self._unindexed.append(obj)
            return
        namespace, name = obj.meta.namespace, obj.meta.name
        # A few members per key, as a rule: tuples (kdns/multimap.py).
        change = multimap.add_some if add else multimap.discard_some
        if isinstance(obj, Pod):
            self._index_pods()
            for label, value in obj.meta.labels.items():
                change(self._pods_by_label, (namespace, label, value), name)
        elif isinstance(obj, Service):
            if obj.selector:
                label, value = min(obj.selector.items())
                change(self._services_by_selector, (namespace, label, value), name)
                self._last_selecting = None  # (see _selecting_in_order)
        elif obj.kind == ENDPOINT_SLICE:
            service = obj.service_name  # type: ignore[attr-defined]
            if service:
                change(self._slices_by_service, (namespace, service), name)

    def _index_pods(self) -> None:
        """File the pods put since the last call under their labels, as _index would have
        one by one, in the same order. A bulk load puts 100,000 pods before the first
        read: each key's names are gathered and become its tuple (or set) at once,
        instead of a tuple made again for every pod. (No name is there twice: a pod
        leaves the index, through here, before it is put again.)"""
        pods = self._unindexed
        if not pods:
            return
        self._unindexed = []
        gathered: dict[tuple[str, str, str], builtins.list[str]] = {}
        for pod in pods:
            meta = pod.meta
            namespace, name = meta.namespace, meta.name
            for label, value in meta.labels.items():
                names = gathered.get((namespace, label, value))
                if names is None:
                    gathered[(namespace, label, value)] = [name]
                else:
                    names.append(name)
        table = self._pods_by_label
        for key, names in gathered.items():
            if key in table:
                for name in names:
                    multimap.add_some(table, key, name)
            else:  # (what multimap.add_some makes of them, one by one)
                table[key] = tuple(names) if len(names) < multimap.MANY else set(names)

    def _selecting_in_order(self, namespace: str, labels: Mapping[str, str]) -> tuple[str, ...]:
        """_services_selecting, sorted. The last answer is kept until a Service's selector
        is indexed or unindexed: a bulk load's pods come a workload at a time, each of its
        pods holding one mapping of their labels (objects.shared_labels), so most pods
        ask what the pod before asked (a tenth of a second over 100,000 pods)."""
        last = self._last_selecting
        if last is not None and last[1] is labels and last[0] == namespace:
            return last[2]
        found = tuple(sorted(self._services_selecting(namespace, labels)))
        self._last_selecting = (namespace, labels, found)
        return found

    def _services_selecting(self, namespace: str, labels: Mapping[str, str]) -> set[str]:
        """Names of the services in `namespace` whose selector matches `labels`."""
        found: set[str] = set()
        services = self._tables[SERVICE].get(namespace, _NONE)
        for label, value in labels.items():
            for name in self._services_by_selector.get((namespace, label, value), ()):
                service = services[name]
                if selector_matches(service.selector, labels):  # type: ignore[attr-defined]
                    found.add(name)
        return found

    def _pods_selected(self, service: Service) -> builtins.list[Pod]:
        namespace, selector = service.meta.namespace, service.selector
        if not selector:
            return []
        self._index_pods()
        candidates = []
        for label, value in selector.items():
            names = self._pods_by_label.get((namespace, label, value))
            if not names:
                return []
            candidates.append(names)
        pods = self._tables[POD][namespace]  # (there are pods: candidates name some)
        selected = [pods[name] for name in min(candidates, key=len)]
        if len(candidates) == 1:
            return selected  # type: ignore[return-value]  # the index matched the one label
        return [pod for pod in selected if selector_matches(selector, pod.meta.labels)]  # type: ignore[misc]

    def _begin(self, txn: Transaction) -> None:
        if self._open is not None:
            raise TransactionError()
        self._open = txn
        self._savepoints = (self._context.cluster_ips.savepoint(), self._context.node_ports.savepoint())
        self._deferred_mark = len(self._deferred)

    def _end(self, txn: Transaction, *, commit: bool) -> None:
        events = tuple(txn._events) if commit else ()
        if events and self._critical is not None:
            try:
                self._critical(events)
            except BaseException:
                self._end(txn, commit=False)
                raise
        if commit:
            self._version = self._next
            self._append_log(events)
            if events:
                self._fresh = False
        else:
            txn._undo(0, 0, self._version, 0)
            del self._deferred[self._deferred_mark:]  # (objects no one holds any more)
            self._context.cluster_ips.rollback(self._savepoints[0])
            self._context.node_ports.rollback(self._savepoints[1])
            events = ()
        self._context.cluster_ips.commit()
        self._context.node_ports.commit()
        self._open = None
        if events:
            self._deliver(events)

    def _append_log(self, events: Sequence[Event]) -> None:
        log_, maxlen = self._log, self._log.maxlen
        assert maxlen is not None
        dropped = len(log_) + len(events) - maxlen
        if dropped > 0:
            last_dropped = log_[dropped - 1] if dropped <= len(log_) else events[dropped - len(log_) - 1]
            self._log_floor = max(self._log_floor, last_dropped.resource_version)
        log_.extend(events)

    def _deliver(self, events: tuple[Event, ...]) -> None:
        # A listener may commit a transaction of its own; its events wait until every
        # listener has seen these, so that each listener sees commits in version order.
        self._pending.append(events)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                batch = self._pending.popleft()
                for listener in list(self._listeners):
                    try:
                        listener(batch)
                    except Exception:
                        log.exception(
                            "registry listener %r failed on the commit of resource versions %d-%d",
                            listener, batch[0].resource_version, batch[-1].resource_version,
                        )
        finally:
            self._delivering = False


def _listed(table: Mapping[str, KubeObject], names: Iterable[str]) -> builtins.list[KubeObject]:
    """The objects of `table` named `names`, in name order (a loop: a comprehension is a
    call of its own, and the controller lists a Service's slices twice a flip)."""
    found = []
    for name in sorted(names):
        found.append(table[name])  # noqa: PERF401
    return found


def _give_back(doc: Mapping[str, Any]) -> None:
    """Empty a document given to the store (`owned`) once its object is stored (which
    holds it packed): its memory is then free for the objects that come next. A load
    holds all its documents until the end (a big cluster's take 220 MiB); freed only then,
    the space stays with the process, scattered between the objects that live on."""
    if type(doc) is dict:
        doc.clear()


def _same_content(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Equal documents apart from metadata.resourceVersion: writing one is no change."""
    if new.keys() != old.keys():
        return False
    for key, value in new.items():
        if key != "metadata":
            if value != old[key]:
                return False
            continue
        before = old[key]
        if value.keys() != before.keys():
            return False
        if any(v != before[k] for k, v in value.items() if k != "resourceVersion"):
            return False
    return True


def _saved_version(doc: Mapping[str, Any], default: int) -> int:
    """A saved document's metadata.resourceVersion; `default` when it has none."""
    metadata = doc.get("metadata")
    value = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
    if value in (None, ""):
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    raise RestoreError(f"metadata.resourceVersion {value!r}: not a positive integer")


def _describe(doc: Any) -> str:
    """`Service default/web` for messages about a document that may be malformed."""
    if not isinstance(doc, Mapping):
        return f"document {doc!r:.40}"
    metadata = doc.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    where = f"{metadata.get('namespace')}/" if metadata.get("namespace") else ""
    return f"{doc.get('kind', 'object')} {where}{metadata.get('name', '?')}"


def _indexed_by(obj: KubeObject) -> object:
    """What Store._index files an object under, besides its kind, namespace and name."""
    if isinstance(obj, Pod):
        return obj.meta.labels
    if isinstance(obj, Service):
        return obj.selector
    if isinstance(obj, EndpointSlice):
        return obj.service_name
    return None


def _placement(pod: Pod) -> tuple[Any, ...]:
    """What decides where the EndpointSlice controller puts a selected pod's endpoints:
    its addresses, whether its phase leaves it out, and its ports (named target ports)."""
    return pod.pod_ips, pod.phase in ("Succeeded", "Failed"), pod.container_ports


def _endpoint_view(pod: Pod | None) -> tuple[Any, ...] | None:
    """What the EndpointSlice controller reads of a pod."""
    if pod is None:
        return None
    return (pod.meta.labels, pod.meta.uid, pod.meta.deletion_timestamp, pod.pod_ips, pod.phase, pod.ready,
            pod.hostname, pod.subdomain, pod.node_name, pod.container_ports)


class Transaction:
    """A batch of writes, applied at once and committed (or undone) as a whole.

    Writes take Kubernetes documents; `kind` and `apiVersion` pick the object's class.
    Each write is atomic: if it raises, nothing of it remains.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._state = "new"
        self._journal: list[tuple[str, str, str, KubeObject | None]] = []  # what to put back
        self._events: list[Event] = []
        # Set while restoring: every write (the controller's slices) gets this version.
        self._fixed_version: int | None = None
        # Services to reconcile, in order, each with the pods whose endpoints alone changed
        # (they stay where they are), or None: reconcile it whole.
        self._dirty: dict[tuple[str, str], set[str] | None] = {}
        self._cleared: list[tuple[str, str]] = []  # taken off _dirty: put back if that is undone
        self._admitted: tuple[KubeObject, dict[str, Any]] | None = None  # (see `admitted`)

    def __enter__(self) -> Self:
        if self._state != "new":
            raise TransactionError("a transaction can be entered only once")
        self._store._begin(self)
        self._state = "open"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        store = self._store
        if exc_type is None:
            try:
                self._flush()
            except BaseException:
                self._state = "closed"
                store._end(self, commit=False)
                raise
        self._state = "closed"
        store._end(self, commit=exc_type is None)

    # --- Reading ---------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        """One object as this transaction has left it."""
        self._check_open()
        if kind == ENDPOINT_SLICE:
            self._atomic(self._flush)
        return self._store._get(kind, namespace, name)

    def list(self, kind: str, namespace: str | None = None) -> builtins.list[KubeObject]:
        """Every object of a kind as this transaction has left them, sorted."""
        self._check_open()
        if kind == ENDPOINT_SLICE:
            self._atomic(self._flush)
        return self._store._list(kind, namespace)

    # --- Writing ---------------------------------------------------------------------------

    def create(self, doc: Mapping[str, Any]) -> KubeObject:
        """Store a new object (AlreadyExists, Invalid, NotFound for its namespace)."""
        return self._atomic(self._create, doc)

    def update(self, doc: Mapping[str, Any], *, read: tuple[KubeObject, dict[str, Any]] | None = None) -> KubeObject:
        """Replace an object (NotFound; Conflict if doc's metadata.resourceVersion is set
        and is not the stored one). An unchanged object is not written again. `read`: an
        object and its document as the caller unpacked it (and has not changed since),
        the API's patch made from it: taken instead of unpacking the object again, if it
        is still the one stored."""
        return self._atomic(self._update, doc, True, read)

    def admitted(self, obj: KubeObject) -> dict[str, Any] | None:
        """The document the last `update` admitted for `obj`, if that update wrote `obj`:
        what `obj` holds packed, for the API's reply without unpacking it again. Nothing
        else holds it; the caller may only read it."""
        admitted = self._admitted
        return admitted[1] if admitted is not None and admitted[0] is obj else None

    def apply(self, doc: Mapping[str, Any]) -> KubeObject:
        """Create or replace, whatever the document's resourceVersion (`kubectl apply`)."""
        return self._atomic(self._apply, doc)

    def delete(self, kind: str, namespace: str, name: str) -> KubeObject:
        """Delete an object and return its last state. A Namespace takes everything in it
        along; a Service its managed EndpointSlices, cluster IPs and node ports."""
        return self._atomic(self._delete, kind, namespace, name)

    def apply_documents(self, documents: Iterable[Document], *, owned: bool = False) -> builtins.list[KubeObject]:
        """Apply loaded documents in `apply_order`, all or none: a refusal undoes the
        batch and is a ManifestError that names the file and document (the exception it
        wraps is its __cause__). With `owned`, the bodies are the caller's to give away
        (load_paths's are, when nothing else reads them): the store changes them instead
        of copying each one, and empties each once it is stored (see _give_back)."""
        return self._atomic(self._apply_documents, sorted(documents, key=apply_order), owned)

    def _apply_documents(self, documents: builtins.list[Document], owned: bool) -> builtins.list[KubeObject]:
        # One undo mark for the batch, not one per document: a start-up load is 100,000s.
        stored: builtins.list[KubeObject] = []
        apply = self._apply
        # Documents kept small (read_paths' `keep`) are made again when their new objects'
        # documents are packed, after kdns answers (Store.pack_deferred), unless a critical
        # listener (the journal) packs them all in this commit anyway.
        defer = owned and self._store._critical is None
        add_pod = self._add_pod
        for document in documents:
            packed = document.packed
            # (A packed one's tree is owned: no one else has it. A remade one's made here,
            # as Document.tree would: one call less for each of 100,000 pods.)
            body = packed() if callable(packed) else document.tree()
            kept = packed if defer else None
            remake = None if kept is None else kept if callable(kept) else partial(objects.unpack, kept)
            key = document.key
            try:
                if remake is not None and key is not None and key[0] == POD:
                    new = add_pod(body, key[1], key[2], remake)
                    if new is not None:
                        stored.append(new)
                        continue
                stored.append(apply(body, owned, key, remake))
            except RegistryError as exc:
                raise document.error(exc) from exc
            if owned and packed is None:  # (a kept one's tree is gone with `body`)
                _give_back(body)
        return stored

    # --- Internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise TransactionError(
                "the transaction is closed" if self._state == "closed" else "use the transaction in a with statement"
            )

    def _atomic(self, write: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        self._check_open()
        store = self._store
        marks = (len(self._journal), len(self._events), store._next, len(self._cleared))
        savepoints = store._context.cluster_ips.savepoint(), store._context.node_ports.savepoint()
        try:
            return write(*args, **kwargs)
        except BaseException:
            self._undo(*marks)
            store._context.cluster_ips.rollback(savepoints[0])
            store._context.node_ports.rollback(savepoints[1])
            raise

    def _undo(self, journal_length: int, event_count: int, version: int, cleared: int) -> None:
        store = self._store
        while len(self._journal) > journal_length:
            kind, namespace, name, before = self._journal.pop()
            store._put(kind, namespace, name, before, store._at(kind, namespace, name))
        del self._events[event_count:]
        store._next = version
        # A reconcile that is undone must run again later.
        while len(self._cleared) > cleared:
            self._dirty[self._cleared.pop()] = None

    def _clear(self, key: tuple[str, str]) -> None:
        if key in self._dirty:
            del self._dirty[key]
            self._cleared.append(key)

    def _create(self, doc: Mapping[str, Any]) -> KubeObject:
        key = manifests.key_of(doc)
        if key.kind == ENDPOINT_SLICE:
            self._flush()
        self._require_namespace(key.namespace)
        if self._store._get(key.kind, key.namespace, key.name) is not None:
            raise AlreadyExists(key.kind, key.name)
        return self._write(doc, None, key.kind)

    def _update(
        self, doc: Mapping[str, Any], check_version: bool, read: tuple[KubeObject, dict[str, Any]] | None = None
    ) -> KubeObject:
        key = manifests.key_of(doc)
        if key.kind == ENDPOINT_SLICE:
            self._flush()
        old = self._store._get(key.kind, key.namespace, key.name)
        if old is None:
            self._require_namespace(key.namespace)
            raise NotFound(key.kind, key.name)
        if check_version:
            wanted = doc.get("metadata", {}).get("resourceVersion")
            if wanted not in (None, "") and str(wanted) != str(old.meta.resource_version):
                raise Conflict(key.kind, key.name)
        # (The object itself, not an equal one: a write in between makes a new object.)
        stored = read[1] if read is not None and read[0] is old else None
        # Copied here, as _write would: admission makes the copy into new's document.
        body = manifests.copy_tree(doc)
        new = self._write(body, old, key.kind, owned=True, stored=stored)
        self._admitted = (new, body) if new is not old else None
        return new

    def _apply(
        self, doc: Mapping[str, Any], owned: bool = False, key: tuple[str, str, str] | None = None,
        remake: Callable[[], dict[str, Any]] | None = None,
    ) -> KubeObject:
        # _create or _update, without their second look-up (a bulk load is all applies).
        # `key` is key_parts(doc) when the caller has it (read_paths' documents); `remake`
        # makes `doc` again (admission.admit).
        kind, namespace, name = key or manifests.key_parts(doc)  # (namespace "" for cluster kinds)
        if kind == ENDPOINT_SLICE:
            self._flush()
        old = self._store._tables[kind].get(namespace, _NONE).get(name)
        if old is None:
            self._require_namespace(namespace)
        return self._write(doc, old, kind, owned, None, None, remake)

    def _add_pod(self, doc: Mapping[str, Any], namespace: str, name: str, remake: Callable[[], dict[str, Any]]) -> Pod | None:
        """`_apply(doc, True, (POD, namespace, name), remake)` for a bulk load's new Pod
        whose document is plain (admission.new_pod), in one step: the Pod put, journaled,
        filed to index, its event and its Services marked, as _write, _record and _put
        would. None, having done nothing, for any other (one that exists, whose namespace
        does not, or whose document is not plain): `_apply` takes it.
        (tests/registry/test_bulk_load.py holds both ways equal.)"""
        store = self._store
        pods = store._tables[POD]
        held = pods.get(namespace)
        if (held is not None and name in held) or self._fixed_version is not None:
            return None
        if namespace not in store._tables[NAMESPACE].get("", _NONE):
            return None
        version = store._next + 1
        pod = admission.new_pod(doc, store._context, version, remake)
        if pod is None:
            return None
        store._deferred.append(pod)
        store._next = version
        self._journal.append((POD, namespace, name, None))
        if held is None:
            held = pods[namespace] = {}
        held[name] = pod
        store._unindexed.append(pod)
        self._events.append(Event(ADDED, pod, None, version))
        self._mark_pod(pod)
        return pod

    def _require_namespace(self, namespace: str) -> None:
        if namespace and namespace not in self._store._tables[NAMESPACE].get("", _NONE):
            raise NotFound(NAMESPACE, namespace)

    def _restore(
        self, documents: Iterable[Mapping[str, Any]], typed: Iterable[KubeObject],
        derived: Iterable[KubeObject] | None, version: int, owned: bool,
    ) -> int:
        """Put saved documents and typed objects in place as they are (Store.restore); the
        version to go on from."""
        store = self._store
        replaceable = {(NAMESPACE, "", name) for name in INITIAL_NAMESPACES}
        top = version
        # Both in apply_order (a typed Service has its addresses already: it reserves them).
        entries: builtins.list[tuple[int, Mapping[str, Any] | None, KubeObject | None]] = [
            (apply_order(doc), doc, None) for doc in documents
        ]
        entries.extend((_TYPED_ORDER.get(obj.kind, 6), None, obj) for obj in typed)
        entries.extend((7, None, obj) for obj in derived or ())  # after everything they are made of
        entries.sort(key=lambda entry: entry[0])
        tables, namespaces, journal, dirty = store._tables, store._tables[NAMESPACE], self._journal, self._dirty
        none = _NONE
        reserve, context = admission.reserve, store._context
        # (Lean on purpose: a start from the durable store puts 120,000 typed objects here.)
        for _, doc, obj in entries:
            try:
                if obj is None:
                    assert doc is not None
                    key = manifests.key_of(doc)
                    kind, namespace, name = key.kind, key.namespace, key.name
                    saved = _saved_version(doc, version)
                else:
                    kind, meta = obj.kind, obj.meta
                    namespace, name = meta.namespace, meta.name
                    saved = meta.resource_version or version
                old = tables[kind].get(namespace, none).get(name)
                if old is not None:
                    if (kind, namespace, name) not in replaceable:
                        raise AlreadyExists(kind, name)
                    replaceable.discard((kind, namespace, name))
                if namespace and namespace not in namespaces.get("", none):
                    raise NotFound(NAMESPACE, namespace)
                if obj is None:
                    new = admission.admit(doc, None, context, saved, owned=owned, restore=True, kind=kind)  # type: ignore[arg-type]
                else:
                    if kind == SERVICE:
                        reserve(obj, context)
                    new = obj
            except RegistryError as exc:
                raise RestoreError(f"{_describe(doc if obj is None else obj.manifest)}: {exc}") from exc
            if saved > top:
                top = saved
            if owned and doc is not None:
                _give_back(doc)
            journal.append((kind, namespace, name, old))
            store._put(kind, namespace, name, new, old)
            if kind == SERVICE and (obj is None or derived is None):
                dirty[(namespace, name)] = None
        self._fixed_version = top
        # Filed now, as part of the start: a restore of typed objects reconciles no
        # Service, and the first write after it would file 100,000 pods.
        store._index_pods()
        try:
            self._flush()
        except RegistryError as exc:
            raise RestoreError(f"the EndpointSlice controller: {exc}") from exc
        return top

    def _write(
        self, doc: Mapping[str, Any], old: KubeObject | None, kind: str, owned: bool = False,
        fields: dict[str, Any] | None = None, stored: dict[str, Any] | None = None,
        remake: Callable[[], dict[str, Any]] | None = None,
    ) -> KubeObject:
        """Admit and store `doc`, of `kind` (its key_of's, which the caller has checked);
        `fields`, `stored` (old's document, if the caller has read it) and `remake` as
        admission.admit takes them. (Positional arguments too: a bulk load writes
        100,000 objects, and a call by keywords costs several times one without.)"""
        store = self._store
        version = store._next + 1 if self._fixed_version is None else self._fixed_version
        # Admission changes a document it owns into new's: that is compared with old's
        # below, without unpacking either again (admission reads old's too).
        body = doc if owned else manifests.copy_tree(doc)
        if stored is None and old is not None:
            stored = old.manifest
        new = admission.admit(body, old, store._context, version, owned=True, kind=kind, fields=fields, stored=stored,
                              remake=remake)
        if old is not None and stored is not None and _same_content(body, stored):
            return old
        if isinstance(new.document, objects.Deferred):
            store._deferred.append(new)
        store._next = version
        self._record(new, old, MODIFIED if old is not None else ADDED, version)
        if isinstance(new, Pod):
            if old is None:
                self._mark_pod(new)
            elif _endpoint_view(new) != _endpoint_view(old):  # type: ignore[arg-type]
                self._mark_changed_pod(old, new)  # type: ignore[arg-type]
        elif isinstance(new, Service):
            self._dirty[(new.meta.namespace, new.meta.name)] = None
        return new

    def _record(self, new: KubeObject | None, old: KubeObject | None, kind_of_event: str, version: int) -> None:
        obj = new if new is not None else old
        assert obj is not None
        self._journal.append((obj.kind, obj.meta.namespace, obj.meta.name, old))
        self._store._put(obj.kind, obj.meta.namespace, obj.meta.name, new, old)
        if kind_of_event == DELETED:
            assert old is not None
            self._events.append(Event(DELETED, manifests.with_resource_version(old, version), old, version))
        else:
            assert new is not None
            self._events.append(Event(kind_of_event, new, old, version))

    def _mark_pod(self, pod: Pod) -> None:
        """A pod created or deleted: the services selecting it are reconciled whole."""
        store, namespace, labels = self._store, pod.meta.namespace, pod.meta.labels
        last = store._last_selecting
        if last is not None and last[1] is labels and last[0] == namespace:
            names = last[2]  # (_selecting_in_order's own first look, without its call)
        else:
            names = store._selecting_in_order(namespace, labels)
        dirty = self._dirty
        for name in names:
            dirty[(namespace, name)] = None

    def _mark_changed_pod(self, old: Pod, new: Pod) -> None:
        """A pod updated in what the controller reads: a service selecting it before and
        after needs only its endpoints made again, if they stay where they are (same
        addresses, phase group and ports); any other service it enters or leaves is
        reconciled whole."""
        store = self._store
        namespace, pod_name = new.meta.namespace, new.meta.name
        before = store._services_selecting(namespace, old.meta.labels)
        after = before if new.meta.labels == old.meta.labels else store._services_selecting(namespace, new.meta.labels)
        in_place = _placement(old) == _placement(new)
        dirty = self._dirty
        for services in (before, after):  # (in this order, as a delete and a create mark them)
            for name in sorted(services) if len(services) > 1 else services:
                key = (namespace, name)
                if in_place and name in before and name in after:
                    pods = dirty.setdefault(key, set())
                    if pods is not None:
                        pods.add(pod_name)
                else:
                    dirty[key] = None

    def _delete(self, kind: str, namespace: str, name: str) -> KubeObject:
        store = self._store
        store._table(kind)
        if kind not in objects.NAMESPACED_KINDS:
            namespace = ""
        if kind == ENDPOINT_SLICE:
            self._flush()
        old = store._get(kind, namespace, name)
        if old is None:
            raise NotFound(kind, name)
        if kind == NAMESPACE:
            # Kubernetes empties a namespace before it goes; kdns does it at once.
            for contained in (ENDPOINT_SLICE, POD, SERVICE):
                for item in sorted(store._tables[contained].get(name, ())):
                    if store._get(contained, name, item) is not None:
                        self._delete_one(contained, name, item)
        return self._delete_one(kind, namespace, name)

    def _delete_one(self, kind: str, namespace: str, name: str) -> KubeObject:
        store = self._store
        old = store._tables[kind][namespace][name]
        store._next = store._next + 1 if self._fixed_version is None else self._fixed_version
        self._record(None, old, DELETED, store._next)
        admission.release(old, store._context)
        if isinstance(old, Pod):
            self._mark_pod(old)
        elif isinstance(old, Service):
            self._clear((namespace, name))
            store._settled.pop((namespace, name), None)
            for item in sorted(store._slices_by_service.get((namespace, name), ())):
                slice_ = store._tables[ENDPOINT_SLICE][namespace][item]
                if slice_.managed_by == CONTROLLER_NAME:  # type: ignore[attr-defined]
                    self._delete_one(ENDPOINT_SLICE, namespace, item)
        return old

    def _flush(self) -> None:
        """Run the EndpointSlice controller for every service marked since the last run."""
        # In the order they were marked, from a list of the keys: taking the first key of
        # the dict each time scans the slots its deletions left empty, again and again
        # (quadratic; 0.05 s for the 10,000 Services of a big load).
        dirty = self._dirty
        while dirty:
            for key in list(dirty):
                if key not in dirty:
                    continue  # reconciled already
                changed = dirty.pop(key)  # (what _clear does, without its call and second look)
                self._cleared.append(key)
                self._reconcile(key[0], key[1], changed)

    def _reconcile(self, namespace: str, name: str, changed: set[str] | None = None) -> None:
        """The EndpointSlice controller for one service; `changed` names the pods whose
        endpoints alone changed, in place, if nothing else did (Transaction._dirty)."""
        store = self._store
        slices = store._tables[ENDPOINT_SLICE].get(namespace, _NONE)
        key = (namespace, name)
        existing = _listed(slices, store._slices_by_service.get(key, ()))
        service = store._at(SERVICE, namespace, name)
        if changed is not None and service is not None and self._settled(key, existing):
            # Those endpoints made again where they are, as desired_slices would (a
            # readiness flip of one pod of a 1,000-pod Service: one slice, one endpoint).
            # (Loops, not comprehensions: each is a call of its own, on every flip.)
            pods = store._tables[POD].get(namespace, _NONE)
            changed_pods: builtins.list[Pod] = []
            for pod in sorted(changed):
                if pod in pods:
                    changed_pods.append(pods[pod])  # type: ignore[arg-type]  # noqa: PERF401
            managed_slices: builtins.list[EndpointSlice] = []
            at: dict[str, KubeObject] = {}
            for s in existing:
                at[s.meta.name] = s
                if isinstance(s, EndpointSlice) and s.managed_by == CONTROLLER_NAME:
                    managed_slices.append(s)
            updated = endpoints.updated_slices(service, changed_pods, managed_slices)  # type: ignore[arg-type]
            if updated is not None:
                for wanted in updated:
                    held = at[wanted.name]
                    if not self._rewrite_endpoints(held, wanted):  # type: ignore[arg-type]
                        self._write(wanted.manifest, held, ENDPOINT_SLICE, owned=True, fields=wanted.fields,
                                    stored=wanted.stored)
                self._settle(key)
                return
        desired: builtins.list[endpoints.DesiredSlice] = []
        if service is not None:
            desired = endpoints.desired_slices(
                service,  # type: ignore[arg-type]
                store._pods_selected(service),  # type: ignore[arg-type]
                existing,  # type: ignore[arg-type]
                taken_names=slices,
            )
        managed = {s.meta.name: s for s in existing if s.managed_by == CONTROLLER_NAME}  # type: ignore[attr-defined]
        for wanted in desired:
            old = managed.pop(wanted.name, None)
            if old is not None:
                self._write(wanted.manifest, old, ENDPOINT_SLICE, owned=True, fields=wanted.fields)
                continue
            if store._at(ENDPOINT_SLICE, namespace, wanted.name) is not None:
                raise AlreadyExists(ENDPOINT_SLICE, wanted.name)  # desired_slices avoids this
            # A new slice, from its fields alone (no document to admit, pack, or hold).
            version = store._next + 1 if self._fixed_version is None else self._fixed_version
            new = admission.controller_slice(wanted.name, namespace, wanted.labels, wanted.fields,
                                             wanted.service.meta.uid, store._context, version)
            store._next = version
            self._record(new, None, ADDED, version)
        for item in sorted(managed):
            self._delete_one(ENDPOINT_SLICE, namespace, item)
        self._settle(key)

    def _rewrite_endpoints(self, old: EndpointSlice, wanted: endpoints.DesiredSlice) -> bool:
        """Write `wanted`, a slice of the controller's with only endpoints made again in
        place (updated_slices), straight from its typed fields when `old` is held so too
        (`owner`): what admitting its manifest would store (controller_manifest of either
        is the document the other would hold), without making, admitting and parsing it.
        Only its endpoints and so its generation change: its name, address type and ports
        are old's (updated_slices takes them from it), and the labels and owner its
        Service gives it are checked. Whether it did (False: write the manifest)."""
        owner = old.owner
        if (owner is None or self._fixed_version is not None or owner.service_uid != wanted.service.meta.uid
                or old.meta.labels != wanted.labels):
            return False
        if wanted.endpoints == old.endpoints:
            return True  # the same document: no change, as admission would find
        store = self._store
        version = store._next + 1
        new = EndpointSlice(
            meta=old.meta.at_version(version), address_type=old.address_type,
            endpoints=wanted.endpoints, ports=old.ports, owner=SliceOwner(owner.service_uid, owner.generation + 1),
        )
        store._next = version
        self._record(new, old, MODIFIED, version)
        return True

    def _settled(self, key: tuple[str, str], existing: builtins.list[KubeObject]) -> bool:
        """Whether the service's slices, `existing`, are still those its last reconcile
        left (no write since has replaced, added or removed one)."""
        settled = self._store._settled.get(key)
        if settled is None or len(settled) != len(existing):
            return False
        for a, b in zip(settled, existing, strict=True):  # noqa: SIM110  (a loop: all() of a generator is a call per item)
            if a is not b:
                return False
        return True

    def _settle(self, key: tuple[str, str]) -> None:
        """Note the service's slices as its reconcile just left them (none kept once the
        Service is gone)."""
        store = self._store
        if store._at(SERVICE, *key) is None:
            store._settled.pop(key, None)
            return
        slices = store._tables[ENDPOINT_SLICE].get(key[0], _NONE)
        store._settled[key] = tuple(_listed(slices, store._slices_by_service.get(key, ())))
