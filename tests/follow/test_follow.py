"""`kdns serve --follow`: a follower process following a real kdns primary's API."""

from __future__ import annotations

import random
import re
import signal
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.e2e.kubeapi import Client
from tests.follow.conftest import answers, eventually, free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "zones"
FOLLOWER_FLAGS = ("--upstream", "none", "--ephemeral", "--api-port", "0")


def follow(kdns_process, kubeconfig_path: Path, *args: str):
    """A follower of the cluster in `kubeconfig_path`."""
    return kdns_process("--follow", str(kubeconfig_path), *args, manifests=None)


def service(name: str, **spec) -> dict:
    body = {"ports": [{"name": "http", "port": 80}], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def metric(process, name: str, kind: str | None = None) -> float:
    """The sum of a metric's samples on `process`'s /metrics (those of `kind` only, if given)."""
    text = urllib.request.urlopen(f"{process.api_url}/metrics", timeout=5).read().decode()
    total = 0.0
    for sample, labels, value in re.findall(r"^(\w+)(\{[^}]*\})? (\S+)$", text, re.MULTILINE):
        if sample == name and (kind is None or f'kind="{kind}"' in labels):
            total += float(value)
    return total


def test_follower_answers_what_the_primary_commits(kdns_process, kubeconfig, tmp_path):
    """The follower answers the primary's names as the primary does, with the primary's
    ClusterIPs and slices, and follows its writes; its own API is health and metrics only."""
    primary = kdns_process(manifests=[EXAMPLE])
    follower = follow(kdns_process, kubeconfig(primary.api_url))
    for name, rdtype in [
        ("my-service.default.svc.cluster.local", "A"),
        ("db.default.svc.cluster.local", "A"),
        ("_postgres._tcp.db.default.svc.cluster.local", "SRV"),
        ("20.1.244.10.in-addr.arpa", "PTR"),
        ("docs.default.svc.cluster.local", "CNAME"),
        ("node-1.node.cluster.local", "A"),
        ("10-244-1-20.default.pod.cluster.local", "A"),
    ]:
        assert answers(follower, name, rdtype) == answers(primary, name, rdtype) is not None, name
    api = Client(primary.api_url, tmp_path / "home")
    created = api.request("POST", "/api/v1/namespaces/default/services", service("new"))
    assert created.status == 201
    cluster_ip = created.json["spec"]["clusterIP"]
    assert eventually(lambda: answers(follower, "new.default.svc.cluster.local"), "the new service") == [cluster_ip]
    assert api.request("DELETE", "/api/v1/namespaces/default/services/new").status == 200
    eventually(lambda: answers(follower, "new.default.svc.cluster.local") is None, "the deletion")
    # A namespace that goes takes its names along.
    assert api.request("DELETE", "/api/v1/namespaces/default").status == 200
    eventually(lambda: answers(follower, "my-service.default.svc.cluster.local") is None, "the namespace deletion")

    with urllib.request.urlopen(f"{follower.api_url}/readyz", timeout=5) as reply:
        assert reply.read() == b"ok"
    with pytest.raises(urllib.error.HTTPError, match="HTTP Error 404") as refused:
        urllib.request.urlopen(f"{follower.api_url}/api/v1/services", timeout=5)
    body = yaml.safe_load(refused.value.read())
    assert body["message"] == f"this kdns follows the cluster at {primary.api_url} and serves no registry API: use that API"
    assert metric(follower, "kdns_follow_relists_total") == 0


def test_follower_keeps_answering_and_resumes_when_the_primary_restarts(kdns_process, kubeconfig, tmp_path):
    """While the primary is down (SIGKILL) the follower answers from what it has; when
    the primary is back (same data directory and port) the follower follows its writes."""
    port, data = free_port(), tmp_path / "primary-data"
    args = ("--data-dir", str(data), "--api-port", str(port))
    primary = kdns_process(*args, manifests=[EXAMPLE])
    follower = follow(kdns_process, kubeconfig(primary.api_url))
    api = Client(primary.api_url, tmp_path / "home")
    assert api.request("POST", "/api/v1/namespaces/default/services", service("before")).status == 201
    before = eventually(lambda: answers(follower, "before.default.svc.cluster.local"), "the first write")

    primary.stop(signal.SIGKILL)
    eventually(lambda: metric(follower, "kdns_follow_watch_failures_total") >= 1, "the follower to notice")
    assert answers(follower, "before.default.svc.cluster.local") == before
    assert answers(follower, "my-service.default.svc.cluster.local") == ["10.96.1.2"]

    primary = kdns_process(*args, manifests=[EXAMPLE])
    assert answers(primary, "before.default.svc.cluster.local") == before  # durable
    created = api.request("POST", "/api/v1/namespaces/default/services", service("after"))
    assert created.status == 201
    assert eventually(lambda: answers(follower, "after.default.svc.cluster.local"), "the write after the restart",
                      timeout=15) == [created.json["spec"]["clusterIP"]]
    assert answers(follower, "before.default.svc.cluster.local") == before
    assert any("watching /api/v1/services again from resource version" in line or "listing it again" in line
               for line in follower.output)


# --- compaction: 410, relists, and never a torn answer -------------------------------------

FILLERS = 520  # EndpointSlices beyond one list page (500): relists are paged
WINDOW = 20  # the primary's --event-log-size


def _chain_slice(step: int) -> dict:
    # Successive slices at opposite ends of the key order, so that a list that was not
    # one snapshot would see neither or both of two that were never there together.
    name = f"{'a' if step % 2 == 0 else 'z'}-chain-{step:05d}"
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": name, "namespace": "torn", "labels": {"kubernetes.io/service-name": "chain"}},
        "endpoints": [{"addresses": [_chain_address(step)], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }


def _chain_address(step: int) -> str:
    return f"10.9.{step // 256}.{step % 256}"


def _torn_cluster() -> str:
    documents = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "torn"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chain", "namespace": "torn"},
         "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}},
        _chain_slice(0),
    ]
    for number in range(FILLERS):
        name = f"f-{number:04d}"
        documents.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "torn"},
                          "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
        documents.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{name}-x", "namespace": "torn", "labels": {"kubernetes.io/service-name": name}},
            "endpoints": [{"addresses": [f"10.8.{number // 256}.{number % 256}"], "conditions": {"ready": True}}],
        })
    return yaml.safe_dump_all(documents)


