"""Ready-made replies: the bytes of an answer, kept per question and sent again.

Most DNS traffic asks the same few thousand questions over and over, and the answer to a
cluster name changes only when the registry does. So once the codec has packed a reply,
`AnswerCache` keeps its bytes under the question, and the next asker of that question
gets them with only its own ID and its own spelling of the name put in: no parsing, no
lookup, no packing. Which replies it may keep, and for whom, is the contract of
kdns/reuse.py: the answer says (`Answer.reuse`), the handler tells the cache what changed.

What makes two requests the same question (the key) is everything the codec reads, minus
the ID: the header's flags and counts, the name case-folded (RFC 4343: ASCII A-Z only),
type, class and the OPT record's fixed part (owner, type, payload size, extended rcode,
version, DO and Z, RDLENGTH) — taken as raw bytes. Replies are kept only for requests
that are nothing but that (a question, and an OPT record without options), so the key is
the request's bytes from 2 to the end, with the name in lower case: for a name asked in
lower case (most are), that is one slice and no parsing. A request that differs in any
of those bytes (another payload size, CD set) is simply another key. A request with EDNS
options is a key no reply is kept under (an NSID request changes the reply; a cookie or
padding would only split the keys): such requests, dig's with its cookie among them,
take the slow path.

Nothing stale is served:

* the handler (`kdns.message.Reusable`, the Router) calls `changed` after every change
  to what it answers from, before the next request is read: registry commits and zone
  reloads run in other callbacks on the event loop, never in the middle of a request or
  of a batch of them. The cache then drops every reply the change may touch: those
  filed under a scope it names (a reply is filed under each scope it read), and every
  reply that may have read anything (`Shared()`, `Forwarded`); a change of everything
  (None) drops them all. Replies whose scopes nobody touched are kept, so a commit does
  not send every question down the slow path at once;
* only `Shared` and `Forwarded` answers are kept (never `Private`, never SERVFAIL), and
  only if no change came between the request and its answer (`epoch`); a forwarded
  answer only until its TTLs would count down, and only for clients the handler lets
  recurse (`recursion_allowed`). A truncated reply (TC) is kept like any other: what it
  was cut to depends on the payload size, which is in the key, so a client without EDNS
  asking for a big answer is not sent down the slow path every time only to be told to
  ask again over TCP.

Spelling. The codec compresses names case-insensitively, so every name that shares a
suffix with the question is a pointer into it, whoever asks; putting the asker's bytes at
offset 12 re-spells all of them at once. A reply is kept with the name in lower case, so
an asker who spells it so gets it with only the ID put in. A reply that carries the
asker's spelling anywhere else — an SRV target, which is never compressed (RFC 2782),
naming the zone as asked — is kept for that spelling only.

Serial. A negative answer of a kdns zone ends in the zone's SOA, whose serial is the
registry's latest version (docs/dns-rules.md R19), moved by every commit, even one that
touches nothing the answer read and so keeps its reply. Such a reply (`Shared.shows_serial`)
is kept with where its serial is, and the handler's current serial (`Reusable.serial`,
read at each change) is written there as it is sent: one `pack_into`, so the bytes are
what the codec would write now.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

from kdns.codec import soa_serial_at
from kdns.message import SERVFAIL, Answer, Handler, Query, Reusable
from kdns.reuse import Changed, Forwarded, Scope, Shared

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "AnswerCache", "QueryStats", "question_type"]

MAX_ENTRIES = 100_000
# Replies are 50-1232 bytes over UDP (up to 64 KiB over TCP): a cap on bytes too, so a
# flood of distinct questions with big answers cannot take more memory than this.
MAX_BYTES = 64 * 1024 * 1024
# Clients whose "may recurse" verdict is remembered, between registry changes.
MAX_CLIENTS = 4096

_OPT_TYPE = b"\x00\x29"
_HEADER = 12
_NAME = _HEADER - 2  # where the name starts in a key or a body: after the ID
_write_serial = struct.Struct("!I").pack_into  # (buffer, offset, serial)

# The entry for one question, in one of two tables. Most replies may go to any asker as
# they are until a change drops them (some only to askers who spell the name in lower
# case, as the key does: `_lower_only`): such an entry is one bytes object, the reply after
# its ID (the question's name in lower case) and then one byte, the index of its (qtype,
# rcode) counter in `QueryStats.counts` (the `plain` table, `mmsg.Batch.queue_ready`'s
# contract). A hit on one reads no object but the key and that one: at scale the ready
# replies lie spread through a large heap, and each object a hit touches is a likely
# cache and TLB miss. Every other entry is a `_Kept`: the reply after its ID; its
# counter's index; its `_Limits`, or None for a reply any asker may have; where in the
# reply after its ID the zone's serial is written as it is sent (0: nowhere; else the
# reply is a bytearray, written in place). Neither holds its scopes: only the sets it is
# filed in name them (fewer objects per reply, for memory and the collector's full passes).
_Kept = tuple["bytes | bytearray", int, "_Limits | None", int]
# A plain entry's counter index is one byte: replies counted past it are kept as `_Kept`.
_PLAIN_CELLS = 256
# What else a reply needs: the spelling it is limited to (None: any), when it expires
# (None: never), whether it was forwarded (then only for clients that may recurse).
_Limits = tuple["bytes | None", "float | None", bool]


class QueryStats:
    """Answered queries by (qtype, rcode), as plain ints: the metrics read them when scraped.

    A query counts once it is answered (qtype 0: a request without a readable question).
    The counters are one list, `counts`, which only grows; `cell` hands out a counter's
    index in it, so the fast path counts with one increment of a list item it already holds.
    """

    __slots__ = ("_cells", "counts")

    def __init__(self) -> None:
        self._cells: dict[tuple[int, int], int] = {}
        self.counts: list[int] = []

    def cell(self, qtype: int, rcode: int) -> int:
        key = (qtype, rcode)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = len(self.counts)
            self.counts.append(0)
        return cell

    def count(self, qtype: int, rcode: int) -> None:
        self.counts[self.cell(qtype, rcode)] += 1

    def answered(self) -> int:
        """Queries answered so far, of every type and rcode."""
        return sum(self.counts)

    def totals(self) -> dict[tuple[int, int], int]:
        """{(qtype, rcode): queries answered so far}."""
        counts = self.counts
        return {key: counts[cell] for key, cell in self._cells.items()}


def _question_end(data: bytes) -> int:
    """The offset of the question name's final zero byte, by its labels; -1 if unreadable.

    `AnswerCache.lookup` finds it with `data.find(0, 12)`, which a zero byte inside a
    label would fool; entries are only made when both agree.
    """
    pos, size = _HEADER, len(data)
    while pos < size:
        length = data[pos]
        if length == 0:
            return pos
        if length > 63:
            return -1
        pos += length + 1
    return -1


def question_type(message: bytes) -> int:
    """The type asked in a message's question (a request, or a reply echoing it); 0 if none."""
    end = _question_end(message)
    if end < 0 or len(message) < end + 3 or message[4:6] == b"\x00\x00":
        return 0
    return int.from_bytes(message[end + 1 : end + 3], "big")


