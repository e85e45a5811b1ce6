"""The EndpointSlice controller, as a pure function.

`desired_slices(service, pods, existing)` returns the EndpointSlices that
kube-controller-manager's EndpointSlice controller (pkg/controller/endpointslice and
staging/src/k8s.io/endpointslice) would keep for a Service, each as its manifest and the
typed fields that manifest holds (made together, so that the store does not read back
what was just written: slices are most of a big cluster's objects); the store writes the
differences. The rules are that controller's:

* only Services with a selector get slices (ExternalName ones none); the controller
  only ever touches slices labelled managed-by it, so hand-written slices stay;
* the pods are those of the Service's namespace whose labels match the selector, with
  an IP, and not Succeeded or Failed;
* one address family per slice, so a dual-stack pod appears in an IPv4 and an IPv6
  slice (per the Service's ipFamilies), and at most 100 endpoints per slice;
* each Service port is resolved against each pod (a named targetPort through the pod's
  container ports of that protocol; ports that do not resolve are left out for that
  pod), and pods whose resolved ports differ go into different slices;
* ready = publishNotReadyAddresses or (pod Ready and not terminating); serving = pod
  Ready; terminating = deletionTimestamp set (the endpoint util's podToEndpoint);
* a Service without any endpoint keeps one empty "placeholder" slice.

Reconciling an unchanged state returns unchanged manifests: an endpoint stays in the slice
that already holds it, new endpoints fill existing slices before new ones are made, and
a slice no longer needed lends its name to a new one of its address family, so names are
stable and no event is spurious. New names are `<service>-<5 characters>` like the API
server's generateName, but derived from a hash, so they are reproducible.

`updated_slices(service, pods, managed)` is the same controller for the commonest write,
a pod's update that leaves its endpoints where they are (a readiness report): given the
slices a run of desired_slices left, it makes only those pods' endpoints again, in their
slots, which is what desired_slices would return (tests/registry/test_endpoints.py
checks both agree over random writes).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import count
from operator import itemgetter
from typing import Any

from kdns.registry import objects
from kdns.registry.addresses import packed
from kdns.registry.objects import (
    CONTROLLER_NAME,
    ENDPOINT_CONDITIONS,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    ObjectReference,
    Pod,
    Service,
)

MAX_ENDPOINTS_PER_SLICE = 100  # kube-controller-manager --max-endpoints-per-slice default
HEADLESS_LABEL = "service.kubernetes.io/headless"
_RESERVED_LABELS = (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)
# The alphabet of apimachinery's rand.String (no vowels, no confusable characters).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Byte b of a hash -> _NAME_ALPHABET[b % 27], for bytes.translate.
_NAME_TABLE = bytes(ord(_NAME_ALPHABET[b % len(_NAME_ALPHABET)]) for b in range(256))

PortsKey = tuple[tuple[str, int, str], ...]  # (name, port, protocol) per slice port
GroupKey = tuple[str, PortsKey]  # (addressType, ports)
# An endpoint to make: the key that orders it in its slice (computed once), then the pod
# and the address. Endpoints are made only when their slice is known, already in order.
Placed = tuple[tuple[bytes, str], Pod, str]
_order = itemgetter(0)  # a Placed's order key


def _conditions(publish_not_ready: bool, serving: bool, terminating: bool) -> EndpointConditions:
    """An endpoint's conditions (k8s.io/endpointslice util podToEndpoint): serving = the pod
    is Ready, terminating = it has a deletionTimestamp, and ready is never true for a
    terminating pod unless the service publishes not-ready addresses."""
    return ENDPOINT_CONDITIONS[(publish_not_ready or (serving and not terminating), serving, terminating)]


# _conditions, looked up: [publish_not_ready][serving][terminating] (bools index tuples),
# instead of a key made and hashed for each of a big load's 100,000 endpoints.
_CONDITIONS = {
    publish: tuple(tuple(_conditions(publish, serving, terminating) for terminating in (False, True))
                   for serving in (False, True))
    for publish in (False, True)
}


@dataclass(slots=True)
class DesiredSlice:
    """One EndpointSlice the controller wants, as its typed fields: `manifest` is the
    document to write (admission adds the metadata the server owns), made from them when
    read, and `fields` what manifests.parse would read from it. A new slice is stored
    from its fields alone (admission.controller_slice): a start-up load makes 10,000
    slices of 10 endpoints, whose documents nobody reads."""

    service: Service
    name: str
    family: str
    ports: PortsKey
    endpoints: tuple[Endpoint, ...]
    # The stored slice this one makes again in place (updated_slices), and the positions
    # of the endpoints made again: the others' documents are its document's, shared.
    replaces: EndpointSlice | None = None
    remade: tuple[int, ...] = ()
    # replaces.manifest, once read (`stored`): the store reads it only when it admits the
    # manifest, not when it writes the slice from its fields (Transaction._rewrite_endpoints).
    read: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def stored(self) -> dict[str, Any] | None:
        """The stored document of the slice this one replaces, if it makes one again in
        place: the store compares with it instead of reading it again. The caller's to
        read only (`manifest` shares its endpoints)."""
        if self.replaces is None:
            return None
        if self.read is None:
            self.read = self.replaces.manifest
        return self.read

    @property
    def labels(self) -> dict[str, str]:
        """The slice's labels: its Service's, then the controller's own, last."""
        service = self.service
        held = service.meta.labels
        if SERVICE_NAME_LABEL in held or MANAGED_BY_LABEL in held or HEADLESS_LABEL in held:
            labels = dict(held)
            for reserved in _RESERVED_LABELS:  # set below, last, as the controller wants them
                labels.pop(reserved, None)
            labels[SERVICE_NAME_LABEL] = service.meta.name
            labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
        else:  # (the common case, in one step: none of the controller's own to move last)
            labels = {**held, SERVICE_NAME_LABEL: service.meta.name, MANAGED_BY_LABEL: CONTROLLER_NAME}
        if service.headless:
            labels[HEADLESS_LABEL] = ""
        return labels

    @property
    def fields(self) -> dict[str, Any]:
        return {"address_type": self.family, "endpoints": self.endpoints, "ports": _port_values(self.ports)}

    @property
    def manifest(self) -> dict[str, Any]:
        """The document to write, made afresh (the caller's)."""
        meta = self.service.meta
        stored = self.stored
        if stored is None:
            endpoint_documents = [objects.endpoint_document(endpoint) for endpoint in self.endpoints]
        else:
            endpoint_documents = list(stored["endpoints"])
            for position in self.remade:
                endpoint_documents[position] = objects.endpoint_document(self.endpoints[position])
        return {
            "apiVersion": objects.API_VERSIONS[objects.ENDPOINT_SLICE],
            "kind": objects.ENDPOINT_SLICE,
            "metadata": {
                "name": self.name,
                "generateName": f"{meta.name}-",
                "namespace": meta.namespace,
                "labels": self.labels,
                "ownerReferences": [objects.owner_reference(meta.name, meta.uid)],
            },
            "addressType": self.family,
            "endpoints": endpoint_documents,
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in self.ports],
        }


