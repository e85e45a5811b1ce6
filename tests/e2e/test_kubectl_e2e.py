"""The real kubectl, the kubernetes Python client and dig against a real `python -m kdns serve`.

What a user does: start kdns, `kubectl --server http://127.0.0.1:PORT apply -f` a Service
and its pods, and `dig` the names at once; then change and delete them with kubectl and
watch DNS follow. Also who may use the API: loopback by default, a bearer token and TLS
beyond it.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import KUBECTL, SERVICE_AND_PODS, _self_signed, service
from tests.e2e.kubeapi import Client
from tests.e2e.test_dig import DIG, dig
from tests.e2e.test_startup import run_kdns

pytestmark = [
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
    pytest.mark.skipif(DIG is None, reason="`dig` is not installed (Debian: apt-get install dnsutils)"),
]

WEB = "web.default.svc.cluster.local."
SRV_HTTP = f"_http._tcp.{WEB}"
SERVICES = "/api/v1/namespaces/default/services"


@pytest.fixture
def kdns(kdns_process: Callable[..., Any]) -> Any:
    """`kdns serve` over an empty cluster, registry in memory, API on a free loopback port."""
    return kdns_process()


@pytest.fixture
def client(kdns: Any, tmp_path: Path) -> Client:
    return Client(kdns.api_url, tmp_path / "home")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """The Service `web` (named port http 80) and two ready pods behind it, as a file."""
    path = tmp_path / "web.yaml"
    path.write_text(SERVICE_AND_PODS)
    return path


def answers(kdns: Any, *args: str, home: Path) -> list[str]:
    """The answer section of `dig ARGS`, as `owner ttl class type rdata` lines."""
    return dig(kdns, *args, home=home).section("ANSWER")


def test_apply_then_dig_answers_the_cluster_ip_and_srv(kdns: Any, client: Client, manifest: Path, tmp_path: Path):
    """After `kubectl apply -f`, the next dig answers the assigned ClusterIP and the SRV record, and `get svc` shows the IP."""
    out = client.kubectl("apply", "-f", str(manifest)).stdout
    assert out.splitlines() == ["service/web created", "pod/web-1 created", "pod/web-2 created"]
    ip = client.kubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert ip.startswith("10.96.")
    assert answers(kdns, WEB, home=tmp_path) == [f"{WEB} 5 IN A {ip}"]
    srv = dig(kdns, "SRV", SRV_HTTP, home=tmp_path)
    assert srv.section("ANSWER") == [f"{SRV_HTTP} 5 IN SRV 0 100 80 {WEB}"]
    assert srv.section("ADDITIONAL") == [f"{WEB} 5 IN A {ip}"]
    table = client.kubectl("get", "svc").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "TYPE", "CLUSTER-IP"]
    assert table[1].split()[:5] == ["web", "ClusterIP", ip, "<none>", "80/TCP"]
    # The pods are endpoints: their reverse names point at the service's pods.
    assert answers(kdns, "-x", "10.244.0.5", home=tmp_path) == [
        f"5.0.244.10.in-addr.arpa. 5 IN PTR 10-244-0-5.{WEB}"]


def test_server_side_apply_and_patch_change_the_answers(kdns: Any, client: Client, manifest: Path, tmp_path: Path):
    """`kubectl apply --server-side` creates and extends the Service, `kubectl patch` changes a port, and SRV follows each."""
    assert "service/web serverside-applied" in client.kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    ip = client.kubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert answers(kdns, "SRV", SRV_HTTP, home=tmp_path) == [f"{SRV_HTTP} 5 IN SRV 0 100 80 {WEB}"]
    https = "    - name: https\n      port: 443\n      targetPort: 8443\n---"
    manifest.write_text(SERVICE_AND_PODS.replace("---", https, 1))
    assert "service/web serverside-applied" in client.kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    assert answers(kdns, "SRV", f"_https._tcp.{WEB}", home=tmp_path) == [f"_https._tcp.{WEB} 5 IN SRV 0 100 443 {WEB}"]
    patch = '[{"op": "replace", "path": "/spec/ports/0/port", "value": 8081}]'
    assert client.kubectl("patch", "svc", "web", "--type", "json", "-p", patch).stdout.strip() == "service/web patched"
    assert answers(kdns, "SRV", SRV_HTTP, home=tmp_path) == [f"{SRV_HTTP} 5 IN SRV 0 100 8081 {WEB}"]
    assert answers(kdns, WEB, home=tmp_path) == [f"{WEB} 5 IN A {ip}"], "the ClusterIP stays"


def test_delete_makes_the_name_nxdomain(kdns: Any, client: Client, manifest: Path, tmp_path: Path):
    """`kubectl delete svc` makes the service's name NXDOMAIN (with the SOA), and its SRV name too."""
    client.kubectl("apply", "-f", str(manifest))
    assert dig(kdns, WEB, home=tmp_path).status == "NOERROR"
    assert client.kubectl("delete", "svc", "web").stdout.strip() == 'service "web" deleted'
    for args in ((WEB,), ("SRV", SRV_HTTP)):
        out = dig(kdns, *args, home=tmp_path)
        assert out.status == "NXDOMAIN", out.text
        assert [line.split()[3] for line in out.section("AUTHORITY")] == ["SOA"]


