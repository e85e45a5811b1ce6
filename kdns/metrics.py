"""kdns's Prometheus metrics, on an injected `CollectorRegistry`.

Names follow `kdns_<subsystem>_<name>_<unit>`. The DNS hot path does not touch
prometheus_client per query: the wire layer counts answers in plain integers
(`kdns.wire.fastpath.QueryStats`), which a collector sums when /metrics is scraped, and it
times a sample of the queries (`observe_duration`).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from kdns.message import rcode_text, type_text

# Event types of kdns.registry.objects, spelled out: metrics sits below the registry layer.
ADDED, DELETED = "ADDED", "DELETED"

# Answers from the index take microseconds, forwarded ones milliseconds to seconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


QueryCounts = Callable[[], Mapping[tuple[int, int], int]]
# Datagrams a UDP server dropped, by reason: "in_flight" (a query past the cap of queries
# being answered) and "send_buffer" (a reply the socket's send buffer had no room for).
DropCounts = Callable[[], Mapping[str, int]]
DROP_REASONS = ("in_flight", "send_buffer")


class _SummedCounter:
    """A counter family summed from plain-integer sources when /metrics is scraped: the
    wire layer counts in ints on its hot path, never through prometheus_client."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...],
        label_values: Callable[[Any], list[str]],
        always: tuple[Any, ...] = (),
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.label_values = label_values
        self.always = always  # keys shown (as 0) before anything is counted
        self.sources: list[Callable[[], Mapping[Any, int]]] = []

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        totals: Tally[Any] = Tally(dict.fromkeys(self.always, 0))
        for source in self.sources:
            totals.update(source())
        for key, count in sorted(totals.items()):
            family.add_metric(self.label_values(key), count)
        yield family


# The forwarder's and its cache's counters (plain ints on their objects), by the name
# of each one's kdns_forward_<name>_total / kdns_cache_<name>_total family.
FORWARD_COUNTERS = {
    "queries": "Questions handed to the forwarder (cache misses).",
    "coalesced": "Of those, answered by an identical question's upstream exchange already in flight.",
    "requests": "Messages sent to upstreams, UDP and TCP.",
    "tcp_retries": "UDP replies with TC asked again over TCP.",
    "failures": "Tries at an upstream that gave no usable answer, timeouts included.",
    "timeouts": "Of those, tries that timed out.",
    "servfails": "Questions answered SERVFAIL because every upstream failed.",
    "loops": "Loop probes that came back to kdns.",
}
CACHE_COUNTERS = {
    "hits": "Questions answered from a fresh cache entry.",
    "misses": "Questions the cache had no fresh entry for.",
    "stale_hits": "Questions answered from an expired entry because every upstream failed (RFC 8767).",
    "stores": "Upstream answers stored.",
}
Counts = Callable[[], Mapping[str, int]]


class _NamedCounters:
    """One counter family per name (`<prefix>_<name>_total`), read from `counts()` when
    /metrics is scraped, plus optional gauges: for objects that count in plain ints."""

    def __init__(self, prefix: str, counters: Mapping[str, str], gauges: Mapping[str, str] | None = None) -> None:
        self.prefix, self.counters, self.gauges = prefix, counters, gauges or {}
        self.sources: list[Counts] = []

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        totals: Tally[str] = Tally()
        for source in self.sources:
            totals.update(source())
        for name, documentation in self.counters.items():
            family = CounterMetricFamily(f"{self.prefix}_{name}", documentation)
            family.add_metric([], totals[name])
            yield family
        for name, documentation in self.gauges.items():
            gauge = GaugeMetricFamily(f"{self.prefix}_{name}", documentation)
            gauge.add_metric([], totals[name])
            yield gauge


