"""ResponseCache: upstream answers kept for their TTLs; CachingForwarder puts it in front.

What is kept, and for how long:

* Positive answers (NOERROR with records): the smallest TTL in the answer and authority
  sections (RFC 2181 section 8), at most `max_ttl`.
* Negative answers, NXDOMAIN and NODATA (NOERROR, empty answer): per RFC 2308 section 5,
  min(SOA TTL, SOA MINIMUM) of the SOA in the authority section, at most
  `max_negative_ttl`. A negative answer without an SOA is not cached (RFC 2308
  section 5: "SHOULD NOT be cached"); the next asker asks upstream again.
* Every record's TTL is lowered to that time when stored, so what kdns serves never
  promises more than kdns itself keeps (as unbound's `cache-max-ttl` does).
* Never: SERVFAIL, REFUSED and every other rcode, answers whose TTL works out to 0, and
  truncated answers (the Forwarder retries TC over TCP and treats a failed TCP retry as a
  failure, so no truncated answer reaches here; `Answer` has no TC flag to carry one).

The key is (name lower-cased, type, class, DO, CD): names are case-insensitive (RFC
4343); DO and CD change what the upstream returns (CoreDNS keys its cache the same way).

Serving: `get` returns a fresh entry with every TTL reduced by the entry's whole age in
seconds, so downstream caches count down with us. Owner names equal to the question
are re-spelled as this asker spelled it (the entry was stored for whoever asked first).

Serve-stale (RFC 8767): an entry stays for `stale_window` seconds past its TTL. Only
when forwarding failed does `CachingForwarder` answer from it, with TTL 30 (RFC 8767
section 4), and for the next `recheck` seconds it answers that question from the stale
entry without asking again ("no more frequently than every 30 seconds", section 4).
The default window is one day, the low end of the 1-3 days RFC 8767 section 5 suggests.

An answer served from a fresh cache entry is marked `Forwarded` (kdns/reuse.py): the
wire layer's ready-reply cache may send it again to clients that may recurse until its
TTLs next count down (under a second); a stale or an uncached answer is `Private`.

Time comes from the injected `timer`, so tests move it on instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from cachetools import TLRUCache, TTLCache
from dnslib import QTYPE, RCODE, RR, DNSLabel

from kdns.config import ConfigError
from kdns.message import Answer, AsyncHandler, Query
from kdns.reuse import PRIVATE, Forwarded

# RFC 8767 section 4: "a TTL of 30 seconds is RECOMMENDED" for stale answers.
STALE_TTL = 30
# RFC 8767 section 4: refresh a failing name no more often than every 30 seconds.
RECHECK = 30.0

CacheKey = tuple[str, int, int, bool, bool]


def cache_key(query: Query) -> CacheKey:
    """What makes two questions the same question for the cache."""
    return (query.name, query.qtype, query.qclass, query.do, query.cd)


def cache_ttl(answer: Answer, *, max_ttl: int, max_negative_ttl: int) -> int:
    """How long `answer` may be cached, in seconds; 0 means not at all."""
    if answer.rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
        return 0
    negative = answer.rcode == RCODE.NXDOMAIN or not answer.answer
    ttls: list[int] = [rr.ttl for rr in answer.answer]
    soas = [rr for rr in answer.authority if rr.rtype == QTYPE.SOA]
    if negative and not soas:
        return 0
    for rr in answer.authority:
        if rr.rtype == QTYPE.SOA:
            # RFC 2308 section 5: the negative TTL is min(SOA TTL, SOA MINIMUM).
            ttls.append(min(rr.ttl, rr.rdata.times[-1]))
        else:
            ttls.append(rr.ttl)
    if not ttls:
        return 0
    return max(0, min(*ttls, max_negative_ttl if negative else max_ttl))


def _aged(
    records: tuple[RR, ...], *, age: int | None, ttl: int, name: str, qname: str
) -> tuple[RR, ...]:
    """Copies of `records`: TTL reduced by `age` (or set to `ttl` when age is None),
    owner re-spelled as `qname` where it is the question's name. The cached RRs are
    never changed: another asker may be reading them."""
    out = []
    for rr in records:
        owner = rr.rname
        if str(owner).lower() == name:
            owner = DNSLabel(qname)
        new_ttl = ttl if age is None else max(0, rr.ttl - age)
        out.append(RR(owner, rr.rtype, rr.rclass, new_ttl, rr.rdata))
    return tuple(out)


def served(
    answer: Answer, query: Query, *, age: float = 0.0, stale: bool = False, cached: bool = True
) -> Answer:
    """`answer` as it goes to the asker of `query`: TTLs aged by the whole seconds of `age`,
    owner names re-spelled; reusable until the next whole second of age if `cached`."""
    fixed = partial(
        _aged, age=None if stale else int(age), ttl=STALE_TTL, name=query.name, qname=query.qname
    )
    return Answer(
        rcode=answer.rcode,
        answer=fixed(answer.answer),
        authority=fixed(answer.authority),
        additional=fixed(answer.additional),
        authoritative=answer.authoritative,
        recursion_available=answer.recursion_available,
        reuse=PRIVATE if stale or not cached else Forwarded(1.0 - age % 1.0),
    )


def capped(answer: Answer, ttl: int) -> Answer:
    """`answer` with every TTL above `ttl` lowered to it; `answer` itself if none is."""
    sections = (answer.answer, answer.authority, answer.additional)
    if all(rr.ttl <= ttl for section in sections for rr in section):
        return answer

    def cap(records: tuple[RR, ...]) -> tuple[RR, ...]:
        return tuple(
            rr if rr.ttl <= ttl else RR(rr.rname, rr.rtype, rr.rclass, ttl, rr.rdata) for rr in records
        )

    return Answer(
        rcode=answer.rcode,
        answer=cap(answer.answer),
        authority=cap(answer.authority),
        additional=cap(answer.additional),
        authoritative=answer.authoritative,
        recursion_available=answer.recursion_available,
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    answer: Answer
    stored: float
    ttl: int


class ResponseCache:
    """A bounded cache of upstream answers, fresh for their TTL and stale for a window after."""

    def __init__(
        self,
        maxsize: int = 10_000,
        *,
        max_ttl: int = 3600,
        max_negative_ttl: int = 300,
        stale_window: float = 86_400.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxsize < 0:
            raise ConfigError(f"cache size {maxsize}: must be >= 0 (0 turns the cache off)")
        if max_ttl < 0 or max_negative_ttl < 0 or stale_window < 0:
            raise ConfigError(
                f"cache TTLs {max_ttl}/{max_negative_ttl}/{stale_window}: must be >= 0"
            )
        self.maxsize = maxsize
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.stale_window = stale_window
        self.timer = timer
        # The entry leaves the cache at the end of its stale window; whether it is still
        # fresh is decided on reading. LRU order decides which entry a full cache drops.
        self._entries: TLRUCache[CacheKey, _Entry] = TLRUCache(
            maxsize=max(maxsize, 1), ttu=self._until, timer=timer
        )
        # Counters, read by metrics (kdns_cache_*_total).
        self.hits = 0
        self.misses = 0
        self.stale_hits = 0
        self.stores = 0

    def _until(self, key: CacheKey, entry: _Entry, now: float) -> float:
        return now + entry.ttl + self.stale_window

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def store(self, query: Query, answer: Answer) -> Answer | None:
        """Keep `answer` to `query` if it may be cached (see the module docstring); the
        answer as kept (TTLs capped), or None if it was not."""
        if self.maxsize == 0:
            return None
        ttl = cache_ttl(answer, max_ttl=self.max_ttl, max_negative_ttl=self.max_negative_ttl)
        if ttl <= 0:
            return None
        kept = capped(answer, ttl)
        self._entries[cache_key(query)] = _Entry(kept, self.timer(), ttl)
        self.stores += 1
        return kept

    def _age(self, entry: _Entry) -> float:
        return max(0.0, self.timer() - entry.stored)

    def get(self, query: Query) -> Answer | None:
        """The fresh cached answer to `query`, TTLs counted down by its age; else None."""
        entry = self._entries.get(cache_key(query))
        if entry is not None:
            age = self._age(entry)
            if age < entry.ttl:
                self.hits += 1
                return served(entry.answer, query, age=age)
        self.misses += 1
        return None

    def get_stale(self, query: Query) -> Answer | None:
        """The cached answer to `query`, expired or not, for when forwarding failed.

        A fresh entry (another asker refreshed it meanwhile) is served as `get` would; an
        expired one within its stale window is served with every TTL 30.
        """
        entry = self._entries.get(cache_key(query))
        if entry is None:
            return None
        age = self._age(entry)
        if age < entry.ttl:
            return served(entry.answer, query, age=age)
        self.stale_hits += 1
        return served(entry.answer, query, stale=True)


class CachingForwarder:
    """An async handler: the cache, then the forwarder, storing what it answers.

    `lookup(query)` is the same without a coroutine for a hit: an Answer at once, or an
    awaitable on a miss (the Router's `Answer | Awaitable[Answer]` contract).

    On a miss the forwarder is asked; its answer is stored (if cacheable) and served. If
    it answers SERVFAIL (every upstream failed or timed out), a stale entry is served
    instead when there is one, and that question is answered from the stale entry for
    the next `recheck` seconds without asking upstream again.
    """

    def __init__(
        self,
        cache: ResponseCache,
        forwarder: AsyncHandler,
        *,
        recheck: float = RECHECK,
        timer: Callable[[], float] | None = None,
    ) -> None:
        self.cache = cache
        self.forwarder = forwarder
        self._recheck: TTLCache[CacheKey, bool] | None = None
        if recheck > 0:
            self._recheck = TTLCache(
                maxsize=max(cache.maxsize, 1), ttl=recheck, timer=timer or cache.timer
            )

    def lookup(self, query: Query) -> Answer | Awaitable[Answer]:
        """The answer now if the cache has it, else an awaitable that forwards.

        For the Router: a cache hit needs no task on the wire servers' side.
        """
        answer = self.cache.get(query)
        if answer is not None:
            return answer
        if self._recheck is not None and cache_key(query) in self._recheck:
            stale = self.cache.get_stale(query)
            if stale is not None:
                return stale
        return self._forward(query)

    def cached(self, query: Query) -> Answer | None:
        """The fresh cached answer to `query`, never asking upstream: for questions with RD=0,
        which a resolver answers from what it holds (RFC 1034 section 4.3.1)."""
        return self.cache.get(query)

    async def __call__(self, query: Query) -> Answer:
        result = self.lookup(query)
        return result if isinstance(result, Answer) else await result

    async def _forward(self, query: Query) -> Answer:
        answer = await self.forwarder(query)
        if answer.rcode == RCODE.SERVFAIL:
            stale = self.cache.get_stale(query)
            if stale is not None:
                if self._recheck is not None:
                    self._recheck[cache_key(query)] = True
                return stale
            return answer
        kept = self.cache.store(query, answer)
        if kept is None:
            return served(answer, query, cached=False)
        return served(kept, query)
