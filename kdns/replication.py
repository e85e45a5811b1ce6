"""`--workers N`: more processes answering DNS on one port, each with a copy of the registry.

One kdns process owns the registry: the store, the journal, the API, the prober, the
proxy. With `--workers N` it also starts N - 1 worker processes (`python -m kdns.worker`)
that bind the same DNS address and port with SO_REUSEPORT, so the kernel spreads queries
(by source address and port) over all N; each worker answers from its own ClusterIndex,
static zones and forwarding cache, and uses its own core.

How the registry is shared: each worker has a private socket pair to the primary (an
inherited file descriptor, nothing on the network). The primary sends the worker its
Settings, then a snapshot of every object at one resource version, in chunks, then every
commit's events, in commit order, as the store hands them to listeners. Objects travel
as their Kubernetes documents (`manifest`), from which the worker rebuilds the typed
object with the same `from_manifest` the store used (pickling the typed objects
themselves costs several times more). The worker builds its index from the snapshot and
applies each commit as it arrives, exactly as the primary's own index does, so both
serve the same state; a change reaches a worker one socket write and one read after the
commit. A worker that cannot keep up (more than MAX_BACKLOG bytes unsent) is restarted
rather than left behind, and a new worker starts from a fresh snapshot, so no worker
ever serves a state it cannot catch up from.

Messages are the typed records below (`ToWorker` one way, `ToPrimary` the other), sent
as length-prefixed pickles, the way multiprocessing talks to its children: both ends are
this program, on a socket pair no other process holds.

Workers send back their answer counts once a second (`/metrics` sums them with the
primary's), with how long after each commit they had applied it
(`kdns_worker_sync_seconds`), and exit when the primary's end of the socket closes, so a primary that
dies (even by SIGKILL) never leaves workers serving a registry nobody updates. A worker
that dies is started again after RESTART_DELAY.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pickle
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, Self, TypeVar, cast

from kdns.config import Settings
from kdns.errors import KdnsError
from kdns.registry.manifests import from_manifest
from kdns.registry.objects import Event
from kdns.registry.store import Store

__all__ = [
    "Channel",
    "Commit",
    "Failed",
    "Ready",
    "Reload",
    "Snapshot",
    "Stats",
    "ToPrimary",
    "ToWorker",
    "WorkerError",
    "WorkerPool",
    "encode",
    "receive_snapshot",
]

log = logging.getLogger("kdns.workers")

# Objects per snapshot message: small enough that pickling one chunk (a few ms) does not
# hold up the primary's DNS answers for long, large enough to keep the overhead low.
SNAPSHOT_CHUNK = 2000
# Bytes queued for a worker that is not reading them before it is restarted (from a new
# snapshot) instead: a stuck worker must not grow the primary's memory without bound.
MAX_BACKLOG = 256 * 1024 * 1024
# A worker must load the snapshot and bind within this long; the scale preset (100,000
# pods) takes seconds, a machine under load more.
START_TIMEOUT = 120.0
RESTART_DELAY = 1.0
STOP_TIMEOUT = 5.0
STATS_INTERVAL = 1.0
_LENGTH = 8  # bytes of the big-endian length before each message

QueryTotals = Mapping[tuple[int, int], int]


class WorkerError(KdnsError):
    """A worker process could not start."""


Manifest = dict[str, Any]  # an object as its Kubernetes document (`manifest`)


# --- the messages --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Start:
    """The first message to a worker: its Settings, its number and the primary's log level."""

    settings: Settings
    number: int
    log_level: int


@dataclasses.dataclass(frozen=True, slots=True)
class Objects:
    """A chunk of the snapshot (SNAPSHOT_CHUNK objects at most)."""

    manifests: list[Manifest]


@dataclasses.dataclass(frozen=True, slots=True)
class Synced:
    """The snapshot is complete, at this resource version; commits follow."""

    resource_version: int


