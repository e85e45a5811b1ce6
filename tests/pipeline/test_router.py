"""The Router in process: authority, static zones, ACL, forwarding, chasing, fallthrough, autopath.

The upstreams are real DNS servers on 127.0.0.2x (tests/upstream.py) that count what
they receive, so "never sent upstream" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE

from kdns.authority.index import ClusterIndex
from kdns.authority.static import StaticZones
from kdns.config import Settings
from kdns.message import Answer, Query
from kdns.pipeline.cache import CachingForwarder, ResponseCache
from kdns.pipeline.chain import Router
from kdns.pipeline.forward import Forwarder
from kdns.registry.objects import Event
from kdns.reuse import PRIVATE, Forwarded, ServiceScope, Shared
from kdns.zonefiles import load_zones
from tests.authority.cluster import namespace, pod, port, service
from tests.pipeline.helpers import run, texts
from tests.upstream import UpstreamServer

Z = "cluster.local."
SERIAL = 7
POD_IP = "10.244.0.5"  # a pod of namespace default
SHOP_POD_IP = "10.244.1.5"  # a pod of namespace shop
STRANGER = "203.0.113.9"  # outside every --allow-recursion default range
OBJECTS = [
    namespace("default"),
    namespace("shop"),
    service("web", "shop", "10.96.0.10", ports=[port("http", 80)]),
    service("ext", "default", external="www.example.test"),
    service("ext-missing", "default", external="nope.example.test"),
    service("ext-static", "default", external="www.example.internal"),
    pod("app", "default", POD_IP),
    pod("shopper", "shop", SHOP_POD_IP),
]
WWW_A = "www.example.test. 300 IN A 192.0.2.1"
UPSTREAM_SOA = "example.test. 60 IN SOA ns1.example.test. hostmaster.example.test. 2024010101 3600 600 86400 60"
CLUSTER_SOA = f"{Z} 5 IN SOA ns.dns.{Z} hostmaster.{Z} {SERIAL} 7200 1800 86400 5"
STATIC = """\
$TTL 300
@    IN SOA ns1 hostmaster 3 3600 600 86400 60
@    IN NS  ns1
ns1  IN A   192.0.2.53
www  IN A   192.0.2.80
api  IN CNAME web.shop.svc.cluster.local.
out  IN CNAME www.example.test.
"""
REVERSE = """\
$TTL 300
@    IN SOA ns1.example.test. hostmaster.example.test. 9 3600 600 86400 60
@    IN NS  ns1.example.test.
1    IN PTR www.example.test.
"""


def q(qname: str, qtype: str = "A", *, client: str | None = "127.0.0.1", **fields: Any) -> Query:
    """A Query as the codec builds it for a packet from `client`."""
    return Query(id=1, qname=qname, qtype=getattr(QTYPE, qtype), client=client, **fields)


async def ask(router: Router, query: Query) -> Answer:
    """The Router's answer, awaited if it is not there at once."""
    result = router(query)
    return result if isinstance(result, Answer) else await result


def at_once(router: Router, query: Query) -> Answer:
    """The Router's answer, which must come without an await (no task on the wire side)."""
    result = router(query)
    assert isinstance(result, Answer), f"{query.qname} needed an await"
    return result


@asynccontextmanager
async def routed(
    upstreams: Sequence[str] = (), static: StaticZones | None = None, **overrides: Any
) -> AsyncIterator[Router]:
    """A Router over OBJECTS, forwarding (with a cache) to `upstreams` if there are any."""
    settings = Settings(manifests=(), zones_dir=None, upstreams=tuple(upstreams), **overrides)
    index = ClusterIndex(settings)
    index.rebuild(OBJECTS, SERIAL)
    if not upstreams:
        yield Router(index, settings, static=static)
        return
    async with Forwarder(upstreams, try_timeout=0.5, deadline=1.0) as forwarder:
        cached = CachingForwarder(ResponseCache(100), forwarder)
        yield Router(index, settings, static=static, forward=cached)


@pytest.fixture
def zones(tmp_path: Path) -> StaticZones:
    (tmp_path / "example.internal.zone").write_text(STATIC)
    return load_zones(tmp_path)


