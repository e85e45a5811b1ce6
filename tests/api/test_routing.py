"""The API's pure parts, module by module: what a URL names (targets), how a body and an
Accept header are read (encoding). The handlers themselves are tested through a real
server (test_http.py and the rest)."""

from __future__ import annotations

import json

import pytest

from kdns.api.encoding import loads_json, loads_yaml, media_types
from kdns.api.status import ApiError
from kdns.api.targets import Target, parse_target


def test_a_url_names_its_resource_namespace_name_and_subresource() -> None:
    """parse_target reads namespaced and cluster-scoped paths, subresources and the /watch/ prefix."""
    pod = parse_target("v1", "namespaces/shop/pods/web/status")
    assert (pod.resource.kind, pod.namespace, pod.name, pod.subresource, pod.watch_path) == (
        "Pod", "shop", "web", "status", False)
    every = parse_target("v1", "services")
    assert (every.resource.kind, every.namespace, every.name) == ("Service", None, None)
    node = parse_target("v1", "nodes/node-a")
    assert (node.resource.kind, node.namespace, node.name) == ("Node", "", "node-a")
    watched = parse_target("discovery.k8s.io/v1", "watch/namespaces/shop/endpointslices")
    assert isinstance(watched, Target) and watched.watch_path and watched.resource.kind == "EndpointSlice"
    # A subresource kdns cannot serve is named (it is refused with 501 after the object is
    # found); a proxy's path, empty or not, belongs to the proxied request.
    proxied = parse_target("v1", "namespaces/shop/services/web/proxy/a//b")
    assert (proxied.resource.kind, proxied.name, proxied.subresource) == ("Service", "web", "proxy")
    assert parse_target("v1", "namespaces/shop/pods/web/log").subresource == "log"


@pytest.mark.parametrize(
    ("group_version", "tail"),
    [
        ("v1", "namespaces/shop/pods/web/eviction"),  # no such subresource
        ("v1", "namespaces/shop/services/web/log"),  # pods have logs, services not
        ("v1", "pods/web"),  # a namespaced object needs its namespace
        ("v1", "namespaces/shop/nodes/node-a"),  # nodes are cluster-scoped
        ("v1", "namespaces/shop/widgets"),  # no such resource
        ("v1", "namespaces//pods"),  # an empty segment
        ("v1", "endpointslices"),  # not in this group version
        ("v1", "namespaces/shop/pods/web/status/more"),
    ],
)
def test_a_url_that_names_nothing_is_a_404_naming_it(group_version: str, tail: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_target(group_version, tail)
    assert (caught.value.code, caught.value.message) == (
        404, f"the server could not find the requested resource ({tail})")


def test_an_accept_header_is_read_as_types_and_parameters() -> None:
    """Types lower-cased, parameters unquoted, empty parts skipped."""
    header = 'application/json;as=Table;v=v1;g=meta.k8s.io, ,Application/JSON; q="0.9"'
    assert media_types(header) == [
        ("application/json", {"as": "Table", "v": "v1", "g": "meta.k8s.io"}),
        ("application/json", {"q": "0.9"}),
    ]


def test_json_bodies_report_duplicate_keys_and_bad_bodies_are_400() -> None:
    """loads_json keeps the last of a duplicated key and names it; unreadable JSON or YAML is a 400 saying why."""
    assert loads_json(b'{"a": 1, "b": {"c": 1, "c": 2}, "a": 3}') == ({"a": 3, "b": {"c": 2}}, ["c", "a"])
    with pytest.raises(ApiError) as caught:
        loads_json(b"{nope")
    assert caught.value.code == 400
    assert caught.value.message.startswith("the body of the request cannot be decoded as JSON: ")
    assert loads_json(b'{"a": [{"b": 1}], "c": null}') == ({"a": [{"b": 1}], "c": None}, [])
    assert loads_json('{"a": "\u00e9"}'.encode("utf-16")) == ({"a": "\u00e9"}, [])  # read as json.loads reads bytes
    # A body with a key twice and an error after it: the error, worded as json.loads words it.
    for bad in (b'{"a": 1, "a": 2, ', b"{nope", b"\xff{}"):
        with pytest.raises(ApiError) as caught:
            loads_json(bad)
        with pytest.raises(ValueError, match=r"\w") as expected:
            json.loads(bad)
        assert caught.value.message == f"the body of the request cannot be decoded as JSON: {expected.value}"
    with pytest.raises(ApiError) as caught:
        loads_yaml(b"a: [1")
    assert caught.value.code == 400
    assert caught.value.message.startswith("the body of the request cannot be decoded as YAML: ")
