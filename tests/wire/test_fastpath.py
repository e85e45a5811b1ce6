"""The fast path: ready reply bytes per question, re-spelt and re-numbered for each asker.

Most tests drive `AnswerCache` the way the servers do (`ask`) and hold every reply to the
bytes the codec itself writes for that request (`fresh`); the rest run the UDP and TCP
servers on loopback over a real registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from dnslib import QTYPE, RR, A
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.authority.answer import answer
from kdns.authority.index import ClusterIndex
from kdns.codec import Rejected, from_wire, soa_serial_at, to_wire
from kdns.config import Settings
from kdns.message import Answer, Query, Reusable
from kdns.pipeline.chain import Router
from kdns.registry.store import Store
from kdns.reuse import (
    NODES,
    SHARED,
    UNSCOPED,
    Changed,
    ChangeListener,
    Forwarded,
    ServiceScope,
    Shared,
)
from kdns.wire.fastpath import AnswerCache, QueryStats, question_type
from kdns.wire.tcp import TcpServer
from kdns.wire.udp import UdpServer
from tests.authority.cluster import (
    HTTP,
    SERIAL,
    deleted,
    endpoint,
    eport,
    fixture_objects,
    modified,
    namespace,
    node,
    pod,
    port,
    service,
    slice_,
)

SETTINGS = Settings(zone="cluster.local.", ttl=5, pods="verified", dns_address="127.0.0.1")
CLIENT = "127.0.0.1"
TIMEOUT = 2.0


class Authority:
    """The cluster zone's answers as the Router gives them, shared until any change,
    REFUSED outside it; its changes are the index's, as the Router passes them on."""

    def __init__(self, index: ClusterIndex, settings: Settings = SETTINGS) -> None:
        self.index = index
        self.settings = settings
        self.calls = 0

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        return self.index.on_change(listener)

    @property
    def serial(self) -> int:
        return self.index.serial

    def recursion_allowed(self, client: str | None) -> bool:
        return False

    def __call__(self, query: Query) -> Answer:
        self.calls += 1
        result = answer(query, self.index, self.settings)
        if result is None:
            return Answer(rcode=5)
        return replace(result, reuse=SHARED)


class Fixed:
    """A handler that gives the same Answer to everything; `change()` tells its listeners."""

    def __init__(self, result: Answer, allowed: Callable[[str | None], bool] = lambda client: True) -> None:
        self.result = result
        self.calls = 0
        self.allowed = allowed
        self.listeners: list[ChangeListener] = []
        self.serial = 0  # its answers show no SOA of a kdns zone

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def recursion_allowed(self, client: str | None) -> bool:
        return self.allowed(client)

    def change(self, changed: Changed = None) -> None:
        for listener in self.listeners:
            listener(changed)

    def __call__(self, query: Query) -> Answer:
        self.calls += 1
        return self.result


def following(handler: Reusable, **options: Any) -> AnswerCache:
    """A cache that hears `handler`'s changes, as a started server's does."""
    cache = AnswerCache(handler, **options)
    cache.follow()
    return cache


def cluster_index() -> ClusterIndex:
    index = ClusterIndex(SETTINGS)
    index.rebuild(fixture_objects(), SERIAL)
    return index


def request(name: str, qtype: str = "A", *, ident: int = 4242, edns: int | None = None, **make: Any) -> bytes:
    """A query as a stub resolver sends it (RD set); `edns=0` adds an OPT record."""
    message = dns.message.make_query(name, qtype, use_edns=edns, id=ident, **make)
    return message.to_wire()


def fresh(handler: Callable[[Query], Answer], wire: bytes) -> bytes:
    """What the codec writes for `wire` with no cache at all."""
    query = from_wire(wire, CLIENT)
    assert isinstance(query, Query)
    return to_wire(query, handler(query), query.payload)


def ask(
    cache: AnswerCache, handler: Callable[[Query], Answer], wire: bytes, client: str = CLIENT
) -> tuple[bytes, bool]:
    """What the UDP server does with one request: (the reply, whether the fast path gave it)."""
    ready = cache.lookup(wire, client)
    if ready is not None:
        return ready, True
    query = from_wire(wire, client)
    assert isinstance(query, Query)
    epoch = cache.epoch
    result = handler(query)
    reply = to_wire(query, result, query.payload)
    cache.store(wire, query, result, reply, epoch)
    return reply, False


@pytest.fixture
def authority() -> Authority:
    return Authority(cluster_index())


# --- hits -----------------------------------------------------------------------------------


def test_a_repeated_question_is_answered_from_the_cache(authority: Authority) -> None:
    """The second asker of a question gets the ready reply, with its own ID, and the handler is not asked."""
    cache = following(authority)
    first, hit_first = ask(cache, authority, request("svc1.testns.svc.cluster.local.", ident=1))
    second, hit_second = ask(cache, authority, request("svc1.testns.svc.cluster.local.", ident=2))
    assert (hit_first, hit_second) == (False, True)
    assert authority.calls == 1
    assert first[:2] == b"\x00\x01" and second[:2] == b"\x00\x02"
    assert second == fresh(authority, request("svc1.testns.svc.cluster.local.", ident=2))


def test_hits_echo_the_askers_spelling(authority: Authority) -> None:
    """MY-SERVICE then my-service: each reply spells question and owner names as its asker did."""
    cache = following(authority)
    hits = []
    for name in ("SVC1.TestNS.svc.Cluster.LOCAL.", "svc1.testns.svc.cluster.local.", "Svc1.TESTNS.SVC.cluster.local."):
        wire = request(name)
        reply, hit = ask(cache, authority, wire)
        hits.append(hit)
        parsed = dns.message.from_wire(reply)
        assert [q.name.to_text() for q in parsed.question] == [name]
        assert [rrset.name.to_text() for rrset in parsed.answer] == [name]
        assert reply == fresh(authority, wire)
    assert hits == [False, True, True]


def test_a_negative_answer_echoes_the_askers_zone_in_its_soa(authority: Authority) -> None:
    """NXDOMAIN from the cache: the SOA's owner and names follow the asker's spelling of the zone."""
    cache = following(authority)
    ask(cache, authority, request("nope.testns.svc.cluster.local."))
    wire = request("NOPE.testns.svc.CLUSTER.Local.")
    reply, hit = ask(cache, authority, wire)
    assert hit
    soa = dns.message.from_wire(reply).authority[0]
    assert soa.name.to_text() == "CLUSTER.Local."
    assert soa[0].mname.to_text() == "ns.dns.CLUSTER.Local."
    assert reply == fresh(authority, wire)


