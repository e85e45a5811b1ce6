"""The real kubectl v1.32 against the API, with no kubeconfig and default validation."""

from __future__ import annotations

import json
import queue
import re
import shutil
import subprocess
import threading
from typing import Any

import pytest

from tests.api.conftest import SERVICE_AND_PODS, Api, needs_kubectl

pytestmark = needs_kubectl


def columns(output: str) -> list[dict[str, str]]:
    """kubectl's table output as one dict per row, keyed by header."""
    lines = [line for line in output.splitlines() if line.strip()]
    header = lines[0]
    # Headers may hold one space ("NOMINATED NODE"); columns are at least three apart.
    found = list(re.finditer(r"\S+(?: \S+)*", header))
    starts = [m.start() for m in found]
    names = [m.group() for m in found]
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def cluster_ip(api: Api, name: str = "web") -> str:
    return api.call(lambda store: store.get("Service", "default", name).cluster_ips[0])


def test_apply_creates_and_get_shows_cluster_ip(api: Api, tmp_path):
    """`kubectl apply -f` (strict validation) creates a Service and Pods; `get svc` shows the allocated ClusterIP."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    out = api.kubectl("apply", "-f", str(manifest)).stdout
    assert out.splitlines() == ["service/web created", "pod/web-1 created", "pod/web-2 created"]
    [row] = columns(api.kubectl("get", "svc").stdout)
    assert row["NAME"] == "web" and row["TYPE"] == "ClusterIP"
    assert row["CLUSTER-IP"] == cluster_ip(api)
    assert row["EXTERNAL-IP"] == "<none>" and row["PORT(S)"] == "80/TCP"
    pods = columns(api.kubectl("get", "pods", "-o", "wide").stdout)
    assert [(p["NAME"], p["READY"], p["STATUS"], p["IP"], p["NODE"]) for p in pods] == [
        ("web-1", "1/1", "Running", "10.244.0.5", "node-1"),
        ("web-2", "1/1", "Running", "10.244.0.6", "<none>"),
    ]
    [slice_] = columns(api.kubectl("get", "endpointslices").stdout)
    assert slice_["ADDRESSTYPE"] == "IPv4" and slice_["PORTS"] == "8080"
    assert slice_["ENDPOINTS"] == "10.244.0.5,10.244.0.6"
    assert api.kubectl("apply", "-f", str(manifest)).stdout.splitlines() == [
        "service/web unchanged", "pod/web-1 unchanged", "pod/web-2 unchanged",
    ]


def test_apply_changes_with_three_way_patch(api: Api, tmp_path):
    """A second `kubectl apply` with a changed port sends a strategic merge patch that replaces the port."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    api.kubectl("apply", "-f", str(manifest))
    manifest.write_text(SERVICE_AND_PODS.replace("port: 80\n", "port: 8081\n"))
    assert "service/web configured" in api.kubectl("apply", "-f", str(manifest)).stdout
    ports = json.loads(api.kubectl("get", "svc", "web", "-o", "json").stdout)["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in ports] == [("http", 8081)]


def test_apply_refuses_unknown_field(api: Api, tmp_path):
    """kubectl's default strict validation is done by the server: an unknown spec field fails and nothing is stored."""
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(SERVICE_AND_PODS.split("---")[0].replace("  selector:", "  colour: blue\n  selector:"))
    result = api.kubectl("apply", "-f", str(manifest), check=False)
    assert result.returncode != 0
    assert 'strict decoding error: unknown field "spec.colour"' in result.stderr
    assert api.call(lambda store: store.get("Service", "default", "web")) is None


def test_server_side_apply(api: Api, tmp_path):
    """`kubectl apply --server-side` creates objects, and takes over a client-side applied one: ports it drops go."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    out = api.kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    assert out.splitlines() == ["service/web serverside-applied", "pod/web-1 serverside-applied", "pod/web-2 serverside-applied"]
    assert api.call(lambda store: len(store.list("EndpointSlice", "default"))) == 1

    other = tmp_path / "api.yaml"
    other.write_text(SERVICE_AND_PODS.split("---")[0].replace("name: web", "name: api"))
    api.kubectl("apply", "-f", str(other))
    first_ip = cluster_ip(api, "api")
    for port in (81, 82):
        other.write_text(other.read_text().replace(f"port: {port - 1 if port == 82 else 80}\n", f"port: {port}\n"))
        assert api.kubectl("apply", "--server-side", "-f", str(other)).stdout.strip() == "service/api serverside-applied"
        ports = json.loads(api.kubectl("get", "svc", "api", "-o", "json").stdout)["spec"]["ports"]
        assert [p["port"] for p in ports] == [port]
    assert cluster_ip(api, "api") == first_ip


def test_patch_merge_and_strategic(api: Api, tmp_path):
    """`kubectl patch --type merge` sets labels; the default strategic patch merges ports by port number."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    api.kubectl("apply", "-f", str(manifest))
    assert api.kubectl("patch", "svc", "web", "--type", "merge", "-p", '{"metadata":{"labels":{"tier":"front"}}}').stdout.strip() == "service/web patched"
    api.kubectl("patch", "svc", "web", "-p", '{"spec":{"ports":[{"name":"https","port":443,"targetPort":8443}]}}')
    api.kubectl("patch", "svc", "web", "--type", "json", "-p", '[{"op":"replace","path":"/spec/type","value":"NodePort"}]')
    doc = json.loads(api.kubectl("get", "svc", "web", "-o", "json").stdout)
    assert doc["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert [p["port"] for p in doc["spec"]["ports"]] == [80, 443]
    [row] = columns(api.kubectl("get", "svc", "-l", "tier=front").stdout)
    node_ports = [p["nodePort"] for p in doc["spec"]["ports"]]
    assert row["PORT(S)"] == f"80:{node_ports[0]}/TCP,443:{node_ports[1]}/TCP"


def test_delete(api: Api, tmp_path):
    """`kubectl delete` removes the object, waits for it to be gone, and a second delete says NotFound."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    api.kubectl("apply", "-f", str(manifest))
    assert api.kubectl("delete", "svc", "web").stdout.strip() == 'service "web" deleted'
    assert api.call(lambda store: store.get("Service", "default", "web")) is None
    again = api.kubectl("delete", "svc", "web", check=False)
    assert again.returncode != 0 and 'services "web" not found' in again.stderr
    assert "No resources found" in api.kubectl("get", "svc").stderr


def test_get_watch_sees_another_clients_change(api: Api):
    """`kubectl get svc -w` prints the table, then a row for a Service another client creates."""
    created = api.request("POST", "/api/v1/namespaces/default/services", {"metadata": {"name": "first"}, "spec": {"ports": [{"port": 80}]}})
    assert created.status == 201
    proc = subprocess.Popen(
        api.kubectl_argv("get", "svc", "-w", "--request-timeout=20s"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, env=api.kubectl_env(),
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        assert lines.get(timeout=15).split()[:3] == ["NAME", "TYPE", "CLUSTER-IP"]
        assert lines.get(timeout=15).split()[:3] == ["first", "ClusterIP", created.json["spec"]["clusterIP"]]
        reply = api.request("POST", "/api/v1/namespaces/default/services", {"metadata": {"name": "second"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
        assert reply.status == 201
        node_port = reply.json["spec"]["ports"][0]["nodePort"]
        assert lines.get(timeout=15).split()[:5] == ["second", "NodePort", reply.json["spec"]["clusterIP"], "<none>", f"80:{node_port}/TCP"]
    finally:
        proc.kill()
        proc.wait(timeout=5)
        reader.join(timeout=5)
        proc.stdout.close()  # type: ignore[union-attr]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_token_over_tls(api_server):
    """Over HTTPS with a token set, kubectl with a wrong one gets Unauthorized and changes nothing; the right one works."""
    api = api_server(token="s3cret", tls=True)
    api.token = "wrong"
    namespace = '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "blue"}}'
    denied = api.kubectl("create", "-f", "-", input=namespace, check=False)
    assert denied.returncode != 0 and "the server has asked for the client to provide credentials" in denied.stderr
    listed = api.kubectl("get", "ns", check=False)
    assert listed.returncode != 0 and "You must be logged in to the server" in listed.stderr
    assert api.call(lambda store: store.get("Namespace", "", "blue")) is None
    api.token = "s3cret"
    assert api.kubectl("create", "-f", "-", input=namespace).stdout.strip() == "namespace/blue created"
    [row] = [r for r in columns(api.kubectl("get", "ns").stdout) if r["NAME"] == "blue"]
    assert row["STATUS"] == "Active"


def test_nodes_and_explain_free_discovery(api: Api):
    """kubectl finds nodes by short name through discovery and prints the node columns."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0"}}}
    api.kubectl("create", "-f", "-", input=json.dumps(node))
    [row] = columns(api.kubectl("get", "no", "-o", "wide").stdout)
    assert (row["NAME"], row["STATUS"], row["ROLES"], row["VERSION"], row["INTERNAL-IP"]) == ("node-1", "Ready", "control-plane", "v1.32.0", "10.0.0.11")
    resources = api.kubectl("api-resources", "--no-headers").stdout
    assert {line.split()[0] for line in resources.splitlines()} == {
        "namespaces", "nodes", "pods", "services", "endpointslices", "endpoints", "events", "leases"}