def test_cluster_names_are_answered_at_once_and_never_upstream(upstream: UpstreamServer) -> None:
    """Cluster answers, positive or negative, come without an await and the upstream hears nothing."""

    async def main() -> None:
        async with routed([upstream.where]) as router:
            found = at_once(router, q(f"web.shop.svc.{Z}"))
            missing = at_once(router, q(f"nope.shop.svc.{Z}"))
        assert texts(found.answer) == [f"web.shop.svc.{Z} 5 IN A 10.96.0.10"]
        assert (missing.rcode, texts(missing.authority)) == (RCODE.NXDOMAIN, [CLUSTER_SOA])

    run(main())
    assert upstream.count() == 0


def test_outside_names_are_refused_without_a_forwarder() -> None:
    """With forwarding off a name in no served zone is REFUSED, RA and AA clear."""

    async def main() -> None:
        async with routed() as router:
            answer = at_once(router, q("www.example.test."))
        assert (answer.rcode, answer.authoritative, answer.recursion_available) == (RCODE.REFUSED, False, False)

    run(main())


def test_outside_names_are_forwarded_then_answered_from_the_cache(upstream: UpstreamServer) -> None:
    """The first question goes upstream (an awaitable), the second is a cache hit answered at once."""

    async def main() -> None:
        async with routed([upstream.where]) as router:
            first = router(q("www.example.test."))
            assert not isinstance(first, Answer)
            answer = await first
            again = at_once(router, q("WWW.example.test."))
        assert (answer.rcode, answer.recursion_available, texts(answer.answer)) == (RCODE.NOERROR, True, [WWW_A])
        assert texts(again.answer) == ["WWW.example.test. 300 IN A 192.0.2.1"]

    run(main())
    assert upstream.count("www.example.test.") == 1


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("192.168.7.7", True),
        ("::ffff:10.1.2.3", True),  # a dual-stack socket's IPv4 client
        ("fd12::1", True),
        (STRANGER, False),
        ("2001:db8::1", False),
        (None, False),  # no source address: not from a client kdns may serve
        ("not-an-address", False),
    ],
)
def test_recursion_acl(upstream: UpstreamServer, client: str | None, allowed: bool) -> None:
    """Only clients in --allow-recursion (loopback and private ranges by default) get outside names; others get REFUSED."""

    async def main() -> Answer:
        async with routed([upstream.where]) as router:
            return await ask(router, q("www.example.test.", client=client))

    answer = run(main())
    if allowed:
        assert (answer.rcode, texts(answer.answer)) == (RCODE.NOERROR, [WWW_A])
    else:
        assert (answer.rcode, answer.recursion_available, answer.answer) == (RCODE.REFUSED, False, ())
    assert upstream.count() == (1 if allowed else 0)


def test_a_narrow_acl_replaces_the_default(upstream: UpstreamServer) -> None:
    """--allow-recursion 127.0.0.5/32 lets 127.0.0.5 recurse and refuses 127.0.0.1."""
    import ipaddress

    async def main() -> tuple[Answer, Answer]:
        acl = (ipaddress.ip_network("127.0.0.5/32"),)
        async with routed([upstream.where], allow_recursion=acl) as router:
            return (
                await ask(router, q("www.example.test.", client="127.0.0.5")),
                await ask(router, q("www.example.test.", client="127.0.0.1")),
            )

    allowed, refused = run(main())
    assert (allowed.rcode, refused.rcode) == (RCODE.NOERROR, RCODE.REFUSED)


def test_rd_clear_is_answered_from_the_cache_only(upstream: UpstreamServer) -> None:
    """RD=0 for an outside name: REFUSED (RA set) until the cache holds it, then the cached answer; never upstream."""

    async def main() -> tuple[Answer, Answer]:
        async with routed([upstream.where]) as router:
            before = at_once(router, q("www.example.test.", rd=False))
            await ask(router, q("www.example.test."))
            return before, at_once(router, q("www.example.test.", rd=False))

    before, after = run(main())
    assert (before.rcode, before.recursion_available) == (RCODE.REFUSED, True)
    assert texts(after.answer) == [WWW_A]
    assert upstream.count() == 1


def test_static_zones_answer_every_client_at_once(upstream: UpstreamServer, zones: StaticZones) -> None:
    """A static zone is authoritative for everyone, stranger included, and never asks upstream."""

    async def main() -> tuple[Answer, Answer, Answer]:
        async with routed([upstream.where], static=zones) as router:
            return (
                at_once(router, q("www.example.internal.", client=STRANGER)),
                at_once(router, q("nope.example.internal.", client=STRANGER)),
                at_once(router, q("nope.example.internal.")),  # a client that may recurse: no fallthrough
            )

    found, *missing = run(main())
    assert (found.authoritative, texts(found.answer)) == (True, ["www.example.internal. 300 IN A 192.0.2.80"])
    for negative in missing:
        assert (negative.rcode, negative.authoritative) == (RCODE.NXDOMAIN, True)
        assert texts(negative.authority) == [
            "example.internal. 60 IN SOA ns1.example.internal. hostmaster.example.internal. 3 3600 600 86400 60"
        ]
    assert upstream.count() == 0


