"""Kubernetes protobuf bodies: the real kubectl's typed clients (`create namespace`, `create
service ...`) against the API, the negotiation of answers, and every malformed body.

The bodies the malformed-body tests send are written here byte by byte (`field`,
`envelope`), so that they do not depend on the codec they test.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from kdns.api import protobuf
from kdns.registry import schema
from tests.api.conftest import SERVICE_AND_PODS, Api, Reply, needs_kubectl, service
from tests.api.test_http import assert_status, version

SERVICES = "/api/v1/namespaces/default/services"
PROTOBUF = protobuf.MEDIA
KUBECTL_ACCEPT = "application/vnd.kubernetes.protobuf,application/json"  # client-go's typed clients


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: bytes | str | int) -> bytes:
    """One field on the wire: an int as a varint, bytes and strings length-delimited."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes, content_encoding: str = "") -> bytes:
    """`k8s\\x00` and a runtime.Unknown {typeMeta {apiVersion, kind}, raw, contentEncoding}."""
    type_meta = field(1, api_version) + field(2, kind)
    return b"k8s\x00" + field(1, type_meta) + field(2, raw) + field(3, content_encoding)


def post(api: Api, path: str, body: bytes, query: str = "", **headers: str) -> Reply:
    return api.request("POST", f"{path}{query}", body, content_type=PROTOBUF, headers=headers)


# A Service "pb": metadata {name}, spec {ports [{port 80, targetPort 8080}], selector}.
PB_PORT = field(3, 80) + field(4, field(1, 0) + field(2, 8080))
PB_SPEC = field(1, PB_PORT) + field(2, field(1, "app") + field(2, "pb"))
PB_SERVICE = field(1, field(1, "pb")) + field(2, PB_SPEC)


# --- kubectl ---------------------------------------------------------------------------------


def kubectl_exchanges(api: Api, *args: str) -> tuple[str, dict[str, tuple[str | None, str | None]]]:
    """Run kubectl with its headers logged (-v=8): its output, and for each request it
    made ("POST /api/v1/namespaces"), the Content-Type it sent and the one it read."""
    result = api.kubectl(*args, "-v=8")
    exchanges: dict[str, tuple[str | None, str | None]] = {}
    request, section, sent = "", "", None
    for line in result.stderr.splitlines():
        if found := re.search(r"\] (GET|POST|PUT|PATCH|DELETE) https?://[^/]+(/[^?\s]*)", line):
            request, section, sent = f"{found[1]} {found[2]}", "", None
        elif "Request Headers:" in line or "Response Headers:" in line:
            section = line.split("] ", 1)[1].strip()
        elif found := re.search(r"\]\s+Content-Type: (\S+)", line):
            if section == "Request Headers:":
                sent = found[1]
            elif section == "Response Headers:":
                exchanges[request] = (sent, found[1])
    return result.stdout, exchanges


