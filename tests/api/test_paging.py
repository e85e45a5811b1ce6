"""Paged lists (`limit` / `continue`) of one consistent snapshot, 410 for an expired
continue token, list resourceVersion semantics, watch bookmarks and sendInitialEvents,
against the real API with raw HTTP, the real kubectl and the `kubernetes` client."""

from __future__ import annotations

import base64
import json
import re
import warnings

import pytest

from kdns.api.paging import CONTINUE_EXPIRED
from tests.api.conftest import Api, needs_kubectl, service

SERVICES = "/api/v1/namespaces/default/services"


def create(api: Api, name: str) -> dict:
    reply = api.request("POST", SERVICES, service(name))
    assert reply.status == 201, reply.json
    return reply.json


def names(reply) -> list[str]:
    return [item["metadata"]["name"] for item in reply.json["items"]]


def test_pages_are_cut_from_the_first_pages_snapshot(api: Api):
    """Writes between pages do not show: each page is from the version of the first."""
    for name in ("a", "b", "c", "d", "e"):
        create(api, name)
    first = api.request("GET", f"{SERVICES}?limit=2")
    assert first.status == 200
    assert names(first) == ["a", "b"]
    meta = first.json["metadata"]
    assert meta["remainingItemCount"] == 3
    version = meta["resourceVersion"]
    token = json.loads(base64.urlsafe_b64decode(meta["continue"] + "=="))
    assert token == {"v": "meta.k8s.io/v1", "rv": int(version), "start": "b\x00"}
    # After the first page: one added in the middle, one not yet listed deleted, one changed.
    create(api, "bb")
    assert api.request("DELETE", f"{SERVICES}/d").status == 200
    patched = api.request("PATCH", f"{SERVICES}/e", {"metadata": {"labels": {"x": "y"}}},
                          content_type="application/merge-patch+json")
    assert patched.status == 200
    second = api.request("GET", f"{SERVICES}?limit=2&continue={meta['continue']}")
    assert second.status == 200
    assert names(second) == ["c", "d"]
    assert second.json["metadata"]["resourceVersion"] == version
    third = api.request("GET", f"{SERVICES}?limit=2&continue={second.json['metadata']['continue']}")
    assert names(third) == ["e"]
    assert third.json["items"][0]["metadata"]["labels"] == {"app": "e"}  # as it was then
    assert "continue" not in third.json["metadata"] and "remainingItemCount" not in third.json["metadata"]
    # A new list sees the present.
    assert names(api.request("GET", SERVICES)) == ["a", "b", "bb", "c", "e"]


def test_all_namespaces_pages_in_key_order_with_a_selector(api: Api):
    """Across namespaces the key is namespace/name; a selector filters before the limit
    and leaves remainingItemCount out, as the API server does."""
    api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a-b"}})
    for namespace, name in (("default", "x"), ("a-b", "y"), ("default", "z")):
        reply = api.request("POST", f"/api/v1/namespaces/{namespace}/services", service(name))
        assert reply.status == 201
    first = api.request("GET", "/api/v1/services?limit=1&labelSelector=app%21%3Dnone")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in first.json["items"]] == [("a-b", "y")]
    assert "remainingItemCount" not in first.json["metadata"]
    token = json.loads(base64.urlsafe_b64decode(first.json["metadata"]["continue"] + "=="))
    assert token["start"] == "a-b/y\x00"
    rest = api.request("GET", f"/api/v1/services?limit=5&labelSelector=app%21%3Dnone&continue={first.json['metadata']['continue']}")
    assert names(rest) == ["x", "z"]