def desired_slices(
    service: Service,
    pods: Iterable[Pod],
    existing: Iterable[EndpointSlice],
    *,
    taken_names: Collection[str] = (),
) -> list[DesiredSlice]:
    """The EndpointSlices the controller wants for `service`, by name.

    `existing` are the slices labelled with the service's name (managed or not; only the
    managed ones are reused); `taken_names` are other slice names of the namespace that
    a new slice must not take.
    """
    if not service.selector or service.type == "ExternalName":
        return []
    namespace, name = service.meta.namespace, service.meta.name
    existing = list(existing)
    managed = [s for s in existing if s.managed_by == CONTROLLER_NAME and s.service_name == name
               and s.meta.namespace == namespace]
    groups = _endpoints_by_group(service, pods)
    planned: list[tuple[str | None, str, PortsKey, list[Placed]]]
    spare: dict[str, list[str]] = {}  # addressType -> names of managed slices no longer needed
    if managed:
        managed.sort(key=lambda s: s.meta.name)
        planned = _reuse(groups, managed, spare)
    else:
        # Nothing to reuse (every Service of a start-up): what _reuse comes to when no slice
        # is held, i.e. each group's endpoints in order, 100 to a new slice, and no spare.
        planned = []
        for key in sorted(groups):
            placed = sorted(groups[key].values(), key=_order)
            if len(placed) <= MAX_ENDPOINTS_PER_SLICE:  # (one slice, most Services': no copy)
                planned.append((None, key[0], key[1], placed))
                continue
            for start in range(0, len(placed), MAX_ENDPOINTS_PER_SLICE):
                planned.append((None, key[0], key[1], placed[start:start + MAX_ENDPOINTS_PER_SLICE]))
    if not planned:
        # The placeholder: a Service with no endpoints still has one (empty) slice.
        family = service.ip_families[0] if service.ip_families else "IPv4"
        planned.append((None, family, (), []))

    # `taken_names` may be every slice name of a big namespace: look it up, never copy it.
    # (The names planned so far are those of managed slices, which `existing` holds.)
    own = {s.meta.name for s in existing}  # and the names chosen here
    for names in spare.values():
        names.sort()
    slices = []
    for planned_name, family, ports, placed in planned:
        slot_name = planned_name
        if slot_name is None:
            if spare.get(family):
                slot_name = spare[family].pop(0)
            else:
                slot_name = _new_name(service, family, ports, own, taken_names)
                own.add(slot_name)
        slices.append(_desired(service, slot_name, family, ports, placed))
    if len(slices) > 1:
        slices.sort(key=lambda desired: desired.name)
    return slices


