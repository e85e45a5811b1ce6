"""kdns as the pods' resolver: real `kdns serve` processes forwarding to real upstreams.

The upstreams are started by the tests on their own 127.0.0.x addresses: the counting
dnspython server of tests/upstream.py, Debian's knotd, and another kdns serving static
zones. Clients send from chosen loopback addresses where the source matters (the
recursion ACL, autopath's pod by IP). Every kdns that forwards sends its upstreams one
HINFO loop probe at start (`asked` leaves it out).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.e2e.dnscheck import lines
from tests.upstream import KnotServer, UpstreamServer, free_port, knotd_path

REPO = Path(__file__).resolve().parent.parent.parent
Z = "cluster.local."
TIMEOUT = 4.0
WAIT = 5.0
WWW = ["www.example.test. 300 IN A 192.0.2.1"]
UPSTREAM_SOA = ["example.test. 60 IN SOA ns1.example.test. hostmaster.example.test. 2024010101 3600 600 86400 60"]
CLUSTER = """\
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec: {type: ExternalName, externalName: www.example.test}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  containers: [{name: c, image: busybox}]
status:
  phase: Running
  podIP: 127.0.0.61
  podIPs: [{ip: 127.0.0.61}]
"""
CORP = """\
$TTL 300
@     IN SOA ns1 hostmaster {serial} 3600 600 86400 60
@     IN NS  ns1
ns1   IN A   192.0.2.53
www   IN A   192.0.2.{last}
"""
REVERSE = """\
$TTL 300
@    IN SOA ns1.example.test. hostmaster.example.test. 9 3600 600 86400 60
@    IN NS  ns1.example.test.
1    IN PTR www.example.test.
"""


def ask(
    kdns: Any, qname: str, qtype: str = "A", *, tcp: bool = False, source: str | None = None, **make: Any
) -> dns.message.Message:
    """One question to `kdns` with dnspython, optionally from a chosen source address."""
    query = dns.message.make_query(qname, qtype, **make)
    if tcp:
        return dns.query.tcp(query, kdns.address, port=kdns.port, timeout=TIMEOUT, source=source)
    return dns.query.udp(query, kdns.address, port=kdns.port, timeout=TIMEOUT, source=source)


def asked(upstream: UpstreamServer) -> list[tuple[str, str]]:
    """The questions `upstream` received, in order, without kdns's loop probe."""
    return [(r.qname, r.qtype) for r in upstream.received if r.qtype != "HINFO"]


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Until `predicate()` holds, at most `timeout` seconds in 0.02 s steps."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        time.sleep(0.02)
    assert predicate(), f"timed out waiting for {what}"


