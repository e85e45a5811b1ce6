"""ClusterIndex: the registry, re-shaped into the tables DNS answers read.

The index is a store listener: `apply` gets each commit's events in
resource_version order and updates every table in place, so an answer given after a
commit already reflects it. Each event costs time in proportion to what it touches: a
Pod or Service event is O(1), an EndpointSlice event re-reads the slices of its one
Service, a Node event is O(labels of its name); nothing walks the whole cluster.
Deleting a Namespace rewrites no table either: visibility is checked when answering;
it costs one pass over the Services, to name the PTR answers it shows or hides.

Addresses are parsed with `ipaddress`, so every spelling of an address finds the same
entry (PTR matching, pod verification; docs/dns-rules.md R10, R14). Tables are keyed by the
packed address (`ip.packed`: canonical, 4 or 16 bytes so the families never collide,
and cheap to hash, which `ipaddress` objects are not); records hold the objects.

The tables describe the cluster, not DNS names: the answer logic decides what exists.
Treat everything returned as read-only.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from operator import itemgetter
from types import MappingProxyType
from typing import NamedTuple, TypeVar

from kdns import multimap
from kdns.authority.names import (
    IPAddress,
    ReversePrefix,
    ancestors,
    dashed,
    target_name,
)
from kdns.config import Settings
from kdns.registry.addresses import dotted_quad
from kdns.registry.objects import (
    DELETED,
    ENDPOINT_SLICE,
    NAMESPACE,
    NODE,
    POD,
    SERVICE,
    EndpointPort,
    EndpointSlice,
    Event,
    Key,
    KubeObject,
    Namespace,
    Node,
    Pod,
    Service,
)
from kdns.reuse import (
    NODES,
    REVERSE_PREFIXES,
    AddressScope,
    Changed,
    ChangeListener,
    EndpointScope,
    EndpointsScope,
    NamespaceScope,
    PodScope,
    Scope,
    ServiceScope,
)

# Pods in these phases have given their address back (docs/dns-rules.md R15).
_GONE_PHASES = frozenset({"Succeeded", "Failed", "Unknown"})
_ADDRESS_TYPES = frozenset({"IPv4", "IPv6"})  # FQDN slices carry no address to publish

NamespacedName = tuple[str, str]  # (namespace, name)
_T = TypeVar("_T")
_P = TypeVar("_P", bytes, str)


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A Service as DNS reads it."""

    service: Service
    # Canonical spec.clusterIPs; () for headless and ExternalName services.
    cluster_ips: tuple[IPAddress, ...]
    # ExternalName: the CNAME target, absolute, as written; None when there is none to
    # publish (not an ExternalName, or an IP address or invalid name, spec §2.5).
    external_name: str | None

    @property
    def is_external(self) -> bool:
        return self.service.type == "ExternalName"

    @property
    def is_headless(self) -> bool:
        return self.service.headless and not self.is_external


@dataclass(slots=True)
class ReadyEndpoint:
    """Every ready address that answers to one endpoint name, with the ports of the slices
    it came from (docs/dns-rules.md R10: several endpoints may share a hostname). Immutable by
    contract, not frozen: a rebuild makes one per endpoint (see registry.objects)."""

    name: str
    addresses: tuple[IPAddress, ...]
    ports: tuple[EndpointPort, ...]


@dataclass(frozen=True, slots=True)
class ServiceEndpoints:
    """The ready endpoints of one Service across all its slices, duplicates collapsed,
    in slice-name then slice order."""

    by_name: Mapping[str, ReadyEndpoint]
    addresses: tuple[IPAddress, ...]


NO_ENDPOINTS = ServiceEndpoints({}, ())


@dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    internal_ips: tuple[IPAddress, ...]


class PtrTarget(NamedTuple):
    """Who an address belongs to: a Service (endpoint None) or one endpoint of it."""

    namespace: str
    service: str
    endpoint: str | None


class _Ready(NamedTuple):
    """One ready address of an EndpointSlice."""

    name: str  # the endpoint name: hostname, else `label`
    ip: IPAddress
    key: bytes  # ip.packed
    text: str  # the address as the slice writes it
    label: str  # dashed(ip)


