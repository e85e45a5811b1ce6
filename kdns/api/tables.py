"""Server-side printing: `meta.k8s.io/v1` Tables, so `kubectl get` shows the usual columns.

The columns and cell formats are kube-apiserver's (pkg/printers/internalversion/printers.go);
kubectl prints what it is sent. `AGE` is measured on an injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kdns.registry import objects

Column = tuple[str, str, str, int]  # name, type, format, priority (1 = only with -o wide)

NAME_COLUMN: Column = ("Name", "string", "name", 0)
AGE_COLUMN: Column = ("Age", "string", "", 0)

_DESCRIPTIONS = {
    "Name": "Name must be unique within a namespace. Cannot be updated.",
    "Age": "CreationTimestamp is a timestamp representing the server time when this object was created.",
}


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: float) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        created = datetime.fromisoformat(timestamp)
    except ValueError:
        return "<unknown>"
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return human_duration(now - created.timestamp())


def _get(doc: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(doc, list) or len(doc) <= step:
                return None
            doc = doc[step]
        elif isinstance(doc, Mapping):
            doc = doc.get(step)
        else:
            return None
    return doc


def _format_labels(labels: Mapping[str, str] | None) -> str:
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# --- Service -----------------------------------------------------------------------------


def _service_external_ip(doc: Mapping[str, Any]) -> str:
    spec = doc.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "ExternalName":
        return spec.get("externalName") or "<none>"
    if kind == "LoadBalancer":
        ingress = _get(doc, "status", "loadBalancer", "ingress") or []
        addresses = [i.get("ip") or i.get("hostname") for i in ingress if isinstance(i, Mapping)]
        addresses = [a for a in addresses if a] + external
        return ",".join(addresses) if addresses else "<pending>"
    return "<unknown>"


def _service_ports(doc: Mapping[str, Any]) -> str:
    parts = []
    for port in _get(doc, "spec", "ports") or []:
        protocol = port.get("protocol") or "TCP"
        if port.get("nodePort"):
            parts.append(f"{port.get('port')}:{port['nodePort']}/{protocol}")
        else:
            parts.append(f"{port.get('port')}/{protocol}")
    return ",".join(parts) if parts else "<none>"


def _service_row(doc: Mapping[str, Any], now: float) -> list[Any]:
    spec = doc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [
        doc["metadata"]["name"],
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else "<none>",
        _service_external_ip(doc),
        _service_ports(doc),
        age(doc["metadata"].get("creationTimestamp"), now),
        _format_labels(spec.get("selector")),
    ]


# --- Pod ---------------------------------------------------------------------------------


def _pod_row(doc: Mapping[str, Any], now: float) -> list[Any]:
    spec, status = doc.get("spec") or {}, doc.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    total = len(containers)
    if statuses:
        ready = sum(1 for s in statuses if s.get("ready"))
    else:
        # kdns has no kubelet reporting containers: the Ready condition speaks for them all.
        conditions = status.get("conditions") or []
        is_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        ready = total if is_ready else 0
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for s in statuses:
        waiting = _get(s, "state", "waiting", "reason")
        terminated = _get(s, "state", "terminated", "reason")
        if waiting:
            reason = waiting
        elif terminated:
            reason = terminated
    if doc["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    if gates:
        true_types = {
            c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"
        }
        done = sum(1 for g in gates if g.get("conditionType") in true_types)
        gates_cell = f"{done}/{len(gates)}"
    else:
        gates_cell = "<none>"
    return [
        doc["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        str(restarts),
        age(doc["metadata"].get("creationTimestamp"), now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_cell,
    ]


# --- Node --------------------------------------------------------------------------------


def _node_row(doc: Mapping[str, Any], now: float) -> list[Any]:
    spec, status = doc.get("spec") or {}, doc.get("status") or {}
    ready = "Unknown"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            ready = {"True": "Ready", "False": "NotReady"}.get(condition.get("status"), "Unknown")
    states = [ready]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    labels = doc["metadata"].get("labels") or {}
    roles = sorted(
        {k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and "/" in k}
        | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set())
    )
    roles = [r for r in roles if r]
    addresses = status.get("addresses") or []

    def address(kind: str) -> str:
        found = [a.get("address") for a in addresses if a.get("type") == kind]
        return found[0] if found else "<none>"

    info = status.get("nodeInfo") or {}
    return [
        doc["metadata"]["name"],
        ",".join(states),
        ",".join(roles) if roles else "<none>",
        age(doc["metadata"].get("creationTimestamp"), now),
        info.get("kubeletVersion") or "",
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


# --- EndpointSlice -----------------------------------------------------------------------


def _slice_row(doc: Mapping[str, Any], now: float) -> list[Any]:
    ports = doc.get("ports") or []
    if ports:
        port_cells = [str(p["port"]) if p.get("port") is not None else "<unset>" for p in ports]
        ports_cell = ",".join(port_cells)
    else:
        ports_cell = "<unset>"
    addresses = [a for e in doc.get("endpoints") or [] for a in (e.get("addresses") or [])[:1]]
    if not addresses:
        endpoints_cell = "<unset>"
    elif len(addresses) > 3:
        endpoints_cell = ",".join(addresses[:3]) + f" + {len(addresses) - 3} more..."
    else:
        endpoints_cell = ",".join(addresses)
    return [
        doc["metadata"]["name"],
        doc.get("addressType") or "",
        ports_cell,
        endpoints_cell,
        age(doc["metadata"].get("creationTimestamp"), now),
    ]


# --- Namespace ---------------------------------------------------------------------------


def _namespace_row(doc: Mapping[str, Any], now: float) -> list[Any]:
    return [
        doc["metadata"]["name"],
        _get(doc, "status", "phase") or "Active",
        age(doc["metadata"].get("creationTimestamp"), now),
    ]


def _endpoints_row(doc: Mapping[str, Any], now: float) -> list[Any]:
    # kubectl's printer: ip:port of the ready addresses, three at most, then "+ N more...".
    pairs = [
        f"{address.get('ip')}:{port.get('port')}" if subset.get("ports") else str(address.get("ip"))
        for subset in doc.get("subsets") or []
        for port in (subset.get("ports") or [{}])
        for address in subset.get("addresses") or []
    ]
    text = ",".join(pairs[:3]) + (f" + {len(pairs) - 3} more..." if len(pairs) > 3 else "")
    return [doc["metadata"]["name"], text or "<none>", age(doc["metadata"].get("creationTimestamp"), now)]


def _lease_row(doc: Mapping[str, Any], now: float) -> list[Any]:
    holder = (doc.get("spec") or {}).get("holderIdentity") or ""
    return [doc["metadata"]["name"], holder, age(doc["metadata"].get("creationTimestamp"), now)]


def _event_row(doc: Mapping[str, Any], now: float) -> list[Any]:
    involved = doc.get("involvedObject") or {}
    source = doc.get("source") or {}
    return [
        age(doc.get("lastTimestamp"), now),
        doc.get("type", ""),
        doc.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        ", ".join(filter(None, (source.get("component"), source.get("host")))),
        doc.get("message", ""),
        age(doc.get("firstTimestamp"), now),
        doc.get("count", 1),
        doc["metadata"]["name"],
    ]


PRINTERS: Mapping[str, tuple[Sequence[Column], Callable[[Mapping[str, Any], float], list[Any]]]] = {
    # kube-apiserver's printer for Events (pkg/printers/internalversion).
    "Event": (
        (
            ("Last Seen", "string", "", 0),
            ("Type", "string", "", 0),
            ("Reason", "string", "", 0),
            ("Object", "string", "", 0),
            ("Subobject", "string", "", 1),
            ("Source", "string", "", 1),
            ("Message", "string", "", 0),
            ("First Seen", "string", "", 1),
            ("Count", "string", "", 1),
            ("Name", "string", "", 1),
        ),
        _event_row,
    ),
    "Endpoints": ((NAME_COLUMN, ("Endpoints", "string", "", 0), AGE_COLUMN), _endpoints_row),
    "Lease": ((NAME_COLUMN, ("Holder", "string", "", 0), AGE_COLUMN), _lease_row),
    objects.SERVICE: (
        (
            NAME_COLUMN,
            ("Type", "string", "", 0),
            ("Cluster-IP", "string", "", 0),
            ("External-IP", "string", "", 0),
            ("Port(s)", "string", "", 0),
            AGE_COLUMN,
            ("Selector", "string", "", 1),
        ),
        _service_row,
    ),
    objects.POD: (
        (
            NAME_COLUMN,
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            AGE_COLUMN,
            ("IP", "string", "", 1),
            ("Node", "string", "", 1),
            ("Nominated Node", "string", "", 1),
            ("Readiness Gates", "string", "", 1),
        ),
        _pod_row,
    ),
    objects.NODE: (
        (
            NAME_COLUMN,
            ("Status", "string", "", 0),
            ("Roles", "string", "", 0),
            AGE_COLUMN,
            ("Version", "string", "", 0),
            ("Internal-IP", "string", "", 1),
            ("External-IP", "string", "", 1),
            ("OS-Image", "string", "", 1),
            ("Kernel-Version", "string", "", 1),
            ("Container-Runtime", "string", "", 1),
        ),
        _node_row,
    ),
    objects.ENDPOINT_SLICE: (
        (
            NAME_COLUMN,
            ("AddressType", "string", "", 0),
            ("Ports", "string", "", 0),
            ("Endpoints", "string", "", 0),
            AGE_COLUMN,
        ),
        _slice_row,
    ),
    objects.NAMESPACE: (
        (NAME_COLUMN, ("Status", "string", "", 0), AGE_COLUMN),
        _namespace_row,
    ),
}


def column_definitions(kind: str) -> list[dict[str, Any]]:
    columns, _ = PRINTERS[kind]
    return [
        {
            "name": name,
            "type": type_,
            "format": fmt,
            "description": _DESCRIPTIONS.get(name, name),
            "priority": priority,
        }
        for name, type_, fmt, priority in columns
    ]


def row(kind: str, doc: Mapping[str, Any], now: float, include_object: str) -> dict[str, Any]:
    """One row; `include_object` is the `includeObject` parameter: None, Metadata or Object."""
    _, printer = PRINTERS[kind]
    result: dict[str, Any] = {"cells": printer(doc, now)}
    if include_object == "Object":
        result["object"] = doc
    elif include_object != "None":
        result["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": doc.get("metadata", {}),
        }
    return result


def table(
    kind: str,
    docs: Sequence[Mapping[str, Any]],
    now: float,
    *,
    resource_version: str | None,
    include_object: str = "Metadata",
    api_version: str = "meta.k8s.io/v1",
    with_columns: bool = True,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": metadata,
        "columnDefinitions": column_definitions(kind) if with_columns else [],
        "rows": [row(kind, d, now, include_object) for d in docs],
    }