def test_srv_targets_keep_each_askers_zone_spelling(authority: Authority) -> None:
    """An SRV target (never compressed, RFC 2782) names the zone as asked, so it is reused only for that spelling."""
    cache = following(authority)
    lower = request("_http._tcp.svc1.testns.svc.cluster.local.", "SRV")
    upper = request("_http._tcp.svc1.testns.svc.CLUSTER.LOCAL.", "SRV")
    assert ask(cache, authority, lower)[1] is False
    assert ask(cache, authority, lower) == (fresh(authority, lower), True)  # (a plain reply, for lower case only)
    reply, hit = ask(cache, authority, upper)
    assert hit is False
    assert dns.message.from_wire(reply).answer[0][0].target.to_text() == "svc1.testns.svc.CLUSTER.LOCAL."
    assert ask(cache, authority, upper) == (fresh(authority, upper), True)
    assert ask(cache, authority, lower)[0] == fresh(authority, lower)


NAMES = [
    ("svc1.testns.svc.cluster.local.", "A"),
    ("svc1.testns.svc.cluster.local.", "AAAA"),
    ("hdls1.testns.svc.cluster.local.", "A"),
    ("hdls1.testns.svc.cluster.local.", "SRV"),
    ("_http._tcp.dual.testns.svc.cluster.local.", "SRV"),
    ("ep1a.svc1.testns.svc.cluster.local.", "A"),
    ("external-to-service.testns.svc.cluster.local.", "A"),
    ("external.testns.svc.cluster.local.", "A"),
    ("1.0.0.10.in-addr.arpa.", "PTR"),
    ("10-244-0-1.testns.pod.cluster.local.", "A"),
    ("nope.testns.svc.cluster.local.", "A"),
    ("testns.svc.cluster.local.", "TXT"),
    ("cluster.local.", "NS"),
    ("cluster.local.", "SOA"),
    ("dns-version.cluster.local.", "TXT"),
    ("example.com.", "A"),
]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    name, qtype = draw(st.sampled_from(NAMES))
    spelt = "".join(c.upper() if c.isalpha() and draw(st.booleans()) else c for c in name)
    edns = draw(st.sampled_from([None, 0]))
    make: dict[str, Any] = {}
    if edns is not None:
        make["payload"] = draw(st.sampled_from([512, 1232, 4096]))
        make["want_dnssec"] = draw(st.booleans())
    wire = request(spelt, qtype, ident=draw(st.integers(0, 0xFFFF)), edns=edns, **make)
    if draw(st.booleans()):  # CD set
        wire = wire[:3] + bytes([wire[3] | 0x10]) + wire[4:]
    return wire


@settings(max_examples=60, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=40))
def test_every_reply_is_what_the_codec_writes(wires: list[bytes]) -> None:
    """Whatever the spelling, ID, EDNS and flags, a reply from the cache is byte for byte the codec's."""
    authority = Authority(cluster_index())
    cache = following(authority)
    for wire in wires:
        reply, _ = ask(cache, authority, wire)
        assert reply == fresh(authority, wire)


# --- what is not kept -----------------------------------------------------------------------


def _a_record(query: Query) -> tuple[RR, ...]:
    return (RR(query.qname, QTYPE.A, rdata=A("10.0.0.1"), ttl=5),)


def test_only_reusable_answers_are_kept() -> None:
    """Answers not marked reusable and SERVFAIL are never kept."""
    wire = request("name.test.")
    records = _a_record(from_wire(wire, CLIENT))  # type: ignore[arg-type]
    for result in (
        Answer(answer=records, authoritative=True),
        Answer(rcode=2, reuse=SHARED),
    ):
        handler = Fixed(result)
        cache = following(handler)
        assert [ask(cache, handler, wire)[1] for _ in range(2)] == [False, False]
        assert len(cache) == 0


def test_a_handler_that_is_not_reusable_gets_no_cache() -> None:
    """A handler that tells no changes (not `Reusable`) gets no fast path at all."""
    assert AnswerCache.for_handler(lambda query: Answer()) is None
    assert UdpServer(lambda query: Answer(), CLIENT, 0).cache is None


def test_requests_the_codec_would_not_answer_alike_never_hit(authority: Authority) -> None:
    """Trailing bytes, a bad OPT length, another opcode or a response miss, and the codec answers them."""
    cache = following(authority)
    plain = request("svc1.testns.svc.cluster.local.")
    with_opt = request("svc1.testns.svc.cluster.local.", edns=0)
    ask(cache, authority, plain)
    ask(cache, authority, with_opt)
    notify = plain[:2] + bytes([plain[2] | 0x20]) + plain[3:]  # opcode 4
    variants = {
        "trailing bytes": (plain + b"\x00", 1),
        "OPT longer than its RDLENGTH": (with_opt + b"\x00", 1),
        "OPT shorter than its RDLENGTH": (with_opt[:-2] + b"\x00\x04" + b"\x00\x0a", 1),
        "opcode NOTIFY": (notify, 4),
    }
    for what, (wire, rcode) in variants.items():
        assert cache.lookup(wire, CLIENT) is None, what
        rejected = from_wire(wire, CLIENT)
        assert isinstance(rejected, Rejected) and rejected.rcode == rcode, what
    response = plain[:2] + bytes([plain[2] | 0x80]) + plain[3:]
    assert cache.lookup(response, CLIENT) is None and from_wire(response, CLIENT) is None


def test_a_zero_byte_inside_a_label_is_answered_not_kept() -> None:
    """A label holding a zero byte would fool the quick name scan: such questions are not kept."""
    handler = Fixed(Answer(rcode=3, authoritative=True, reuse=SHARED))
    cache = following(handler)
    wire = struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0) + b"\x03a\x00b\x04test\x00\x00\x01\x00\x01"
    for _ in range(2):
        reply, hit = ask(cache, handler, wire)
        assert not hit and reply == fresh(handler, wire)
    assert len(cache) == 0


def test_edns_variants_are_separate_questions(authority: Authority) -> None:
    """Without EDNS, with it, and with DO: three replies, each the codec's, none mixed up."""
    cache = following(authority)
    name = "hdls1.testns.svc.cluster.local."
    wires = [request(name), request(name, edns=0, payload=1232), request(name, edns=0, payload=1232, want_dnssec=True)]
    for wire in wires:
        assert ask(cache, authority, wire) == (fresh(authority, wire), False)
    for wire in wires:
        assert ask(cache, authority, wire) == (fresh(authority, wire), True)


