"""The SQLite journal (kdns.registry.sqlite): what the API acknowledged is on disk, and comes back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import marshal
import pickle
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from kdns.journal import WRITER_NICENESS, JournalWriter
from kdns.registry.manifests import to_manifest
from kdns.registry.sqlite import Saved, SqliteJournal, StorageError, load, object_format
from kdns.registry.store import Store, apply_order
from tests.api.conftest import SERVICE_AND_PODS, needs_kubectl, service

SERVICES = "/api/v1/namespaces/default/services"


@pytest.fixture
def journaled():
    """Factory: a `prepare` hook that writes the store's state to `path`, then journals every commit before it is acknowledged."""
    journals: list[SqliteJournal] = []

    def make(path):
        def prepare(store: Store) -> None:
            journal = SqliteJournal(path)
            journals.append(journal)
            everything = [obj for kind in ("Namespace", "Node", "Service", "Pod", "EndpointSlice") for obj in store.list(kind)]
            journal.replace_all(everything, store.resource_version)
            store.subscribe(journal, critical=True)

        return prepare

    yield make
    for journal in journals:
        journal.close()


def stored_row(path, kind, namespace, name):
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(
            "SELECT resource_version FROM objects WHERE kind = ? AND namespace = ? AND name = ?", (kind, namespace, name)
        ).fetchone()


def test_acknowledged_write_is_on_disk(api_server, journaled, tmp_path):
    """When the API answers a create, update or delete, another connection already reads it from the file."""
    path = tmp_path / "registry.sqlite3"
    api = api_server(prepare=journaled(path))
    created = api.request("POST", SERVICES, service("web")).json
    assert stored_row(path, "Service", "default", "web") == (int(created["metadata"]["resourceVersion"]),)
    patched = api.request("PATCH", f"{SERVICES}/web", {"metadata": {"labels": {"x": "1"}}}, content_type="application/merge-patch+json").json
    assert stored_row(path, "Service", "default", "web") == (int(patched["metadata"]["resourceVersion"]),)
    api.request("DELETE", f"{SERVICES}/web")
    assert stored_row(path, "Service", "default", "web") is None
    saved = load(path)
    assert saved.version == api.call(lambda store: store.resource_version)
    assert [o.meta.name for o in saved.objects] == ["default", "kube-system"] and saved.documents == []


def test_load_restores_cluster_ips_and_node_ports(api_server, journaled, tmp_path):
    """Documents loaded from the file, applied to a new store, keep their ClusterIPs and NodePorts."""
    path = tmp_path / "registry.sqlite3"
    api = api_server(prepare=journaled(path))
    api.request("POST", "/api/v1/namespaces", {"metadata": {"name": "blue"}})
    web = api.request("POST", SERVICES, service("web", type="NodePort")).json
    db = api.request("POST", "/api/v1/namespaces/blue/services", service("db")).json
    pod = {"metadata": {"name": "web-1", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]},
           "status": {"phase": "Running", "podIP": "10.244.0.7", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert api.request("POST", "/api/v1/namespaces/default/pods", pod).status == 201
    saved = load(path)
    assert [(o.kind, o.meta.name) for o in saved.objects] == [
        ("Namespace", "blue"), ("Namespace", "default"), ("Namespace", "kube-system"),
        ("Service", "db"), ("Service", "web"), ("Pod", "web-1"),
    ], "managed EndpointSlices are derived again, not stored"
    assert saved.version == api.call(lambda store: store.resource_version)
    documents = [o.manifest for o in saved.objects]

    restored = Store()
    with restored.transaction() as txn:
        for document in sorted(documents, key=apply_order):
            txn.apply(document)
    again = restored.get("Service", "default", "web")
    assert again.cluster_ips == (web["spec"]["clusterIP"],)
    assert again.ports[0].node_port == web["spec"]["ports"][0]["nodePort"]
    assert restored.get("Service", "blue", "db").cluster_ips == (db["spec"]["clusterIP"],)
    [slice_] = restored.list("EndpointSlice", "default")
    assert slice_.endpoints[0].addresses == ("10.244.0.7",)


@needs_kubectl
def test_kubectl_sees_the_same_cluster_ip_after_a_restart(api_server, journaled, tmp_path):
    """A cluster applied with kubectl, saved, and loaded into a new server shows the same ClusterIP to kubectl."""
    path = tmp_path / "registry.sqlite3"
    first = api_server(prepare=journaled(path))
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE_AND_PODS)
    first.kubectl("apply", "-f", str(manifest))
    before = first.kubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    saved = load(path)
    second = api_server(prepare=lambda store: store.restore(saved.documents, saved.version, typed=saved.objects))
    assert second.kubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout == before
    assert "service/web unchanged" in second.kubectl("apply", "-f", str(manifest)).stdout


