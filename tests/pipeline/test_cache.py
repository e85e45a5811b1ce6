"""ResponseCache and CachingForwarder: TTLs, negatives, serve-stale, with an injected clock."""

from __future__ import annotations

import pytest
from dnslib import RCODE, RR
from hypothesis import given
from hypothesis import strategies as st

from kdns.message import Answer, Query
from kdns.pipeline.cache import CachingForwarder, ResponseCache, cache_ttl
from kdns.pipeline.forward import Forwarder
from tests.pipeline.helpers import Clock, query, run, texts
from tests.upstream import UpstreamServer

SOA = "example.test. {ttl} IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 {minimum}"


def answer(rcode: int = RCODE.NOERROR, answer: str = "", authority: str = "") -> Answer:
    """An upstream Answer with sections written as zone text."""
    return Answer(
        rcode=rcode,
        answer=tuple(RR.fromZone(answer)) if answer else (),
        authority=tuple(RR.fromZone(authority)) if authority else (),
        recursion_available=True,
    )


WWW = answer(answer="www.example.test. 300 IN A 192.0.2.1")


@pytest.mark.parametrize(
    ("cached", "ttl"),
    [
        # Positive: the smallest TTL in answer and authority, capped at max_ttl (3600).
        (WWW, 300),
        (answer(answer="a.test. 300 IN CNAME b.test.\nb.test. 60 IN A 192.0.2.2"), 60),
        (answer(answer="a.test. 300 IN A 192.0.2.2", authority="test. 40 IN NS ns.test."), 40),
        (answer(answer="a.test. 86400 IN A 192.0.2.2"), 3600),
        # Negative: min(SOA TTL, SOA MINIMUM) (RFC 2308 section 5), capped at 300.
        (answer(RCODE.NXDOMAIN, authority=SOA.format(ttl=3600, minimum=60)), 60),
        (answer(RCODE.NXDOMAIN, authority=SOA.format(ttl=30, minimum=600)), 30),
        (answer(RCODE.NOERROR, authority=SOA.format(ttl=120, minimum=90)), 90),
        (answer(RCODE.NXDOMAIN, authority=SOA.format(ttl=3600, minimum=3600)), 300),
        (answer(RCODE.NXDOMAIN, "a.test. 20 IN CNAME b.test.", SOA.format(ttl=60, minimum=60)), 20),
        # Never cached: no SOA in a negative, SERVFAIL, REFUSED, TTL 0.
        (answer(RCODE.NXDOMAIN), 0),
        (answer(RCODE.NOERROR, authority="test. 300 IN NS ns.test."), 0),
        (answer(RCODE.SERVFAIL), 0),
        (answer(RCODE.REFUSED, answer="a.test. 300 IN A 192.0.2.2"), 0),
        (answer(answer="a.test. 0 IN A 192.0.2.2"), 0),
    ],
)
def test_how_long_an_answer_is_kept(cached: Answer, ttl: int) -> None:
    """Positive answers keep their smallest TTL, negatives their SOA's, and failures nothing."""
    assert cache_ttl(cached, max_ttl=3600, max_negative_ttl=300) == ttl


def test_ttls_above_the_caps_are_served_capped(clock: Clock) -> None:
    """A record TTL above what the cache keeps is served lowered to it: no client keeps an answer longer than kdns."""
    cache = ResponseCache(max_ttl=60, max_negative_ttl=10, timer=clock)
    cache.store(query("a.test."), answer(answer="a.test. 300 IN CNAME b.test.\nb.test. 30 IN A 192.0.2.2"))
    cache.store(query("nope.example.test."), answer(RCODE.NXDOMAIN, authority=SOA.format(ttl=3600, minimum=60)))
    clock.advance(4)
    assert texts(cache.get(query("a.test.")).answer) == ["a.test. 26 IN CNAME b.test.", "b.test. 26 IN A 192.0.2.2"]
    assert texts(cache.get(query("nope.example.test.")).authority) == [SOA.format(ttl=6, minimum=60)]


def test_a_fresh_entry_counts_down_and_then_expires(clock: Clock) -> None:
    """A hit has every TTL reduced by the entry's whole age; at the TTL it is a miss."""
    cache = ResponseCache(timer=clock)
    assert cache.store(query("www.example.test."), WWW)
    clock.advance(10.7)
    assert texts(cache.get(query("www.example.test.")).answer) == [
        "www.example.test. 290 IN A 192.0.2.1"
    ]
    clock.advance(289)
    assert texts(cache.get(query("www.example.test.")).answer) == [
        "www.example.test. 1 IN A 192.0.2.1"
    ]
    clock.advance(0.3)
    assert cache.get(query("www.example.test.")) is None
    assert (cache.hits, cache.misses) == (2, 1)


