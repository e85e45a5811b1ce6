"""The Router: which part of kdns answers a query, and what happens to the rest.

One query goes to the first of these that holds its name:

1. a static zone nested inside a kdns zone (`2.0.192.in-addr.arpa.` from --zones-dir):
   the closest enclosing zone answers (RFC 1034 section 4.3.2), so it wins over the
   reverse zone around it. A static zone *equal* to a kdns zone is ignored (`shadowed`);
2. the cluster zone and the reverse zones: the authority, from the registry, at once
   (no await, so the wire servers answer without a task). These answers never touch
   the forwarding cache: a registry change shows on the next query;
3. the static zones, authoritatively, to every client;
4. anything else is `outside`: REFUSED with RA=0 without a forwarder or for a client
   outside --allow-recursion (kdns is never an open resolver; RFC 5358); with RD=0 the
   cache alone answers (RFC 1034 section 4.3.1: no recursion was asked for), else the
   cache, then the upstreams (`CachingForwarder.lookup`). Each REFUSED says why in an
   Extended DNS Error (RFC 8914): Not Authoritative without a forwarder or for RD=0
   (§4.21), Prohibited for a client outside --allow-recursion (§4.19).

An authoritative answer may then be completed:

* CNAME chase: an answer that ends in a CNAME to a name outside the kdns zones (an
  ExternalName Service, an alias in a static zone) gets the target's records, from
  the zone holding it, else from upstream for a client that may recurse
  (docs/dns-rules.md R30; CoreDNS asks its own plugin chain). The rcode is the target's (RFC 6604), so an
  upstream NXDOMAIN is NXDOMAIN with the CNAME and the upstream's SOA; an upstream
  failure leaves the CNAME alone, NOERROR, as with no upstream at all (R27, R30:
  never NXDOMAIN for a failure). However many zones it crosses, one answer holds at most
  MAX_CNAME_CHAIN (8) CNAMEs: the chain is cut after the eighth, NOERROR, and the asker's
  resolver may follow the rest.
* Reverse fallthrough (CoreDNS `fallthrough in-addr.arpa ip6.arpa`): NXDOMAIN under a
  reverse zone is an address the registry does not know; a client that may recurse
  gets the upstream's answer instead. Without a forwarder (or for any other client)
  it stays NXDOMAIN with the reverse zone's SOA.
* Autopath (--autopath, CoreDNS `autopath @kubernetes`): see `Router._autopath`.

Reuse (the wire layer's ready replies, by the contract of kdns/reuse.py): an answer
that depends on nothing but the question and what kdns serves is `Shared`: the
authority's within the scope it read (`kdns.authority.answer`), a static zone's until the
next reload; `on_change` tells the wire layer what each registry commit touched, and that
a static-zone reload may have changed anything. An answer that depends on the client is `Private`: the ACL's REFUSED while
forwarding is on, an NXDOMAIN that a recursing client would have had forwarded or
autopathed, a CNAME left alone because this client may not recurse, an autopath answer,
anything after an upstream failure. Forwarded answers carry the forwarding cache's own
mark (`Forwarded`, until their TTLs count down).

Search-path storms need nothing more: with `ndots:5` a pod asks `<name>.<ns>.svc.<zone>`,
`<name>.svc.<zone>` and `<name>.<zone>` before `<name>.`; all three are in the cluster
zone, so the authority answers them NXDOMAIN at once and none goes upstream.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import lru_cache
from typing import Protocol

from kdns.authority import records
from kdns.authority.answer import answer
from kdns.authority.index import ClusterIndex
from kdns.authority.names import (
    IPAddress,
    is_below,
    search_list,
    split_search,
    zone_of,
)
from kdns.authority.static import StaticZones
from kdns.config import Settings
from kdns.message import (
    MAX_CNAME_CHAIN,
    NOERROR,
    NXDOMAIN,
    QTYPE,
    REFUSED,
    RR,
    Answer,
    EdeCode,
    ExtendedError,
    Query,
    record_type,
)
from kdns.reuse import (
    PRIVATE,
    UNSCOPED,
    ChangeListener,
    Private,
    combined,
)

__all__ = ["Forward", "Router"]

# Forwarding off: every client gets this for every outside name.
_REFUSED_ALL = Answer(
    rcode=REFUSED,
    reuse=UNSCOPED,
    errors=(ExtendedError(EdeCode.NOT_AUTHORITATIVE, "not a zone kdns serves, and forwarding is off"),),
)
# RA=0: this client gets no recursion here, so a stub moves on to its next server at once.
_REFUSED = Answer(
    rcode=REFUSED,
    authoritative=False,
    recursion_available=False,
    errors=(ExtendedError(EdeCode.PROHIBITED, "recursion is for the clients of --allow-recursion"),),
)
# RA=1: recursion is offered to this client, just not for an RD=0 question kdns cannot
# answer from its cache.
_REFUSED_NO_RD = Answer(
    rcode=REFUSED,
    authoritative=False,
    recursion_available=True,
    errors=(ExtendedError(EdeCode.NOT_AUTHORITATIVE, "not in the cache, and recursion was not desired (RD=0)"),),
)
_NO_CHASE = frozenset({QTYPE.CNAME, QTYPE.ANY, QTYPE.AXFR, QTYPE.IXFR})
_USABLE = frozenset({NOERROR, NXDOMAIN})
# dnslib's QTYPE looks names up on every attribute access: read it once.
_CNAME = QTYPE.CNAME

Result = Answer | Awaitable[Answer]


class Forward(Protocol):
    """What the Router needs of the cache-and-forwarder (`CachingForwarder`)."""

    def lookup(self, query: Query) -> Result: ...

    def cached(self, query: Query) -> Answer | None: ...


def _private(result: Answer) -> Answer:
    """`result`, marked as this client's own: never sent to another."""
    return result if isinstance(result.reuse, Private) else replace(result, reuse=PRIVATE)