def test_a_truncated_answer_is_kept_for_its_payload_size() -> None:
    """A reply too big for 512 bytes (TC) is kept like any other, under the request without
    EDNS; the same question with EDNS 1232 is another key, and gets the whole answer."""
    records = tuple(RR("name.test.", QTYPE.A, rdata=A(f"10.0.0.{i}"), ttl=5) for i in range(50))  # ~830 bytes
    handler = Fixed(Answer(answer=records, authoritative=True, reuse=SHARED))
    cache = following(handler)
    small, mixed = request("name.test."), request("Name.TEST.", ident=7)
    large = request("name.test.", edns=0, payload=1232)
    expected = {wire: fresh(handler, wire) for wire in (small, mixed, large)}
    handler.calls = 0
    assert expected[small][2] & 0x02 and not expected[large][2] & 0x02  # TC, then not
    assert ask(cache, handler, small) == (expected[small], False)
    assert ask(cache, handler, small) == (expected[small], True)
    assert ask(cache, handler, mixed) == (expected[mixed], True)
    assert ask(cache, handler, large) == (expected[large], False)
    assert ask(cache, handler, large) == (expected[large], True)
    assert handler.calls == 2


def test_requests_with_edns_options_take_the_slow_path(authority: Authority) -> None:
    """A request with EDNS options (a cookie; NSID, which changes the reply) is never kept:
    the options are not part of the key, so an NSID reply must not reach another asker."""
    cache = following(authority)
    name = "svc1.testns.svc.cluster.local."
    cookie = request(name, edns=0, options=[dns.edns.GenericOption(10, b"12345678")])
    nsid = request(name, edns=0, options=[dns.edns.GenericOption(3, b"")])
    padding = request(name, edns=0, options=[dns.edns.GenericOption(12, b"")])
    for wire in (cookie, cookie, nsid, padding, padding):
        assert ask(cache, authority, wire) == (fresh(authority, wire), False)
    assert len(cache) == 0


# --- validity -------------------------------------------------------------------------------


def test_a_change_drops_every_reply() -> None:
    """After a change that names no Service, the next request finds an empty cache and a new answer."""
    wire = request("n.test.")
    records = _a_record(from_wire(wire, CLIENT))  # type: ignore[arg-type]
    handler = Fixed(Answer(answer=records, reuse=SHARED))
    cache = following(handler)
    ask(cache, handler, wire)
    handler.result = Answer(rcode=3, reuse=SHARED)
    handler.change()
    reply, hit = ask(cache, handler, wire)
    assert not hit and dns.message.from_wire(reply).rcode() == dns.rcode.NXDOMAIN
    assert ask(cache, handler, wire)[1] is True


def test_a_change_to_other_scopes_keeps_a_scoped_reply() -> None:
    """A reply shared within scopes stays until a change names one of them; one that may
    have read anything goes with every change, one that read no scope only with a change
    of everything."""
    web_scope, nodes_scope = ServiceScope("shop", "web"), NODES
    scoped, unscoped, constant = request("web.shop.test."), request("n.test."), request("c.test.")
    web = Fixed(Answer(answer=_a_record(from_wire(scoped, CLIENT)), reuse=Shared(frozenset({web_scope, nodes_scope}))))  # type: ignore[arg-type]
    cache = following(web)
    ask(cache, web, scoped)
    other = Answer(answer=_a_record(from_wire(unscoped, CLIENT)), reuse=SHARED)  # type: ignore[arg-type]
    ask(cache, Fixed(other), unscoped)
    ask(cache, Fixed(Answer(rcode=3, reuse=UNSCOPED)), constant)
    web.change(frozenset({ServiceScope("shop", "api")}))
    assert cache.lookup(scoped, CLIENT) is not None and cache.lookup(unscoped, CLIENT) is None
    web.change(frozenset({nodes_scope}))  # either scope drops it
    assert cache.lookup(scoped, CLIENT) is None and len(cache) == 1
    for _ in range(3):  # dropped through one scope, stored again: listed once under each
        ask(cache, web, scoped)
        web.change(frozenset({web_scope}))
    ask(cache, web, scoped)
    assert [len(cache._scopes[scope]) for scope in (web_scope, nodes_scope)] == [1, 1]
    assert cache.lookup(constant, CLIENT) is not None
    web.change(None)
    assert len(cache) == 0


def test_a_stopped_cache_hears_no_more_and_is_empty() -> None:
    """The call `follow` returns unsubscribes the cache and empties it."""
    wire = request("n.test.")
    handler = Fixed(Answer(rcode=3, reuse=SHARED))
    cache = AnswerCache(handler)
    unfollow = cache.follow()
    ask(cache, handler, wire)
    unfollow()
    assert handler.listeners == [] and len(cache) == 0


def test_an_answer_worked_on_across_a_change_is_not_kept() -> None:
    """An awaited answer stored after a change came in while it was being worked on is dropped."""
    handler = Fixed(Answer(rcode=3, reuse=SHARED))
    cache = following(handler)
    wire = request("n.test.")
    query = from_wire(wire, CLIENT)
    assert isinstance(query, Query)
    seen = cache.epoch
    handler.change()
    assert not cache.store(wire, query, handler.result, to_wire(query, handler.result), seen)
    assert len(cache) == 0


def test_forwarded_answers_expire_and_need_recursion() -> None:
    """A forwarded answer is reused until its deadline, and only for clients allowed to recurse."""
    now = [100.0]
    wire = request("www.example.com.")
    result = Answer(
        answer=_a_record(from_wire(wire, CLIENT)),  # type: ignore[arg-type]
        recursion_available=True,
        reuse=Forwarded(0.5),
    )
    handler = Fixed(result, allowed=lambda client: client == CLIENT)
    cache = following(handler, timer=lambda: now[0])
    assert ask(cache, handler, wire)[1] is False
    assert ask(cache, handler, wire)[1] is True
    assert cache.lookup(wire, "192.0.2.1") is None  # not allowed to recurse: the handler answers it
    now[0] += 0.5
    assert ask(cache, handler, wire)[1] is False
    assert ask(cache, handler, wire, "192.0.2.1")[1] is False
    assert handler.calls == 3


def test_the_cache_is_bounded() -> None:
    """Past `max_entries` the cache starts again empty rather than grow."""
    handler = Fixed(Answer(rcode=3, reuse=SHARED))
    cache = following(handler, max_entries=2)
    for name in ("a.test.", "b.test.", "c.test."):
        ask(cache, handler, request(name))
        assert len(cache) <= 2
    assert ask(cache, handler, request("c.test."))[1] is True


