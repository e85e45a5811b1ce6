"""Watch streams: initial state, resuming, selectors, timeouts, 410 for expired or overflowing
watchers, and the official `kubernetes` Python client listing and watching."""

from __future__ import annotations

import threading
import warnings

import pytest

from tests.api.conftest import Api, service

SERVICES = "/api/v1/namespaces/default/services"


def create(api: Api, name: str, **labels: str) -> dict:
    doc = service(name)
    doc["metadata"]["labels"] = labels or {"app": name}
    reply = api.request("POST", SERVICES, doc)
    assert reply.status == 201, reply.json
    return reply.json


def label(api: Api, name: str, **labels: str) -> dict:
    reply = api.request("PATCH", f"{SERVICES}/{name}", {"metadata": {"labels": labels}}, content_type="application/merge-patch+json")
    assert reply.status == 200, reply.json
    return reply.json


def test_watch_from_zero_sends_current_objects_then_changes(api: Api):
    """resourceVersion=0 starts with ADDED for each current object, then streams MODIFIED and DELETED."""
    create(api, "a")
    with api.watch(f"{SERVICES}?watch=true&resourceVersion=0") as stream:
        first = stream.next()
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a")
        changed = label(api, "a", tier="x")
        event = stream.next()
        assert event["type"] == "MODIFIED"
        assert event["object"]["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]
        api.request("DELETE", f"{SERVICES}/a")
        deleted = stream.next()
        assert deleted["type"] == "DELETED" and deleted["object"]["metadata"]["name"] == "a"
        assert int(deleted["object"]["metadata"]["resourceVersion"]) > int(changed["metadata"]["resourceVersion"])


def test_watch_resumes_after_a_version(api: Api):
    """resourceVersion=N replays exactly the changes after N, then streams new ones."""
    a = create(api, "a")
    create(api, "b")
    with api.watch(f"/api/v1/services?watch=1&resourceVersion={a['metadata']['resourceVersion']}&timeoutSeconds=5") as stream:
        event = stream.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "b")
        create(api, "c")
        assert stream.next()["object"]["metadata"]["name"] == "c"


def test_watch_selector_turns_moves_into_added_and_deleted(api: Api):
    """With a label selector, an object that starts matching is ADDED and one that stops is DELETED."""
    create(api, "a", tier="back")
    with api.watch(f"{SERVICES}?watch=1&labelSelector=tier%3Dfront") as stream:
        label(api, "a", tier="front")
        assert stream.next()["type"] == "ADDED"
        create(api, "other", tier="back")
        label(api, "a", tier="back")
        event = stream.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("DELETED", "a")


def test_watch_table_and_timeout(api: Api):
    """A Table watch sends Table objects; timeoutSeconds ends the stream."""
    create(api, "a")
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    with api.watch(f"{SERVICES}?watch=1&timeoutSeconds=0.2", headers=headers) as stream:
        event = stream.next()
        assert event["object"]["kind"] == "Table"
        assert event["object"]["rows"][0]["cells"][0] == "a"
        assert stream.next() is None


def test_410_when_resource_version_is_too_old(api_server):
    """A watch from a version the bounded event log no longer holds gets an ERROR event with a 410 Expired Status."""
    api = api_server(store_options={"event_log_size": 2})
    for name in "abcd":
        create(api, name)
    before = api.call(lambda store: store.resource_version)
    with api.watch(f"{SERVICES}?watch=1&resourceVersion=1") as stream:
        event = stream.next()
        assert event["type"] == "ERROR"
        status = event["object"]
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
        assert status["message"].startswith("too old resource version: 1")
        assert stream.next() is None
    assert api.call(lambda store: store.resource_version) == before


def test_410_when_the_watcher_falls_behind(api_server):
    """A watcher whose bounded queue overflows (one commit of more changes than it holds) gets 410 and the stream ends."""
    api = api_server(watch_queue_size=2)
    with api.watch("/api/v1/namespaces?watch=1&resourceVersion=2") as stream:

        def burst(store):
            with store.transaction() as txn:
                for number in range(5):
                    txn.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{number}"}})

        api.call(burst)
        event = stream.next()
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
        assert stream.next() is None
    text = api.request("GET", "/metrics").body.decode()
    assert "kdns_api_watches 0.0" in text


@pytest.fixture
def kube_client(api: Api):
    """The official kubernetes client, configured for this server."""
    with warnings.catch_warnings():
        # The client's import may use APIs its dependencies deprecate; that is not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        import kubernetes.client
        import kubernetes.watch
    configuration = kubernetes.client.Configuration()
    configuration.host = api.url
    with kubernetes.client.ApiClient(configuration) as client:
        yield kubernetes.client.CoreV1Api(client), kubernetes.watch.Watch


def test_kubernetes_client_lists_and_watches(api: Api, kube_client):
    """The `kubernetes` Python client lists services and sees another client's change through its watch."""
    core, Watch = kube_client
    create(api, "a")
    listed = core.list_namespaced_service("default")
    assert [(s.metadata.name, s.spec.cluster_ip) for s in listed.items] == [("a", listed.items[0].spec.cluster_ip)]
    assert listed.items[0].spec.cluster_ip.startswith("10.96.")
    writer = threading.Timer(0.2, lambda: create(api, "b"))
    writer.start()
    seen = []
    watch = Watch()
    try:
        for event in watch.stream(core.list_service_for_all_namespaces, resource_version=listed.metadata.resource_version, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name, event["object"].spec.cluster_ip))
            break
    finally:
        watch.stop()
        writer.join()
    assert seen[0][:2] == ("ADDED", "b") and seen[0][2].startswith("10.96.")
