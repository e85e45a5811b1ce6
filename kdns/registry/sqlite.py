"""Durable registry state: every committed batch of changes written to SQLite, and read back.

`SqliteJournal` writes batches of changes, each in one SQLite transaction, in WAL mode
with `synchronous=FULL` (https://www.sqlite.org/pragma.html#pragma_synchronous: FULL
makes a committed WAL transaction durable across power loss). Called as a store listener
it saves each commit inside the commit, synchronously (start-up's load, tools, tests);
while kdns serves, kdns/journal.py's `JournalWriter` hands it the commits' `rows` on a
thread of its own, several commits to one transaction, so the fsync never holds up the
event loop, and a write's API reply waits for it.

`load(path)` returns the stored documents and resource version, for start-up. Documents
keep their `spec.clusterIP(s)` and `nodePort`s, so admitting them again reserves the same
addresses and ports. EndpointSlices that the EndpointSlice controller manages are not
stored: they are derived from Services and Pods, and the controller writes them again.

The file holds one table of documents keyed by (kind, namespace, name) and the resource
version of the last batch written; `PRAGMA user_version` is the schema version.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kdns.errors import KdnsError
from kdns.registry.manifests import to_manifest
from kdns.registry.objects import (
    API_VERSIONS,
    CONTROLLER_NAME,
    DELETED,
    ENDPOINT_SLICE,
    MANAGED_BY_LABEL,
    SERVICE,
    Event,
    KubeObject,
)
from kdns.registry.store import apply_order

SCHEMA_VERSION = 1
FILE_NAME = "registry.sqlite3"
Row = tuple[str, tuple[Any, ...]]  # one SQL statement and its parameters
# Restore order: what a document needs exists before it (namespaces before what is in them).
KIND_ORDER = ("Namespace", "Node", "Service", "Pod", "EndpointSlice")
# Every document, by KIND_ORDER (its five kinds are the parameters), namespace and name.
_IN_KIND_ORDER = (
    "SELECT kind, namespace, name, document FROM objects ORDER BY CASE kind"
    " WHEN ? THEN 0 WHEN ? THEN 1 WHEN ? THEN 2 WHEN ? THEN 3 WHEN ? THEN 4 ELSE 5 END, namespace, name"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""


class StorageError(KdnsError):
    """The registry's state file cannot be read or written."""


def _derived(obj: KubeObject) -> bool:
    """Objects the registry derives itself, which are not worth storing."""
    return obj.kind == ENDPOINT_SLICE and obj.meta.labels.get(MANAGED_BY_LABEL) == CONTROLLER_NAME


def _connect(path: Path | str) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            db.close()
            raise StorageError(f"{path}: schema version {version}, this kdns reads {SCHEMA_VERSION}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: {exc}") from exc
    return db