def test_serving_does_not_change_the_stored_records(clock: Clock) -> None:
    """Each hit ages a copy: the stored records keep the TTL they arrived with."""
    cache = ResponseCache(timer=clock)
    cache.store(query("www.example.test."), WWW)
    clock.advance(100)
    cache.get(query("www.example.test."))
    assert WWW.answer[0].ttl == 300
    assert texts(cache.get(query("www.example.test.")).answer) == [
        "www.example.test. 200 IN A 192.0.2.1"
    ]


def test_negative_answers_count_down_too(clock: Clock) -> None:
    """A cached NXDOMAIN is served with its SOA aged, and is gone after the SOA minimum."""
    cache = ResponseCache(timer=clock)
    nxdomain = answer(RCODE.NXDOMAIN, authority=SOA.format(ttl=60, minimum=60))
    assert cache.store(query("nope.example.test."), nxdomain)
    clock.advance(15)
    hit = cache.get(query("nope.example.test."))
    assert hit.rcode == RCODE.NXDOMAIN
    assert texts(hit.authority) == [SOA.format(ttl=45, minimum=60)]
    clock.advance(45)
    assert cache.get(query("nope.example.test.")) is None


def test_uncacheable_answers_are_not_stored(clock: Clock) -> None:
    """SERVFAIL and a negative without SOA leave the cache empty."""
    cache = ResponseCache(timer=clock)
    assert not cache.store(query("a.test."), answer(RCODE.SERVFAIL))
    assert not cache.store(query("b.test."), answer(RCODE.NXDOMAIN))
    assert len(cache) == 0


def test_the_key_is_case_insensitive_and_the_asker_spelling_is_kept(clock: Clock) -> None:
    """Another spelling of the name hits, and the owner comes back spelled as that asker wrote it."""
    cache = ResponseCache(timer=clock)
    cache.store(query("www.example.test."), WWW)
    hit = cache.get(query("WWW.Example.TEST."))
    assert texts(hit.answer) == ["WWW.Example.TEST. 300 IN A 192.0.2.1"]


@pytest.mark.parametrize(
    "other",
    [
        query("www.example.test.", "AAAA"),
        query("www.example.test.", do=True),
        query("www.example.test.", cd=True),
        query("web.example.test."),
    ],
)
def test_type_do_and_cd_make_different_questions(clock: Clock, other: Query) -> None:
    """Type, DO bit, CD bit and name are all part of the key."""
    cache = ResponseCache(timer=clock)
    cache.store(query("www.example.test."), WWW)
    assert cache.get(other) is None


def test_the_cache_is_bounded_and_drops_the_least_recently_used(clock: Clock) -> None:
    """A full cache drops the entry used least recently."""
    cache = ResponseCache(2, timer=clock)
    for name in ("a.test.", "b.test."):
        cache.store(query(name), answer(answer=f"{name} 300 IN A 192.0.2.1"))
    cache.get(query("a.test."))
    cache.store(query("c.test."), answer(answer="c.test. 300 IN A 192.0.2.3"))
    assert len(cache) == 2
    assert cache.get(query("b.test.")) is None
    assert cache.get(query("a.test.")) is not None


def test_size_zero_turns_the_cache_off(clock: Clock) -> None:
    """With maxsize 0 nothing is stored."""
    cache = ResponseCache(0, timer=clock)
    assert not cache.store(query("www.example.test."), WWW)
    assert cache.get(query("www.example.test.")) is None


def test_expired_entries_stay_available_as_stale_for_the_window(clock: Clock) -> None:
    """Past its TTL an entry is stale: get misses, get_stale serves it with TTL 30 until the window ends."""
    cache = ResponseCache(stale_window=3600, timer=clock)
    cache.store(query("www.example.test."), WWW)
    assert texts(cache.get_stale(query("www.example.test.")).answer)[0].split()[1] == "300"
    clock.advance(300 + 3599)
    assert cache.get(query("www.example.test.")) is None
    assert texts(cache.get_stale(query("www.example.test.")).answer) == [
        "www.example.test. 30 IN A 192.0.2.1"
    ]
    clock.advance(1)
    assert cache.get_stale(query("www.example.test.")) is None


