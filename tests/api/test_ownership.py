"""Field ownership of Update operations (ownership.updated), on plain documents: what a
write records in managedFields, as structured-merge-diff's Updater records it. The
kubectl tests (test_kubectl.py) see the same through a real server; these pin the
entries exactly, for the write kdns answers most (a kubelet's readiness flip)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kdns.api import ownership
from kdns.registry import schema

POD = schema.BY_KIND["Pod"]
READY = 'k:{"type":"Ready"}'


def pod(ready: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop", "labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "nginx"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_a_create_owns_every_field_but_the_identity() -> None:
    created = pod("True")
    [entry] = ownership.updated([], "kubectl-create", None, created, POD, "v1", "T1")
    assert entry == {
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": "T1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"main"}': {".": {}, "f:image": {}, "f:name": {}}}},
            "f:status": {"f:conditions": {READY: {".": {}, "f:status": {}, "f:type": {}}},
                         "f:phase": {}, "f:podIP": {}},
        },
    }
    assert sorted(ownership.leaves(entry["fieldsV1"])) == [
        ("f:metadata", "f:labels", "f:app"),
        ("f:spec", "f:containers", 'k:{"name":"main"}'),
        ("f:spec", "f:containers", 'k:{"name":"main"}', "f:image"),
        ("f:spec", "f:containers", 'k:{"name":"main"}', "f:name"),
        ("f:status", "f:conditions", READY),
        ("f:status", "f:conditions", READY, "f:status"),
        ("f:status", "f:conditions", READY, "f:type"),
        ("f:status", "f:phase"),
        ("f:status", "f:podIP"),
    ]


def test_a_status_flip_owns_the_condition_it_changed_and_takes_it_from_the_creator() -> None:
    """The kubelet's entry (subresource status) gains the one field the flip changed; the
    creator keeps the condition's existence and type; flipping back changes only the time."""
    before, after = pod("True"), pod("False")
    created = ownership.updated([], "kubectl-create", None, before, POD, "v1", "T1")
    entries = ownership.updated(copy.deepcopy(created), "kubelet", before, after, POD, "v1", "T2", "status")
    creator, kubelet = entries
    assert creator["time"] == "T1"
    assert creator["fieldsV1"]["f:status"] == {
        "f:conditions": {READY: {".": {}, "f:type": {}}}, "f:phase": {}, "f:podIP": {}}
    assert creator["fieldsV1"]["f:spec"] == created[0]["fieldsV1"]["f:spec"]
    assert kubelet == {
        "manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "T2", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:status": {"f:conditions": {READY: {"f:status": {}}}}}, "subresource": "status",
    }
    again = ownership.updated(copy.deepcopy(entries), "kubelet", after, before, POD, "v1", "T3", "status")
    assert again == [creator, {**kubelet, "time": "T3"}]
    # The same manager writing the main resource is another entry (no subresource).
    main = ownership.updated(copy.deepcopy(entries), "kubelet", after, pod("True"), POD, "v1", "T4")
    assert [(e["manager"], e.get("subresource")) for e in main] == [
        ("kubectl-create", None), ("kubelet", None)]
    assert main[1]["fieldsV1"] == kubelet["fieldsV1"]


def test_a_removed_field_is_nobodys_and_an_entry_left_with_none_goes() -> None:
    before = pod("True", {"app": "web", "tier": "front"})
    labelled = ownership.updated([], "kubectl-label", pod("True"), before, POD, "v1", "T1")
    assert labelled[0]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:tier": {}}}}
    # Another manager removes the label: kubectl-label owned only it, so its entry goes,
    # and the remover owns nothing it did not add or change.
    assert ownership.updated(copy.deepcopy(labelled), "kubectl-edit", before, pod("True"), POD, "v1", "T2") == []


def test_managers_without_a_name_and_entries_that_are_not_objects() -> None:
    """No fieldManager and no User-Agent: the entry has no manager (omitempty); entries
    that are not objects are dropped."""
    entries = ownership.updated(["junk"], "", pod("True"), pod("False"), POD, "v1", "T1", "status")
    assert entries == [{
        "operation": "Update", "apiVersion": "v1", "time": "T1", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:status": {"f:conditions": {READY: {"f:status": {}}}}}, "subresource": "status",
    }]
    assert ownership.manager_of(None, "kubectl/v1.32.4 (linux/amd64)") == "kubectl"


@pytest.mark.parametrize(
    "doc",
    [
        {"metadata": {"name": "a", "namespace": "b", "labels": {}}},  # an empty map is a leaf; identity is nobody's
        {"metadata": {"name": "a"}, "spec": {"containers": []}},  # an empty list too
        {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "a", "ports": [{"containerPort": 80}]}]}},
        {"metadata": {"finalizers": ["x/y", "x/y", "z"]}},  # a set's items, each once
        {"metadata": "odd", "spec": {"containers": [{"name": "a"}, "odd"], "hostname": None}},
        {"status": {"conditions": [{"type": None, "status": "True"}], "podIPs": [{}]}},
    ],
)
def test_a_create_owns_what_fields_of_lists(doc: dict[str, Any]) -> None:
    """What an Update records is what fields_of (apply's reading) names, for the odd
    shapes too: duplicate list keys (the last item's fields), sets, empty maps and lists."""
    entries = ownership.updated([], "m", None, doc, POD, "v1", "T1")
    expected = set(ownership.leaves(ownership.fields_of(doc, POD)))
    assert {path for entry in entries for path in ownership.leaves(entry["fieldsV1"])} == expected
    assert expected  # (each shape owns something)


def test_list_item_keys_are_written_as_json_writes_them() -> None:
    """A `k:` step is its key as compact, ASCII JSON: escapes and numbers as json.dumps writes them."""
    doc = {"status": {"conditions": [{"type": 'R\u00e9"ady\\'}]},
           "spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}
    [entry] = ownership.updated([], "m", None, doc, POD, "v1", "T1")
    [condition] = entry["fieldsV1"]["f:status"]["f:conditions"]
    assert condition == 'k:{"type":"R\\u00e9\\"ady\\\\"}'
    assert condition == "k:" + json.dumps({"type": 'R\u00e9"ady\\'}, separators=(",", ":"))
    [port] = entry["fieldsV1"]["f:spec"]["f:containers"]['k:{"name":"a"}']["f:ports"]
    assert port == 'k:{"containerPort":80}'