def test_answers_are_counted_by_type_and_rcode(authority: Authority) -> None:
    """Hits count in the same (qtype, rcode) counters the servers use for misses."""
    cache = following(authority)
    for _ in range(3):
        ask(cache, authority, request("nope.testns.svc.cluster.local."))
    # `ask` counts no misses itself: the one miss stored the entry, the two hits counted.
    assert cache.stats.totals() == {(QTYPE.A, 3): 2}


def test_the_question_type_is_read_from_requests_and_replies() -> None:
    """question_type reads a request's or an echoing reply's qtype; 0 without a question."""
    assert question_type(request("svc1.testns.svc.cluster.local.", "SRV")) == QTYPE.SRV
    assert question_type(fresh(Authority(cluster_index()), request("x.test.", "AAAA"))) == QTYPE.AAAA
    assert question_type(struct.pack("!6H", 1, 0x8101, 0, 0, 0, 0)) == 0


# --- through the servers ---------------------------------------------------------------------


def _service(name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }


class Registry:
    """A Store with a ClusterIndex subscribed to it, as kdns.app wires them."""

    def __init__(self) -> None:
        self.store = Store(clock=lambda: 1_700_000_000.0)
        self.index = ClusterIndex(SETTINGS)
        self.index.rebuild(self.store.objects(), self.store.resource_version)
        self.store.subscribe(self.index.apply)
        self.authority = Authority(self.index)

    def apply(self, *documents: dict[str, Any]) -> None:
        with self.store.transaction() as txn:
            for document in documents:
                txn.apply(document)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self.store.transaction() as txn:
            txn.delete(kind, namespace, name)


@contextlib.asynccontextmanager
async def serving(handler: Any) -> AsyncIterator[tuple[int, int]]:
    """UDP and TCP servers on loopback (each on a port of its own): (udp port, tcp port)."""
    async with UdpServer(handler, CLIENT, 0) as udp, TcpServer(handler, CLIENT, 0) as tcp:
        yield udp.port, tcp.port


async def _resolve(port: int, name: str, qtype: str = "A", tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    if tcp:
        return await dns.asyncquery.tcp(query, CLIENT, port=port, timeout=TIMEOUT)
    return await dns.asyncquery.udp(query, CLIENT, port=port, timeout=TIMEOUT)


def _loops() -> Iterator[Any]:
    yield pytest.param(None, id="asyncio")
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return
    yield pytest.param(uvloop.new_event_loop, id="uvloop")


@pytest.mark.parametrize("loop_factory", list(_loops()))
def test_a_registry_change_is_seen_by_the_next_query(loop_factory: Any) -> None:
    """Create, delete, create again: every query right after a commit gets the new answer, over UDP and TCP."""
    registry = Registry()

    async def scenario() -> None:
        async with serving(registry.authority) as (udp, tcp):
            for over_tcp, port in ((False, udp), (True, tcp)):
                name = f"web-{int(over_tcp)}.default.svc.cluster.local."
                missing = await _resolve(port, name, tcp=over_tcp)
                assert missing.rcode() == dns.rcode.NXDOMAIN
                assert (await _resolve(port, name, tcp=over_tcp)).rcode() == dns.rcode.NXDOMAIN
                registry.apply(_service(f"web-{int(over_tcp)}"))
                first = (await _resolve(port, name, tcp=over_tcp)).answer[0][0].address
                assert (await _resolve(port, name, tcp=over_tcp)).answer[0][0].address == first
                registry.delete("Service", "default", f"web-{int(over_tcp)}")
                assert (await _resolve(port, name, tcp=over_tcp)).rcode() == dns.rcode.NXDOMAIN
                registry.apply(_service(f"web-{int(over_tcp)}"))
                again = await _resolve(port, name, tcp=over_tcp)
                assert again.rcode() == dns.rcode.NOERROR and again.answer[0][0].address != first

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(scenario())


def test_case_echo_over_udp_and_tcp() -> None:
    """MY-SERVICE.default then my-service.default, over each transport: each reply is spelt as asked."""
    registry = Registry()
    registry.apply(_service("my-service"))

    async def scenario() -> None:
        async with serving(registry.authority) as (udp, tcp):
            for over_tcp, port in ((False, udp), (True, tcp)):
                for name in ("MY-SERVICE.default.svc.cluster.local.", "my-service.default.svc.cluster.local."):
                    reply = await _resolve(port, name, tcp=over_tcp)
                    assert [q.name.to_text() for q in reply.question] == [name]
                    assert [rrset.name.to_text() for rrset in reply.answer] == [name]
        assert registry.authority.calls == 2  # once per transport: each has its own cache

    asyncio.run(scenario())


def test_a_batch_of_ready_and_new_questions_gets_each_its_own_reply() -> None:
    """Bursts that land in one read of the UDP server: ready replies (written over their
    requests) between questions the cache has not seen, spelt otherwise, or with EDNS
    options, from several sockets; every asker gets exactly the codec's reply, with its ID."""
    registry = Registry()
    registry.apply(*(_service(f"web-{n}") for n in range(6)))
    names = [f"web-{n}.default.svc.cluster.local." for n in range(6)]

    def burst(round_: int) -> list[bytes]:
        wires = []
        for n, name in enumerate(names):
            ident = round_ * 100 + n
            if round_ and n % 3 == 1:
                wires.append(request(name.upper(), ident=ident, edns=0))  # another spelling
            elif round_ and n % 3 == 2:
                wires.append(request(name, "AAAA", ident=ident, edns=0))  # new: a miss
            else:
                wires.append(request(name, ident=ident, edns=0))  # ready after round 0
            wires.append(request(name, "SRV", ident=ident + 50, edns=0, options=[dns.edns.GenericOption(65001, b"x")]))
        return wires

    async def scenario() -> None:
        async with serving(registry.authority) as (udp, _):
            loop = asyncio.get_running_loop()
            sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
            try:
                for sock in sockets:
                    sock.setblocking(False)
                for round_ in range(3):
                    wires = burst(round_)
                    # Sent before the server's next read, so each round is one batch.
                    for i, wire in enumerate(wires):
                        sockets[i % 3].sendto(wire, (CLIENT, udp))
                    for i in range(len(wires)):
                        reply = await asyncio.wait_for(loop.sock_recv(sockets[i % 3], 65535), TIMEOUT)
                        expected = {w[:2]: fresh(registry.authority, w) for w in wires[i % 3 :: 3]}
                        assert reply == expected[reply[:2]], dns.message.from_wire(reply)
            finally:
                for sock in sockets:
                    sock.close()

    asyncio.run(scenario())


def test_a_batch_of_ready_replies_after_one_with_a_miss_goes_to_its_askers() -> None:
    """The UDP server queues the reply to datagram i in out header i while every datagram
    before it had a ready reply, and moves headers after a miss (kdns/wire/mmsg.py): a
    batch with a miss first, then a batch of ready replies only, each from three sockets;
    every asker gets its own reply, with its ID."""
    registry = Registry()
    registry.apply(*(_service(name) for name in ("a", "b", "c")))
    a, b, c = (f"{name}.default.svc.cluster.local." for name in "abc")

    async def scenario() -> None:
        async with serving(registry.authority) as (udp, _):
            loop = asyncio.get_running_loop()
            sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
            try:
                for sock in sockets:
                    sock.setblocking(False)
                for name in (a, b):
                    await _resolve(udp, name)
                for round_, names in enumerate(((c, a, b), (a, b, c), (b, c, a))):
                    wires = [request(name, ident=round_ * 10 + n) for n, name in enumerate(names)]
                    for sock, wire in zip(sockets, wires, strict=True):  # one batch: sent before the read
                        sock.sendto(wire, (CLIENT, udp))
                    for sock, wire in zip(sockets, wires, strict=True):
                        reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), TIMEOUT)
                        assert reply == fresh(registry.authority, wire)
            finally:
                for sock in sockets:
                    sock.close()

    asyncio.run(scenario())


