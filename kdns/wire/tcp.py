"""DNS over TCP: 2-byte length framing, pipelined queries, idle timeout (RFC 7766).

A client may send several queries on one connection without waiting; answers that are
ready at once are written in order, awaited ones when they are ready, so replies may come
back out of order (RFC 7766 §6.2.1.1; clients match them by ID). A connection that sends
a length too short for a DNS header, or stops mid-message, or stays idle, is closed.

The idle timeout adapts to load, as Knot's does (RFC 7766 §6.2.3: "servers MAY close
idle connections... especially under load"): 10 s while at most half of the connection
slots are taken, and BUSY_IDLE_TIMEOUT (a quarter of a second) beyond that, for the
connections idle then and the ones that fall idle after; an idle or stalled client then
holds a slot for well under a second.

Each message first tries the same fast path as UDP (kdns.wire.fastpath), with a cache of
its own: TCP replies are never truncated, so they are other bytes than UDP's.

`reuse_port` sets SO_REUSEPORT, so that several processes can listen on one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Self

from kdns.codec import MAX_TCP_MESSAGE, Rejected, from_wire, servfail
from kdns.message import SERVFAIL, Answer, Handler, Query, Source
from kdns.wire.fastpath import MAX_ENTRIES, AnswerCache, QueryStats, question_type
from kdns.wire.querylog import QueryLog
from kdns.wire.udp import QUERY_TIMEOUT, encode_reply, rcode_of, source_of

__all__ = ["TcpServer"]

log = logging.getLogger(__name__)

# RFC 7766 §6.2.3 suggests seconds, not minutes, for an idle connection; CoreDNS uses 10 s.
IDLE_TIMEOUT = 10.0
# ... and under load (more than half of MAX_CONNECTIONS open), this: a client's next
# query comes within milliseconds if it comes at all.
BUSY_IDLE_TIMEOUT = 0.25
MAX_CONNECTIONS = 256
# Awaited queries one connection may have open before kdns stops reading from it.
MAX_PIPELINED = 64
_HEADER_SIZE = 12


def _frame(reply: bytes) -> bytes:
    return len(reply).to_bytes(2, "big") + reply


class TcpServer:
    """A TCP DNS listener on (host, port) as an async context manager; `.port` is the bound port."""

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        query_timeout: float = QUERY_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_pipelined: int = MAX_PIPELINED,
        cache_size: int = MAX_ENTRIES,
        stats: QueryStats | None = None,
        reuse_port: bool = False,
        nsid: bytes = b"",
        query_log: QueryLog | None = None,
    ) -> None:
        """`cache_size` 0 turns the fast path off; `stats` counts answered queries;
        `reuse_port` lets other sockets with it listen on the same port (SO_REUSEPORT);
        `nsid` is sent to askers of NSID (RFC 5001); `query_log` gets every answer."""
        self.nsid = nsid
        self.query_log = query_log
        self.host = host
        self.requested_port = port
        self.reuse_port = reuse_port
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.query_timeout = query_timeout
        self.max_connections = max_connections
        self.max_pipelined = max_pipelined
        self.stats = stats if stats is not None else QueryStats()
        self.cache = (
            AnswerCache.for_handler(handler, self.stats, max_entries=cache_size) if cache_size > 0 else None
        )
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._unfollow: Callable[[], None] | None = None
        # The connections waiting for their next message: their timeout and since when.
        self._idle: dict[asyncio.Task[None], tuple[asyncio.Timeout, float]] = {}

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the TCP server is not bound")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """Connections open right now."""
        return len(self._connections)

    async def __aenter__(self) -> Self:
        # A plain callback, not a coroutine: asyncio wraps a coroutine handler in a task whose
        # done-callback (CPython < 3.13) logs a traceback when that task ends cancelled, as
        # every open connection's does at shutdown. Our own task has no such callback.
        self._server = await asyncio.start_server(
            self._accept, self.host, self.requested_port, reuse_port=self.reuse_port
        )
        if self.cache is not None:
            self._unfollow = self.cache.follow()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop accepting, close every connection (their queries are cancelled), wait for it."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None
        server.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        if connections:
            await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        if self._busy():
            # Under load: every connection idle now gets the short timeout, from when it
            # fell idle (so one idle that long already is closed at once).
            for timeout, since in self._idle.values():
                if timeout.expired():
                    continue  # closing already
                when = timeout.when()
                if when is None or when > since + BUSY_IDLE_TIMEOUT:
                    timeout.reschedule(since + BUSY_IDLE_TIMEOUT)

    def _busy(self) -> bool:
        return len(self._connections) > self.max_connections // 2

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None or len(self._connections) > self.max_connections:
            # RFC 7766 §6.2.2: a server may close connections to protect its resources.
            await _close(writer)
            return
        pending: set[asyncio.Task[None]] = set()
        try:
            await self._read_queries(reader, writer, pending)
            if pending:
                # The client may have sent its queries and half-closed: answer them all.
                await asyncio.wait(pending)
        except asyncio.CancelledError:
            for query_task in pending:
                query_task.cancel()
            raise
        except Exception:
            log.exception("tcp: connection failed")
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            await _close(writer)

    async def _read_queries(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: set[asyncio.Task[None]]
    ) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else None
        port = peer[1] if peer else 0
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        idle = self._idle
        while True:
            if len(pending) >= self.max_pipelined:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                continue
            now = loop.time()
            try:
                async with asyncio.timeout_at(
                    now + (BUSY_IDLE_TIMEOUT if self._busy() else self.idle_timeout)
                ) as timeout:
                    idle[task] = (timeout, now)
                    prefix = await reader.readexactly(2)
                    length = int.from_bytes(prefix, "big")
                    if length < _HEADER_SIZE:
                        log.debug("tcp: %s sent a %d-byte message: closing", client, length)
                        return
                    message = await reader.readexactly(length)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            finally:
                idle.pop(task, None)
            reply = self._answer(message, client, port, writer, pending)
            if reply is None:
                continue
            if writer.is_closing():
                return
            writer.write(_frame(reply))
            try:
                await writer.drain()
            except ConnectionError:
                return

    def _answer(
        self,
        message: bytes,
        client: str | None,
        port: int,
        writer: asyncio.StreamWriter,
        pending: set[asyncio.Task[None]],
    ) -> bytes | None:
        """The reply to one message, or None: none is due, or a task will write it."""
        started = perf_counter()
        cache = self.cache
        if cache is not None:
            ready = cache.lookup(message, client)
            if ready is not None:
                self._logged(message, ready, client, port, started, None)
                return ready
        request = from_wire(message, client, "tcp")
        if request is None:
            return None
        if isinstance(request, Rejected):
            self.stats.count(question_type(request.reply), request.rcode)
            self._logged(message, request.reply, client, port, started, "server")
            return request.reply
        epoch = cache.epoch if cache is not None else 0
        try:
            result = self.handler(request)
        except Exception:
            log.exception("handler failed for %s %s", request.qname, request.qtype)
            self.stats.count(request.qtype, SERVFAIL)
            reply = servfail(request, self.nsid)
            self._logged(message, reply, client, port, started, "server")
            return reply
        if isinstance(result, Answer) or not isinstance(result, Awaitable):
            reply = encode_reply(request, result, MAX_TCP_MESSAGE, self.nsid)
            if cache is not None:
                cache.store(message, request, result, reply, epoch)
            self.stats.count(request.qtype, rcode_of(reply))
            self._logged(message, reply, client, port, started, source_of(result))
            return reply
        query_task = asyncio.get_running_loop().create_task(
            self._finish(writer, message, request, result, epoch, port, started)
        )
        pending.add(query_task)
        query_task.add_done_callback(pending.discard)
        return None

    async def _finish(
        self,
        writer: asyncio.StreamWriter,
        message: bytes,
        query: Query,
        pending: Awaitable[Answer],
        epoch: int,
        port: int,
        started: float,
    ) -> None:
        source: Source = "server"
        try:
            async with asyncio.timeout(self.query_timeout):
                result: object = await pending
        except TimeoutError:
            log.warning("no answer to %s %s within %s s: SERVFAIL", query.qname, query.qtype, self.query_timeout)
            reply = servfail(query, self.nsid)
        except Exception:
            log.exception("handler failed for %s %s", query.qname, query.qtype)
            reply = servfail(query, self.nsid)
        else:
            reply = encode_reply(query, result, MAX_TCP_MESSAGE, self.nsid)
            source = source_of(result)
            if self.cache is not None:
                self.cache.store(message, query, result, reply, epoch)
        self.stats.count(query.qtype, rcode_of(reply))
        self._logged(message, reply, query.client, port, started, source)
        if writer.is_closing():
            return
        writer.write(_frame(reply))
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    def _logged(
        self, message: bytes, reply: bytes, client: str | None, port: int, started: float, source: Source | None
    ) -> None:
        """Hand one answer to the query log, if there is one."""
        if self.query_log is not None:
            self.query_log.record(message, reply, client or "", port, "tcp", perf_counter() - started, source)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
