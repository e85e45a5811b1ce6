"""Forwarder against real upstream servers on 127.0.0.2x."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE

from kdns.pipeline.forward import (
    Forwarder,
    ForwardingLoop,
    Upstream,
    UpstreamError,
    host_nameservers,
)
from tests.pipeline.helpers import Clock, query, run, texts
from tests.upstream import HandlerFrontend, KnotServer, UpstreamServer, knotd_path

WWW_A = "www.example.test. 300 IN A 192.0.2.1"
NEGATIVE_SOA = "example.test. 60 IN SOA ns1.example.test. hostmaster.example.test. 2024010101 3600 600 86400 60"


def test_forwards_over_udp(upstream: UpstreamServer) -> None:
    """A question goes to the upstream over UDP once and its answer comes back, RA and not AA."""

    async def main() -> None:
        async with Forwarder([upstream.where]) as forwarder:
            answer = await forwarder(query("www.example.test."))
        assert answer.rcode == RCODE.NOERROR
        assert (answer.authoritative, answer.recursion_available) == (False, True)
        assert texts(answer.answer) == [WWW_A]
        assert forwarder.requests == 1

    run(main())
    assert upstream.count(transport="udp") == 1
    assert upstream.count(transport="tcp") == 0


def test_negative_answers_pass_through_with_their_soa(upstream: UpstreamServer) -> None:
    """NXDOMAIN and NODATA are answers, relayed with the upstream's SOA, not failures."""

    async def main() -> None:
        async with Forwarder([upstream.where]) as forwarder:
            nxdomain = await forwarder(query("nope.example.test."))
            nodata = await forwarder(query("www.example.test.", "MX"))
        assert (nxdomain.rcode, texts(nxdomain.authority)) == (RCODE.NXDOMAIN, [NEGATIVE_SOA])
        assert (nodata.rcode, nodata.answer, texts(nodata.authority)) == (
            RCODE.NOERROR,
            (),
            [NEGATIVE_SOA],
        )
        assert forwarder.failures == 0

    run(main())


def test_truncated_udp_reply_is_asked_again_over_tcp(upstream: UpstreamServer) -> None:
    """A UDP reply with TC set makes the Forwarder ask the same upstream over TCP."""
    upstream.mode = "truncate"

    async def main() -> None:
        async with Forwarder([upstream.where]) as forwarder:
            answer = await forwarder(query("www.example.test."))
        assert texts(answer.answer) == [WWW_A]
        assert forwarder.tcp_retries == 1

    run(main())
    assert upstream.count(transport="udp") == 1
    assert upstream.count(transport="tcp") == 1


@pytest.mark.skipif(knotd_path() is None, reason="knotd (Debian package knot) is not installed")
def test_forwards_to_knot_over_udp_and_tcp(tmp_path: Path) -> None:
    """Against knotd: small answers over UDP, a 3 kB TXT set truncated by knot and fetched over TCP."""
    big = "".join(f'big 300 IN TXT "{i:02d} {"x" * 120}"\n' for i in range(25))
    zone = (
        "$TTL 300\n@ SOA ns1 hostmaster 7 3600 600 86400 60\n@ NS ns1\n"
        "ns1 A 127.0.0.23\nwww A 192.0.2.7\n" + big
    )

    async def main(knot: KnotServer) -> None:
        async with Forwarder([knot.where]) as forwarder:
            small = await forwarder(query("WWW.knot.test."))
            assert forwarder.tcp_retries == 0
            large = await forwarder(query("big.knot.test.", "TXT"))
            assert forwarder.tcp_retries == 1
            missing = await forwarder(query("nope.knot.test."))
        assert texts(small.answer) == ["www.knot.test. 300 IN A 192.0.2.7"]
        assert len(large.answer) == 25
        assert missing.rcode == RCODE.NXDOMAIN
        assert [rr.rtype for rr in missing.authority] == [QTYPE.SOA]

    with KnotServer(tmp_path, {"knot.test.": zone}, host="127.0.0.23") as knot:
        run(main(knot))


