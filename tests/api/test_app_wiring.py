"""The API inside `App` (kdns.app): served after DNS, journaled under data_dir, metrics wired, stopped cleanly."""

from __future__ import annotations

import contextlib
import gc
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kdns.app import BindError
from kdns.registry.sqlite import StorageError, load
from kdns.runtime import SERVING_THRESHOLDS
from tests.e2e.kubeapi import Client

SERVICES = "/api/v1/namespaces/default/services"
WEB = {"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80}]}}


def test_a_write_through_the_api_is_answered_journaled_and_restored(kdns_server: Callable[..., Any], tmp_path: Path):
    """A Service created through the App's API is answered by DNS, counted in metrics, and comes back in the next App on the same data_dir."""
    data = tmp_path / "data"
    first = kdns_server(data_dir=data)
    assert first.api_url == f"http://127.0.0.1:{first.api_port}" and first.api_port != 0
    client = Client(first.api_url, tmp_path / "home")
    assert client.request("GET", "/readyz").body == b"ok"
    created = client.request("POST", SERVICES, WEB).json
    reply = first.resolve("web.default.svc.cluster.local.")
    assert [rdata.address for rrset in reply.answer for rdata in rrset] == created["spec"]["clusterIPs"]
    assert 'kdns_registry_objects{kind="Service"} 1.0' in client.request("GET", "/metrics").body.decode()
    assert first.app.metrics is not None and first.app.journal.path == data / "registry.sqlite3"
    first.stop()

    second = kdns_server(data_dir=data)
    again = Client(second.api_url, tmp_path / "home").request("GET", f"{SERVICES}/web").json
    assert (again["metadata"]["uid"], again["spec"]["clusterIP"], again["spec"]["ports"][0]["nodePort"]) == (
        created["metadata"]["uid"], created["spec"]["clusterIP"], created["spec"]["ports"][0]["nodePort"])
    with pytest.raises(StorageError, match="in use by another kdns"):
        kdns_server(data_dir=data)


def test_an_api_port_in_use_stops_start_up_and_leaves_nothing_open(kdns_server: Callable[..., Any], tmp_path: Path):
    """An API port another socket holds is a BindError naming it; the DNS ports and the data directory are free again."""
    data = tmp_path / "data"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(BindError) as caught:
            kdns_server(data_dir=data, api_port=port)
    assert str(caught.value) == f"cannot serve the API on 127.0.0.1:{port}: Address already in use"
    server = kdns_server(data_dir=data, api_port=port)  # the lock was released, the port is free
    assert server.api_port == port


def test_a_journal_another_kdns_wrote_is_read_from_its_documents_then_written_again(
    kdns_server: Callable[..., Any], tmp_path: Path
):
    """Typed objects of another version (another tag) are not taken: start-up restores the
    documents, serves the same addresses, and writes the file again with its own."""
    data = tmp_path / "data"
    first = kdns_server(data_dir=data)
    created = Client(first.api_url, tmp_path / "home").request("POST", SERVICES, WEB).json
    first.stop()
    path = data / "registry.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        for rowid, typed in db.execute("SELECT rowid, object FROM typed").fetchall():
            db.execute("UPDATE typed SET object = ? WHERE rowid = ?", (bytes(8) + typed[8:], rowid))
        db.commit()
    assert load(path).stale and load(path).derived is None
    second = kdns_server(data_dir=data)
    reply = second.resolve("web.default.svc.cluster.local.")
    assert [rdata.address for rrset in reply.answer for rdata in rrset] == created["spec"]["clusterIPs"]
    second.stop()
    saved = load(path)
    assert not saved.stale and [o.meta.name for o in saved.objects if o.kind == "Service"] == ["web"]
    assert saved.derived == [], "the controller's slices are kept again (web has no selector: none)"


def test_a_serving_kdns_collects_its_oldest_generation_rarely_and_gives_the_thresholds_back(
    kdns_server: Callable[..., Any],
):
    """While kdns serves, the collector's oldest generation waits for 100 collections of the
    middle one (kdns.runtime.SERVING_THRESHOLDS); stopped, kdns puts back the thresholds it found."""
    before = gc.get_threshold()
    server = kdns_server()
    assert gc.get_threshold() == SERVING_THRESHOLDS == (before[0], before[1], 100)
    server.stop()
    assert gc.get_threshold() == before


def _pods(count: int) -> str:
    """`count` running pods p1, p2, ... at 10.244.1.1, 10.244.1.2, ... (250 to a /24), as manifests."""
    return "".join(
        f"---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p{n + 1}\n  labels:\n    app: web\n"
        f"spec:\n  containers:\n  - name: c\n    image: i\n"
        f"status:\n  phase: Running\n  podIP: 10.244.{1 + n // 250}.{1 + n % 250}\n"
        for n in range(count)
    )


def test_the_pod_documents_a_load_left_deferred_are_packed_once_kdns_serves(kdns_server: Callable[..., Any],
                                                                              tmp_path: Path):
    """A start from manifests leaves its pods' documents to pack after DNS answers
    (kdns.app.pack_deferred): they are, soon, and read the same through the API."""
    server = kdns_server(_pods(250))
    store = server.app.store
    deadline = time.monotonic() + 10
    while store.deferred and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.deferred == 0
    assert all(isinstance(pod.document, bytes) for pod in store.list("Pod"))
    client = Client(server.api_url, tmp_path / "home")
    pod = client.request("GET", "/api/v1/namespaces/default/pods/p7").json
    assert (pod["status"]["podIPs"], pod["metadata"]["generation"]) == ([{"ip": "10.244.1.7"}], 1)
    assert pod["metadata"]["annotations"]["kdns.dev/manifest-source"].endswith(".yaml")


def test_a_steady_stream_of_queries_does_not_keep_the_deferred_documents_from_being_packed(
    kdns_server: Callable[..., Any],
):
    """Packing waits for DNS to be quiet (kdns.app.LEFTOVER_QUIET), but not for ever: with
    queries answered back to back all along, every document is still packed, one chunk
    every LEFTOVER_EVERY at most, while the queries go on being answered."""
    # 3,000 pods are 15 chunks: about 0.1 s of quiet, 1.5 s under the stream, which starts
    # as soon as kdns serves, well before the packing could be done.
    server = kdns_server(_pods(3000))
    store = server.app.store
    answered = 0
    deadline = time.monotonic() + 10
    while store.deferred and time.monotonic() < deadline:
        reply = server.resolve("10-244-1-7.default.pod.cluster.local.")
        assert [rdata.address for rrset in reply.answer for rdata in rrset] == ["10.244.1.7"]
        answered += 1
    assert store.deferred == 0 and answered > 0
    assert all(isinstance(pod.document, bytes) for pod in store.list("Pod"))
