"""The Router: which part of kdns answers a query.

Names in the cluster zone and the reverse zones are answered by the authority, from the
registry, at once (no await, so the wire servers answer them without a task). The
authority also decides what is outside every served zone (`answer` returns None): that
is where a cache and a forwarder will plug in. Until then such names are REFUSED with
RA=0, which tells a stub resolver to ask its next server rather than wait (RFC 1035
§4.1.1; what an authoritative-only server says, as CoreDNS without `forward`).
"""

from __future__ import annotations

from collections.abc import Awaitable

from kdns.authority.answer import answer
from kdns.authority.index import ClusterIndex
from kdns.config import Settings
from kdns.message import Answer, Query

__all__ = ["Router"]

REFUSED = 5
_REFUSED = Answer(rcode=REFUSED, authoritative=False, recursion_available=False)


class Router:
    """`Router(index, settings)(query)`: an Answer now, or (with forwarding, later) an awaitable."""

    __slots__ = ("_index", "_settings")

    def __init__(self, index: ClusterIndex, settings: Settings) -> None:
        self._index = index
        self._settings = settings

    def __call__(self, query: Query) -> Answer | Awaitable[Answer]:
        result = answer(query, self._index, self._settings)
        if result is None:
            return self.outside(query)
        return result

    def outside(self, query: Query) -> Answer | Awaitable[Answer]:
        """A name outside every served zone: REFUSED, since forwarding is not there yet."""
        return _REFUSED
