"""Big answers: a headless service of 200 ready pods does not fit in UDP, so kdns sets TC
and a client's retry over TCP gets every record (RFC 1035 §4.2.1, RFC 6891, RFC 7766)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.e2e.dnscheck import TIMEOUT

PODS = 200
NAME = "big.shop.svc.cluster.local."
SRV_NAME = "_http._tcp." + NAME


MID_PODS = 7  # 7 SRV records (uncompressed targets, RFC 2782) fit in 512 bytes; their addresses do not


def big_cluster(pods: int = PODS) -> str:
    """Namespace shop, headless services `big` (every pod) and `mid` (the first MID_PODS)
    with a named port, and `pods` ready pods."""
    docs = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        ("apiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: shop}\n"
         "spec:\n  clusterIP: None\n  selector: {app: big}\n  ports: [{name: http, port: 8080}]\n"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: mid, namespace: shop}\n"
         "spec:\n  clusterIP: None\n  selector: {mid: 'yes'}\n  ports: [{name: http, port: 8080}]\n"),
    ]
    for n in range(pods):
        mid = ", mid: 'yes'" if n < MID_PODS else ""
        docs.append(
            f"apiVersion: v1\nkind: Pod\nmetadata: {{name: big-{n}, namespace: shop, labels: {{app: big{mid}}}}}\n"
            "spec: {containers: [{name: app, image: big}]}\n"
            f"status: {{phase: Running, podIP: 10.244.{1 + n // 250}.{1 + n % 250}, "
            "conditions: [{type: Ready, status: 'True'}]}\n"
        )
    return "---\n".join(docs)


ADDRESSES = sorted(f"10.244.{1 + n // 250}.{1 + n % 250}" for n in range(PODS))


@pytest.fixture
def big(kdns_server: Callable[..., Any]) -> Any:
    """kdns in this process, serving the 200-pod cluster."""
    return kdns_server(big_cluster())


@pytest.mark.parametrize("qtype", ["A", "SRV"])
@pytest.mark.parametrize(("use_edns", "payload"), [(False, None), (0, 1232)], ids=["no-edns-512", "edns-1232"])
def test_udp_is_truncated(big: Any, qtype: str, use_edns: Any, payload: int | None) -> None:
    """Over UDP, without EDNS (512 bytes) and with EDNS 1232, the answer comes back with TC=1 and no partial RRset."""
    query = dns.message.make_query(SRV_NAME if qtype == "SRV" else NAME, qtype, use_edns=use_edns, payload=payload)
    reply = dns.query.udp(query, big.address, port=big.port, timeout=TIMEOUT, raise_on_truncation=False)
    assert reply.flags & dns.flags.TC
    assert reply.flags & dns.flags.AA
    assert not reply.answer and not reply.authority and not reply.additional
    assert (reply.edns >= 0) == (use_edns is not False), "an OPT only when the query had one"


def test_tcp_fallback_gets_every_address(big: Any) -> None:
    """dnspython's udp_with_fallback sees TC and gets all 200 A records over TCP."""
    query = dns.message.make_query(NAME, "A")
    reply, used_tcp = dns.query.udp_with_fallback(query, big.address, port=big.port, timeout=TIMEOUT)
    assert used_tcp
    assert not reply.flags & dns.flags.TC
    [rrset] = reply.answer
    assert rrset.rdtype == dns.rdatatype.A and rrset.ttl == 5
    assert sorted(rdata.address for rdata in rrset) == ADDRESSES


def test_tcp_fallback_gets_every_srv(big: Any) -> None:
    """Over the TCP fallback the named port has one SRV per pod, with every target's address in additional."""
    query = dns.message.make_query(SRV_NAME, "SRV")
    reply, used_tcp = dns.query.udp_with_fallback(query, big.address, port=big.port, timeout=TIMEOUT)
    assert used_tcp
    [rrset] = reply.answer
    targets = {rdata.target.to_text(): (rdata.priority, rdata.weight, rdata.port) for rdata in rrset}
    expected = {f"{ip.replace('.', '-')}.{NAME}" for ip in ADDRESSES}
    assert set(targets) == expected
    assert set(targets.values()) == {(0, 1, 8080)}  # 100 // 200 rounds up to the minimum weight 1
    glue = {rrset.name.to_text(): [rdata.address for rdata in rrset] for rrset in reply.additional}
    assert glue == {target: [target.split(".")[0].replace("-", ".")] for target in expected}


def test_additional_that_does_not_fit_is_left_out_without_tc(big: Any) -> None:
    """Without EDNS, SRV records that fit in 512 bytes come whole and without TC, minus the additional addresses."""
    name = "_http._tcp.mid.shop.svc.cluster.local."
    query = dns.message.make_query(name, "SRV")
    reply = dns.query.udp(query, big.address, port=big.port, timeout=TIMEOUT, raise_on_truncation=True)
    assert not reply.flags & dns.flags.TC
    [rrset] = reply.answer
    assert len(rrset) == MID_PODS
    assert not reply.additional
    assert len(reply.to_wire()) <= 512
