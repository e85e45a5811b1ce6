"""The API's socket and connections: what comes in is taken in rounds while DNS is busy.

Why. kdns answers DNS and serves its API on one event loop, on one core. A write that
comes on a connection of its own (kubectl, one per request; a kubelet's readiness
report) 10 ms after the last costs the loop more than twice what the same write costs
when writes come back to back: between two writes the loop sleeps or answers thousands
of datagrams (the kernel's network stack running for each), and every write starts
again from cold CPU caches, in the kernel (accept, the connection's
system calls), in aiohttp (a protocol, a parser, a task per connection) and in kdns.
Measured: a readiness flip through the API costs kdns 1.76 ms of CPU when flips come
10 ms apart and 0.73 ms back to back, with no DNS load (`python bench/writecost.py
--rate 100` against the default); under a closed-loop DNS load with 100 flips a second,
the answers keep 0.916 of their write-free rate with rounds and 0.880 without
(`python bench/writepairs.py --round 0 --round 0.05`; docs/architecture.md "The API
under DNS load"); with the writes on four kept connections, as kubelets send them, 0.886
with the rounds below and 0.804 without (`--writer kubelets --mix storm`).

What. While the loop is busy and most of it is DNS (`LoopLoad`), a connection that
comes in is not accepted at once: the first one starts a round, and when the round
ends (`round_s` later, 0.05 s by default: `--api-accept-round`) every connection
waiting in the kernel's backlog is accepted together, and their requests are read,
handled and answered one after another while the code and data they share are warm.
A connection kept open (a kubelet's, client-go's: every write on one connection) is
held back the same way: a request that comes on it while the loop is busy waits in the
kernel, the connection's reading paused, until the round ends (`_RoundProtocol`); the
first request of a connection just taken, the rest of one let through, and the next of a
client with writes queued (what comes within OPEN_S of the connection being taken, of a
release or of a reply) go on at once.
Only what comes in waits: a watch's events and replies go out as they are made. The cost
is latency for the API only, and only under that load: a request waits at most one round.
When the loop is not busy, or `round_s` is 0, every connection is accepted and read as
it comes, as asyncio's own server would.

`RoundSite` is the aiohttp site that binds the socket; `RoundListener` is the
`asyncio.AbstractServer` it keeps (aiohttp closes it through that interface).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

from aiohttp import web

log = logging.getLogger(__name__)

# Busy: the loop's thread spent at least this share of the wall time on the CPU... (A
# loop that a closed-loop client keeps saturated measures 0.8 to 1.0 over quarter-seconds
# when the client shares its cores: the margin keeps it busy from one sample to the next.)
BUSY_SHARE = 0.7
# ... and DNS answered at least this many queries a second over the same span: only
# then is the loop's time DNS's to protect (a loop kept busy by the API alone, say
# `kubectl apply` of many objects, would only have its own requests held back).
BUSY_QUERY_RATE = 2000.0
# How often the two are read: each verdict is on the span since the last reading (a
# timer on the loop, four callbacks a second, each two clock reads and a sum, while
# queries are answered: `LoopLoad` rests when none are).
SAMPLE_S = 0.25
# /proc/stat's first line: the time of all CPUs, in clock ticks, steal the 8th field.
PROC_STAT = "/proc/stat"
# How many connections one turn accepts at most (the listen backlog): the rest wait
# for the next readiness event, so that a flood of connections cannot hold the loop.
BACKLOG = 1024
# accept() errors that say the process or the system is out of something (descriptors,
# buffers): accepting again at once would fail again, so the listener waits this long.
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RESOURCES_PAUSE_S = 1.0
# What comes on a connection within this long of its being taken, of its request being let
# through at a round's end, or of its last reply going out, goes on at once: the request a
# client sent as it connected and the rest of one let through (both wait in the kernel and
# are read at the loop's next turns), and the next write of a client with writes queued.
# Not longer: a kept connection that writes every few tens of milliseconds (a kubelet's,
# under 100 writes a second) would then always go on at once, never in rounds.
OPEN_S = 0.01


def stolen_ticks(path: str = PROC_STAT) -> tuple[int, int]:
    """(stolen, total) clock ticks of all CPUs since boot: the time a virtual machine's
    hypervisor ran something else while a CPU had work (steal); (0, 0) where the file
    says nothing of it (not Linux, no such field)."""
    try:
        with open(path, "rb") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0, 0
    if len(fields) < 9 or fields[0] != b"cpu":
        return 0, 0
    ticks = [int(value) for value in fields[1:9]]
    return ticks[7], sum(ticks)


class LoopLoad:
    """Whether the event loop is busy answering DNS, measured on the loop's own thread.

    `answered` counts the queries answered so far (the UDP server's stats); `cpu` is the
    calling thread's CPU time (time.thread_time: kernel time in its system calls
    included, which is most of a UDP answer's cost). `start()` samples both every
    SAMPLE_S on the loop (`stop()` ends it); `busy()` is the verdict on the last span
    sampled, so a connection after a quiet minute is judged by the last quarter-second,
    not by the minute.

    A span in which no query was answered ends the sampling until `busy()` is next
    asked (a connection arrives): an idle kdns is not woken four times a second for a
    verdict nobody reads. The connection that wakes it is judged not busy (no span has
    been measured since), and the next ones by the quarter-seconds after it; while DNS
    is answered, the sampling never stops.

    On a virtual machine the hypervisor may take a share of the CPUs (steal, `steal`:
    (stolen, total) ticks, `stolen_ticks`), which the thread's CPU time does not count:
    a loop saturated by DNS while 40 % is stolen spends 60 % of the wall time on the CPU.
    So the share is judged against the time the CPUs were the machine's own.
    """

    def __init__(
        self,
        answered: Callable[[], int],
        *,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.thread_time,
        steal: Callable[[], tuple[int, int]] = stolen_ticks,
    ) -> None:
        self._answered = answered
        self._clock = clock
        self._cpu = cpu
        self._steal = steal
        self._since = clock()
        self._cpu_since = cpu()
        self._answered_since = answered()
        self._steal_since = steal()
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        # Started, and stopped after a span with no query answered: `busy()` restarts it.
        self._resting = False

    def busy(self) -> bool:
        if self._resting:
            self._resting = False
            self._reset()  # (what happened while resting is not judged)
            self._timer = asyncio.get_running_loop().call_later(SAMPLE_S, self._tick)
        return self._busy

    def sample(self) -> int:
        """Judge the span since the last sample, and start the next one; the queries
        answered over the span."""
        now, spent, answered, steal = self._clock(), self._cpu(), self._answered(), self._steal()
        span = now - self._since
        count = answered - self._answered_since
        stolen, total = steal[0] - self._steal_since[0], steal[1] - self._steal_since[1]
        own = span * (1.0 - stolen / total) if total > 0 else span  # the wall time not stolen
        self._busy = span > 0 and spent - self._cpu_since >= BUSY_SHARE * own and count >= BUSY_QUERY_RATE * span
        self._since, self._cpu_since, self._answered_since, self._steal_since = now, spent, answered, steal
        return count

    def _reset(self) -> None:
        self._since, self._cpu_since, self._answered_since = self._clock(), self._cpu(), self._answered()
        self._steal_since = self._steal()

    def start(self) -> None:
        """Sample every SAMPLE_S from now on, on the running loop (its thread's CPU time)."""
        self.sample()
        self._timer = asyncio.get_running_loop().call_later(SAMPLE_S, self._tick)

    def _tick(self) -> None:
        if self.sample():
            self._timer = asyncio.get_running_loop().call_later(SAMPLE_S, self._tick)
        else:
            self._timer, self._resting = None, True

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._resting = False
        self._busy = False


ProtocolFactory = Callable[[], asyncio.Protocol]


class _RoundProtocol(asyncio.Protocol):
    """A connection's own protocol (aiohttp's, `inner`) behind the rounds: a request that
    comes on the connection while the loop is busy waits in the kernel, reading paused,
    until the listener's round ends, as a new connection does, except within OPEN_S of the
    connection being taken, of its last release, or of its last reply (`open_until`): the
    first request on a connection just accepted, the rest of one let through, and the
    next of a client that sends it as the reply to the last comes go on at once (a client
    with writes queued sends them one after another, warm, not one a round).

    Only what comes in waits: what the connection sends out (a watch's events, a reply
    being written) is not held back. The inner protocol sees the transport through
    `_RoundTransport`, which says when it writes."""

    __slots__ = ("_held", "_inner", "_inner_paused", "_listener", "_open_until", "_transport")

    def __init__(self, inner: asyncio.Protocol, listener: RoundListener) -> None:
        self._inner = inner
        self._listener = listener
        self._transport: asyncio.Transport | None = None
        self._held: list[bytes] | None = None  # what came while waiting for the round
        self._inner_paused = False  # the inner protocol paused reading (its flow control)
        self._open_until = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # (uvloop's does not subclass it)
        self._open_until = self._listener.open_until()
        self._inner.connection_made(_RoundTransport(self._transport, self))

    def data_received(self, data: bytes) -> None:
        if self._held is not None:  # (a TLS record can bring more after the pause)
            self._held.append(data)
        elif (self._transport is not None and not self._transport.is_closing()
              and self._listener.holds(self._open_until)):
            self._held = [data]
            self._transport.pause_reading()
            self._listener.hold(self)
        else:
            self._inner.data_received(data)

    def release(self) -> None:
        """The round ended: what came goes on, and the connection is read again."""
        held, self._held = self._held, None
        if held is None or self._transport is None or self._transport.is_closing():
            return
        self._open_until = self._listener.open_until()
        if not self._inner_paused:  # first: the protocol may pause it again on this data
            self._transport.resume_reading()
        self._inner.data_received(b"".join(held))

    def wrote(self) -> None:
        self._open_until = self._listener.open_until()

    def pause_reading(self) -> None:
        """The inner protocol's own pause (its buffer is full)."""
        self._inner_paused = True
        if self._held is None and self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._inner_paused = False
        if self._held is None and self._transport is not None:  # (held: the round resumes it)
            self._transport.resume_reading()

    def eof_received(self) -> bool | None:
        self.release()  # what came before the end of the stream goes in first, in order
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._held = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _RoundTransport(asyncio.Transport):
    """A connection's transport as its inner protocol sees it (`_RoundProtocol`): the
    transport's own, except that a write also tells the round protocol (a reply opens the
    connection for the client's next request) and reading is paused and resumed through it."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport, protocol: _RoundProtocol) -> None:
        super().__init__()
        self._transport = transport
        self._protocol = protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)
        self._protocol.wrote()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._transport.writelines(list_of_data)
        self._protocol.wrote()

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._protocol.pause_reading()

    def resume_reading(self) -> None:
        self._protocol.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class RoundListener(asyncio.AbstractServer):
    """Accept connections on `sock` (bound, listening, non-blocking) and hand each to
    `factory` (with TLS when `ssl_context`): at once, or, while `busy()`, in rounds of
    `round_s` seconds."""

    def __init__(
        self,
        sock: socket.socket,
        factory: ProtocolFactory,
        *,
        ssl_context: ssl.SSLContext | None,
        round_s: float,
        busy: Callable[[], bool],
    ) -> None:
        self._sock = sock
        self._factory = factory
        self._ssl = ssl_context
        self._round_s = round_s
        self._busy = busy
        self._loop = asyncio.get_running_loop()
        # The round under way (accepting stopped until it ends), or the pause after
        # running out of descriptors; None while the socket is watched.
        self._due: asyncio.TimerHandle | None = None
        # Connections being set up (a TLS handshake takes a while): closed with us.
        self._connecting: set[asyncio.Task[None]] = set()
        # Connections whose requests wait for the round under way (`_RoundProtocol`).
        self._held: list[_RoundProtocol] = []
        self._serving = True
        self._loop.add_reader(sock.fileno(), self._readable)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening socket (aiohttp's runner reads its address from here)."""
        return (self._sock,) if self._serving else ()

    def _readable(self) -> None:
        if self._round_s > 0 and self._busy():
            self._pause(self._round_s)
            return
        self._accept()

    def holds(self, open_until: float) -> bool:
        """Whether a request that comes now on a connection open until `open_until`
        waits for the round."""
        return self._round_s > 0 and self._loop.time() >= open_until and self._busy()

    def open_until(self) -> float:
        """Until when (loop time) what comes on a connection taken or let through now goes
        on at once (OPEN_S)."""
        return self._loop.time() + min(OPEN_S, self._round_s)

    def hold(self, connection: _RoundProtocol) -> None:
        """Let `connection`'s request go on when the round ends, starting one if none is
        under way (then new connections wait for it too)."""
        self._held.append(connection)
        if self._due is None and self._serving:
            self._pause(self._round_s)

    def _pause(self, seconds: float) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._due = self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        self._due = None
        if not self._serving:
            return
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self._accept()
        held, self._held = self._held, []
        for connection in held:
            connection.release()

    def _accept(self) -> None:
        for _ in range(BACKLOG):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # the client gave up while it waited
                continue
            except OSError as exc:
                if exc.errno in OUT_OF_RESOURCES:
                    log.warning("API: cannot accept a connection (%s); trying again in %g s",
                                exc.strerror, RESOURCES_PAUSE_S)
                    if self._due is None:
                        self._pause(RESOURCES_PAUSE_S)
                    return
                raise
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: _RoundProtocol(self._factory(), self), conn,
                                                     ssl=self._ssl)
        except OSError as exc:  # a failed TLS handshake (ssl.SSLError), a reset: that client's
            log.debug("API: a connection failed while being set up: %s", exc)
            conn.close()

    # asyncio.AbstractServer

    def close(self) -> None:
        if not self._serving:
            return
        self._serving = False
        if self._due is not None:
            self._due.cancel()
            self._due = None
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for task in self._connecting:
            task.cancel()
        # (aiohttp closes the connections themselves; their held requests go with them)
        self._held.clear()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        """Serving starts when made."""

    async def serve_forever(self) -> None:
        raise NotImplementedError("kdns's API listener is closed by its site, never served forever")

    async def wait_closed(self) -> None:
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)


class RoundSite(web.BaseSite):
    """An aiohttp site on `host` (an IP address) and `port` (0: any free one) whose
    connections are accepted by a RoundListener."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        round_s: float,
        busy: Callable[[], bool],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=BACKLOG)
        self._host = host
        self._port = port
        self._round_s = round_s
        self._busy = busy

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # As asyncio's create_server: a restart binds while the old connections
            # linger in TIME_WAIT; an IPv6 address is that family only.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self._host, self._port))
            sock.listen(self._backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._server = RoundListener(sock, server, ssl_context=self._ssl_context, round_s=self._round_s,
                                     busy=self._busy)
