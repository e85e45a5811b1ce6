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
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from itertools import count
from typing import Any

from kdns.registry import objects
from kdns.registry.objects import (
    CONTROLLER_NAME,
    ENDPOINT_CONDITIONS,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    ObjectReference,
    Pod,
    Service,
    selector_matches,
)

MAX_ENDPOINTS_PER_SLICE = 100  # kube-controller-manager --max-endpoints-per-slice default
HEADLESS_LABEL = "service.kubernetes.io/headless"
_RESERVED_LABELS = (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)
# The alphabet of apimachinery's rand.String (no vowels, no confusable characters).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

PortsKey = tuple[tuple[str, int, str], ...]  # (name, port, protocol) per slice port
GroupKey = tuple[str, PortsKey]  # (addressType, ports)
# An endpoint's manifest and typed value, after the key that orders it in its slice
# (computed once).
Ordered = tuple[tuple[Any, str], dict[str, Any], Endpoint]


@dataclass(slots=True)
class DesiredSlice:
    """One EndpointSlice the controller wants: the manifest to write (admission adds the
    metadata the server owns) and the typed fields manifests.parse would read from it."""

    manifest: dict[str, Any]
    fields: dict[str, Any]

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]  # type: ignore[no-any-return]


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
    namespace, name = service.meta.namespace, service.meta.name
    existing = list(existing)
    managed = sorted(
        (s for s in existing if s.managed_by == CONTROLLER_NAME and s.service_name == name
         and s.meta.namespace == namespace),
        key=lambda s: s.meta.name,
    )
    if not service.selector or service.type == "ExternalName":
        return []

    groups = _endpoints_by_group(service, pods)
    held: dict[GroupKey, list[EndpointSlice]] = {}
    for existing_slice in managed:
        held.setdefault((existing_slice.address_type, _slice_ports(existing_slice)), []).append(existing_slice)

    planned: list[tuple[str | None, str, PortsKey, list[Ordered]]] = []
    spare: dict[str, list[str]] = {}  # addressType -> names of managed slices no longer needed
    for key in sorted(groups):
        wanted = groups[key]
        slots: list[tuple[str | None, list[Ordered]]] = []
        for current in held.pop(key, []):
            kept: list[Ordered] = []
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
        for start in range(0, len(rest), MAX_ENDPOINTS_PER_SLICE):
            slots.append((None, rest[start:start + MAX_ENDPOINTS_PER_SLICE]))
        for slot_name, endpoints in slots:
            if endpoints:
                planned.append((slot_name, key[0], key[1], endpoints))
            elif slot_name is not None:
                spare.setdefault(key[0], []).append(slot_name)
    for leftovers in held.values():
        for leftover in leftovers:
            spare.setdefault(leftover.address_type, []).append(leftover.meta.name)
    if not planned:
        # The placeholder: a Service with no endpoints still has one (empty) slice.
        family = service.ip_families[0] if service.ip_families else "IPv4"
        planned.append((None, family, (), []))

    # `taken_names` may be every slice name of a big namespace: look it up, never copy it.
    taken = _Taken(taken_names, {s.meta.name for s in existing} | {p[0] for p in planned if p[0]})
    for names in spare.values():
        names.sort()
    slices = []
    for slot_name, family, ports, endpoints in planned:
        if slot_name is None:
            if spare.get(family):
                slot_name = spare[family].pop(0)
            else:
                slot_name = _new_name(service, family, ports, taken)
                taken.add(slot_name)
        slices.append(_desired(service, slot_name, family, ports, endpoints))
    slices.sort(key=lambda desired: desired.name)
    return slices


def _endpoints_by_group(service: Service, pods: Iterable[Pod]) -> dict[GroupKey, dict[tuple[str, str], Ordered]]:
    families = service.ip_families or ("IPv4",)
    namespace = service.meta.namespace
    # Numbered target ports are the same on every pod: resolved once, not per pod.
    same_ports = None
    if not any(isinstance(port.target_port, str) for port in service.ports):
        same_ports = tuple((port.name, port.target_port, port.protocol) for port in service.ports)
    groups: dict[GroupKey, dict[tuple[str, str], Ordered]] = {}
    for pod in pods:
        if pod.meta.namespace != namespace or not selector_matches(service.selector, pod.meta.labels):
            continue
        if not pod.pod_ips or pod.phase in ("Succeeded", "Failed"):
            continue
        ports = same_ports if same_ports is not None else _resolve_ports(service, pod)
        for ip in pod.pod_ips:
            family = "IPv6" if ":" in ip else "IPv4"
            if family in families:
                order = (_address_order(ip), pod.meta.name)
                groups.setdefault((family, ports), {})[(pod.meta.name, ip)] = (order, *_endpoint(service, pod, ip))
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


