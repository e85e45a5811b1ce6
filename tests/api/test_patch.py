"""The PATCH dialects on plain documents: RFC 7386, RFC 6902 and strategic merge patch."""

from __future__ import annotations

import pytest

from kdns.api.patch import (
    BadPatch,
    PatchError,
    apply_configuration,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from kdns.registry import schema

# RFC 7386 appendix A, every example.
RFC7386_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7386_EXAMPLES)
def test_merge_patch_rfc7386_examples(target, patch, result):
    """Every example of RFC 7386 appendix A gives the documented result."""
    assert merge_patch(target, patch) == result


def test_json_patch_rfc6902_operations():
    """add, remove, replace, move, copy and test behave as RFC 6902 section 4 says."""
    doc = {"foo": ["bar", "baz"], "a/b": 1, "m~n": 2}
    ops = [
        {"op": "add", "path": "/foo/1", "value": "qux"},
        {"op": "add", "path": "/foo/-", "value": "end"},
        {"op": "remove", "path": "/foo/0"},
        {"op": "replace", "path": "/a~1b", "value": 10},
        {"op": "move", "from": "/m~0n", "path": "/moved"},
        {"op": "copy", "from": "/moved", "path": "/copied"},
        {"op": "test", "path": "/copied", "value": 2},
    ]
    assert json_patch(doc, ops) == {"foo": ["qux", "baz", "end"], "a/b": 10, "moved": 2, "copied": 2}
    assert doc == {"foo": ["bar", "baz"], "a/b": 1, "m~n": 2}, "the input is left alone"


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/a", "value": 2}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/missing", "value": 1}],
        [{"op": "add", "path": "/list/5", "value": 1}],
        [{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/x", "value": 2}],
    ],
)
def test_json_patch_failures_raise_patch_error(ops):
    """An operation that does not apply fails the whole patch (RFC 6902 section 5)."""
    with pytest.raises(PatchError):
        json_patch({"a": 1, "list": []}, ops)


@pytest.mark.parametrize("ops", [{"op": "add"}, [{"path": "/a"}], [{"op": "frob", "path": "/a"}], [{"op": "add", "path": "a", "value": 1}]])
def test_json_patch_malformed_raises_bad_patch(ops):
    """A body that is not a list of well-formed operations is a bad request."""
    with pytest.raises(BadPatch):
        json_patch({"a": 1}, ops)


SERVICE = {
    "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
    "spec": {
        "ports": [
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "protocol": "TCP"},
        ],
        "selector": {"app": "web"},
        "externalIPs": ["1.2.3.4"],
    },
}


def smp(patch):
    return strategic_merge_patch(SERVICE, patch, schema.SERVICE)


def test_strategic_patch_merges_ports_by_port():
    """Service ports merge by their `port` key: a patched port changes, a new one is added."""
    result = smp({"spec": {"ports": [{"port": 80, "name": "web"}, {"port": 443, "name": "https"}]}})
    assert result["spec"]["ports"] == [
        {"name": "web", "port": 80, "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "protocol": "TCP"},
        {"name": "https", "port": 443},
    ]


def test_strategic_patch_deletes_list_item_and_replaces_atomic_list():
    """`$patch: delete` removes the item with that key; lists without a merge key are replaced."""
    result = smp({"spec": {"ports": [{"port": 9090, "$patch": "delete"}], "externalIPs": ["5.6.7.8"]}})
    assert result["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert result["spec"]["externalIPs"] == ["5.6.7.8"]


def test_strategic_patch_directives():
    """`$patch: replace`, null, `$setElementOrder` and `$deleteFromPrimitiveList` work as kubectl sends them."""
    replaced = smp({"spec": {"selector": {"tier": "x", "$patch": "replace"}}})
    assert replaced["spec"]["selector"] == {"tier": "x"}
    removed = smp({"metadata": {"labels": {"app": None}}})
    assert removed["metadata"]["labels"] == {}
    ordered = smp({"spec": {"$setElementOrder/ports": [{"port": 9090}, {"port": 80}]}})
    assert [p["port"] for p in ordered["spec"]["ports"]] == [9090, 80]
    finalizers = smp({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["b"]}})
    assert finalizers["metadata"]["finalizers"] == ["b"]


def test_strategic_patch_merges_containers_and_their_ports():
    """Containers merge by name and their ports by containerPort; other container fields are kept."""
    pod = {"spec": {"containers": [{"name": "app", "image": "a:1", "ports": [{"containerPort": 80}]}]}}
    patch = {"spec": {"containers": [{"name": "app", "image": "a:2", "ports": [{"containerPort": 81}]}]}}
    result = strategic_merge_patch(pod, patch, schema.POD)
    assert result["spec"]["containers"] == [
        {"name": "app", "image": "a:2", "ports": [{"containerPort": 80}, {"containerPort": 81}]}
    ]


def test_strategic_patch_conditions_merge_by_type():
    """Pod conditions merge by `type`, so a readiness flip keeps the other conditions."""
    pod = {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}}
    result = strategic_merge_patch(pod, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, schema.POD)
    assert result["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "Initialized", "status": "True"},
    ]


def test_strategic_patch_bad_directive_is_bad_patch():
    """An unknown `$patch` value is refused as a malformed patch."""
    with pytest.raises(BadPatch):
        smp({"spec": {"$patch": "explode"}})


def test_apply_configuration_merges_without_removing():
    """An applied configuration sets its fields and leaves the live object's others alone."""
    result = apply_configuration(SERVICE, {"spec": {"ports": [{"port": 80, "name": "web"}]}}, schema.SERVICE)
    assert [p["name"] for p in result["spec"]["ports"]] == ["web", "metrics"]
    assert result["spec"]["selector"] == {"app": "web"}