def without_allocations(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("clusterIP") != "None":  # (headless is asked for, not allocated)
        spec = {k: v for k, v in spec.items() if k not in ("clusterIP", "clusterIPs")}
    if "ports" in spec:
        spec["ports"] = [{k: v for k, v in p.items() if k != "nodePort"} for p in spec["ports"]]
    return spec


@needs_kubectl
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("clusterip", "api", "--tcp=80:8080", "--tcp=443:https"),
         {"type": "ClusterIP", "ports": [("80-8080", 80, 8080, None), ("443-https", 443, "https", None)]}),
        (("nodeport", "api", "--tcp=81:8081", "--node-port=30080"),
         {"type": "NodePort", "ports": [("81-8081", 81, 8081, 30080)]}),
        (("externalname", "api", "--external-name=db.example.com"),
         {"type": "ExternalName", "externalName": "db.example.com", "ports": []}),
        (("clusterip", "api", "--clusterip=None"), {"type": "ClusterIP", "clusterIP": "None", "ports": []}),
        (("loadbalancer", "api", "--tcp=82:82"), {"type": "LoadBalancer", "ports": [("82-82", 82, 82, None)]}),
    ],
)
def test_kubectl_create_service_speaks_protobuf(api: Api, args, expected):
    """`kubectl create service ...` sends protobuf and reads the created Service back in
    protobuf: what it prints is what `kubectl get -o json` (JSON) shows, and the same
    command's `--dry-run=client` JSON, created beside it, makes the same spec."""
    printed, exchanges = kubectl_exchanges(api, "create", "service", *args, "-o", "json")
    assert exchanges["POST /api/v1/namespaces/default/services"] == (PROTOBUF, PROTOBUF)
    created = json.loads(printed)
    stored = json.loads(api.kubectl("get", "service", "api", "-o", "json").stdout)
    # (kubectl's typed Service always has a status, as Go's structs do)
    assert created == {**stored, "status": stored.get("status", {"loadBalancer": {}})}
    spec = stored["spec"]
    assert spec["type"] == expected["type"] and spec["selector"] == {"app": "api"}
    ports = [(p["name"], p["port"], p["targetPort"], p.get("nodePort")) for p in spec.get("ports", [])]
    # A node port the command did not name is allocated: any will do.
    assert [(*p[:3], p[3] if want[3] else None) for p, want in zip(ports, expected["ports"], strict=True)] == (
        expected["ports"])
    assert spec.get("externalName") == expected.get("externalName")
    if "clusterIP" in expected:
        assert spec["clusterIP"] == expected["clusterIP"]
    twin = json.loads(api.kubectl("create", "service", *args, "--dry-run=client", "-o", "json").stdout)
    twin["metadata"]["name"] = "api-json"
    twin["spec"] = without_allocations(twin["spec"])
    api.kubectl("create", "-f", "-", input=json.dumps(twin))
    twin_stored = json.loads(api.kubectl("get", "service", "api-json", "-o", "json").stdout)
    assert without_allocations(twin_stored["spec"]) == {**without_allocations(spec), "selector": {"app": "api"}}
    assert api.kubectl("delete", "service", "api").stdout.strip() == 'service "api" deleted'


@needs_kubectl
def test_kubectl_create_and_delete_namespace(api: Api):
    """`kubectl create namespace` (protobuf both ways) creates it; `-o yaml` of the answer
    is what `get -o yaml` shows; `kubectl delete` removes it."""
    printed, exchanges = kubectl_exchanges(api, "create", "namespace", "blue", "-o", "yaml")
    assert exchanges["POST /api/v1/namespaces"] == (PROTOBUF, PROTOBUF)
    # (kubectl's typed Namespace always has a spec, as Go's structs do)
    assert printed.replace("spec: {}\n", "") == api.kubectl("get", "namespace", "blue", "-o", "yaml").stdout
    assert "  name: blue\n" in printed and "  phase: Active\n" in printed
    assert api.kubectl("create", "namespace", "green").stdout.strip() == "namespace/green created"
    assert api.kubectl("delete", "namespace", "blue").stdout.strip() == 'namespace "blue" deleted'
    assert api.call(lambda store: store.get("Namespace", "", "blue")) is None
    assert api.call(lambda store: store.get("Namespace", "", "green")) is not None