def _spelled_elsewhere(reply: bytes, name: bytes, end: int) -> bool:
    """Whether a label of the asker's name appears written out after the question.

    Names the codec compressed point into the question and follow the asker's spelling;
    a label written out again (an SRV target's zone, RFC 2782 forbids compressing it) may
    be a copy of the asker's spelling that patching the question would not change.
    Letterless labels (digits, `_`, `-`) read the same in any spelling.
    """
    rest = reply[end:].lower()
    pos = 0
    while pos < len(name):
        length = name[pos]
        label = name[pos : pos + 1 + length].lower()
        if label != label.upper() and label in rest:
            return True
        pos += length + 1
    return False


class AnswerCache:
    """Reply bytes per question for one transport, kept while no change touches them.

    `lookup(data, client)` is the fast path: the ready reply to the request `data`, or
    None (then the caller goes through the codec and the handler, and calls `store` with
    the `epoch` it saw before asking the handler). The UDP server's batch loop reads the
    `plain` table itself and asks `kept` for the rest (`mmsg.Batch.queue_ready`). `follow` subscribes the cache to the
    handler's changes; the server calls it when it starts and the call it returns when it
    stops.
    """

    def __init__(
        self,
        handler: Reusable,
        stats: QueryStats | None = None,
        *,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._handler = handler
        self.stats = stats if stats is not None else QueryStats()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._timer = timer
        # Changes heard so far: an answer worked on across one (awaited) is not kept.
        self.epoch = 0
        # Keyed by the request's bytes from 2 to the OPT record's RDLENGTH, with the name
        # in lower case: a request that spells it so is its own key. A key is in one of them.
        self.plain: dict[bytes, bytes] = {}
        self._kept: dict[bytes, _Kept] = {}
        # The plain replies kept for the name in lower case only (an SRV target spelt as
        # asked): `lookup` gives them to no other spelling.
        self._lower_only: set[bytes] = set()
        # The keys filed under each scope; under None, those any change drops. Sets: most
        # replies read several scopes (a Service and its Namespace), and one dropped through
        # one of them and stored again is still filed under the others.
        self._scopes: dict[Scope | None, set[bytes]] = {}
        self._bytes = 0
        self._recursion: dict[str | None, bool] = {}
        self.misses = 0
        self.serial = handler.serial  # the kdns zones', as of the last change heard

    @classmethod
    def for_handler(cls, handler: Handler, stats: QueryStats | None = None, **options: Any) -> AnswerCache | None:
        """A cache for `handler`, or None if it makes no promise about reuse (no `Reusable`)."""
        if not isinstance(handler, Reusable):
            return None
        return cls(handler, stats, **options)

    def follow(self) -> Callable[[], None]:
        """Hear the handler's changes from now on; returns the call that stops (and empties)."""
        stop = self._handler.on_change(self.changed)

        def unfollow() -> None:
            stop()
            self.clear()

        return unfollow

    def __len__(self) -> int:
        return len(self.plain) + len(self._kept)

    def clear(self) -> None:
        self.plain = {}
        self._kept = {}
        self._lower_only = set()
        self._scopes = {}
        self._bytes = 0
        self._recursion = {}

    def changed(self, changed: Changed) -> None:
        """The handler's change listener: drop what the change may have touched."""
        self.epoch += 1
        self.serial = self._handler.serial
        if changed is None:
            self.clear()
            return
        scopes = self._scopes
        for scope in (None, *changed):
            for key in scopes.pop(scope, ()):
                self._bytes -= self._drop(key)
        self._recursion = {}

    def _drop(self, key: bytes) -> int:
        """Forget `key`'s entry; the bytes it held (0: none)."""
        body = self.plain.pop(key, None)
        if body is not None:
            self._lower_only.discard(key)
            return len(body) - 1
        entry = self._kept.pop(key, None)
        return 0 if entry is None else len(entry[0])

    def ready(self, key: bytes) -> bytes | bytearray | None:
        """The stored reply to the request whose bytes after the ID are `key`, without
        its ID, if it may go to any asker; None otherwise (then `lookup`).

        The name as asked is the key (a name with no upper-case letter is its own key), and
        the asker's address is not needed: only a forwarded reply depends on it.
        """
        body = self.plain.get(key)
        if body is None:
            return self.kept(key)
        self.stats.counts[body[-1]] += 1
        return body[:-1]

    def kept(self, key: bytes) -> bytes | bytearray | None:
        """`ready` for the replies that are not plain: those with limits (checked here)
        or the zone's serial in them (written in as they are sent)."""
        entry = self._kept.get(key)
        if entry is None:
            return None
        body, cell, limits, serial_at = entry
        # (limits[2]: a forwarded reply, for askers that may recurse only)
        if limits is not None and (limits[2] or not self._within(limits, key[_NAME : key.find(0, _NAME)], None)):
            return None
        self.stats.counts[cell] += 1
        if serial_at:
            _write_serial(body, serial_at, self.serial)
        return body

    def lookup(self, data: bytes, client: str | None) -> bytes | None:
        """The stored reply to the request `data` from `client`, with its ID and name as
        asked; None on a miss."""
        body = self.ready(data[2:])
        if body is not None:
            return data[:2] + body
        end = data.find(0, _HEADER)  # the root label ending the name (checked when stored)
        name = data[_HEADER:end]
        key = data[2:_HEADER] + name.lower() + data[end:] if end > 0 else b""
        plain = self.plain.get(key)
        if plain is not None and key not in self._lower_only:
            self.stats.counts[plain[-1]] += 1
            return b"".join((data[:2], plain[:_NAME], name, plain[end - 2 : -1]))
        entry = self._kept.get(key)
        if entry is None or (entry[2] is not None and not self._within(entry[2], name, client)):
            self.misses += 1  # (a plain reply kept for the name in lower case only, among them)
            return None
        body, cell, _, serial_at = entry
        self.stats.counts[cell] += 1
        if serial_at:
            _write_serial(body, serial_at, self.serial)
        return b"".join((data[:2], body[:_NAME], name, body[end - 2 :]))

    def _within(self, limits: _Limits, name: bytes, client: str | None) -> bool:
        """Whether a reply with these limits may go to `client`, which spelt the name `name`."""
        spelling, expires, forwarded = limits
        return (
            (spelling is None or name == spelling)
            and (expires is None or self._timer() < expires)
            and (not forwarded or self._may_recurse(client))
        )

    def store(self, data: bytes, query: Query, answer: object, reply: bytes, epoch: int) -> bool:
        """Keep `reply`, the codec's reply to the request `data`, if it may be sent again.

        `epoch` is the cache's when the request came in: an answer the handler worked on
        across a change is not kept. A truncated reply (TC) is kept like any other: the
        payload size it was cut to is in the key.
        """
        if not isinstance(answer, Answer) or epoch != self.epoch or reply[3] & 0x0F == SERVFAIL:
            return False  # (SERVFAIL: also what an answer that would not pack became)
        serial_at = 0
        match answer.reuse:
            case Shared(scope, shows_serial):
                expires = None
                forwarded = False
                if shows_serial and (at := soa_serial_at(reply)):
                    serial_at = at - 2  # in the body, which starts after the ID
            case Forwarded(seconds):
                if not self._may_recurse(query.client):
                    return False
                scope, expires, forwarded = None, self._timer() + seconds, True
            case _:
                return False
        end = data.find(0, _HEADER)
        if end < 0 or end != _question_end(data) or reply[_HEADER:end] != data[_HEADER:end]:
            return False
        size = len(data)
        opt = end + 5  # where an OPT record starts: root owner, type 41, ..., RDLENGTH at +9
        if size != opt and (data[opt] != 0 or data[opt + 1 : opt + 3] != _OPT_TYPE or size != opt + 11):
            return False  # anything but question [+ OPT without options]: not a key
        if len(self) >= self.max_entries or self._bytes + len(reply) > self.max_bytes:
            self.clear()  # wholesale: O(1) per entry, and the hot questions come right back
        name = data[_HEADER:end]
        folded = name.lower()
        spelling = name if _spelled_elsewhere(reply, name, end) else None
        limits = (spelling, expires, forwarded)
        cell = self.stats.cell(query.qtype, reply[3] & 0x0F)
        key = data[2:_HEADER] + folded + data[end:]
        self._bytes -= self._drop(key)
        self._file(key, scope)  # (a reply stored again under other scopes stays filed under the old: harmless)
        parts = (reply[2:_HEADER], folded, reply[end:])
        # A reply kept for one spelling is plain if that is the name in lower case: the key's
        # own bytes, so every request that finds it by its bytes spells the name so.
        lower_only = spelling is not None and spelling == folded
        if (spelling is None or lower_only) and limits[1:] == (None, False) and not serial_at and cell < _PLAIN_CELLS:
            self.plain[key] = b"".join((*parts, cell.to_bytes(1, "big")))
            if lower_only:
                self._lower_only.add(key)
            self._bytes += len(reply) - 2
            return True
        body: bytes | bytearray = b"".join(parts)
        if serial_at:
            body = bytearray(body)  # written in place as it is sent
        self._kept[key] = (body, cell, None if limits == (None, None, False) else limits, serial_at)
        self._bytes += len(body)
        return True

    def _file(self, key: bytes, scope: frozenset[Scope] | None) -> None:
        """File `key` under each of its scopes (under None: any change drops it)."""
        scopes = self._scopes
        for part in (None,) if scope is None else scope:
            keys = scopes.get(part)
            if keys is None:
                scopes[part] = {key}
            else:
                keys.add(key)

    def _may_recurse(self, client: str | None) -> bool:
        """The handler's verdict on `client`, remembered (it is per address, not per query)."""
        allowed = self._recursion.get(client)
        if allowed is None:
            allowed = self._handler.recursion_allowed(client)
            if len(self._recursion) >= MAX_CLIENTS:
                self._recursion = {}
            self._recursion[client] = allowed
        return allowed