def _reuse(
    groups: dict[GroupKey, dict[tuple[str, str], Placed]],
    managed: list[EndpointSlice],
    spare: dict[str, list[str]],
) -> list[tuple[str | None, str, PortsKey, list[Placed]]]:
    """The slices to write, each with its endpoints in order, keeping endpoints where the
    `managed` slices (by name) hold them; the names of those no longer needed go to `spare`."""
    held: dict[GroupKey, list[EndpointSlice]] = {}
    for existing_slice in managed:
        held.setdefault((existing_slice.address_type, _slice_ports(existing_slice)), []).append(existing_slice)
    planned: list[tuple[str | None, str, PortsKey, list[Placed]]] = []
    for key in sorted(groups):
        wanted = groups[key]
        slots: list[tuple[str | None, list[Placed]]] = []
        for current in held.pop(key, []):
            kept: list[Placed] = []
            for endpoint in current.endpoints:
                identity = _identity(endpoint)
                if identity in wanted and len(kept) < MAX_ENDPOINTS_PER_SLICE:
                    kept.append(wanted.pop(identity))
            slots.append((current.meta.name, kept))
        rest = sorted(wanted.values(), key=_order)
        for _, kept in slots:
            room = MAX_ENDPOINTS_PER_SLICE - len(kept)
            if room > 0 and rest:
                kept.extend(rest[:room])
                rest = rest[room:]
        slots.extend((None, rest[start:start + MAX_ENDPOINTS_PER_SLICE])
                     for start in range(0, len(rest), MAX_ENDPOINTS_PER_SLICE))
        for slot_name, placed in slots:
            if placed:
                planned.append((slot_name, key[0], key[1], sorted(placed, key=_order)))
            elif slot_name is not None:
                spare.setdefault(key[0], []).append(slot_name)
    for leftovers in held.values():
        for leftover in leftovers:
            spare.setdefault(leftover.address_type, []).append(leftover.meta.name)
    return planned


