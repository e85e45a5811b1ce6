"""How registry objects hold their documents: packed small, given back whole."""

from __future__ import annotations

import marshal
import sys
import threading
from typing import Any

from kdns.registry import objects

# A pod as a manifest writes it and the API server completes it, with names no dictionary knows.
POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "checkout-7f9c4-x2kq9", "namespace": "shop", "labels": {"app": "checkout", "tier": "api"},
                 "annotations": {"kdns.dev/manifest-source": "/srv/cluster/shop.yaml"},
                 "uid": "6f1c2b3a-9d8e-4f70-a1b2-c3d4e5f60718", "creationTimestamp": "2026-12-07T01:26:09Z",
                 "resourceVersion": "48213", "generation": 1},
    "spec": {"containers": [{"name": "checkout", "image": "registry.shop.example/checkout:4.2.1",
                             "ports": [{"name": "grpc", "containerPort": 9000, "protocol": "TCP"}]}],
             "nodeName": "worker-3"},
    "status": {"phase": "Running", "podIP": "10.244.3.17", "podIPs": [{"ip": "10.244.3.17"}],
               "conditions": [{"type": "Ready", "status": "True"}]},
}


def test_a_packed_document_comes_back_equal_and_is_small() -> None:
    packed = objects.pack(POD)
    assert objects.unpack(packed) == POD
    assert objects.unpack(packed) is not objects.unpack(packed)  # a fresh copy per read
    # The dictionary of what documents repeat leaves mostly the values this pod's own:
    # well under half of marshal's bytes, and the bytes object holds no more than them.
    assert len(packed) < len(marshal.dumps(POD)) / 2
    assert sys.getsizeof(packed) <= len(packed) + sys.getsizeof(b"")


def test_may_mention_reads_the_packed_document() -> None:
    pod = objects.Pod(meta=objects.ObjectMeta(name="checkout-7f9c4-x2kq9", namespace="shop"),
                      document=objects.pack(POD))
    assert objects.may_mention(pod, "kdns.dev/manifest-source")
    assert objects.may_mention(pod, "registry.shop.example/checkout:4.2.1")
    assert not objects.may_mention(pod, "readinessProbe")


def test_threads_pack_and_unpack_at_once() -> None:
    """The journal's writer thread unpacks while the event loop packs: each has its own codec."""
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                doc = {**POD, "metadata": {**POD["metadata"], "name": f"pod-{n}-{i}"}}
                assert objects.unpack(objects.pack(doc)) == doc
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []


def test_at_version_is_replace_field_by_field() -> None:
    """ObjectMeta.at_version makes what dataclasses.replace does: every field kept but the
    version (a field added to ObjectMeta and left out of at_version fails here)."""
    import dataclasses

    values: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(objects.ObjectMeta)):
        values[f.name] = {"k": str(i)} if f.name == "labels" else i + 1 if f.name == "resource_version" else f"v{i}"
    meta = objects.ObjectMeta(**values)
    moved = meta.at_version(99)
    assert moved == dataclasses.replace(meta, resource_version=99)
    assert all(getattr(moved, f.name) is getattr(meta, f.name) for f in dataclasses.fields(meta) if f.name != "resource_version")
