"""The Store: transactions, versions, events, listeners, and what a refusal leaves behind."""

from __future__ import annotations

import copy
import dataclasses
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kdns.registry import objects
from kdns.registry.errors import (
    AlreadyExists,
    Conflict,
    Expired,
    Invalid,
    ManifestError,
    NotFound,
)
from kdns.registry.manifests import load_paths, read_documents
from kdns.registry.objects import Event
from kdns.registry.store import Store, TransactionError, apply_order

NOW = 1_714_557_600.0  # 2024-05-01T10:00:00Z


def doc(text: str) -> dict[str, Any]:
    (document,) = read_documents(textwrap.dedent(text))
    return document


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


def pod(name: str, ip: str, app: str = "web", namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}


def new_store(**kwargs: Any) -> Store:
    return Store(clock=lambda: NOW, **kwargs)


def write(store: Store, *documents: dict[str, Any]) -> None:
    with store.transaction() as txn:
        for document in documents:
            txn.apply(document)


def summary(events: Any) -> list[tuple[str, str, str, int]]:
    return [(e.type, e.object.kind, e.object.meta.name, e.resource_version) for e in events]


# --- Construction and reading ---------------------------------------------------------------------


def test_a_new_store_has_default_and_kube_system():
    """default and kube-system exist from the start, as versions 1 and 2 of one commit."""
    store = new_store()
    assert store.resource_version == 2
    assert [(n.meta.name, n.meta.resource_version) for n in store.list("Namespace")] == [
        ("default", 1), ("kube-system", 2)]
    assert store.get("Namespace", "", "default").meta.creation_timestamp == "2024-05-01T10:00:00Z"
    assert summary(store.events_since(0)) == [
        ("ADDED", "Namespace", "default", 1), ("ADDED", "Namespace", "kube-system", 2)]


def test_list_is_sorted_by_namespace_and_name():
    """list returns objects sorted by (namespace, name), optionally of one namespace."""
    store = new_store()
    write(store, namespace("b"), namespace("a"), service("z", "a"), service("y", "b"), service("x", "a"))
    assert [(s.meta.namespace, s.meta.name) for s in store.list("Service")] == [("a", "x"), ("a", "z"), ("b", "y")]
    assert [s.meta.name for s in store.list("Service", "a")] == ["x", "z"]
    assert store.list("Service", "nowhere") == []
    assert store.get("Service", "a", "x").meta.name == "x"
    assert store.get("Service", "b", "x") is None
    assert store.get("Namespace", "ignored", "a").meta.name == "a"


def test_unknown_kinds_are_refused():
    """Asking for a kind kdns does not serve is an error, not an empty answer."""
    with pytest.raises(ManifestError) as caught:
        new_store().list("Deployment")
    assert str(caught.value) == 'no matches for kind "Deployment"'


def test_configured_ranges_are_used():
    """service_cidrs and node_port_range configure the allocators."""
    store = new_store(service_cidrs=["10.0.0.0/24"], node_port_range=(31000, 31010))
    write(store, service("web", type="NodePort"))
    web = store.get("Service", "default", "web")
    assert web.cluster_ips == ("10.0.0.17",) and web.ports[0].node_port == 31000


# --- Writes and their refusals ----------------------------------------------------------------------


def test_create_returns_the_stored_object_with_its_version():
    """create returns the object as stored, with its resource_version already set."""
    store = new_store()
    with store.transaction() as txn:
        web = txn.create(service("web"))
        assert web.meta.resource_version == 3 and web.manifest["metadata"]["resourceVersion"] == "3"
        assert txn.get("Service", "default", "web") is web
    assert store.get("Service", "default", "web") is web
    assert store.resource_version == 4  # and its EndpointSlice


def test_create_refuses_an_existing_object():
    """Creating what exists is AlreadyExists."""
    store = new_store()
    write(store, service("web"))
    with pytest.raises(AlreadyExists) as caught, store.transaction() as txn:
        txn.create(service("web"))
    assert str(caught.value) == 'services "web" already exists'
    assert (caught.value.kind, caught.value.name) == ("Service", "web")


def test_objects_need_their_namespace():
    """An object in a namespace that does not exist is refused, as Kubernetes does."""
    store = new_store()
    with pytest.raises(NotFound) as caught, store.transaction() as txn:
        txn.create(service("web", "shop"))
    assert str(caught.value) == 'namespaces "shop" not found'
    assert (caught.value.kind, caught.value.name) == ("Namespace", "shop")


def test_a_namespace_created_earlier_in_the_transaction_counts():
    """Order matters within a transaction: the namespace first, then what goes in it."""
    store = new_store()
    with store.transaction() as txn:
        txn.create(namespace("shop"))
        txn.create(service("web", "shop"))
    assert store.get("Service", "shop", "web") is not None


def test_update_refuses_a_missing_object():
    """Updating what does not exist is NotFound."""
    with pytest.raises(NotFound) as caught, new_store().transaction() as txn:
        txn.update(service("web"))
    assert str(caught.value) == 'services "web" not found'