def test_expired_continue_token_is_410_with_a_token_for_the_rest(api_server):
    """Once the event log no longer reaches back to the first page's version, the next
    page is 410 Expired with the API server's message, and metadata.continue lets the
    client read the remainder from the present."""
    api = api_server(store_options={"event_log_size": 2})
    for name in ("a", "b", "c"):
        create(api, name)
    first = api.request("GET", f"{SERVICES}?limit=1")
    for name in ("d", "e", "f"):
        create(api, name)
    expired = api.request("GET", f"{SERVICES}?limit=1&continue={first.json['metadata']['continue']}")
    assert expired.status == 410
    body = expired.json
    assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "Expired", 410)
    assert body["message"] == CONTINUE_EXPIRED
    token = json.loads(base64.urlsafe_b64decode(body["metadata"]["continue"] + "=="))
    assert token == {"v": "meta.k8s.io/v1", "rv": -1, "start": "a\x00"}
    rest = api.request("GET", f"{SERVICES}?continue={body['metadata']['continue']}")
    assert rest.status == 200 and names(rest) == ["b", "c", "d", "e", "f"]


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("continue=%21%21", 400, "invalid continue token: continue key is not valid: "),
        ("continue=" + base64.urlsafe_b64encode(b'{"v":"x","rv":3,"start":"a"}').decode(), 400,
         "invalid continue token: continue key is not valid: server does not recognize this encoded version 'x'"),
        ("continue=" + base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":0,"start":"a"}').decode(), 400,
         "invalid continue token: continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"),
        ("continue=" + base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":3,"start":""}').decode(), 400,
         "invalid continue token: continue key is not valid: encoded start key empty (version meta.k8s.io/v1)"),
        ("continue=" + base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":3,"start":"a"}').decode()
         + "&resourceVersion=3", 400, "specifying resource version is not allowed when using continue"),
        ("limit=x", 400, 'limit: Invalid value: "x": must be an integer'),
        ("resourceVersionMatch=Exact", 422, ('ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: '
         "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided")),
        ("resourceVersion=0&resourceVersionMatch=Exact", 422, ('ListOptions.meta.k8s.io "" is invalid: '
         'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"')),
        ("resourceVersion=1&resourceVersionMatch=Newest", 422, ('ListOptions.meta.k8s.io "" is invalid: '
         'resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", ""')),
        ("sendInitialEvents=true", 422, ('ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: '
         "Forbidden: sendInitialEvents is forbidden for list")),
        ("resourceVersion=999", 504, "Too large resource version: 999, current: 2"),
    ],
)
def test_bad_list_options_are_refused_as_the_api_server_does(api: Api, query, code, message):
    reply = api.request("GET", f"{SERVICES}?{query}")
    assert reply.status == code, reply.json
    assert reply.json["message"].startswith(message)
    if code == 422:
        assert reply.json["details"]["group"] == "meta.k8s.io"


def test_exact_resource_version_lists_the_past(api_server):
    """resourceVersionMatch=Exact reads the state at that version, or 410 once it is gone."""
    api = api_server(store_options={"event_log_size": 3})
    a = create(api, "a")
    create(api, "b")
    then = api.request("GET", f"{SERVICES}?resourceVersion={a['metadata']['resourceVersion']}&resourceVersionMatch=Exact")
    assert then.status == 200 and names(then) == ["a"]
    assert then.json["metadata"]["resourceVersion"] == a["metadata"]["resourceVersion"]
    for name in ("c", "d", "e"):
        create(api, name)
    gone = api.request("GET", f"{SERVICES}?resourceVersion={a['metadata']['resourceVersion']}&resourceVersionMatch=Exact")
    assert gone.status == 410 and gone.json["reason"] == "Expired"
    assert gone.json["message"] == "The resourceVersion for the provided list is too old."


@needs_kubectl
def test_kubectl_get_with_chunk_size_pages(api: Api):
    """`kubectl get --chunk-size=2` reads five services in three requests and shows them all."""
    for name in ("a", "b", "c", "d", "e"):
        create(api, name)
    result = api.kubectl("get", "services", "--chunk-size=2", "-v=8")
    rows = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert rows == ["a", "b", "c", "d", "e"]
    requests = re.findall(r"GET (\S+/api/v1/namespaces/default/services\?\S+)", result.stderr)
    assert len(requests) == 3, result.stderr
    assert all("limit=2" in url for url in requests)
    assert "continue=" not in requests[0] and all("continue=" in url for url in requests[1:])


@pytest.fixture
def core(api: Api):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import kubernetes.client
    configuration = kubernetes.client.Configuration()
    configuration.host = api.url
    with kubernetes.client.ApiClient(configuration) as client:
        yield kubernetes.client.CoreV1Api(client)