def run_kdns(*args: str) -> subprocess.CompletedProcess[str]:
    """`kdns serve ARGS` expected to exit by itself (a start-up failure)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "kdns", "serve", "--dns-address", "127.0.0.1", "--ephemeral", *args]
    return subprocess.run(
        argv, check=False, cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20
    )


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer(host="127.0.0.41") as server:
        yield server


@pytest.fixture
def resolver(kdns_process: Callable[..., Any], upstream: UpstreamServer, tmp_path: Path) -> Callable[..., Any]:
    """Factory: a kdns forwarding to `upstream`, serving CLUSTER and no static zone, plus `args`."""
    empty = tmp_path / "no-zones"
    empty.mkdir()

    def start(*args: str) -> Any:
        return kdns_process(
            "--upstream", upstream.where, "--zones-dir", str(empty), "--ephemeral", *args, manifests=[CLUSTER]
        )

    return start


def test_start_up_names_the_upstreams(resolver: Callable[..., Any], kdns_process: Callable[..., Any], upstream: UpstreamServer) -> None:
    """At start kdns logs where it forwards and for whom, or that forwarding is off."""
    on = resolver()
    wait_for(lambda: any("forwarding" in line for line in on.output), "the forwarding line")
    assert f"kdns: forwarding to {upstream.where} for clients in 127.0.0.0/8, ::1/128, " in "".join(on.output)
    off = kdns_process("--ephemeral")
    wait_for(lambda: any("forwarding" in line for line in off.output), "the forwarding line")
    assert "kdns: forwarding is off: names outside the served zones are REFUSED\n" in off.output


def test_forwards_over_udp_and_tcp(resolver: Callable[..., Any], upstream: UpstreamServer) -> None:
    """Clients over UDP and TCP get upstream answers (RA set, AA clear); a truncated upstream reply is fetched again over TCP."""
    kdns = resolver()
    for tcp in (False, True):
        reply = ask(kdns, "www.example.test." if not tcp else "alias.example.test.", tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.flags & dns.flags.RA and not reply.flags & dns.flags.AA
    assert lines(ask(kdns, "www.example.test.").answer) == WWW
    assert upstream.count(transport="tcp") == 0
    upstream.mode = "truncate"
    reply = ask(kdns, "short.example.test.")
    assert lines(reply.answer) == ["short.example.test. 30 IN A 192.0.2.30"]
    assert (upstream.count("short.example.test.", transport="udp"), upstream.count("short.example.test.", transport="tcp")) == (1, 1)


@pytest.mark.skipif(knotd_path() is None, reason="knotd (Debian package knot) is not installed")
def test_forwards_to_knot(kdns_process: Callable[..., Any], tmp_path: Path) -> None:
    """Against Debian's knotd: a 3 kB TXT set arrives whole over TCP (knot truncates it over UDP) and is then cached."""
    big = "".join(f'big 300 IN TXT "{i:02d} {"x" * 120}"\n' for i in range(25))
    zone = "$TTL 300\n@ SOA ns1 hostmaster 7 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\nwww A 192.0.2.7\n" + big
    with KnotServer(tmp_path / "knot", {"knot.test.": zone}, host="127.0.0.43") as knot:
        kdns = kdns_process("--upstream", knot.where, "--ephemeral")
        assert lines(ask(kdns, "www.knot.test.").answer) == ["www.knot.test. 300 IN A 192.0.2.7"]
        reply = ask(kdns, "big.knot.test.", "TXT", tcp=True)
        assert len(lines(reply.answer)) == 25
        # Over UDP without EDNS the client gets TC from kdns and would ask over TCP.
        assert ask(kdns, "big.knot.test.", "TXT").flags & dns.flags.TC
        knot.stop()
        assert len(lines(ask(kdns, "big.knot.test.", "TXT", tcp=True).answer)) == 25  # from the cache


def test_cache_hit_and_ttl_countdown(resolver: Callable[..., Any], upstream: UpstreamServer) -> None:
    """The second asker is answered from the cache (the upstream sees one query) with a TTL counted down by the entry's age."""
    kdns = resolver()
    first = ask(kdns, "www.example.test.")
    time.sleep(1.1)
    second = ask(kdns, "www.example.test.", tcp=True)
    assert first.answer[0].ttl == 300
    assert 297 <= second.answer[0].ttl <= 299
    assert upstream.count("www.example.test.") == 1


def test_negative_answers_are_cached_by_the_soa(resolver: Callable[..., Any], upstream: UpstreamServer) -> None:
    """NXDOMAIN and NODATA are cached for the SOA's negative TTL (RFC 2308): asked twice, sent upstream once."""
    kdns = resolver()
    for _ in range(2):
        nxdomain = ask(kdns, "nope.example.test.")
        nodata = ask(kdns, "www.example.test.", "MX")
        assert (nxdomain.rcode(), lines(nxdomain.authority)) == (dns.rcode.NXDOMAIN, UPSTREAM_SOA)
        assert (nodata.rcode(), nodata.answer, lines(nodata.authority)) == (dns.rcode.NOERROR, [], UPSTREAM_SOA)
    assert upstream.count("nope.example.test.") == 1
    assert upstream.count("www.example.test.", "MX") == 1


def test_serve_stale_when_the_upstream_is_gone(resolver: Callable[..., Any], upstream: UpstreamServer) -> None:
    """After the upstream stops, an expired entry is served stale with TTL 30 (RFC 8767); a name never cached is SERVFAIL."""
    kdns = resolver("--cache-max-ttl", "1")
    assert lines(ask(kdns, "www.example.test.").answer) == ["www.example.test. 1 IN A 192.0.2.1"]
    upstream.stop()
    time.sleep(1.1)  # the entry expires
    stale = ask(kdns, "www.example.test.")
    assert lines(stale.answer) == ["www.example.test. 30 IN A 192.0.2.1"]
    assert ask(kdns, "alias.example.test.").rcode() == dns.rcode.SERVFAIL


def test_servfail_within_the_bound_and_never_cached(resolver: Callable[..., Any], upstream: UpstreamServer) -> None:
    """A silent upstream gives SERVFAIL in about 2 s, before a stub's own 5 s retry; once the upstream answers, so does kdns."""
    kdns = resolver()
    upstream.mode = "silent"
    started = time.monotonic()
    reply = ask(kdns, "www.example.test.")
    elapsed = time.monotonic() - started
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert 1.5 <= elapsed <= 3.0, elapsed
    upstream.mode = "answer"
    assert lines(ask(kdns, "www.example.test.").answer) == WWW  # the SERVFAIL was not cached


