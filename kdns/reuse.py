"""The reply-reuse contract: how an answer may be sent again, and what says it changed.

The wire layer keeps the bytes of replies and sends them again to whoever asks the same
question (kdns/wire/fastpath.py `AnswerCache`). Whether it may is the answer logic's to
say, on every Answer (`Answer.reuse`), in one of three marks:

* `Private`: for this asker alone, never sent to another (the default). An answer that
  depends on who asked (the recursion ACL's REFUSED, autopath, a CNAME left alone because
  this client may not recurse) or on a failure (SERVFAIL, an upstream that timed out).
* `Shared(scope)`: the same for every asker of the question until something in `scope`
  changes. A scope is a Service, `(namespace, name)`: the answer reads that Service, its
  EndpointSlices and its Namespace, nothing else. `Shared()` (scope None) reads more, or
  other things (several Services, pods, nodes, a static zone): any change drops it.
* `Forwarded(seconds)`: an upstream's answer (or the forwarding cache's): the same for
  every asker that may recurse (`kdns.message.Reusable.recursion_allowed`), for `seconds` at most,
  until its TTLs next count down. Any change drops it too.

What changed is pushed, not polled: the handler (`kdns.message.Reusable`, the Router) calls every
listener given to `on_change` with a `Changed` right after a change is applied — a
registry commit the index has taken in, a static-zone reload — before any query is read
again, so nothing stale is ever sent. `Changed` names the Services the change touched,
or is None: anything may have (a Namespace or Node event, a rebuild, a reload).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "PRIVATE",
    "SHARED",
    "ChangeListener",
    "Changed",
    "Forwarded",
    "Private",
    "Reuse",
    "ServiceKey",
    "Shared",
    "combined",
]

ServiceKey = tuple[str, str]  # (namespace, name) of a Service


@dataclass(frozen=True, slots=True)
class Private:
    """For this asker alone: never sent to another."""


@dataclass(frozen=True, slots=True)
class Shared:
    """The same for every asker until `scope` changes (a Service; None: until any change)."""

    scope: ServiceKey | None = None


@dataclass(frozen=True, slots=True)
class Forwarded:
    """An upstream's answer: for askers that may recurse, for `seconds` at most (> 0)."""

    seconds: float


Reuse = Private | Shared | Forwarded

PRIVATE = Private()
SHARED = Shared()

# The Services one change touched; None: anything may have changed.
Changed = frozenset[ServiceKey] | None
ChangeListener = Callable[[Changed], None]


def combined(first: Reuse, second: Reuse) -> Reuse:
    """The mark of an answer made of two (a CNAME and its target's records): the narrower.

    Private wins; then Forwarded, for the shorter time; two Shared answers read two names,
    so only `Shared()` (any change) covers both unless they read the same Service.
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
        case (Shared(scope), Shared(other)) if scope == other:
            return first
    return SHARED
