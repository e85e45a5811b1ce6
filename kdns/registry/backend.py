"""The seam between the registry's users and where its commits are made.

Everything above the store (the API, the prober, start-up's manifest load) reads the
in-memory `Store` directly, always at once, and writes only through a `Backend`:

    obj = await backend.write(lambda txn: txn.create(doc))

`LocalBackend` commits in this process (the embedded store, journaled to SQLite under
--data-dir): `write` is the store transaction itself, so nothing changes for a kdns
without --store. `kdns.etcd.store.EtcdBackend` previews the transaction on the local store,
sends it to etcd as one compare-and-swap, and returns once the replica's own watch has
applied it: the store is then a replica of etcd, fed by its watch, like every other
kdns's. Neither the API nor the prober knows which one it has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from kdns.registry.errors import RegistryError
from kdns.registry.store import Store, Transaction

T = TypeVar("T")


class Unavailable(RegistryError):
    """The registry cannot take writes now (its etcd is unreachable): the API's 503."""


class NotLeader(RegistryError):
    """A fenced write from a replica that does not hold the controller lease."""


class _DryRun(Exception):
    """Raised inside a transaction to roll back a dry run; carries its result."""

    def __init__(self, result: object) -> None:
        super().__init__()
        self.result = result


class Backend(Protocol):
    """Where commits are made. `store` is this process's view: reads never wait."""

    @property
    def store(self) -> Store: ...

    async def write(self, change: Callable[[Transaction], T], *, dry_run: bool = False, fenced: bool = False) -> T:
        """Run `change(txn)` as one transaction and commit it; what it returned, with the
        resource version it was committed at. A dry run commits nothing. `fenced`: a
        write of the cluster's single controller (the prober), refused with NotLeader by
        a replica that does not hold the controller lease."""
        ...

    def ready(self) -> bool:
        """Writes can be taken (/readyz)."""
        ...


class LocalBackend:
    """The embedded registry: one process commits, its journal (if any) is a critical
    listener of the store, so a commit is saved before it is acknowledged."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store:
        return self._store

    async def write(self, change: Callable[[Transaction], T], *, dry_run: bool = False, fenced: bool = False) -> T:
        # One process, one prober: nothing to fence. No await: the commit is done (and
        # journaled) in the same turn of the loop, as before the seam.
        try:
            with self._store.transaction() as txn:
                result = change(txn)
                if dry_run:
                    raise _DryRun(result)
        except _DryRun as done:
            return done.result  # type: ignore[return-value]
        return result

    def ready(self) -> bool:
        return True
