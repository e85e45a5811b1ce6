"""The API's listening socket, whose new connections are taken in rounds while DNS is busy.

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
under DNS load").

What. While the loop is busy and most of it is DNS (`LoopLoad`), a connection that
comes in is not accepted at once: the first one starts a round, and when the round
ends (`round_s` later, 0.05 s by default: `--api-accept-round`) every connection
waiting in the kernel's backlog is accepted together, and their requests are read,
handled and answered one after another while the code and data they share are warm.
The cost is latency for the API only, and only under that load: a new connection waits
at most one round before it is accepted. A connection already open (kubectl's watch,
client-go's kept connection) is not held back: its requests are read as they come.
When the loop is not busy, or `round_s` is 0, every connection is accepted as it comes,
as asyncio's own server would.

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
from collections.abc import Callable

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


ProtocolFactory = Callable[[], asyncio.BaseProtocol]


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

    def _pause(self, seconds: float) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._due = self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        self._due = None
        if not self._serving:
            return
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self._accept()

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
            await self._loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl)
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