@dataclass(frozen=True, slots=True)
class _SliceRecord:
    """What one EndpointSlice contributes: its ports and ready addresses, and those as
    ReadyEndpoints by name when each name has one address here (None when one has more):
    what a Service's ServiceEndpoints are made of, made once per version of the slice
    (a readiness flip in a 1,000-pod Service then makes one slice's again, not ten)."""

    service: str
    ports: tuple[EndpointPort, ...]
    ready: tuple[_Ready, ...]
    by_name: dict[str, ReadyEndpoint] | None


# _Ready((name, ip, key, text, label)): tuple.__new__ itself, in C; a NamedTuple's own
# __new__ is a Python function, which made a third of the cost of making one (100,000 at scale).
_new_ready: Callable[[tuple[str, IPAddress, bytes, str, str]], _Ready] = partial(tuple.__new__, _Ready)
_KEY_NAME = itemgetter(2, 0)  # a _Ready's (key, name)
_NAME = itemgetter(0)  # a _Ready's name
_KEY_IP = itemgetter(2, 1)  # a _Ready's (key, ip)
_Read = tuple[IPAddress, bytes, str]  # an address, ip.packed, dashed(ip)
_IPv4 = ipaddress.IPv4Address  # (made from the packed bytes: a third quicker than from their int)
_NO_PODS: Mapping[str, bytes] = MappingProxyType({})


def _packed(text: str) -> bytes | None:
    """_address(text).packed, None for no address."""
    packed = dotted_quad(text)
    if packed is not None:
        return packed
    ip = _other_address(text)
    return None if ip is None else ip.packed


def _read(text: str) -> _Read | None:
    """An address text as the tables use it: (address, packed, dashed label), or None
    when it is no address.

    Not remembered between a pod and its endpoints: reading a dotted quad costs less
    than a look-up in a table of every address of a big cluster (memory it has to wait
    for), and a pod needs only the packed form (_packed)."""
    packed = dotted_quad(text)
    if packed is not None:
        # dashed(ip) without writing the address out again: the text is canonical.
        return _IPv4(packed), packed, text.replace(".", "-")
    ip = _other_address(text)
    return None if ip is None else (ip, ip.packed, dashed(ip))


def _address(text: str) -> IPAddress | None:
    """ipaddress.ip_address(text), None for no address."""
    packed = dotted_quad(text)
    if packed is not None:
        return _IPv4(packed)
    return _other_address(text)


