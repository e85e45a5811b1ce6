"""Server-side Table rows: the cells `kubectl get` prints for each kind."""

from __future__ import annotations

import pytest

from kdns.api.tables import human_duration, table
from kdns.registry import objects

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
CREATED = "2023-11-14T22:10:00Z"  # 200 s before NOW


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (185, "3m5s"), (600, "10m"),
     (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"), (50 * 3600, "2d2h"), (10 * 86400, "10d"),
     (3 * 365 * 86400, "3y"), (9 * 365 * 86400, "9y")],
)
def test_human_duration(seconds, text):
    """AGE is formatted as apimachinery's duration.HumanDuration."""
    assert human_duration(seconds) == text


def cells(kind, doc):
    return table(kind, [doc], NOW, resource_version="1")["rows"][0]["cells"]


def test_service_cells():
    """Services show type, ClusterIP, external IP and PORT(S) with NodePorts, as kubectl does."""
    doc = {
        "metadata": {"name": "web", "creationTimestamp": CREATED},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "ports": [{"port": 80, "nodePort": 30007, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                 "selector": {"app": "web"}},
    }
    assert cells(objects.SERVICE, doc) == ["web", "NodePort", "10.96.0.10", "<none>", "80:30007/TCP,53/UDP", "3m20s", "app=web"]
    headless = {"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}
    assert cells(objects.SERVICE, headless)[:5] == ["db", "ClusterIP", "None", "<none>", "<none>"]
    external = {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}
    assert cells(objects.SERVICE, external)[:4] == ["ext", "ExternalName", "<none>", "example.com"]
    lb = {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9"}}
    assert cells(objects.SERVICE, lb)[3] == "<pending>"


def test_pod_node_slice_namespace_cells():
    """Pods, Nodes, EndpointSlices and Namespaces get kube-apiserver's columns."""
    pod = {"metadata": {"name": "web-1", "creationTimestamp": CREATED},
           "spec": {"nodeName": "node-1", "containers": [{"name": "a"}, {"name": "b"}]},
           "status": {"phase": "Running", "podIP": "10.244.0.5", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert cells(objects.POD, pod)[:7] == ["web-1", "2/2", "Running", "0", "3m20s", "10.244.0.5", "node-1"]
    node = {"metadata": {"name": "node-1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.32.0"},
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}]}}
    assert cells(objects.NODE, node)[:6] == ["node-1", "Ready", "control-plane", "<unknown>", "v1.32.0", "10.0.0.11"]
    slice_ = {"metadata": {"name": "web-abc"}, "addressType": "IPv4", "ports": [{"port": 8080}],
              "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(5)]}
    assert cells(objects.ENDPOINT_SLICE, slice_)[:4] == ["web-abc", "IPv4", "8080", "10.0.0.0,10.0.0.1,10.0.0.2 + 2 more..."]
    assert cells(objects.NAMESPACE, {"metadata": {"name": "default"}, "status": {"phase": "Active"}})[:2] == ["default", "Active"]
