"""The resources the API serves: how a kind is named in URLs, discovery and errors.

One table, read by routing, discovery, OpenAPI, Tables and watches, so that a kind is
spelled the same way everywhere (k8s.io/apimachinery `APIResource`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kdns.registry import objects

# The verbs of a resource and of its status subresource, as kube-apiserver lists them.
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    plural: str
    singular: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = VERBS
    # Made from other objects when read (Endpoints from EndpointSlices, node Leases from
    # Nodes), not stored.
    derived: bool = False

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """`services`, `endpointslices.discovery.k8s.io`: how Status messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


RESOURCES: tuple[Resource, ...] = (
    Resource(objects.NAMESPACE, "namespaces", "namespace", "", "v1", False, ("ns",)),
    Resource(
        objects.SERVICE, "services", "service", "", "v1", True, ("svc",), ("status",), ("all",)
    ),
    Resource(objects.POD, "pods", "pod", "", "v1", True, ("po",), ("status",), ("all",)),
    Resource(objects.NODE, "nodes", "node", "", "v1", False, ("no",)),
    Resource(objects.ENDPOINT_SLICE, "endpointslices", "endpointslice", "discovery.k8s.io", "v1", True),
    Resource("Endpoints", "endpoints", "endpoints", "", "v1", True, ("ep",), verbs=("get", "list"), derived=True),
    Resource("Event", "events", "event", "", "v1", True, ("ev",), verbs=("get", "list"), derived=True),
    Resource("Lease", "leases", "lease", "coordination.k8s.io", "v1", True, verbs=("get", "list"), derived=True),
)

# Subresources kube-apiserver has that need what kdns does not run (containers, a kubelet,
# an HTTP proxy to them): asked for, each is 501 with the reason why (crud.unserved), where an
# unknown subresource is 404.
UNSERVED: dict[tuple[str, str], str] = {
    ("pods", "log"): "kdns runs no containers, so a pod has no logs to read",
    ("pods", "exec"): "kdns runs no containers, so there is none to run a command in",
    ("pods", "attach"): "kdns runs no containers, so there is none to attach to",
    ("pods", "portforward"): "kdns runs no containers, so there is no pod port to forward",
    ("pods", "proxy"): "kdns runs no kubelet to proxy HTTP to a pod; connect to the pod's address",
    ("services", "proxy"): "kdns's API proxies no HTTP to services; connect to the ClusterIP (kdns serve --proxy)",
    ("nodes", "proxy"): "kdns runs no kubelet to proxy HTTP to",
}

BY_KIND = {r.kind: r for r in RESOURCES}
BY_PATH = {(r.group_version, r.plural): r for r in RESOURCES}
GROUP_VERSIONS: tuple[str, ...] = tuple(dict.fromkeys(r.group_version for r in RESOURCES))


def in_group_version(group_version: str) -> tuple[Resource, ...]:
    return tuple(r for r in RESOURCES if r.group_version == group_version)