def _other_address(text: str) -> IPAddress | None:
    """_address(text) for a text that is not a dotted quad."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ClusterIndex:
    """The DNS view of the registry, kept current by `apply`.

    `serial` is the resource_version of the last commit seen (the SOA serial,
    docs/dns-rules.md R19). After every `apply` and `rebuild` each `on_change` listener
    hears which scopes it touched (kdns/reuse.py `Changed`), so what was derived from the
    index (ready reply bytes) can drop what may have changed and keep the rest.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.serial = 0
        self._listeners: list[ChangeListener] = []
        self._reset()

    def _reset(self) -> None:
        self.namespaces: set[str] = set()
        self._services: dict[NamespacedName, ServiceRecord] = {}
        self._slices: dict[NamespacedName, _SliceRecord] = {}  # by (namespace, slice name)
        self._slices_by_service: dict[NamespacedName, tuple[str, ...]] = {}  # multimap.add_few
        self._endpoints: dict[NamespacedName, ServiceEndpoints] = {}
        # The ready addresses each Service's endpoints were made of: what it put into
        # _ptr_endpoints is their (key, name) pairs.
        self._endpoint_readies: dict[NamespacedName, Sequence[_Ready]] = {}
        # Keyed by packed address.
        # The owners in a tuple (multimap.add_few: most addresses have one).
        self._ptr_cluster: dict[bytes, tuple[NamespacedName, ...]] = {}
        self._ptr_endpoints: dict[bytes, tuple[tuple[str, str, str], ...]] = {}
        # How many keys of the two tables above lie below each reverse-name prefix: the
        # first 1-3 bytes of an IPv4 key, the first 1-31 hex nibbles of an IPv6 one. A
        # partial reverse name exists (an empty non-terminal) while its count is not 0.
        self._reverse_prefixes: dict[bytes | str, int] = {}
        # False while `rebuild` fills the tables: it counts the reverse prefixes in bulk at
        # the end, and what it touched is everything.
        self._counting = True
        self._touched: set[Scope] = set()  # by the commit `apply` is taking in
        # The reverse prefixes whose count went to 0 or from 0 in it, and whether each
        # existed before: a Service modified in place takes its cluster IP out and back.
        self._crossed: dict[bytes | str, bool] = {}
        # Eligible pods only, by namespace, then name: the packed status.podIP. Nested, not
        # keyed by (namespace, name): a tuple per pod would cost 120 bytes more (56 for
        # the key, 64 for a (namespace, packed) value), 12 MiB at 100,000 pods.
        self._pods: dict[str, dict[str, bytes]] = {}
        self._pod_ips: dict[str, dict[bytes, int]] = {}  # by namespace: how many pods hold each address
        self._nodes: dict[str, NodeRecord] = {}
        self._node_branches: dict[str, int] = {}  # proper suffixes of dotted node names
        self._node_list: tuple[NodeRecord, ...] | None = None
        self._stale: set[NamespacedName] = set()  # services whose slices changed
        # Of those, by `apply`: the slices written, each with what it held of the Service
        # before the commit (None: nothing), for _refresh_service_endpoints to compare.
        self._written: dict[NamespacedName, dict[str, _SliceRecord | None]] = {}

    # --- feeding -----------------------------------------------------------------------

    def rebuild(self, objects: Iterable[KubeObject], resource_version: int) -> None:
        """Forget everything and index `objects` (the store's content at that version).

        A big cluster makes a million records here that all live on: the caller builds
        them with the collector paused (kdns.runtime.long_lived), as kdns.app does."""
        self._reset()
        self._counting = False  # the reverse prefixes and the pods' addresses are counted once, at the end
        put, put_pod = self._put, self._put_pod
        try:
            for obj in objects:
                if type(obj) is Pod:  # (most objects of a big cluster: one call, not two)
                    put_pod(obj)
                else:
                    put(obj)
            self._refresh_endpoints()
        finally:
            self._counting = True
        self._pod_ips = {namespace: dict(Counter(names.values())) for namespace, names in self._pods.items()}
        self._recount_reverse()
        self.serial = resource_version
        self._changed(None)

    def _recount_reverse(self) -> None:
        """`_reverse_prefixes` from the PTR tables, in bulk (Counter counts in C): what a
        rebuild does instead of counting each address as it comes."""
        # Only the longest prefixes are counted from the keys; each shorter one sums the
        # counts of the prefixes one longer (a few hundred, where the keys are 100,000s).
        v4: Counter[bytes] = Counter()
        v6: Counter[str] = Counter()
        for table in (self._ptr_cluster, self._ptr_endpoints):
            v4.update(map(_FIRST_3, [key for key in table if len(key) == 4]))
            v6.update(key.hex()[:31] for key in table if len(key) == 16)
        counts: dict[bytes | str, int] = {}
        for packed in _shorter(v4, 3):
            counts.update(packed.items())
        for nibbles in _shorter(v6, 31):
            counts.update(nibbles.items())
        self._reverse_prefixes = counts

    def apply(self, events: Sequence[Event]) -> None:
        """Store listener: one commit's events, in order."""
        if not events:
            return
        touched = self._touched
        namespaces = set()
        for event in events:
            obj = event.object
            if isinstance(obj, Pod):
                self._apply_pod(obj, event.type == DELETED)
                continue
            key = obj.key
            if key.kind == NAMESPACE:
                namespaces.add(key.name)
            elif key.kind == NODE:
                touched.add(NODES)
            where = (key.namespace, key.name)
            record = self._services.get(where) if key.kind == SERVICE else None
            previous = self._drop(key)
            if event.type != DELETED:
                self._put(obj, previous)
            if isinstance(obj, EndpointSlice):
                self._note_written(key, previous, obj if event.type != DELETED else None)
            elif key.kind == SERVICE:
                self._touch_service(where, record, self._services.get(where))
        # (Loops here and in what it calls, not generators and comprehensions: each is a
        # call of its own, and a readiness flip makes a dozen.)
        for namespace, name in self._stale:  # their slices changed
            touched.add(EndpointsScope(namespace, name))
        self._refresh_endpoints()
        crossed, self._crossed = self._crossed, {}
        prefixes = self._reverse_prefixes
        for prefix, existed in crossed.items():
            if existed != (prefix in prefixes):
                touched.add(REVERSE_PREFIXES)
                break
        for namespace in namespaces:
            touched.update(self._namespace_scopes(namespace))
        self.serial = events[-1].resource_version
        self._touched = set()
        self._changed(frozenset(touched))

    def _apply_pod(self, pod: Pod, deleted: bool) -> None:
        """A Pod event: the address the index holds for the pod made what the Pod now
        holds (none when deleted), and a pod name's answer touched, before and after, only
        if that changes. A readiness report, like most Pod writes, leaves it alone: then
        nothing is taken out and put back."""
        meta = pod.meta
        namespace, name = meta.namespace, meta.name
        held = self._pod_ip(namespace, name)
        holds = None if deleted else _pod_address(pod)
        if holds == held:
            return
        self._drop(Key(POD, namespace, name))
        if holds is not None:
            self._put_pod(pod)
        self._touched.update(PodScope(namespace, h) for h in (held, holds) if h is not None)

    def _namespace_scopes(self, namespace: str) -> Iterator[Scope]:
        """What a Namespace event touches: its NamespaceScope (every name below it reads
        it), and the PTR of its Services' cluster IPs and ready endpoints, which it shows
        or hides (`ptr_targets`). One pass over the Services: Namespaces change rarely."""
        yield NamespaceScope(namespace)
        for (where, name), record in self._services.items():
            if where == namespace:
                yield from (AddressScope(ip.packed) for ip in record.cluster_ips)
                yield from (AddressScope(ready.key) for ready in self._endpoint_readies.get((where, name), ()))

    def advance(self, version: int) -> None:
        """Take `version` as the serial with nothing changed (a follower's empty list):
        nothing changes but the serial the SOA shows (a kept negative answer is sent
        with the new one, kdns/reuse.py `Shared.shows_serial`)."""
        self.serial = version
        self._changed(frozenset())

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call `listener(changed)` after every `apply`, `advance` and `rebuild`: the
        scopes the commit touched (kdns/reuse.py), or None when anything may have changed
        (a rebuild). Returns the call that stops it.

        What touches what: a Service event its ServiceScope and the AddressScope of the
        cluster IPs it takes or gives back, and of its ready endpoints' addresses when it
        starts or stops being one their PTR names (created, deleted, ExternalName); an
        EndpointSlice event its Service's EndpointsScope, the EndpointScope of each
        endpoint name whose ready endpoint it changes and the AddressScope of each ready
        address it adds or takes away; a Pod event the PodScope of its address before and
        after; a Node event NODES; a Namespace event its NamespaceScope and the
        AddressScope of its Services' cluster IPs and ready endpoints; any of them
        REVERSE_PREFIXES when a partial reverse name comes to exist or stops existing.
        """
        self._listeners.append(listener)
        return partial(self._listeners.remove, listener)

    def _changed(self, touched: Changed) -> None:
        for listener in tuple(self._listeners):
            listener(touched)

    def _put(self, obj: KubeObject, previous: _SliceRecord | None = None) -> None:
        """Index `obj`; `previous` is what its slice's last version made (_drop)."""
        match obj:  # (most of a big cluster's objects first)
            case Pod():
                self._put_pod(obj)
            case EndpointSlice():
                self._put_slice(obj, previous)
            case Service():
                self._put_service(obj)
            case Namespace():
                self._put_namespace(obj)
            case Node():
                self._put_node(obj)

    def _drop(self, key: Key) -> _SliceRecord | None:
        """Remove whatever the object at `key` contributed, from what the index holds
        (not from the event's `old`, so a replayed or out-of-step event cannot leave
        anything behind). A slice's record is returned for its next version to reuse."""
        where = (key.namespace, key.name)
        sliced = None
        if key.kind == NAMESPACE:
            self.namespaces.discard(key.name)
        elif key.kind == SERVICE:
            record = self._services.pop(where, None)
            if record is not None:
                for ip in record.cluster_ips:
                    if multimap.discard_few(self._ptr_cluster, ip.packed, where):
                        self._reverse_count(ip.packed, -1)
        elif key.kind == ENDPOINT_SLICE:
            sliced = self._slices.pop(where, None)
            if sliced is not None:
                service = (key.namespace, sliced.service)
                multimap.discard_few(self._slices_by_service, service, key.name)
                self._stale.add(service)
        elif key.kind == POD:
            names = self._pods.get(key.namespace)
            held = names.pop(key.name, None) if names is not None else None
            if held is not None:
                if not names:
                    del self._pods[key.namespace]
                ips = self._pod_ips[key.namespace]
                _count_down(ips, held)
                if not ips:
                    del self._pod_ips[key.namespace]
        elif key.kind == NODE and self._nodes.pop(key.name, None) is not None:
            self._node_list = None
            for suffix in ancestors(key.name):
                _count_down(self._node_branches, suffix)
        return sliced

    def _put_namespace(self, namespace: Namespace) -> None:
        self.namespaces.add(namespace.meta.name)

    def _put_service(self, service: Service) -> None:
        where = (service.meta.namespace, service.meta.name)
        external = service.type == "ExternalName"
        ips: tuple[IPAddress, ...] = ()
        if not external and not service.headless:
            for text in service.cluster_ips:  # (one or two: a loop, not comprehensions)
                read = _read(text)
                if read is not None:
                    ip, key, _ = read
                    ips += (ip,)
                    # The packed key as read (ip.packed writes it again from the int).
                    if multimap.add_few(self._ptr_cluster, key, where):
                        self._reverse_count(key, 1)
        target = target_name(service.external_name or "") if external else None
        self._services[where] = ServiceRecord(service, ips, target)

    def _touch_service(self, where: NamespacedName, before: ServiceRecord | None, after: ServiceRecord | None) -> None:
        """A Service event: its names; the PTR of the cluster IPs it took or gave back; the
        PTR of its ready endpoints if they start or stop naming it (ptr_targets: it exists
        and is no ExternalName). A plain update (labels, ports) leaves the PTR alone."""
        touched = self._touched
        touched.add(ServiceScope(*where))
        ips = set(before.cluster_ips if before is not None else ()) ^ set(after.cluster_ips if after is not None else ())
        touched.update(AddressScope(ip.packed) for ip in ips)
        if _names_endpoints(before) != _names_endpoints(after):
            touched.update(AddressScope(ready.key) for ready in self._endpoint_readies.get(where, ()))

    def _reverse_count(self, key: bytes, step: int) -> None:
        """Count a packed address in or out of `_reverse_prefixes` (step 1 or -1)."""
        if not self._counting:
            return
        counts = self._reverse_prefixes
        prefixes: Iterable[bytes | str]
        if len(key) == 4:
            prefixes = (key[:1], key[:2], key[:3])
        else:
            nibbles = key.hex()
            prefixes = [nibbles[:n] for n in range(1, 32)]
        for prefix in prefixes:
            count = counts.get(prefix, 0) + step
            if count:
                counts[prefix] = count
            else:
                del counts[prefix]
            if count == 0 or count == step:  # the partial name stops or starts existing...
                self._crossed.setdefault(prefix, count == 0)  # ...having existed before or not

    def _put_slice(self, endpoint_slice: EndpointSlice, previous: _SliceRecord | None = None) -> None:
        service = endpoint_slice.service_name
        if not service:
            return  # belongs to no Service, so names nothing
        namespace, name = endpoint_slice.meta.namespace, endpoint_slice.meta.name
        # Parsing dominates: reuse the previous version's work for addresses it had.
        known: dict[str, _Ready] = {}
        if previous is not None:
            for r in previous.ready:
                known[r.text] = r
        # The packed address of each pod (_put_pod): an endpoint at its pod's address
        # holds the same bytes, not an equal copy (48 bytes an endpoint, 5 MiB at scale).
        pods = self._pods.get(namespace, _NO_PODS)
        ready: list[_Ready] = []
        if endpoint_slice.address_type in _ADDRESS_TYPES:
            for endpoint in endpoint_slice.endpoints:
                if endpoint.conditions.ready is False:  # (Endpoint.is_ready, without the call)
                    continue
                hostname = endpoint.hostname
                if hostname:
                    hostname = hostname.lower()
                ref = endpoint.target_ref
                for text in endpoint.addresses:
                    seen = known.get(text) if known else None
                    if seen is not None and seen.name == (hostname or seen.label):
                        ready.append(seen)
                        continue
                    if seen is not None:
                        ip, key, label = seen.ip, seen.key, seen.label
                    else:
                        held = pods.get(ref.name) if ref is not None else None
                        packed = dotted_quad(text)  # (_read's common case, inline)
                        if packed is not None:
                            if packed == held:  # at its pod's address: the pod's bytes, not a copy
                                packed = held
                            ip, key, label = _IPv4(packed), packed, text.replace(".", "-")
                        else:
                            read = _read(text)
                            if read is None:
                                continue
                            ip, key, label = read
                            if held == key:
                                key = held
                    ready.append(_new_ready((hostname or label, ip, key, text, label)))
        ports = tuple(endpoint_slice.ports)  # (the slice's own, when it is a tuple)
        for port in ports:
            if port.port is None:  # (nearly never: then a tuple of the others)
                ports = tuple([p for p in endpoint_slice.ports if p.port is not None])
                break
        kept = previous.by_name if previous is not None else None
        self._slices[(namespace, name)] = _SliceRecord(service, ports, tuple(ready), _by_name(ready, ports, kept))
        multimap.add_few(self._slices_by_service, (namespace, service), name)
        self._stale.add((namespace, service))

    def _put_pod(self, pod: Pod) -> None:
        # Verified pod names (docs/dns-rules.md R15): a live pod's status.podIP only.
        # (_pod_address, inline: a rebuild puts 100,000 pods; tests/authority/test_index.py
        # holds the two equal.)
        meta = pod.meta
        if pod.phase in _GONE_PHASES or meta.deletion_timestamp or not pod.pod_ips:
            return
        # Only the packed address: a pod has no use for the rest of what _read makes.
        text = pod.pod_ips[0]
        packed = dotted_quad(text)  # (_packed's common case, inline)
        if packed is None:
            packed = _packed(text)
            if packed is None:
                return
        namespace = meta.namespace
        names = self._pods.get(namespace)
        if names is None:
            names = self._pods[namespace] = {}
            self._pod_ips[namespace] = {}
        names[meta.name] = packed
        if self._counting:  # (a rebuild counts them all at its end, in C)
            pod_ips = self._pod_ips[namespace]
            pod_ips[packed] = pod_ips.get(packed, 0) + 1  # _count_up, inline

    def _put_node(self, node: Node) -> None:
        ips = tuple(ip for ip in map(_address, node.internal_ips) if ip is not None)
        self._nodes[node.meta.name] = NodeRecord(node.meta.name, ips)
        self._node_list = None
        for suffix in ancestors(node.meta.name):
            _count_up(self._node_branches, suffix)

    def _note_written(self, key: Key, previous: _SliceRecord | None, endpoint_slice: EndpointSlice | None) -> None:
        """Note a slice an event wrote, under the Service it belonged to and the one it
        belongs to now, with what it held of each before the commit (the first note)."""
        if previous is not None:
            self._written.setdefault((key.namespace, previous.service), {}).setdefault(key.name, previous)
        service = endpoint_slice.service_name if endpoint_slice is not None else None
        if service and (previous is None or previous.service != service):
            self._written.setdefault((key.namespace, service), {}).setdefault(key.name, None)

    def _refresh_endpoints(self) -> None:
        """Re-read the slices of every Service whose slices changed in this batch."""
        stale, self._stale = self._stale, set()
        for service in stale:
            self._refresh_service_endpoints(service)
        self._written.clear()

    def _refresh_service_endpoints(self, service: NamespacedName) -> None:
        namespace, name = service
        had = self._endpoints.pop(service, None)
        slices = []
        for slice_name in sorted(self._slices_by_service.get(service, ())):
            slices.append(self._slices[(namespace, slice_name)])  # noqa: PERF401
        readies = slices[0].ready if len(slices) == 1 else tuple(chain.from_iterable(s.ready for s in slices))
        before = self._endpoint_readies.pop(service, None)
        now = None
        if readies:
            now = self._endpoints[service] = _service_endpoints(slices, readies)
            self._endpoint_readies[service] = readies
        # Only the differences touch the reverse table; a rebuild has none to look for.
        # (key, name) pairs, taken out in C: a big Service's are thousands.
        added: Iterable[tuple[bytes, str]] = map(_KEY_NAME, readies)
        touched = self._touched
        written = self._written.get(service)
        names: Iterable[str] | None = None  # the endpoint names that may have changed (None: any)
        if (before and written is not None and len(written) < len(slices) and _unique(had, before)
                and (now is None or _unique(now, readies))):
            # Each endpoint name in one slice only, before and after: only the slices
            # written can have changed the pairs and the names (a readiness flip: one
            # slice of ten).
            previous: set[tuple[bytes, str]] = set()
            pairs: set[tuple[bytes, str]] = set()
            names = set()
            for slice_name, old in written.items():
                if old is not None:
                    previous.update(map(_KEY_NAME, old.ready))
                    names.update(map(_NAME, old.ready))
                new = self._slices.get((namespace, slice_name))
                if new is not None and new.service == name:
                    pairs.update(map(_KEY_NAME, new.ready))
                    names.update(map(_NAME, new.ready))
        elif before:
            pairs = set(added)
            previous = set(map(_KEY_NAME, before))
        if self._counting:
            self._touch_endpoint_names(service, had, now, names)
        if before:
            for key, endpoint in previous - pairs:
                touched.add(AddressScope(key))
                if multimap.discard_few(self._ptr_endpoints, key, (namespace, name, endpoint)):
                    self._reverse_count(key, -1)
            added = pairs - previous
        elif self._counting:
            added = list(added)
        if self._counting:
            for key, _ in added:
                touched.add(AddressScope(key))
        ptr, counting = self._ptr_endpoints, self._counting  # (a rebuild counts at its end)
        for key, endpoint in added:
            if multimap.add_few(ptr, key, (namespace, name, endpoint)) and counting:
                self._reverse_count(key, 1)

    def _touch_endpoint_names(self, service: NamespacedName, had: ServiceEndpoints | None,
                              now: ServiceEndpoints | None, names: Iterable[str] | None) -> None:
        """The EndpointScope of each endpoint name of `service` whose ready endpoint (its
        addresses and ports) is not what it was: of `names`, or of every name it had or
        has. A flip of one endpoint leaves its Service's other endpoint names kept."""
        before = had.by_name if had is not None else {}
        after = now.by_name if now is not None else {}
        if names is None:
            names = before.keys() | after.keys()
        namespace, name = service
        touched = self._touched
        for endpoint in names:
            then, since = before.get(endpoint), after.get(endpoint)
            if then is not since and then != since:  # (ReadyEndpoints are immutable: the same one is equal)
                touched.add(EndpointScope(namespace, name, endpoint))

    # --- reading -------------------------------------------------------------------------

    def service(self, namespace: str, name: str) -> ServiceRecord | None:
        """The Service, whether or not its Namespace exists (see `visible_service`)."""
        return self._services.get((namespace, name))

    def visible_service(self, namespace: str, name: str) -> ServiceRecord | None:
        """The Service if DNS may show it: its Namespace object exists (docs/dns-rules.md R5)."""
        if namespace not in self.namespaces:
            return None
        return self._services.get((namespace, name))

    def endpoints(self, namespace: str, service: str) -> ServiceEndpoints:
        """The ready endpoints of the slices labelled with this Service's name."""
        return self._endpoints.get((namespace, service), NO_ENDPOINTS)

    def ptr_targets(self, ip: IPAddress) -> tuple[PtrTarget, ...]:
        """The owners of an address (docs/dns-rules.md R14), visible ones only, sorted: the
        Services whose cluster IP it is (all of them) or, when there are none,
        every ready endpoint with that address in a Service that publishes endpoint names
        (not ExternalName)."""
        key = ip.packed
        owners = sorted(s for s in self._ptr_cluster.get(key, ()) if s[0] in self.namespaces)
        if owners:
            return tuple(PtrTarget(namespace, service, None) for namespace, service in owners)
        targets = []
        for namespace, service, endpoint in sorted(self._ptr_endpoints.get(key, ())):
            record = self.visible_service(namespace, service)
            if record is not None and not record.is_external:
                targets.append(PtrTarget(namespace, service, endpoint))
        return tuple(targets)

    def has_reverse_below(self, prefix: ReversePrefix) -> bool:
        """Some address the PTR tables hold (a cluster IP or a ready endpoint's, visible
        or not) has a reverse name below this partial one."""
        labels = prefix.labels[::-1]  # address order: most significant first
        key: bytes | str = bytes(int(label) for label in labels) if prefix.version == 4 else "".join(labels)
        return key in self._reverse_prefixes

    def has_pod(self, namespace: str, ip: IPAddress) -> bool:
        """A running (or pending) pod in `namespace` has `ip` as its status.podIP."""
        ips = self._pod_ips.get(namespace)
        return ips is not None and ip.packed in ips

    def _pod_ip(self, namespace: str, name: str) -> bytes | None:
        """The packed status.podIP the index holds for a pod, None when it holds none."""
        names = self._pods.get(namespace)
        return names.get(name) if names is not None else None

    def node(self, name: str) -> NodeRecord | None:
        return self._nodes.get(name)

    def nodes(self) -> tuple[NodeRecord, ...]:
        """Every Node, by name."""
        if self._node_list is None:
            self._node_list = tuple(self._nodes[n] for n in sorted(self._nodes))
        return self._node_list

    def has_node_branch(self, suffix: str) -> bool:
        """Some Node's dotted name ends in `.<suffix>` (an empty non-terminal under node.)."""
        return suffix in self._node_branches