def test_nodes_are_ready_as_kdns_knows_them(api: Api):
    """A Node kdns has an InternalIP for is Ready (kdns's own condition: it runs no kubelet),
    one without is NotReady; a writer's own Ready condition is kept. `describe node` finds
    the node's Lease in kube-node-lease, renewed when the condition was set."""
    for name, address in (("edge", "10.0.0.21"), ("bare", None)):
        status = {"addresses": [{"type": "InternalIP", "address": address}]} if address else {}
        api.kubectl("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": status}))
    rows = {row["NAME"]: row for row in columns(api.kubectl("get", "nodes", "-o", "wide").stdout)}
    assert (rows["edge"]["STATUS"], rows["edge"]["INTERNAL-IP"]) == ("Ready", "10.0.0.21")
    assert (rows["bare"]["STATUS"], rows["bare"]["INTERNAL-IP"]) == ("NotReady", "<none>")
    [ready] = json.loads(api.kubectl("get", "node", "edge", "-o", "json").stdout)["status"]["conditions"]
    assert {k: ready[k] for k in ("type", "status", "reason", "message")} == {
        "type": "Ready", "status": "True", "reason": "KdnsNodeAddressKnown",
        "message": "kdns runs no kubelet: the node is Ready as declared; DNS answers give its InternalIP 10.0.0.21",
    }
    assert ready["lastHeartbeatTime"] == ready["lastTransitionTime"]
    described = api.kubectl("describe", "node", "edge").stdout
    assert "Failed to get lease" not in described
    lease = described[described.index("Lease:"):described.index("Conditions:")].splitlines()
    assert [line.split(":", 1)[0].strip() for line in lease[1:]] == ["HolderIdentity", "AcquireTime", "RenewTime"]
    assert lease[1].split() == ["HolderIdentity:", "edge"] and lease[2].split() == ["AcquireTime:", "<unset>"]
    assert "  Ready   True " in described and "KdnsNodeAddressKnown" in described
    bare = json.loads(api.kubectl("get", "node", "bare", "-o", "json").stdout)["status"]["conditions"][0]
    assert (bare["status"], bare["reason"], bare["message"]) == (
        "False", "KdnsNoInternalIP", "kdns runs no kubelet, and the node has no InternalIP: DNS answers leave it out")
    leases = columns(api.kubectl("get", "leases", "-n", "kube-node-lease").stdout)
    assert [(row["NAME"], row["HOLDER"]) for row in leases] == [("bare", "bare"), ("edge", "edge")]
    lease_doc = json.loads(api.kubectl("get", "lease", "-n", "kube-node-lease", "edge", "-o", "json").stdout)
    assert lease_doc["spec"] == {"holderIdentity": "edge", "leaseDurationSeconds": 40,
                                 "renewTime": ready["lastHeartbeatTime"].replace("Z", ".000000Z")}
    assert lease_doc["metadata"]["ownerReferences"][0]["kind"] == "Node"
    refused = api.kubectl("delete", "lease", "-n", "kube-node-lease", "edge", check=False)
    assert refused.stderr.strip() == (
        "Error from server (MethodNotAllowed): the server does not allow this method on the requested resource (DELETE)"
    )
    # An update that leaves the address as it was keeps the condition and its times.
    api.kubectl("label", "node", "edge", "tier=edge")
    again = json.loads(api.kubectl("get", "node", "edge", "-o", "json").stdout)["status"]["conditions"][0]
    assert again == ready


