"""Events: the readiness prober's failures, as `kubectl get events` and `kubectl describe
pod` show them from a real kdns, and the Event list's field selectors."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.e2e.kubeapi import Client
from tests.follow.conftest import free_port

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: default, labels: {app: web}}
spec:
  nodeName: node-1
  containers:
  - name: app
    image: nginx
    ports: [{name: http, containerPort: PORT}]
    readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1, failureThreshold: 1}
status:
  phase: Running
  podIP: 127.0.0.1
  conditions: [{type: Ready, status: "True"}]
"""


def test_probe_failures_are_events(kdns_server, tmp_path):
    """Each failed readiness probe counts on one Warning `Unhealthy` Event for the pod."""
    port = free_port()  # nothing listens there: every probe fails
    server = kdns_server(POD.replace("PORT", str(port)))
    client = Client(server.api_url, tmp_path / "home")
    deadline = time.monotonic() + 15
    while True:
        items = client.request("GET", "/api/v1/namespaces/default/events").json["items"]
        if items and items[0]["count"] >= 2:
            break
        assert time.monotonic() < deadline, items
        time.sleep(0.1)
    [event] = items
    assert (event["type"], event["reason"], event["reportingComponent"]) == ("Warning", "Unhealthy", "kubelet")
    assert event["message"].startswith("Readiness probe failed: ")
    assert event["involvedObject"]["kind"] == "Pod" and event["involvedObject"]["name"] == "web-1"
    assert event["involvedObject"]["fieldPath"] == "spec.containers{app}"
    assert event["source"] == {"component": "kubelet", "host": "node-1"}
    selected = client.request("GET", "/api/v1/events?fieldSelector=involvedObject.name%3Dweb-1,type%3DWarning").json
    assert [e["metadata"]["name"] for e in selected["items"]] == [event["metadata"]["name"]]
    assert client.request("GET", "/api/v1/events?fieldSelector=involvedObject.name%3Dother").json["items"] == []
    refused = client.request("GET", "/api/v1/events?fieldSelector=spec.x%3D1")
    assert refused.status == 400 and refused.json["message"] == "field label not supported: spec.x"
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    lines = client.kubectl("get", "events").stdout.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert lines[1].split()[1:4] == ["Warning", "Unhealthy", "pod/web-1"]
    described = client.kubectl("describe", "pod", "web-1").stdout
    events = described[described.index("Events:"):]
    assert "Warning  Unhealthy" in events and "Readiness probe failed:" in events
    assert json.loads(client.kubectl("get", "events", "-o", "json").stdout)["items"][0]["count"] >= 2
