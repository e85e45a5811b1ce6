"""Read-only `Endpoints` (core v1), mirrored from the EndpointSlices of each Service.

Old clients and `kubectl get endpoints` read Endpoints; kdns stores only EndpointSlices,
so each Endpoints object is made when it is read: one per Service that is not an
ExternalName, named as the Service, with its labels, and a subset per distinct set of
ports among the Service's slices (IPv4 and IPv6; FQDN slices carry no IP). Ready
addresses go to `addresses`, the others to `notReadyAddresses`, each with the
hostname, nodeName and targetRef its slice endpoint has. The resourceVersion is the
newest of the Service's and its slices'. They are served for GET and LIST only:
writes are 405 (they follow the slices), and so is WATCH.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kdns.registry.manifests import to_manifest
from kdns.registry.objects import ENDPOINT_SLICE, SERVICE, EndpointSlice, KubeObject
from kdns.registry.store import Store

__all__ = ["ENDPOINTS", "endpoints_of", "listed"]

ENDPOINTS = "Endpoints"
_IP_FAMILIES = ("IPv4", "IPv6")


def _address(endpoint: Mapping[str, Any], ip: str) -> dict[str, Any]:
    address: dict[str, Any] = {"ip": ip}
    for source, target in (("hostname", "hostname"), ("nodeName", "nodeName"), ("targetRef", "targetRef")):
        if endpoint.get(source):
            address[target] = endpoint[source]
    return address


def endpoints_of(service: KubeObject, slices: Iterable[KubeObject]) -> dict[str, Any]:
    """The Endpoints document of `service` from its slices."""
    doc = to_manifest(service)
    metadata = doc.get("metadata", {})
    version = service.meta.resource_version
    subsets: dict[str, dict[str, Any]] = {}
    for slice_ in sorted(slices, key=lambda s: s.meta.name):
        version = max(version, slice_.meta.resource_version)
        body = to_manifest(slice_)
        if body.get("addressType") not in _IP_FAMILIES:
            continue
        ports = [
            {k: p[k] for k in ("name", "port", "protocol", "appProtocol") if p.get(k) not in (None, "")}
            for p in body.get("ports") or []
            if isinstance(p, Mapping) and p.get("port") is not None
        ]
        subset = subsets.setdefault(repr(sorted(map(sorted, (p.items() for p in ports)))), {"ports": ports})
        for endpoint in body.get("endpoints") or []:
            ready = (endpoint.get("conditions") or {}).get("ready") is not False
            field = "addresses" if ready else "notReadyAddresses"
            for ip in endpoint.get("addresses") or []:
                subset.setdefault(field, []).append(_address(endpoint, ip))
    result_subsets = []
    for subset in subsets.values():
        if "addresses" in subset or "notReadyAddresses" in subset:
            ordered = {k: subset[k] for k in ("addresses", "notReadyAddresses", "ports") if subset.get(k)}
            result_subsets.append(ordered)
    out_metadata: dict[str, Any] = {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "resourceVersion": str(version),
        "creationTimestamp": metadata.get("creationTimestamp"),
    }
    if metadata.get("labels"):
        out_metadata["labels"] = dict(metadata["labels"])
    endpoints: dict[str, Any] = {"apiVersion": "v1", "kind": ENDPOINTS, "metadata": out_metadata}
    if result_subsets:
        endpoints["subsets"] = result_subsets
    return endpoints


def listed(store: Store, namespace: str | None, matches: Callable[[KubeObject], bool]) -> list[dict[str, Any]]:
    """The Endpoints of every Service in `namespace` (None: all) that `matches` takes (an
    Endpoints object has its Service's name, namespace and labels), by namespace and name."""
    services = [s for s in store.list(SERVICE, namespace) if matches(s)]
    by_service: dict[tuple[str, str], list[KubeObject]] = {}
    for slice_ in store.list(ENDPOINT_SLICE, namespace):
        assert isinstance(slice_, EndpointSlice)
        by_service.setdefault((slice_.meta.namespace, slice_.service_name), []).append(slice_)
    return [
        endpoints_of(service, by_service.get((service.meta.namespace, service.meta.name), ()))
        for service in services
        if service.manifest.get("spec", {}).get("type") != "ExternalName"
    ]