def _pod_address(pod: Pod) -> bytes | None:
    """The packed address the index holds for a pod once _put_pod has put it (None: it
    holds none): verified pod names (docs/dns-rules.md R15) answer a live pod's
    status.podIP only."""
    if pod.phase in _GONE_PHASES or pod.meta.deletion_timestamp or not pod.pod_ips:
        return None
    text = pod.pod_ips[0]
    packed = dotted_quad(text)  # (_packed's common case, inline: 100,000 at scale)
    return packed if packed is not None else _packed(text)


def _names_endpoints(record: ServiceRecord | None) -> bool:
    """Whether the PTR of this Service's ready endpoints names it (docs/dns-rules.md R14)."""
    return record is not None and not record.is_external


def _by_name(ready: Sequence[_Ready], ports: tuple[EndpointPort, ...],
             kept: Mapping[str, ReadyEndpoint] | None = None) -> dict[str, ReadyEndpoint] | None:
    """A slice's ReadyEndpoints by name, if each name has one address in it: then each
    has the slice's ports, one tuple for all. One its previous version made (`kept`) is
    taken again when it is the same (its one address the same object, a _Ready read
    again): a flip of one endpoint of a slice leaves the others' as they were, which
    their names' comparison (_touch_endpoint_names) then sees at once."""
    ports = tuple(dict.fromkeys(ports))
    by_name = {}
    for r in ready:  # (a loop: a comprehension is a call of its own, every slice written)
        same = kept.get(r.name) if kept else None
        if same is None or same.ports != ports or len(same.addresses) != 1 or same.addresses[0] is not r.ip:
            same = ReadyEndpoint(r.name, (r.ip,), ports)
        by_name[r.name] = same
    return by_name if len(by_name) == len(ready) else None