def test_update_with_a_stale_resource_version_conflicts():
    """An update naming an older resourceVersion is a Conflict; the current one goes through."""
    store = new_store()
    write(store, service("web"))
    stale = service("web", publishNotReadyAddresses=True)
    stale["metadata"]["resourceVersion"] = "2"
    with pytest.raises(Conflict) as caught, store.transaction() as txn:
        txn.update(stale)
    assert str(caught.value) == (
        'Operation cannot be fulfilled on services "web": the object has been modified; please apply your '
        "changes to the latest version and try again"
    )
    stale["metadata"]["resourceVersion"] = "3"
    with store.transaction() as txn:
        updated = txn.update(stale)
    assert updated.publish_not_ready_addresses and updated.meta.resource_version == 5


def test_update_reads_the_callers_document_only_of_the_object_still_stored():
    """`read` (an object and its document, as the API's patch unpacked it) stands for the
    stored document only while that object is stored: after a write in between, writing
    back the document read before is a change again, not taken for no change."""
    store = new_store()
    write(store, pod("web-0", "10.244.0.1"))
    before = store.get("Pod", "default", "web-0")
    read = before.manifest
    with store.transaction() as txn:
        same = txn.update(copy.deepcopy(read), read=(before, read))
    assert same is before  # (unchanged: no write)
    flipped = copy.deepcopy(read)
    flipped["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    del flipped["metadata"]["resourceVersion"]
    write(store, flipped)
    assert not store.get("Pod", "default", "web-0").ready
    back = copy.deepcopy(read)
    del back["metadata"]["resourceVersion"]
    with store.transaction() as txn:
        written = txn.update(back, read=(before, read))
    assert written.ready and written.meta.resource_version == store.resource_version
    assert read == before.manifest  # the caller's document, read and left as it was


def test_update_keeps_uid_and_creation_timestamp():
    """An update keeps the object's identity."""
    times = iter([NOW, NOW + 3600])
    store = Store(clock=lambda: next(times, NOW + 7200))
    write(store, service("web"))
    before = store.get("Service", "default", "web")
    write(store, service("web", publishNotReadyAddresses=True))
    after = store.get("Service", "default", "web")
    assert (after.meta.uid, after.meta.creation_timestamp) == (before.meta.uid, before.meta.creation_timestamp)


def test_apply_ignores_resource_version():
    """apply creates or replaces, whatever resourceVersion the document carries."""
    store = new_store()
    document = service("web")
    document["metadata"]["resourceVersion"] = "999"
    write(store, document)
    document["spec"]["publishNotReadyAddresses"] = True
    write(store, document)
    assert store.get("Service", "default", "web").publish_not_ready_addresses


def test_writing_an_unchanged_object_is_no_change():
    """Re-applying what is stored, even with other metadata noise, makes no event and no version."""
    store = new_store()
    write(store, service("web"), pod("web-0", "10.244.0.1"))
    seen: list[Event] = []
    store.subscribe(seen.extend)
    version = store.resource_version
    noisy = service("web")
    noisy["metadata"].update(resourceVersion="3", uid="other", creationTimestamp="2000-01-01T00:00:00Z")
    stored = store.get("Service", "default", "web")
    with store.transaction() as txn:
        assert txn.apply(noisy) is stored
        txn.apply(pod("web-0", "10.244.0.1"))
    assert seen == [] and store.resource_version == version


def test_delete_returns_the_last_state_and_reports_it():
    """delete returns the object; its DELETED event carries the deletion's version."""
    store = new_store()
    write(store, pod("p", "10.244.0.1", app="x"))
    seen: list[Event] = []
    store.subscribe(seen.extend)
    with store.transaction() as txn:
        gone = txn.delete("Pod", "default", "p")
    assert gone.meta.name == "p" and store.get("Pod", "default", "p") is None
    (event,) = seen
    assert (event.type, event.resource_version, event.object.meta.resource_version) == ("DELETED", 4, 4)
    assert event.object.manifest["metadata"]["resourceVersion"] == "4"
    assert event.old is gone and gone.meta.resource_version == 3
    with pytest.raises(NotFound) as caught, store.transaction() as txn:
        txn.delete("Pod", "default", "p")
    assert str(caught.value) == 'pods "p" not found'


def test_deleting_a_namespace_deletes_everything_in_it():
    """A namespace goes with its slices, pods and services, whose addresses are released."""
    store = new_store()
    write(store, namespace("shop"), service("web", "shop", clusterIP="10.96.0.50"), pod("web-0", "10.244.0.1", "web", "shop"))
    seen: list[Event] = []
    store.subscribe(seen.extend)
    with store.transaction() as txn:
        txn.delete("Namespace", "", "shop")
    assert [(e.type, e.object.kind) for e in seen] == [
        ("DELETED", "EndpointSlice"), ("DELETED", "Pod"), ("DELETED", "Service"), ("DELETED", "Namespace")]
    assert [e.resource_version for e in seen] == list(range(seen[0].resource_version, store.resource_version + 1))
    with pytest.raises(NotFound), store.transaction() as txn:
        txn.create(service("web", "shop"))
    write(store, service("again", clusterIP="10.96.0.50"))  # the address is free again


def test_deleting_a_service_releases_its_addresses():
    """A deleted service's cluster IP and node port can be requested by the next one."""
    store = new_store()
    write(store, service("a", type="NodePort"))
    a = store.get("Service", "default", "a")
    with store.transaction() as txn:
        txn.delete("Service", "default", "a")
    b = service("b", type="NodePort", clusterIP=a.cluster_ips[0])
    b["spec"]["ports"][0]["nodePort"] = a.ports[0].node_port
    write(store, b)
    assert store.get("Service", "default", "b").cluster_ips == a.cluster_ips


def test_a_transaction_reads_its_own_writes():
    """get and list inside a transaction see its writes, the controller's slices included."""
    store = new_store()
    with store.transaction() as txn:
        txn.create(service("web"))
        txn.create(pod("web-0", "10.244.0.1"))
        (endpoint_slice,) = txn.list("EndpointSlice")
        assert endpoint_slice.endpoints[0].addresses == ("10.244.0.1",)
        assert txn.get("EndpointSlice", "default", endpoint_slice.meta.name) is endpoint_slice


# --- Transactions --------------------------------------------------------------------------------------


def test_transactions_do_not_nest():
    """A second transaction while one is open is refused."""
    store = new_store()
    with store.transaction(), pytest.raises(TransactionError) as caught, store.transaction():
        pass
    assert str(caught.value) == "A transaction is already open: transactions do not nest."


def test_the_store_is_not_read_while_a_transaction_is_open():
    """Reading the store (not the transaction) mid-transaction is refused rather than answered half-done."""
    store = new_store()
    with store.transaction(), pytest.raises(TransactionError) as caught:
        store.get("Namespace", "", "default")
    assert str(caught.value) == "a transaction is open: read through it, and do not await inside it"
    assert store.get("Namespace", "", "default") is not None


def test_a_transaction_is_used_once_and_inside_with():
    """Writing through a closed transaction, or one never entered, is refused."""
    store = new_store()
    with store.transaction() as txn:
        pass
    with pytest.raises(TransactionError) as caught:
        txn.create(namespace("late"))
    assert str(caught.value) == "the transaction is closed"
    with pytest.raises(TransactionError) as caught:
        store.transaction().create(namespace("early"))
    assert str(caught.value) == "use the transaction in a with statement"
    with pytest.raises(TransactionError):
        txn.__enter__()


def test_rollback_leaves_nothing():
    """A transaction that raises leaves no object, allocation, version, event or listener call."""
    store = new_store()
    seen: list[Any] = []
    store.subscribe(seen.append)

    def write_then_fail() -> None:
        with store.transaction() as txn:
            txn.create(namespace("shop"))
            txn.create(service("web", "shop", type="NodePort", ipFamilyPolicy="PreferDualStack"))
            txn.create(pod("web-0", "10.244.0.1", "web", "shop"))
            txn.list("EndpointSlice")
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        write_then_fail()
    assert seen == [] and store.resource_version == 2
    assert store.get("Namespace", "", "shop") is None and store.list("EndpointSlice") == []
    assert len(store.events_since(0)) == 2
    write(store, service("web", type="NodePort", ipFamilyPolicy="PreferDualStack"))
    web = store.get("Service", "default", "web")
    assert web.cluster_ips == ("10.96.1.1", "fd00:10:96::101") and web.ports[0].node_port == 30086
    assert web.meta.resource_version == 3


def test_a_refused_write_leaves_no_trace_in_its_transaction():
    """A write that fails is undone on its own; the transaction goes on and commits the rest."""
    store = new_store()
    seen: list[Any] = []
    store.subscribe(seen.append)
    with store.transaction() as txn:
        txn.create(service("a"))
        bad = service("b", ipFamilyPolicy="PreferDualStack", type="NodePort")
        bad["spec"]["ports"].append({"name": "x", "port": 0})
        bad["spec"]["ports"][0]["name"] = "y"
        with pytest.raises(Invalid):
            txn.create(bad)
        txn.create(service("c", type="NodePort"))
    assert [s.meta.name for s in store.list("Service")] == ["a", "c"]
    assert store.get("Service", "default", "c").cluster_ips == ("10.96.1.2",)
    assert store.get("Service", "default", "c").ports[0].node_port == 30086
    assert [e.resource_version for e in seen[0]] == [3, 4, 5, 6]


def test_a_pod_after_a_new_service_is_in_its_slice():
    """Pods with equal labels hold one mapping of them, and the services selecting such a
    mapping are remembered (Store._selecting_in_order) until a selector comes or goes:
    a pod made after its Service is in the Service's slice, and out once it is deleted."""
    store = new_store()
    write(store, pod("web-1", "10.0.0.1"))
    write(store, service("web"))
    write(store, pod("web-2", "10.0.0.2"))
    (slice_,) = store.list("EndpointSlice")
    assert [e.target_ref.name for e in slice_.endpoints] == ["web-1", "web-2"]
    with store.transaction() as txn:
        txn.delete("Service", "default", "web")
        txn.create(service("web"))
        txn.apply(pod("web-3", "10.0.0.3"))
    with store.transaction() as txn:
        txn.delete("Service", "default", "web")
        txn.apply(pod("web-4", "10.0.0.4"))
    assert store.list("EndpointSlice") == []
    write(store, service("web"))
    (slice_,) = store.list("EndpointSlice")
    assert [e.target_ref.name for e in slice_.endpoints] == ["web-1", "web-2", "web-3", "web-4"]


def test_pods_filed_together_are_filed_as_one_by_one():
    """Pods put in a transaction are filed under their labels together, when the index
    is next read (Store._index_pods): the same members, in a tuple below
    multimap.MANY of them and a set from there, whatever leaves or comes between."""
    store = new_store()
    with store.transaction() as txn:
        txn.create(service("web"))
        for i in range(20):
            txn.create(pod(f"web-{i:02}", f"10.0.0.{i + 1}"))
        txn.delete("Pod", "default", "web-03")
        txn.apply(pod("web-04", "10.0.0.5", app="other"))
        txn.create(pod("one", "10.0.1.1", app="solo"))
    (slice_,) = store.list("EndpointSlice")
    assert [e.target_ref.name for e in slice_.endpoints] == [f"web-{i:02}" for i in range(20) if i not in (3, 4)]
    table = store._pods_by_label
    assert table[("default", "app", "web")] == {f"web-{i:02}" for i in range(20) if i not in (3, 4)}
    assert table[("default", "app", "other")] == ("web-04",) and table[("default", "app", "solo")] == ("one",)
    with store.transaction() as txn:
        txn.create(pod("two", "10.0.1.2", app="solo"))
        txn.create(pod("web-20", "10.0.0.21"))
        with pytest.raises(AlreadyExists):
            txn.create(pod("two", "10.0.1.2", app="solo"))
    assert table[("default", "app", "solo")] == ("one", "two")
    assert "web-20" in table[("default", "app", "web")]

    def create_then_fail() -> None:
        with store.transaction() as txn:
            txn.create(pod("three", "10.0.1.3", app="solo"))
            raise RuntimeError("undone")

    with pytest.raises(RuntimeError, match="undone"):
        create_then_fail()
    assert table[("default", "app", "solo")] == ("one", "two")


def test_a_new_slice_steps_around_a_name_in_use():
    """A slice name taken by someone else's slice is not reused by the controller."""
    store = new_store()
    write(store, service("web"))
    (endpoint_slice,) = store.list("EndpointSlice")
    with store.transaction() as txn:
        txn.delete("Service", "default", "web")
    squatter = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"name": endpoint_slice.meta.name, "labels": {"kubernetes.io/service-name": "other"}}}
    write(store, squatter, service("web"))
    assert store.get("EndpointSlice", "default", endpoint_slice.meta.name).service_name == "other"
    (mine,) = [s for s in store.list("EndpointSlice") if s.service_name == "web"]
    assert mine.meta.name != endpoint_slice.meta.name and mine.meta.name.startswith("web-")