def _endpoints_by_group(service: Service, pods: Iterable[Pod]) -> dict[GroupKey, dict[tuple[str, str], Placed]]:
    """Each selected pod's addresses, by slice group and then by (pod name, address)."""
    families = service.ip_families or ("IPv4",)
    namespace, selector = service.meta.namespace, service.selector.items()
    # Numbered target ports are the same on every pod: resolved once, not per pod.
    numbered = [(port.name, port.target_port, port.protocol) for port in service.ports
                if not isinstance(port.target_port, str)]
    same_ports: PortsKey | None = tuple(numbered) if len(numbered) == len(service.ports) else None
    groups: dict[GroupKey, dict[tuple[str, str], Placed]] = {}
    group_family = group_ports = None  # the key of `group`, the group last added to
    group: dict[tuple[str, str], Placed] = {}
    matched = None  # the labels last found to match: a workload's pods share one mapping
    for pod in pods:
        meta = pod.meta
        # The selector again (any pods may be given). Its values are strings, so this is
        # selector_matches; the subset test of the items is quicker than the call.
        if meta.namespace != namespace:
            continue
        labels = meta.labels
        if labels is not matched:
            if not selector <= labels.items():
                continue
            matched = labels
        if not pod.pod_ips or pod.phase in ("Succeeded", "Failed"):
            continue
        ports = same_ports if same_ports is not None else _resolve_ports(service, pod)
        pod_name = meta.name
        for ip in pod.pod_ips:
            family = "IPv6" if ":" in ip else "IPv4"
            if family in families:
                # Addresses mostly go to the group the last one went to; hashing the ports
                # to look the group up for each would be a tenth of this loop.
                if family is not group_family or ports is not group_ports:
                    group_family, group_ports = family, ports
                    group = groups.setdefault((family, ports), {})
                # Numeric address order (one family per slice), then pod name: the packed
                # address sorts numerically, and pod IPs are valid addresses.
                group[(pod_name, ip)] = ((packed(ip), pod_name), pod, ip)
    return groups


def _resolve_ports(service: Service, pod: Pod) -> PortsKey:
    """Each service port's number on this pod (podutil.FindPort); unresolvable ones left out."""
    resolved = []
    for port in service.ports:
        target = port.target_port
        if isinstance(target, str):
            number = next(
                (c.container_port for c in pod.container_ports if c.name == target and c.protocol == port.protocol),
                None,
            )
            if number is None:
                continue
            target = number
        resolved.append((port.name, target, port.protocol))
    return tuple(resolved)


def _endpoints(service: Service, placed: list[Placed]) -> tuple[Endpoint, ...]:
    """The endpoint of each pod at its address (its document: objects.endpoint_document).
    (One loop for a slice, not a call per endpoint: a big load makes 100,000.)"""
    conditions = _CONDITIONS[service.publish_not_ready_addresses]
    service_name = service.meta.name
    values: list[Endpoint] = []
    for _, pod, ip in placed:
        meta = pod.meta
        values.append(Endpoint(
            pod.pod_ips if len(pod.pod_ips) == 1 else (ip,),  # (the pod's tuple when equal: 48 bytes an endpoint)
            conditions[pod.ready][meta.deletion_timestamp is not None],  # (bools: see _CONDITIONS)
            # A pod's hostname is published only under the service its subdomain names (spec §2.4.1).
            pod.hostname if pod.hostname and pod.subdomain == service_name else "",
            pod.node_name,
            ObjectReference("Pod", meta.namespace, meta.name, meta.uid),
        ))
    return tuple(values)


def _identity(endpoint: Endpoint) -> tuple[str, str]:
    name = endpoint.target_ref.name if endpoint.target_ref is not None else ""
    return name, endpoint.addresses[0] if endpoint.addresses else ""


def _slice_ports(endpoint_slice: EndpointSlice) -> PortsKey:
    ports = []
    for p in endpoint_slice.ports:  # (a loop: a generator is a call of its own, twice a flip)
        ports.append((p.name, p.port, p.protocol))  # noqa: PERF401
    return tuple(ports)  # type: ignore[arg-type]


def _new_name(service: Service, family: str, ports: PortsKey, own: set[str], shared: Collection[str]) -> str:
    """A new slice's name, in neither `own` (the service's slices' names and those chosen
    for it) nor `shared` (the namespace's: looked up, never copied)."""
    for attempt in count():
        seed = f"{service.meta.namespace}/{service.meta.name}/{family}/{_ports_text(ports)}/{attempt}"
        digest = hashlib.sha256(seed.encode()).digest()
        name = f"{service.meta.name}-" + digest[:5].translate(_NAME_TABLE).decode()
        if name not in own and name not in shared:
            return name
    raise AssertionError("unreachable")


