"""The ready-reply cache under API writes: never a reply a commit changed, and no more
dropped than the commit can change (docs/architecture.md, "The reply-reuse contract").

A real kdns on loopback, written to through its HTTP API as kubectl and the kubelet do,
asked with dnspython. Each question is asked twice: as a stub asks it (EDNS, no options:
the fast path answers it when it holds a reply) and with an EDNS cookie, which the fast
path never keeps or answers (kdns/wire/fastpath.py), so that answer is made fresh from
the registry. The two must agree after every write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.e2e.kubeapi import Client
from tests.e2e.test_dig import DIG, dig

Z = "cluster.local."
TIMEOUT = 3.0

CLUSTER = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {type: ExternalName, externalName: web.shop.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: np, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.96.0.30
  selector: {app: web}
  ports: [{name: http, port: 80, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: other}
spec:
  clusterIP: 10.96.0.20
  selector: {app: api}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Node
metadata: {name: node-a}
status: {addresses: [{type: InternalIP, address: 10.1.0.1}]}
"""


def _pod(name: str, namespace: str, ip: str, app: str, *, hostname: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "app:1"}]}
    if hostname:
        spec.update(hostname=hostname, subdomain=app)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        "spec": spec,
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


PODS = [
    _pod("web-1", "shop", "10.244.0.1", "web"),
    _pod("web-2", "shop", "10.244.0.2", "web"),
    _pod("db-1", "shop", "10.244.0.5", "db", hostname="db-1"),
    _pod("api-1", "other", "10.244.1.1", "api"),
]

# Names of every class: Services and below them, positive and negative; ExternalName;
# namespaces; pod names; nodes and the NodePort tree; PTR and partial reverse names;
# search-path misses of an outside name (ndots:5); names that never exist; the apex.
QUESTIONS = [
    *((f"{name}.shop.svc.{Z}", qtype) for name in ("web", "db", "ext", "np", "new", "nope") for qtype in ("A", "SRV")),
    (f"_http._tcp.web.shop.svc.{Z}", "SRV"),
    (f"_pg._tcp.db.shop.svc.{Z}", "SRV"),
    (f"db-1.db.shop.svc.{Z}", "A"),
    (f"10-244-0-1.web.shop.svc.{Z}", "A"),
    (f"api.other.svc.{Z}", "A"),
    (f"nope.other.svc.{Z}", "A"),
    (f"shop.svc.{Z}", "A"),
    (f"ghost.svc.{Z}", "A"),
    (f"x.ghost.svc.{Z}", "A"),
    (f"10-244-0-1.shop.pod.{Z}", "A"),
    (f"10-244-0-9.shop.pod.{Z}", "A"),
    (f"10-244-1-1.other.pod.{Z}", "A"),
    (f"node-a.node.{Z}", "A"),
    (f"node-z.node.{Z}", "A"),
    (f"_http._tcp.np.shop.nodeport.{Z}", "SRV"),
    ("1.0.244.10.in-addr.arpa.", "PTR"),
    ("2.0.244.10.in-addr.arpa.", "PTR"),
    ("9.0.244.10.in-addr.arpa.", "PTR"),
    ("10.0.96.10.in-addr.arpa.", "PTR"),
    ("50.0.96.10.in-addr.arpa.", "PTR"),
    ("0.244.10.in-addr.arpa.", "PTR"),
    ("0.9.10.in-addr.arpa.", "PTR"),
    *((f"www.example.com.{suffix}", "A") for suffix in (f"shop.svc.{Z}", f"svc.{Z}", Z)),
    *((f"example.com.{suffix}", "AAAA") for suffix in (f"other.svc.{Z}", f"svc.{Z}", Z)),
    (f"svc.{Z}", "A"),
    (f"dns-version.{Z}", "TXT"),
    (Z, "SOA"),
    (Z, "NS"),
    (Z, "A"),
    ("in-addr.arpa.", "SOA"),
]