def test_the_servers_count_answers_in_shared_stats() -> None:
    """Hits, misses and the codec's own refusals, over UDP and TCP, land in one QueryStats by qtype and rcode."""
    registry = Registry()
    registry.apply(_service("web"))

    async def scenario() -> None:
        async with (
            UdpServer(registry.authority, CLIENT, 0) as udp,
            TcpServer(registry.authority, CLIENT, 0, stats=udp.stats) as tcp,
        ):
            for _ in range(3):
                await _resolve(udp.port, "web.default.svc.cluster.local.")
            await _resolve(tcp.port, "web.default.svc.cluster.local.", tcp=True)
            await _resolve(udp.port, "nope.default.svc.cluster.local.", "AAAA")
            chaos = dns.message.make_query("version.bind.", "TXT", "CH")
            await dns.asyncquery.udp(chaos, CLIENT, port=udp.port, timeout=TIMEOUT)  # REFUSED by the codec
            assert udp.stats.totals() == {(QTYPE.A, 0): 4, (QTYPE.AAAA, 3): 1, (QTYPE.TXT, 5): 1}

    asyncio.run(scenario())


@pytest.mark.parametrize("counters", [255, 256], ids=["last-counter-a-byte-names", "past-it"])
def test_a_ready_reply_is_counted_whatever_its_counters_index(counters: int) -> None:
    """A plain ready reply names its (qtype, rcode) counter in one byte
    (kdns/wire/fastpath.py); one whose counter is past 255 is kept the other way. Either
    way, a batch read answers it from the cache, byte for byte what the codec writes,
    with its own ID, and counts each answer once."""
    registry = Registry()
    registry.apply(_service("web"))
    stats = QueryStats()
    for qtype in range(1000, 1000 + counters):  # A/NOERROR gets the next index
        stats.cell(qtype, 0)
    web = "web.default.svc.cluster.local."

    async def scenario() -> None:
        async with UdpServer(registry.authority, CLIENT, 0, stats=stats) as udp:
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                for round_ in range(3):
                    wires = [request(web, ident=round_ * 10 + n) for n in range(3)]
                    for wire in wires:  # one batch per round: all sent before the server reads
                        sock.sendto(wire, (CLIENT, udp.port))
                    expected = {wire[:2]: fresh(registry.authority, wire) for wire in wires}
                    for _ in wires:
                        reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), TIMEOUT)
                        assert reply == expected.pop(reply[:2])
        assert stats.cell(QTYPE.A, 0) == counters
        assert {key: n for key, n in stats.totals().items() if n} == {(QTYPE.A, 0): 9}
        # The first asks of round 0 were answered before a reply was ready; the rest were not
        # (3 per round for `fresh`).
        assert 1 <= registry.authority.calls - 9 <= 3

    asyncio.run(scenario())


def test_sampled_answer_times_are_observed() -> None:
    """With `observe`, one batch in SAMPLE_EVERY (here: one query each) is timed and reported."""
    from kdns.wire.udp import SAMPLE_EVERY

    registry = Registry()
    seen: list[float] = []

    async def scenario() -> None:
        async with UdpServer(registry.authority, CLIENT, 0, observe=seen.append) as udp:
            for _ in range(SAMPLE_EVERY):
                await _resolve(udp.port, "nope.default.svc.cluster.local.")

    asyncio.run(scenario())
    assert len(seen) == 1 and seen[0] >= 0


# --- keeping what a commit cannot have changed ------------------------------------------------


_WATCHED = [
    *(
        (f"{name}.testns.svc.cluster.local.", qtype)
        for name in ("svc1", "svc6", "dual", "hdls1", "np", "external", "external-to-service",
                     "external-to-external", "nope")
        for qtype in ("A", "AAAA", "SRV", "ANY")
    ),
    ("ep1a.svc1.testns.svc.cluster.local.", "A"),
    ("dup-name.hdls1.testns.svc.cluster.local.", "A"),
    ("172-0-0-12.hdls1.testns.svc.cluster.local.", "A"),
    ("_http._tcp.svc1.testns.svc.cluster.local.", "SRV"),
    ("_http._tcp.hdls1.testns.svc.cluster.local.", "SRV"),
    ("_http._tcp.np.testns.nodeport.cluster.local.", "SRV"),
    ("np.testns.nodeport.cluster.local.", "SRV"),
    ("node-a.node.cluster.local.", "A"),
    ("10-244-0-1.testns.pod.cluster.local.", "A"),
    ("10-244-1-1.default.pod.cluster.local.", "A"),
    ("ghost.ghostns.svc.cluster.local.", "A"),
    ("testns.svc.cluster.local.", "A"),
    ("cluster.local.", "SOA"),
    ("1.0.0.10.in-addr.arpa.", "PTR"),
    ("1.0.0.172.in-addr.arpa.", "PTR"),
    ("10.0.0.172.in-addr.arpa.", "PTR"),
    ("9.0.0.10.in-addr.arpa.", "PTR"),
]