def _desired(service: Service, name: str, family: str, ports: PortsKey, placed: list[Placed]) -> DesiredSlice:
    """The slice `name` holding the endpoints `placed` (in their order)."""
    return DesiredSlice(service, name, family, ports, _endpoints(service, placed))


def updated_slices(
    service: Service,
    pods: Iterable[Pod],
    managed: Sequence[EndpointSlice],
) -> list[DesiredSlice] | None:
    """What desired_slices would return changed, when only the endpoints of `pods` changed
    and each stays where it is: the same pods selected, with the same addresses and ports
    (a readiness report, a node name, a hostname, a deletion timestamp). `managed` are the
    service's managed slices as the controller last left them (desired_slices of that
    state gives them back unchanged), in name order.

    Each endpoint is then made again in its slot, and nothing else moves: desired_slices
    would keep every endpoint in the slice that holds it, in the same order. Only the
    slices holding one of them are returned, in name order, each with the stored slice it
    was made from (`DesiredSlice.replaces`; its document, `stored`, is read only if the
    manifest is). None when an endpoint of `pods` is in none of
    them (the state was not the controller's): then run desired_slices.
    """
    families = service.ip_families or ("IPv4",)
    found: dict[str, dict[int, Placed]] = {}  # slice name -> position -> endpoint
    for pod in pods:
        if not pod.pod_ips or pod.phase in ("Succeeded", "Failed"):
            continue
        for ip in pod.pod_ips:
            family = "IPv6" if ":" in ip else "IPv4"
            if family not in families:
                continue
            order = (packed(ip), pod.meta.name)
            held = _held_at(managed, family, order)
            if held is None:
                return None
            found.setdefault(held[0], {})[held[1]] = (order, pod, ip)
    changed: list[DesiredSlice] = []
    for endpoint_slice in managed:
        positions = found.get(endpoint_slice.meta.name)
        if positions is None:
            continue
        values = list(endpoint_slice.endpoints)
        # The stored document's endpoints are those _endpoints made (admission leaves them
        # as they are): only the changed ones are made again (`manifest`), the others are
        # shared with `stored`, which nothing changes.
        for position, placed in positions.items():
            (values[position],) = _endpoints(service, [placed])
        changed.append(DesiredSlice(service, endpoint_slice.meta.name, endpoint_slice.address_type,
                                    _slice_ports(endpoint_slice), tuple(values), endpoint_slice, tuple(positions)))
    return changed


def _held_at(managed: Sequence[EndpointSlice], family: str, order: tuple[bytes, str]) -> tuple[str, int] | None:
    """The slice and position of the endpoint of this order key (_order), if one holds it.
    A slice the controller made holds its endpoints in order: looked up, not scanned."""
    for endpoint_slice in managed:
        held = endpoint_slice.endpoints
        if endpoint_slice.address_type == family and held:
            position = bisect_left(held, order, key=_endpoint_order)
            if position < len(held) and _endpoint_order(held[position]) == order:
                return endpoint_slice.meta.name, position
    return None


def _endpoint_order(endpoint: Endpoint) -> tuple[bytes, str]:
    """The order key (_order) of an endpoint the controller made: (packed address, pod name)."""
    return packed(endpoint.addresses[0]), endpoint.target_ref.name if endpoint.target_ref is not None else ""


@lru_cache(maxsize=1024)
def _ports_text(ports: PortsKey) -> str:
    """str(ports), for the seed of a new name (kept: it is a third of making one)."""
    return str(ports)


@lru_cache(maxsize=1024)
def _port_values(ports: PortsKey) -> tuple[EndpointPort, ...]:
    """A slice's typed ports. Kept, for slices to share (EndpointPort is frozen): making one
    costs more than a whole endpoint, and most Services of a cluster have one of a few port
    lists."""
    return tuple([EndpointPort(n, p, proto) for n, p, proto in ports])