@given(ttl=st.integers(1, 3600), age=st.floats(0, 7200, allow_nan=False))
def test_served_ttls_never_exceed_the_stored_ttl_nor_go_below_zero(ttl: int, age: float) -> None:
    """Whatever the age, a hit's TTL is the stored TTL less the whole seconds passed, and a miss after."""
    clock = Clock()
    cache = ResponseCache(timer=clock)
    cache.store(query("a.test."), answer(answer=f"a.test. {ttl} IN A 192.0.2.1"))
    clock.advance(age)
    hit = cache.get(query("a.test."))
    if age < ttl:
        assert hit.answer[0].ttl == ttl - int(age)
        assert 1 <= hit.answer[0].ttl <= ttl
    else:
        assert hit is None


def test_caching_forwarder_asks_the_upstream_once(upstream: UpstreamServer, clock: Clock) -> None:
    """The second asker is answered from the cache, TTL counted down; the upstream sees one query."""

    async def main() -> None:
        async with Forwarder([upstream.where]) as forwarder:
            handler = CachingForwarder(ResponseCache(timer=clock), forwarder)
            first = await handler(query("www.example.test."))
            clock.advance(100)
            second = await handler(query("WWW.example.test."))
        assert texts(first.answer) == ["www.example.test. 300 IN A 192.0.2.1"]
        assert texts(second.answer) == ["WWW.example.test. 200 IN A 192.0.2.1"]
        assert handler.cache.hits == 1

    run(main())
    assert upstream.count() == 1


def test_caching_forwarder_keeps_negatives_for_the_soa_minimum(
    upstream: UpstreamServer, clock: Clock
) -> None:
    """An upstream NXDOMAIN is reused for min(SOA TTL, MINIMUM) = 60 s, then asked again."""

    async def main() -> None:
        async with Forwarder([upstream.where]) as forwarder:
            handler = CachingForwarder(ResponseCache(timer=clock), forwarder)
            for _ in range(3):
                assert (await handler(query("nope.example.test."))).rcode == RCODE.NXDOMAIN
                clock.advance(20)
            assert upstream.count() == 1
            assert (await handler(query("nope.example.test."))).rcode == RCODE.NXDOMAIN
        assert upstream.count() == 2

    run(main())


def test_stale_answer_is_served_when_the_upstream_is_gone(
    upstream: UpstreamServer, clock: Clock
) -> None:
    """After the upstream stops, an expired entry is served with TTL 30, and not asked again for 30 s."""

    async def main() -> None:
        async with Forwarder([upstream.where], try_timeout=0.2, deadline=0.4) as forwarder:
            handler = CachingForwarder(ResponseCache(timer=clock), forwarder)
            await handler(query("short.example.test."))  # TTL 30 in the zone
            upstream.stop()
            clock.advance(31)
            stale = await handler(query("short.example.test."))
            assert stale.rcode == RCODE.NOERROR
            assert texts(stale.answer) == ["short.example.test. 30 IN A 192.0.2.30"]
            assert handler.cache.stale_hits == 1
            requests = forwarder.requests
            clock.advance(10)
            again = await handler(query("short.example.test."))
            assert texts(again.answer) == texts(stale.answer)
            assert forwarder.requests == requests  # RFC 8767: no refresh within 30 s
            clock.advance(21)
            await handler(query("short.example.test."))
            assert forwarder.requests > requests

    run(main())


def test_servfail_when_nothing_is_cached_and_no_upstream_answers(
    upstream: UpstreamServer, clock: Clock
) -> None:
    """With no entry to fall back on, the SERVFAIL stands and is not cached."""
    upstream.mode = "silent"

    async def main() -> None:
        async with Forwarder([upstream.where], try_timeout=0.1, deadline=0.2) as forwarder:
            handler = CachingForwarder(ResponseCache(timer=clock), forwarder)
            assert (await handler(query("www.example.test."))).rcode == RCODE.SERVFAIL
            upstream.mode = "answer"
            assert texts((await handler(query("www.example.test."))).answer) == [
                "www.example.test. 300 IN A 192.0.2.1"
            ]

    run(main())


def test_lookup_answers_a_hit_without_awaiting(upstream: UpstreamServer, clock: Clock) -> None:
    """lookup() returns a cached Answer directly and an awaitable only on a miss."""

    async def main() -> None:
        async with Forwarder([upstream.where]) as forwarder:
            handler = CachingForwarder(ResponseCache(timer=clock), forwarder)
            pending = handler.lookup(query("www.example.test."))
            assert not isinstance(pending, Answer)
            assert texts((await pending).answer) == ["www.example.test. 300 IN A 192.0.2.1"]
            hit = handler.lookup(query("www.example.test."))
            assert isinstance(hit, Answer)
            assert texts(hit.answer) == ["www.example.test. 300 IN A 192.0.2.1"]

    run(main())
    assert upstream.count() == 1