def test_a_failing_commit_rolls_back(monkeypatch: pytest.MonkeyPatch):
    """If the controller fails while the transaction commits, nothing of the transaction remains."""
    store = new_store()
    seen: list[Any] = []
    store.subscribe(seen.append)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("controller bug")

    monkeypatch.setattr("kdns.registry.endpoints.desired_slices", broken)
    with pytest.raises(RuntimeError), store.transaction() as txn:
        txn.create(service("web", type="NodePort"))
    assert store.resource_version == 2 and store.list("Service") == [] and seen == []
    monkeypatch.undo()
    write(store, service("web", type="NodePort"))
    assert store.get("Service", "default", "web").ports[0].node_port == 30086


def test_a_refused_slice_write_does_not_lose_pending_endpoints():
    """An EndpointSlice write runs the pending controller work first; if the write is refused, that work still happens."""
    store = new_store()
    with store.transaction() as txn:
        txn.create(service("web"))
        txn.create(pod("web-0", "10.244.0.1"))
        with pytest.raises(Invalid):
            txn.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "bad"}})
    (endpoint_slice,) = store.list("EndpointSlice")
    assert endpoint_slice.endpoints[0].addresses == ("10.244.0.1",)


# --- Listeners and the event log -------------------------------------------------------------------------


def test_listeners_get_each_commit_once_in_version_order():
    """Every listener is called once per commit with that commit's events, in version order."""
    store = new_store()
    first: list[Any] = []
    second: list[Any] = []
    store.subscribe(lambda events: first.append(summary(events)))
    store.subscribe(lambda events: second.append(summary(events)))
    write(store, service("web"), pod("web-0", "10.244.0.1"))
    write(store, pod("web-1", "10.244.0.2"))
    with store.transaction():
        pass  # an empty commit tells nobody anything
    assert first == second
    assert [[(t, k, v) for t, k, _, v in batch] for batch in first] == [
        [("ADDED", "Service", 3), ("ADDED", "Pod", 4), ("ADDED", "EndpointSlice", 5)],
        [("ADDED", "Pod", 6), ("MODIFIED", "EndpointSlice", 7)],
    ]


