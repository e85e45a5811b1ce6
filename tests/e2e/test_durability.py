"""The registry on disk (--data-dir): what the API acknowledged survives kill -9, and the
manifests are applied on top at each start; --ephemeral keeps nothing; one kdns per directory."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.rdatatype

from tests.e2e.kubeapi import Client
from tests.e2e.test_startup import EXIT_TIMEOUT, REPO

SERVICES = "/api/v1/namespaces/default/services"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
BURST = 200  # creates fired at kdns; it is killed after half of them are acknowledged
WRITERS = 4
POD_IPS = ["10.244.0.5", "10.244.0.6"]


def pod(name: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "burst"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}


def burst_service(number: int) -> dict[str, Any]:
    """Service svc-N selecting the burst pods; every other one a NodePort."""
    spec: dict[str, Any] = {"selector": {"app": "burst"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    if number % 2 == 0:
        spec["type"] = "NodePort"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{number}"}, "spec": spec}


def cluster_ip(kdns: Any, name: str) -> list[str]:
    reply = kdns.resolve(f"{name}.default.svc.cluster.local.", "A")
    return [rdata.address for rrset in reply.answer for rdata in rrset]


def kill_halfway(kdns: Any, threads: list[threading.Thread], half: threading.Event, what: str) -> None:
    """Start the writer threads, SIGKILL kdns once `half` is set, and wait for every writer."""
    for thread in threads:
        thread.start()
    try:
        assert half.wait(30), f"{what} did not get half-way"
        os.kill(kdns.pid, signal.SIGKILL)
        assert kdns.proc.wait(10) == -signal.SIGKILL
    finally:
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)


def serial(kdns: Any) -> int:
    (rrset,) = kdns.resolve("cluster.local.", "SOA").answer
    return rrset[0].serial


def test_kill_9_mid_burst_loses_no_acknowledged_write(kdns_process: Callable[..., Any], tmp_path: Path):
    """kill -9 during a burst of creates: after a restart every 2xx'd Service is there, same IPs and ports, complete, and versions go on."""
    data = tmp_path / "data"
    kdns = kdns_process("--data-dir", str(data))
    client = Client(kdns.api_url, tmp_path / "home")
    for number, ip in enumerate(POD_IPS):
        assert client.request("POST", "/api/v1/namespaces/default/pods", pod(f"pod-{number}", ip)).status == 201

    acknowledged: dict[str, dict[str, Any]] = {}
    failed: list[BaseException] = []
    lock = threading.Lock()
    half = threading.Event()

    def writer(first: int) -> None:
        for number in range(first, BURST, WRITERS):
            try:
                reply = client.request("POST", SERVICES, burst_service(number), timeout=10)
            except (OSError, http.client.HTTPException) as exc:  # kdns is gone
                with lock:
                    failed.append(exc)
                return
            assert reply.status == 201, reply.body
            with lock:
                acknowledged[f"svc-{number}"] = reply.json
                if len(acknowledged) >= BURST // 2:
                    half.set()

    threads = [threading.Thread(target=writer, args=(first,), name=f"writer-{first}") for first in range(WRITERS)]
    kill_halfway(kdns, threads, half, "the burst")
    assert failed and len(acknowledged) < BURST, "kdns was killed in the middle of the burst"

    again = kdns_process("--data-dir", str(data))
    client = Client(again.api_url, tmp_path / "home")
    listed = client.request("GET", SERVICES).json
    stored = {item["metadata"]["name"]: item for item in listed["items"]}
    for name, reply in acknowledged.items():
        item = stored[name]
        assert item["metadata"]["uid"] == reply["metadata"]["uid"]
        assert item["metadata"]["resourceVersion"] == reply["metadata"]["resourceVersion"]
        assert item["spec"]["clusterIPs"] == reply["spec"]["clusterIPs"]
        assert [p.get("nodePort") for p in item["spec"]["ports"]] == [p.get("nodePort") for p in reply["spec"]["ports"]]
        assert cluster_ip(again, name) == reply["spec"]["clusterIPs"]
    # Nothing half-applied: every stored Service (acknowledged or not) has its EndpointSlice with both pods.
    slices = client.request("GET", SLICES).json["items"]
    by_service = {s["metadata"]["labels"]["kubernetes.io/service-name"]: s for s in slices}
    assert set(by_service) == set(stored)
    for item in by_service.values():
        assert sorted(a for e in item["endpoints"] for a in e["addresses"]) == POD_IPS
    srv = again.resolve("_http._tcp.svc-0.default.svc.cluster.local.", "SRV")
    assert [rdata.port for rrset in srv.answer if rrset.rdtype == dns.rdatatype.SRV for rdata in rrset] == [80]
    # Versions never go back: the store, the zone serial and the next write are past every acknowledged one.
    newest = max(int(reply["metadata"]["resourceVersion"]) for reply in acknowledged.values())
    assert int(listed["metadata"]["resourceVersion"]) >= newest
    assert serial(again) == int(listed["metadata"]["resourceVersion"])
    after = client.request("POST", SERVICES, burst_service(BURST + 1))
    assert after.status == 201 and int(after.json["metadata"]["resourceVersion"]) > int(listed["metadata"]["resourceVersion"])


