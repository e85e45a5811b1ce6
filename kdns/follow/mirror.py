"""The follower's copy of the followed cluster: every object of each followed kind, as
the API sent it, and the ClusterIndex that answers DNS from them.

Objects are stored as they come (`manifests.parse`: read, not admitted): the followed
cluster's ClusterIPs, EndpointSlices and versions, with no allocator or controller of
kdns's own in between. Each change reaches the index as one `apply` in one synchronous
step, and so does a whole relisted kind (`replace`): the index answers from the previous
list until the new one is complete, and then from the new one, never from part of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kdns.authority.index import ClusterIndex
from kdns.metrics import Metrics
from kdns.registry.errors import RegistryError
from kdns.registry.manifests import parse
from kdns.registry.objects import (
    ADDED,
    API_VERSIONS,
    DELETED,
    MODIFIED,
    Event,
    KubeObject,
)

__all__ = ["Mirror", "read_object"]

log = logging.getLogger("kdns.follow")

Where = tuple[str, str]  # (namespace, name)


def read_object(kind: str, doc: Any) -> KubeObject | None:
    """The registry object for one document of `kind` from the followed API, or None
    (logged) when kdns cannot read it. List items come without kind and apiVersion."""
    if not isinstance(doc, dict):
        log.warning("the followed API sent a %s that is not an object: ignored", kind)
        return None
    doc["kind"] = kind
    doc.setdefault("apiVersion", API_VERSIONS[kind])
    try:
        return parse(doc, kind)
    except RegistryError as exc:
        metadata = doc.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
        where = "/".join(filter(None, (metadata.get("namespace"), metadata.get("name"))))
        log.warning("cannot read %s %s from the followed API: %s; not served", kind, where or "?", exc)
        return None


class Mirror:
    """The followed kinds' objects, and the index kept in step with them."""

    def __init__(self, index: ClusterIndex, metrics: Metrics, kinds: Iterable[str]) -> None:
        self.index = index
        self._metrics = metrics
        self._tables: dict[str, dict[Where, KubeObject]] = {kind: {} for kind in kinds}

    def count(self, kind: str) -> int:
        return len(self._tables[kind])

    def load(self, lists: Mapping[str, list[KubeObject]], serial: int) -> None:
        """The first complete list of every kind: the index is built from them at once."""
        for kind, objects in lists.items():
            self._tables[kind] = {(o.meta.namespace, o.meta.name): o for o in objects}
            self._metrics.set_objects(kind, len(self._tables[kind]))
        self.index.rebuild([o for table in self._tables.values() for o in table.values()], serial)

    def replace(self, kind: str, objects: list[KubeObject], resource_version: int) -> int:
        """A complete new list of `kind` in place of the old one, in one step; returns how
        many objects it changed."""
        table = self._tables[kind]
        fresh = {(o.meta.namespace, o.meta.name): o for o in objects}
        version = self._version(resource_version)
        events = [Event(DELETED, old, old, version) for where, old in table.items() if where not in fresh]
        for where, new in fresh.items():
            old = table.get(where)
            if old is None:
                events.append(Event(ADDED, new, None, version))
            elif old.document != new.document and old.manifest != new.manifest:  # (equal bytes: equal documents)
                events.append(Event(MODIFIED, new, old, version))
        self._tables[kind] = fresh
        self._metrics.set_objects(kind, len(fresh))
        self.index.apply(events)
        if not events:
            self.index.advance(version)
        return len(events)

    def apply(self, kind: str, change: str, obj: KubeObject | None, where: Where, resource_version: int) -> None:
        """One watch event: `obj` is None when the document could not be read (the object
        then stops being served, as if deleted)."""
        table = self._tables[kind]
        old = table.get(where)
        version = self._version(resource_version)
        if change == DELETED or obj is None:
            if old is None:
                return
            del table[where]
            event = Event(DELETED, old, old, version)
        else:
            table[where] = obj
            event = Event(MODIFIED if old is not None else ADDED, obj, old, version)
        self._metrics.on_events((event,))
        self.index.apply([event])

    def _version(self, resource_version: int) -> int:
        # Each kind is watched on its own, so their versions arrive out of step with each
        # other: the zone's serial never goes back.
        return max(self.index.serial, resource_version)