def test_explain_reads_kdns_schemas(api: Api):
    """`kubectl explain` finds the served kinds, Endpoints and Events included, in kdns's
    /openapi/v3 (the fields, without descriptions); a kind kdns does not serve is not found,
    as on a cluster without it."""
    out = api.kubectl("explain", "service.spec").stdout
    assert out.splitlines()[:2] == ["KIND:       Service", "VERSION:    v1"]
    assert "FIELD: spec <ServiceSpec>" in out
    assert "  clusterIP\t<string>" in out and "  ports\t<[]ServicePort>" in out
    slices = api.kubectl("explain", "endpointslices.endpoints.conditions.ready").stdout
    assert "GROUP:      discovery.k8s.io" in slices and "FIELD: ready <boolean>" in slices
    assert "FIELD: subsets <[]EndpointSubset>" in api.kubectl("explain", "endpoints.subsets").stdout
    assert "FIELD: involvedObject <ObjectReference>" in api.kubectl("explain", "events.involvedObject").stdout
    missing = api.kubectl("explain", "configmaps", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == 'the server doesn\'t have a resource type "configmaps"'


LIST = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: listed}
  spec: {ports: [{port: 80}]}
"""
# Fields kdns's schema leaves open (a container's command, resources) pass kubectl's check.
POD_ITEM = """\
- apiVersion: v1
  kind: Pod
  metadata: {name: listed}
  spec:
    restartPolicy: Always
    containers: [{name: c, image: nginx, command: [sh], resources: {limits: {cpu: 1}}}]