# The questions a readiness flip of web-1 cannot change: other Services and their names,
# web's own names and what chases them (a ClusterIP Service: they show its cluster IP, not
# its endpoints), negatives in other namespaces, pods, nodes, other addresses' PTR,
# search-path misses, the apex SOA (sent with the new serial).
UNRELATED = [
    (f"web.shop.svc.{Z}", "A"),
    (f"web.shop.svc.{Z}", "SRV"),
    (f"_http._tcp.web.shop.svc.{Z}", "SRV"),
    (f"ext.shop.svc.{Z}", "A"),
    (Z, "SOA"),
    (f"db.shop.svc.{Z}", "A"),
    (f"_pg._tcp.db.shop.svc.{Z}", "SRV"),
    (f"nope.shop.svc.{Z}", "A"),
    (f"api.other.svc.{Z}", "A"),
    (f"nope.other.svc.{Z}", "A"),
    (f"x.ghost.svc.{Z}", "A"),
    (f"10-244-0-1.shop.pod.{Z}", "A"),
    (f"node-a.node.{Z}", "A"),
    ("2.0.244.10.in-addr.arpa.", "PTR"),
    ("10.0.96.10.in-addr.arpa.", "PTR"),
    *((f"www.example.com.{suffix}", "A") for suffix in (f"shop.svc.{Z}", f"svc.{Z}", Z)),
    *((f"example.com.{suffix}", "AAAA") for suffix in (f"other.svc.{Z}", f"svc.{Z}", Z)),
]
# What it changes: web-1's endpoint name and address PTR.
FLIPPED = [
    (f"10-244-0-1.web.shop.svc.{Z}", "A"),
    ("1.0.244.10.in-addr.arpa.", "PTR"),
]


def _ask(server: Any, name: str, qtype: str, *, fresh: bool) -> dns.message.Message:
    options = [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"kdnstest")] if fresh else []
    query = dns.message.make_query(name, qtype, use_edns=0, options=options)
    return dns.query.udp(query, server.address, port=server.port, timeout=TIMEOUT)


def _sections(reply: dns.message.Message) -> tuple[Any, ...]:
    return (
        reply.rcode(),
        reply.flags,
        sorted(rrset.to_text() for rrset in reply.answer),
        sorted(rrset.to_text() for rrset in reply.authority),
        sorted(rrset.to_text() for rrset in reply.additional),
        reply.options,
    )


def _agree(server: Any, step: str) -> None:
    """Every question, as asked by a stub (maybe from a ready reply) and fresh: the same reply."""
    for name, qtype in QUESTIONS:
        kept = _ask(server, name, qtype, fresh=False)
        made = _ask(server, name, qtype, fresh=True)
        kept_options = [o for o in kept.options if o.otype != dns.edns.OptionType.COOKIE]
        made_options = [o for o in made.options if o.otype != dns.edns.OptionType.COOKIE]
        assert (_sections(kept)[:5], kept_options) == (_sections(made)[:5], made_options), (
            f"after {step}: {name} {qtype}:\n{kept}\n---- fresh:\n{made}"
        )


@pytest.fixture
def shop(kdns_server: Callable[..., Any], tmp_path: Path) -> tuple[Any, Client]:
    server = kdns_server(CLUSTER, zones_dir=None, pods="verified")
    client = Client(server.api_url, tmp_path / "home")
    for pod in PODS:
        namespace = pod["metadata"]["namespace"]
        assert client.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod).status == 201
    return server, client


def _ready(client: Client, name: str, ready: bool) -> None:
    """The kubelet's readiness report: a merge PATCH of the pod's status."""
    body = {"status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    reply = client.request(
        "PATCH", f"/api/v1/namespaces/shop/pods/{name}/status", body, content_type="application/merge-patch+json"
    )
    assert reply.status == 200, reply.body