def test_silent_upstream_gives_servfail_within_the_default_deadline(
    upstream: UpstreamServer,
) -> None:
    """With the default 2 s deadline, an upstream that never answers yields SERVFAIL in about 2 s."""
    upstream.mode = "silent"

    async def main() -> float:
        async with Forwarder([upstream.where]) as forwarder:
            started = time.monotonic()
            answer = await forwarder(query("www.example.test."))
            elapsed = time.monotonic() - started
        assert (answer.rcode, answer.recursion_available) == (RCODE.SERVFAIL, True)
        assert forwarder.servfails == 1
        return elapsed

    elapsed = run(main())
    assert 1.5 <= elapsed < 3.5
    # The per-try timeout (1 s) left time to ask once more: a timeout may be a lost packet.
    assert upstream.count() == 2


def test_fails_over_to_the_second_upstream(
    upstream: UpstreamServer, second: UpstreamServer
) -> None:
    """When the first upstream is silent, the second one's answer is returned after one try timeout."""
    upstream.mode = "silent"

    async def main() -> None:
        async with Forwarder([upstream.where, second.where], try_timeout=0.2) as forwarder:
            started = time.monotonic()
            answer = await forwarder(query("www.example.test."))
            assert time.monotonic() - started < 1.5
        assert texts(answer.answer) == [WWW_A]
        assert (forwarder.failures, forwarder.timeouts) == (1, 1)

    run(main())
    assert (upstream.count(), second.count()) == (1, 1)


def test_servfail_and_refused_move_on_to_the_next_upstream(
    upstream: UpstreamServer, second: UpstreamServer, third: UpstreamServer
) -> None:
    """SERVFAIL and REFUSED from upstreams are failures; the next upstream is asked, each once."""
    upstream.mode, second.mode = "servfail", "refused"

    async def main() -> None:
        async with Forwarder([upstream.where, second.where, third.where]) as forwarder:
            answer = await forwarder(query("www.example.test."))
            assert texts(answer.answer) == [WWW_A]
            third.mode = "servfail"
            failed = await forwarder(query("www.example.test.", "AAAA"))
            assert failed.rcode == RCODE.SERVFAIL

    run(main())
    # Upstreams that answered badly are not asked twice for one question.
    assert (upstream.count(), second.count(), third.count()) == (2, 2, 2)


def test_failing_upstream_is_set_aside_then_asked_again(
    upstream: UpstreamServer, second: UpstreamServer
) -> None:
    """After max_fails failures an upstream is skipped for the backoff, then asked first again."""
    upstream.mode = "servfail"
    clock = Clock()

    async def main() -> None:
        async with Forwarder(
            [upstream.where, second.where], max_fails=2, backoff=30.0, timer=clock
        ) as forwarder:
            for _ in range(2):
                await forwarder(query("www.example.test."))
            assert forwarder.set_aside() == (Upstream.parse(upstream.where),)
            answer = await forwarder(query("www.example.test."))
            assert texts(answer.answer) == [WWW_A]
            assert upstream.count() == 2  # set aside: not asked the third time
            upstream.mode = "answer"
            clock.advance(30.0)
            await forwarder(query("www.example.test."))
            assert upstream.count() == 3
            assert forwarder.set_aside() == ()

    run(main())
    assert second.count() == 3


def test_every_upstream_set_aside_is_still_tried(upstream: UpstreamServer) -> None:
    """When all upstreams are set aside they are asked anyway, so a recovered one is found."""
    upstream.mode = "refused"

    async def main() -> None:
        async with Forwarder([upstream.where], max_fails=1, timer=Clock()) as forwarder:
            assert (await forwarder(query("www.example.test."))).rcode == RCODE.SERVFAIL
            assert forwarder.set_aside() != ()
            upstream.mode = "answer"
            answer = await forwarder(query("www.example.test."))
            assert texts(answer.answer) == [WWW_A]
            assert forwarder.set_aside() == ()

    run(main())


def test_reply_with_another_id_is_not_accepted(
    upstream: UpstreamServer, second: UpstreamServer
) -> None:
    """A reply whose id does not match the query is ignored; the next upstream answers."""
    upstream.mode = "mismatch"

    async def main() -> None:
        async with Forwarder([upstream.where], try_timeout=0.2, deadline=0.5) as alone:
            assert (await alone(query("www.example.test."))).rcode == RCODE.SERVFAIL
        async with Forwarder([upstream.where, second.where], try_timeout=0.2) as forwarder:
            answer = await forwarder(query("www.example.test."))
        assert texts(answer.answer) == [WWW_A]

    run(main())


