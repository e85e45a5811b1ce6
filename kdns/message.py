"""kdns's one DNS message model: the values that cross from the wire to the answer logic and back.

A `Query` is what the codec read from a packet; an `Answer` is what the answer logic
decided. Neither knows about sockets or bytes. Records are dnslib `RR` objects (dnslib
is kdns's wire library; its record classes are the model's records, built by
kdns.authority.records).

One module converts between this model and bytes, both ways and for both sides of kdns:
kdns.codec reads clients' requests into it and writes the replies, and writes the
forwarder's requests to upstreams and reads their replies into it, once. Static zones are
converted from dnspython's zone-file reader when they load (kdns.authority.zone).

The names of rcodes, types and classes, and the EDNS option codes, every layer uses are
defined or re-exported here, once: nothing above this module imports them from a DNS
library.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import IntEnum
from operator import attrgetter
from typing import Literal, Protocol, runtime_checkable

# Re-exported for the layers above (`X as X`: an explicit re-export, as mypy --strict wants):
# dnslib's table of type names and numbers (every type IANA lists) and its record class.
from dnslib import QTYPE as QTYPE
from dnslib import RR as RR

from kdns.reuse import PRIVATE, ChangeListener, Reuse
from kdns.values import value

# Response codes (RFC 1035 §4.1.1, RFC 2136 §2.2, RFC 6891 §9). BADVERS is an extended
# rcode: 0 in the header, its upper bits in the OPT record.
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
YXDOMAIN, YXRRSET, NXRRSET, NOTAUTH, NOTZONE = 6, 7, 8, 9, 10
BADVERS = 16
_RCODE_NAMES = {
    NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL", NXDOMAIN: "NXDOMAIN",
    NOTIMP: "NOTIMP", REFUSED: "REFUSED", YXDOMAIN: "YXDOMAIN", YXRRSET: "YXRRSET",
    NXRRSET: "NXRRSET", NOTAUTH: "NOTAUTH", NOTZONE: "NOTZONE", BADVERS: "BADVERS",
}
# Classes by their presentation names (RFC 1035 §3.2.4, RFC 2136 §1.3 for NONE), as dig
# and CoreDNS's log print them.
CLASS_IN, CLASS_ANY = 1, 255
_CLASS_NAMES = {CLASS_IN: "IN", 3: "CH", 4: "HS", 254: "NONE", CLASS_ANY: "ANY"}


def rcode_text(rcode: int) -> str:
    """`NXDOMAIN` for 3; an rcode without a name as its number."""
    return _RCODE_NAMES.get(rcode) or str(rcode)


# A record's type, read where dnslib's `rtype` property keeps it: the property's getter is
# a Python function that formats the attribute's name on every read (tests/test_codec.py
# holds the name to dnslib's).
record_type: Callable[[RR], int] = attrgetter("_rtype")


def type_text(rtype: int) -> str:
    """`AAAA` for 28; a type without a name as `TYPE65280` (RFC 3597 §5)."""
    return str(QTYPE.get(rtype, f"TYPE{rtype}"))


def class_text(rclass: int) -> str:
    """`IN` for 1; a class without a name as `CLASS32` (RFC 3597 §5)."""
    return _CLASS_NAMES.get(rclass) or f"CLASS{rclass}"


# The EDNS UDP payload kdns advertises to clients, offers upstreams, and sends at most:
# DNS Flag Day 2020's 1232 bytes fit an IPv6 packet on any link with a 1280-byte MTU, so
# no reply is ever fragmented (docs/dns-rules.md R26).
EDNS_PAYLOAD = 1232

# The most CNAMEs one answer holds, however many zones the chain crosses (the cluster
# zone, static zones, upstream): the answer is cut after the eighth, and the asker's
# resolver may follow the rest (docs/dns-rules.md R30). BIND's limit is 16, CoreDNS's 8.
MAX_CNAME_CHAIN = 8

# EDNS option codes kdns reads or writes.
OPTION_NSID = 3  # RFC 5001
OPTION_EDE = 15  # RFC 8914


class EdeCode(IntEnum):
    """The Extended DNS Error INFO-CODEs kdns sends (RFC 8914 §4)."""

    OTHER = 0
    STALE_ANSWER = 3
    PROHIBITED = 18
    STALE_NXDOMAIN_ANSWER = 19
    NOT_AUTHORITATIVE = 20
    NO_REACHABLE_AUTHORITY = 22
    NETWORK_ERROR = 23


@value
class ExtendedError:
    """One EDE option (RFC 8914 §2): an INFO-CODE and an optional EXTRA-TEXT for people."""

    code: EdeCode
    text: str = ""


# Where an answer came from, for the query log and `kdns explain`: the registry
# ("cluster"), a static zone file ("zone"), the forwarding cache ("cache"), an upstream
# ("upstream"), or kdns itself without any data (a refusal, an error: "server").
Source = Literal["cluster", "zone", "cache", "upstream", "server"]


@value
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
    # The request carried an (empty) NSID option: the asker wants the server's NSID
    # (RFC 5001 §2.1).
    nsid: bool = False

    @property
    def name(self) -> str:
        return self.qname.lower()


@value
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
    # Extended DNS Errors (RFC 8914) the codec puts in the OPT record of an EDNS reply.
    errors: tuple[ExtendedError, ...] = ()
    # RFC 9471: the first `required_glue` records of `additional` are glue a referral
    # cannot do without; if they do not fit, the reply is truncated (TC) rather than
    # sent without them.
    required_glue: int = 0
    source: Source = "server"


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

    @property
    def serial(self) -> int:
        """The serial the kdns zones' SOA shows now (docs/dns-rules.md R19), a 32-bit number,
        which the wire layer writes into a kept negative answer (kdns/reuse.py
        `Shared.shows_serial`)."""
        ...

    def recursion_allowed(self, client: str | None) -> bool:
        """Whether `client` may have Forwarded answers."""
        ...

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call `listener` after every change to what the handler answers from, before
        the next query is read; returns the call that stops it."""
        ...
