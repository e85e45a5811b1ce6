"""A start-up load (every manifest in one transaction, the EndpointSlice controller run
once per Service at its end) makes the registry and the DNS answers that the same
documents written one at a time, each its own commit, make: the per-event path the API
takes, where the controller reconciles a Service at every pod that arrives."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from kdns.authority.index import ClusterIndex
from kdns.config import Settings
from kdns.registry import declared, typedrows
from kdns.registry.errors import RegistryError
from kdns.registry.manifests import Document, read_paths
from kdns.registry.objects import Deferred, KubeObject, may_mention
from kdns.registry.store import Store, Transaction, apply_order
from tests.authority.zonetext import ask, lines

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "bench"))

import gen

# A Service asking for its address and node port, a NodePort one given both, a pod that
# is not ready and one that is terminating, beside the generator's cluster.
_EXTRA = """\
apiVersion: v1
kind: Service
metadata: {name: fixed, namespace: ns-00}
spec: {clusterIP: 10.96.0.10, type: NodePort, selector: {app: fixed}, ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053}]}
---
apiVersion: v1
kind: Service
metadata: {name: np, namespace: ns-01}
spec: {type: NodePort, selector: {app: fixed}, ports: [{name: http, port: 80, targetPort: web}]}
---
apiVersion: v1
kind: Pod
metadata: {name: fixed-a, namespace: ns-00, labels: {app: fixed}}
spec: {containers: [{name: c, image: i, ports: [{name: web, containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.250.0.1, podIPs: [{ip: 10.250.0.1}], conditions: [{type: Ready, status: "False"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: fixed-b, namespace: ns-01, labels: {app: fixed}}
spec: {containers: [{name: c, image: i, ports: [{name: web, containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.250.0.2, podIPs: [{ip: 10.250.0.2}], conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: fixed-c, namespace: ns-01, labels: {app: fixed}, deletionTimestamp: "2026-12-07T00:00:00Z"}
spec: {containers: [{name: c, image: i, ports: [{name: web, containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.250.0.3, podIPs: [{ip: 10.250.0.3}], conditions: [{type: Ready, status: "True"}]}
"""

SPEC = gen.Spec(namespaces=3, services=30, service_pods=3, headless=12, headless_pods=6, queries=10)


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> tuple[gen.Cluster, Path]:
    directory = tmp_path_factory.mktemp("bulk") / "manifests"
    built = gen.build(SPEC)
    gen.write_manifests(built, directory)
    (directory / "zz-extra.yaml").write_text(_EXTRA)
    return built, directory


@pytest.fixture(scope="module")
def cluster(manifests: tuple[gen.Cluster, Path]) -> tuple[gen.Cluster, list[Document]]:
    built, directory = manifests
    loaded = read_paths([directory])
    assert loaded.errors == []
    declared.mark(loaded.documents)
    return built, loaded.documents


def _bulk(directory: Path, *, journaled: bool = False) -> Store:
    """As `kdns serve` loads (kdns.app._load): every document, as read_paths kept it, in
    one transaction that owns them; `journaled`, with a critical listener (the journal's
    place: then no document is left Deferred)."""
    loaded = read_paths([directory], declared.packer())
    assert loaded.errors == []
    store = Store()
    if journaled:
        store.subscribe(lambda events: None, critical=True)
    with store.transaction() as txn:
        declared.apply(txn, loaded.documents, owned=True)
    return store


def _one_by_one(documents: list[Document]) -> Store:
    """Each document its own commit, as API writes: Namespaces, then each pod before the
    Services that select it (so that every Service is made with its pods there), then
    the Services in the order the bulk load allocates their addresses."""
    store = Store()
    ordered = sorted(documents, key=lambda d: (d.kind != "Namespace", d.kind != "Pod", apply_order(d)))
    for document in ordered:
        with store.transaction() as txn:
            txn.apply(document.tree())
    return store


def _one_by_one_pods_last(documents: list[Document]) -> Store:
    """Each document its own commit in apply order: every pod's arrival reconciles the
    Services selecting it again."""
    store = Store()
    for document in sorted(documents, key=apply_order):
        with store.transaction() as txn:
            txn.apply(document.tree())
    return store


def _slices(store: Store) -> list[dict[str, Any]]:
    """The EndpointSlices as documents, with each pod's uid (a new one in every registry)
    replaced by the pod's name, and what every write makes anew left out: their names too,
    which are drawn from their ports (a Service made before its pods first has an empty
    slice, which the one with ports replaces), in the order of their contents."""
    uids = {pod.meta.uid: f"{pod.meta.namespace}/{pod.meta.name}" for pod in store.list("Pod")}
    found = []
    for obj in store.list("EndpointSlice"):
        manifest = obj.manifest
        metadata = manifest["metadata"]
        for key in ("name", "uid", "creationTimestamp", "resourceVersion", "generation", "managedFields"):
            metadata.pop(key, None)
        for owner in metadata.get("ownerReferences", ()):
            owner.pop("uid", None)
        for endpoint in manifest.get("endpoints") or ():
            ref = endpoint.get("targetRef")
            if ref is not None:
                ref["uid"] = uids[ref["uid"]]
        found.append(manifest)
    return sorted(found, key=repr)


def _allocations(store: Store) -> list[tuple[str, str, tuple[str, ...], tuple[int | None, ...]]]:
    return [(s.meta.namespace, s.meta.name, tuple(s.cluster_ips), tuple(p.node_port for p in s.ports))  # type: ignore[attr-defined]
            for s in store.list("Service")]


def _answers(store: Store, cluster: gen.Cluster) -> dict[tuple[str, str], tuple[str, list[str], list[str]]]:
    """The answer to every name the cluster has, of every type asked of it, and to a
    few that are not there."""
    settings = Settings()
    index = ClusterIndex(settings)
    index.rebuild(store.objects(), 1)  # (one serial for both: the SOA shows it)
    names = set(gen.records(cluster).data) | {
        "fixed.ns-00.svc.cluster.local.", "np.ns-01.svc.cluster.local.", "_http._tcp.np.ns-01.svc.cluster.local.",
        "nope.ns-00.svc.cluster.local.", "10.0.96.10.in-addr.arpa.",
    }
    found = {}
    for name in sorted(names):
        for qtype in ("A", "AAAA", "SRV", "PTR"):
            got = ask(index, settings, name, qtype)
            assert got is not None
            found[(name, qtype)] = (str(got.rcode), lines(got.answer), lines(got.additional))
    return found


def _same_registry(bulk: Store, other: Store) -> None:
    assert _allocations(bulk) == _allocations(other)
    assert _slices(bulk) == _slices(other)
    for kind in ("Namespace", "Service", "Pod"):
        assert [o.meta.name for o in bulk.list(kind)] == [o.meta.name for o in other.list(kind)]


@pytest.mark.parametrize("write", [_one_by_one, _one_by_one_pods_last])
def test_bulk_load_equals_writes_one_at_a_time(manifests: tuple[gen.Cluster, Path],
                                               cluster: tuple[gen.Cluster, list[Document]], write: Any) -> None:
    built, documents = cluster
    bulk, other = _bulk(manifests[1]), write(documents)
    _same_registry(bulk, other)
    answers = _answers(bulk, built)
    assert answers == _answers(other, built)
    # The cluster is not empty of what the comparison is about.
    assert answers[("fixed.ns-00.svc.cluster.local.", "A")][1] == ["fixed.ns-00.svc.cluster.local. 5 IN A 10.96.0.10"]
    fixed = bulk.get("Service", "ns-00", "fixed")
    assert fixed is not None and [p.node_port for p in fixed.ports] == [30053]  # type: ignore[attr-defined]
    assert sum(len(s.manifest.get("endpoints") or ()) for s in bulk.list("EndpointSlice")) == (
        SPEC.services * SPEC.service_pods + SPEC.headless * SPEC.headless_pods + 1 + 2)



def _texts(store: Store) -> dict[tuple[str, str, str], str]:
    """Every object's document as the API writes it (JSON in the dicts' order), with what
    differs between two registries made of the same documents (uids, creation times)
    replaced by names."""
    objects = store.objects()
    uids = {obj.meta.uid: f"uid of {obj.key}" for obj in objects}
    found = {}
    for obj in objects:
        text = json.dumps(obj.manifest, separators=(",", ":"))
        for uid, name in uids.items():
            text = text.replace(uid, name)
        found[(obj.kind, obj.meta.namespace, obj.meta.name)] = text.replace(obj.meta.creation_timestamp, "created")
    return found


def _row(obj: KubeObject) -> tuple[KubeObject, bytes]:
    """The object the journal's row of `obj` gives back, and its document as held."""
    back = typedrows.Decoder().decode(obj.kind, typedrows.encode(obj))
    assert isinstance(back.document, bytes)
    return back, back.document


def test_deferred_documents_read_as_admitted(manifests: tuple[gen.Cluster, Path]) -> None:
    """A start-up load leaves its pods' documents Deferred (packed after kdns answers:
    Store.pack_deferred); read through the API, each is byte for byte what admission
    made of it, before it is packed and after, and the journal's rows are the same."""
    deferred, packed = _bulk(manifests[1]), _bulk(manifests[1], journaled=True)
    pods = deferred.list("Pod")
    assert deferred.deferred == len(pods) > 0 and packed.deferred == 0
    assert all(isinstance(pod.document, Deferred) for pod in pods)
    assert not any(isinstance(obj.document, Deferred) for obj in packed.objects())
    expected = _texts(packed)
    assert _texts(deferred) == expected
    # (Rows compared decoded: marshal marks the objects it met before, which depends on
    # who else holds them.)
    rows = {obj.key: _row(obj) for obj in pods}
    assert deferred.pack_deferred(5) == len(pods) - 5
    assert sum(isinstance(pod.document, Deferred) for pod in pods) == len(pods) - 5
    assert _texts(deferred) == expected
    assert deferred.pack_deferred(len(pods)) == 0
    assert not any(isinstance(obj.document, Deferred) for obj in deferred.objects())
    assert _texts(deferred) == expected
    assert {obj.key: _row(obj) for obj in pods} == rows
    assert all(may_mention(pod, "Running") and not may_mention(pod, "no such text") for pod in pods)


def test_a_refused_load_leaves_nothing_to_pack(manifests: tuple[gen.Cluster, Path], tmp_path: Path) -> None:
    """A load that is refused (a bad document after the pods) is undone whole, and leaves
    no Deferred document behind to pack."""
    bad = tmp_path / "manifests"
    shutil.copytree(manifests[1], bad)
    (bad / "zz-bad.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name, namespace: ns-00}\n")
    loaded = read_paths([bad], declared.packer())
    store = Store()
    with pytest.raises(RegistryError), store.transaction() as txn:
        declared.apply(txn, loaded.documents, owned=True)
    assert store.deferred == 0 and store.count("Pod") == 0


_ODD_PODS = """\
apiVersion: v1
kind: Pod
metadata: {name: managed, namespace: ns-00, labels: {app: fixed}, managedFields: [{manager: kubectl}]}
status: {phase: Running, podIP: 10.250.0.9}
---
apiVersion: v1
kind: Pod
metadata: {name: dual, namespace: ns-01, labels: {app: fixed}}
status: {phase: Running, podIP: 10.250.0.8, podIPs: [{ip: 10.250.0.8}, {ip: "fd00::8"}]}
"""


def _load_with(directory: Path, add_pod: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Store, list[Any]]:
    """_bulk, with Transaction._add_pod (a bulk load's plain new pods in one step) or
    without it (every pod through _apply), with uids and clocks that repeat, in one
    transaction: the documents but the pods, their slices made, the pods, then every
    document again (every pod is there already); what it stored, and what the
    transaction journaled, recorded and marked for the EndpointSlice controller."""
    loaded = read_paths([directory], declared.packer())
    assert loaded.errors == []
    store = Store()
    uids = iter(range(1_000_000))
    store._context = dataclasses.replace(store._context, new_uid=lambda: f"uid-{next(uids)}", clock=lambda: 1.0e9)
    added = []
    with monkeypatch.context() as patch:
        if add_pod:
            original = Transaction._add_pod
            patch.setattr(Transaction, "_add_pod", lambda *args: added.append(original(*args)) or added[-1])
        else:
            patch.setattr(Transaction, "_add_pod", lambda *args: None)
        with store.transaction() as txn:
            txn.apply_documents([d for d in loaded.documents if d.kind != "Pod"], owned=True)
            txn.list("EndpointSlice")  # (the controller runs: nothing is marked)
            txn.apply_documents([d for d in loaded.documents if d.kind == "Pod"], owned=True)
            marked = list(txn._dirty)
            assert len(marked) > 10
            txn.apply_documents(read_paths([directory], declared.packer()).documents, owned=True)
            done = (marked, list(txn._journal), [(e.type, e.object, e.old, e.resource_version) for e in txn._events],
                    list(txn._dirty), len(store._deferred))
    # Taken for the plain new pods, the others (not plain; there already) left to _apply.
    assert not add_pod or (sum(pod is not None for pod in added) == store.count("Pod") - 2 and None in added)
    return store, list(done)


def test_a_bulk_loads_new_pods_are_stored_as_apply_stores_them(manifests: tuple[gen.Cluster, Path], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Transaction._add_pod stores, journals, records and marks a bulk load's new pods as
    _apply does, and leaves the others (not plain, there already) to it."""
    directory = tmp_path / "manifests"
    shutil.copytree(manifests[1], directory)
    (directory / "zz-odd.yaml").write_text(_ODD_PODS)
    (fast, fast_done), (full, full_done) = _load_with(directory, True, monkeypatch), _load_with(directory, False, monkeypatch)
    assert fast_done == full_done
    made = [[obj for obj in store.objects() if obj.meta.resource_version > 2] for store in (fast, full)]  # (not the
    assert made[0] == made[1] and len(made[0]) > 100  # initial namespaces: Store() gives them uids of its own)
    assert _texts(fast) == _texts(full)
    managed = fast.get("Pod", "ns-00", "managed")
    assert managed is not None and "managedFields" in managed.manifest["metadata"]