def test_static_alias_into_the_cluster_is_followed(zones: StaticZones) -> None:
    """A static CNAME to a cluster Service is followed into the cluster zone, at once."""

    async def main() -> Answer:
        async with routed(static=zones) as router:
            return at_once(router, q("api.example.internal."))

    answer = run(main())
    assert texts(answer.answer) == [
        f"api.example.internal. 300 IN CNAME web.shop.svc.{Z}",
        f"web.shop.svc.{Z} 5 IN A 10.96.0.10",
    ]


def test_static_alias_to_an_outside_name_is_followed_upstream(upstream: UpstreamServer, zones: StaticZones) -> None:
    """A static CNAME to an outside name gets the target's records from upstream for a client that may recurse."""

    async def main() -> tuple[Answer, Answer]:
        async with routed([upstream.where], static=zones) as router:
            return (
                await ask(router, q("out.example.internal.")),
                await ask(router, q("out.example.internal.", client=STRANGER)),
            )

    chased, alone = run(main())
    assert texts(chased.answer) == ["out.example.internal. 300 IN CNAME www.example.test.", WWW_A]
    assert (chased.authoritative, chased.recursion_available) == (True, True)
    assert texts(alone.answer) == ["out.example.internal. 300 IN CNAME www.example.test."]
    assert upstream.count() == 1


def test_search_path_storm_never_reaches_the_upstream(upstream: UpstreamServer) -> None:
    """Every ndots:5 expansion of an outside name is NXDOMAIN at once; only the name itself goes upstream, once."""
    expansions = [
        f"www.example.test.default.svc.{Z}",
        f"www.example.test.svc.{Z}",
        f"www.example.test.{Z}",
    ]

    async def main() -> list[Answer]:
        async with routed([upstream.where]) as router:
            answers = []
            for _ in range(3):  # three pods, each asking A and AAAA
                for qtype in ("A", "AAAA"):
                    answers.extend(at_once(router, q(name, qtype, client=POD_IP)) for name in expansions)
                    answers.append(await ask(router, q("www.example.test.", qtype, client=POD_IP)))
            return answers

    answers = run(main())
    assert [a.rcode for a in answers].count(RCODE.NXDOMAIN) == 18
    assert all(a.authoritative for a in answers if a.rcode == RCODE.NXDOMAIN)
    assert upstream.received == [
        r for r in upstream.received if r.qname == "www.example.test."
    ], "an expansion reached the upstream"
    assert (upstream.count("www.example.test.", "A"), upstream.count("www.example.test.", "AAAA")) == (1, 1)


def test_concurrent_identical_questions_share_one_upstream_query(upstream: UpstreamServer) -> None:
    """Twenty askers of one uncached name at the same time cause one upstream query."""
    upstream.delay = 0.2

    async def main() -> list[Answer]:
        async with routed([upstream.where]) as router:
            return await asyncio.gather(*(ask(router, q("www.example.test.")) for _ in range(20)))

    answers = run(main())
    assert all(texts(a.answer) == [WWW_A] for a in answers)
    assert upstream.count() == 1


@pytest.fixture
def reverse() -> Any:
    with UpstreamServer(REVERSE, "2.0.192.in-addr.arpa.", host="127.0.0.26") as server:
        yield server


def test_unknown_addresses_fall_through_to_the_upstream(reverse: UpstreamServer) -> None:
    """PTR for an address the registry does not know is asked upstream; a known one never is."""

    async def main() -> tuple[Answer, Answer, Answer]:
        async with routed([reverse.where]) as router:
            return (
                await ask(router, q("1.2.0.192.in-addr.arpa.", "PTR")),
                await ask(router, q("2.2.0.192.in-addr.arpa.", "PTR")),
                at_once(router, q("10.0.96.10.in-addr.arpa.", "PTR")),
            )

    upstream_ptr, upstream_nx, known = run(main())
    assert texts(upstream_ptr.answer) == ["1.2.0.192.in-addr.arpa. 300 IN PTR www.example.test."]
    assert (upstream_ptr.authoritative, upstream_ptr.recursion_available) == (False, True)
    assert upstream_nx.rcode == RCODE.NXDOMAIN
    assert texts(upstream_nx.authority) == [
        "2.0.192.in-addr.arpa. 60 IN SOA ns1.example.test. hostmaster.example.test. 9 3600 600 86400 60"
    ]
    assert texts(known.answer) == [f"10.0.96.10.in-addr.arpa. 5 IN PTR web.shop.svc.{Z}"]
    assert reverse.count() == 2


