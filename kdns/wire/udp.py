"""DNS over UDP: datagram in, codec, handler, codec, datagram out.

kdns binds the socket itself, non-blocking, and the event loop calls `_Listener.readable`
when datagrams are waiting: it reads and answers up to BATCH of them, then lets the loop
run timers and the API again. On 64-bit little-endian Linux one recvmmsg reads the batch
and one sendmmsg sends its replies, the ready ones and those the handler made at once
(kdns.wire.mmsg); elsewhere it is a recvfrom and a sendto per datagram. No transport, no
protocol callback per datagram, and with recvmmsg no sender's address turned into a
string and back: what a cached answer costs is then mostly the kernel's delivery of the
two datagrams. (A sendto per made reply cost the slow path a fifth of its CPU: `python
bench/cpu.py --only-kdns --against 4a35fff --edns-option 10:0102030405060708`, every
query with a cookie, 1.03 system calls an answer before and 0.05 after, 84 -> 65 µs an
answer.)

First the fast path: a question answered before, whose answer has not changed, gets the
ready reply from the `AnswerCache` (kdns.wire.fastpath) without being parsed; the handler
tells the cache what changed as it changes (kdns/reuse.py), in other callbacks on the
loop, never in the middle of a batch. Otherwise a handler that answers at once (the
authority) is answered right there, with no task: that is most packets, and a task per
packet would cost more than the answer. Only a handler that returns an awaitable
(forwarding) gets a tracked task, with a timeout and a cap on how many may be in flight;
past the cap, new queries are dropped (the client retries) rather than let memory grow
without bound under a flood. A reply the socket has no room for (its send buffer is
full) is dropped and counted, not queued: the client retries, as for any lost datagram.

Answered queries are counted in `QueryStats` (plain ints, read when metrics are scraped);
with an `observe` callback, one batch in SAMPLE_EVERY is timed and reported as its time
per datagram, and every awaited query is timed. With a `query_log`
(kdns.wire.querylog), every answer is handed to it; without one, the batch loop is the
one that never looks for it, so the log costs nothing when it is off.

`reuse_port` sets SO_REUSEPORT, so that several processes can listen on one port (the
kernel spreads the clients over them).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Self

from kdns.codec import Rejected, from_wire, servfail, to_wire
from kdns.hostport import Peer
from kdns.message import SERVFAIL, Answer, Handler, Query, Source
from kdns.wire import mmsg
from kdns.wire.fastpath import MAX_ENTRIES, AnswerCache, QueryStats, question_type
from kdns.wire.querylog import QueryLog

__all__ = [
    "BATCH",
    "MAX_IN_FLIGHT",
    "QUERY_TIMEOUT",
    "SAMPLE_EVERY",
    "UdpServer",
    "discard",
    "encode_reply",
    "rcode_of",
    "source_of",
]

log = logging.getLogger(__name__)

# How long an awaited answer may take before the client gets SERVFAIL: below the 5 s
# after which stub resolvers (glibc, dig) retry, so the client hears back first.
QUERY_TIMEOUT = 4.0
MAX_IN_FLIGHT = 1024
# Datagrams read per wake-up at most: enough to spread the wake-up's cost, few enough
# (~0.25 ms of work when the fast path answers them) that timers and the API get their
# turns under a flood.
BATCH = 64
# The largest datagram there is, so that no query is ever cut short.
RECEIVE_SIZE = 65535
# Timing every batch would cost more than answering one from the cache.
SAMPLE_EVERY = 64


def encode_reply(query: Query, result: object, limit: int, nsid: bytes = b"") -> bytes:
    """The reply bytes for a handler's result; SERVFAIL if it is no Answer or will not pack."""
    if isinstance(result, Answer):
        try:
            return to_wire(query, result, limit, nsid)
        except Exception:
            log.exception("cannot encode the answer to %s %s", query.qname, query.qtype)
    else:
        log.error("handler returned %r, not an Answer, for %s %s", result, query.qname, query.qtype)
    return servfail(query, nsid)