def test_an_unreadable_reply_is_ignored_as_if_lost(upstream: UpstreamServer, second: UpstreamServer) -> None:
    """A reply with the query's ID and question whose records cannot be read is not the
    answer: the try times out (it may have been spoofed), and the next upstream answers."""
    upstream.mode = "garbled"

    async def main() -> None:
        async with Forwarder([upstream.where], try_timeout=0.2, deadline=0.5) as alone:
            answer = await alone(query("www.example.test."))
        assert answer.rcode == RCODE.SERVFAIL
        assert [error.text for error in answer.errors] == [f"{upstream.where} timed out"]
        async with Forwarder([upstream.where, second.where], try_timeout=0.2) as forwarder:
            answer = await forwarder(query("www.example.test."))
        assert texts(answer.answer) == [WWW_A]

    run(main())


def test_concurrent_identical_questions_share_one_upstream_query(upstream: UpstreamServer) -> None:
    """Ten concurrent askers of one question (in any case) cause one upstream query."""
    upstream.delay = 0.2

    async def main() -> None:
        async with Forwarder([upstream.where]) as forwarder:
            names = ["www.example.test.", "WWW.example.test."] * 5
            answers = await asyncio.gather(*(forwarder(query(n)) for n in names))
        assert all(texts(a.answer) == [WWW_A] for a in answers)
        assert (forwarder.queries, forwarder.coalesced, forwarder.requests) == (10, 9, 1)

    run(main())
    assert upstream.count() == 1


def test_questions_differing_in_type_or_do_bit_are_not_shared(upstream: UpstreamServer) -> None:
    """Coalescing keys on type and DO bit too: three different questions, three upstream queries."""
    upstream.delay = 0.1

    async def main() -> None:
        async with Forwarder([upstream.where]) as forwarder:
            await asyncio.gather(
                forwarder(query("www.example.test.")),
                forwarder(query("www.example.test.", do=True, edns=True)),
                forwarder(query("www.example.test.", "AAAA")),
            )
        assert forwarder.coalesced == 0

    run(main())
    assert upstream.count() == 3


def test_an_asker_going_away_does_not_cancel_the_shared_query(upstream: UpstreamServer) -> None:
    """Cancelling one of two coalesced askers leaves the other its answer."""
    upstream.delay = 0.2

    async def main() -> None:
        async with Forwarder([upstream.where]) as forwarder:
            first = asyncio.ensure_future(forwarder(query("www.example.test.")))
            other = asyncio.ensure_future(forwarder(query("www.example.test.")))
            await asyncio.sleep(0)  # both are waiting on the one exchange
            first.cancel()
            answer = await other
            assert first.cancelled()
        assert texts(answer.answer) == [WWW_A]

    run(main())
    assert upstream.count() == 1


def test_closing_cancels_exchanges_in_flight(upstream: UpstreamServer) -> None:
    """aclose() cancels upstream exchanges still running and waits for them."""
    upstream.mode = "silent"

    async def main() -> None:
        forwarder = Forwarder([upstream.where], deadline=10.0)
        asking = asyncio.ensure_future(forwarder(query("www.example.test.")))
        await asyncio.sleep(0)
        started = time.monotonic()
        await forwarder.aclose()
        with pytest.raises(asyncio.CancelledError):
            await asking
        assert time.monotonic() - started < 1.0

    run(main())


@pytest.mark.parametrize(
    ("upstream", "own"),
    [
        ("127.0.0.1:1053", ("127.0.0.1", 1053)),
        ("127.0.0.1", ("0.0.0.0", 53)),
        ("[::1]:53", ("::", 53)),
        ("[0:0::1]:5353", ("::1", 5353)),
    ],
)
def test_an_upstream_that_is_kdns_itself_is_refused(upstream: str, own: tuple[str, int]) -> None:
    """Forwarding to one of kdns's own listening addresses is a ForwardingLoop at construction."""
    with pytest.raises(ForwardingLoop, match="own listening address"):
        Forwarder([upstream], own_addresses=[own])