def test_concurrent_identical_questions_share_one_upstream_query(resolver: Callable[..., Any], upstream: UpstreamServer) -> None:
    """Twenty clients asking one name at the same time cause one upstream query, and all get the answer."""
    kdns = resolver()
    upstream.delay = 0.3
    replies: list[Any] = []
    barrier = threading.Barrier(20)

    def client() -> None:
        barrier.wait(WAIT)
        replies.append(ask(kdns, "www.example.test."))

    threads = [threading.Thread(target=client) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert [lines(reply.answer) for reply in replies] == [WWW] * 20
    assert asked(upstream) == [("www.example.test.", "A")]


def test_recursion_acl(resolver: Callable[..., Any], upstream: UpstreamServer, tmp_path: Path) -> None:
    """Outside --allow-recursion a client gets REFUSED for outside names, and still its cluster and static answers."""
    kdns = resolver("--allow-recursion", "127.0.0.51/32")
    allowed, stranger = "127.0.0.51", "127.0.0.52"
    assert lines(ask(kdns, "www.example.test.", source=allowed).answer) == WWW
    refused = ask(kdns, "www.example.test.", source=stranger)
    assert (refused.rcode(), refused.flags & dns.flags.RA) == (dns.rcode.REFUSED, 0)
    assert ask(kdns, "www.example.test.", source=stranger, tcp=True).rcode() == dns.rcode.REFUSED
    # Not even from the cache (no cache snooping), and not with RD clear.
    assert ask(kdns, "www.example.test.", source=stranger, flags=0).rcode() == dns.rcode.REFUSED
    assert lines(ask(kdns, "www.example.test.", source=allowed, flags=0).answer) == WWW
    assert lines(ask(kdns, f"web.default.svc.{Z}", source=stranger).answer) == [f"web.default.svc.{Z} 5 IN A 10.96.0.10"]
    external = ask(kdns, f"ext.default.svc.{Z}", source=stranger)
    assert lines(external.answer) == [f"ext.default.svc.{Z} 5 IN CNAME www.example.test."]
    unknown = ask(kdns, "1.2.0.192.in-addr.arpa.", "PTR", source=stranger)
    assert (unknown.rcode(), unknown.flags & dns.flags.AA) == (dns.rcode.NXDOMAIN, dns.flags.AA)
    assert asked(upstream) == [("www.example.test.", "A")]


def test_search_path_storm_is_answered_without_the_upstream(resolver: Callable[..., Any], upstream: UpstreamServer) -> None:
    """The ndots:5 expansions of an outside name are NXDOMAIN at once, AA set; only the name itself reaches the upstream."""
    kdns = resolver()
    for qtype in ("A", "AAAA"):
        for suffix in (f"default.svc.{Z}", f"svc.{Z}", Z):
            reply = ask(kdns, f"www.example.test.{suffix}", qtype)
            assert (reply.rcode(), reply.flags & dns.flags.AA) == (dns.rcode.NXDOMAIN, dns.flags.AA)
        ask(kdns, "www.example.test.", qtype)
    assert sorted(asked(upstream)) == [
        ("www.example.test.", "A"),
        ("www.example.test.", "AAAA"),
    ]


def test_autopath_for_a_known_pod(resolver: Callable[..., Any], upstream: UpstreamServer) -> None:
    """With --autopath the pod at 127.0.0.61 gets its external name at the first expansion; another client still gets NXDOMAIN."""
    kdns = resolver("--autopath")
    qname = f"www.example.test.default.svc.{Z}"
    reply = ask(kdns, qname, source="127.0.0.61")
    assert reply.rcode() == dns.rcode.NOERROR
    assert lines(reply.answer) == sorted([f"{qname} 5 IN CNAME www.example.test.", *WWW])
    other = ask(kdns, qname, source="127.0.0.62")
    assert (other.rcode(), other.answer) == (dns.rcode.NXDOMAIN, [])
    assert asked(upstream) == [("www.example.test.", "A")]


def test_external_name_outside_the_cluster(resolver: Callable[..., Any]) -> None:
    """An ExternalName Service pointing outside the cluster answers the CNAME and the target's records from upstream."""
    kdns = resolver()
    for tcp in (False, True):
        reply = ask(kdns, f"ext.default.svc.{Z}", tcp=tcp)
        assert lines(reply.answer) == sorted([f"ext.default.svc.{Z} 5 IN CNAME www.example.test.", *WWW])
        assert reply.flags & dns.flags.AA


def test_reverse_fallthrough_to_another_kdns(kdns_process: Callable[..., Any], tmp_path: Path) -> None:
    """PTR for an address the registry does not know goes upstream, here to a second kdns serving a static reverse zone."""
    zones = tmp_path / "upstream-zones"
    zones.mkdir()
    (zones / "2.0.192.in-addr.arpa.zone").write_text(REVERSE)
    other = kdns_process("--zones-dir", str(zones), "--ephemeral")
    kdns = kdns_process("--upstream", f"{other.address}:{other.port}", "--zones-dir", "none", "--ephemeral", manifests=[CLUSTER])
    reply = ask(kdns, "1.2.0.192.in-addr.arpa.", "PTR")
    assert lines(reply.answer) == ["1.2.0.192.in-addr.arpa. 300 IN PTR www.example.test."]
    assert (reply.flags & dns.flags.RA, reply.flags & dns.flags.AA) == (dns.flags.RA, 0)
    known = ask(kdns, "10.0.96.10.in-addr.arpa.", "PTR")
    assert lines(known.answer) == [f"10.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.{Z}"]
    # Without forwarding the unknown address is NXDOMAIN with the reverse zone's SOA.
    plain = kdns_process("--zones-dir", "none", "--ephemeral", manifests=[CLUSTER])
    missing = ask(plain, "1.2.0.192.in-addr.arpa.", "PTR")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.name.to_text() for rrset in missing.authority] == ["in-addr.arpa."]


