"""The values that cross from the wire to the answer logic and back.

A `Query` is what the codec read from a packet; an `Answer` is what the answer logic
decided. Neither knows about sockets. Records are dnslib `RR` objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Re-exported for the layers above (`X as X`: an explicit re-export, as mypy --strict wants).
from dnslib import QTYPE as QTYPE
from dnslib import RCODE as RCODE
from dnslib import RR as RR

from kdns.reuse import PRIVATE, ChangeListener, Reuse

# The EDNS UDP payload kdns advertises to clients, offers upstreams, and sends at most:
# DNS Flag Day 2020's 1232 bytes fit an IPv6 packet on any link with a 1280-byte MTU, so
# no reply is ever fragmented (docs/dns-rules.md R26).
EDNS_PAYLOAD = 1232


@dataclass(frozen=True, slots=True)
class Query:
    """One question, as asked.

    `qname` keeps the asker's spelling (answers echo it, RFC 4343); `name` is the
    lower-cased form every lookup uses. Both are absolute (end with a dot).
    """

    id: int
    qname: str
    qtype: int
    qclass: int = 1
    rd: bool = True
    cd: bool = False
    edns: bool = False
    # Largest UDP reply the client accepts: its EDNS payload size, or 512 without EDNS.
    payload: int = 512
    do: bool = False
    client: str | None = None
    transport: str = "udp"

    @property
    def name(self) -> str:
        return self.qname.lower()


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer logic's decision; the codec turns it into a reply packet."""

    rcode: int = 0
    answer: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()
    authoritative: bool = False
    recursion_available: bool = False
    # Whether the wire layer may send this reply's bytes again, with the ID and the name
    # as asked patched in, to whoever asks the same question (kdns/reuse.py).
    reuse: Reuse = PRIVATE


# Anything that answers queries. A handler returns an Answer at once when it can (the
# authority never waits) and an awaitable only when it must (forwarding), so the wire
# servers create no task per packet on the hot path.
Handler = Callable[[Query], "Answer | Awaitable[Answer]"]


class AsyncHandler(Protocol):
    """A handler that always waits: the forwarder."""

    async def __call__(self, query: Query) -> Answer: ...


@runtime_checkable
class Reusable(Protocol):
    """A handler whose replies the wire layer may keep and send again (the Router), by the
    contract of kdns/reuse.py."""

    def __call__(self, query: Query) -> Answer | Awaitable[Answer]: ...

    def recursion_allowed(self, client: str | None) -> bool:
        """Whether `client` may have Forwarded answers."""
        ...

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call `listener` after every change to what the handler answers from, before
        the next query is read; returns the call that stops it."""
        ...
