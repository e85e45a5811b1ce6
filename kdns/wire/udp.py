"""DNS over UDP: datagram in, codec, handler, codec, datagram out.

A handler that answers at once (the authority) is answered inside `datagram_received`,
with no task: that is most packets, and a task per packet would cost more than the
answer. Only a handler that returns an awaitable (forwarding) gets a tracked task, with a
timeout and a cap on how many may be in flight; past the cap, new queries are dropped
(the client retries) rather than let memory grow without bound under a flood.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Self

from kdns.message import Answer, Query
from kdns.wire.codec import Handler, Rejected, from_wire, servfail, to_wire

__all__ = ["MAX_IN_FLIGHT", "QUERY_TIMEOUT", "UdpServer", "discard", "encode_reply"]

log = logging.getLogger(__name__)

# How long an awaited answer may take before the client gets SERVFAIL: below the 5 s
# after which stub resolvers (glibc, dig) retry, so the client hears back first.
QUERY_TIMEOUT = 4.0
MAX_IN_FLIGHT = 1024


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


class _Protocol(asyncio.DatagramProtocol):
    """The per-socket state: the transport, the handler and the tasks still running."""

    def __init__(self, handler: Handler, timeout: float, max_in_flight: int) -> None:
        self.handler = handler
        self.timeout = timeout
        self.max_in_flight = max_in_flight
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
        transport = self.transport
        if transport is None:
            return
        try:
            request = from_wire(data, addr[0], "udp")
        except Exception:  # the codec is total; this is a bug, not a bad packet
            log.exception("udp: cannot read a packet from %s", addr[0])
            return
        if request is None:
            return
        if isinstance(request, Rejected):
            transport.sendto(request.reply, addr)
            return
        try:
            result = self.handler(request)
        except Exception:
            log.exception("handler failed for %s %s", request.qname, request.qtype)
            transport.sendto(servfail(request), addr)
            return
        # The hot path: an Answer (checked first, it is cheap) or anything else not awaitable.
        if isinstance(result, Answer) or not isinstance(result, Awaitable):
            transport.sendto(encode_reply(request, result, request.payload), addr)
            return
        if len(self.tasks) >= self.max_in_flight:
            self.dropped += 1
            discard(result)
            return
        task = asyncio.get_running_loop().create_task(self._finish(request, result, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _finish(self, query: Query, pending: Awaitable[Answer], addr: tuple) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                result: object = await pending
        except TimeoutError:
            log.warning("no answer to %s %s within %s s: SERVFAIL", query.qname, query.qtype, self.timeout)
            reply = servfail(query)
        except Exception:
            log.exception("handler failed for %s %s", query.qname, query.qtype)
            reply = servfail(query)
        else:
            reply = encode_reply(query, result, query.payload)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(reply, addr)


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
    ) -> None:
        self.host = host
        self.requested_port = port
        self._handler = handler
        self._timeout = timeout
        self._max_in_flight = max_in_flight
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
        protocol = _Protocol(self._handler, self._timeout, self._max_in_flight)
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
