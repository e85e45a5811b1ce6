"""Protobuf bodies (`application/vnd.kubernetes.protobuf`): the real kubectl's
`create service` / `create namespace` / `run`, and raw requests encoded and decoded with
the messages compiled from the Kubernetes schemas."""

from __future__ import annotations

import pytest

from kdns.api.k8s_pb import core_v1_pb2, meta_v1_pb2, runtime_pb2
from tests.api.conftest import Api, needs_kubectl

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


def envelope(api_version: str, kind: str, message) -> bytes:
    unknown = runtime_pb2.Unknown(typeMeta=runtime_pb2.TypeMeta(apiVersion=api_version, kind=kind),
                                  raw=message.SerializeToString())
    return MAGIC + unknown.SerializeToString()


def opened(body: bytes, cls):
    assert body.startswith(MAGIC)
    unknown = runtime_pb2.Unknown()
    unknown.ParseFromString(body[len(MAGIC):])
    message = cls()
    message.ParseFromString(unknown.raw)
    return unknown.typeMeta, message


@needs_kubectl
def test_kubectl_create_service_namespace_and_run(api: Api):
    """The kubectl commands that send protobuf work as against the API server."""
    assert api.kubectl("create", "namespace", "team").stdout.strip() == "namespace/team created"
    assert api.kubectl("create", "service", "clusterip", "web", "--tcp=80:8080", "-n", "team").stdout.strip() == (
        "service/web created"
    )
    assert api.kubectl("create", "service", "nodeport", "edge", "--tcp=80").stdout.strip() == "service/edge created"
    assert api.kubectl("run", "box", "--image=busybox").stdout.strip() == "pod/box created"
    web = api.call(lambda store: store.get("Service", "team", "web"))
    assert web.cluster_ips[0].startswith("10.96.") and web.selector == {"app": "web"}
    assert web.manifest["spec"]["ports"] == [
        {"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}
    ]
    edge = api.call(lambda store: store.get("Service", "default", "edge"))
    assert 30000 <= edge.manifest["spec"]["ports"][0]["nodePort"] <= 32767
    assert api.call(lambda store: store.get("Pod", "default", "box")) is not None
    refused = api.kubectl("create", "namespace", "team", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == 'Error from server (AlreadyExists): namespaces "team" already exists'


def test_protobuf_request_and_response(api: Api):
    """A Service posted as protobuf is stored, and answered as protobuf with what kdns
    added (the ClusterIP, a creationTimestamp, an int-or-string targetPort)."""
    service = core_v1_pb2.Service(
        metadata=meta_v1_pb2.ObjectMeta(name="web", labels={"app": "web"}),
        spec=core_v1_pb2.ServiceSpec(selector={"app": "web"}, ports=[core_v1_pb2.ServicePort(name="http", port=80)]),
    )
    reply = api.request("POST", "/api/v1/namespaces/default/services", envelope("v1", "Service", service),
                        content_type=PROTOBUF, headers={"Accept": f"{PROTOBUF}, application/json"})
    assert reply.status == 201
    assert reply.headers["Content-Type"] == PROTOBUF
    type_meta, created = opened(reply.body, core_v1_pb2.Service)
    assert (type_meta.apiVersion, type_meta.kind) == ("v1", "Service")
    assert created.spec.clusterIP == api.call(lambda store: store.get("Service", "default", "web").cluster_ips[0])
    assert created.spec.ports[0].targetPort.intVal == 80 and created.spec.ports[0].targetPort.type == 0
    assert created.metadata.creationTimestamp.seconds > 0
    listed = api.request("GET", "/api/v1/namespaces/default/services", headers={"Accept": PROTOBUF})
    _, services = opened(listed.body, core_v1_pb2.ServiceList)
    assert [s.metadata.name for s in services.items] == ["web"]
    assert services.metadata.resourceVersion == str(api.call(lambda store: store.resource_version))
    # JSON clients are answered in JSON as before.
    assert api.request("GET", "/api/v1/namespaces/default/services/web").json["spec"]["clusterIP"] == created.spec.clusterIP
    # Refusals are Status messages.
    again = api.request("POST", "/api/v1/namespaces/default/services", envelope("v1", "Service", service),
                        content_type=PROTOBUF, headers={"Accept": PROTOBUF})
    assert again.status == 409
    _, refusal = opened(again.body, meta_v1_pb2.Status)
    assert (refusal.reason, refusal.code, refusal.message) == ("AlreadyExists", 409, 'services "web" already exists')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x0a\x00", "the body of the request is not a Kubernetes protobuf object: no 'k8s\\x00' prefix"),
        (MAGIC + b"\xff\xff", "the body of the request cannot be decoded as protobuf: Error parsing message"),
        (envelope("v1", "ConfigMap", core_v1_pb2.ConfigMap()),
         'no kind "ConfigMap" is registered for version "v1" in protobuf'),
        (MAGIC + runtime_pb2.Unknown(typeMeta=runtime_pb2.TypeMeta(apiVersion="v1", kind="Service"),
                                     raw=b"\xff\xff").SerializeToString(),
         "the body of the request cannot be decoded as a Service: Error parsing message"),
    ],
)
def test_bad_protobuf_bodies_are_400(api: Api, body: bytes, message: str):
    reply = api.request("POST", "/api/v1/namespaces/default/services", body, content_type=PROTOBUF)
    assert reply.status == 400
    assert reply.json["message"].startswith(message)
    assert api.call(lambda store: store.count("Service")) == 0