def _lock(path: Path) -> int | None:
    """An exclusive lock on `path`.lock, held while the journal is open: two processes
    journaling into one file would each overwrite what the other acknowledged."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one kdns per data directory is up to the user
        return None
    try:
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(f"{path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StorageError(
            f"{path} is in use by another kdns: give each its own --data-dir, or use --ephemeral"
        ) from None
    return fd


class SqliteJournal:
    """A store listener writing each commit's events to SQLite in one transaction.

    `with SqliteJournal(path) as journal:`; `journal.replace_all(objects, version)` writes
    a whole state (the store's, before subscribing); `store.subscribe(journal,
    critical=True)` then keeps the file in step, each commit saved before it is
    acknowledged. A failed write raises StorageError from the listener. One journal at a
    time may have a file open (StorageError for the next, while it is).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = _lock(self.path)
        try:
            self._db: sqlite3.Connection | None = _connect(self.path)
        except BaseException:
            self._unlock()
            raise

    def __enter__(self) -> SqliteJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def write(self, rows: Iterable[Row], resource_version: int) -> None:
        """Save `rows` (see `rows`, of one or more commits, in order) and the resource
        version reached, in one transaction: all of it or, with StorageError, none."""
        self._transaction(rows, resource_version)

    def _transaction(self, rows: Iterable[Row], resource_version: int, *, clear: bool = False) -> None:
        db = self._db
        if db is None:
            raise StorageError(f"{self.path}: the journal is closed")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if clear:
                    db.execute("DELETE FROM objects")
                for statement, parameters in rows:
                    db.execute(statement, parameters)
                db.execute(
                    "INSERT INTO state (key, value) VALUES ('resource_version', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (resource_version,),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: {exc}") from exc

    def replace_all(self, objects: Iterable[Any], resource_version: int) -> None:
        """Make the file hold exactly these objects at this resource version."""
        self._transaction((_upsert(obj) for obj in objects if not _derived(obj)), resource_version, clear=True)

    def __call__(self, events: Sequence[Event]) -> None:
        """The store listener: one SQLite transaction per committed batch."""
        if events:
            self._transaction(rows(events), events[-1].resource_version)


def rows(events: Sequence[Event]) -> list[Row]:
    """What saving one commit's events takes: the statements and their parameters."""
    found = []
    for event in events:
        obj = event.object
        if _derived(obj) and (event.old is None or _derived(event.old)):
            continue
        if event.type == DELETED or _derived(obj):
            found.append(_delete(obj))
        else:
            found.append(_upsert(obj))
    return found


def _upsert(obj: Any) -> Row:
    document = json.dumps(to_manifest(obj), separators=(",", ":"), sort_keys=True)
    return (
        ("INSERT INTO objects (kind, namespace, name, resource_version, document) VALUES (?, ?, ?, ?, ?)"
         " ON CONFLICT (kind, namespace, name) DO UPDATE SET"
         " resource_version = excluded.resource_version, document = excluded.document"),
        (obj.kind, obj.meta.namespace, obj.meta.name, obj.meta.resource_version, document),
    )


def _delete(obj: Any) -> Row:
    return (
        "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
        (obj.kind, obj.meta.namespace, obj.meta.name),
    )


def load(path: Path | str) -> tuple[list[dict[str, Any]], int]:
    """The documents stored at `path` (Namespaces first, then Nodes, Services, Pods,
    EndpointSlices; by namespace and name within a kind) and the resource version of the
    last write; ([], 0) when there is no file yet."""
    documents, version = load_in_order(path)
    return list(documents), version


def load_in_order(path: Path | str) -> tuple[Iterator[dict[str, Any]], int]:
    """`load`, each document read from the file as it is taken, in the order
    `store.apply_order` gives (Services that ask for particular cluster IPs or node
    ports before the others): what `Store.restore(..., in_order=True)` takes, so that a
    big registry's documents are never all in memory at once. The file stays open until
    the documents are all taken (or the iterator is dropped)."""
    path = Path(path)
    if not path.exists():
        return iter(()), 0
    db = _connect(path)
    try:
        found = db.execute("SELECT value FROM state WHERE key = 'resource_version'").fetchone()
        cursor = db.execute(_IN_KIND_ORDER, KIND_ORDER)
    except sqlite3.Error as exc:
        db.close()
        raise StorageError(f"{path}: {exc}") from exc
    return _documents(db, cursor, path), int(found[0]) if found else 0


def _documents(db: sqlite3.Connection, cursor: sqlite3.Cursor, path: Path) -> Iterator[dict[str, Any]]:
    services: list[dict[str, Any]] = []  # a few: held to be put in apply_order
    try:
        for kind, namespace, name, text in cursor:
            if kind not in API_VERSIONS:
                raise StorageError(f"{path}: unknown kind {kind!r} ({namespace}/{name})")
            try:
                document = json.loads(text)
            except ValueError as exc:
                raise StorageError(f"{path}: {kind} {namespace}/{name}: {exc}") from exc
            if kind == SERVICE:
                services.append(document)
                continue
            if services:
                yield from _in_apply_order(services)
            yield document
        yield from _in_apply_order(services)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: {exc}") from exc
    finally:
        db.close()


def _in_apply_order(services: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The Services held so far, in apply_order (a stable sort), each let go as it is taken."""
    services.sort(key=apply_order)
    services.reverse()  # taken from the end
    while services:
        yield services.pop()


def erase(path: Path, announce: Callable[[str], None]) -> int | None:
    """Delete the registry saved at `path` (`kdns reset`), after `announce`-ing what it
    holds; its resource version, or None when there is none. StorageError while a kdns
    has it open."""
    if not path.exists():
        return None
    lock = _lock(path)
    try:
        documents, version = load(path)
        counts = Counter(str(document.get("kind")) for document in documents)
        held = ", ".join(f"{counts[kind]} {kind}" for kind in KIND_ORDER if counts[kind]) or "no objects"
        announce(f"deleting the registry saved in {path}: {held} (resource version {version})")
        for suffix in ("", "-wal", "-shm"):  # WAL mode's companions go with it
            try:
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            except OSError as exc:
                raise StorageError(f"{path}: cannot delete: {exc.strerror or exc}") from None
    finally:
        if lock is not None:
            os.close(lock)
    announce("deleted: the next `kdns serve` starts from its manifests alone")
    return version