def test_a_failing_listener_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture):
    """A listener that raises does not break the store or the listeners after it."""
    store = new_store()
    seen: list[Any] = []

    def broken(events: Any) -> None:
        raise ValueError("boom")

    store.subscribe(broken)
    store.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="kdns.registry.store"):
        write(store, namespace("shop"))
    assert len(seen) == 1 and store.get("Namespace", "", "shop") is not None
    (record,) = caplog.records
    assert record.getMessage().startswith("registry listener ") and "resource versions 3-3" in record.getMessage()
    assert record.exc_info[0] is ValueError


def test_unsubscribe_stops_the_calls():
    """The function subscribe returns stops further calls, and may be called twice."""
    store = new_store()
    seen: list[Any] = []
    unsubscribe = store.subscribe(seen.append)
    write(store, namespace("a"))
    unsubscribe()
    unsubscribe()
    write(store, namespace("b"))
    assert len(seen) == 1


def test_a_listener_that_writes_does_not_reorder_commits():
    """A commit made by a listener is delivered after the commit that triggered it, to everyone."""
    store = new_store()
    order: list[tuple[str, int]] = []

    def writer(events: Any) -> None:
        order.append(("writer", events[0].resource_version))
        if events[0].object.meta.name == "a":
            write(store, namespace("b"))

    store.subscribe(writer)
    store.subscribe(lambda events: order.append(("reader", events[0].resource_version)))
    write(store, namespace("a"))
    assert order == [("writer", 3), ("reader", 3), ("writer", 4), ("reader", 4)]


