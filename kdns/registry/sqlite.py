"""Durable registry state: every committed batch of changes written to SQLite, and read back.

`SqliteJournal` writes batches of changes, each in one SQLite transaction, in WAL mode
with `synchronous=FULL` (https://www.sqlite.org/pragma.html#pragma_synchronous: FULL
makes a committed WAL transaction durable across power loss). Called as a store listener
it saves each commit inside the commit, synchronously (start-up's load, tools, tests);
while kdns serves, kdns/journal.py's `JournalWriter` hands it the commits' `rows` on a
thread of its own, several commits to one transaction, so the fsync never holds up the
event loop, and a write's API reply waits for it.

`load(path)` returns what is stored, for start-up (`Saved`). Each object is stored twice:
its Kubernetes document (JSON: what it is, readable by any version of kdns) and, in the
table `typed`, the typed object as this kdns built it (`registry.typedrows`, tagged with
`object_format()`). A start-up takes
the typed objects as they are, without reading, defaulting and validating the document
again (a registry of 100,000 pods: about 1.5 s instead of 8); a row whose tag is not this
kdns's (written by another version, or by schema version 1, which had no typed object) is
restored from its document through admission, as before, and the caller then writes the
file again (`replace_all`) so that the next start is fast. Documents keep their
`spec.clusterIP(s)` and `nodePort`s, so restoring them reserves the same addresses and
ports. EndpointSlices that the EndpointSlice controller manages are not stored: they are
derived from Services and Pods, and the controller writes them again.

A typed object is a marshal'ed tuple of plain values, which its class's constructor
takes (`registry.typedrows`): a file that is not kdns's own cannot make start-up run
anything, and a row that does not decode is refused, naming it. The file is this kdns's
own state, under the lock below, like the document it holds.

The file holds a table of documents and one of typed objects, both keyed by (kind,
namespace, name), and the resource version of the last batch written; `PRAGMA
user_version` is the schema version (1 had no typed objects: such a file is upgraded in
place when opened).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kdns.errors import KdnsError
from kdns.registry import endpoints, manifests, objects, typedrows
from kdns.registry.manifests import to_manifest
from kdns.registry.objects import (
    API_VERSIONS,
    CONTROLLER_NAME,
    DELETED,
    ENDPOINT_SLICE,
    MANAGED_BY_LABEL,
    Event,
    KubeObject,
)

SCHEMA_VERSION = 2
FILE_NAME = "registry.sqlite3"
Row = tuple[str, tuple[Any, ...]]  # one SQL statement and its parameters
# Restore order: what a document needs exists before it (namespaces before what is in them).
KIND_ORDER = ("Namespace", "Node", "Service", "Pod", "EndpointSlice")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS typed (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    object BLOB NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
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
        if version not in (0, 1, SCHEMA_VERSION):
            db.close()
            raise StorageError(f"{path}: schema version {version}, this kdns reads {SCHEMA_VERSION}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)  # (schema 1 had no `typed`: its rows are restored from their documents)
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
                    db.execute("DELETE FROM typed")
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
        self._transaction(
            (row for obj in objects for row in ((_upsert_typed(obj),) if _derived(obj) else _upsert(obj))),
            resource_version, clear=True,
        )

    def __call__(self, events: Sequence[Event]) -> None:
        """The store listener: one SQLite transaction per committed batch."""
        if events:
            self._transaction(rows(events), events[-1].resource_version)


def rows(events: Sequence[Event]) -> Iterator[Row]:
    """What saving one commit's events takes: the statements and their parameters, made
    one object at a time as they are taken (kdns/journal.py's thread lets go of the GIL
    between them). The EndpointSlice controller's slices are kept as typed objects only
    (see the module's docstring)."""
    for event in events:
        obj = event.object
        if event.type == DELETED:
            yield from _delete(obj)
        elif not _derived(obj):
            yield from _upsert(obj)
        elif event.old is None or _derived(event.old):
            yield _upsert_typed(obj)
        else:  # a slice the controller took over: its document goes
            yield _delete(obj)[0]
            yield _upsert_typed(obj)


def _upsert(obj: Any) -> tuple[Row, Row]:
    key = (obj.kind, obj.meta.namespace, obj.meta.name)
    document = json.dumps(to_manifest(obj), separators=(",", ":"), sort_keys=True)
    return (_UPSERT_DOCUMENT, (*key, obj.meta.resource_version, document)), _upsert_typed(obj)


def _upsert_typed(obj: Any) -> Row:
    # Typed objects are in a table of their own, with rowids: a WITHOUT ROWID table keeps
    # rows over about 1,000 bytes in overflow pages of their own, which made the file
    # eight times larger (https://www.sqlite.org/withoutrowid.html, section 4).
    typed = object_format() + typedrows.encode(obj)
    return _UPSERT_TYPED, (obj.kind, obj.meta.namespace, obj.meta.name, typed)


def _delete(obj: Any) -> tuple[Row, Row]:
    key = (obj.kind, obj.meta.namespace, obj.meta.name)
    return (
        ("DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?", key),
        ("DELETE FROM typed WHERE kind = ? AND namespace = ? AND name = ?", key),
    )


_UPSERT_DOCUMENT = (
    "INSERT INTO objects (kind, namespace, name, resource_version, document) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (kind, namespace, name) DO UPDATE SET"
    " resource_version = excluded.resource_version, document = excluded.document"
)
_UPSERT_TYPED = (
    "INSERT INTO typed (kind, namespace, name, object) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (kind, namespace, name) DO UPDATE SET object = excluded.object"
)


@cache
def object_format() -> bytes:
    """The tag of a typed object this kdns wrote: a digest of the code that defines the
    objects (`kdns.registry.objects`), reads them from their documents
    (`kdns.registry.manifests`), derives the EndpointSlices (`kdns.registry.endpoints`)
    and writes the objects into rows (`kdns.registry.typedrows`).
    Any change to these makes older typed objects count as absent, so they are read again
    from their documents and the slices derived again, never taken as they are."""
    digest = hashlib.blake2b(digest_size=8)
    for module in (objects, manifests, endpoints, typedrows):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.digest()


@dataclass(frozen=True, slots=True)
class Saved:
    """What a journal file holds: the typed objects this kdns wrote (to be taken as they
    are), the documents of the other rows (to be restored through admission), both in
    restore order, the EndpointSlice controller's slices as it last wrote them (None when
    they must be derived again: some rows were not this kdns's), and the resource version
    of the last write. `stale` says that some rows were not this kdns's typed objects:
    writing the file again makes the next start fast."""

    objects: list[KubeObject]
    documents: list[dict[str, Any]]
    version: int
    derived: list[KubeObject] | None = None

    @property
    def stale(self) -> bool:
        return bool(self.documents)


def load(path: Path | str) -> Saved:
    """What is stored at `path` (Namespaces first, then Nodes, Services, Pods,
    EndpointSlices; by namespace and name within a kind); empty at version 0 when there is
    no file yet."""
    path = Path(path)
    if not path.exists():
        return Saved([], [], 0)
    db = _connect(path)
    tag = object_format()
    skip = len(tag)
    order = {kind: number for number, kind in enumerate(KIND_ORDER)}
    typed_objects: list[KubeObject] = []
    derived: list[KubeObject] = []
    stale = False  # some typed row is not this kdns's
    try:
        # One scan of the typed objects (what a start of this kdns takes as they are), and
        # a count of the documents: each object but a derived slice has both (one write
        # saves both), so when the counts agree no document is needed and none is read.
        # EndpointSlices last: the decoder shares their endpoints' values with their pods'.
        decoder = typedrows.Decoder()
        for kind, namespace, name, typed in itertools.chain(
            db.execute("SELECT kind, namespace, name, object FROM typed WHERE kind <> ?"
                       " ORDER BY kind, namespace, name", (ENDPOINT_SLICE,)),
            db.execute("SELECT kind, namespace, name, object FROM typed WHERE kind = ?"
                       " ORDER BY namespace, name", (ENDPOINT_SLICE,)),
        ):
            if kind not in API_VERSIONS:
                raise StorageError(f"{path}: unknown kind {kind!r} ({namespace}/{name})")
            if not _tagged(typed, tag):
                stale = True
                continue
            obj = _typed(path, decoder, kind, namespace, name, typed, skip)
            (derived if _derived(obj) else typed_objects).append(obj)
        (documented,) = db.execute("SELECT count(*) FROM objects").fetchone()
        documents_of: dict[tuple[str, str, str], str] = {}
        if documented != len(typed_objects):  # some documents have no typed object of this kdns's
            held = {(obj.kind, obj.meta.namespace, obj.meta.name) for obj in typed_objects}
            missing = [key for key in db.execute("SELECT kind, namespace, name FROM objects") if key not in held]
            documents_of = {key: text for key, text in _documents(db, missing) if key not in held}
        found = db.execute("SELECT value FROM state WHERE key = 'resource_version'").fetchone()
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: {exc}") from exc
    finally:
        db.close()
    typed_objects.sort(key=lambda obj: order[obj.kind])  # stable: by namespace and name within a kind
    documents = []
    for (kind, namespace, name), text in sorted(documents_of.items(), key=lambda item: order.get(item[0][0], len(order))):
        if kind not in API_VERSIONS:
            raise StorageError(f"{path}: unknown kind {kind!r} ({namespace}/{name})")
        try:
            documents.append(json.loads(text))
        except ValueError as exc:
            raise StorageError(f"{path}: {kind} {namespace}/{name}: {exc}") from exc
    # The controller's saved slices stand only when every object they were made from is
    # restored as it was saved.
    kept = None if documents or stale else derived
    return Saved(typed_objects, documents, int(found[0]) if found else 0, kept)


def _typed(
    path: Path, decoder: typedrows.Decoder, kind: str, namespace: str, name: str, typed: bytes, skip: int,
) -> KubeObject:
    """The typed object of one row (`skip`: the length of its tag); StorageError naming it."""
    try:
        return decoder.decode(kind, memoryview(typed)[skip:])
    except (ValueError, TypeError, KeyError, AttributeError, EOFError) as exc:
        raise StorageError(f"{path}: {kind} {namespace}/{name}: not a typed {kind} of this kdns ({exc})") from exc


def _tagged(typed: bytes | None, tag: bytes) -> bool:
    return typed is not None and typed[:len(tag)] == tag


def _documents(db: sqlite3.Connection, keys: list[tuple[str, str, str]]) -> Iterable[tuple[tuple[str, str, str], str]]:
    if len(keys) * 2 > 1000:  # most of the file (a version 1 file, or an upgrade): read all of it
        for kind, namespace, name, text in db.execute("SELECT kind, namespace, name, document FROM objects"):
            yield (kind, namespace, name), text
        return
    for key in keys:
        (text,) = db.execute(
            "SELECT document FROM objects WHERE kind = ? AND namespace = ? AND name = ?", key
        ).fetchone()
        yield key, text


def erase(path: Path, announce: Callable[[str], None]) -> int | None:
    """Delete the registry saved at `path` (`kdns reset`), after `announce`-ing what it
    holds; its resource version, or None when there is none. StorageError while a kdns
    has it open."""
    if not path.exists():
        return None
    lock = _lock(path)
    try:
        counts, version = _counts(path)
        held = ", ".join(f"{counts[kind]} {kind}" for kind in KIND_ORDER if counts.get(kind)) or "no objects"
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


def _counts(path: Path) -> tuple[dict[str, int], int]:
    """How many objects of each kind are stored at `path`, and its resource version."""
    db = _connect(path)
    try:
        counts = dict(db.execute("SELECT kind, count(*) FROM objects GROUP BY kind").fetchall())
        found = db.execute("SELECT value FROM state WHERE key = 'resource_version'").fetchone()
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: {exc}") from exc
    finally:
        db.close()
    return counts, int(found[0]) if found else 0
