"""`kdns explain NAME [TYPE]` and `GET /debug/explain`: why an answer is what it is.

Offline (`--manifests`) for every record family, every negative answer and every reason
an endpoint is left out; online against a real kdns's API (its live registry, a static
zone, the token); and the answer explained is always the one dig gets.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.rcode
import pytest

from kdns.cli import main

Z = "cluster.local."

CLUSTER = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status:
  addresses: [{type: InternalIP, address: 10.0.0.11}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.3.3
  ports:
    - {name: http, port: 80}
---
apiVersion: v1
kind: Service
metadata: {name: np, namespace: shop}
spec:
  type: NodePort
  ports:
    - {name: http, port: 80, nodePort: 30080}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec:
  type: ExternalName
  externalName: www.example.com
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  ports:
    - {name: pg, port: 5432}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-v4
  namespace: shop
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports:
  - {name: pg, port: 5432, protocol: TCP}
endpoints:
  - addresses: [10.244.1.1]
    hostname: db-0
    conditions: {ready: true}
    targetRef: {kind: Pod, namespace: shop, name: db-0}
  - addresses: [10.244.1.2]
    conditions: {ready: true}
    targetRef: {kind: Pod, namespace: shop, name: db-1}
  - addresses: [10.244.1.3]
    hostname: db-2
    conditions: {ready: false}
    targetRef: {kind: Pod, namespace: shop, name: db-2}
  - addresses: [10.244.1.4]
    hostname: db-3
    conditions: {ready: false, terminating: true}
    targetRef: {kind: Pod, namespace: shop, name: db-3}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-v6
  namespace: shop
  labels: {kubernetes.io/service-name: db}
addressType: IPv6
ports:
  - {name: pg, port: 5432, protocol: TCP}
endpoints:
  - addresses: ["fd00:244::5"]
    hostname: db-5
    conditions: {ready: true}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-fqdn
  namespace: shop
  labels: {kubernetes.io/service-name: db}
addressType: FQDN
ports:
  - {name: pg, port: 5432, protocol: TCP}
endpoints:
  - addresses: [db.example.com]
    conditions: {ready: true}
---
apiVersion: v1
kind: Service
metadata: {name: idle, namespace: shop}
spec:
  clusterIP: None
  ports:
    - {name: pg, port: 5432}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: idle-1
  namespace: shop
  labels: {kubernetes.io/service-name: idle}
addressType: IPv4
ports:
  - {name: pg, port: 5432, protocol: TCP}
endpoints:
  - addresses: [10.244.9.9]
    conditions: {ready: false}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop}
spec:
  containers: [{name: app, image: nginx}]
status:
  phase: Running
  podIP: 10.244.2.1
  podIPs: [{ip: 10.244.2.1}]
"""

ZONE = """\
$ORIGIN std.test.
$TTL 300
@ IN SOA ns.std.test. hostmaster.std.test. 7 7200 1800 86400 60
@ IN NS ns
ns IN A 192.0.2.1
www IN A 192.0.2.2
"""


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER)
    return path


@pytest.fixture
def zones(tmp_path: Path) -> Path:
    directory = tmp_path / "zones"
    directory.mkdir()
    (directory / "std.test.zone").write_text(ZONE)
    return directory


def offline(capsys: pytest.CaptureFixture[str], manifests: Path, *args: str) -> dict[str, Any]:
    """`kdns explain ARGS --manifests M --json`, in this process: the explanation's JSON."""
    code = main(["explain", *args, "--manifests", str(manifests), "--json"], environ={})
    out, err = capsys.readouterr()
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def left_out(data: dict[str, Any]) -> dict[str, str]:
    return {e["address"]: e["reason"] for e in data["endpoints"] if e["reason"] is not None}


def used(data: dict[str, Any]) -> list[str]:
    return sorted(e["address"] for e in data["endpoints"] if e["reason"] is None)