def test_events_since_returns_what_a_watcher_missed():
    """events_since(v) returns the events after v, oldest first; nothing for the current version."""
    store = new_store()
    write(store, namespace("a"))
    write(store, namespace("b"), namespace("c"))
    assert summary(store.events_since(3)) == [("ADDED", "Namespace", "b", 4), ("ADDED", "Namespace", "c", 5)]
    assert store.events_since(5) == [] and store.events_since(99) == []


def test_events_older_than_the_log_are_expired():
    """The log keeps event_log_size events; asking from before them is Expired, like HTTP 410."""
    store = new_store(event_log_size=3)
    write(store, namespace("a"), namespace("b"), namespace("c"))
    assert [e.resource_version for e in store.events_since(2)] == [3, 4, 5]
    with pytest.raises(Expired) as caught:
        store.events_since(1)
    assert str(caught.value) == "too old resource version: 1 (2)"
    assert (caught.value.requested, caught.value.oldest) == (1, 2)


# --- The critical listener (the journal) -----------------------------------------------------------------


def test_the_critical_listener_runs_inside_the_commit_before_it_is_visible():
    """The critical listener gets each commit's events before the store shows them, and before other listeners."""
    store = new_store()
    order: list[str] = []

    def journal(events: Any) -> None:
        order.append(f"journal {summary(events)}")
        with pytest.raises(TransactionError):
            store.get("Service", "default", "web")  # the commit is not visible yet

    store.subscribe(lambda events: order.append(f"listener at {store.resource_version}"))
    store.subscribe(journal, critical=True)
    write(store, service("web"))
    (slice_,) = store.list("EndpointSlice")
    saved = [("ADDED", "Service", "web", 3), ("ADDED", "EndpointSlice", slice_.meta.name, 4)]
    assert order == [f"journal {saved}", "listener at 4"]


def test_a_failing_critical_listener_undoes_the_transaction():
    """If the journal raises, the writer gets its error and objects, addresses, ports and the version are as before."""
    store = new_store()
    write(store, service("db", type="NodePort"))
    before = {kind: store.list(kind) for kind in ("Service", "Pod", "EndpointSlice")}
    version, seen = store.resource_version, []
    store.subscribe(seen.append)
    failing = [True]

    def journal(events: Any) -> None:
        if failing[0]:
            raise OSError("disk full")

    store.subscribe(journal, critical=True)
    with pytest.raises(OSError, match="disk full"):
        write(store, service("web", type="NodePort"), pod("web-0", "10.244.0.1"))
    assert {kind: store.list(kind) for kind in before} == before
    assert store.resource_version == version and seen == [] and store.events_since(version) == []
    failing[0] = False
    write(store, service("web", type="NodePort"))
    web = store.get("Service", "default", "web")
    assert web.meta.resource_version == version + 1, "the refused commit's versions are used again"
    twin = new_store()  # the same writes, never refused
    write(twin, service("db", type="NodePort"))
    write(twin, service("web", type="NodePort"))
    expected = twin.get("Service", "default", "web")
    assert (web.cluster_ips, web.ports) == (expected.cluster_ips, expected.ports), "its address and port were freed"


def test_one_critical_listener_and_its_unsubscribe():
    """A store takes one critical listener; unsubscribing it makes room for another and stops its calls."""
    store = new_store()
    calls: list[Any] = []
    stop = store.subscribe(calls.append, critical=True)
    with pytest.raises(TransactionError, match="at most one critical listener"):
        store.subscribe(calls.append, critical=True)
    with store.transaction():
        pass  # an empty commit has nothing to save
    write(store, namespace("a"))
    stop()
    stop()
    write(store, namespace("b"))
    assert len(calls) == 1
    store.subscribe(calls.append, critical=True)