def test_500_when_the_journal_fails_and_nothing_changes(api_server, tmp_path):
    """A write the journal cannot save is a 500 Status, and neither the store nor the file changes."""
    path = tmp_path / "registry.sqlite3"
    failing = [False]
    with SqliteJournal(path) as journal:

        def flaky(events):
            if failing[0]:
                raise StorageError(f"{path}: disk I/O error")
            journal(events)

        def prepare(store: Store) -> None:
            journal.replace_all(store.list("Namespace"), store.resource_version)
            store.subscribe(flaky, critical=True)

        api = api_server(prepare=prepare)
        assert api.request("POST", SERVICES, service("db", type="NodePort")).status == 201
        version = api.call(lambda store: store.resource_version)
        failing[0] = True
        reply = api.request("POST", SERVICES, service("web", type="NodePort"))
        assert reply.status == 500, reply.body
        assert (reply.json["kind"], reply.json["reason"], reply.json["code"]) == ("Status", "InternalError", 500)
        assert api.request("DELETE", f"{SERVICES}/db").status == 500
        assert api.call(lambda store: store.resource_version) == version
        assert api.request("GET", f"{SERVICES}/web").status == 404 and api.request("GET", f"{SERVICES}/db").status == 200
        assert stored_row(path, "Service", "default", "web") is None and load(path).version == version
        failing[0] = False
        assert api.request("POST", SERVICES, service("web", type="NodePort")).status == 201
        assert stored_row(path, "Service", "default", "web") is not None


def test_missing_file_and_closed_journal(tmp_path):
    """load() of a missing file is empty; writing through a closed journal raises StorageError."""
    assert load(tmp_path / "none.sqlite3") == Saved([], [], 0)
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    journal.close()
    with pytest.raises(StorageError):
        journal.replace_all([], 1)


def test_refuses_a_newer_schema(tmp_path):
    """A file written by a newer schema version is refused rather than misread."""
    path = tmp_path / "future.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StorageError, match="schema version 99"):
        load(path)


def test_one_journal_per_file(tmp_path):
    """While a journal has a file open, another is refused with StorageError; once closed, the file is free."""
    path = tmp_path / "registry.sqlite3"
    first = SqliteJournal(path)
    with pytest.raises(StorageError, match="is in use by another kdns"):
        SqliteJournal(path)
    first.close()
    SqliteJournal(path).close()


# --- the journal's writer thread (kdns.journal), as `kdns serve` runs it ---------------------


@pytest.fixture
def threaded():
    """Factory: `threaded(path, disk=None)` -> (prepare, build_app keywords, the writer's
    holder): the store saved by a JournalWriter on its thread, the API's writes waiting for
    it. `disk(write)` wraps the journal's own write (a slow or failing disk)."""
    started: list[tuple[JournalWriter, asyncio.AbstractEventLoop]] = []
    journals: list[SqliteJournal] = []

    def make(path, disk=None):
        holder: list[JournalWriter] = []

        def prepare(store: Store) -> None:
            journal = SqliteJournal(path)
            journals.append(journal)
            journal.replace_all(store.list("Namespace"), store.resource_version)
            write = disk(journal.write) if disk is not None else None
            writer = JournalWriter(journal, saved=store.resource_version, write=write)
            writer.start()
            started.append((writer, asyncio.get_running_loop()))
            holder.append(writer)
            store.subscribe(writer, critical=True)

        def durable(version):
            return holder[0].durable(version)

        return prepare, {"durable": durable}, holder

    yield make
    for writer, loop in started:
        asyncio.run_coroutine_threadsafe(writer.aclose(), loop).result(10)
    for journal in journals:
        journal.close()