"""


def test_apply_of_a_list_is_validated_with_openapi_v2(api: Api, tmp_path):
    """`kubectl apply -f` of a `kind: List` validates the List client-side with /openapi/v2
    (protobuf): kdns's schemas there make a correct List apply and an unknown field refused
    as a cluster refuses it; `--validate=warn` skips kubectl's check, and kdns reports it."""
    listed = tmp_path / "list.yaml"
    listed.write_text(LIST + POD_ITEM)
    assert api.kubectl("apply", "-f", str(listed)).stdout.splitlines() == ["service/listed created", "pod/listed created"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(LIST.replace("name: listed", "name: other").replace("{port: 80}]}", "{port: 80}], bogus: 1}"))
    refused = api.kubectl("apply", "-f", str(bad), check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f'error: error validating "{bad}": error validating data: ValidationError(Service.spec): unknown field '
        '"bogus" in io.k8s.api.core.v1.ServiceSpec; if you choose to ignore these errors, turn validation off '
        "with --validate=false"
    )
    assert api.call(lambda store: store.get("Service", "default", "other")) is None
    warned = api.kubectl("apply", "--validate=warn", "-f", str(bad))
    # kubectl logs that it skips its own validation; kdns's Warn validation reports the field.
    assert warned.stdout.strip() == "service/other created"
    assert warned.stderr.strip().splitlines()[-1] == 'Warning: unknown field "spec.bogus"'


def test_run_creates_a_pod(api: Api):
    """`kubectl run` sends JSON: the Pod is created."""
    assert api.kubectl("run", "box", "--image=busybox").stdout.strip() == "pod/box created"
    assert api.call(lambda store: store.get("Pod", "default", "box")) is not None


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (("logs", "web-1"), ("Error from server (NotImplemented): pods/log is not served: kdns runs no containers, "
         "so a pod has no logs to read")),
        (("logs", "gone"), 'error: error from server (NotFound): pods "gone" not found in namespace "default"'),
        (("exec", "web-1", "--", "ls"), ("Error from server (NotImplemented): pods/exec is not served: kdns runs no "
         "containers, so there is none to run a command in")),
        (("attach", "web-1"), ("Error from server (NotImplemented): pods/attach is not served: kdns runs no "
         "containers, so there is none to attach to")),
        (("port-forward", "pod/web-1", "18080:8080"), ("error: error upgrading connection: pods/portforward is not "
         "served: kdns runs no containers, so there is no pod port to forward")),
        (("get", "--raw", "/api/v1/namespaces/default/services/web/proxy/healthz"), (
         "Error from server (NotImplemented): services/proxy is not served: kdns's API proxies no HTTP to services; "
         "connect to the ClusterIP (kdns serve --proxy)")),
        (("scale", "deployment", "web", "--replicas=2"), 'error: the server doesn\'t have a resource type "deployment"'),
        (("rollout", "status", "deployment/web"), 'error: the server doesn\'t have a resource type "deployment"'),

    ],
)
def test_what_kubectl_cannot_do_here(api: Api, tmp_path, command, error):
    """The commands the README lists as not working, and the error each prints: kdns runs
    no containers (501 NotImplemented saying so, after a 404 for a pod that is not there)
    and serves no workloads."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    api.kubectl("apply", "-f", str(manifest))
    result = api.kubectl(*command, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == error


def test_describe_label_annotate_replace(api: Api, tmp_path):
    """`kubectl describe`, `label`, `annotate` and `replace` work on a served kind."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    api.kubectl("apply", "-f", str(manifest))
    described = api.kubectl("describe", "service", "web").stdout
    assert "Name:                     web" in described and f"IP:                       {cluster_ip(api)}" in described
    assert api.kubectl("label", "service", "web", "tier=front").stdout.strip() == "service/web labeled"
    assert api.kubectl("annotate", "service", "web", "owner=team").stdout.strip() == "service/web annotated"
    live = json.loads(api.kubectl("get", "service", "web", "-o", "json").stdout)
    assert live["metadata"]["labels"]["tier"] == "front" and live["metadata"]["annotations"]["owner"] == "team"
    live["spec"]["ports"][0]["port"] = 81
    assert api.kubectl("replace", "-f", "-", input=json.dumps(live)).stdout.strip() == "service/web replaced"
    assert api.call(lambda store: store.get("Service", "default", "web").manifest["spec"]["ports"][0]["port"]) == 81