def test_loop_through_an_upstream_stops_kdns(tmp_path: Path) -> None:
    """An upstream that forwards kdns's questions back to kdns is found at start: exit 1 and a message saying so."""
    port = free_port("127.0.0.1")
    with UpstreamServer(host="127.0.0.44", mode="relay", relay_to=("127.0.0.1", port)) as relay:
        result = run_kdns("--dns-port", str(port), "--upstream", relay.where, "--zones-dir", "none")
    assert result.returncode == 1, result.stderr
    assert "kdns: error: forwarding loop: the probe " in result.stderr
    assert "came back to kdns" in result.stderr and "Traceback" not in result.stderr
    assert relay.count(qtype="HINFO") >= 1


def test_upstream_that_is_kdns_itself_is_refused(tmp_path: Path) -> None:
    """--upstream naming kdns's own address and port is a bad setting: exit 2 before anything is served."""
    port = free_port("127.0.0.1")
    result = run_kdns("--dns-port", str(port), "--upstream", f"127.0.0.1:{port}", "--zones-dir", "none")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"kdns: error: upstream 127.0.0.1:{port} is kdns's own listening address: forwarding to it would loop; "
        "name the resolver kdns should ask instead\n"
    )


# --- static zones and SIGHUP -----------------------------------------------------------


def test_a_broken_zone_file_stops_start_up(tmp_path: Path) -> None:
    """A zone file that does not parse is exit 1 and one line naming the file and line."""
    (tmp_path / "corp.test.zone").write_text(CORP.format(serial=1, last=1) + "bad IN A 300.1.1.1\n")
    result = run_kdns("--dns-port", "0", "--zones-dir", str(tmp_path), "--upstream", "none")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"kdns: error: {tmp_path / 'corp.test.zone'}:6: "), result.stderr
    assert "serving DNS" not in result.stderr