def source_of(result: object) -> Source:
    """Where a handler's result came from, for the query log: an Answer says; anything
    else became SERVFAIL, kdns's own."""
    return result.source if isinstance(result, Answer) else "server"


def rcode_of(reply: bytes) -> int:
    """The (header) rcode of a reply the codec wrote."""
    return reply[3] & 0x0F


class _Listener:
    """The per-socket state: the socket, the handler and the tasks still running."""

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        timeout: float,
        max_in_flight: int,
        cache: AnswerCache | None,
        stats: QueryStats,
        observe: Callable[[float], None] | None,
        nsid: bytes = b"",
        query_log: QueryLog | None = None,
    ) -> None:
        self.sock = sock
        self.nsid = nsid
        self.query_log = query_log
        self.handler = handler
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.cache = cache
        self.stats = stats
        self.observe = observe
        self.until_sample = SAMPLE_EVERY
        self.tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0
        self.unsent = 0
        self.open = True
        self.batch = mmsg.Batch(sock.fileno(), BATCH, RECEIVE_SIZE) if mmsg.CALLS is not None else None
        # How a wake-up reads and answers, chosen once: with recvmmsg or a datagram at a
        # time, and the loop without the query log never looks for it. (Called straight
        # from `readable`: at a few datagrams a wake-up, each call between the event loop
        # and the batch is a noticeable share of the Python a wake-up runs.)
        self._drain: Callable[[], int]
        if self.batch is None:
            self._drain = self._drain_each
        else:
            self._drain = self._drain_batch if query_log is None else self._drain_batch_logged

    def readable(self) -> None:
        """The loop's reader callback: answer what is waiting, one batch of it."""
        if self.observe is None:
            self._drain()
            return
        self.until_sample -= 1
        if self.until_sample:
            self._drain()
            return
        self.until_sample = SAMPLE_EVERY
        started = perf_counter()
        count = self._drain()
        if count:
            self.observe((perf_counter() - started) / count)

    def _lookup(self) -> Callable[[bytes, str | None], bytes | None]:
        """The fast path's lookup."""
        return _no_reply if self.cache is None else self.cache.lookup

    def _drain_each(self) -> int:
        """Read and answer up to BATCH datagrams, a recvfrom and a sendto each; how many
        there were."""
        recvfrom, sendto = self.sock.recvfrom, self.sock.sendto
        lookup = self._lookup()
        count = 0
        while count < BATCH:
            try:
                data, addr = recvfrom(RECEIVE_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:  # ICMP errors some systems report on a read, and the like
                log.debug("udp: %s", exc)
                break
            count += 1
            ready = lookup(data, addr[0])
            if ready is None:
                reply = self._answer(data, addr)
                if reply is not None:
                    self.send(reply, addr)
                continue
            if self.query_log is not None:  # (the time of a ready reply is the lookup's: ~0)
                self.query_log.record(data, ready, addr[0], addr[1], "udp", 0.0)
            try:
                sendto(ready, addr)
            except BlockingIOError:
                self.unsent += 1
            except OSError as exc:
                log.debug("udp: cannot answer %s: %s", addr[0], exc)
        return count

    def _drain_batch(self) -> int:
        """`_drain_each` with one recvmmsg for the datagrams and one sendmmsg for the
        ready replies."""
        batch = self.batch
        if batch is None:  # closed
            return 0
        try:
            count = batch.receive()
        except OSError as exc:
            log.debug("udp: %s", exc)
            return 0
        cache = self.cache
        others = range(count) if cache is None else batch.queue_ready(count, cache.plain, cache.stats.counts, cache.kept)
        if others:
            lookup = self._lookup()
            for i in others:
                data, addr = batch.datagram(i), batch.peer(i)
                ready = lookup(data, addr[0])
                if ready is None:
                    ready = self._answer(data, addr)
                    if ready is None:
                        continue
                batch.queue(i, ready)
        self.unsent += batch.flush()
        return count

    def _drain_batch_logged(self) -> int:
        """`_drain_batch`, handing every ready reply to the query log too."""
        batch = self.batch
        if batch is None:
            return 0
        try:
            count = batch.receive()
        except OSError as exc:
            log.debug("udp: %s", exc)
            return 0
        assert self.query_log is not None  # (this loop is only chosen with one)
        record = self.query_log.record
        lookup = self._lookup()
        datagram, queue = batch.datagram, batch.queue
        for i in range(count):
            started = perf_counter()
            data, addr = datagram(i), batch.peer(i)
            ready = lookup(data, addr[0])
            if ready is None:
                reply = self._answer(data, addr)  # (logged there)
                if reply is not None:
                    queue(i, reply)
                continue
            record(data, ready, addr[0], addr[1], "udp", perf_counter() - started)
            queue(i, ready)
        self.unsent += batch.flush()
        return count

    def send(self, reply: bytes, addr: Peer) -> None:
        """Send one reply; dropped if the socket has no room for it (the client retries)."""
        if not self.open:
            return
        try:
            self.sock.sendto(reply, addr)
        except BlockingIOError:
            self.unsent += 1
        except OSError as exc:
            log.debug("udp: cannot answer %s: %s", addr[0], exc)

    def _answer(self, data: bytes, addr: Peer) -> bytes | None:
        """Answer a datagram the cache had no reply for: the reply, for the caller to send
        (in the batch's sendmmsg, with the ready replies: a sendto of its own would cost a
        system call and a wake-up of the client of its own),
        or None if there is none yet (a task answers it) or none at all."""
        try:
            request = from_wire(data, addr[0], "udp")
        except Exception:  # the codec is total; this is a bug, not a bad packet
            log.exception("udp: cannot read a packet from %s", addr[0])
            return None
        if request is None:
            return None
        started = perf_counter() if self.query_log is not None else 0.0
        if isinstance(request, Rejected):
            self.stats.count(question_type(request.reply), request.rcode)
            self._logged(data, request.reply, addr, started, "server")
            return request.reply
        cache = self.cache
        epoch = cache.epoch if cache is not None else 0
        try:
            result = self.handler(request)
        except Exception:
            log.exception("handler failed for %s %s", request.qname, request.qtype)
            self.stats.count(request.qtype, SERVFAIL)
            reply = servfail(request, self.nsid)
            self._logged(data, reply, addr, started, "server")
            return reply
        # The hot path: an Answer (checked first, it is cheap) or anything else not awaitable.
        if isinstance(result, Answer) or not isinstance(result, Awaitable):
            reply = encode_reply(request, result, request.payload, self.nsid)
            if cache is not None:
                cache.store(data, request, result, reply, epoch)
            self.stats.count(request.qtype, rcode_of(reply))
            self._logged(data, reply, addr, started, source_of(result))
            return reply
        if len(self.tasks) >= self.max_in_flight:
            self.dropped += 1
            discard(result)
            return None
        task = asyncio.get_running_loop().create_task(self._finish(data, request, result, addr, epoch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return None

    def _logged(self, data: bytes, reply: bytes, addr: Peer, started: float, source: Source) -> None:
        """Hand one slow-path answer to the query log, if there is one."""
        if self.query_log is not None:
            self.query_log.record(data, reply, addr[0], addr[1], "udp", perf_counter() - started, source)

    async def _finish(
        self,
        data: bytes,
        query: Query,
        pending: Awaitable[Answer],
        addr: Peer,
        epoch: int,
    ) -> None:
        started = perf_counter()
        source: Source = "server"
        try:
            async with asyncio.timeout(self.timeout):
                result = await pending
        except TimeoutError:
            log.warning("no answer to %s %s within %s s: SERVFAIL", query.qname, query.qtype, self.timeout)
            reply = servfail(query, self.nsid)
        except Exception:
            log.exception("handler failed for %s %s", query.qname, query.qtype)
            reply = servfail(query, self.nsid)
        else:
            reply = encode_reply(query, result, query.payload, self.nsid)
            source = source_of(result)
            if self.cache is not None:
                self.cache.store(data, query, result, reply, epoch)
        self.stats.count(query.qtype, rcode_of(reply))
        self._logged(data, reply, addr, started, source)
        self.send(reply, addr)
        if self.observe is not None:
            self.observe(perf_counter() - started)


def _no_reply(data: bytes, client: str | None) -> None:
    """The fast path when there is no cache: never a reply."""


def discard(pending: Awaitable[object]) -> None:
    """Drop an awaitable that will never be awaited, without a 'never awaited' warning."""
    close = getattr(pending, "close", None)  # coroutines
    if close is not None:
        close()
    cancel = getattr(pending, "cancel", None)  # futures
    if cancel is not None:
        cancel()


async def _bound_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port): the first address of host's that binds."""
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port is not supported on this system")
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
    )
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error if error is not None else OSError(f"no address to bind for {host!r}")


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
        reuse_port: bool = False,
        nsid: bytes = b"",
        query_log: QueryLog | None = None,
    ) -> None:
        """`cache_size` 0 turns the fast path off (it is off anyway for a handler that is
        not `Reusable`); `stats` counts answered queries (share one between UDP and TCP);
        `observe(seconds)` receives sampled answer times; `reuse_port` lets other sockets
        with it bind the same port (SO_REUSEPORT); `nsid` is sent to askers of NSID
        (RFC 5001); `query_log` gets every answer."""
        self.nsid = nsid
        self.query_log = query_log
        self.host = host
        self.requested_port = port
        self.reuse_port = reuse_port
        self._handler = handler
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self.stats = stats if stats is not None else QueryStats()
        self._observe = observe
        self.cache = (
            AnswerCache.for_handler(handler, self.stats, max_entries=cache_size) if cache_size > 0 else None
        )
        self._listener: _Listener | None = None
        self._fd = -1
        self._unfollow: Callable[[], None] | None = None

    @property
    def port(self) -> int:
        if self._listener is None or not self._listener.open:
            raise RuntimeError("the UDP server is not bound")
        return int(self._listener.sock.getsockname()[1])

    @property
    def in_flight(self) -> int:
        """Queries whose handler is still working."""
        return len(self._listener.tasks) if self._listener else 0

    @property
    def dropped(self) -> int:
        """Queries dropped because too many were in flight."""
        return self._listener.dropped if self._listener else 0

    @property
    def unsent(self) -> int:
        """Replies dropped because the socket's send buffer was full."""
        return self._listener.unsent if self._listener else 0

    def drops(self) -> dict[str, int]:
        """Both kinds of drop, by the reason /metrics names them."""
        return {"in_flight": self.dropped, "send_buffer": self.unsent}

    async def __aenter__(self) -> Self:
        sock = await _bound_socket(self.host, self.requested_port, self.reuse_port)
        try:
            listener = _Listener(
                sock,
                self._handler,
                self._timeout,
                self._max_in_flight,
                self.cache,
                self.stats,
                self._observe,
                self.nsid,
                self.query_log,
            )
            asyncio.get_running_loop().add_reader(sock.fileno(), listener.readable)
        except BaseException:
            sock.close()
            raise
        self._listener, self._fd = listener, sock.fileno()
        if self.cache is not None:
            self._unfollow = self.cache.follow()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading, give running queries no more time (cancel them), close the socket."""
        listener = self._listener
        if listener is None or not listener.open:
            return
        asyncio.get_running_loop().remove_reader(self._fd)
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None
        tasks = list(listener.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        listener.open = False
        listener.batch = None  # its buffers go now
        listener.sock.close()