class SentEvent(NamedTuple):
    """An Event as it travels: a worker's index reads each event's type and object (not `old`)."""

    type: str
    manifest: Manifest
    resource_version: int


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    """One commit's events, with the primary's CLOCK_MONOTONIC when it was sent: one clock
    for every process of the machine, so the worker can tell how long it took to apply."""

    events: list[SentEvent]
    sent_at: float

    def received(self) -> list[Event]:
        """The Events, their objects rebuilt as the store built them."""
        return [Event(kind, from_manifest(manifest), None, version) for kind, manifest, version in self.events]


@dataclasses.dataclass(frozen=True, slots=True)
class Reload:
    """SIGHUP, relayed: read --zones-dir again."""


@dataclasses.dataclass(frozen=True, slots=True)
class Ready:
    """The worker serves DNS on the primary's port."""


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """The worker could not start, and why."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """Once a second: answers by (qtype, rcode), UDP drops by reason, and for each commit
    applied since the last report how many seconds after it was sent."""

    totals: dict[tuple[int, int], int]
    synced: list[float]
    drops: dict[str, int]


ToWorker = Start | Objects | Synced | Commit | Reload
ToPrimary = Ready | Failed | Stats


def encode(message: ToWorker | ToPrimary) -> bytes:
    """A message as it goes on the socket (`Channel.send_encoded`): length, then pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_LENGTH, "big") + data

Sent = TypeVar("Sent", bound=ToWorker | ToPrimary)
Received = TypeVar("Received", bound=ToWorker | ToPrimary)