def ready_patch(ready: bool) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_kill_9_mid_readiness_flips_keeps_each_pods_last_acknowledged_state(kdns_process: Callable[..., Any], tmp_path: Path):
    """Writers flip their own pods' readiness (status PATCHes, saved in groups by the journal's
    thread); after kill -9 and a restart each pod has the last state acknowledged for it, or
    the one sent after it (sent, not acknowledged), and its EndpointSlice agrees."""
    data = tmp_path / "data"
    kdns = kdns_process("--data-dir", str(data))
    client = Client(kdns.api_url, tmp_path / "home")
    pods = [f"flip-{number}" for number in range(WRITERS * 2)]
    for number, name in enumerate(pods):
        created = client.request("POST", "/api/v1/namespaces/default/pods", pod(name, f"10.244.1.{number + 1}"))
        assert created.status == 201, created.body
    assert client.request("POST", SERVICES, burst_service(1)).status == 201  # selects app=burst: the flip pods

    acknowledged: dict[str, bool] = {}  # pod -> the last readiness answered 2xx
    sent: dict[str, bool] = {}  # pod -> the last readiness sent
    lock = threading.Lock()
    half = threading.Event()
    counted = [0]

    def writer(mine: list[str]) -> None:
        for flip in range(BURST):
            name, ready = mine[flip % len(mine)], flip // len(mine) % 2 == 1
            with lock:
                sent[name] = ready
            try:
                reply = client.request("PATCH", f"/api/v1/namespaces/default/pods/{name}/status", ready_patch(ready),
                                       content_type="application/merge-patch+json", timeout=10)
            except (OSError, http.client.HTTPException):  # kdns is gone
                return
            assert reply.status == 200, reply.body
            with lock:
                acknowledged[name] = ready
                counted[0] += 1
                if counted[0] >= BURST // 2:
                    half.set()

    threads = [threading.Thread(target=writer, args=(pods[first::WRITERS],)) for first in range(WRITERS)]
    kill_halfway(kdns, threads, half, "the flips")

    again = kdns_process("--data-dir", str(data))
    client = Client(again.api_url, tmp_path / "home")
    ready_ips = set()
    for number, name in enumerate(pods):
        item = client.request("GET", f"/api/v1/namespaces/default/pods/{name}").json
        (condition,) = [c for c in item["status"]["conditions"] if c["type"] == "Ready"]
        state = condition["status"] == "True"
        if name in acknowledged:  # the acknowledged state, or the flip sent after it
            assert state in (acknowledged[name], sent[name]), (name, state, acknowledged[name], sent[name])
        if state:
            ready_ips.add(f"10.244.1.{number + 1}")
    (endpoints,) = client.request("GET", SLICES).json["items"]
    assert {a for e in endpoints["endpoints"] if e["conditions"]["ready"] for a in e["addresses"]} == ready_ips


MANIFEST = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


def test_a_restart_restores_the_registry_and_applies_the_manifests_on_top(kdns_process: Callable[..., Any], tmp_path: Path):
    """What the API wrote survives a restart; a changed manifest updates its object in place; an unchanged one writes nothing."""
    data = tmp_path / "data"
    first = kdns_process("--data-dir", str(data), manifests=[MANIFEST])
    client = Client(first.api_url, tmp_path / "home")
    web = client.request("GET", f"{SERVICES}/web").json
    extra = client.request("POST", SERVICES, {"metadata": {"name": "extra"}, "spec": {"ports": [{"port": 53}]}})
    assert extra.status == 201
    assert first.stop() == 0

    # One file for the second and third starts: objects are annotated with the file they
    # came from, so a manifest moved to another file is written again.
    changed = tmp_path / "manifest.yaml"
    changed.write_text(MANIFEST.replace("port: 80,", "port: 8081,"))
    second = kdns_process("--data-dir", str(data), manifests=[changed])
    client = Client(second.api_url, tmp_path / "home")
    again = client.request("GET", f"{SERVICES}/web").json
    assert [p["port"] for p in again["spec"]["ports"]] == [8081], "the manifest was applied on top"
    assert (again["metadata"]["uid"], again["spec"]["clusterIP"]) == (web["metadata"]["uid"], web["spec"]["clusterIP"])
    kept = client.request("GET", f"{SERVICES}/extra").json
    assert (kept["metadata"]["uid"], kept["spec"]["clusterIP"]) == (extra.json["metadata"]["uid"], extra.json["spec"]["clusterIP"])
    assert cluster_ip(second, "extra") == [extra.json["spec"]["clusterIP"]]
    version = client.request("GET", SERVICES).json["metadata"]["resourceVersion"]
    assert second.stop() == 0

    third = kdns_process("--data-dir", str(data), manifests=[changed])
    client = Client(third.api_url, tmp_path / "home")
    assert client.request("GET", SERVICES).json["metadata"]["resourceVersion"] == version, "nothing was written again"
    assert any(f"registry saved in {data / 'registry.sqlite3'}" in line for line in third.output), third.output