SSA_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: owned}
spec:
  selector: {app: owned}
  ports:
  - {name: http, port: PORT, targetPort: TARGET}
"""


def ssa(api: Api, tmp_path, manager: str, port: int, target: int, *flags: str, check: bool = True):
    manifest = tmp_path / f"{manager}.yaml"
    manifest.write_text(SSA_SERVICE.replace("PORT", str(port)).replace("TARGET", str(target)))
    return api.kubectl("apply", "--server-side", f"--field-manager={manager}", *flags, "-f", str(manifest), check=check)


def test_server_side_apply_owns_fields(api: Api, tmp_path):
    """Each apply records what its manager set in managedFields: applying again with a
    changed list key replaces the item (no `Duplicate value`), and another manager's
    different value is a conflict until it forces it."""
    ssa(api, tmp_path, "ci", 80, 8080)
    ssa(api, tmp_path, "ci", 81, 8080)
    live = json.loads(api.kubectl("get", "svc", "owned", "-o", "json", "--show-managed-fields").stdout)
    assert [(p["port"], p["name"]) for p in live["spec"]["ports"]] == [(81, "http")]
    [entry] = live["metadata"]["managedFields"]
    assert {k: entry[k] for k in ("manager", "operation", "apiVersion", "fieldsType")} == {
        "manager": "ci", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1"}
    assert entry["fieldsV1"]["f:spec"]["f:ports"] == {
        'k:{"port":81}': {".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}}}
    # Another manager, the same value: shared, no conflict.
    ssa(api, tmp_path, "other", 81, 8080)
    refused = ssa(api, tmp_path, "other", 81, 9090, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        'error: Apply failed with 1 conflict: conflict with "ci": .spec.ports[port=81].targetPort\n'
    )
    forced = ssa(api, tmp_path, "other", 81, 9090, "--force-conflicts")
    assert forced.stdout.strip() == "service/owned serverside-applied"
    live = json.loads(api.kubectl("get", "svc", "owned", "-o", "json", "--show-managed-fields").stdout)
    assert live["spec"]["ports"][0]["targetPort"] == 9090
    ci = next(e for e in live["metadata"]["managedFields"] if e["manager"] == "ci")
    assert "f:targetPort" not in ci["fieldsV1"]["f:spec"]["f:ports"]['k:{"port":81}']


def managers(api: Api, name: str) -> dict[tuple[str, str], dict[str, Any]]:
    live = json.loads(api.kubectl("get", "svc", name, "-o", "json", "--show-managed-fields").stdout)
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in live["metadata"]["managedFields"]}


def test_updates_own_fields_and_applies_conflict_with_them(api: Api, tmp_path):
    """Writes other than apply are Update operations of the manager kubectl names
    (`kubectl-client-side-apply`, `kubectl-label`, `kubectl-patch`): each owns what it
    changed, taking it from the others; a server-side apply of another value conflicts
    with an Update's field as with the API server, and forcing takes it over."""
    manifest = tmp_path / "svc.yaml"
    manifest.write_text(SSA_SERVICE.replace("PORT", "80").replace("TARGET", "8080"))
    api.kubectl("apply", "-f", str(manifest))
    api.kubectl("label", "svc", "owned", "tier=web")
    api.kubectl("patch", "svc", "owned", "-p", '{"spec":{"ports":[{"port":80,"targetPort":9090}]}}')
    owners = managers(api, "owned")
    assert set(owners) == {("kubectl-client-side-apply", "Update"), ("kubectl-label", "Update"),
                           ("kubectl-patch", "Update")}
    assert owners["kubectl-label", "Update"] == {"f:metadata": {"f:labels": {"f:tier": {}}}}
    assert owners["kubectl-patch", "Update"] == {"f:spec": {"f:ports": {'k:{"port":80}': {"f:targetPort": {}}}}}
    assert "f:targetPort" not in owners["kubectl-client-side-apply", "Update"]["f:spec"]["f:ports"]['k:{"port":80}']
    refused = ssa(api, tmp_path, "ci", 80, 7070, check=False)
    assert refused.stderr.startswith(
        'error: Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .spec.ports[port=80].targetPort\n'
    )
    ssa(api, tmp_path, "ci", 80, 7070, "--force-conflicts")
    owners = managers(api, "owned")
    assert ("kubectl-patch", "Update") not in owners  # it owned nothing else
    assert owners["ci", "Apply"]["f:spec"]["f:ports"]['k:{"port":80}']["f:targetPort"] == {}
    # Without ?fieldManager= the manager is the User-Agent's product.
    api.request("PATCH", "/api/v1/namespaces/default/services/owned", {"metadata": {"annotations": {"a": "b"}}},
                content_type="application/merge-patch+json", headers={"User-Agent": "deployer/2.1 (linux)"})
    assert managers(api, "owned")["deployer", "Update"] == {"f:metadata": {"f:annotations": {"f:a": {}}}}