def test_kubernetes_client_pages_and_gets_410_for_an_expired_token(api_server):
    """The `kubernetes` client follows `_continue`, and an expired token raises ApiException 410 Expired."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import kubernetes.client
        from kubernetes.client.rest import ApiException
    api = api_server(store_options={"event_log_size": 2})
    for name in ("a", "b", "c"):
        create(api, name)
    configuration = kubernetes.client.Configuration()
    configuration.host = api.url
    with kubernetes.client.ApiClient(configuration) as client:
        core = kubernetes.client.CoreV1Api(client)
        first = core.list_namespaced_service("default", limit=2)
        assert [s.metadata.name for s in first.items] == ["a", "b"]
        assert first.metadata.remaining_item_count == 1
        rest = core.list_namespaced_service("default", limit=2, _continue=first.metadata._continue)
        assert [s.metadata.name for s in rest.items] == ["c"] and rest.metadata._continue is None
        for name in ("d", "e", "f"):
            create(api, name)
        with pytest.raises(ApiException) as raised:
            core.list_namespaced_service("default", limit=2, _continue=first.metadata._continue)
    assert raised.value.status == 410
    body = json.loads(raised.value.body)
    assert (body["reason"], body["code"], body["message"]) == ("Expired", 410, CONTINUE_EXPIRED)


def test_bookmarks_only_when_allowed(api_server):
    """allowWatchBookmarks=true brings BOOKMARK events with the store's version when
    nothing changes; without it, a quiet watch gets nothing."""
    api = api_server(bookmark_interval=0.1)
    create(api, "a")
    create(api, "other")
    version = api.call(lambda store: store.resource_version)
    with api.watch(f"{SERVICES}?watch=1&resourceVersion={version}&allowWatchBookmarks=true&timeoutSeconds=5") as stream:
        event = stream.next()
        assert event == {"type": "BOOKMARK", "object": {
            "kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": str(version), "creationTimestamp": None}}}
        create(api, "b")
        # Bookmarks come every 0.1 s here, so one may arrive before the change: skip them.
        event = stream.next()
        for _ in range(50):
            if event is None or event["type"] != "BOOKMARK":
                break
            event = stream.next()
        assert event is not None and (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "b")
        # A change elsewhere moves the bookmark's version on too (a bookmark already on
        # its way may still carry the version before it).
        api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
        moved = str(api.call(lambda store: store.resource_version))
        versions = []
        for _ in range(50):
            event = stream.next()
            assert event is not None and event["type"] == "BOOKMARK"
            versions.append(event["object"]["metadata"]["resourceVersion"])
            if versions[-1] == moved:
                break
        assert versions[-1] == moved, versions
    with api.watch(f"{SERVICES}?watch=1&resourceVersion={version}&timeoutSeconds=0.5") as stream:
        assert stream.next()["object"]["metadata"]["name"] == "b"
        assert stream.next() is None


def test_send_initial_events_ends_with_an_annotated_bookmark(api: Api):
    """sendInitialEvents=true&resourceVersionMatch=NotOlderThan: ADDED for each object,
    then a bookmark annotated k8s.io/initial-events-end, then changes."""
    create(api, "a")
    create(api, "b")
    version = api.call(lambda store: store.resource_version)
    query = "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion="
    with api.watch(f"{SERVICES}?{query}") as stream:
        assert [stream.next()["object"]["metadata"]["name"] for _ in range(2)] == ["a", "b"]
        end = stream.next()
        assert end["type"] == "BOOKMARK"
        assert end["object"]["metadata"]["resourceVersion"] == str(version)
        assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
        create(api, "c")
        assert stream.next()["object"]["metadata"]["name"] == "c"
    # sendInitialEvents=false: only what changes from now.
    with api.watch(f"{SERVICES}?watch=1&sendInitialEvents=false&resourceVersionMatch=NotOlderThan&timeoutSeconds=5") as stream:
        create(api, "d")
        assert stream.next()["object"]["metadata"]["name"] == "d"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sendInitialEvents=true", ("resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
         "resourceVersionMatch to NotOlderThan")),
        ("resourceVersionMatch=NotOlderThan", ("resourceVersionMatch: Forbidden: resourceVersionMatch is "
         "forbidden for watch unless sendInitialEvents is provided")),
        ("sendInitialEvents=true&resourceVersionMatch=Exact", ("[resourceVersionMatch: Forbidden: sendInitialEvents "
         'requires setting resourceVersionMatch to NotOlderThan, resourceVersionMatch: Unsupported value: "Exact": '
         'supported values: "NotOlderThan"]')),
    ],
)
def test_bad_watch_options_are_422(api: Api, query, message):
    reply = api.request("GET", f"{SERVICES}?watch=1&{query}")
    assert reply.status == 422
    assert reply.json["message"] == f'ListOptions.meta.k8s.io "" is invalid: {message}'
