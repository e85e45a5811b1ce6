"""The reply-reuse contract: how an answer may be sent again, and what says it changed.

The wire layer keeps the bytes of replies and sends them again to whoever asks the same
question (kdns/wire/fastpath.py `AnswerCache`). Whether it may is the answer logic's to
say, on every Answer (`Answer.reuse`), in one of three marks:

* `Private`: for this asker alone, never sent to another (the default). An answer that
  depends on who asked (the recursion ACL's REFUSED, autopath, a CNAME left alone because
  this client may not recurse) or on a failure (SERVFAIL, an upstream that timed out).
* `Shared(scope)`: the same for every asker of the question until a change touches what
  it read. The scope is the set of things the answer read that a registry commit can
  touch one at a time (`Scope`: whether one Namespace exists, one Service, the ready
  endpoints of one Service's EndpointSlices, the ready endpoint of one of its endpoint
  names, the pod names of one address in one
  namespace, the PTR of one address, the Node tree, the reverse zones' empty
  non-terminals). An empty scope reads
  none of them: only a change of everything drops it (a static zone's answer, a name
  that can never exist, the apex SOA). `Shared()` (scope None) may have read anything:
  any change drops it. `shows_serial` marks an answer that ends in a kdns zone's SOA,
  whose serial moves with every commit: the wire layer writes the current one in.
* `Forwarded(seconds)`: an upstream's answer (or the forwarding cache's): the same for
  every asker that may recurse (`kdns.message.Reusable.recursion_allowed`), for `seconds` at most,
  until its TTLs next count down. Any change drops it too.

What changed is pushed, not polled: the handler (`kdns.message.Reusable`, the Router) calls every
listener given to `on_change` with a `Changed` right after a change is applied — a
registry commit the index has taken in, a static-zone reload — before any query is read
again, so nothing stale is ever sent. `Changed` is the set of `Scope`s the change
touched, or None: anything may have changed (a rebuild, a reload). Which answer reads which scope, and which write touches it, is the table in
docs/architecture.md ("The reply-reuse contract").
"""

from __future__ import annotations

from collections.abc import Callable

from kdns.values import value

__all__ = [
    "NODES",
    "PRIVATE",
    "REVERSE_PREFIXES",
    "SHARED",
    "UNSCOPED",
    "AddressScope",
    "ChangeListener",
    "Changed",
    "EndpointScope",
    "EndpointsScope",
    "Forwarded",
    "NamespaceScope",
    "PodScope",
    "Private",
    "Reuse",
    "Scope",
    "ServiceScope",
    "Shared",
    "TreeScope",
    "combined",
]


@value
class NamespaceScope:
    """Whether the Namespace object exists (docs/dns-rules.md R5): what `<ns>.svc`,
    `<ns>.pod` and `<ns>.nodeport` are, whether anything below them is visible, and the
    Extended DNS Error of a name below them that does not exist."""

    name: str


@value
class ServiceScope:
    """A Service object: every name below `<name>.<namespace>.svc` and
    `<name>.<namespace>.nodeport`, there or not. A ClusterIP Service's own names read
    only this; names that list endpoints read its `EndpointsScope` too."""

    namespace: str
    name: str


@value
class EndpointsScope:
    """The ready endpoints of the EndpointSlices labelled with a Service's name: what the
    names that list them read (a headless Service's A, AAAA and SRV, its `_<port>._<proto>`
    names), and a ClusterIP Service's A, AAAA and SRV do not."""

    namespace: str
    name: str


@value
class EndpointScope:
    """The ready endpoint one endpoint name of a Service stands for (its addresses and
    ports), or that there is none: what `<endpoint>.<service>.<ns>.svc` reads. A readiness
    flip touches the name of the endpoint it flips, not the Service's other endpoint names."""

    namespace: str
    service: str
    endpoint: str


@value
class PodScope:
    """Whether a live pod of `namespace` has this address (packed): `<dashed>.<ns>.pod`."""

    namespace: str
    address: bytes


@value
class AddressScope:
    """Who owns this address (packed): its PTR name, the Services and endpoints it names."""

    address: bytes


@value
class TreeScope:
    """A whole tree of names that changes rarely and is read as one (`NODES`, `REVERSE_PREFIXES`)."""

    name: str


NODES = TreeScope("nodes")  # every Node: `<node>.node` and the NodePort SRV targets
REVERSE_PREFIXES = TreeScope("reverse prefixes")  # which partial reverse names exist (R4)

Scope = NamespaceScope | ServiceScope | EndpointsScope | EndpointScope | PodScope | AddressScope | TreeScope


@value
class Private:
    """For this asker alone: never sent to another."""


@value
class Shared:
    """The same for every asker until a change touches one of `scope` (None: any change).

    `shows_serial`: the answer ends in the SOA of a kdns zone (a negative answer), which shows
    the zone's current serial (docs/dns-rules.md R19): a commit that touches nothing in
    `scope` still moves it, so the wire layer writes the current one into the kept reply
    each time it sends it again.
    """

    scope: frozenset[Scope] | None = None
    shows_serial: bool = False


@value
class Forwarded:
    """An upstream's answer: for askers that may recurse, for `seconds` at most (> 0)."""

    seconds: float


Reuse = Private | Shared | Forwarded

PRIVATE = Private()
SHARED = Shared()  # until any change
UNSCOPED = Shared(frozenset())  # until a change of everything (None)

# The Scopes one change touched; None: anything may have changed.
Changed = frozenset[Scope] | None
ChangeListener = Callable[[Changed], None]


def combined(first: Reuse, second: Reuse) -> Reuse:
    """The mark of an answer made of two (a CNAME and its target's records): the narrower.

    Private wins; then Forwarded, for the shorter time; two Shared answers together read
    what each read (None, anything, if either may have), and end as the second does (its
    SOA, if any, ends the answer).
    """
    match first, second:
        case (Private(), _) | (_, Private()):
            return PRIVATE
        case (Forwarded(seconds), Forwarded(other)):
            return Forwarded(min(seconds, other))
        case (Forwarded(), _):
            return first
        case (_, Forwarded()):
            return second
        case (Shared(scope), Shared(other)) if scope is not None and other is not None:
            return Shared(scope | other, second.shows_serial)
    return SHARED
