"""The values that cross from the wire to the answer logic and back.

A `Query` is what the codec read from a packet; an `Answer` is what the answer logic
decided. Neither knows about sockets. Records are dnslib `RR` objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

# Re-exported for the layers above (`X as X`: an explicit re-export, as mypy --strict wants).
from dnslib import QTYPE as QTYPE
from dnslib import RCODE as RCODE
from dnslib import RR as RR


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
    # How long the wire layer may send this reply's bytes again, with the ID and the name
    # as asked patched in, to whoever asks the same question: 0 (the default) never;
    # math.inf until the handler's `generation` changes; else that many seconds at most
    # (a forwarded answer: until its TTLs next count down). Only for answers that depend
    # on nothing but the question and the registry: not on the client (autopath, ACLs).
    reuse_for: float = 0.0
    # Came from an upstream (or the forwarding cache): reused only for clients the
    # handler's `recursion_allowed(client)` admits.
    forwarded: bool = False


# Anything that answers queries. A handler returns an Answer at once when it can (the
# authority never waits) and an awaitable only when it must (forwarding), so the wire
# servers create no task per packet on the hot path.
Handler = Callable[[Query], "Answer | Awaitable[Answer]"]


class AsyncHandler(Protocol):
    """A handler that always waits: the forwarder."""

    async def __call__(self, query: Query) -> Answer: ...