def _then(result: Result, finish: Callable[[Answer], Answer]) -> Result:
    """`finish(answer)`, now if `result` is an Answer, else once it has been awaited."""
    if isinstance(result, Answer):
        return finish(result)
    return _finish_later(result, finish)


async def _finish_later(pending: Awaitable[Answer], finish: Callable[[Answer], Answer]) -> Answer:
    return finish(await pending)


def _dangling(result: Answer, qtype: int) -> str | None:
    """The target of the CNAME that ends a positive answer, lower case; None if none."""
    if result.rcode != NOERROR or not result.answer or qtype in _NO_CHASE:
        return None
    last = result.answer[-1]
    if last.rtype != _CNAME:
        return None
    return str(last.rdata.label).lower()


def _joined(head: Answer, tail: Answer) -> Answer:
    """`head`, an answer ending in a CNAME, followed by `tail`, the answer for its target.

    RFC 6604: the rcode is the target's, and so is the authority section of a negative
    answer (its SOA says how long the absence may be cached). A failed target (SERVFAIL,
    REFUSED, ...) leaves `head` as it is, the CNAME alone, for this asker only.
    """
    if tail.rcode not in _USABLE:
        return _private(head)
    negative = tail.rcode == NXDOMAIN or not tail.answer
    return Answer(
        rcode=tail.rcode,
        answer=head.answer + tail.answer,
        authority=tail.authority if negative else (),
        additional=head.additional + tail.additional,
        authoritative=head.authoritative,
        recursion_available=head.recursion_available or tail.recursion_available,
        reuse=combined(head.reuse, tail.reuse),
        errors=head.errors + tail.errors,
        # Where the data at the end of the chain came from: the slow part, if any.
        source=tail.source if tail.source in ("cache", "upstream") else head.source,
    )


def _cnames(result: Answer) -> int:
    return sum(1 for rr in result.answer if rr.rtype == _CNAME)


def _cut(result: Answer) -> Answer:
    """`result` with at most MAX_CNAME_CHAIN CNAMEs: cut after the last one allowed,
    NOERROR, nothing in authority (the answer is positive: it has a CNAME)."""
    kept: list[RR] = []
    count = 0
    for rr in result.answer:
        if rr.rtype == _CNAME:
            if count == MAX_CNAME_CHAIN:
                break
            count += 1
        kept.append(rr)
    if count < MAX_CNAME_CHAIN or len(kept) == len(result.answer):
        return result
    return replace(result, rcode=NOERROR, answer=tuple(kept), authority=())


