"""Events (core v1) for what kdns does: what `kubectl get events` and `kubectl describe`
read about it.

kdns plays the kubelet's readiness prober (kdns/prober.py), and says what it finds as
the kubelet does: a Warning `Unhealthy` event, "Readiness probe failed: ...", for the
pod. The API says so too when it refuses a Service for want of a ClusterIP or NodePort
(kdns/api/crud.py). Repeats of one event (same object, type, reason and message) are counted on one
Event, whose lastTimestamp moves on, as client-go's event correlator aggregates them;
an Event no one repeated for `ttl` seconds goes (kube-apiserver's --event-ttl, one hour
by default); at most `limit` are kept, the oldest dropped first. Events live in memory:
like the API server's, they are a recent history, not state.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from kdns.registry.admission import timestamp
from kdns.registry.objects import API_VERSIONS, KubeObject, ObjectReference

__all__ = ["EventLog"]

TTL = 3600.0
LIMIT = 10_000


class EventLog:
    """The Events kdns has recorded, newest last."""

    def __init__(self, *, ttl: float = TTL, limit: int = LIMIT, clock: Callable[[], float] = time.time) -> None:
        self._ttl = ttl
        self._limit = limit
        self._clock = clock
        self._events: OrderedDict[tuple[str, ...], dict[str, Any]] = OrderedDict()
        self._touched: dict[tuple[str, ...], float] = {}
        self._serial = itertools.count(1)

    def record(
        self, involved: KubeObject | ObjectReference, type_: str, reason: str, message: str, *,
        component: str, host: str = "", field_path: str = "",
    ) -> dict[str, Any]:
        """Record (or count once more) an event about `involved` (a reference: an object
        that is not stored, such as one whose create was refused); returns the Event."""
        now = self._clock()
        if isinstance(involved, ObjectReference):
            ref, version = involved, 0
        else:
            meta = involved.meta
            ref = ObjectReference(involved.kind, meta.namespace, meta.name, meta.uid)
            version = meta.resource_version
        key = (ref.uid, ref.namespace, ref.name, field_path, type_, reason, message)
        stamp = timestamp(now)
        event = self._events.pop(key, None)
        if event is None:
            involved_object = {
                "kind": ref.kind, "namespace": ref.namespace, "name": ref.name, "uid": ref.uid,
                "apiVersion": API_VERSIONS[ref.kind], "resourceVersion": str(version) if version else "",
            }
            if field_path:
                involved_object["fieldPath"] = field_path
            source = {"component": component, **({"host": host} if host else {})}
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    # As client-go names them: the object's name and the time, in hex.
                    "name": f"{ref.name}.{int(now * 1e9):x}",
                    "namespace": ref.namespace or "default",
                    "creationTimestamp": stamp,
                },
                "involvedObject": {k: v for k, v in involved_object.items() if v},
                "reason": reason,
                "message": message,
                "source": source,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 0,
                "type": type_,
                "reportingComponent": component,
                "reportingInstance": host,
            }
        event["count"] += 1
        event["lastTimestamp"] = stamp
        event["metadata"]["resourceVersion"] = str(next(self._serial))
        self._events[key] = event
        self._touched[key] = now
        while len(self._events) > self._limit:
            old, _ = self._events.popitem(last=False)
            self._touched.pop(old, None)
        return event

    def events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The live Events (in `namespace`), oldest first."""
        horizon = self._clock() - self._ttl
        for key in [k for k, seen in self._touched.items() if seen < horizon]:
            self._events.pop(key, None)
            del self._touched[key]
        return [e for e in self._events.values() if namespace is None or e["metadata"]["namespace"] == namespace]


def _involved(name: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda event: str(event["involvedObject"].get(name, ""))


# What every kind's objects can be selected by.
METADATA_FIELDS: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "metadata.name": lambda e: e["metadata"]["name"],
    "metadata.namespace": lambda e: e["metadata"]["namespace"],
}
# kube-apiserver's selectable fields of an Event (pkg/registry/core/event/strategy.go).
_FIELDS: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    **METADATA_FIELDS,
    **{
        f"involvedObject.{name}": _involved(name)
        for name in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    },
    "reason": lambda e: e["reason"],
    "reportingComponent": lambda e: e["reportingComponent"],
    "source": lambda e: e["source"].get("component", ""),
    "type": lambda e: e["type"],
}


def field_matcher(
    text: str, fields: Mapping[str, Callable[[Mapping[str, Any]], str]] | None = None
) -> Callable[[Mapping[str, Any]], bool]:
    """A fieldSelector over Events (`involvedObject.name=web-1,type!=Normal`), or over other
    documents made when read by `fields` (METADATA_FIELDS); ValueError names a field they
    cannot be selected by."""
    fields = _FIELDS if fields is None else fields
    terms = []
    for clause in filter(None, (part.strip() for part in text.split(","))):
        for operator in ("!=", "==", "="):
            field, found, value = clause.partition(operator)
            if found:
                break
        else:
            raise ValueError(f"invalid selector: {text!r}; can't understand {clause!r}")
        read = fields.get(field.strip())
        if read is None:
            raise ValueError(f"field label not supported: {field.strip()}")
        terms.append((read, value.strip(), operator != "!="))
    return lambda event: all((read(event) == value) == equal for read, value, equal in terms)
