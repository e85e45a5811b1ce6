"""The REST API over HTTP: discovery, reads, writes, Tables, health, metrics and every refusal.

Each refusal is checked for its Kubernetes Status body and for changing nothing (the
store's resource version stays where it was).
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from tests.api.conftest import Api, Reply, service

SERVICES = "/api/v1/namespaces/default/services"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def version(api: Api) -> int:
    return api.call(lambda store: store.resource_version)


def assert_status(reply: Reply, code: int, reason: str, message: str | None = None) -> dict[str, Any]:
    body = reply.json
    assert reply.status == code, body
    assert reply.headers["Content-Type"].startswith("application/json")
    assert (body["kind"], body["apiVersion"], body["status"], body["code"], body["reason"]) == (
        "Status", "v1", "Failure", code, reason,
    )
    if message is not None:
        assert body["message"] == message
    return body


# --- discovery ---------------------------------------------------------------------------


def test_discovery_legacy_and_aggregated(api: Api):
    """/api, /apis and the group-version lists answer both the legacy and the aggregated (v2) forms."""
    assert api.request("GET", "/api").json["versions"] == ["v1"]
    groups = api.request("GET", "/apis").json
    assert groups["kind"] == "APIGroupList" and groups["groups"][0]["name"] == "discovery.k8s.io"
    core = {r["name"]: r for r in api.request("GET", "/api/v1").json["resources"]}
    assert set(core) == {"namespaces", "services", "services/status", "pods", "pods/status", "nodes", "endpoints", "events"}
    assert core["endpoints"]["verbs"] == ["get", "list"] and core["endpoints"]["shortNames"] == ["ep"]
    assert core["services"]["shortNames"] == ["svc"] and core["services"]["namespaced"] is True
    assert core["nodes"]["namespaced"] is False and core["pods"]["kind"] == "Pod"
    slices = api.request("GET", "/apis/discovery.k8s.io/v1").json["resources"]
    assert [(r["name"], r["kind"], r.get("shortNames")) for r in slices] == [("endpointslices", "EndpointSlice", None)]
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    aggregated = api.request("GET", "/apis", headers={"Accept": accept})
    assert aggregated.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    group, leases = aggregated.json["items"]
    assert leases["metadata"]["name"] == "coordination.k8s.io"
    assert group["metadata"]["name"] == "discovery.k8s.io"
    assert group["versions"][0]["resources"][0]["scope"] == "Namespaced"
    assert api.request("GET", "/version").json["gitVersion"].startswith("v1.32.0")


def test_openapi_v3_declares_server_side_field_validation(api: Api):
    """/openapi/v3 indexes one document per group-version whose PATCH operations take fieldValidation."""
    index = api.request("GET", "/openapi/v3").json["paths"]
    assert set(index) == {"api/v1", "apis/discovery.k8s.io/v1", "apis/coordination.k8s.io/v1"}
    document = api.request("GET", index["api/v1"]["serverRelativeURL"]).json
    patch = document["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Service"}
    assert {"name": "fieldValidation", "in": "query"}.items() <= next(
        p for p in patch["parameters"] if p["name"] == "fieldValidation"
    ).items()
    schemas = document["components"]["schemas"]
    ports = schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert ports["x-kubernetes-patch-merge-key"] == "port"
    # The served kinds and their lists carry the group-version-kind `kubectl explain` looks for.
    assert schemas["io.k8s.api.core.v1.Service"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "version": "v1", "kind": "Service"}
    ]
    assert schemas["io.k8s.api.core.v1.ServiceList"]["x-kubernetes-group-version-kind"][0]["kind"] == "ServiceList"
    assert schemas["io.k8s.api.core.v1.Event"]["properties"]["involvedObject"] == {
        "$ref": "#/components/schemas/io.k8s.api.core.v1.ObjectReference"
    }
    # Endpoints and Events are read-only: their documents offer get and list only.
    assert set(document["paths"]["/api/v1/namespaces/{namespace}/endpoints/{name}"]) == {"parameters", "get"}
    assert set(document["paths"]["/api/v1/namespaces/{namespace}/events"]) == {"parameters", "get"}


def test_openapi_v2_is_the_v3_documents_in_swagger_form(api: Api):
    """/openapi/v2 holds every v3 path and schema, in JSON or in kubectl's protobuf; the
    objects that keep unknown fields are published without properties (kubectl's v2
    validator would otherwise refuse the fields kdns does not spell out)."""
    v2 = api.request("GET", "/openapi/v2", headers={"Accept": "application/json"})
    assert v2.headers["Content-Type"] == "application/json"
    assert v2.json["swagger"] == "2.0"
    index = api.request("GET", "/openapi/v3").json["paths"]
    v3 = [api.request("GET", entry["serverRelativeURL"]).json for entry in index.values()]
    assert set(v2.json["paths"]) == {path for doc in v3 for path in doc["paths"]}
    assert set(v2.json["definitions"]) == {name for doc in v3 for name in doc["components"]["schemas"]}
    definitions = v2.json["definitions"]
    assert definitions["io.k8s.api.core.v1.Service"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "version": "v1", "kind": "Service"}
    ]
    assert definitions["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]["items"] == {
        "$ref": "#/definitions/io.k8s.api.core.v1.ServicePort"
    }
    container = definitions["io.k8s.api.core.v1.Container"]
    assert container == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    patch = v2.json["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"]
    assert patch["parameters"][0] == {
        "name": "body", "in": "body", "required": True,
        "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"},
    }
    assert {"name": "fieldValidation", "in": "query", "type": "string"}.items() <= next(
        p for p in patch["parameters"] if p["name"] == "fieldValidation"
    ).items()
    protobuf = api.request(
        "GET", "/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"}
    )
    assert protobuf.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    # Field 1 of gnostic's Document, `swagger`: tag 0x0a, length 3, "2.0".
    assert protobuf.body.startswith(b"\x0a\x032.0")


# --- reads and writes --------------------------------------------------------------------


def test_create_get_list_update_delete(api: Api):
    """A Service goes through POST (201), GET, LIST, PUT and DELETE with its allocated ClusterIP."""
    created = api.request("POST", SERVICES, service("web"))
    assert created.status == 201
    ip = created.json["spec"]["clusterIP"]
    # The EndpointSlice written in the same commit comes after the Service.
    assert int(created.json["metadata"]["resourceVersion"]) < version(api)
    got = api.request("GET", f"{SERVICES}/web").json
    assert got["spec"]["clusterIPs"] == [ip] and got["metadata"]["uid"]
    listed = api.request("GET", SERVICES).json
    assert listed["kind"] == "ServiceList" and listed["metadata"]["resourceVersion"] == str(version(api))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    got["metadata"]["labels"]["tier"] = "front"
    updated = api.request("PUT", f"{SERVICES}/web", got)
    assert updated.status == 200 and updated.json["metadata"]["labels"]["tier"] == "front"
    assert updated.json["spec"]["clusterIP"] == ip
    deleted = api.request("DELETE", f"{SERVICES}/web", {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
    assert deleted.status == 200 and deleted.json["metadata"]["name"] == "web"
    assert api.request("GET", f"{SERVICES}/web").status == 404


def test_dry_run_stores_nothing(api: Api):
    """POST, PATCH and DELETE with ?dryRun=All answer as if done (a ClusterIP, a NodePort) and store nothing."""
    before = version(api)
    reply = api.request("POST", f"{SERVICES}?dryRun=All", service("web"))
    assert reply.status == 201 and reply.json["spec"]["clusterIP"]
    assert version(api) == before
    assert api.request("GET", f"{SERVICES}/web").status == 404
    api.request("POST", SERVICES, service("web"))
    before = version(api)
    patched = api.request("PATCH", f"{SERVICES}/web?dryRun=All", {"spec": {"type": "NodePort"}}, content_type="application/merge-patch+json")
    assert patched.status == 200 and patched.json["spec"]["ports"][0]["nodePort"]
    assert api.request("DELETE", f"{SERVICES}/web?dryRun=All").status == 200
    assert version(api) == before
    assert api.request("GET", f"{SERVICES}/web").json["spec"]["type"] == "ClusterIP"


def test_selectors_and_all_namespaces(api: Api):
    """LIST filters by label selector (=, !=, in, notin, exists, !key) and field selector, here and across namespaces."""
    api.request("POST", "/api/v1/namespaces", {"metadata": {"name": "blue"}})
    for name, ns, labels in [("a", "default", {"app": "a", "tier": "front"}), ("b", "default", {"app": "b"}), ("c", "blue", {"app": "a"})]:
        doc = service(name)
        doc["metadata"]["labels"] = labels
        assert api.request("POST", f"/api/v1/namespaces/{ns}/services", doc).status == 201

    def names(path: str) -> list[str]:
        return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in api.request("GET", path).json["items"]]

    assert names("/api/v1/services") == ["blue/c", "default/a", "default/b"]
    assert names("/api/v1/services?labelSelector=app%3Da") == ["blue/c", "default/a"]
    assert names(f"{SERVICES}?labelSelector=app!%3Da") == ["default/b"]
    assert names("/api/v1/services?labelSelector=app+in+(a,b),tier") == ["default/a"]
    assert names("/api/v1/services?labelSelector=app+notin+(a),!tier") == ["default/b"]
    assert names("/api/v1/services?fieldSelector=metadata.namespace%3Dblue") == ["blue/c"]
    assert names(f"{SERVICES}?fieldSelector=metadata.name%3Db") == ["default/b"]


def test_status_subresource_changes_only_status(api: Api):
    """PUT .../status replaces status and ignores spec; the main resource keeps status when a PUT leaves it out."""
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert api.request("POST", "/api/v1/namespaces/default/pods", pod).status == 201
    live = api.request("GET", "/api/v1/namespaces/default/pods/p").json
    live["status"] = {"phase": "Running", "podIP": "10.244.0.9", "conditions": [{"type": "Ready", "status": "True"}]}
    live["spec"]["nodeName"] = "ignored"
    reply = api.request("PUT", "/api/v1/namespaces/default/pods/p/status", live)
    assert reply.status == 200, reply.json
    assert reply.json["status"]["podIP"] == "10.244.0.9" and "nodeName" not in reply.json["spec"]
    assert api.call(lambda store: store.get("Pod", "default", "p").ready) is True
    del live["status"]
    live["metadata"] = {"name": "p", "labels": {"x": "y"}}
    live["spec"].pop("nodeName")
    assert api.request("PUT", "/api/v1/namespaces/default/pods/p", live).json["status"]["podIP"] == "10.244.0.9"


def test_a_writes_reply_is_the_object_as_stored(api: Api):
    """The reply to an update or patch (made from the document the commit admitted, not
    read back from the store) is byte for byte what a GET reads right after: a readiness
    flip through /status, a patch of the main resource, a flip that changes nothing, a
    PUT; a dry run's reply is what would be stored, and a GET does not see it."""
    path = "/api/v1/namespaces/default/pods/p"
    pod = {"metadata": {"name": "p", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]},
           "status": {"phase": "Running", "podIP": "10.244.0.9", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert api.request("POST", SERVICES, service("web")).status == 201
    assert api.request("POST", "/api/v1/namespaces/default/pods", pod).status == 201
    merge = "application/merge-patch+json"
    flip = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    for method, where, given, content_type in [
        ("PATCH", f"{path}/status", flip, merge),
        ("PATCH", path, {"metadata": {"labels": {"tier": "a"}}}, merge),
        ("PATCH", f"{path}/status", flip, merge),
        ("PUT", path, None, "application/json"),
    ]:
        body = given
        if body is None:
            body = api.request("GET", path).json
            body["metadata"]["annotations"] = {"note": "put"}
        reply = api.request(method, where, body, content_type=content_type)
        assert reply.status == 200, reply.json
        assert reply.body == api.request("GET", path).body
        assert reply.json["status"]["conditions"] == [{"type": "Ready", "status": "False"}]
    stored = api.request("GET", path).body
    dry = api.request("PATCH", f"{path}/status?dryRun=All", {"status": {"podIP": "10.244.0.10"}}, content_type=merge)
    assert dry.status == 200 and dry.json["status"]["podIP"] == "10.244.0.10"
    assert api.request("GET", path).body == stored


def test_patch_types(api: Api):
    """merge, strategic merge and JSON patches change what they say, with their own semantics."""
    api.request("POST", SERVICES, service("web"))
    merge = api.request("PATCH", f"{SERVICES}/web", {"metadata": {"labels": {"a": "1"}}}, content_type="application/merge-patch+json")
    assert merge.json["metadata"]["labels"] == {"app": "web", "a": "1"}
    strategic = api.request("PATCH", f"{SERVICES}/web", {"spec": {"ports": [{"port": 443, "name": "https"}]}}, content_type="application/strategic-merge-patch+json")
    assert [p["port"] for p in strategic.json["spec"]["ports"]] == [80, 443]
    replaced = api.request("PATCH", f"{SERVICES}/web", {"spec": {"ports": [{"port": 53, "name": "dns", "protocol": "UDP"}]}}, content_type="application/merge-patch+json")
    assert [p["port"] for p in replaced.json["spec"]["ports"]] == [53]
    ops = [{"op": "test", "path": "/spec/ports/0/port", "value": 53}, {"op": "add", "path": "/metadata/labels/b", "value": "2"}]
    assert api.request("PATCH", f"{SERVICES}/web", ops, content_type="application/json-patch+json").json["metadata"]["labels"]["b"] == "2"


def test_apply_patch_creates_and_needs_field_manager(api: Api):
    """A server-side apply PATCH creates a missing object, and is refused (422) without fieldManager."""
    body = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"
    refused = api.request("PATCH", f"{SERVICES}/web", body, content_type="application/apply-patch+yaml")
    assert_status(refused, 422, "Invalid")
    reply = api.request("PATCH", f"{SERVICES}/web?fieldManager=me", body, content_type="application/apply-patch+yaml")
    assert reply.status == 201 and reply.json["spec"]["clusterIP"]


def test_generate_name(api: Api):
    """POST with generateName gets a name with a random suffix."""
    reply = api.request("POST", SERVICES, {"metadata": {"generateName": "web-"}, "spec": {"ports": [{"port": 80}]}})
    assert reply.status == 201
    name = reply.json["metadata"]["name"]
    assert name.startswith("web-") and len(name) == 9


def test_table_output(api: Api):
    """Accept: as=Table answers a meta.k8s.io/v1 Table with kube-apiserver's service columns."""
    api.request("POST", SERVICES, service("web", type="NodePort"))
    table = api.request("GET", SERVICES, headers={"Accept": TABLE}).json
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    [row] = table["rows"]
    assert row["cells"][:2] == ["web", "NodePort"] and row["cells"][4].startswith("80:")
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["name"] == "web"


def test_unknown_fields_warn_by_default_and_ignore(api: Api):
    """Without fieldValidation an unknown field is dropped with a Warning header; Ignore drops it silently."""
    doc = service("web")
    doc["spec"]["colour"] = "blue"
    reply = api.request("POST", SERVICES, doc)
    assert reply.status == 201 and "colour" not in reply.json["spec"]
    assert reply.headers.get_all("Warning") == ['299 - "unknown field \\"spec.colour\\""']
    doc["metadata"]["name"] = "web2"
    quiet = api.request("POST", f"{SERVICES}?fieldValidation=Ignore", doc)
    assert quiet.status == 201 and quiet.headers.get_all("Warning") is None


def test_health_ready_and_metrics(api_server):
    """/healthz and /livez say ok, /readyz follows ready(), /metrics counts writes, objects and watches."""
    ready = [False]
    api = api_server(ready=lambda: ready[0], token="t")
    for path in ("/healthz", "/livez"):
        reply = api.request("GET", path, headers={"Authorization": ""})
        assert (reply.status, reply.body) == (200, b"ok")
    assert api.request("GET", "/readyz", headers={"Authorization": ""}).status == 503
    ready[0] = True
    assert api.request("GET", "/readyz", headers={"Authorization": ""}).body == b"ok"
    api.token = "t"
    api.request("POST", SERVICES, service("web"))
    api.request("POST", SERVICES, service("web"))
    text = api.request("GET", "/metrics").body.decode()
    assert 'kdns_api_writes_total{code="201",resource="services",verb="create"} 1.0' in text
    assert 'kdns_api_writes_total{code="409",resource="services",verb="create"} 1.0' in text
    assert 'kdns_registry_objects{kind="Service"} 1.0' in text
    assert "kdns_api_watches 0.0" in text


# --- refusals ----------------------------------------------------------------------------


def test_400_bad_request(api: Api):
    """A body that does not parse, an unknown field under Strict and a bad selector are 400 BadRequest."""
    before = version(api)
    assert_status(api.request("POST", SERVICES, b"{not json"), 400, "BadRequest")
    doc = service("web")
    doc["spec"]["ports"][0]["colour"] = "blue"
    doc["spec"]["foo"] = 1
    strict = api.request("POST", f"{SERVICES}?fieldValidation=Strict", doc)
    assert_status(strict, 400, "BadRequest", 'strict decoding error: unknown field "spec.ports[0].colour", unknown field "spec.foo"')
    wrong_type = service("web")
    wrong_type["spec"]["ports"][0]["port"] = "eighty"
    assert "spec.ports[0].port: expected int, got string" in assert_status(api.request("POST", SERVICES, wrong_type), 400, "BadRequest")["message"]
    assert_status(api.request("GET", f"{SERVICES}?labelSelector=a+in+(b"), 400, "BadRequest")
    assert_status(api.request("POST", "/api/v1/namespaces/blue/services", {**service("web"), "metadata": {"name": "web", "namespace": "default"}}), 400, "BadRequest")
    assert version(api) == before


def test_401_unauthorized(api_server):
    """With a token set, a request without it or with a wrong one is 401 and changes nothing."""
    api = api_server(token="s3cret")
    api.token = None
    before = version(api)
    assert_status(api.request("POST", SERVICES, service("web")), 401, "Unauthorized", "Unauthorized")
    wrong = api.request("POST", SERVICES, service("web"), headers={"Authorization": "Bearer s3cre"})
    assert_status(wrong, 401, "Unauthorized")
    assert version(api) == before
    assert api.request("POST", SERVICES, service("web"), headers={"Authorization": "Bearer s3cret"}).status == 201


def test_404_not_found(api: Api):
    """A missing object, an unknown path and a missing namespace are 404 NotFound."""
    before = version(api)
    body = assert_status(api.request("GET", f"{SERVICES}/nope"), 404, "NotFound", 'services "nope" not found')
    assert body["details"] == {"name": "nope", "kind": "services"}
    assert_status(api.request("GET", "/api/v1/namespaces/default/widgets"), 404, "NotFound")
    assert_status(api.request("GET", "/nothing/here"), 404, "NotFound")
    assert_status(api.request("PATCH", f"{SERVICES}/nope", {}, content_type="application/merge-patch+json"), 404, "NotFound")
    assert_status(api.request("POST", "/api/v1/namespaces/nope/services", service("web")), 404, "NotFound", 'namespaces "nope" not found')
    assert_status(api.request("DELETE", f"{SERVICES}/nope"), 404, "NotFound")
    assert version(api) == before


def test_405_method_not_allowed(api: Api):
    """Methods a path does not take are 405 MethodNotAllowed."""
    before = version(api)
    assert_status(api.request("DELETE", SERVICES), 405, "MethodNotAllowed")
    assert_status(api.request("POST", f"{SERVICES}/web", service("web")), 405, "MethodNotAllowed")
    assert_status(api.request("POST", "/api/v1/services", service("web")), 405, "MethodNotAllowed")
    assert version(api) == before


def test_409_already_exists_and_conflict(api: Api):
    """A second create is 409 AlreadyExists; a PUT with a stale resourceVersion is 409 Conflict."""
    live = api.request("POST", SERVICES, service("web")).json
    before = version(api)
    body = assert_status(api.request("POST", SERVICES, service("web")), 409, "AlreadyExists", 'services "web" already exists')
    assert body["details"] == {"name": "web", "kind": "services"}
    api.request("PATCH", f"{SERVICES}/web", {"metadata": {"labels": {"x": "1"}}}, content_type="application/merge-patch+json")
    before = version(api)
    stale = api.request("PUT", f"{SERVICES}/web", live)
    assert_status(stale, 409, "Conflict")
    assert "the object has been modified" in stale.json["message"]
    precondition = api.request("DELETE", f"{SERVICES}/web", {"preconditions": {"resourceVersion": live["metadata"]["resourceVersion"]}})
    assert_status(precondition, 409, "Conflict")
    assert version(api) == before


def _together(api: Api, requests: list[tuple[str, str, dict[str, Any], str]]) -> list[Reply]:
    """Send every request, each on its own connection, before reading any reply: the
    server reads them in the same turns of its loop, so their handlers interleave."""
    connections = [http.client.HTTPConnection("127.0.0.1", api.port, timeout=10) for _ in requests]
    try:
        for connection, (method, path, body, content_type) in zip(connections, requests, strict=True):
            connection.request(method, path, body=json.dumps(body), headers={"Content-Type": content_type})
        replies = []
        for connection in connections:
            response = connection.getresponse()
            replies.append(Reply(response.status, response.headers, response.read()))
        return replies
    finally:
        for connection in connections:
            connection.close()


def test_writes_sent_together_apply_as_one_after_the_other(api: Api):
    """A write's document is made, then committed a turn of the loop later (DNS answers
    in between). Writes that overtake one another there answer as though they had come
    one after the other: every merge patch and PUT that names no resourceVersion applies
    (each to the object the others left), and of those that name the version they all
    read, one applies and the others are 409 Conflict."""
    live = api.request("POST", SERVICES, service("web")).json
    merge = "application/merge-patch+json"
    patches = [("PATCH", f"{SERVICES}/web", {"metadata": {"labels": {f"l{i}": "x"}}}, merge) for i in range(8)]
    replies = _together(api, patches)
    assert [r.status for r in replies] == [200] * 8, [r.body for r in replies if r.status != 200]
    labels = api.request("GET", f"{SERVICES}/web").json["metadata"]["labels"]
    assert labels == {"app": "web", **{f"l{i}": "x" for i in range(8)}}

    current = api.request("GET", f"{SERVICES}/web").json
    puts = []
    for i in range(4):
        doc = json.loads(json.dumps(current))
        del doc["metadata"]["resourceVersion"]
        doc["metadata"]["annotations"] = {f"a{i}": "x"}
        puts.append(("PUT", f"{SERVICES}/web", doc, "application/json"))
    assert [r.status for r in _together(api, puts)] == [200] * 4

    read = api.request("GET", f"{SERVICES}/web").json["metadata"]["resourceVersion"]
    pinned = [
        ("PATCH", f"{SERVICES}/web", {"metadata": {"resourceVersion": read, "labels": {f"p{i}": "x"}}}, merge)
        for i in range(6)
    ]
    replies = _together(api, pinned)
    assert sorted(r.status for r in replies) == [200] + [409] * 5
    for reply in replies:
        if reply.status == 409:
            assert_status(reply, 409, "Conflict")
    assert live["metadata"]["uid"] == api.request("GET", f"{SERVICES}/web").json["metadata"]["uid"]


def test_413_request_entity_too_large(api: Api):
    """A body over 3 MiB is 413 RequestEntityTooLarge."""
    before = version(api)
    huge = b'{"metadata": {"name": "web", "annotations": {"a": "' + b"x" * (3 * 1024 * 1024) + b'"}}}'
    assert_status(api.request("POST", SERVICES, huge), 413, "RequestEntityTooLarge")
    assert version(api) == before


def test_415_unsupported_media_type(api: Api):
    """A PATCH of an unknown patch type, and a body in a media type kdns does not read, are 415 UnsupportedMediaType."""
    api.request("POST", SERVICES, service("web"))
    before = version(api)
    assert_status(api.request("PATCH", f"{SERVICES}/web", {}, content_type="application/xml"), 415, "UnsupportedMediaType")
    assert_status(api.request("POST", SERVICES, b"<service/>", content_type="application/xml"), 415, "UnsupportedMediaType")
    assert version(api) == before


def test_422_invalid(api: Api):
    """An invalid object is 422 Invalid with a cause naming the field; so is a JSON patch whose test fails."""
    before = version(api)
    doc = service("web")
    doc["spec"]["ports"][0]["port"] = 0
    body = assert_status(api.request("POST", SERVICES, doc), 422, "Invalid")
    assert body["details"]["name"] == "web" and body["details"]["kind"] == "Service"
    assert body["details"]["causes"][0]["field"] == "spec.ports[0].port"
    assert body["message"].startswith('Service "web" is invalid: spec.ports[0].port: Invalid value: 0')
    assert version(api) == before
    api.request("POST", SERVICES, service("web"))
    before = version(api)
    failing = [{"op": "test", "path": "/spec/type", "value": "NodePort"}, {"op": "add", "path": "/metadata/labels/x", "value": "1"}]
    assert_status(api.request("PATCH", f"{SERVICES}/web", failing, content_type="application/json-patch+json"), 422, "Invalid")
    assert version(api) == before


def test_subresources_that_need_containers_are_501(api: Api):
    """pods/log, exec, attach, portforward and the proxies need what kdns does not run: 501
    NotImplemented saying so, for any method; 404 first when the object is not there, and
    404 for a subresource the API server does not have either."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
    api.request("POST", "/api/v1/nodes", node)
    assert_status(
        api.request("GET", "/api/v1/nodes/n1/proxy/metrics/cadvisor"), 501, "NotImplemented",
        "nodes/proxy is not served: kdns runs no kubelet to proxy HTTP to",
    )
    assert_status(api.request("POST", "/api/v1/nodes/n2/proxy"), 404, "NotFound", 'nodes "n2" not found')
    api.request("POST", SERVICES, service("web"))
    assert_status(
        api.request("DELETE", f"{SERVICES}/web/proxy/"), 501, "NotImplemented",
        "services/proxy is not served: kdns's API proxies no HTTP to services; connect to the ClusterIP "
        "(kdns serve --proxy)",
    )
    assert_status(
        api.request("GET", f"{SERVICES}/web/log"), 404, "NotFound",
        "the server could not find the requested resource (namespaces/default/services/web/log)",
    )