def _client_ip(client: str | None) -> IPAddress | None:
    """The client's address; an IPv4-mapped IPv6 source (a dual-stack socket) as IPv4."""
    if client is None:
        return None
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Router:
    """`Router(index, settings, static=..., forward=...)(query)`: an Answer now, or an awaitable.

    `static` may be replaced while kdns serves (SIGHUP): one attribute assignment on the
    event loop, so a query sees the old zones or the new ones, never a mix.
    """

    __slots__ = (
        "_allowed", "_forward", "_index", "_listeners", "_nested", "_settings", "_shadowed", "_static", "_zones",
    )

    def __init__(
        self,
        index: ClusterIndex,
        settings: Settings,
        *,
        static: StaticZones | None = None,
        forward: Forward | None = None,
    ) -> None:
        self._index = index
        self._settings = settings
        self._zones = (settings.zone, *settings.reverse_zones)
        self._forward = forward
        self._listeners: list[ChangeListener] = []  # told of static-zone reloads
        networks = settings.allow_recursion

        # Few distinct clients (pods, nodes) ask again and again: remember the verdicts.
        @lru_cache(maxsize=4096)
        def allowed(client: str | None) -> bool:
            ip = _client_ip(client)
            return ip is not None and any(ip in network for network in networks)

        self._allowed = allowed
        self.static = static if static is not None else StaticZones()

    @property
    def static(self) -> StaticZones:
        return self._static

    @static.setter
    def static(self, zones: StaticZones) -> None:
        origins = zones.origins
        settings = self._settings
        self._nested = tuple(
            o for o in origins if o not in self._zones and zone_of(o, settings.zone, settings.reverse_zones)
        )
        self._shadowed = tuple(o for o in origins if o in self._zones)
        self._static = zones
        for listener in tuple(self._listeners):
            listener(None)  # a reload may change any answer

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call `listener` after every registry commit the index takes in (with the
        scopes it touched) and every static-zone reload (None); returns the call that
        stops it (kdns/reuse.py)."""
        self._listeners.append(listener)
        stop_index = self._index.on_change(listener)

        def stop() -> None:
            self._listeners.remove(listener)
            stop_index()

        return stop

    @property
    def shadowed(self) -> tuple[str, ...]:
        """Static zones that are kdns zones too; kdns answers those names itself."""
        return self._shadowed

    @property
    def forward(self) -> Forward | None:
        return self._forward

    @property
    def serial(self) -> int:
        """The serial of the kdns zones' SOA: the last registry commit the index has seen,
        as a 32-bit serial (`records.zone_serial`)."""
        return records.zone_serial(self._index.serial)

    def recursion_allowed(self, client: str | None) -> bool:
        """Whether kdns resolves names it is not authoritative for for this client."""
        return self._forward is not None and self._allowed(client)

    def __call__(self, query: Query) -> Result:
        result = self._local(query)
        if result is None:
            return self.outside(query)
        if result.rcode == NXDOMAIN and (self._forward is not None or self._settings.autopath):
            special = self._after_nxdomain(query, result)
            if special is not None:
                return special
        if result.answer and record_type(result.answer[-1]) == _CNAME:
            return self._chase(query, result)
        return result

    def outside(self, query: Query) -> Result:
        """A name in no zone kdns serves: the cache and the upstreams, or REFUSED."""
        forward = self._forward
        if forward is None:
            return _REFUSED_ALL
        if not self._allowed(query.client):
            return _REFUSED
        if not query.rd:
            return forward.cached(query) or _REFUSED_NO_RD
        return forward.lookup(query)

    # --- completing authoritative answers ---------------------------------------------

    def _local(self, query: Query) -> Answer | None:
        """The answer of the zone kdns serves that holds the name (shared: the authority's
        within what it read, a static zone's until a reload); None if none."""
        name = query.name
        if self._nested and any(is_below(name, origin) for origin in self._nested):
            result = self._static.answer(query)
            if result is not None:
                return replace(result, reuse=UNSCOPED)
        result = answer(query, self._index, self._settings)
        if result is not None:
            return result
        result = self._static.answer(query)
        return None if result is None else replace(result, reuse=UNSCOPED)

    def _resolve(self, query: Query) -> Result | None:
        """A zone's answer, else the upstreams' for a client that may recurse; else None."""
        result = self._local(query)
        if result is not None:
            return result
        forward = self._forward
        if forward is None or not self._allowed(query.client):
            return None
        return forward.lookup(query) if query.rd else forward.cached(query)

    def _chase(self, query: Query, result: Answer, links: int = 0) -> Result:
        """`result` followed by the records of the CNAME target it ends in (module docstring).

        `links`: the zones asked so far, at most one per CNAME (a target that failed
        leaves the answer as it was, and must not be asked again).
        """
        target = _dangling(result, query.qtype)
        if target is None or links >= MAX_CNAME_CHAIN or _cnames(result) >= MAX_CNAME_CHAIN:
            return _cut(result)
        if any(str(rr.rname).lower() == target for rr in result.answer):
            return result  # a loop: the target's records are above already
        tail = self._resolve(replace(query, qname=target))
        if tail is None:
            # With a forwarder, another client would have had the target's records.
            return result if self._forward is None else _private(result)
        if isinstance(tail, Answer):
            return self._chase(query, _joined(result, tail), links + 1)
        return _then(tail, lambda upstream: _cut(_joined(result, upstream)))

    def _after_nxdomain(self, query: Query, nxdomain: Answer) -> Result | None:
        """Reverse fallthrough or autopath for a would-be NXDOMAIN; None to keep it, shared."""
        name, settings = query.name, self._settings
        zone = zone_of(name, settings.zone, settings.reverse_zones)
        if zone is None or (self._nested and any(is_below(name, origin) for origin in self._nested)):
            return None  # a static zone's NXDOMAIN: its own authoritative word
        if zone != settings.zone:
            forward = self._forward
            if forward is None:
                return None
            if not self._allowed(query.client):
                return _private(nxdomain)
            if query.rd:
                return forward.lookup(query)
            return forward.cached(query) or _private(nxdomain)
        if self._settings.autopath:
            return self._autopath(query, nxdomain)
        return None

    def _autopath(self, query: Query, nxdomain: Answer) -> Result | None:
        """A known pod's first search-path expansion of an outside name, answered for good.

        With `ndots:5`, a pod of namespace `shop` resolving `www.example.com` asks
        `www.example.com.shop.svc.<zone>`, `...svc.<zone>`, `...<zone>` and only then
        `www.example.com.`: four round trips, each doubled for A and AAAA. When the
        client's address is a pod of `shop` (the index knows pods by IP, as CoreDNS's
        `pods verified`), kdns walks that search list itself at the first question and
        answers `<asked> CNAME <first name that exists>` with that name's records,
        as CoreDNS `autopath` does. A name without a dot is left alone: it is a Service
        name, and a missing Service should be NXDOMAIN at once, not after an upstream
        round trip. If no candidate exists (or the upstream fails), the NXDOMAIN stands
        and the pod's resolver walks its search list itself.

        The walk knows only the three cluster search domains, not any the node adds to
        the pod's resolv.conf after them; a name found under those is found one step
        later, by the pod itself. None: the name is no first expansion of a dotted name,
        so the NXDOMAIN is the same for everyone.
        """
        zone = self._settings.zone
        split = split_search(query.name, zone)
        if split is None or "." not in split[0]:
            return None
        asked, namespace = split
        ip = _client_ip(query.client)
        if ip is None or not self._index.has_pod(namespace, ip):
            return _private(nxdomain)
        spelled = query.qname[: len(asked)]
        for domain in search_list(namespace, zone)[1:]:
            candidate = replace(query, qname=f"{spelled}.{domain}")
            result = self._local(candidate)
            if result is not None and result.rcode != NXDOMAIN:
                return self._aliased(query, nxdomain, candidate, result)
        candidate = replace(query, qname=f"{spelled}.")
        found = self._resolve(candidate)
        if found is None:
            return _private(nxdomain)
        return self._aliased(query, nxdomain, candidate, found)

    def _aliased(self, query: Query, nxdomain: Answer, candidate: Query, found: Result) -> Result:
        """`query.qname CNAME candidate` followed by `found`, its (chased) answer, if it exists.

        For this pod only: another client asking the same name gets NXDOMAIN.
        """
        if isinstance(found, Answer) and found.rcode == NOERROR:
            found = self._chase(candidate, found)
        cname = records.cname(query.qname, candidate.qname, self._settings.ttl)
        head = Answer(answer=(cname,), authoritative=True, recursion_available=self.recursion_allowed(query.client))

        def finish(result: Answer) -> Answer:
            if result.rcode != NOERROR:
                return _private(nxdomain)  # nothing there, or a failure: the pod walks on itself
            return _private(_joined(head, result))

        return _then(found, finish)