@needs_kubectl
@pytest.mark.parametrize(
    ("command", "error"),
    [
        (("deployment", "web", "--image=nginx"), ("error: failed to create deployment: the server could not find "
         "the requested resource (namespaces/default/deployments)")),
        (("configmap", "settings", "--from-literal=a=b"), ("error: failed to create configmap: the server could "
         "not find the requested resource (namespaces/default/configmaps)")),
    ],
)
def test_kubectl_create_of_a_kind_kdns_does_not_serve(api: Api, command, error):
    """`kubectl create deployment|configmap` send protobuf too, to resources kdns does not serve: 404."""
    result = api.kubectl("create", *command, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == error


@needs_kubectl
def test_kubectl_create_dry_run_server_stores_nothing(api: Api):
    """`--dry-run=server` with a protobuf body: the answer names the namespace, nothing is stored."""
    assert api.kubectl("create", "namespace", "dry", "--dry-run=server", "-o", "name").stdout.strip() == "namespace/dry"
    assert api.call(lambda store: store.get("Namespace", "", "dry")) is None


@needs_kubectl
def test_kubectl_describe_pod_reads_it_in_protobuf(api: Api):
    """A pod made by `kubectl run` (JSON) has only fields protobuf.py numbers: `kubectl
    describe pod` reads it in protobuf and prints its image, args, port and environment."""
    api.kubectl("run", "box", "--image=busybox", "--env=A=1", "--port=80", "--", "sleep", "1d")
    described, exchanges = kubectl_exchanges(api, "describe", "pod", "box")
    assert exchanges["GET /api/v1/namespaces/default/pods/box"] == (None, PROTOBUF)
    assert re.search(r"Image: +busybox\n +Port: +80/TCP\n.*\n +Args:\n +sleep\n +1d\n +Environment:\n +A: +1\n",
                     described), described


NODE_YAML = """\
apiVersion: v1
kind: Node
metadata: {name: node-7, labels: {zone: a}}
spec: {podCIDR: 10.244.7.0/24, unschedulable: true}
status:
  addresses: [{type: InternalIP, address: 192.0.2.7}]
  capacity: {cpu: "4", pods: "110"}
  conditions:
    - {type: Ready, status: "True", reason: KubeletReady, lastHeartbeatTime: "2026-12-06T22:00:00Z",
       lastTransitionTime: "2026-12-06T21:00:00Z"}
"""


@needs_kubectl
def test_kubectl_describe_node_reads_it_in_protobuf(api: Api):
    """`kubectl describe node` reads the Node in protobuf: its times, quantities and
    addresses come out as written."""
    api.kubectl("apply", "-f", "-", input=NODE_YAML)
    described, exchanges = kubectl_exchanges(api, "describe", "node", "node-7")
    assert exchanges["GET /api/v1/nodes/node-7"] == (None, PROTOBUF)
    assert re.search(r"^  Ready +True +Sun, 06 Dec 2026 22:00:00 \+0000 +Sun, 06 Dec 2026 21:00:00 \+0000 +KubeletReady",
                     described, re.MULTILINE), described
    assert re.search(r"^  InternalIP: +192\.0\.2\.7$", described, re.MULTILINE)
    assert re.search(r"^Capacity:\n  cpu: +4\n  pods: +110$", described, re.MULTILINE)
    assert re.search(r"^Unschedulable: +true$", described, re.MULTILINE)


@needs_kubectl
def test_kubectl_describe_reads_slices_in_protobuf(api: Api, tmp_path):
    """`kubectl describe service` lists the EndpointSlices with a typed client: kdns answers
    that list in protobuf, and kubectl prints the endpoints from it."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    api.kubectl("apply", "-f", str(manifest))
    described = api.kubectl("describe", "service", "web").stdout
    assert re.search(r"^Endpoints: +10\.244\.0\.5:8080,10\.244\.0\.6:8080$", described, re.MULTILINE), described
    slices = api.request(
        "GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", headers={"Accept": KUBECTL_ACCEPT}
    )
    assert slices.headers["Content-Type"] == PROTOBUF


# --- negotiation ------------------------------------------------------------------------------


def test_answers_protobuf_when_preferred_and_json_otherwise(api: Api):
    """Protobuf when the client lists it before JSON; JSON when JSON comes first, and for an
    object with fields protobuf.py has no number for (a container's `securityContext`)."""
    api.request("POST", SERVICES, service("web"))
    as_json = api.request("GET", f"{SERVICES}/web").json
    reply = api.request("GET", f"{SERVICES}/web", headers={"Accept": KUBECTL_ACCEPT})
    assert reply.headers["Content-Type"] == PROTOBUF
    assert reply.body.startswith(b"k8s\x00")
    assert protobuf.decode(reply.body).document == as_json
    listed = api.request("GET", SERVICES, headers={"Accept": KUBECTL_ACCEPT})
    assert listed.headers["Content-Type"] == PROTOBUF
    json_first = api.request("GET", f"{SERVICES}/web", headers={"Accept": "application/json, " + PROTOBUF})
    assert json_first.headers["Content-Type"].startswith("application/json")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "nginx", "securityContext": {"runAsUser": 1000}}]}}
    assert api.request("POST", "/api/v1/namespaces/default/pods", pod).status == 201
    kept = api.request("GET", "/api/v1/namespaces/default/pods/p", headers={"Accept": KUBECTL_ACCEPT})
    assert kept.headers["Content-Type"].startswith("application/json")
    assert kept.json["spec"]["containers"][0]["securityContext"] == {"runAsUser": 1000}


POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "db-0", "labels": {"app": "db"}, "annotations": {"team": "data"}},
    "spec": {"hostname": "db-0", "subdomain": "db", "nodeName": "node-1", "enableServiceLinks": False,
             "containers": [{"name": "db", "image": "postgres", "ports": [{"name": "pg", "containerPort": 5432}],
                             "command": ["postgres"], "args": ["-c", "fsync=off"], "env": [{"name": "PGDATA", "value": "/d"}],
                             "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "250m"}},
                             "volumeMounts": [{"name": "data", "mountPath": "/d", "readOnly": True}],
                             "imagePullPolicy": "IfNotPresent"}]},
    "status": {"phase": "Running", "podIP": "10.244.0.9", "podIPs": [{"ip": "10.244.0.9"}],
               "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"}]},
}
NODE = {
    "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-9"},
    "spec": {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]},
    "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.9"}], "capacity": {"pods": "110"},
               "conditions": [{"type": "Ready", "status": "True"}]},
}
SLICE = {
    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
    "metadata": {"name": "ext-1", "labels": {"kubernetes.io/service-name": "ext"}},
    "addressType": "IPv4",
    "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": False, "serving": True}, "hostname": "a",
                   "targetRef": {"kind": "Pod", "name": "a", "namespace": "default"}, "zone": "z1"}],
    "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
}


@pytest.mark.parametrize(
    ("path", "document"),
    [
        ("/api/v1/namespaces/default/pods", POD),
        ("/api/v1/nodes", NODE),
        ("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", SLICE),
    ],
)
def test_pod_node_slice_in_protobuf_store_what_json_stores(api: Api, path, document):
    """A Pod, a Node and an EndpointSlice sent in protobuf are stored as the same document
    sent in JSON is (a pointer's false, `ready: false`, kept), and read back in protobuf."""
    body = protobuf.encode(document, document["kind"])
    assert body is not None
    sent = post(api, path, body, "?fieldValidation=Strict")
    assert sent.status == 201, sent.body
    assert sent.headers["Content-Type"].startswith("application/json")  # (http.client asks for JSON)
    twin = json.loads(json.dumps(document))
    twin["metadata"]["name"] += "-json"
    assert api.request("POST", path, twin).status == 201
    name = document["metadata"]["name"]
    stored = api.request("GET", f"{path}/{name}").json
    stored_twin = api.request("GET", f"{path}/{name}-json").json

    def comparable(doc: dict[str, Any]) -> dict[str, Any]:
        kept = ("labels", "annotations")
        return {**doc, "metadata": {k: v for k, v in doc["metadata"].items() if k in kept}}

    assert comparable(stored) == comparable(stored_twin)
    read = api.request("GET", f"{path}/{name}", headers={"Accept": KUBECTL_ACCEPT})
    assert read.headers["Content-Type"] == PROTOBUF
    assert protobuf.decode(read.body).document == stored


# --- what is refused ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"kind": "Service"}', 'it does not begin with the Kubernetes protobuf prefix "k8s\\x00"'),
        (b"k8s\x00" + b"\x0a\x80", "the envelope (runtime.Unknown) is truncated or malformed"),
        (envelope("v1", "Service", field(2, field(1, b"\x18\xff"))), "the Service is truncated or malformed"),
        (envelope("v1", "", PB_SERVICE), "Object 'Kind' is missing in the envelope"),
        (envelope("v1", "Service", PB_SERVICE, "gzip"), 'content encoding "gzip" is not supported'),
        (envelope("v1", "Service", field(1, field(11, field(1, "app") + field(2, b"\xff")))),
         "metadata.labels.app is not valid UTF-8"),
        (envelope("v1", "Service", field(1, field(1, 7))), "metadata.name has the wrong wire type"),
    ],
    ids=["wrong-magic", "truncated-envelope-varint", "truncated-port-varint", "no-kind", "gzip",
         "not-utf8", "wrong-wire-type"],
)
def test_malformed_protobuf_is_400_and_stores_nothing(api: Api, body, message):
    before = version(api)
    assert_status(post(api, SERVICES, body), 400, "BadRequest",
                  f"the body of the request cannot be decoded as protobuf: {message}")
    assert version(api) == before


def test_a_kind_the_url_does_not_name_is_400(api: Api):
    """A Deployment (no message here) or a Pod posted to services: refused as for JSON."""
    before = version(api)
    assert_status(post(api, SERVICES, envelope("apps/v1", "Deployment", b"\x0a\x00")), 400, "BadRequest",
                  'Deployment in version "apps/v1" cannot be handled as a Service: '
                  "the body is a Deployment, the URL names services")
    assert_status(post(api, SERVICES, envelope("v1", "Pod", b"")), 400, "BadRequest",
                  'Pod in version "v1" cannot be handled as a Service: the body is a Pod, the URL names services')
    assert version(api) == before