def test_a_2xx_from_the_writer_thread_means_on_disk(api_server, threaded, tmp_path):
    """With the writer thread, every write answered 2xx to concurrent clients is already in the file, at its version."""
    path = tmp_path / "registry.sqlite3"
    prepare, options, holder = threaded(path)
    api = api_server(prepare=prepare, **options)
    replies: list[str] = []
    lock = threading.Lock()

    def create(first: int) -> None:
        for number in range(first, 24, 4):
            reply = api.request("POST", SERVICES, service(f"svc-{number}"))
            assert reply.status == 201, reply.body
            version = int(reply.json["metadata"]["resourceVersion"])
            assert stored_row(path, "Service", "default", f"svc-{number}") == (version,)
            with lock:
                replies.append(f"svc-{number}")

    threads = [threading.Thread(target=create, args=(first,)) for first in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(replies) == 24
    assert api.request("DELETE", f"{SERVICES}/svc-0").status == 200
    assert stored_row(path, "Service", "default", "svc-0") is None
    assert load(path).version == api.call(lambda store: store.resource_version)
    assert 0 < holder[0].groups <= holder[0].commits == 25


def niceness(thread_id: int) -> int:
    """A thread of this process's niceness, as the kernel reports it (/proc: field 19 of stat)."""
    stat = Path(f"/proc/self/task/{thread_id}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])


@pytest.mark.skipif(sys.platform != "linux", reason="a thread has a niceness of its own on Linux only")
def test_the_writer_thread_is_nicer_than_the_event_loop(api_server, threaded, tmp_path):
    """The journal's thread runs WRITER_NICENESS nicer than the event loop's thread that
    started it (at most 19), as the kernel has it, and the loop's own niceness is left as
    it was; a write through it is still saved before its 2xx."""
    path = tmp_path / "registry.sqlite3"
    prepare, options, holder = threaded(path)
    api = api_server(prepare=prepare, **options)
    loop_thread = api.call(lambda store: threading.get_native_id())
    before = niceness(loop_thread)
    reply = api.request("POST", SERVICES, service("web"))
    assert reply.status == 201
    assert stored_row(path, "Service", "default", "web") == (int(reply.json["metadata"]["resourceVersion"]),)
    writer = holder[0]
    assert writer.thread_id is not None and writer.thread_id != loop_thread
    assert niceness(writer.thread_id) == writer.niceness == min(19, before + WRITER_NICENESS)
    assert niceness(loop_thread) == before


def test_a_write_waits_for_the_disk_and_nothing_else_does(api_server, threaded, tmp_path):
    """While the disk holds a save up, the commit is visible and the API goes on serving;
    the write's own reply comes once the save is done."""
    path = tmp_path / "registry.sqlite3"
    disk = threading.Event()

    def slow(write):
        def held(rows, version):
            assert disk.wait(20), "the test never let the save finish"
            write(rows, version)

        return held

    prepare, options, _ = threaded(path, disk=slow)
    api = api_server(prepare=prepare, **options)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(api.request, "POST", SERVICES, service("web"))
        deadline = time.monotonic() + 20
        for _ in range(2000):  # visible before it is saved (bounded in count and time)
            if api.request("GET", f"{SERVICES}/web").status == 200 or time.monotonic() > deadline:
                break
        assert api.request("GET", f"{SERVICES}/web").status == 200
        assert not pending.done() and stored_row(path, "Service", "default", "web") is None
        disk.set()
        reply = pending.result(10)
    assert reply.status == 201
    assert stored_row(path, "Service", "default", "web") == (int(reply.json["metadata"]["resourceVersion"]),)


def test_a_failed_save_is_a_500_and_the_journal_stops(api_server, threaded, tmp_path):
    """A save that fails answers its write 500; every later write is refused 500 and changes
    nothing, even once the disk is back; the file keeps what was saved before."""
    path = tmp_path / "registry.sqlite3"
    failing = [False]

    def flaky(write):
        def maybe(rows, version):
            if failing[0]:
                raise StorageError(f"{path}: disk I/O error")
            write(rows, version)

        return maybe

    prepare, options, _ = threaded(path, disk=flaky)
    api = api_server(prepare=prepare, **options)
    assert api.request("POST", SERVICES, service("db")).status == 201
    saved = load(path).version
    failing[0] = True
    reply = api.request("POST", SERVICES, service("web"))
    assert reply.status == 500, reply.body
    assert (reply.json["kind"], reply.json["reason"], reply.json["code"]) == ("Status", "InternalError", 500)
    version = api.call(lambda store: store.resource_version)
    failing[0] = False  # the disk is back, but the file may now miss a commit: kdns stops saving
    assert api.request("POST", SERVICES, service("api")).status == 500
    assert api.request("DELETE", f"{SERVICES}/db").status == 500
    assert api.call(lambda store: store.resource_version) == version
    assert api.request("GET", f"{SERVICES}/api").status == 404 and api.request("GET", f"{SERVICES}/db").status == 200
    assert load(path).version == saved and stored_row(path, "Service", "default", "web") is None


def _journal_of(path, store: Store) -> None:
    with SqliteJournal(path) as journal:
        journal.replace_all(store.objects(), store.resource_version)


def _shop() -> Store:
    store = Store()
    with store.transaction() as txn:
        txn.create(service("web", type="NodePort"))
    return store


def test_typed_objects_come_back_as_they_were(tmp_path):
    """load() gives the typed objects the store held, equal to them, with no document left to admit."""
    path = tmp_path / "registry.sqlite3"
    store = _shop()
    _journal_of(path, store)
    saved = load(path)
    assert saved.documents == [] and not saved.stale
    assert saved.objects == [o for kind in ("Namespace", "Service") for o in store.list(kind)]
    assert [o.manifest for o in saved.objects] == [o.manifest for kind in ("Namespace", "Service") for o in store.list(kind)]


def test_a_schema_1_file_is_upgraded_and_read_from_its_documents(tmp_path):
    """A file of schema version 1 (documents only) is read from its documents, and takes typed objects once written again."""
    path = tmp_path / "registry.sqlite3"
    store = _shop()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(
            "CREATE TABLE objects (kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,"
            " resource_version INTEGER NOT NULL, document TEXT NOT NULL, PRIMARY KEY (kind, namespace, name)) WITHOUT ROWID;"
            "CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID; PRAGMA user_version=1;"
        )
        for obj in (o for kind in ("Namespace", "Service") for o in store.list(kind)):
            db.execute("INSERT INTO objects VALUES (?, ?, ?, ?, ?)", (obj.kind, obj.meta.namespace, obj.meta.name,
                       obj.meta.resource_version, json.dumps(to_manifest(obj))))
        db.execute("INSERT INTO state VALUES ('resource_version', ?)", (store.resource_version,))
        db.commit()
    saved = load(path)
    assert saved.objects == [] and saved.stale and saved.version == store.resource_version
    assert saved.derived is None, "the slices are derived again"
    assert [(d["kind"], d["metadata"]["name"]) for d in saved.documents] == [
        ("Namespace", "default"), ("Namespace", "kube-system"), ("Service", "web")]
    restored = Store()
    restored.restore(saved.documents, saved.version)
    assert restored.get("Service", "default", "web").ports == store.get("Service", "default", "web").ports
    _journal_of(path, restored)
    again = load(path)
    assert not again.stale and [o.meta.name for o in again.objects] == ["default", "kube-system", "web"]


def test_a_typed_object_of_another_kdns_is_read_from_its_document(tmp_path):
    """A row whose typed object another version wrote (another tag) is restored from its document instead."""
    path = tmp_path / "registry.sqlite3"
    _journal_of(path, _shop())
    with contextlib.closing(sqlite3.connect(path)) as db:
        (typed,) = db.execute("SELECT object FROM typed WHERE name = 'web'").fetchone()
        db.execute("UPDATE typed SET object = ? WHERE name = 'web'", (bytes(8) + typed[8:],))
        db.commit()
    saved = load(path)
    assert [o.meta.name for o in saved.objects] == ["default", "kube-system"]
    assert [d["metadata"]["name"] for d in saved.documents] == ["web"] and saved.stale


@pytest.mark.parametrize(("forged", "problem"), [
    (pickle.dumps(contextlib.nullcontext()), "bad marshal data (unknown type code)"),
    (marshal.dumps(compile("print(1)", "forged", "exec")), "cannot unpack non-iterable code object"),
    (marshal.dumps(("web", "default")), "not enough values to unpack (expected 10, got 2)"),
])
def test_a_typed_object_that_is_no_registry_object_is_refused(tmp_path, forged, problem):
    """A typed row that does not decode as a typed object of its kind (a pickle, a code
    object, a tuple of the wrong shape) is refused, naming the row; nothing of it runs."""
    path = tmp_path / "registry.sqlite3"
    _journal_of(path, _shop())
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE typed SET object = ? WHERE name = 'web'", (object_format() + forged,))
        db.commit()
    with pytest.raises(StorageError) as caught:
        load(path)
    assert str(caught.value) == f"{path}: Service default/web: not a typed Service of this kdns ({problem})"