def test_unknown_addresses_stay_nxdomain_without_recursion(reverse: UpstreamServer) -> None:
    """Without a forwarder, or for a client that may not recurse, an unknown address is NXDOMAIN with the reverse SOA."""
    soa = f"in-addr.arpa. 5 IN SOA ns.dns.{Z} hostmaster.{Z} {SERIAL} 7200 1800 86400 5"

    async def main() -> tuple[Answer, Answer]:
        async with routed() as plain, routed([reverse.where]) as forwarding:
            return (
                at_once(plain, q("1.2.0.192.in-addr.arpa.", "PTR")),
                at_once(forwarding, q("1.2.0.192.in-addr.arpa.", "PTR", client=STRANGER)),
            )

    for answer in run(main()):
        assert (answer.rcode, answer.authoritative, texts(answer.authority)) == (RCODE.NXDOMAIN, True, [soa])
    assert reverse.count() == 0


def test_a_static_zone_inside_a_reverse_zone_wins(tmp_path: Path, reverse: UpstreamServer) -> None:
    """A static 2.0.192.in-addr.arpa. zone answers its names itself: the closest enclosing zone wins."""
    (tmp_path / "2.0.192.in-addr.arpa.zone").write_text(REVERSE.replace("www.example.test.", "static.example."))

    async def main() -> tuple[Answer, Answer]:
        async with routed([reverse.where], static=load_zones(tmp_path)) as router:
            return at_once(router, q("1.2.0.192.in-addr.arpa.", "PTR")), at_once(router, q("2.2.0.192.in-addr.arpa.", "PTR"))

    found, missing = run(main())
    assert texts(found.answer) == ["1.2.0.192.in-addr.arpa. 300 IN PTR static.example."]
    assert (missing.rcode, missing.authoritative) == (RCODE.NXDOMAIN, True)
    assert reverse.count() == 0


def test_a_static_zone_equal_to_the_cluster_zone_is_ignored(tmp_path: Path) -> None:
    """A static cluster.local. zone is shadowed: the registry answers, and the Router says so."""
    (tmp_path / "cluster.local.zone").write_text(STATIC)

    async def main() -> tuple[Router, Answer]:
        async with routed(static=load_zones(tmp_path)) as router:
            return router, at_once(router, q(f"web.shop.svc.{Z}"))

    router, answer = run(main())
    assert router.shadowed == (Z,)
    assert texts(answer.answer) == [f"web.shop.svc.{Z} 5 IN A 10.96.0.10"]


def test_external_name_outside_the_cluster_gets_the_target_records(upstream: UpstreamServer) -> None:
    """ExternalName to an outside name: the CNAME plus the target's records from upstream (docs/dns-rules.md R30)."""

    async def main() -> Answer:
        async with routed([upstream.where]) as router:
            return await ask(router, q(f"ext.default.svc.{Z}"))

    answer = run(main())
    assert texts(answer.answer) == [f"ext.default.svc.{Z} 5 IN CNAME www.example.test.", WWW_A]
    assert (answer.rcode, answer.authoritative, answer.recursion_available, answer.authority) == (
        RCODE.NOERROR,
        True,
        True,
        (),
    )


def test_external_name_to_a_missing_name_is_nxdomain_with_the_upstream_soa(upstream: UpstreamServer) -> None:
    """A target the upstream says does not exist makes the answer NXDOMAIN with the CNAME and that SOA (RFC 6604)."""

    async def main() -> Answer:
        async with routed([upstream.where]) as router:
            return await ask(router, q(f"ext-missing.default.svc.{Z}"))

    answer = run(main())
    assert answer.rcode == RCODE.NXDOMAIN
    assert texts(answer.answer) == [f"ext-missing.default.svc.{Z} 5 IN CNAME nope.example.test."]
    assert texts(answer.authority) == [UPSTREAM_SOA]