def test_a_commit_drops_exactly_the_replies_it_may_change() -> None:
    """With the authority's scopes the cache keeps replies of untouched Services across commits,
    and every reply after each kind of change (slices, a Service, ExternalName targets chased
    in-zone, pods in verified mode, nodes behind nodeport SRV, namespaces, PTR) is what the
    codec writes fresh."""
    index = cluster_index()
    router = Router(index, SETTINGS)
    cache = following(router)
    wires = [request(name, qtype, edns=0) for name, qtype in _WATCHED]

    def check() -> set[bytes]:
        hits = set()
        for wire in wires:
            reply, hit = ask(cache, router, wire)
            assert reply == fresh(router, wire), dns.message.from_wire(wire).question
            if hit:
                hits.add(wire)
        return hits

    check()
    assert check() == set(wires)  # all reusable and kept
    objects = {(o.kind, o.meta.namespace, o.meta.name): o for o in fixture_objects()}
    version = SERIAL

    def commit(*events: Any) -> set[bytes]:
        index.apply(events)
        return check()

    def change(new: Any) -> Any:
        nonlocal version
        version += 1
        key = (new.kind, new.meta.namespace, new.meta.name)
        old = objects.get(key)
        objects[key] = new
        return modified(new, old, version)

    dual = request("dual.testns.svc.cluster.local.", "A", edns=0)
    svc1 = request("svc1.testns.svc.cluster.local.", "A", edns=0)
    # A headless endpoint goes unready: hdls1 is asked again, dual is not.
    hits = commit(change(slice_("hdls1-b", "testns", "hdls1", [endpoint("172.0.0.14", hostname="dup-name")], [HTTP])))
    assert dual in hits and request("hdls1.testns.svc.cluster.local.", "A", edns=0) not in hits
    # svc1's endpoints change: its endpoint names are asked again; its own names and the
    # ExternalName chasing it in-zone show its cluster IP, which a slice does not move.
    hits = commit(change(slice_("svc1-abc", "testns", "svc1", [endpoint("172.0.0.77", hostname="ep1a")], [HTTP])))
    assert request("ep1a.svc1.testns.svc.cluster.local.", "A", edns=0) not in hits
    assert {request("external-to-service.testns.svc.cluster.local.", "A", edns=0), svc1, dual} <= hits
    # A Service's cluster IP moves (A and PTR), an ExternalName's target changes.
    commit(change(service("svc1", "testns", "10.0.0.11", ports=[port("http", 80)])))
    commit(change(service("external-to-external", "testns", external="svc6.testns.svc.cluster.local")))
    # Pods (verified mode): the pod name goes away, service replies stay.
    hits = commit(change(pod("running", "testns", "10.244.0.1", phase="Failed")))
    assert svc1 in hits
    # Nodes behind the nodeport SRV.
    commit(change(node("node-a", "10.1.0.99")))
    # Namespaces: ghostns appears, testns goes away, and comes back.
    version += 1
    commit(modified(namespace("ghostns"), None, version))
    version += 1
    hits = commit(deleted(namespace("testns"), version))
    assert not hits & set(wires[:40])
    version += 1
    commit(modified(namespace("testns"), None, version))
    # Many commits that name no Service and move no pod address (pods): however many there
    # are, every reply stays, the apex SOA's too, sent with the last serial (the changes
    # are pushed, no window).
    check()
    for _ in range(70):
        version += 1
        index.apply([modified(objects[("Pod", "testns", "running")], None, version)])
    assert check() == set(wires)


# --- every scope, every kind of write ---------------------------------------------------------

# A question of every class of name: Services and what is below them (positive and
# negative), ExternalName chains, namespaces, pod names, nodes and the NodePort tree, PTR
# and partial reverse names, search-path misses of outside names, names that can never exist.
_EVERY_CLASS = [
    *_WATCHED,
    ("nope.default.svc.cluster.local.", "A"),
    ("new.testns.svc.cluster.local.", "A"),
    ("new.testns.svc.cluster.local.", "AAAA"),
    ("_http._tcp.new.testns.svc.cluster.local.", "SRV"),
    ("_tcp.svc1.testns.svc.cluster.local.", "A"),
    ("default.svc.cluster.local.", "A"),
    ("ghostns.svc.cluster.local.", "A"),
    ("ghostns.pod.cluster.local.", "A"),
    ("www.example.com.testns.svc.cluster.local.", "A"),
    ("www.example.com.svc.cluster.local.", "A"),
    ("www.example.com.cluster.local.", "AAAA"),
    ("google.com.testns.svc.cluster.local.", "A"),
    ("google.com.svc.cluster.local.", "A"),
    ("10-244-0-9.testns.pod.cluster.local.", "A"),
    ("10-244-0-9.default.pod.cluster.local.", "A"),
    ("fd00-244--1.testns.pod.cluster.local.", "AAAA"),
    ("node-c.zone.internal.node.cluster.local.", "A"),
    ("zone.internal.node.cluster.local.", "A"),
    ("node-z.node.cluster.local.", "A"),
    ("lb.testns.nodeport.cluster.local.", "SRV"),
    ("nope.testns.nodeport.cluster.local.", "SRV"),
    ("testns.nodeport.cluster.local.", "A"),
    ("50.0.0.10.in-addr.arpa.", "PTR"),
    ("14.0.0.172.in-addr.arpa.", "PTR"),
    ("0.0.10.in-addr.arpa.", "PTR"),
    ("0.9.10.in-addr.arpa.", "PTR"),
    ("1.0.244.10.in-addr.arpa.", "PTR"),
    ("svc.cluster.local.", "A"),
    ("dns-version.cluster.local.", "TXT"),
    ("dns-version.cluster.local.", "A"),
    ("foo.cluster.local.", "A"),
    ("ns.dns.cluster.local.", "A"),
    ("cluster.local.", "A"),
    ("cluster.local.", "ANY"),
    ("in-addr.arpa.", "SOA"),
    ("in-addr.arpa.", "NS"),
    # Endpoint names beside the ones a write flips, in the same slice or another one.
    ("172-0-0-2.svc1.testns.svc.cluster.local.", "A"),
    ("ep1b.svc1.testns.svc.cluster.local.", "A"),
    ("10-200-0-5.big.testns.svc.cluster.local.", "A"),
    ("10-200-0-5.big.testns.svc.cluster.local.", "SRV"),
    ("10-200-0-6.big.testns.svc.cluster.local.", "A"),
    ("10-200-0-6.big.testns.svc.cluster.local.", "SRV"),
    ("10-200-1-6.big.testns.svc.cluster.local.", "SRV"),
    ("_http._tcp.big.testns.svc.cluster.local.", "SRV"),
    ("5.0.200.10.in-addr.arpa.", "PTR"),
]