def test_a_status_write_owns_only_what_it_changed(api: Api, tmp_path):
    """A readiness flip through the status subresource is an Update of that subresource
    owning the one field it changed, which the pod's creator loses and keeps the rest of
    the condition; a label removed is nobody's any more."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    api.kubectl("apply", "-f", str(manifest))
    api.request("PATCH", "/api/v1/namespaces/default/pods/web-2/status",
                {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
                content_type="application/merge-patch+json", headers={"User-Agent": "kubelet/1.31"})
    api.kubectl("label", "pod", "web-2", "tier=web")
    api.kubectl("label", "pod", "web-2", "tier-")
    live = json.loads(api.kubectl("get", "pod", "web-2", "-o", "json", "--show-managed-fields").stdout)
    owners = {(e["manager"], e.get("subresource")): e["fieldsV1"] for e in live["metadata"]["managedFields"]}
    assert set(owners) == {("kubectl-client-side-apply", None), ("kubelet", "status")}
    assert owners["kubelet", "status"] == {"f:status": {"f:conditions": {'k:{"type":"Ready"}': {"f:status": {}}}}}
    creator = owners["kubectl-client-side-apply", None]
    assert creator["f:status"]["f:conditions"] == {'k:{"type":"Ready"}': {".": {}, "f:type": {}}}
    assert creator["f:metadata"]["f:labels"] == {"f:app": {}}
    assert "f:podIP" in creator["f:status"] and "f:containers" in creator["f:spec"]


def test_get_endpoints_mirrors_the_slices(api: Api, tmp_path):
    """`kubectl get endpoints` reads Endpoints made from the EndpointSlices: ready
    addresses in `addresses`, the others in `notReadyAddresses`; they cannot be written."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    api.kubectl("apply", "-f", str(manifest))
    api.request("PATCH", "/api/v1/namespaces/default/pods/web-2/status",
                {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
                content_type="application/merge-patch+json")
    [row] = columns(api.kubectl("get", "endpoints").stdout)
    assert (row["NAME"], row["ENDPOINTS"]) == ("web", "10.244.0.5:8080")
    endpoints = json.loads(api.kubectl("get", "ep", "web", "-o", "json").stdout)
    assert endpoints["kind"] == "Endpoints" and endpoints["metadata"]["labels"] == {"app": "web"}
    [subset] = endpoints["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.244.0.5"]
    assert subset["addresses"][0]["nodeName"] == "node-1"
    assert subset["addresses"][0]["targetRef"]["name"] == "web-1"
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.244.0.6"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    refused = api.kubectl("delete", "endpoints", "web", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "Error from server (MethodNotAllowed): the server does not allow this method on the requested resource (DELETE)"
    )
    missing = api.kubectl("get", "endpoints", "nothing", check=False)
    assert missing.stderr.strip() == 'Error from server (NotFound): endpoints "nothing" not found'