@pytest.mark.parametrize("mode", ["servfail", "refused", "silent"])
def test_external_name_keeps_the_cname_when_the_upstream_fails(upstream: UpstreamServer, mode: str) -> None:
    """An upstream failure leaves the CNAME alone with NOERROR: never NXDOMAIN for a failure."""
    upstream.mode = mode

    async def main() -> Answer:
        async with routed([upstream.where]) as router:
            return await ask(router, q(f"ext.default.svc.{Z}"))

    answer = run(main())
    assert (answer.rcode, texts(answer.answer)) == (RCODE.NOERROR, [f"ext.default.svc.{Z} 5 IN CNAME www.example.test."])


def test_external_name_without_recursion_is_the_cname_alone(upstream: UpstreamServer, zones: StaticZones) -> None:
    """A stranger gets the CNAME alone (nothing is asked upstream); a target in a static zone is followed for anyone."""

    async def main() -> tuple[Answer, Answer]:
        async with routed([upstream.where], static=zones) as router:
            return (
                at_once(router, q(f"ext.default.svc.{Z}", client=STRANGER)),
                at_once(router, q(f"ext-static.default.svc.{Z}", client=STRANGER)),
            )

    alone, static = run(main())
    assert texts(alone.answer) == [f"ext.default.svc.{Z} 5 IN CNAME www.example.test."]
    assert texts(static.answer) == [
        f"ext-static.default.svc.{Z} 5 IN CNAME www.example.internal.",
        "www.example.internal. 300 IN A 192.0.2.80",
    ]
    assert upstream.count() == 0


# --- autopath --------------------------------------------------------------------------


def test_autopath_answers_a_pods_first_expansion_for_good(upstream: UpstreamServer) -> None:
    """A default pod asking www.example.test.default.svc.<zone> gets a CNAME to www.example.test. and its A at once."""

    async def main() -> Answer:
        async with routed([upstream.where], autopath=True) as router:
            return await ask(router, q(f"www.example.test.default.svc.{Z}", client=POD_IP))

    answer = run(main())
    assert answer.rcode == RCODE.NOERROR
    assert texts(answer.answer) == [f"www.example.test.default.svc.{Z} 5 IN CNAME www.example.test.", WWW_A]
    assert answer.authoritative
    assert [(r.qname, r.qtype) for r in upstream.received] == [("www.example.test.", "A")]


@pytest.mark.parametrize(
    ("qname", "target", "records"),
    [
        # `web.shop` from namespace default: the second search domain holds it.
        (f"web.shop.default.svc.{Z}", f"web.shop.svc.{Z}", [f"web.shop.svc.{Z} 5 IN A 10.96.0.10"]),
        # A full cluster name without the trailing dot (4 dots < ndots 5).
        (f"web.shop.svc.{Z}default.svc.{Z}", f"web.shop.svc.{Z}", [f"web.shop.svc.{Z} 5 IN A 10.96.0.10"]),
    ],
)
def test_autopath_finds_cluster_names_further_down_the_search_list(
    upstream: UpstreamServer, qname: str, target: str, records: list[str]
) -> None:
    """Autopath walks the pod's whole search list, cluster zone first, and asks nothing upstream for a cluster name."""

    async def main() -> Answer:
        async with routed([upstream.where], autopath=True) as router:
            return at_once(router, q(qname, client=POD_IP))

    answer = run(main())
    assert texts(answer.answer) == [f"{qname} 5 IN CNAME {target}", *records]
    assert upstream.count() == 0


@pytest.mark.parametrize(
    ("qname", "client", "autopath"),
    [
        (f"www.example.test.default.svc.{Z}", POD_IP, False),  # autopath off (the default)
        (f"www.example.test.default.svc.{Z}", "10.9.9.9", True),  # not a pod
        (f"www.example.test.default.svc.{Z}", SHOP_POD_IP, True),  # a pod of another namespace
        (f"nosuchservice.default.svc.{Z}", POD_IP, True),  # no dot: a missing Service
        (f"nope.example.test.default.svc.{Z}", POD_IP, True),  # nothing anywhere
    ],
)
def test_autopath_leaves_other_questions_nxdomain(
    upstream: UpstreamServer, qname: str, client: str, autopath: bool
) -> None:
    """Autopath answers only a known pod's own first expansion of a name that exists; the rest stays NXDOMAIN with the cluster SOA."""

    async def main() -> Answer:
        async with routed([upstream.where], autopath=autopath) as router:
            return await ask(router, q(qname, client=client))

    answer = run(main())
    assert (answer.rcode, answer.answer, texts(answer.authority)) == (RCODE.NXDOMAIN, (), [CLUSTER_SOA])
    expected = 1 if qname.startswith("nope.") else 0  # the walk asked for nope.example.test.
    assert upstream.count() == expected