# --- record families ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "qtype", "answer", "rule"),
    [
        (f"web.shop.svc.{Z}", "A", [f"web.shop.svc.{Z} 5 IN A 10.96.3.3"], "spec §2.3.1"),
        (
            f"_http._tcp.web.shop.svc.{Z}",
            "SRV",
            [f"_http._tcp.web.shop.svc.{Z} 5 IN SRV 0 100 80 web.shop.svc.{Z}"],
            "R11 (spec §2.3.2, §2.4.2): SRV of the named port 'http'/tcp",
        ),
        (f"web.shop.svc.{Z}", "SRV", [f"web.shop.svc.{Z} 5 IN SRV 0 100 80 web.shop.svc.{Z}"], "bare-name SRV"),
        (f"ext.shop.svc.{Z}", "A", [f"ext.shop.svc.{Z} 5 IN CNAME www.example.com."], "spec §2.5"),
        ("3.3.96.10.in-addr.arpa.", "PTR", [f"3.3.96.10.in-addr.arpa. 5 IN PTR web.shop.svc.{Z}"], "spec §2.3.3"),
        ("1.1.244.10.in-addr.arpa.", "PTR", [f"1.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.shop.svc.{Z}"], "spec §2.4.3"),
        (f"10-244-2-1.shop.pod.{Z}", "A", [f"10-244-2-1.shop.pod.{Z} 5 IN A 10.244.2.1"], "--pods verified: a running pod"),
        (f"node-1.node.{Z}", "A", [f"node-1.node.{Z} 5 IN A 10.0.0.11"], "kdns extension: a Node's InternalIP"),
        (
            f"_http._tcp.np.shop.nodeport.{Z}",
            "SRV",
            [f"_http._tcp.np.shop.nodeport.{Z} 5 IN SRV 0 100 30080 node-1.node.{Z}"],
            "kdns extension nodeport",
        ),
        (f"dns-version.{Z}", "TXT", [f'dns-version.{Z} 28800 IN TXT "1.1.0"'], "spec §2.2"),
        (Z, "NS", [f"{Z} 5 IN NS ns.dns.{Z}"], "the zone apex"),
    ],
)
def test_each_record_family(
    capsys: pytest.CaptureFixture[str], manifests: Path, name: str, qtype: str, answer: list[str], rule: str
) -> None:
    """Each family of record: the answer, the rule that made it, from the cluster."""
    data = offline(capsys, manifests, name, qtype)
    assert (data["rcode"], data["source"], data["answer"]) == ("NOERROR", "cluster", answer)
    assert rule in data["rule"], data["rule"]
    assert data["ttl"] == int(answer[0].split()[1])


def test_headless_a_lists_every_endpoint_and_why_it_is_left_out(
    capsys: pytest.CaptureFixture[str], manifests: Path
) -> None:
    """A headless Service's A records: the ready IPv4 endpoints, and for the rest the reason
    (not ready, terminating, the other family, an FQDN slice); the objects it came from."""
    data = offline(capsys, manifests, f"db.shop.svc.{Z}", "A")
    assert data["answer"] == [f"db.shop.svc.{Z} 5 IN A 10.244.1.1", f"db.shop.svc.{Z} 5 IN A 10.244.1.2"]
    assert "spec §2.4.1" in data["rule"]
    assert used(data) == ["10.244.1.1", "10.244.1.2"]
    assert left_out(data) == {
        "10.244.1.3": "not ready",
        "10.244.1.4": "terminating",
        "fd00:244::5": "wrong address family: IPv6",
        "db.example.com": "FQDN slice: no address to publish",
    }
    assert data["objects"] == [
        "Service shop/db (type ClusterIP, headless)",
        "EndpointSlice shop/db-fqdn",
        "EndpointSlice shop/db-v4",
        "EndpointSlice shop/db-v6",
        "Pod shop/db-0",
        "Pod shop/db-1",
        "Pod shop/db-2",
        "Pod shop/db-3",
    ]


def test_headless_aaaa_leaves_out_the_ipv4_endpoints(capsys: pytest.CaptureFixture[str], manifests: Path) -> None:
    data = offline(capsys, manifests, f"db.shop.svc.{Z}", "AAAA")
    assert data["answer"] == [f"db.shop.svc.{Z} 5 IN AAAA fd00:244::5"]
    assert used(data) == ["fd00:244::5"]
    assert left_out(data)["10.244.1.1"] == "wrong address family: IPv4"


def test_endpoint_name_without_hostname(capsys: pytest.CaptureFixture[str], manifests: Path) -> None:
    """`db-1.db...`: pod db-1's endpoint has no hostname, so it is named by its address:
    NXDOMAIN, and the explanation says which name it has instead."""
    data = offline(capsys, manifests, f"db-1.db.shop.svc.{Z}", "A")
    assert data["rcode"] == "NXDOMAIN"
    assert "no ready endpoint is named 'db-1'" in data["rule"]
    assert left_out(data)["10.244.1.2"] == "no hostname: named by its address, 10-244-1-2"
    assert left_out(data)["10.244.1.1"] == "another name: db-0"
    found = offline(capsys, manifests, f"10-244-1-2.db.shop.svc.{Z}", "A")
    assert found["answer"] == [f"10-244-1-2.db.shop.svc.{Z} 5 IN A 10.244.1.2"]
    assert used(found) == ["10.244.1.2"]


def test_static_zone_and_its_file(capsys: pytest.CaptureFixture[str], manifests: Path, zones: Path) -> None:
    data = offline(capsys, manifests, "www.std.test", "A", "--zones-dir", str(zones))
    assert (data["source"], data["answer"], data["ttl"]) == ("zone", ["www.std.test. 300 IN A 192.0.2.2"], 300)
    assert f"static zone std.test. ({zones / 'std.test.zone'}, serial 7)" in data["rule"]


