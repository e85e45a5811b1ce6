"""DNS over UDP: datagram in, codec, handler, codec, datagram out.

First the fast path: a question answered before, whose answer has not changed, gets the
ready reply from the `AnswerCache` (kdns.wire.fastpath) without being parsed. Otherwise a
handler that answers at once (the authority) is answered inside `datagram_received`,
with no task: that is most packets, and a task per packet would cost more than the
answer. Only a handler that returns an awaitable (forwarding) gets a tracked task, with a
timeout and a cap on how many may be in flight; past the cap, new queries are dropped
(the client retries) rather than let memory grow without bound under a flood.

Answered queries are counted in `QueryStats` (plain ints, read when metrics are scraped);
with an `observe` callback, one query in SAMPLE_EVERY answered at once, and every awaited
one, is timed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Self

from kdns.message import Answer, Handler, Query
from kdns.wire.codec import SERVFAIL, Rejected, from_wire, servfail, to_wire
from kdns.wire.fastpath import MAX_ENTRIES, AnswerCache, QueryStats, question_type

__all__ = ["MAX_IN_FLIGHT", "QUERY_TIMEOUT", "SAMPLE_EVERY", "UdpServer", "discard", "encode_reply", "rcode_of"]

log = logging.getLogger(__name__)

# How long an awaited answer may take before the client gets SERVFAIL: below the 5 s
# after which stub resolvers (glibc, dig) retry, so the client hears back first.
QUERY_TIMEOUT = 4.0
MAX_IN_FLIGHT = 1024
# Timing every query would cost more than answering one from the cache.
SAMPLE_EVERY = 64


def encode_reply(query: Query, result: object, limit: int) -> bytes:
    """The reply bytes for a handler's result; SERVFAIL if it is no Answer or will not pack."""
    if isinstance(result, Answer):
        try:
            return to_wire(query, result, limit)
        except Exception:
            log.exception("cannot encode the answer to %s %s", query.qname, query.qtype)
    else:
        log.error("handler returned %r, not an Answer, for %s %s", result, query.qname, query.qtype)
    return servfail(query)


def rcode_of(reply: bytes) -> int:
    """The (header) rcode of a reply the codec wrote."""
    return reply[3] & 0x0F


class _Protocol(asyncio.DatagramProtocol):
    """The per-socket state: the transport, the handler and the tasks still running."""

    def __init__(
        self,
        handler: Handler,
        timeout: float,
        max_in_flight: int,
        cache: AnswerCache | None,
        stats: QueryStats,
        observe: Callable[[float], None] | None,
    ) -> None:
        self.handler = handler
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.cache = cache
        self.stats = stats
        self.observe = observe
        self.until_sample = SAMPLE_EVERY
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away, and the like.
        log.debug("udp: %s", exc)

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        if self.observe is not None:
            self.until_sample -= 1
            if not self.until_sample:
                self.until_sample = SAMPLE_EVERY
                started = perf_counter()
                if self._answer(data, addr):
                    self.observe(perf_counter() - started)
                return
        self._answer(data, addr)

    def _answer(self, data: bytes, addr: tuple) -> bool:
        """Answer one datagram; False when the answer is left to a task (or never comes)."""
        transport = self.transport
        if transport is None:
            return False
        cache = self.cache
        if cache is not None:
            ready = cache.reply(data, addr[0])
            if ready is not None:
                transport.sendto(ready, addr)
                return True
        try:
            request = from_wire(data, addr[0], "udp")
        except Exception:  # the codec is total; this is a bug, not a bad packet
            log.exception("udp: cannot read a packet from %s", addr[0])
            return False
        if request is None:
            return False
        if isinstance(request, Rejected):
            self.stats.count(question_type(request.reply), request.rcode)
            transport.sendto(request.reply, addr)
            return True
        generation = cache.generation if cache is not None else 0
        try:
            result = self.handler(request)
        except Exception:
            log.exception("handler failed for %s %s", request.qname, request.qtype)
            self.stats.count(request.qtype, SERVFAIL)
            transport.sendto(servfail(request), addr)
            return True
        # The hot path: an Answer (checked first, it is cheap) or anything else not awaitable.
        if isinstance(result, Answer) or not isinstance(result, Awaitable):
            reply = encode_reply(request, result, request.payload)
            if cache is not None:
                cache.store(data, request, result, reply, generation)
            self.stats.count(request.qtype, rcode_of(reply))
            transport.sendto(reply, addr)
            return True
        if len(self.tasks) >= self.max_in_flight:
            self.dropped += 1
            discard(result)
            return False
        task = asyncio.get_running_loop().create_task(self._finish(data, request, result, addr, generation))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return False

    async def _finish(
        self, data: bytes, query: Query, pending: Awaitable[Answer], addr: tuple, generation: int
    ) -> None:
        started = perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                result = await pending
        except TimeoutError:
            log.warning("no answer to %s %s within %s s: SERVFAIL", query.qname, query.qtype, self.timeout)
            reply = servfail(query)
        except Exception:
            log.exception("handler failed for %s %s", query.qname, query.qtype)
            reply = servfail(query)
        else:
            reply = encode_reply(query, result, query.payload)
            if self.cache is not None:
                self.cache.store(data, query, result, reply, generation)
        self.stats.count(query.qtype, rcode_of(reply))
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(reply, addr)
        if self.observe is not None:
            self.observe(perf_counter() - started)


def discard(pending: Awaitable[object]) -> None:
    """Drop an awaitable that will never be awaited, without a 'never awaited' warning."""
    close = getattr(pending, "close", None)  # coroutines
    if close is not None:
        close()
    cancel = getattr(pending, "cancel", None)  # futures
    if cancel is not None:
        cancel()


class UdpServer:
    """A UDP DNS listener on (host, port) as an async context manager; `.port` is the bound port."""

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        timeout: float = QUERY_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
        cache_size: int = MAX_ENTRIES,
        stats: QueryStats | None = None,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        """`cache_size` 0 turns the fast path off (it is off anyway for a handler without
        `generation`); `stats` counts answered queries (share one between UDP and TCP);
        `observe(seconds)` receives sampled answer times."""
        self.host = host
        self.requested_port = port
        self._handler = handler
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self.stats = stats if stats is not None else QueryStats()
        self._observe = observe
        self.cache = (
            AnswerCache.for_handler(handler, self.stats, max_entries=cache_size) if cache_size > 0 else None
        )
        self._protocol: _Protocol | None = None
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def port(self) -> int:
        if self._transport is None:
            raise RuntimeError("the UDP server is not bound")
        return self._transport.get_extra_info("sockname")[1]

    @property
    def in_flight(self) -> int:
        """Queries whose handler is still working."""
        return len(self._protocol.tasks) if self._protocol else 0

    @property
    def dropped(self) -> int:
        """Queries dropped because too many were in flight."""
        return self._protocol.dropped if self._protocol else 0

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        protocol = _Protocol(
            self._handler, self._timeout, self._max_in_flight, self.cache, self.stats, self._observe
        )
        transport, _ = await loop.create_datagram_endpoint(
            lambda: protocol, local_addr=(self.host, self.requested_port)
        )
        self._protocol, self._transport = protocol, transport
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading, give running queries no more time (cancel them), close the socket."""
        transport, self._transport = self._transport, None
        protocol = self._protocol
        if transport is None or protocol is None:
            return
        tasks = list(protocol.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        transport.close()
        # connection_lost runs on a later loop turn; the socket is closed only then.
        await asyncio.wait_for(asyncio.shield(protocol.closed), 1.0)
