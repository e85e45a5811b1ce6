"""The Store as a replica of commits made elsewhere (the etcd store): preview,
apply_committed, resync, and an event log whose versions have gaps."""

from __future__ import annotations

import pytest

from kdns.registry.errors import AlreadyExists, Expired
from kdns.registry.manifests import to_manifest
from kdns.registry.objects import Event
from kdns.registry.store import Store
from tests.registry.test_store import new_store, pod, service, summary


def test_preview_reports_what_a_write_would_change_and_leaves_nothing() -> None:
    """A preview runs admission, allocation and the EndpointSlice controller, returns the
    objects before and after, and undoes all of it (version, objects, allocations); the
    allocators go on after what it took."""
    store = new_store()
    seen: list[Event] = []
    store.subscribe(seen.extend)
    preview = store.preview(lambda txn: (txn.create(service("web")), txn.create(pod("web-0", "10.0.0.1"))))
    created, _ = preview.result
    assert {key[0] for key in preview.after} == {"Service", "Pod", "EndpointSlice"}
    assert all(before is None for before in preview.before.values())
    assert preview.after[("Service", "default", "web")] is created
    assert (store.resource_version, store.get("Service", "default", "web"), seen) == (2, None, [])
    # The cluster IP went back (it may be asked for), but the next preview allocates
    # after it: that write may be in flight to etcd.
    asked = store.preview(lambda txn: txn.create(service("web", clusterIP=created.cluster_ips[0])))
    assert asked.result.cluster_ips == created.cluster_ips
    following = store.preview(lambda txn: txn.create(service("api")))
    assert not set(following.result.cluster_ips) & set(created.cluster_ips)
    with pytest.raises(AlreadyExists):
        store.preview(lambda txn: txn.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}))


def test_apply_committed_serves_objects_at_their_versions_and_reserves_their_addresses() -> None:
    """Changes committed elsewhere keep their identity, get the given version (gaps and all),
    reach listeners as events, and hold their cluster IPs against local allocation."""
    writer, replica = new_store(), new_store()
    created = writer.preview(lambda txn: txn.create(service("web"))).result
    seen: list[Event] = []
    replica.subscribe(seen.extend)
    replica.apply_committed([("Service", "default", "web", to_manifest(created), 40)])
    served = replica.get("Service", "default", "web")
    assert (served.meta.resource_version, served.meta.uid, served.cluster_ips) == (40, created.meta.uid, created.cluster_ips)
    assert summary(seen) == [("ADDED", "Service", "web", 40)]
    other = replica.preview(lambda txn: txn.create(service("api"))).result
    assert not set(other.cluster_ips) & set(created.cluster_ips)

    replica.apply_committed([("Service", "default", "web", None, 47)])
    assert replica.get("Service", "default", "web") is None
    assert summary(seen)[-1] == ("DELETED", "Service", "web", 47)
    assert replica.resource_version == 47
    assert summary(replica.events_since(40)) == [("DELETED", "Service", "web", 47)]
    assert summary(replica.events_since(45)) == [("DELETED", "Service", "web", 47)]


def test_events_since_with_gaps_expires_only_what_the_log_dropped() -> None:
    store = Store(event_log_size=2)
    store.apply_committed([("Namespace", "", f"n{number}", {"apiVersion": "v1", "kind": "Namespace",
                                                              "metadata": {"name": f"n{number}"}}, version)
                           for number, version in ((1, 10), (2, 20), (3, 30))])
    assert summary(store.events_since(20)) == [("ADDED", "Namespace", "n3", 30)]
    assert len(store.events_since(10)) == 2
    with pytest.raises(Expired, match=r"too old resource version: 9 \(10\)"):
        store.events_since(9)


def test_resync_applies_the_difference_and_expires_older_watchers() -> None:
    """A relist: objects gone are deleted, changed ones replaced, the same ones untouched;
    a watcher from before the relist must list again (410)."""
    writer, replica = new_store(), new_store()
    web = writer.preview(lambda txn: txn.create(service("web"))).result
    api = writer.preview(lambda txn: txn.create(service("api", clusterIP="10.96.0.50"))).result
    replica.apply_committed([("Service", "default", "web", to_manifest(web), 5),
                             ("Service", "default", "api", to_manifest(api), 5)])
    namespaces = [(to_manifest(n), n.meta.resource_version) for n in replica.list("Namespace")]
    seen: list[Event] = []
    replica.subscribe(seen.extend)
    replica.resync([*namespaces, (to_manifest(api), 5)], 90)
    assert summary(seen) == [("DELETED", "Service", "web", 90)]
    assert [s.meta.name for s in replica.list("Service")] == ["api"]
    assert replica.resource_version == 90
    with pytest.raises(Expired):
        replica.events_since(5)