# --- negative answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "rule"),
    [
        (f"nosuch.shop.svc.{Z}", "A", "NXDOMAIN", "no Service 'nosuch' in namespace 'shop'"),
        (f"web.nosuch.svc.{Z}", "A", "NXDOMAIN", "namespace 'nosuch' does not exist"),
        (f"idle.shop.svc.{Z}", "A", "NXDOMAIN", "with no ready endpoint it has no name"),
        (f"_nope._tcp.web.shop.svc.{Z}", "SRV", "NXDOMAIN", "the Service has no such named port"),
        (f"a.b.c.d.e.svc.{Z}", "A", "NXDOMAIN", "no name of this shape can exist"),
        ("5.in-addr.arpa.", "PTR", "NXDOMAIN", "no known address below it"),
        ("9.9.9.9.in-addr.arpa.", "PTR", "NXDOMAIN", "no Service has this cluster IP"),
        (f"10-9-9-9.shop.pod.{Z}", "A", "NXDOMAIN", "no running pod in shop has the address 10.9.9.9"),
        (f"web.shop.svc.{Z}", "AAAA", "NOERROR", "none of this family (NODATA)"),
        ("10.in-addr.arpa.", "PTR", "NOERROR", "known addresses below it: empty non-terminal, NODATA"),
        (f"svc.{Z}", "A", "NOERROR", "empty non-terminal svc.<zone>"),
        (f"dns-version.{Z}", "A", "NOERROR", "NODATA for other types"),
    ],
)
def test_each_negative_answer(
    capsys: pytest.CaptureFixture[str], manifests: Path, name: str, qtype: str, rcode: str, rule: str
) -> None:
    """Each negative answer: NXDOMAIN or NODATA, the rule, and the negative TTL (RFC 2308 §5: the SOA's)."""
    data = offline(capsys, manifests, name, qtype)
    assert (data["rcode"], data["answer"]) == (rcode, [])
    assert rule in data["rule"], data["rule"]
    assert data["ttl"] == 5 and data["authority"][0].split()[3] == "SOA"


def test_missing_namespace_carries_its_extended_error(capsys: pytest.CaptureFixture[str], manifests: Path) -> None:
    data = offline(capsys, manifests, f"web.nosuch.svc.{Z}", "A")
    assert data["errors"] == ["0 Other: namespace 'nosuch' does not exist"]


def test_pods_disabled(capsys: pytest.CaptureFixture[str], manifests: Path) -> None:
    data = offline(capsys, manifests, f"10-244-2-1.shop.pod.{Z}", "A", "--pods", "disabled")
    assert data["rcode"] == "NXDOMAIN" and "--pods disabled" in data["rule"]


def test_outside_name_offline_is_refused_and_says_why(capsys: pytest.CaptureFixture[str], manifests: Path) -> None:
    """Offline there is no forwarder: an outside name is REFUSED, Not Authoritative."""
    data = offline(capsys, manifests, "www.example.org", "A")
    assert (data["rcode"], data["source"]) == ("REFUSED", "server")
    assert "forwarding is off" in data["rule"]


def test_text_output(capsys: pytest.CaptureFixture[str], manifests: Path) -> None:
    """Without --json, the explanation is text for people."""
    assert main(["explain", f"db.shop.svc.{Z}", "--manifests", str(manifests)], environ={}) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [
        f"db.shop.svc.{Z} A: NOERROR (authoritative), from the cluster registry",
        "rule: R8, R9 (spec §2.4.1): a headless Service answers one record per ready endpoint",
        "ttl: 5 s",
    ]
    assert "  10.244.1.3 db-2 (pod db-2) in shop/db-v4: not ready" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["web.shop.svc.cluster.local", "NOPE"], "kdns explain: error: unknown record type 'NOPE'"),
        (["bad..name"], "kdns explain: error: 'bad..name': not a domain name"),
    ],
)
def test_bad_input_is_exit_2(capsys: pytest.CaptureFixture[str], manifests: Path, args: list[str], message: str) -> None:
    assert main(["explain", *args, "--manifests", str(manifests)], environ={}) == 2
    assert capsys.readouterr().err.startswith(message)


def test_unreadable_manifests_are_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["explain", "x.cluster.local", "--manifests", str(tmp_path / "missing.yaml")], environ={}) == 1
    assert "no such file or directory" in capsys.readouterr().err


# --- online: the live registry of a running kdns ------------------------------------------------


