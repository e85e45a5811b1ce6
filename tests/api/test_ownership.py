"""Field ownership of Update operations (ownership.updated), on plain documents: what a
write records in managedFields, as structured-merge-diff's Updater records it. The
kubectl tests (test_kubectl.py) see the same through a real server; these pin the
entries exactly, for the write kdns answers most (a kubelet's readiness flip)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- updated's one walk, held to the definition it replaced ---------------------------------


def _reference_updated(
    entries: list[Any], manager: str, live: dict[str, Any], new: dict[str, Any], kind_schema: schema.Schema,
    api_version: str, now: str, subresource: str | None,
) -> list[Any]:
    """`ownership.updated` as first written: the leaves of each side of `_differing`
    listed (`_owned`), then each looked up from the root (`value_at`)."""
    live_part, new_part = ownership._differing(live, new)
    missing = ownership._MISSING

    def changed_at(path: ownership.Path) -> bool:
        if path and path[-1][:2] in ("k:", "v:"):
            return ownership.value_at(live, path) is missing
        return bool(ownership.value_at(live, path) != ownership.value_at(new, path))

    changed = {path for path in ownership._owned(new_part, kind_schema) if changed_at(path)}
    removed = {path for path in ownership._owned(live_part, kind_schema) if ownership.value_at(new, path) is missing}
    result: list[Any] = []
    mine: set[ownership.Path] = set()
    for entry in entries:
        theirs = entry.get("fieldsV1")
        paths = set(ownership.leaves(dict(theirs))) if isinstance(theirs, dict) else set()
        if (entry.get("manager", ""), entry.get("operation"), entry.get("apiVersion"), entry.get("subresource")) == (
            manager, ownership.UPDATE, api_version, subresource
        ):
            mine = paths
            continue
        kept = paths - changed - removed
        if kept == paths:
            result.append(dict(entry))
        elif kept:
            result.append({**entry, "fieldsV1": ownership._tree(kept)})
    own = (mine - removed) | changed
    if own:
        entry = {
            **({"manager": manager} if manager else {}), "operation": ownership.UPDATE, "apiVersion": api_version,
            "time": now, "fieldsType": "FieldsV1", "fieldsV1": ownership._tree(own),
        }
        if subresource:
            entry["subresource"] = subresource
        result.append(entry)
    return result


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(0, 3), st.sampled_from(["a", "b", "Ready", "True", "1"]))
_CONDITION = st.dictionaries(st.sampled_from(["type", "status", "reason"]), _SCALARS, max_size=3)
_PORT = st.dictionaries(st.sampled_from(["containerPort", "protocol", "name"]), _SCALARS, max_size=3)
_CONTAINER = st.fixed_dictionaries(
    {"name": st.sampled_from(["main", "side", None])},
    optional={"image": _SCALARS, "ports": st.one_of(st.none(), st.lists(_PORT, max_size=3))},
)
_POD_DOC = st.fixed_dictionaries(
    {"apiVersion": st.just("v1"), "kind": st.just("Pod")},
    optional={
        "metadata": st.fixed_dictionaries(
            {"name": st.just("web-0")},
            optional={
                "labels": st.one_of(st.none(), st.dictionaries(st.sampled_from(["app", "tier"]), _SCALARS, max_size=2)),
                "finalizers": st.one_of(st.none(), st.lists(_SCALARS, max_size=3)),
                "resourceVersion": st.sampled_from(["1", "2"]),
            },
        ),
        "spec": st.fixed_dictionaries({}, optional={
            "containers": st.one_of(st.none(), st.lists(_CONTAINER, max_size=3)),
            "hostname": _SCALARS,
        }),
        "status": st.fixed_dictionaries({}, optional={
            "phase": _SCALARS,
            "conditions": st.one_of(st.none(), _SCALARS, st.lists(st.one_of(_CONDITION, _SCALARS), max_size=3)),
            "podIPs": st.one_of(st.none(), st.lists(st.dictionaries(st.just("ip"), _SCALARS), max_size=2)),
            "extra": st.one_of(st.just({}), st.dictionaries(st.sampled_from(["x", "y"]), _SCALARS, max_size=2)),
        }),
    },
)


@settings(max_examples=400, deadline=None)
@given(_POD_DOC, _POD_DOC, st.sampled_from([None, "status"]))
def test_updated_is_its_definition(live: dict[str, Any], new: dict[str, Any], subresource: str | None) -> None:
    """Whatever two documents differ in (items of a key twice, None values, a list where a
    mapping was, empty mappings), the one walk records what listing the leaves and looking
    each up did: the first write's entries, and the next one's over them."""
    first = _reference_updated([], "kubectl-create", {}, live, POD, "v1", "T1", None)
    for entries in ([], first):
        assert ownership.updated(copy.deepcopy(entries), "kubelet", live, new, POD, "v1", "T2", subresource) == (
            _reference_updated(copy.deepcopy(entries), "kubelet", live, new, POD, "v1", "T2", subresource)
        )