def test_autopath_to_a_name_with_no_such_type_is_the_cname_and_nodata(upstream: UpstreamServer) -> None:
    """A candidate that exists without the asked type gives CNAME + NODATA with the target's SOA."""

    async def main() -> Answer:
        async with routed([upstream.where], autopath=True) as router:
            return await ask(router, q(f"www.example.test.default.svc.{Z}", "MX", client=POD_IP))

    answer = run(main())
    assert answer.rcode == RCODE.NOERROR
    assert texts(answer.answer) == [f"www.example.test.default.svc.{Z} 5 IN CNAME www.example.test."]
    assert texts(answer.authority) == [UPSTREAM_SOA]


# --- reuse marks for the wire layer's ready replies -------------------------------------


def test_changes_are_told_for_commits_and_reloads(zones: StaticZones) -> None:
    """Router.on_change hears each registry commit with the scopes it touched and each
    static-zone swap as None (anything may change), until it is stopped."""

    async def main() -> list[object]:
        async with routed() as router:
            heard: list[object] = []
            stop = router.on_change(heard.append)
            router.static = zones
            router._index.rebuild(OBJECTS, SERIAL + 1)
            router._index.apply([Event("MODIFIED", OBJECTS[2], None, SERIAL + 2)])
            stop()
            router.static = zones
            return heard

    assert run(main()) == [None, None, frozenset({ServiceScope("shop", "web")})]  # the same cluster IP: no PTR


def test_answers_the_same_for_every_client_are_marked_reusable(upstream: UpstreamServer, zones: StaticZones) -> None:
    """Cluster, static and locally chased answers, and REFUSED with forwarding off, may be sent again to anyone."""

    async def main() -> list[Answer]:
        async with routed(static=zones) as plain, routed([upstream.where], static=zones) as forwarding:
            return [
                at_once(plain, q("www.example.test.", client=STRANGER)),
                at_once(plain, q(f"ext.default.svc.{Z}")),  # no forwarder: the CNAME alone for all
                at_once(forwarding, q(f"web.shop.svc.{Z}", client=STRANGER)),
                at_once(forwarding, q(f"nope.shop.svc.{Z}")),
                at_once(forwarding, q("api.example.internal.", client=STRANGER)),
                at_once(forwarding, q(f"ext-static.default.svc.{Z}", client=STRANGER)),
            ]

    for answer in run(main()):
        assert isinstance(answer.reuse, Shared), answer


def test_answers_that_depend_on_the_client_are_never_reused(upstream: UpstreamServer, reverse: UpstreamServer) -> None:
    """The ACL's REFUSED, a stranger's CNAME alone or reverse NXDOMAIN, autopath's answers and NXDOMAINs are the client's own."""

    async def main() -> list[Answer]:
        async with routed([upstream.where, reverse.where], autopath=True) as router:
            return [
                at_once(router, q("www.example.test.", client=STRANGER)),
                at_once(router, q("www.example.test.", rd=False)),
                at_once(router, q(f"ext.default.svc.{Z}", client=STRANGER)),
                at_once(router, q("9.9.0.192.in-addr.arpa.", "PTR", client=STRANGER)),
                await ask(router, q(f"www.example.test.default.svc.{Z}", client=POD_IP)),
                at_once(router, q(f"www.example.test.default.svc.{Z}", client=STRANGER)),
            ]

    for answer in run(main()):
        assert answer.reuse == PRIVATE, answer


def test_forwarded_answers_are_reusable_only_until_their_ttls_count_down(upstream: UpstreamServer) -> None:
    """Answers from upstream or the cache are marked forwarded and reusable for at most a second."""

    async def main() -> list[Answer]:
        async with routed([upstream.where]) as router:
            return [
                await ask(router, q("www.example.test.")),
                at_once(router, q("www.example.test.")),
                await ask(router, q(f"ext.default.svc.{Z}")),
            ]

    for answer in run(main()):
        assert isinstance(answer.reuse, Forwarded) and 0 < answer.reuse.seconds <= 1, answer