def test_unknown_protobuf_fields_are_unknown_fields(api: Api):
    """A field with no number in protobuf.py holding a value is an unknown field, named by
    its path and number: Strict refuses it, Warn (the default) warns; fields holding only
    zero values (Go writes those for every field it does not point to) say nothing."""
    spec = PB_SPEC + field(99, "x") + field(98, b"") + field(97, field(1, "") + field(2, 0))
    body = envelope("v1", "Service", field(1, field(1, "pb")) + field(2, spec) + field(5, 0))
    before = version(api)
    assert_status(post(api, SERVICES, body, "?fieldValidation=Strict"), 400, "BadRequest",
                  'strict decoding error: unknown field "spec.<field 99>"')
    assert version(api) == before
    warned = post(api, SERVICES, body)
    assert warned.status == 201
    assert warned.headers.get_all("Warning") == ['299 - "unknown field \\"spec.<field 99>\\""']
    stored = api.request("GET", f"{SERVICES}/pb").json["spec"]
    assert stored["ports"][0]["port"] == 80 and stored["ports"][0]["targetPort"] == 8080
    assert stored["selector"] == {"app": "pb"}


def test_update_in_protobuf_keeps_optimistic_concurrency(api: Api):
    """A PUT in protobuf (client-go's Update) changes the object; a stale resourceVersion is 409."""
    api.request("POST", SERVICES, service("web"))
    live = api.request("GET", f"{SERVICES}/web").json
    live["spec"]["selector"] = {"app": "web", "tier": "front"}
    body = protobuf.encode(live, "Service")
    assert body is not None
    updated = api.request("PUT", f"{SERVICES}/web", body, content_type=PROTOBUF, headers={"Accept": KUBECTL_ACCEPT})
    assert updated.status == 200 and updated.headers["Content-Type"] == PROTOBUF
    document = protobuf.decode(updated.body).document
    assert document is not None and document["spec"]["selector"] == {"app": "web", "tier": "front"}
    before = version(api)
    assert_status(api.request("PUT", f"{SERVICES}/web", body, content_type=PROTOBUF), 409, "Conflict")
    assert version(api) == before


def test_delete_options_in_protobuf(api: Api):
    """DeleteOptions in protobuf: preconditions and dryRun as in JSON; another kind is 400."""
    api.request("POST", SERVICES, service("web"))
    uid = api.request("GET", f"{SERVICES}/web").json["metadata"]["uid"]
    options = envelope("v1", "DeleteOptions", field(2, field(1, "not-" + uid)))
    assert_status(api.request("DELETE", f"{SERVICES}/web", options, content_type=PROTOBUF), 409, "Conflict")
    dry = envelope("v1", "DeleteOptions", field(5, "All"))
    assert api.request("DELETE", f"{SERVICES}/web", dry, content_type=PROTOBUF).status == 200
    assert api.request("GET", f"{SERVICES}/web").status == 200
    assert_status(api.request("DELETE", f"{SERVICES}/web", envelope("v1", "Service", b""), content_type=PROTOBUF),
                  400, "BadRequest", "the body of a DELETE must be DeleteOptions")
    matching = envelope("v1", "DeleteOptions", field(2, field(1, uid)))
    assert api.request("DELETE", f"{SERVICES}/web", matching, content_type=PROTOBUF).status == 200
    assert api.request("GET", f"{SERVICES}/web").status == 404


def test_every_protobuf_field_is_a_field_kdns_serves():
    """The messages name only fields of kdns's schemas (so a decoded body never has a field
    the API would call unknown), each once."""
    def walk(message: str, node: schema.Schema, path: str) -> None:
        numbers = [f.number for f in protobuf.MESSAGES[message]]
        assert len(numbers) == len(set(numbers)), message
        for f in protobuf.MESSAGES[message]:
            child = schema.child(node, f.name)
            if node.open and child is None:
                continue
            assert child is not None, f"{path}.{f.name}"
            target = child.items if child.type in ("array", "map") else child
            if f.type in protobuf.MESSAGES and f.type not in ("Time", "IntOrString", "Quantity", "FieldsV1"):
                assert target is not None
                if target.properties:
                    walk(f.type, target, f"{path}.{f.name}")

    for kind in protobuf.KINDS:
        walk(kind, schema.BY_KIND[kind], kind)