def test_the_sqlite_journal_as_critical_listener_survives_a_restore(tmp_path: Path):
    """Every commit the journal saved comes back through load() and restore() with the same versions and addresses."""
    from kdns.registry.sqlite import SqliteJournal, load

    path = tmp_path / "registry.sqlite3"
    store = new_store()
    with SqliteJournal(path) as journal:
        journal.replace_all([obj for kind in ("Namespace",) for obj in store.list(kind)], store.resource_version)
        store.subscribe(journal, critical=True)
        write(store, namespace("shop"), service("web", "shop", type="NodePort"), pod("web-0", "10.244.0.1", namespace="shop"))
        with store.transaction() as txn:
            txn.delete("Pod", "shop", "web-0")
            txn.create(pod("web-1", "10.244.0.2", namespace="shop"))
    saved = load(path)
    assert saved.version == store.resource_version and saved.documents == []
    assert saved.derived == store.list("EndpointSlice"), "the controller's slices are saved as typed objects"
    restored = new_store()
    restored.restore([], saved.version, typed=saved.objects, derived=saved.derived)
    assert restored.resource_version == store.resource_version
    for kind in ("Namespace", "Service", "Pod", "EndpointSlice"):
        assert [o.manifest for o in restored.list(kind)] == [o.manifest for o in store.list(kind)]
    (slice_,) = restored.list("EndpointSlice", "shop")
    assert slice_.endpoints[0].addresses == ("10.244.0.2",)
    write(restored, pod("web-2", "10.244.0.3", namespace="shop"))  # the controller goes on from the saved slice
    (slice_,) = restored.list("EndpointSlice", "shop")
    assert [e.addresses for e in slice_.endpoints] == [("10.244.0.2",), ("10.244.0.3",)]


def test_a_journal_keeps_the_controllers_slices_in_step(tmp_path: Path):
    """A slice the controller deletes (its Service gone) leaves the file; one written by hand keeps its document."""
    from kdns.registry.sqlite import SqliteJournal, load

    path = tmp_path / "registry.sqlite3"
    store = new_store()
    with SqliteJournal(path) as journal:
        journal.replace_all(store.list("Namespace"), store.resource_version)
        store.subscribe(journal, critical=True)
        write(store, service("web"), pod("web-0", "10.244.0.1"))
        assert [s.service_name for s in load(path).derived] == ["web"]
        with store.transaction() as txn:
            txn.delete("Service", "default", "web")
        assert load(path).derived == []
    saved = load(path)
    assert [(o.kind, o.meta.name) for o in saved.objects] == [
        ("Namespace", "default"), ("Namespace", "kube-system"), ("Pod", "web-0")]


def test_documents_given_to_the_store_are_emptied_once_stored():
    """With `owned`, each document is emptied once its object is stored (which holds it
    packed), so that a big load does not hold every document to its end."""
    store = new_store()
    write(store, namespace("shop"), service("web", "shop"), pod("web-0", "10.244.0.1", namespace="shop"))
    documents = [obj.manifest for kind in ("Namespace", "Service", "Pod") for obj in store.list(kind)]
    restored = new_store()
    restored.restore(documents, store.resource_version, owned=True)
    assert documents == [{}] * len(documents)
    for kind in ("Namespace", "Service", "Pod"):
        assert [o.manifest for o in restored.list(kind)] == [o.manifest for o in store.list(kind)]


# --- Restoring a saved state --------------------------------------------------------------------------------


def saved_cluster() -> tuple[Store, list[dict[str, Any]]]:
    """A store with a namespace, a NodePort service with a pod, and a headless service; and its documents."""
    from kdns.registry.manifests import to_manifest

    times = iter([NOW - 86400.0] * 4)
    store = Store(clock=lambda: next(times, NOW))
    write(store, namespace("shop"), service("web", "shop", type="NodePort"), pod("web-0", "10.244.0.1", namespace="shop"))
    write(store, service("db", "shop", clusterIP="None"), pod("db-0", "10.244.0.2", app="db", namespace="shop"))
    write(store, service("web", "shop", type="NodePort", publishNotReadyAddresses=True))  # generation 2
    documents = [to_manifest(o) for kind in ("Namespace", "Service", "Pod") for o in store.list(kind)]
    return store, documents


def test_restore_keeps_identity_versions_and_addresses():
    """Restored objects keep uid, creationTimestamp, generation and resourceVersion, and Services their IPs and ports."""
    saved, documents = saved_cluster()
    store = new_store()
    store.restore(documents, saved.resource_version)
    for kind in ("Namespace", "Service", "Pod"):
        assert [o.manifest for o in store.list(kind)] == [o.manifest for o in saved.list(kind)]
    web = store.get("Service", "shop", "web")
    assert web.manifest["metadata"]["generation"] == 2
    assert web.manifest["metadata"]["creationTimestamp"] == "2024-04-30T10:00:00Z"
    with pytest.raises(Invalid, match="provided IP is already allocated"), store.transaction() as txn:
        txn.create(service("copy", "shop", clusterIP=web.cluster_ips[0]))
    with pytest.raises(Invalid, match="provided port is already allocated"), store.transaction() as txn:
        txn.create(service("copy", "shop", type="NodePort", ports=[{"port": 80, "nodePort": web.ports[0].node_port}]))
    write(store, service("api", "shop", type="NodePort"))
    api = store.get("Service", "shop", "api")
    assert api.cluster_ips != web.cluster_ips and api.ports[0].node_port != web.ports[0].node_port


def test_restore_takes_typed_objects_as_they_are():
    """Typed objects (a journal's) are stored as they are, reserving their addresses; the controller derives the slices."""
    saved, _ = saved_cluster()
    typed = copy.deepcopy([o for kind in ("Namespace", "Service", "Pod") for o in saved.list(kind)])
    store = new_store()
    store.restore([], saved.resource_version, typed=typed)
    for kind in ("Namespace", "Service", "Pod"):
        assert store.list(kind) == saved.list(kind)
        assert [o.manifest for o in store.list(kind)] == [o.manifest for o in saved.list(kind)]
    assert store.resource_version == saved.resource_version
    assert {s.service_name for s in store.list("EndpointSlice", "shop")} == {"web", "db"}
    web = store.get("Service", "shop", "web")
    with pytest.raises(Invalid, match="provided IP is already allocated"), store.transaction() as txn:
        txn.create(service("copy", "shop", clusterIP=web.cluster_ips[0]))
    with pytest.raises(Invalid, match="provided port is already allocated"), store.transaction() as txn:
        txn.create(service("copy", "shop", type="NodePort", ports=[{"port": 80, "nodePort": web.ports[0].node_port}]))


