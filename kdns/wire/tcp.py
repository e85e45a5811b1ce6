"""DNS over TCP: 2-byte length framing, pipelined queries, idle timeout (RFC 7766).

A client may send several queries on one connection without waiting; answers that are
ready at once are written in order, awaited ones when they are ready, so replies may come
back out of order (RFC 7766 §6.2.1.1; clients match them by ID). A connection that sends
a length too short for a DNS header, or stops mid-message, or stays idle, is closed.

Each message first tries the same fast path as UDP (kdns.wire.fastpath), with a cache of
its own: TCP replies are never truncated, so they are other bytes than UDP's.

`reuse_port` sets SO_REUSEPORT, so that several processes can listen on one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Self

from kdns.message import Answer, Handler, Query
from kdns.wire.codec import MAX_TCP_MESSAGE, SERVFAIL, Rejected, from_wire, servfail
from kdns.wire.fastpath import MAX_ENTRIES, AnswerCache, QueryStats, question_type
from kdns.wire.udp import QUERY_TIMEOUT, encode_reply, rcode_of

__all__ = ["TcpServer"]

log = logging.getLogger(__name__)

# RFC 7766 §6.2.3 suggests seconds, not minutes, for an idle connection; CoreDNS uses 10 s.
IDLE_TIMEOUT = 10.0
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
    ) -> None:
        """`cache_size` 0 turns the fast path off; `stats` counts answered queries;
        `reuse_port` lets other sockets with it listen on the same port (SO_REUSEPORT)."""
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
        while True:
            if len(pending) >= self.max_pipelined:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                async with asyncio.timeout(self.idle_timeout):
                    prefix = await reader.readexactly(2)
                    length = int.from_bytes(prefix, "big")
                    if length < _HEADER_SIZE:
                        log.debug("tcp: %s sent a %d-byte message: closing", client, length)
                        return
                    message = await reader.readexactly(length)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            reply = self._answer(message, client, writer, pending)
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
        self, message: bytes, client: str | None, writer: asyncio.StreamWriter, pending: set[asyncio.Task[None]]
    ) -> bytes | None:
        """The reply to one message, or None: none is due, or a task will write it."""
        cache = self.cache
        if cache is not None:
            ready = cache.lookup(message, client)
            if ready is not None:
                return ready
        request = from_wire(message, client, "tcp")
        if request is None:
            return None
        if isinstance(request, Rejected):
            self.stats.count(question_type(request.reply), request.rcode)
            return request.reply
        epoch = cache.epoch if cache is not None else 0
        try:
            result = self.handler(request)
        except Exception:
            log.exception("handler failed for %s %s", request.qname, request.qtype)
            self.stats.count(request.qtype, SERVFAIL)
            return servfail(request)
        if isinstance(result, Answer) or not isinstance(result, Awaitable):
            reply = encode_reply(request, result, MAX_TCP_MESSAGE)
            if cache is not None:
                cache.store(message, request, result, reply, epoch)
            self.stats.count(request.qtype, rcode_of(reply))
            return reply
        query_task = asyncio.get_running_loop().create_task(
            self._finish(writer, message, request, result, epoch)
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
    ) -> None:
        try:
            async with asyncio.timeout(self.query_timeout):
                result: object = await pending
        except TimeoutError:
            log.warning("no answer to %s %s within %s s: SERVFAIL", query.qname, query.qtype, self.query_timeout)
            reply = servfail(query)
        except Exception:
            log.exception("handler failed for %s %s", query.qname, query.qtype)
            reply = servfail(query)
        else:
            reply = encode_reply(query, result, MAX_TCP_MESSAGE)
            if self.cache is not None:
                self.cache.store(message, query, result, reply, epoch)
        self.stats.count(query.qtype, rcode_of(reply))
        if writer.is_closing():
            return
        writer.write(_frame(reply))
        with contextlib.suppress(ConnectionError):
            await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
