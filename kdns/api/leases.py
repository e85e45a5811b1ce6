"""Read-only node `Lease`s (coordination.k8s.io/v1, namespace `kube-node-lease`), one per Node.

A kubelet renews its node's Lease as its heartbeat, and `kubectl describe node` prints it
(and prints an error where there is none). kdns runs no kubelet: its Node's heartbeat is
the Ready condition kdns keeps (kdns/registry/admission.py `_node_ready`), so each Lease is
made when read from its Node: held in the node's name, as kubelets hold theirs, owned by
the Node, renewed when the Ready condition's lastHeartbeatTime says. Served for GET and
LIST only, like Endpoints: writes and watches are 405.
"""

from __future__ import annotations

from typing import Any

from kdns.registry.objects import NODE, KubeObject
from kdns.registry.store import Store

__all__ = ["LEASE", "NODE_LEASE_NAMESPACE", "lease_of", "listed"]

LEASE = "Lease"
NODE_LEASE_NAMESPACE = "kube-node-lease"
# The kubelet's default (--node-lease-duration-seconds).
DURATION_SECONDS = 40


def _micro_time(stamp: str) -> str:
    """A metav1.Time (`...:10Z`) as the metav1.MicroTime a Lease's times are (`...:10.000000Z`)."""
    return stamp[:-1] + ".000000Z" if stamp.endswith("Z") and "." not in stamp else stamp


def lease_of(node: KubeObject) -> dict[str, Any]:
    """The node Lease of `node`."""
    meta = node.meta
    spec: dict[str, Any] = {"holderIdentity": meta.name, "leaseDurationSeconds": DURATION_SECONDS}
    for condition in node.manifest.get("status", {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready" and condition.get("lastHeartbeatTime"):
            spec["renewTime"] = _micro_time(str(condition["lastHeartbeatTime"]))
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": LEASE,
        "metadata": {
            "name": meta.name,
            "namespace": NODE_LEASE_NAMESPACE,
            "resourceVersion": str(meta.resource_version),
            "creationTimestamp": meta.creation_timestamp,
            "ownerReferences": [{"apiVersion": "v1", "kind": NODE, "name": meta.name, "uid": meta.uid}],
        },
        "spec": spec,
    }


def listed(store: Store, namespace: str | None) -> list[dict[str, Any]]:
    """The Leases in `namespace` (None: all): one per Node in `kube-node-lease`, by name."""
    if namespace not in (None, NODE_LEASE_NAMESPACE):
        return []
    return [lease_of(node) for node in store.list(NODE)]