def test_typed_objects_that_collide_are_refused_and_leave_the_store_new():
    """Two typed Services holding one cluster IP: RestoreError naming the second, and the store is as new."""
    from kdns.registry.store import RestoreError

    saved, _ = saved_cluster()
    web = saved.get("Service", "shop", "web")
    twin = dataclasses.replace(web, meta=dataclasses.replace(web.meta, name="twin"),
                               document=objects.pack({**web.manifest, "metadata": {**web.manifest["metadata"], "name": "twin"}}))
    store = new_store()
    with pytest.raises(RestoreError) as caught:
        store.restore([], saved.resource_version, typed=[saved.get("Namespace", "", "shop"), web, twin])
    assert str(caught.value) == (f'Service shop/twin: Service "twin" is invalid: spec.clusterIPs[0]: Invalid value: '
                                 f'[]string{{"{web.cluster_ips[0]}"}}: failed to allocate IP {web.cluster_ips[0]}: '
                                 "provided IP is already allocated")
    assert [n.meta.name for n in store.list("Namespace")] == ["default", "kube-system"] and store.list("Service") == []
    store.restore([], saved.resource_version, typed=[saved.get("Namespace", "", "shop"), web])
    assert store.get("Service", "shop", "web") == web


def test_restore_runs_the_endpoint_slice_controller_at_the_saved_version():
    """The controller derives every Service's slices again, at the saved version, which the store goes on from."""
    saved, documents = saved_cluster()
    store = new_store()
    store.restore(documents, saved.resource_version)
    assert store.resource_version == saved.resource_version
    slices = {s.service_name: s for s in store.list("EndpointSlice", "shop")}
    assert {name: s.endpoints[0].addresses for name, s in slices.items()} == {"web": ("10.244.0.1",), "db": ("10.244.0.2",)}
    assert {s.meta.resource_version for s in slices.values()} == {saved.resource_version}
    write(store, pod("web-1", "10.244.0.3", namespace="shop"))
    assert store.resource_version == saved.resource_version + 2  # the pod and the web slice


def test_restore_replaces_the_initial_namespaces_without_duplicates():
    """Saved default and kube-system take the place of the new store's own; missing ones stay."""
    saved, documents = saved_cluster()
    saved_default = saved.get("Namespace", "", "default")
    documents = [d for d in documents if d["metadata"]["name"] != "kube-system"]
    store = new_store()
    store.restore(documents, saved.resource_version)
    assert [n.meta.name for n in store.list("Namespace")] == ["default", "kube-system", "shop"]
    assert store.get("Namespace", "", "default").meta.uid == saved_default.meta.uid


def test_restore_never_goes_back():
    """The store starts at the highest of the saved version and every document's, and older versions are expired."""
    saved, documents = saved_cluster()
    store = new_store()
    store.restore(documents, 3)
    assert store.resource_version == saved.resource_version == max(int(d["metadata"]["resourceVersion"]) for d in documents)
    with pytest.raises(Expired):
        store.events_since(store.resource_version - 1)
    assert store.events_since(store.resource_version) == []
    empty = new_store()
    empty.restore([], 500)
    assert empty.resource_version == 500 and len(empty.list("Namespace")) == 2


def test_restore_needs_a_new_store():
    """Restoring after a write, a restore, or a subscription is refused."""
    _, documents = saved_cluster()
    written = new_store()
    write(written, namespace("a"))
    subscribed = new_store()
    subscribed.subscribe(lambda events: None)
    journaled = new_store()
    journaled.subscribe(lambda events: None, critical=True)
    restored = new_store()
    restored.restore(documents, 1)
    for store in (written, subscribed, journaled, restored):
        with pytest.raises(TransactionError, match="restore needs a new store"):
            store.restore(documents, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda docs: docs.append(dict(docs[-1])), 'Pod shop/web-0: pods "web-0" already exists'),
        (lambda docs: docs.__setitem__(-1, {**docs[-1], "metadata": {**docs[-1]["metadata"], "resourceVersion": "x"}}),
         "Pod shop/web-0: metadata.resourceVersion 'x': not a positive integer"),
        (lambda docs: docs.__setitem__(2, namespace("elsewhere")), 'Service shop/web: namespaces "shop" not found'),
        (lambda docs: docs[4]["spec"]["ports"][0].update(nodePort=80),  # outside the range
         'Service shop/web: Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 80'),
    ],
    ids=["duplicate", "bad-version", "no-namespace", "node-port-range"],
)
def test_a_bad_saved_state_is_refused_and_leaves_the_store_new(change: Any, message: str):
    """A document that cannot be restored raises RestoreError naming it; the store is as new and can restore again."""
    from kdns.registry.store import RestoreError

    saved, documents = saved_cluster()
    broken = copy.deepcopy(documents)
    change(broken)
    store = new_store()
    with pytest.raises(RestoreError) as caught:
        store.restore(broken, saved.resource_version)
    assert message in str(caught.value)
    assert store.resource_version == 2 and [n.meta.name for n in store.list("Namespace")] == ["default", "kube-system"]
    assert store.list("Service") == [] and store.list("EndpointSlice") == []
    store.restore(documents, saved.resource_version)
    assert len(store.list("Service")) == 2