def test_allocation_failures_are_warning_events(api_server):
    """A Service refused for want of a NodePort or ClusterIP is refused to its writer and
    said in a Warning Event: on the stored Service for an update (`describe service` shows
    it), on the name a refused create gave; a dry run records nothing."""
    api = api_server(store_options={"node_port_range": (30000, 30001), "service_cidrs": ["10.96.0.0/30"]})

    def service(name: str, spec: str) -> str:
        return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {spec}\n"

    api.kubectl("apply", "-f", "-", input=service("a", "{type: NodePort, ports: [{port: 80}]}"))
    api.kubectl("apply", "-f", "-", input=service("b", "{ports: [{port: 80}]}"))
    dry = api.kubectl("create", "--dry-run=server", "-f", "-", input=service("c", "{ports: [{port: 80}]}"), check=False)
    assert dry.stderr.strip() == ('Error from server (BadRequest): error when creating "STDIN": failed to allocate a '
                                  "serviceIP: range is full: 10.96.0.0/30")
    assert api.kubectl("get", "events", "-o", "json").stdout.count('"reason"') == 0
    full = api.kubectl("create", "-f", "-", input=service("c", "{ports: [{port: 80}]}"), check=False)
    assert full.returncode == 1
    taken = api.kubectl("patch", "svc", "b", "-p", '{"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30000}]}}',
                        check=False)
    assert taken.stderr.strip() == ('The Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30000: '
                                    "provided port is already allocated")
    events = {(e["involvedObject"]["name"], e["reason"]): e for e in
              json.loads(api.kubectl("get", "events", "-o", "json").stdout)["items"]}
    assert set(events) == {("c", "FailedToAllocateClusterIP"), ("b", "FailedToAllocateNodePort")}
    refused_create = events["c", "FailedToAllocateClusterIP"]
    assert (refused_create["type"], refused_create["message"], refused_create["source"]) == (
        "Warning", "failed to allocate a serviceIP: range is full: 10.96.0.0/30", {"component": "kdns-apiserver"})
    assert "uid" not in refused_create["involvedObject"]
    described = api.kubectl("describe", "svc", "b").stdout
    events_section = described[described.index("Events:"):].splitlines()
    assert events_section[3].split(None, 4) == [
        "Warning", "FailedToAllocateNodePort", events_section[3].split()[2], "kdns-apiserver",
        "spec.ports[0].nodePort: Invalid value: 30000: provided port is already allocated"]