_BIG = [endpoint(f"10.200.0.{i + 1}") for i in range(100)]  # the fixture's slice big-a


class _Cluster:
    """The fixture cluster under writes of every kind, each one commit at the next version."""

    def __init__(self) -> None:
        self.objects = {(o.kind, o.meta.namespace, o.meta.name): o for o in fixture_objects()}
        self.index = ClusterIndex(SETTINGS)
        self.index.rebuild(self.objects.values(), SERIAL)
        self.version = SERIAL

    def put(self, *new: Any) -> None:
        events = []
        for obj in new:
            self.version += 1
            key = (obj.kind, obj.meta.namespace, obj.meta.name)
            events.append(modified(obj, self.objects.get(key), self.version))
            self.objects[key] = obj
        self.index.apply(events)

    def delete(self, kind: str, namespace_: str, name: str) -> None:
        obj = self.objects.pop((kind, namespace_, name), None)
        if obj is not None:
            self.version += 1
            self.index.apply([deleted(obj, self.version)])


# Every kind of write the issue names, as (label, what it does). Each may come any number
# of times, in any order: a delete of what is not there is no commit.
_WRITES: dict[str, Callable[[_Cluster], None]] = {
    "flip hdls1 endpoint": lambda c: c.put(slice_(
        "hdls1-b", "testns", "hdls1", [endpoint("172.0.0.12"), endpoint("172.0.0.14", hostname="dup-name")], [HTTP],
    )),
    "flip hdls1 back": lambda c: c.put(slice_("hdls1-b", "testns", "hdls1", [endpoint("172.0.0.12")], [HTTP])),
    "flip ep1a unready": lambda c: c.put(slice_(
        "svc1-abc", "testns", "svc1", [endpoint("172.0.0.1", hostname="ep1a", ready=False), endpoint("172.0.0.2")],
        [HTTP],
    )),
    "flip ep1a ready": lambda c: c.put(slice_(
        "svc1-abc", "testns", "svc1", [endpoint("172.0.0.1", hostname="ep1a"), endpoint("172.0.0.2")], [HTTP],
    )),
    "ep1a moves": lambda c: c.put(slice_(
        "svc1-abc", "testns", "svc1", [endpoint("172.0.0.78", hostname="ep1a")], [HTTP],
    )),
    "ep1a renamed ep1b": lambda c: c.put(slice_(
        "svc1-abc", "testns", "svc1", [endpoint("172.0.0.1", hostname="ep1b"), endpoint("172.0.0.2")], [HTTP],
    )),
    "flip big 10.200.0.5": lambda c: c.put(slice_(
        "big-a", "testns", "big", [*_BIG[:4], endpoint("10.200.0.5", ready=False), *_BIG[5:]], [HTTP],
    )),
    "big-a ports change": lambda c: c.put(slice_("big-a", "testns", "big", _BIG, [eport("http", 8081)])),
    "create service new": lambda c: c.put(service("new", "testns", "10.0.0.50", ports=[port("http", 80)])),
    "delete service new": lambda c: c.delete("Service", "testns", "new"),
    "delete service svc6": lambda c: c.delete("Service", "testns", "svc6"),
    "create service svc6": lambda c: c.put(service("svc6", "testns", "fd00::1", ports=[port("http", 80)])),
    "delete service hdls1": lambda c: c.delete("Service", "testns", "hdls1"),  # its endpoints' PTR go
    "create service hdls1": lambda c: c.put(service("hdls1", "testns", ports=[port("http", 8080)])),
    "create service com with google": lambda c: c.put(
        service("com", "testns", ports=[port("http", 8080)]),
        slice_("com-a", "testns", "com", [endpoint("10.9.0.1", hostname="google")], [HTTP]),
    ),
    "delete slice com-a": lambda c: c.delete("EndpointSlice", "testns", "com-a"),
    "create pod p9": lambda c: c.put(pod("p9", "testns", "10.244.0.9")),
    "delete pod p9": lambda c: c.delete("Pod", "testns", "p9"),
    "pod running fails": lambda c: c.put(pod("running", "testns", "10.244.0.1", phase="Failed")),
    "pod running runs": lambda c: c.put(pod("running", "testns", "10.244.0.1")),
    "node-a moves": lambda c: c.put(node("node-a", "10.1.0.99")),
    "create node-z": lambda c: c.put(node("node-z", "10.1.0.26")),
    "delete node-c": lambda c: c.delete("Node", "", "node-c.zone.internal"),
    "create namespace ghostns": lambda c: c.put(namespace("ghostns")),
    "delete namespace ghostns": lambda c: c.delete("Namespace", "", "ghostns"),
    "delete namespace testns": lambda c: c.delete("Namespace", "", "testns"),
    "create namespace testns": lambda c: c.put(namespace("testns")),
    "external to svc6": lambda c: c.put(service(
        "external-to-external", "testns", external="svc6.testns.svc.cluster.local",
    )),
    "external to external": lambda c: c.put(service(
        "external-to-external", "testns", external="external.testns.svc.cluster.local",
    )),
}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(sorted(_WRITES)), min_size=1, max_size=8))
def test_no_reply_a_commit_changed_is_ever_served(writes: list[str]) -> None:
    """Whatever the writes (Services, slices, pods, Nodes, Namespaces, ExternalName targets),
    every question of every class asked after each commit gets exactly what the codec
    writes fresh: a kept reply is one no commit changed."""
    cluster = _Cluster()
    router = Router(cluster.index, SETTINGS)
    cache = following(router)
    wires = [request(name, qtype, edns=0) for name, qtype in _EVERY_CLASS]
    for wire in wires:
        ask(cache, router, wire)
    for write in writes:
        _WRITES[write](cluster)
        for wire in wires:
            reply, _ = ask(cache, router, wire)
            assert reply == fresh(router, wire), (write, dns.message.from_wire(wire).question)