def _writes(client: Client) -> Iterator[tuple[str, Callable[[], int]]]:
    """Every kind of write, each with the status it must get."""
    merge = "application/merge-patch+json"
    new = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "new", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80}]},
    }
    node = {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-z"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.1.0.26"}]},
    }
    ghost = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ghost"}}
    pod9 = _pod("p9", "shop", "10.244.0.9", "web")
    yield "readiness flip of web-1", lambda: _status(_ready, client, "web-1", False)
    yield "readiness back", lambda: _status(_ready, client, "web-1", True)
    yield "service create", lambda: client.request("POST", "/api/v1/namespaces/shop/services", new).status
    yield "service delete", lambda: client.request("DELETE", "/api/v1/namespaces/shop/services/new").status
    yield "pod create", lambda: client.request("POST", "/api/v1/namespaces/shop/pods", pod9).status
    yield "pod delete", lambda: client.request("DELETE", "/api/v1/namespaces/shop/pods/p9").status
    yield "node create", lambda: client.request("POST", "/api/v1/nodes", node).status
    yield "node change", lambda: client.request(
        "PATCH", "/api/v1/nodes/node-a", {"status": {"addresses": [{"type": "InternalIP", "address": "10.1.0.9"}]}},
        content_type=merge,
    ).status
    yield "namespace create", lambda: client.request("POST", "/api/v1/namespaces", ghost).status
    yield "namespace delete", lambda: client.request("DELETE", "/api/v1/namespaces/ghost").status
    yield "ExternalName change", lambda: client.request(
        "PATCH", "/api/v1/namespaces/shop/services/ext", {"spec": {"externalName": "api.other.svc.cluster.local"}},
        content_type=merge,
    ).status


def _status(write: Callable[..., None], *args: Any) -> int:
    write(*args)
    return 200


def test_no_write_leaves_a_stale_ready_reply(shop: tuple[Any, Client]) -> None:
    """After each kind of write through the API, every question of every class gets from
    the fast path exactly the reply kdns makes fresh."""
    server, client = shop
    _agree(server, "start")
    for step, write in _writes(client):
        assert write() in (200, 201), step
        _agree(server, step)


def test_a_readiness_flip_keeps_unrelated_ready_replies(shop: tuple[Any, Client]) -> None:
    """A readiness flip of one Service's pod sends only what it can change down the slow
    path: the cache's miss counter does not move for other Services, negatives in other
    namespaces, pods, nodes, other PTR names or search-path misses of outside names."""
    server, client = shop
    cache = server.app.dns.udp.cache
    for _ in range(2):  # the second round is all ready replies
        for name, qtype in UNRELATED + FLIPPED:
            _ask(server, name, qtype, fresh=False)
    before = cache.misses
    for name, qtype in UNRELATED + FLIPPED:
        _ask(server, name, qtype, fresh=False)
    assert cache.misses == before
    _ready(client, "web-1", False)
    for name, qtype in UNRELATED:
        _ask(server, name, qtype, fresh=False)
    assert cache.misses == before, "a reply the flip cannot change was dropped"
    for name, qtype in FLIPPED:
        _ask(server, name, qtype, fresh=False)
    assert cache.misses == before + len(FLIPPED)


@pytest.mark.skipif(DIG is None, reason="`dig` is not installed (Debian: apt-get install dnsutils)")
def test_a_kept_negative_shows_the_serial_of_the_last_write(shop: tuple[Any, Client], tmp_path: Path) -> None:
    """A write that cannot change a negative answer leaves it ready, over UDP and TCP (no
    miss), and it is sent with the zone's new serial: the one `dig SOA` shows (R19)."""
    server, client = shop
    caches = (server.app.dns.udp.cache, server.app.dns.tcp.cache)
    negative = f"nope.shop.svc.{Z}"
    transports = ((), ("+tcp",))

    def authority(*transport: str) -> list[str]:
        # Without its cookie, dig's question is one the fast path keeps and answers.
        out = dig(server, "+nocookie", *transport, negative, home=tmp_path)
        assert out.status == "NXDOMAIN", out.text
        return out.section("AUTHORITY")

    for transport in transports:
        authority(*transport)  # now ready
    old = dig(server, "+nocookie", "SOA", Z, home=tmp_path).section("ANSWER")
    assert [authority(*transport) for transport in transports] == [old, old]
    _ready(client, "web-1", False)
    soa = dig(server, "+nocookie", "SOA", Z, home=tmp_path).section("ANSWER")  # (kept, the new serial written in)
    assert soa != old, "the write moved the serial"
    misses = [cache.misses for cache in caches]
    assert [authority(*transport) for transport in transports] == [soa, soa]
    assert [cache.misses for cache in caches] == misses, "the negative was made again"