def test_sighup_reloads_static_zones_without_dropping_queries(kdns_process: Callable[..., Any], tmp_path: Path) -> None:
    """SIGHUP serves edited, new and removed zone files; a broken file keeps its old version; queries never stop."""
    zones = tmp_path / "zones"
    zones.mkdir()
    corp = zones / "corp.test.zone"
    corp.write_text(CORP.format(serial=1, last=1))
    kdns = kdns_process("--zones-dir", str(zones), "--ephemeral")
    assert lines(ask(kdns, "www.corp.test.").answer) == ["www.corp.test. 300 IN A 192.0.2.1"]

    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def hammer() -> None:
        nonlocal answered
        for _ in range(100_000):  # bounded; stopped by the event long before
            if stop.is_set():
                return
            try:
                reply = ask(kdns, "www.corp.test.")
                if reply.rcode() != dns.rcode.NOERROR or len(reply.answer) != 1:
                    failures.append(reply.to_text())
                answered += 1
            except (dns.exception.DNSException, OSError) as exc:
                failures.append(repr(exc))

    def reloaded(count: int) -> bool:
        return sum("reloaded static zones" in line for line in kdns.output) >= count

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        # An edit and a new zone.
        corp.write_text(CORP.format(serial=2, last=2))
        (zones / "other.test.zone").write_text(CORP.format(serial=1, last=9))
        kdns.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: reloaded(1), "the first reload")
        assert lines(ask(kdns, "www.corp.test.").answer) == ["www.corp.test. 300 IN A 192.0.2.2"]
        assert lines(ask(kdns, "www.other.test.").answer) == ["www.other.test. 300 IN A 192.0.2.9"]
        # A broken edit keeps version 2; a broken new file is not served; a removed file goes.
        corp.write_text(CORP.format(serial=3, last=3) + "oops IN A not-an-address\n")
        (zones / "new.test.zone").write_text("this is not a zone file\n")
        (zones / "other.test.zone").unlink()
        kdns.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: reloaded(2), "the second reload")
        assert lines(ask(kdns, "www.corp.test.").answer) == ["www.corp.test. 300 IN A 192.0.2.2"]
        assert ask(kdns, "www.other.test.").rcode() == dns.rcode.REFUSED
        assert ask(kdns, "www.new.test.").rcode() == dns.rcode.REFUSED
    finally:
        stop.set()
        thread.join(WAIT)
    log = "".join(kdns.output)
    assert f"kdns: error: reload: {corp}:6: " in log and "its previous version stays in service" in log, log
    assert f"kdns: error: reload: {zones / 'new.test.zone'}:1: " in log and "; not served" in log, log
    assert "reloaded static zones from" in log and "corp.test. (serial 2)" in log
    assert failures == [], failures[:3]
    assert answered > 0


# --- Extended DNS Errors (RFC 8914) of the forwarding path ---------------------------------------


def ede(reply: dns.message.Message) -> list[tuple[int, str]]:
    """The reply's Extended DNS Errors as (INFO-CODE, EXTRA-TEXT)."""
    return [(option.code, option.text or "") for option in reply.options if option.otype == dns.edns.OptionType.EDE]


def test_refused_outside_client_is_prohibited_rfc8914_s4_19(resolver: Callable[..., Any]) -> None:
    """RFC 8914 §4.19: REFUSED to a client outside --allow-recursion carries EDE 18 Prohibited."""
    kdns = resolver("--allow-recursion", "127.0.0.51/32")
    refused = ask(kdns, "www.example.test.", source="127.0.0.52", use_edns=0)
    assert refused.rcode() == dns.rcode.REFUSED
    assert ede(refused) == [(18, "recursion is for the clients of --allow-recursion")]
    assert ede(ask(kdns, "www.example.test.", source="127.0.0.51", use_edns=0)) == []


def test_stale_answer_says_so_rfc8914_s4_4(resolver: Callable[..., Any], upstream: UpstreamServer) -> None:
    """RFC 8914 §4.4 (RFC 8767): an expired answer served because the upstream is gone
    carries EDE 3 Stale Answer; the fresh one before it carries nothing."""
    kdns = resolver("--cache-max-ttl", "1")
    assert ede(ask(kdns, "www.example.test.", use_edns=0)) == []
    upstream.stop()
    time.sleep(1.1)  # the entry expires
    stale = ask(kdns, "www.example.test.", use_edns=0)
    assert lines(stale.answer) == ["www.example.test. 30 IN A 192.0.2.1"]
    assert [code for code, _ in ede(stale)] == [3]


def test_silent_upstream_is_no_reachable_authority_rfc8914_s4_23(resolver: Callable[..., Any], upstream: UpstreamServer) -> None:
    """RFC 8914 §4.23: SERVFAIL because no upstream answered in time carries EDE 22 No
    Reachable Authority, naming the upstream; one that answered SERVFAIL is §4.24, EDE 23
    Network Error."""
    kdns = resolver()
    upstream.mode = "silent"
    reply = ask(kdns, "www.example.test.", use_edns=0)
    assert reply.rcode() == dns.rcode.SERVFAIL
    [(code, text)] = ede(reply)
    assert code == 22 and f"{upstream.where} timed out" in text
    upstream.mode = "servfail"
    reply = ask(kdns, "alias.example.test.", use_edns=0)
    assert reply.rcode() == dns.rcode.SERVFAIL
    [(code, text)] = ede(reply)
    assert code == 23 and f"{upstream.where} answered SERVFAIL" in text