def _endpoint(service: Service, pod: Pod, ip: str) -> tuple[dict[str, Any], Endpoint]:
    """The endpoint of `pod` at `ip`: its manifest, and the Endpoint parsing it gives."""
    serving = pod.ready
    terminating = pod.meta.deletion_timestamp is not None
    # "ready" is never true for a terminating pod, unless the service publishes not-ready
    # addresses (k8s.io/endpointslice util podToEndpoint).
    ready = service.publish_not_ready_addresses or (serving and not terminating)
    endpoint: dict[str, Any] = {
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    }
    # A pod's hostname is published only under the service its subdomain names (spec §2.4.1).
    hostname = pod.hostname if pod.hostname and pod.subdomain == service.meta.name else ""
    if hostname:
        endpoint["hostname"] = hostname
    if pod.node_name:
        endpoint["nodeName"] = pod.node_name
    meta = pod.meta
    endpoint["targetRef"] = {"kind": "Pod", "namespace": meta.namespace, "name": meta.name, "uid": meta.uid}
    value = Endpoint(
        (ip,),
        ENDPOINT_CONDITIONS[(ready, serving, terminating)],
        hostname,
        pod.node_name,
        ObjectReference("Pod", meta.namespace, meta.name, meta.uid),
    )
    return endpoint, value


def _identity(endpoint: Endpoint) -> tuple[str, str]:
    name = endpoint.target_ref.name if endpoint.target_ref is not None else ""
    return name, endpoint.addresses[0] if endpoint.addresses else ""


def _address_order(ip: str) -> bytes:
    """Numeric address order (there is one family per slice); endpoints go in this order,
    then by pod name. The packed address sorts numerically; pod IPs are valid addresses."""
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)


def _order(endpoint: Ordered) -> tuple[Any, str]:
    return endpoint[0]


def _slice_ports(endpoint_slice: EndpointSlice) -> PortsKey:
    return tuple((p.name, p.port, p.protocol) for p in endpoint_slice.ports)  # type: ignore[misc]


class _Taken:
    """Names in use: a shared collection plus the names chosen here."""

    def __init__(self, shared: Collection[str], own: set[str]) -> None:
        self.shared, self.own = shared, own

    def __contains__(self, name: object) -> bool:
        return name in self.own or name in self.shared

    def add(self, name: str) -> None:
        self.own.add(name)


def _new_name(service: Service, family: str, ports: PortsKey, taken: _Taken) -> str:
    for attempt in count():
        seed = f"{service.meta.namespace}/{service.meta.name}/{family}/{ports}/{attempt}"
        digest = hashlib.sha256(seed.encode()).digest()
        name = f"{service.meta.name}-" + "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:5])
        if name not in taken:
            return name
    raise AssertionError("unreachable")


def _desired(service: Service, name: str, family: str, ports: PortsKey, endpoints: list[Ordered]) -> DesiredSlice:
    endpoints = sorted(endpoints, key=_order)
    labels = {k: v for k, v in service.meta.labels.items() if k not in _RESERVED_LABELS}
    labels[SERVICE_NAME_LABEL] = service.meta.name
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    if service.headless:
        labels[HEADLESS_LABEL] = ""
    manifest = {
        "apiVersion": objects.API_VERSIONS[objects.ENDPOINT_SLICE],
        "kind": objects.ENDPOINT_SLICE,
        "metadata": {
            "name": name,
            "generateName": f"{service.meta.name}-",
            "namespace": service.meta.namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Service",
                "name": service.meta.name,
                "uid": service.meta.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "addressType": family,
        "endpoints": [endpoint for _, endpoint, _ in endpoints],
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
    }
    fields = {
        "address_type": family,
        "endpoints": tuple(value for _, _, value in endpoints),
        "ports": tuple(EndpointPort(n, p, proto) for n, p, proto in ports),
    }
    return DesiredSlice(manifest, fields)