def test_get_watch_sees_another_clients_change(kdns: Any, client: Client, tmp_path: Path):
    """`kubectl get svc -w` prints a row for a Service another client creates, and dig answers it."""
    first = client.request("POST", SERVICES, service("first"))
    assert first.status == 201, first.body
    proc = subprocess.Popen(
        client.kubectl_argv("get", "svc", "-w", "--request-timeout=20s"), stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, env=client.kubectl_env(),
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        assert lines.get(timeout=15).split()[:3] == ["NAME", "TYPE", "CLUSTER-IP"]
        assert lines.get(timeout=15).split()[:3] == ["first", "ClusterIP", first.json["spec"]["clusterIP"]]
        second = client.request("POST", SERVICES, service("second", type="NodePort"))
        assert second.status == 201, second.body
        node_port = second.json["spec"]["ports"][0]["nodePort"]
        assert lines.get(timeout=15).split()[:5] == [
            "second", "NodePort", second.json["spec"]["clusterIP"], "<none>", f"80:{node_port}/TCP"]
    finally:
        proc.kill()
        proc.wait(timeout=5)
        reader.join(timeout=5)
        proc.stdout.close()
    name = "second.default.svc.cluster.local."
    assert answers(kdns, name, home=tmp_path) == [f"{name} 5 IN A {second.json['spec']['clusterIP']}"]


@pytest.fixture
def kube_core(client: Client) -> Iterator[tuple[Any, Any]]:
    """The official kubernetes client's CoreV1Api for this kdns, and its Watch class."""
    with warnings.catch_warnings():
        # The client's import may use APIs its dependencies deprecate; that is not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        import kubernetes.client
        import kubernetes.watch
    configuration = kubernetes.client.Configuration()
    configuration.host = client.url
    with kubernetes.client.ApiClient(configuration) as api_client:
        yield kubernetes.client.CoreV1Api(api_client), kubernetes.watch.Watch


def test_kubernetes_python_client_lists_and_watches(client: Client, kube_core: tuple[Any, Any]):
    """The kubernetes Python client lists services and, through its watch, sees one another client creates."""
    core, Watch = kube_core
    assert client.request("POST", SERVICES, service("a")).status == 201
    listed = core.list_namespaced_service("default")
    assert [s.metadata.name for s in listed.items] == ["a"]
    assert listed.items[0].spec.cluster_ip.startswith("10.96.")
    writer = threading.Timer(0.2, lambda: client.request("POST", SERVICES, service("b")))
    writer.start()
    seen = []
    watch = Watch()
    try:
        for event in watch.stream(core.list_namespaced_service, "default",
                                  resource_version=listed.metadata.resource_version, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name))
            break
    finally:
        watch.stop()
        writer.join()
    assert seen == [("ADDED", "b")]