def test_live_registry_through_the_api(
    kdns_server: Callable[..., Any], capsys: pytest.CaptureFixture[str], zones: Path
) -> None:
    """`kdns explain --server URL` reads the running kdns: its answer is dig's, and a change
    to the registry shows in the next explanation."""
    kdns = kdns_server(CLUSTER, zones_dir=zones, api_port=0)
    dig = kdns.resolve(f"db.shop.svc.{Z}")
    assert main(["explain", f"db.shop.svc.{Z}", "--server", kdns.api_url, "--json"], environ={}) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["answer"] == [
        f"db.shop.svc.{Z} 5 IN A 10.244.1.1",
        f"db.shop.svc.{Z} 5 IN A 10.244.1.2",
    ] and len(dig.answer[0]) == 2

    def drop_v4(store: Any) -> None:
        with store.transaction() as txn:
            txn.delete("EndpointSlice", "shop", "db-v4")

    kdns.write(drop_v4)
    nodata = kdns.resolve(f"db.shop.svc.{Z}")  # only the IPv6 endpoint is left
    assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])
    assert main(["explain", f"db.shop.svc.{Z}", "AAAA", "--server", kdns.api_url, "--json"], environ={}) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["answer"] == [f"db.shop.svc.{Z} 5 IN AAAA fd00:244::5"]
    assert main(["explain", "www.std.test", "--server", kdns.api_url], environ={}) == 0
    assert "from a static zone" in capsys.readouterr().out


def test_api_needs_the_token_and_checks_its_input(kdns_process: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    """With --api-token (required off loopback) /debug/explain is behind it like the rest of
    the API; a missing name or a bad type is 400 with a Status."""
    kdns = kdns_process("--api-token", "s3cret", manifests=[CLUSTER])
    url = f"{kdns.api_url}/debug/explain?name=web.shop.svc.{Z}&type=A"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 401
    request = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response)["answer"] == [f"web.shop.svc.{Z} 5 IN A 10.96.3.3"]
    for query, message in (("type=A", "the name parameter is required"), ("name=x.&type=BOGUS", "unknown record type 'BOGUS'")):
        bad = urllib.request.Request(f"{kdns.api_url}/debug/explain?{query}", headers={"Authorization": "Bearer s3cret"})
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(bad, timeout=5)
        assert failed.value.code == 400 and message in json.load(failed.value)["message"]
    # The CLI with the token (here through its environment twin), and without it.
    assert main(["explain", f"web.shop.svc.{Z}", "--server", kdns.api_url], environ={"KDNS_API_TOKEN": "s3cret"}) == 0
    assert "spec §2.3.1" in capsys.readouterr().out
    assert main(["explain", f"web.shop.svc.{Z}", "--server", kdns.api_url], environ={}) == 1
    assert "401" in capsys.readouterr().err


def test_forwarded_answers_say_upstream_then_cache(kdns_server: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    """An outside name is asked upstream the first time and read from the cache after."""
    from tests.upstream import UpstreamServer

    with UpstreamServer(host="127.0.0.64") as upstream:
        kdns = kdns_server(CLUSTER, zones_dir=None, upstreams=(upstream.where,))
        sources = []
        for _ in range(2):
            assert main(["explain", "www.example.test", "--server", kdns.api_url, "--json"], environ={}) == 0
            data = json.loads(capsys.readouterr().out)
            [record] = data["answer"]
            assert record.startswith("www.example.test. ") and record.endswith(" IN A 192.0.2.1")
            sources.append((data["source"], data["rule"]))
    assert sources[0] == ("upstream", "R32: forwarded: a name outside the served zones, asked upstream (--upstream)")
    assert sources[1] == ("cache", "R33: forwarded: a name outside the served zones, answered from the forwarding cache")



def test_explained_as_another_client(kdns_server: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    """`--client IP`: the answer that client gets; outside --allow-recursion an outside name
    is REFUSED, and the explanation says why (EDE 18, RFC 8914)."""
    import ipaddress

    from tests.upstream import UpstreamServer

    with UpstreamServer(host="127.0.0.66") as upstream:
        kdns = kdns_server(
            CLUSTER,
            zones_dir=None,
            upstreams=(upstream.where,),
            allow_recursion=(ipaddress.ip_network("127.0.0.1/32"),),
        )
        argv = ["explain", "www.example.test", "--server", kdns.api_url, "--json"]
        assert main([*argv, "--client", "192.0.2.9"], environ={}) == 0
        stranger = json.loads(capsys.readouterr().out)
        assert main(argv, environ={}) == 0
        local = json.loads(capsys.readouterr().out)
    assert (stranger["rcode"], stranger["source"]) == ("REFUSED", "server")
    assert stranger["errors"] == ["18 Prohibited: recursion is for the clients of --allow-recursion"]
    assert stranger["rule"] == "R29: not answered from data: recursion is for the clients of --allow-recursion"
    assert (local["rcode"], local["source"]) == ("NOERROR", "upstream")
    assert main([*argv, "--client", "nope"], environ={}) == 2
    assert "client 'nope': not an IP address" in capsys.readouterr().err