# --- Loading manifests --------------------------------------------------------------------------------


def test_apply_order():
    """Namespaces, Nodes, Services with requested addresses, other Services, Pods, EndpointSlices, the rest."""
    documents = [
        {"kind": "EndpointSlice"}, {"kind": "Pod"}, service("dynamic"), service("fixed", clusterIP="10.96.0.10"),
        {"kind": "Deployment"}, {"kind": "Node"}, namespace("a"), service("headless", clusterIP="None"),
        {"kind": "Service", "spec": {"ports": [{"port": 80, "nodePort": 30007}]}},
    ]
    assert [apply_order(d) for d in documents] == [5, 4, 3, 2, 6, 1, 0, 3, 2]


MANIFESTS = """
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
status: {phase: Running, podIP: 10.244.0.1, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec: {clusterIP: 10.96.1.1, selector: {k8s-app: kube-dns}, ports: [{name: dns, port: 53, protocol: UDP}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
"""


def test_loading_a_directory_in_one_transaction(tmp_path: Path):
    """Documents in any order load in apply_order: namespace first, requested addresses before allocated ones."""
    (tmp_path / "cluster.yaml").write_text(MANIFESTS)
    documents, warnings = load_paths([tmp_path])
    store = new_store()
    with store.transaction() as txn:
        txn.apply_documents(documents)
    assert warnings == [(f"{tmp_path / 'cluster.yaml'}: document 4: skipped Deployment (apps/v1): "
                        "kdns does not serve this kind")]
    assert store.get("Service", "kube-system", "kube-dns").cluster_ips == ("10.96.1.1",)
    assert store.get("Service", "shop", "web").cluster_ips == ("10.96.1.2",)
    (web_slice,) = list(store.list("EndpointSlice", "shop"))
    assert web_slice.endpoints[0].addresses == ("10.244.0.1",)


def test_a_refused_document_names_its_file_and_index(tmp_path: Path):
    """An admission refusal during a load says which file and document, and the load is undone."""
    (tmp_path / "web.yaml").write_text(MANIFESTS.replace("ports: [{port: 80}]", "ports: [{port: 70000, targetPort: 80}]"))
    documents, _ = load_paths([tmp_path])
    store = new_store()
    with pytest.raises(ManifestError) as caught, store.transaction() as txn:
        txn.apply_documents(documents)
    assert str(caught.value) == (
        f'{tmp_path / "web.yaml"}: document 2: Service "web" is invalid: spec.ports[0].port: Invalid value: 70000: '
        "must be between 1 and 65535, inclusive"
    )
    assert isinstance(caught.value.__cause__, Invalid)
    assert (caught.value.source, caught.value.index) == (str(tmp_path / "web.yaml"), 2)
    assert store.resource_version == 2 and store.get("Namespace", "", "shop") is None


def test_a_refused_batch_is_undone_as_a_whole_and_the_transaction_goes_on(tmp_path: Path):
    """apply_documents is all or nothing: a refusal takes back the batch's earlier documents,
    not what the transaction wrote before it, and the transaction can still commit."""
    (tmp_path / "web.yaml").write_text(MANIFESTS.replace("ports: [{port: 80}]", "ports: [{port: 70000, targetPort: 80}]"))
    documents, _ = load_paths([tmp_path])
    store = new_store()
    with store.transaction() as txn:
        txn.apply(namespace("kept"))
        with pytest.raises(ManifestError):
            txn.apply_documents(documents)
        assert txn.get("Namespace", "", "shop") is None and txn.get("Namespace", "", "kept") is not None
    assert store.get("Namespace", "", "kept") is not None and store.get("Namespace", "", "shop") is None
    assert store.list("Service", "kube-system") == []


def test_a_document_of_an_unserved_kind_given_directly_is_refused():
    """Documents that did not come through load_paths' filter are refused by kind, with their place."""
    from kdns.registry.manifests import load_text

    documents = load_text("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n", "inline.yaml")
    with pytest.raises(ManifestError) as caught, new_store().transaction() as txn:
        txn.apply_documents(documents)
    assert str(caught.value) == 'inline.yaml: document 1: no matches for kind "Secret" in version "v1"'


def test_objects_lists_every_kind_namespaces_first_and_counts_agree() -> None:
    store = new_store()
    write(store, namespace("b"), service("web", "b"), pod("p", "10.244.0.5", namespace="b"))
    objects = store.objects()
    kinds = [obj.kind for obj in objects]
    assert kinds == sorted(kinds, key=["Namespace", "Service", "Pod", "Node", "EndpointSlice"].index)
    assert [obj.key.name for obj in objects if obj.kind == "Namespace"] == ["b", "default", "kube-system"]
    assert len(objects) == sum(store.count(kind) for kind in set(kinds))
    with store.transaction(), pytest.raises(TransactionError):
        store.objects()