def test_health_readiness_and_metrics(client: Client, manifest: Path):
    """/healthz and /readyz answer ok; /metrics counts the registry's objects and the API's writes."""
    assert (client.request("GET", "/healthz").status, client.request("GET", "/readyz").body) == (200, b"ok")
    client.kubectl("apply", "-f", str(manifest))
    text = client.request("GET", "/metrics").body.decode()
    assert 'kdns_registry_objects{kind="Service"} 1.0' in text
    assert 'kdns_registry_objects{kind="Pod"} 2.0' in text
    assert 'kdns_registry_objects{kind="Namespace"} 2.0' in text
    assert 'kdns_api_writes_total{code="201",resource="services",verb="create"} 1.0' in text
    assert 'kdns_dns_udp_dropped_total{reason="in_flight"} 0.0' in text
    assert 'kdns_dns_udp_dropped_total{reason="send_buffer"} 0.0' in text


# --- Who may use the API -----------------------------------------------------------------------


def test_beyond_loopback_without_a_token_is_refused_at_start():
    """--api-address off loopback without --api-token is exit code 2 and one line; nothing is served."""
    result = run_kdns("--ephemeral", "--api-port", "0", "--api-address", "0.0.0.0")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "kdns: error: --api-address '0.0.0.0': binding the API beyond loopback requires --api-token\n")


def test_a_request_without_the_token_is_401_and_changes_nothing(kdns_process: Callable[..., Any], tmp_path: Path):
    """With --api-token, a write without the token (or with a wrong one) is 401 and stores nothing; the health checks stay open."""
    kdns = kdns_process("--api-token", "s3cret")
    assert any("--api-token without --tls-cert" in line for line in kdns.output), kdns.output
    client = Client(kdns.api_url, tmp_path / "home", token="s3cret")
    for token in ("", "wrong"):
        denied = client.request("POST", SERVICES, service("web"), token=token)
        assert denied.status == 401, denied.body
        assert (denied.json["kind"], denied.json["reason"]) == ("Status", "Unauthorized")
        assert client.request("GET", f"{SERVICES}/web", token=token).status == 401
    assert client.request("GET", f"{SERVICES}/web").status == 404
    assert dig(kdns, WEB, home=tmp_path).status == "NXDOMAIN"
    assert client.request("GET", "/healthz", token="").status == 200
    assert client.request("GET", "/readyz", token="").status == 200
    assert client.request("POST", SERVICES, service("web")).status == 201


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_and_token_with_kubectl(kdns_process: Callable[..., Any], manifest: Path, tmp_path: Path):
    """Over --tls-cert/--tls-key with a token, kubectl with the right token applies and dig answers; a wrong token changes nothing."""
    _, cert = _self_signed(tmp_path)
    kdns = kdns_process("--api-token", "s3cret", "--tls-cert", str(cert), "--tls-key", str(tmp_path / "tls.key"))
    assert kdns.api_url == f"https://127.0.0.1:{kdns.api_port}"
    assert not any("--api-token without --tls-cert" in line for line in kdns.output), kdns.output
    wrong = Client(kdns.api_url, tmp_path / "home", token="wrong", ca_file=cert)
    denied = wrong.kubectl("apply", "-f", str(manifest), check=False)
    assert denied.returncode != 0 and "provide credentials" in denied.stderr, denied.stderr
    assert dig(kdns, WEB, home=tmp_path).status == "NXDOMAIN"
    right = Client(kdns.api_url, tmp_path / "home", token="s3cret", ca_file=cert)
    right.kubectl("apply", "-f", str(manifest))
    ip = json.loads(right.kubectl("get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    assert answers(kdns, WEB, home=tmp_path) == [f"{WEB} 5 IN A {ip}"]


def test_a_certificate_that_does_not_load_is_exit_2(tmp_path: Path):
    """--tls-cert naming a missing file is exit code 2 and one line naming it, before anything is served."""
    missing = tmp_path / "missing.crt"
    result = run_kdns("--ephemeral", "--api-port", "0", "--tls-cert", str(missing), "--tls-key", str(missing))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"kdns: error: --tls-cert {missing}") and len(result.stderr.splitlines()) == 1
    assert "serving" not in result.stderr