class Prober(threading.Thread):
    """Asks the follower, as fast as it answers, for the chain service and a random filler,
    and records every answer, until stopped."""

    def __init__(self, follower) -> None:
        super().__init__(name="prober", daemon=True)
        self.follower = follower
        self.chain: list[list[str] | None] = []
        self.fillers: list[tuple[int, list[str] | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set() and len(self.chain) < 200_000:
            self.chain.append(answers(self.follower, "chain.torn.svc.cluster.local"))
            number = random.randrange(FILLERS)
            self.fillers.append((number, answers(self.follower, f"f-{number:04d}.torn.svc.cluster.local")))


def test_compaction_makes_the_follower_relist_and_it_never_answers_a_torn_state(
    kdns_process, kubeconfig, relay, tmp_path
):
    """The primary keeps WINDOW changes; the follower is cut off (a relay between them)
    while the primary commits more than that, so its watches resume from versions the
    primary no longer has: 410, and paged relists while the primary goes on writing.

    The primary moves a chain along: create slice k+1, then delete slice k, so the
    headless `chain` answers {k} or {k, k+1}, never nothing and never two that were not
    consecutive. Every answer the follower gives, before, during and after each relist,
    must be such a state, with k never going back; and 520 other services, listed over
    two pages, must answer throughout."""
    primary = kdns_process("--event-log-size", str(WINDOW), manifests=[_torn_cluster()])
    cut = relay(primary.api_port)
    follower = follow(kdns_process, kubeconfig(f"http://127.0.0.1:{cut.port}"), "--log-level", "debug")
    assert answers(follower, "chain.torn.svc.cluster.local") == [_chain_address(0)]
    api = Client(primary.api_url, tmp_path / "home")
    slices = "/apis/discovery.k8s.io/v1/namespaces/torn/endpointslices"
    step = 0

    def advance(count: int) -> None:
        nonlocal step
        for _ in range(count):
            assert api.request("POST", slices, _chain_slice(step + 1)).status == 201
            assert api.request("DELETE", f"{slices}/{_chain_slice(step)['metadata']['name']}").status == 200
            step += 1

    prober = Prober(follower)
    prober.start()
    try:
        for round_ in range(1, 4):
            cut.cut()
            advance(WINDOW)  # twice the window in events: the follower's versions are gone
            cut.mend()
            while min(metric(follower, "kdns_follow_relists_total", kind) for kind in ("EndpointSlice", "Service")) < round_:
                advance(1)  # writes go on while the follower lists
                assert step < 2000, "the follower did not relist:\n" + "".join(follower.output[-80:])
        final = [_chain_address(step)]
        eventually(lambda: answers(follower, "chain.torn.svc.cluster.local") == final, "the last step")
    finally:
        prober.stopping.set()
        prober.join(10)

    assert metric(follower, "kdns_follow_relists_total", "EndpointSlice") >= 3
    assert metric(follower, "kdns_follow_relists_total", "Service") >= 3
    last = 0
    for answer in prober.chain:
        assert answer, "the follower answered the chain from a state the primary never had: no slice"
        steps = sorted(int(a.split(".")[2]) * 256 + int(a.split(".")[3]) for a in answer)
        assert len(steps) <= 2 and steps[-1] - steps[0] <= 1, f"torn: {answer}"
        assert steps[0] >= last, f"went back from step {last} to {answer}"
        last = steps[0]
    for number, answer in prober.fillers:
        assert answer == [f"10.8.{number // 256}.{number % 256}"], f"f-{number:04d} answered {answer}"
    assert len(prober.chain) > 100
