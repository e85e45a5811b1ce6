"""Applying manifests over a registry they were applied to before: pruning what they no
longer declare (kdns/registry/declared.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kdns.registry import declared
from kdns.registry.errors import ManifestError
from kdns.registry.manifests import Document, read_paths
from kdns.registry.objects import KubeObject
from kdns.registry.store import Store


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}}


def apply(store: Store, *bodies: dict[str, Any]) -> declared.Applied:
    documents = [Document("/m/web.yaml", index, body) for index, body in enumerate(bodies, 1)]
    declared.mark(documents)
    with store.transaction() as txn:
        return declared.apply(txn, documents, owned=True)


def test_objects_no_longer_declared_are_pruned_and_the_others_kept() -> None:
    store = Store()
    apply(store, service("web"), service("db"))
    with store.transaction() as txn:  # made through the API: never pruned
        txn.create(service("api"))
    applied = apply(store, service("web"))
    assert applied.pruned == (("Service", "default", "db"),)
    assert [s.meta.name for s in store.list("Service", "default")] == ["api", "web"]


def test_a_document_without_a_name_is_refused_with_its_place_when_applied_again() -> None:
    store = Store()
    apply(store, service("web"))
    nameless = service("")
    with pytest.raises(ManifestError) as refused:
        apply(store, service("web"), nameless)
    assert str(refused.value) == ('/m/web.yaml: document 2: Service "" is invalid: metadata.name: Required value: '
                                  "name or generateName is required")
    assert [s.meta.name for s in store.list("Service", "default")] == ["web"]


def load(paths: list[Path], packed: bool) -> Store:
    """A start-up load (kdns.app._load): documents packed as read, or read whole and marked."""
    loaded = read_paths(paths, declared.packer()) if packed else read_paths(paths)
    assert loaded.errors == []
    if not packed:
        declared.mark(loaded.documents)
    store = Store()
    with store.transaction() as txn:
        declared.apply(txn, loaded.documents, owned=True)
    return store


def content(obj: KubeObject) -> dict[str, Any]:
    """The object's manifest without what each load makes anew (uid, creation time)."""
    manifest = obj.manifest
    del manifest["metadata"]["uid"], manifest["metadata"]["creationTimestamp"]
    return manifest


def test_documents_packed_as_read_load_what_whole_ones_do(tmp_path: Path) -> None:
    """Packed, the documents keep their source annotation and their apply order (the Pod
    file comes first, its Namespace and a Service asking for an address after it)."""
    (tmp_path / "a.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: team, labels: {app: web}}\n"
        "spec: {containers: [{name: c, image: i}]}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: team}\n"
        "spec: {selector: {app: web}, ports: [{port: 80}]}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: fixed, namespace: team}\n"
        "spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n"
    )
    whole, packed = load([tmp_path], packed=False), load([tmp_path], packed=True)
    for kind in ("Namespace", "Service", "Pod"):  # (the controller's slices have names of chance)
        assert list(map(content, packed.list(kind))) == list(map(content, whole.list(kind)))
    assert declared.source_of(packed.get("Pod", "team", "p")) == str(tmp_path / "a.yaml")


def test_documents_kept_as_the_readers_remakes_load_what_whole_ones_do(tmp_path: Path) -> None:
    """Block-style documents of one shape (the second on built by the reader's plan) are
    kept as its remakes, not packed: they load what whole ones do, marked with their file."""
    pod = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{n}\n  namespace: team\n  labels:\n    app: web\n"
           "spec:\n  containers:\n    - name: c\n      image: i\n      args: [run-{n}, fast]\n")
    (tmp_path / "a.yaml").write_text("---\n".join(pod.format(n=n) for n in range(1, 6)))
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n")
    remade = [d for d in read_paths([tmp_path], declared.packer()).documents if callable(d.packed)]
    # (The last has a line more, the file's end: a shape of its own, read line by line. The
    # Namespace's shape may have been planned already: the reader's shapes outlive a read.)
    assert [d.key for d in remade if d.key[0] == "Pod"] == [("Pod", "team", f"p{n}") for n in range(2, 5)]
    whole, packed = load([tmp_path], packed=False), load([tmp_path], packed=True)
    assert list(map(content, packed.list("Pod"))) == list(map(content, whole.list("Pod")))
    assert {declared.source_of(pod) for pod in packed.list("Pod")} == {str(tmp_path / "a.yaml")}


def test_a_document_that_cannot_be_packed_is_refused_as_a_whole_one_is(tmp_path: Path) -> None:
    """A date tagged as one (which marshal does not take) is kept unpacked, and refused by the store."""
    (tmp_path / "a.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\n"
        "  annotations:\n    when: !!timestamp 2024-01-01\nspec:\n  ports: [{port: 80}]\n"
    )
    refusals = []
    for packed in (False, True):
        with pytest.raises(ManifestError) as refused:
            load([tmp_path], packed)
        refusals.append(str(refused.value))
    assert refusals[0] == refusals[1]
    assert refusals[1].startswith(f"{tmp_path / 'a.yaml'}: document 1: ")
