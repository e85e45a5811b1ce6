"""The EndpointSlice controller's slices hold no document: it is made again from their
fields when read (objects.controller_manifest), and must be the very document the
controller wrote, key for key and in order, at every version, through the journal too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdns.registry import admission, sqlite
from kdns.registry import endpoints as endpoints_module
from kdns.registry.objects import EndpointSlice, Event, may_mention
from kdns.registry.store import Store
from tests.registry.test_endpoints import NOW, WEB, apply, managed, new_store, pod

CREATED = "2024-05-01T10:00:00Z"  # NOW


def _text(manifest: dict[str, Any]) -> str:
    """The document as the API writes it: JSON in the dicts' order."""
    return json.dumps(manifest, separators=(",", ":"))


def _uids(store: Store) -> tuple[str, str]:
    """The uids of the Service web and its pod web-0."""
    web, web0 = store.get("Service", "default", "web"), store.get("Pod", "default", "web-0")
    assert web is not None and web0 is not None
    return web.meta.uid, web0.meta.uid


def _expected(uids: tuple[str, str], endpoint_slice: EndpointSlice, ready: bool, generation: int, version: int) -> str:
    """What kube-controller-manager's slice for web and its pod web-0 says, as admitted."""
    return _text({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": endpoint_slice.meta.name,
            "generateName": "web-",
            "namespace": "default",
            "labels": {"tier": "front", "kubernetes.io/service-name": "web",
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": uids[0],
                                 "controller": True, "blockOwnerDeletion": True}],
            "uid": endpoint_slice.meta.uid,
            "creationTimestamp": CREATED,
            "resourceVersion": str(version),
            "generation": generation,
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": ["10.244.0.10"],
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "hostname": "web-0",
            "nodeName": "node-1",
            "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0", "uid": uids[1]},
        }],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "admin", "port": 9000, "protocol": "TCP"}],
    })


def _slice_events(events: list[Event]) -> list[Event]:
    return [event for event in events if event.object.kind == "EndpointSlice"]


def test_a_controller_slice_reads_back_as_written_at_every_version(tmp_path: Path) -> None:
    """Created, updated (a readiness flip: generation 2), saved and restored, deleted:
    each version's document is the controller's, byte for byte, and none is held."""
    store = new_store()
    spec = "hostname: web-0\n          subdomain: web"
    (created,) = _slice_events(apply(store, WEB, pod("web-0", "10.244.0.10", spec=spec)))
    (endpoint_slice,) = managed(store)
    assert endpoint_slice is created.object and endpoint_slice.owner is not None
    assert _text(endpoint_slice.manifest) == _expected(_uids(store), endpoint_slice, True, 1, created.resource_version)

    (flipped,) = _slice_events(apply(store, pod("web-0", "10.244.0.10", spec=spec, ready=False)))
    assert flipped.object.owner is not None
    assert _text(flipped.object.manifest) == _expected(_uids(store), endpoint_slice, False, 2, flipped.resource_version)
    assert _text(flipped.old.manifest) == _text(endpoint_slice.manifest)  # the old version is as it was

    with sqlite.SqliteJournal(tmp_path / sqlite.FILE_NAME) as journal:
        journal.replace_all(store.objects(), store.resource_version)
    saved = sqlite.load(tmp_path / sqlite.FILE_NAME)
    restored = Store(clock=lambda: NOW)
    restored.restore(saved.documents, saved.version, owned=True, typed=saved.objects, derived=saved.derived)
    (back,) = managed(restored)
    assert back.owner is not None and _text(back.manifest) == _text(flipped.object.manifest)

    uids = _uids(store)
    deleted = _slice_events(apply_delete(store))
    assert [event.type for event in deleted] == ["DELETED"]
    assert _text(deleted[0].object.manifest) == _expected(uids, back, False, 2, deleted[0].resource_version)


def apply_delete(store: Store) -> list[Event]:
    """Delete the Service web (its slice goes with it); the events."""
    seen: list[Event] = []
    unsubscribe = store.subscribe(seen.extend)
    with store.transaction() as txn:
        txn.delete("Service", "default", "web")
    unsubscribe()
    return seen


def test_a_slice_with_what_the_controller_does_not_write_keeps_its_document() -> None:
    """A hand edit of a managed slice is held as written (its annotation read back), until
    the controller writes the slice again; managedFields, which the controller's writes
    keep, keep its document held for good."""
    store = new_store()
    apply(store, WEB, pod("web-0", "10.244.0.10"))
    (endpoint_slice,) = managed(store)
    edited = endpoint_slice.manifest
    edited["metadata"]["annotations"] = {"note": "by hand"}
    with store.transaction() as txn:
        txn.update(edited)
    (hand_written,) = managed(store)
    assert hand_written.owner is None and hand_written.manifest["metadata"]["annotations"] == {"note": "by hand"}
    assert may_mention(hand_written, "by hand")

    apply(store, pod("web-0", "10.244.0.10", ready=False))
    (rewritten,) = managed(store)
    assert rewritten.owner is not None and "annotations" not in rewritten.manifest["metadata"]
    assert not may_mention(rewritten, "by hand") and may_mention(rewritten, "10.244.0.10")

    edited = rewritten.manifest
    edited["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Update"}]
    with store.transaction() as txn:
        txn.update(edited)
    apply(store, pod("web-0", "10.244.0.10", ready=True))
    (kept,) = managed(store)
    assert kept.owner is None
    manifest = kept.manifest
    assert manifest["metadata"]["managedFields"] == [{"manager": "kubectl", "operation": "Update"}]
    assert manifest["endpoints"][0]["conditions"]["ready"] is True


def test_an_endpoint_made_again_in_place_writes_the_slice_admission_would() -> None:
    """A flip's slice, written straight from the controller's typed fields (the store's
    in-place path), is what admitting the controller's manifest of it makes: the same
    typed fields, metadata, owner and document, generation counted up; a flip back, too;
    and a pod change the controller reads but its endpoint does not show (a label) writes
    no slice."""
    store = new_store()
    apply(store, WEB, pod("web-0", "10.244.0.10"), pod("web-1", "10.244.0.11"))
    for ready in (False, True):
        (before,) = managed(store)
        service = store.get("Service", "default", "web")
        events = _slice_events(apply(store, pod("web-0", "10.244.0.10", ready=ready)))
        (after,) = managed(store)
        assert [event.type for event in events] == ["MODIFIED"] and events[0].old is before
        (wanted,) = endpoints_module.updated_slices(
            service, [store.get("Pod", "default", "web-0")], [before])  # type: ignore[arg-type,list-item]
        admitted = admission.admit(wanted.manifest, before, store._context, after.meta.resource_version, owned=True,
                                   kind="EndpointSlice", fields=wanted.fields, stored=before.manifest)
        assert isinstance(admitted, EndpointSlice)
        assert (after, after.meta, after.owner) == (admitted, admitted.meta, admitted.owner)
        assert _text(after.manifest) == _text(admitted.manifest)
        assert after.owner is not None and before.owner is not None
        assert after.owner.generation == before.owner.generation + 1
    (before,) = managed(store)
    version = store.resource_version
    labelled = apply(store, pod("web-0", "10.244.0.10", labels="{app: web, extra: y}"))
    assert [event.object.kind for event in labelled] == ["Pod"] and managed(store) == [before]
    assert managed(store)[0] is before and store.resource_version == version + 1