def _unique(endpoints: ServiceEndpoints | None, readies: Sequence[_Ready]) -> bool:
    """Whether each of `readies` (the Service's) has a name no other has."""
    return endpoints is not None and len(endpoints.by_name) == len(readies)


def _service_endpoints(slices: Sequence[_SliceRecord], readies: Sequence[_Ready]) -> ServiceEndpoints:
    """The endpoints of the ready addresses `readies` of `slices`, duplicates collapsed."""
    addresses = tuple(dict(map(_KEY_IP, readies)).values())
    if len(slices) == 1 and slices[0].by_name is not None:
        # Most Services: one slice whose endpoints each have a name of their own.
        return ServiceEndpoints(slices[0].by_name, addresses)
    if all(s.by_name is not None for s in slices):
        # Names of their own in each slice: if in no other slice either, the slices'
        # ReadyEndpoints are the Service's (a big Service: ten slices of the same ports).
        merged: dict[str, ReadyEndpoint] = {}
        for sliced in slices:
            merged.update(sliced.by_name)  # type: ignore[arg-type]
        if len(merged) == len(readies):
            return ServiceEndpoints(merged, addresses)
    names: dict[str, tuple[dict[bytes, IPAddress], dict[EndpointPort, None]]] = {}
    for sliced in slices:
        slice_ports = dict.fromkeys(sliced.ports)
        for ready in sliced.ready:
            entry = names.get(ready.name)
            if entry is None:
                entry = names[ready.name] = ({}, {})
            entry[0][ready.key] = ready.ip
            entry[1].update(slice_ports)
    return ServiceEndpoints(
        {n: ReadyEndpoint(n, tuple(ips.values()), tuple(p)) for n, (ips, p) in names.items()}, addresses,
    )


_FIRST_3 = itemgetter(slice(0, 3))  # a packed IPv4 address's longest reverse prefix


def _shorter(longest: Counter[_P], size: int) -> Iterator[Counter[_P]]:
    """The counts of the prefixes of `size` (`longest`), then of each shorter size down
    to 1: each the sum of its extensions' counts."""
    level = longest
    yield level
    for shorter in range(size - 1, 0, -1):
        above: Counter[_P] = Counter()
        for prefix, count in level.items():
            above[prefix[:shorter]] += count
        yield above
        level = above


def _count_up(table: dict[_T, int], key: _T) -> None:
    table[key] = table.get(key, 0) + 1


def _count_down(table: dict[_T, int], key: _T) -> None:
    count = table[key] - 1
    if count:
        table[key] = count
    else:
        del table[key]