def test_an_upstream_on_another_port_or_address_is_not_a_loop() -> None:
    """kdns on 127.0.0.1:1053 may forward to 127.0.0.1:53 or to another address."""
    Forwarder(["127.0.0.1", "192.0.2.1"], own_addresses=[("127.0.0.1", 1053), ("0.0.0.0", 1054)])


def test_a_loop_through_another_resolver_is_detected(upstream: UpstreamServer) -> None:
    """check_loop() raises when the upstream forwards kdns's probe back to kdns."""
    upstream.mode = "relay"

    async def main() -> None:
        async with Forwarder([upstream.where], try_timeout=1.5, deadline=3.0) as forwarder:
            async with HandlerFrontend(forwarder) as kdns:
                upstream.relay_to = (kdns.host, kdns.port)
                with pytest.raises(ForwardingLoop, match="came back to kdns"):
                    await forwarder.check_loop()
            assert forwarder.loops == 1

    run(main())


def test_no_loop_is_reported_for_a_real_upstream(upstream: UpstreamServer) -> None:
    """check_loop() returns quietly when the probe is answered (here REFUSED) and not relayed back."""

    async def main() -> None:
        async with Forwarder([upstream.where]) as forwarder:
            await forwarder.check_loop()
            assert forwarder.loops == 0

    run(main())
    assert upstream.count(qtype="HINFO") == 1


@pytest.mark.parametrize(
    ("text", "address", "port", "shown"),
    [
        ("192.0.2.1", "192.0.2.1", 53, "192.0.2.1:53"),
        ("192.0.2.1:5353", "192.0.2.1", 5353, "192.0.2.1:5353"),
        ("fd00::1", "fd00::1", 53, "[fd00::1]:53"),
        ("[FD00:0::1]:5353", "fd00::1", 5353, "[fd00::1]:5353"),
        ("[fd00::1]", "fd00::1", 53, "[fd00::1]:53"),
    ],
)
def test_upstream_strings(text: str, address: str, port: int, shown: str) -> None:
    """ADDR, ADDR:PORT, bare IPv6 and [IPv6]:PORT parse to one normal spelling."""
    upstream = Upstream.parse(text)
    assert (upstream.address, upstream.port, str(upstream)) == (address, port, shown)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dns.google", "upstream 'dns.google': not an IP address"),
        ("192.0.2.1:dns", "upstream '192.0.2.1:dns': port 'dns' is not a number"),
        ("192.0.2.1:", "upstream '192.0.2.1:': port '' is not a number"),
        ("192.0.2.1:0", "upstream 192.0.2.1:0: port must be between 1 and 65535"),
        ("1.2.3.4:70000", "upstream 1.2.3.4:70000: port must be between 1 and 65535"),
        ("[fd00::1", "upstream '[fd00::1': expected [ADDR]:PORT"),
        ("[fd00::1]x", "upstream '[fd00::1]x': expected [ADDR]:PORT"),
        ("[fd00::1]:", "upstream '[fd00::1]:': port '' is not a number"),
    ],
)
def test_bad_upstream_strings_are_config_errors(text: str, message: str) -> None:
    """Host names, bad ports and broken brackets are UpstreamError, a ConfigError."""
    with pytest.raises(UpstreamError) as info:
        Upstream.parse(text)
    assert str(info.value) == message


def test_a_forwarder_needs_upstreams() -> None:
    """An empty upstream list is a configuration error, not a Forwarder that always fails."""
    with pytest.raises(UpstreamError, match="at least one"):
        Forwarder([])


def test_host_nameservers_reads_resolv_conf_without_kdns(tmp_path: Path) -> None:
    """resolv.conf's nameserver lines become upstreams, kdns's own address left out."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "# generated\nsearch example.test\nnameserver 127.0.0.1\nnameserver 10.0.0.2\n"
        "nameserver fd00::1\nnameserver not-an-address\nnameserver 10.0.0.2\noptions ndots:5\n"
    )
    assert host_nameservers(resolv, exclude=[("127.0.0.1", 53)]) == ("10.0.0.2", "fd00::1")
    assert host_nameservers(resolv, exclude=[("127.0.0.1", 1053)]) == (
        "127.0.0.1",
        "10.0.0.2",
        "fd00::1",
    )
    assert host_nameservers(tmp_path / "missing") == ()
