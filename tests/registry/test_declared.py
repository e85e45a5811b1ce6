"""Applying manifests over a registry they were applied to before: pruning what they no
longer declare (kdns/registry/declared.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kdns.registry import declared
from kdns.registry.errors import ManifestError
from kdns.registry.manifests import Document
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