def test_ephemeral_keeps_nothing_on_disk(kdns_process: Callable[..., Any], tmp_path: Path):
    """With --ephemeral, writes are served but no file is made, not even the default data directory."""
    state, home = tmp_path / "state", tmp_path / "home"
    home.mkdir()
    kdns = kdns_process("--ephemeral", env={"XDG_STATE_HOME": str(state), "HOME": str(home)})
    client = Client(kdns.api_url, tmp_path / "kubectl-home")
    created = client.request("POST", SERVICES, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})
    assert created.status == 201
    assert cluster_ip(kdns, "web") == [created.json["spec"]["clusterIP"]]
    assert kdns.stop() == 0
    assert not state.exists() and list(home.iterdir()) == []
    assert any("registry in memory only" in line for line in kdns.output), kdns.output


def test_one_kdns_per_data_directory(kdns_process: Callable[..., Any], tmp_path: Path):
    """A second kdns on a data directory in use is exit code 1 and one line; the first goes on serving."""
    data = tmp_path / "data"
    first = kdns_process("--data-dir", str(data))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "kdns", "serve", "--dns-address", "127.0.0.1", "--dns-port", "0", "--api-port", "0",
         "--upstream", "none", "--data-dir", str(data), "--manifests", str(tmp_path)],
        cwd=REPO, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=EXIT_TIMEOUT,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"kdns: error: {data / 'registry.sqlite3'} is in use by another kdns: "
        "give each its own --data-dir, or use --ephemeral\n")
    client = Client(first.api_url, tmp_path / "home")
    assert client.request("POST", SERVICES, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}).status == 201


def test_a_bad_manifest_stops_a_restart_and_leaves_the_saved_registry_as_it_was(
    kdns_process: Callable[..., Any], tmp_path: Path
):
    """The saved registry is restored before the manifests are read (app._load): a manifest
    refused then stops start-up with exit 1, and the next start finds what was saved."""
    data, manifest = tmp_path / "data", tmp_path / "manifest.yaml"
    manifest.write_text(MANIFEST)  # one file for both starts (the objects name the file they came from)
    first = kdns_process("--data-dir", str(data), manifests=[manifest])
    client = Client(first.api_url, tmp_path / "home")
    extra = client.request("POST", SERVICES, {"metadata": {"name": "extra"}, "spec": {"ports": [{"port": 53}]}})
    assert extra.status == 201
    version = client.request("GET", SERVICES).json["metadata"]["resourceVersion"]
    assert first.stop() == 0

    bad = tmp_path / "bad.yaml"
    bad.write_text(MANIFEST.replace("port: 80,", "port: nope,"))
    done = subprocess.run(  # noqa: PLW1510 (the exit code is what is tested)
        [sys.executable, "-m", "kdns", "serve", "--dns-address", "127.0.0.1", "--dns-port", "0", "--api-port", "0",
         "--upstream", "none", "--data-dir", str(data), "--manifests", str(bad)],
        capture_output=True, text=True, timeout=EXIT_TIMEOUT, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 1, done.stderr
    assert f"{bad}: document 1: Service \"web\" is invalid" in done.stderr, done.stderr
    assert "serving DNS" not in done.stderr

    again = kdns_process("--data-dir", str(data), manifests=[manifest])
    client = Client(again.api_url, tmp_path / "home")
    assert client.request("GET", SERVICES).json["metadata"]["resourceVersion"] == version, "nothing was written"
    kept = client.request("GET", f"{SERVICES}/extra").json
    assert kept["metadata"]["uid"] == extra.json["metadata"]["uid"]