class Channel(Generic[Sent, Received]):
    """One end of a primary-worker socket pair: whole messages, in order.

    The primary holds a `Channel[ToWorker, ToPrimary]`, a worker the reverse."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Self:
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        return cls(reader, writer)

    def send(self, message: Sent) -> None:
        self.send_encoded(encode(message))

    def send_encoded(self, frame: bytes) -> None:
        """Queue a message made by `encode` (one encoding can go to every worker)."""
        if not self._writer.is_closing():
            self._writer.write(frame)

    @property
    def backlog(self) -> int:
        """Bytes written but not yet taken by the other end."""
        transport = self._writer.transport
        return 0 if transport.is_closing() else transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self._writer.drain()

    async def receive(self) -> Received:
        """The next message; EOFError when the other end has closed."""
        try:
            header = await self._reader.readexactly(_LENGTH)
            data = await self._reader.readexactly(int.from_bytes(header, "big"))
        except asyncio.IncompleteReadError:
            raise EOFError from None
        # Both ends are this program (see the module's docstring): the other end sent a
        # `Received`; the handlers match on it and name anything else.
        return cast(Received, pickle.loads(data))  # noqa: S301

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()


@dataclasses.dataclass(slots=True)
class Snapshot:
    """What a worker starts from: its Settings, number and log level, every object, and
    their resource version."""

    settings: Settings
    number: int
    log_level: int
    objects: list[Any]
    resource_version: int


async def receive_snapshot(channel: Channel[ToPrimary, ToWorker]) -> Snapshot:
    """The worker's side of the start: the Settings, then object chunks until `Synced`."""
    match await channel.receive():
        case Start(settings, number, log_level):
            pass
        case other:
            raise WorkerError(f"expected settings from the primary, got {type(other).__name__}")
    objects: list[Any] = []
    while True:
        match await channel.receive():
            case Objects(manifests):
                objects.extend(map(from_manifest, manifests))
            case Synced(version):
                return Snapshot(settings, number, log_level, objects, version)
            case other:
                raise WorkerError(f"expected the registry snapshot, got {type(other).__name__}")


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Worker:
    """One worker slot: the process now in it, and what is queued for it."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: asyncio.subprocess.Process | None = None
        self.channel: Channel[ToWorker, ToPrimary] | None = None
        # Encoded commits not yet written; None while no process is taking them.
        self.queue: deque[bytes] | None = None
        # The snapshot is written: a commit may go straight to the channel.
        self.streaming = False
        self.wake = asyncio.Event()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.totals: QueryTotals = {}
        self.drops: dict[str, int] = {}  # UDP datagrams dropped, by reason (see kdns.metrics)

    @property
    def name(self) -> str:
        pid = self.process.pid if self.process is not None else "-"
        return f"worker {self.number} (pid {pid})"


class WorkerPool:
    """The primary's side: `async with WorkerPool(settings, store, 3):` runs workers 2-4.

    `settings.dns_port` must be the port the primary has bound (with SO_REUSEPORT).
    Entering waits until every worker serves; `totals()` sums their answer counts.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        count: int,
        *,
        command: Sequence[str] = (sys.executable, "-m", "kdns.worker"),
        observe_sync: Callable[[float], None] | None = None,
    ) -> None:
        """`observe_sync(seconds)` receives, for each commit and worker, how long after
        the commit the worker had applied it (reported with the answer counts)."""
        self.settings = settings
        self._observe_sync = observe_sync
        self._store = store
        self._count = count
        self._command = tuple(command)
        self._workers: list[_Worker] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._closing = False
        self._retired: Counter[tuple[int, int]] = Counter()  # counts of workers that exited
        self._retired_drops: Counter[str] = Counter()

    async def __aenter__(self) -> Self:
        self._unsubscribe = self._store.subscribe(self._publish)
        self._workers = [_Worker(number) for number in range(2, self._count + 1)]
        self._tasks = [
            asyncio.get_running_loop().create_task(self._supervise(worker), name=f"kdns worker {worker.number}")
            for worker in self._workers
        ]
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.gather(*(worker.ready for worker in self._workers))
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, TimeoutError):
                raise WorkerError(f"the workers did not start within {START_TIMEOUT:g} s") from None
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every worker's channel (they exit on it), wait for them, kill stragglers."""
        self._closing = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for worker in self._workers:
            worker.wake.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def reload_zones(self) -> None:
        """SIGHUP for the workers: each reads --zones-dir again."""
        frame = encode(Reload())
        for worker in self._workers:
            if worker.queue is not None:
                worker.queue.append(frame)
                worker.wake.set()

    def totals(self) -> dict[tuple[int, int], int]:
        """Answers by (qtype, rcode) over every worker, those that exited included."""
        return _summed(self._retired, (worker.totals for worker in self._workers))

    def drops(self) -> dict[str, int]:
        """Dropped UDP datagrams by reason over every worker, those that exited included."""
        return _summed(self._retired_drops, (worker.drops for worker in self._workers))

    def _publish(self, events: Sequence[Event]) -> None:
        """Store listener: one commit, encoded once, queued for every worker."""
        if not any(worker.queue is not None for worker in self._workers):
            return
        sent = [SentEvent(e.type, e.object.manifest, e.resource_version) for e in events]
        frame = encode(Commit(sent, time.monotonic()))
        for worker in self._workers:
            if worker.queue is None:
                continue
            if worker.streaming and not worker.queue and worker.channel is not None:
                # Written now, not a loop turn later: the worker may apply it while this
                # process is still answering the write that made it.
                worker.channel.send_encoded(frame)
            else:
                worker.queue.append(frame)
            worker.wake.set()  # (the backlog is checked there)

    async def _supervise(self, worker: _Worker) -> None:
        """Run `worker`'s process; start it again when it exits, until the pool closes."""
        while not self._closing:
            try:
                code = await self._run(worker)
            except WorkerError as exc:
                if not worker.ready.done():
                    worker.ready.set_exception(exc)
                    return
                log.error("%s", exc)
                code = None
            except Exception as exc:  # a bug here must not leave a worker unsupervised
                log.exception("%s failed", worker.name)
                if not worker.ready.done():
                    worker.ready.set_exception(WorkerError(f"worker {worker.number}: {exc}"))
                    return
                code = None
            finally:
                worker.queue = None
                self._retired.update(worker.totals)
                self._retired_drops.update(worker.drops)
                worker.totals, worker.drops = {}, {}
            if self._closing:
                # (mypy keeps `not self._closing` from the loop's test across the awaits
                # above, during which close() may have set it.)
                return  # type: ignore[unreachable]
            if not worker.ready.done():
                worker.ready.set_exception(WorkerError(f"{worker.name} exited with code {code} while starting"))
                return
            log.error("%s exited (code %s); starting it again in %g s", worker.name, code, RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)

    async def _run(self, worker: _Worker) -> int | None:
        """One process in `worker`'s slot, from spawn to exit; its exit code."""
        parent, child = socket.socketpair()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self._command, str(child.fileno()), pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL
            )
        finally:
            child.close()
        channel = worker.channel = await Channel[ToWorker, ToPrimary].open(parent)
        listening = asyncio.get_running_loop().create_task(self._listen(worker, channel))
        try:
            # The snapshot and the queue start at the same resource version: nothing can
            # commit between these two lines (no await), and every later commit is queued.
            objects, version = self._store.objects(), self._store.resource_version
            worker.queue = deque()
            channel.send(Start(self.settings, worker.number, logging.getLogger().level))
            for chunk in _chunks(objects, SNAPSHOT_CHUNK):
                channel.send(Objects([obj.manifest for obj in chunk]))
                await channel.drain()
            channel.send(Synced(version))
            await self._forward(worker, channel, listening)
        finally:
            worker.queue, worker.streaming = None, False
            await channel.aclose()
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            await self._wait_for_exit(worker.process, worker.name)
        return worker.process.returncode

    async def _forward(self, worker: _Worker, channel: Channel[ToWorker, ToPrimary], listening: asyncio.Task[None]) -> None:
        """Write queued commits to the worker until the pool closes or the worker goes."""
        queue = worker.queue
        assert queue is not None
        worker.streaming = True
        while not self._closing and not listening.done():
            while queue:
                channel.send_encoded(queue.popleft())
            if channel.backlog > MAX_BACKLOG:
                log.error("%s is %d bytes behind the registry: restarting it", worker.name, channel.backlog)
                if worker.process is not None and worker.process.returncode is None:
                    worker.process.kill()
                return
            worker.wake.clear()
            waking = asyncio.ensure_future(worker.wake.wait())
            await asyncio.wait((waking, listening), return_when=asyncio.FIRST_COMPLETED)
            waking.cancel()
        error = listening.exception() if listening.done() and not listening.cancelled() else None
        if error is not None:
            raise error

    async def _listen(self, worker: _Worker, channel: Channel[ToWorker, ToPrimary]) -> None:
        """What the worker says: ready, its answer counts, or why it could not start."""
        while True:
            try:
                message = await channel.receive()
            except (EOFError, ConnectionError):
                return
            match message:
                case Ready():
                    log.info("%s serves DNS", worker.name)
                    if not worker.ready.done():
                        worker.ready.set_result(None)
                case Stats(totals, synced, drops):
                    worker.totals, worker.drops = totals, drops
                    if self._observe_sync is not None:
                        for seconds in synced:
                            self._observe_sync(seconds)
                case Failed(reason):
                    raise WorkerError(f"{worker.name}: {reason}")
                case other:
                    raise WorkerError(f"{worker.name} sent {type(other).__name__}, a message for workers")

    @staticmethod
    async def _wait_for_exit(process: asyncio.subprocess.Process | None, name: str) -> None:
        if process is None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await process.wait()
        except TimeoutError:
            log.warning("%s did not stop within %g s: killed", name, STOP_TIMEOUT)
            process.kill()
            await process.wait()


def _summed(retired: Counter[Any], counts: Iterable[Mapping[Any, int]]) -> dict[Any, int]:
    """The counts of the workers that exited plus those of the running ones."""
    total = Counter(retired)
    for count in counts:
        total.update(count)
    return dict(total)