class Metrics:
    """Every metric kdns exports; one instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._answered = _SummedCounter(
            "kdns_dns_queries",
            "DNS queries answered, by question type and response code.",
            ("qtype", "rcode"),
            lambda key: [type_text(key[0]), rcode_text(key[1])],
        )
        self._dropped = _SummedCounter(
            "kdns_dns_udp_dropped",
            "UDP datagrams dropped: queries past the in-flight cap (in_flight), replies the "
            "socket's send buffer had no room for (send_buffer). The client retries either.",
            ("reason",),
            lambda reason: [reason],
            always=DROP_REASONS,
        )
        self.registry.register(self._answered)
        self.registry.register(self._dropped)
        self._forward = _NamedCounters("kdns_forward", FORWARD_COUNTERS)
        self._cache = _NamedCounters("kdns_cache", CACHE_COUNTERS, {"entries": "Answers in the forwarding cache."})
        self.registry.register(self._forward)
        self.registry.register(self._cache)
        self._duration = Histogram(
            "kdns_dns_request_duration_seconds",
            "Time from reading a DNS query to having its answer (a sample of the immediate "
            "answers, every forwarded one).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._worker_sync = Histogram(
            "kdns_worker_sync_seconds",
            "Time from a registry commit to a worker of --workers having applied it.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._objects = Gauge(
            "kdns_registry_objects",
            "Objects in the registry, by kind.",
            ("kind",),
            registry=self.registry,
        )
        self._writes = Counter(
            "kdns_api_writes",
            "API write requests, by verb, resource and HTTP status code.",
            ("verb", "resource", "code"),
            registry=self.registry,
        )
        self._watches = Gauge(
            "kdns_api_watches", "Open API watch streams.", registry=self.registry
        )
        self._object_children: dict[str, Any] = {}
        # Each (verb, resource, code)'s child of kdns_api_writes, looked up once: labels()
        # checks and locks at every call, a tenth of the API's own work in a status write.
        self._write_children: dict[tuple[str, str, int], Any] = {}

    # --- DNS ----------------------------------------------------------------------------

    def add_query_counts(self, totals: QueryCounts) -> None:
        """Count the answers of a wire server: `totals()` maps (qtype, rcode) to a count."""
        self._answered.sources.append(totals)

    def add_udp_drops(self, drops: DropCounts) -> None:
        """Count the drops of a UDP server: `drops()` maps a reason to a count."""
        self._dropped.sources.append(drops)

    def add_forward_counts(self, counts: Counts) -> None:
        """Count a forwarder's work: `counts()` maps each name of FORWARD_COUNTERS to a count."""
        self._forward.sources.append(counts)

    def add_cache_counts(self, counts: Counts) -> None:
        """Count a forwarding cache's work: CACHE_COUNTERS and `entries`."""
        self._cache.sources.append(counts)

    def observe_duration(self, seconds: float) -> None:
        """One timed query (the wire layer samples which)."""
        self._duration.observe(seconds)

    def observe_worker_sync(self, seconds: float) -> None:
        """One commit applied by one worker, `seconds` after the primary made it."""
        self._worker_sync.observe(seconds)

    # --- registry -----------------------------------------------------------------------

    def _objects_of(self, kind: str) -> Any:
        gauge = self._object_children.get(kind)
        if gauge is None:
            gauge = self._objects.labels(kind)
            self._object_children[kind] = gauge
        return gauge

    def set_objects(self, kind: str, count: int) -> None:
        """The count of one kind, e.g. from `len(store.list(kind))` at start-up."""
        self._objects_of(kind).set(count)

    def on_events(self, events: Sequence[Any]) -> None:
        """A store listener: keeps `kdns_registry_objects` in step with committed events."""
        for event in events:
            if event.type == ADDED:
                self._objects_of(event.object.kind).inc()
            elif event.type == DELETED:
                self._objects_of(event.object.kind).dec()

    # --- API ----------------------------------------------------------------------------

    def observe_write(self, verb: str, resource: str, code: int) -> None:
        key = (verb, resource, code)
        counter = self._write_children.get(key)
        if counter is None:
            counter = self._write_children[key] = self._writes.labels(verb, resource, str(code))
        counter.inc()

    def watch_opened(self) -> None:
        self._watches.inc()

    def watch_closed(self) -> None:
        self._watches.dec()

    # --- exposition ---------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type, for `/metrics`."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