def test_a_kept_negative_is_sent_with_the_serial_of_a_follower_advance() -> None:
    """A follower's empty change moves the serial and drops nothing: the kept NXDOMAIN and
    NODATA, and the apex SOA, are sent from the cache with the new serial, where the codec
    put it."""
    cluster = _Cluster()
    router = Router(cluster.index, SETTINGS)
    cache = following(router)
    questions = (("nope.testns.svc.cluster.local.", "A"), ("svc1.testns.svc.cluster.local.", "TXT"),
                 ("cluster.local.", "SOA"), ("cluster.local.", "ANY"), ("in-addr.arpa.", "SOA"))
    wires = [request(name, qtype, edns=0) for name, qtype in questions]
    for wire in wires:
        reply, _ = ask(cache, router, wire)
        at = soa_serial_at(reply)
        assert at and reply[at : at + 4] == struct.pack("!I", cluster.version)
    cluster.index.advance(cluster.version + 7)
    for wire in wires:
        reply, kept = ask(cache, router, wire)
        assert kept and reply == fresh(router, wire)
        message = dns.message.from_wire(reply)
        assert (message.authority or message.answer)[0][0].serial == cluster.version + 7


def test_a_kept_negative_shows_the_serial_modulo_2_32_rfc1982() -> None:
    """Past 2^32 - 1 the registry version goes on, and the SOA serial wraps (RFC 1982):
    version 2^32 + 5 shows serial 5, in the codec's fresh reply and in the kept one alike."""
    cluster = _Cluster()
    router = Router(cluster.index, SETTINGS)
    cache = following(router)
    wire = request("nope.testns.svc.cluster.local.", "A", edns=0)
    ask(cache, router, wire)
    for version in (2**32 - 1, 2**32 + 5):
        cluster.index.advance(version)
        reply, kept = ask(cache, router, wire)
        assert kept and reply == fresh(router, wire)
        assert dns.message.from_wire(reply).authority[0][0].serial == version % 2**32
    assert router.serial == 5


def test_a_positive_reply_has_no_soa_serial_to_write() -> None:
    """soa_serial_at: 0 where the answer and authority sections do not end in a SOA."""
    router = Router(cluster_index(), SETTINGS)
    wire = request("svc1.testns.svc.cluster.local.", "A", edns=0)
    assert soa_serial_at(fresh(router, wire)) == 0


class _Warm:
    """A reply cache following a test cluster's Router, holding a ready reply for every
    question of _EVERY_CLASS: the start of each "what does a write drop" test."""

    def __init__(self) -> None:
        self.cluster = _Cluster()
        self.router = Router(self.cluster.index, SETTINGS)
        self.cache = following(self.router)
        self.asked = {(name, qtype): request(name, qtype, edns=0) for name, qtype in _EVERY_CLASS}
        for wire in self.asked.values():
            ask(self.cache, self.router, wire)

    def write(self, name: str) -> None:
        _WRITES[name](self.cluster)

    def missed(self) -> set[tuple[str, str]]:
        """The questions asked again (no ready reply); asking makes their replies ready."""
        return {question for question, wire in self.asked.items() if not ask(self.cache, self.router, wire)[1]}

    def assert_every_reply_fresh(self) -> None:
        for wire in self.asked.values():
            assert ask(self.cache, self.router, wire)[0] == fresh(self.router, wire)


def test_a_readiness_flip_keeps_the_replies_of_everything_else() -> None:
    """After a ClusterIP Service's endpoint goes unready, only that endpoint's name and the
    PTR of its address are asked again: the Service's own names (its cluster IP), what
    chases them, other Services, negatives elsewhere, pods, nodes, PTR of other addresses,
    search-path misses of outside names and the apex SOA (its serial written in) stay kept."""
    warm = _Warm()
    warm.write("flip ep1a unready")
    missed = warm.missed()
    assert missed == {("ep1a.svc1.testns.svc.cluster.local.", "A"), ("1.0.0.172.in-addr.arpa.", "PTR")}
    warm.assert_every_reply_fresh()


def test_a_flip_in_a_slice_keeps_the_other_endpoint_names() -> None:
    """An endpoint going unready drops its own name, the Service's names that list every
    endpoint and its PTR; the Service's other endpoint names, in its slice or in another,
    stay kept (a readiness flip in a StatefulSet's headless Service). A change of a slice's
    ports drops the names of every endpoint in it, and no other slice's."""
    warm = _Warm()

    big = "big.testns.svc.cluster.local."
    warm.write("flip big 10.200.0.5")
    assert warm.missed() == {
        (f"10-200-0-5.{big}", "A"), (f"10-200-0-5.{big}", "SRV"), (f"_http._tcp.{big}", "SRV"),
        ("5.0.200.10.in-addr.arpa.", "PTR"),
    }
    warm.write("big-a ports change")
    dropped = warm.missed()
    assert {(f"10-200-0-5.{big}", "SRV"), (f"10-200-0-6.{big}", "SRV"), (f"_http._tcp.{big}", "SRV")} <= dropped
    assert (f"10-200-1-6.{big}", "SRV") not in dropped  # in big-b
    warm.write("ep1a renamed ep1b")
    assert {("ep1a.svc1.testns.svc.cluster.local.", "A"), ("ep1b.svc1.testns.svc.cluster.local.", "A")} <= warm.missed()
    warm.assert_every_reply_fresh()


def test_a_namespace_change_drops_only_the_names_in_it() -> None:
    """A Namespace appearing asks again only the names below it (and the PTR of what it
    shows); deleting one drops every name in it, and nothing of the other namespaces."""
    warm = _Warm()

    warm.write("create namespace ghostns")
    assert warm.missed() == {  # the namespace, the Service waiting in it, and that Service's PTR
        ("ghostns.svc.cluster.local.", "A"), ("ghostns.pod.cluster.local.", "A"),
        ("ghost.ghostns.svc.cluster.local.", "A"), ("9.0.0.10.in-addr.arpa.", "PTR"),
    }
    warm.write("delete namespace testns")
    dropped = warm.missed()
    assert ("svc1.testns.svc.cluster.local.", "A") in dropped and ("1.0.0.10.in-addr.arpa.", "PTR") in dropped
    assert not {question for question in dropped if "testns" not in question[0] and "in-addr" not in question[0]}
    warm.assert_every_reply_fresh()


def test_a_headless_readiness_flip_drops_the_names_that_list_its_endpoints() -> None:
    """A headless Service's names list its endpoints: a flip of one of them asks them again."""
    warm = _Warm()
    warm.write("flip hdls1 endpoint")
    missed = warm.missed()
    assert {("hdls1.testns.svc.cluster.local.", "A"), ("14.0.0.172.in-addr.arpa.", "PTR")} <= missed
    assert not {("svc1.testns.svc.cluster.local.", "A"), ("cluster.local.", "SOA")} & missed
