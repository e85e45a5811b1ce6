"""Ready-made replies: the bytes of an answer, kept per question and sent again.

Most DNS traffic asks the same few thousand questions over and over, and the answer to a
cluster name changes only when the registry does. So once the codec has packed a reply,
`AnswerCache` keeps its bytes under the question, and the next asker of that question
gets them with only its own ID and its own spelling of the name put in: no parsing, no
lookup, no packing; what a registry commit changes is dropped (below).

What makes two requests the same question (the key) is everything the codec reads, minus
the ID: the header's flags and counts, the name case-folded (RFC 4343: ASCII A-Z only),
type, class and the OPT record's fixed part (owner, type, payload size, extended rcode,
version, DO and Z, RDLENGTH) — taken as raw bytes, so the key is the request's bytes 2
to the end of the OPT record's fixed part, with the name in lower case: for a name asked
in lower case (most are), that is one slice and no parsing. EDNS options are not part
of it: the codec ignores them. A request that differs in any of those bytes (another
payload size, CD set) is simply another key.

Nothing stale is served:

* the handler's `generation` is compared with the cache's before every request (a
  server answering a batch of requests in one turn of the event loop: before every
  batch, `refresh`), and when it moved (the registry changed) the cache drops every
  reply that change may touch: all of them, unless the handler says which
  (`handler.changed_services(generation)`, the (namespace, service) pairs changed
  since) and files each reply under the Service it reads alone
  (`handler.reuse_scope(query, answer)`; None: dropped on every change). Replies filed
  under a Service nobody touched are kept, so a commit does not send every question
  down the slow path at once;
* only answers the handler marks reusable (`Answer.reuse_for`) are kept, never SERVFAIL;
  a forwarded answer only until its TTLs would count down, and only for clients the
  handler lets recurse (`handler.recursion_allowed(client)`). A truncated reply (TC) is
  kept like any other: what it was cut to depends on the payload size, which is in the
  key, so a client without EDNS asking for a big answer is not sent down the slow path
  every time only to be told to ask again over TCP.

Spelling. The codec compresses names case-insensitively, so every name that shares a
suffix with the question is a pointer into it, whoever asks; putting the asker's bytes at
offset 12 re-spells all of them at once. A reply is kept with the name in lower case, so
an asker who spells it so gets it with only the ID put in. A reply that carries the
asker's spelling anywhere else — an SRV target, which is never compressed (RFC 2782),
naming the zone as asked — is kept for that spelling only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from typing import Any

from kdns.message import Answer, Query

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "AnswerCache", "QueryStats", "question_type"]

MAX_ENTRIES = 100_000
# Replies are 50-1232 bytes over UDP (up to 64 KiB over TCP): a cap on bytes too, so a
# flood of distinct questions with big answers cannot take more memory than this.
MAX_BYTES = 64 * 1024 * 1024
# Clients whose "may recurse" verdict is remembered, between registry changes.
MAX_CLIENTS = 4096

_SERVFAIL = 2
_OPT_TYPE = b"\x00\x29"
_HEADER = 12

# The entry for one question: the reply after its ID, with the question's name in lower
# case; the request size the key was made from (it pins the OPT record's length); its
# (qtype, rcode) counter; its `_Limits`, or None for a reply any asker may have as long as
# the generation holds (most of them: one check on a hit); the scope it is filed under.
_Entry = tuple[bytes, int, list[int], "_Limits | None", Hashable]
# What else a reply needs: the spelling it is limited to (None: any), when it expires
# (None: never), whether it was forwarded (then only for clients that may recurse).
_Limits = tuple["bytes | None", "float | None", bool]


class QueryStats:
    """Answered queries by (qtype, rcode), as plain ints: the metrics read them when scraped.

    A query counts once it is answered (qtype 0: a request without a readable question);
    `cell` hands out the counter itself, so the fast path counts with one increment.
    """

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[tuple[int, int], list[int]] = {}

    def cell(self, qtype: int, rcode: int) -> list[int]:
        key = (qtype, rcode)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = [0]
        return cell

    def count(self, qtype: int, rcode: int) -> None:
        self.cell(qtype, rcode)[0] += 1

    def totals(self) -> dict[tuple[int, int], int]:
        """{(qtype, rcode): queries answered so far}."""
        return {key: cell[0] for key, cell in self._cells.items()}


def _question_end(data: bytes) -> int:
    """The offset of the question name's final zero byte, by its labels; -1 if unreadable.

    `AnswerCache.reply` finds it with `data.find(0, 12)`, which a zero byte inside a
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
    """Reply bytes per question for one transport, valid for one `handler.generation`.

    `reply(data, client)` is the fast path: the ready reply to the request `data`, or None
    (then the caller goes through the codec and the handler, and calls `store`). A server
    that answers a batch of requests in one go calls `refresh` once and `lookup` for each
    (the same, without looking at the handler's generation): nothing can commit to the
    registry while it is in the middle of the batch.
    """

    def __init__(
        self,
        handler: Any,
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
        self.generation: int = handler.generation
        # Keyed by the request's bytes from 2 to the OPT record's RDLENGTH, with the name
        # in lower case: a request that spells it so is its own key.
        self._entries: dict[bytes, _Entry] = {}
        # The keys filed under each scope (`handler.reuse_scope`); None: every change.
        self._scopes: dict[Hashable, list[bytes]] = {}
        self._bytes = 0
        self._recursion: dict[str | None, bool] = {}
        self.misses = 0

    @classmethod
    def for_handler(cls, handler: Any, stats: QueryStats | None = None, **options: Any) -> AnswerCache | None:
        """A cache for `handler`, or None if it has no `generation` to say when answers change."""
        if not isinstance(getattr(handler, "generation", None), int):
            return None
        return cls(handler, stats, **options)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries = {}
        self._scopes = {}
        self._bytes = 0
        self._recursion = {}

    def refresh(self) -> None:
        """Catch up with the handler's generation: drop what a change since may have touched."""
        generation = self._handler.generation
        if generation != self.generation:
            self._moved(generation)

    def _moved(self, generation: int) -> None:
        """The handler's generation moved on from ours: drop what may have changed."""
        changed_since = getattr(self._handler, "changed_services", None)
        changed = changed_since(self.generation) if changed_since is not None else None
        if changed is None:
            self.clear()
        else:
            entries, scopes = self._entries, self._scopes
            for scope in (None, *changed):
                for key in scopes.pop(scope, ()):
                    entry = entries.pop(key, None)
                    if entry is not None:
                        self._bytes -= len(entry[0])
            self._recursion = {}
        self.generation = generation

    def reply(self, data: bytes, client: str | None) -> bytes | None:
        """The stored reply to `data`, with its ID and name as asked; None on a miss."""
        self.refresh()
        return self.lookup(data, client)

    def lookup(self, data: bytes, client: str | None) -> bytes | None:
        """`reply` as of the last `refresh`."""
        end = data.find(0, _HEADER)  # the root label ending the name (checked when stored)
        # A name with no upper-case letter is its own key; a key is never shorter than 26
        # bytes, so with no root label (end -1) this is a miss too.
        entry = self._entries.get(data[2 : end + 16])
        if entry is None:
            return self._folded(data, end, client)
        body, size, counter, limits, _ = entry
        if len(data) != size or (limits is not None and not self._within(limits, data[_HEADER:end], client)):
            self.misses += 1
            return None
        counter[0] += 1
        return data[:2] + body

    def _folded(self, data: bytes, end: int, client: str | None) -> bytes | None:
        """The stored reply for a name asked with upper-case letters in it, spelt as asked."""
        name = data[_HEADER:end]
        folded = name.lower()
        if end < 0 or folded == name:  # no question, or no other key than the one looked up
            self.misses += 1
            return None
        entry = self._entries.get(data[2:_HEADER] + folded + data[end : end + 16])
        if entry is None:
            self.misses += 1
            return None
        body, size, counter, limits, _ = entry
        if len(data) != size or (limits is not None and not self._within(limits, name, client)):
            self.misses += 1
            return None
        counter[0] += 1
        return b"".join((data[:2], body[: _HEADER - 2], name, body[end - 2 :]))

    def _within(self, limits: _Limits, name: bytes, client: str | None) -> bool:
        """Whether a reply with these limits may go to `client`, which spelt the name `name`."""
        spelling, expires, forwarded = limits
        return (
            (spelling is None or name == spelling)
            and (expires is None or self._timer() < expires)
            and (not forwarded or self._may_recurse(client))
        )

    def store(self, data: bytes, query: Query, answer: object, reply: bytes, generation: int) -> bool:
        """Keep `reply`, the codec's reply to the request `data`, if it may be sent again.

        `generation` is the cache's when the request came in (`refresh` made it current):
        an answer the handler worked on across a registry change is not kept. A truncated
        reply (TC) is kept like any other: the payload size it was cut to is in the key.
        """
        if (
            not isinstance(answer, Answer)
            or answer.reuse_for <= 0
            or reply[3] & 0x0F == _SERVFAIL  # also what an answer that would not pack became
            or not generation == self.generation == self._handler.generation
            or (answer.forwarded and not self._may_recurse(query.client))
        ):
            return False
        end = data.find(0, _HEADER)
        if end < 0 or end != _question_end(data) or reply[_HEADER:end] != data[_HEADER:end]:
            return False
        size = len(data)
        opt = end + 5  # where an OPT record starts: root owner, type 41, ..., RDLENGTH at +9
        if size != opt and (
            data[opt] != 0
            or data[opt + 1 : opt + 3] != _OPT_TYPE
            or size != opt + 11 + int.from_bytes(data[opt + 9 : opt + 11], "big")
        ):
            return False  # anything but question [+ OPT]: rare, and not worth a key
        if len(self._entries) >= self.max_entries or self._bytes + len(reply) > self.max_bytes:
            self.clear()  # wholesale: O(1) per entry, and the hot questions come right back
        name = data[_HEADER:end]
        folded = name.lower()
        spelling = name if _spelled_elsewhere(reply, name, end) else None
        expires = None if answer.reuse_for == math.inf else self._timer() + answer.reuse_for
        limits = (spelling, expires, answer.forwarded)
        counter = self.stats.cell(query.qtype, reply[3] & 0x0F)
        key = data[2:_HEADER] + folded + data[end : end + 16]
        scope_of = getattr(self._handler, "reuse_scope", None)
        scope = scope_of(query, answer) if scope_of is not None and not answer.forwarded else None
        old = self._entries.get(key)
        if old is not None:
            self._bytes -= len(old[0])
        if old is None or old[4] != scope:  # (then also still filed under the old one: harmless)
            self._scopes.setdefault(scope, []).append(key)
        body = b"".join((reply[2:_HEADER], folded, reply[end:]))
        self._entries[key] = (body, size, counter, None if limits == (None, None, False) else limits, scope)
        self._bytes += len(body)
        return True

    def _may_recurse(self, client: str | None) -> bool:
        """The handler's verdict on `client`, remembered (it is per address, not per query)."""
        allowed = self._recursion.get(client)
        if allowed is None:
            check = getattr(self._handler, "recursion_allowed", None)
            allowed = bool(check(client)) if check is not None else False
            if len(self._recursion) >= MAX_CLIENTS:
                self._recursion = {}
            self._recursion[client] = allowed
        return allowed
