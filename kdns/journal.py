"""The journal off the event loop: commits saved on a thread of their own, in groups.

`SqliteJournal` (kdns/registry/sqlite.py) saves with synchronous=FULL: every transaction
waits for the disk (fsync), milliseconds on most disks and far more on a busy one. Called
inside the store's commit on the event loop, that wait held up every DNS answer behind
it. `JournalWriter` is the store's critical listener instead: inside the commit it only
queues the commit's events; a writer thread takes everything queued, turns it into rows
and saves it in one transaction (group commit: one fsync for every commit made while the
last one was being written), then tells the event loop how far the file has got.

The rows are made on the thread, not in the commit: each object's document as JSON and
its typed row took a tenth of the event loop's time per API write (py-spy, a readiness flip
of the bench cluster), time in which no DNS datagram was answered. The events' objects
are immutable, so the thread may read them while the loop goes on. The thread holds the
GIL while it makes one object's rows (tens of microseconds) and lets go of it in each
SQLite call (the sqlite3 module releases it around every step), so the loop, woken by a
datagram, waits at most that long for it; it waits for nothing while the disk syncs.

The thread runs at a lower priority than the event loop's (niceness +15, `WRITER_NICENESS`;
Linux sets a niceness per thread). kdns is often given one core: woken inside the commit
at the loop's priority, the writer took that core from the loop, about five times a
write (the wake-up, the lock, the GIL), while DNS datagrams waited. Niced, it seldom
preempts the loop: it runs while the loop waits for datagrams, and a datagram that comes
meanwhile waits for the rest of the writer's current burst at most (a few hundred
microseconds; bench/README.md, `writes.py --sched`). Against a busy nice-0 process on the
same core the writer gets about 3 % of it: enough, as the commits made meanwhile are saved
in one group, but the writes' replies then wait longer. SCHED_IDLE was tried and dropped:
other processes on the core starved the writer, and the writes' replies with it.

"A 2xx means on disk" holds: the API awaits `durable(version)` for each write before it
answers (kdns/api/http.py), so the reply goes out once the fsync of that commit is done.
DNS does not wait: the commit is visible to queries at once, as it was before.

When a save fails (StorageError: a full or failing disk, or an object that cannot be
turned into rows), kdns stops journaling: the writes waiting on that save and every
later one get a 500, and the store refuses every write after it (the listener raises, so
those are undone and change nothing). The commits of the failed save stay in memory,
unsaved, until kdns restarts: their writers were told 500, the answer Kubernetes gives
when a write's outcome is unknown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Self

from kdns.registry.objects import Event
from kdns.registry.sqlite import Row, SqliteJournal, StorageError, rows

__all__ = ["STOP_TIMEOUT", "WRITER_NICENESS", "JournalWriter"]

log = logging.getLogger("kdns.journal")

# How long stopping waits for the thread to save what is queued.
STOP_TIMEOUT = 10.0
# How much nicer than the event loop's thread the writer thread is (see the module's docstring).
WRITER_NICENESS = 15

Write = Callable[[Iterable[Row], int], None]


class JournalWriter:
    """`async with JournalWriter(journal) as writer:` then `store.subscribe(writer,
    critical=True)`; `await writer.durable(version)` returns once every commit up to
    `version` is on disk (StorageError if it cannot be).

    `saved` is the resource version the file holds already; `write` is what saves one
    group (default `journal.write`).
    """

    def __init__(self, journal: SqliteJournal, *, saved: int, write: Write | None = None) -> None:
        self.path = journal.path
        self._write = write if write is not None else journal.write
        self._lock = threading.Condition(threading.Lock())
        self._queue: list[tuple[int, Sequence[Event]]] = []  # (resource version, events), in commit order
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Read and written on the event loop only:
        self._saved = saved  # every commit up to this version is on disk
        self._failure: StorageError | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # in version order
        self.groups = 0  # transactions written
        self.commits = 0  # commits in them
        self.thread_id: int | None = None  # the writer thread's kernel id, once it runs
        self.niceness: int | None = None  # the niceness it runs at (None: left as it was)

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start the thread; `durable` is then answered on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="kdns journal writer", daemon=True)
        self._thread.start()

    async def aclose(self) -> None:
        """Save what is queued, then stop the thread."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, STOP_TIMEOUT)
            if thread.is_alive():
                log.error("the journal writer did not finish within %g s", STOP_TIMEOUT)
        for _, waiter in self._waiters:  # (none once the thread has finished)
            if not waiter.done():
                waiter.set_exception(StorageError(f"{self.path}: kdns stopped before saving"))
        self._waiters = []

    # --- on the event loop ---------------------------------------------------------------

    def __call__(self, events: Sequence[Event]) -> None:
        """The store's critical listener: queue the commit (its rows are made on the
        thread); refuse it once saving failed."""
        if self._failure is not None:
            raise StorageError(f"{self._failure} (the journal has stopped: restart kdns)")
        if not events:
            return
        with self._lock:
            self._queue.append((events[-1].resource_version, events))
            self._lock.notify()

    async def durable(self, version: int) -> None:
        """Return once every commit up to `version` is on disk; StorageError if it cannot be."""
        if version <= self._saved:
            return
        if self._failure is not None:
            raise StorageError(str(self._failure))  # a new one: each writer its own traceback
        assert self._loop is not None, "JournalWriter is not started"
        waiter = self._loop.create_future()
        self._waiters.append((version, waiter))
        await waiter

    def _saved_up_to(self, version: int, failure: StorageError | None) -> None:
        """From the thread: the group up to `version` is on disk, or failed to be."""
        if failure is not None:
            if self._failure is None:
                log.error("the journal cannot save: %s; writes are refused until kdns restarts", failure)
            self._failure = failure
        else:
            self._saved = max(self._saved, version)
        waiters = self._waiters
        done = 0
        for waiting, waiter in waiters:
            if failure is None and waiting > version:
                break
            done += 1
            if waiter.done():  # the request went away
                continue
            if failure is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(StorageError(str(failure)))
        del waiters[:done]

    # --- on the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        self.thread_id = threading.get_native_id()
        self.niceness = _be_nicer(self.thread_id, WRITER_NICENESS)
        failure: StorageError | None = None
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                group, self._queue = self._queue, []
            if not group:
                return  # stopping, and everything is saved
            version = group[-1][0]
            if failure is None:
                try:
                    # Rows made one object at a time as SQLite takes them (`rows` is lazy).
                    self._write(chain.from_iterable(rows(events) for _, events in group), version)
                except StorageError as exc:
                    failure = exc
                except Exception as exc:  # a bug must not leave writers waiting for ever
                    log.exception("the journal writer failed")
                    failure = StorageError(f"{self.path}: {exc}")
                else:
                    self.groups += 1
                    self.commits += len(group)
            # After a failure nothing more is written: a later group saved on its own
            # would leave a hole in the file.
            try:
                loop.call_soon_threadsafe(self._saved_up_to, version, failure)
            except RuntimeError:  # the loop has closed: nobody is waiting any more
                return


def _be_nicer(thread_id: int, by: int) -> int | None:
    """Make the calling thread, `thread_id`, `by` nicer than it is (than the event loop's
    thread that started it), up to 19; the niceness it then has, or None where a thread has
    no niceness of its own (not Linux) or the system refuses."""
    if sys.platform != "linux":  # elsewhere PRIO_PROCESS names the whole process
        return None
    try:
        niceness = min(19, os.getpriority(os.PRIO_PROCESS, thread_id) + by)
        os.setpriority(os.PRIO_PROCESS, thread_id, niceness)  # Linux: a thread id names that thread alone
        return os.getpriority(os.PRIO_PROCESS, thread_id)
    except OSError as exc:  # (lowering a priority needs no privilege; a seccomp filter may still refuse)
        log.warning("the journal writer runs at the event loop's priority: %s", exc)
        return None
