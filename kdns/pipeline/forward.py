"""Forwarder: ask upstream resolvers about names kdns is not authoritative for.

The only DNS client socket code in kdns: kdns.codec writes the request
(`codec.request`), the sockets here send it, and the reply's bytes are read once, by
kdns.codec, into kdns's message model (`codec.read_reply`). The policy is
docs/dns-rules.md R32. Policy, in the order it is applied to one question:

* Identical questions in flight share one upstream exchange (coalescing): the key is
  (name lower-cased, type, class, DO, CD). CD is in the key as in CoreDNS's cache: an
  unvalidated CD=1 answer must not reach a CD=0 asker.
* Upstreams are tried in their configured order, as a stub resolver reads resolv.conf;
  an upstream that failed `max_fails` times in a row is set aside for `backoff` seconds
  and tried only after the others. Set-aside upstreams are still tried, last, so a
  recovered upstream is found again (and with every upstream set aside, all are tried).
* One try is one UDP exchange; a reply with TC set is asked again over TCP (RFC 7766
  section 5). A reply must come from the upstream's address and port and match the
  query's id, opcode and question; one that does not, or does not parse, is ignored as
  if it had been lost (a spoofed or stray packet cannot fail a try).
* SERVFAIL, REFUSED, NOTIMP and FORMERR from an upstream are failures of that upstream
  for this question: the next one is asked. NOERROR and NXDOMAIN are answers.
* A try that timed out may be a lost packet, so timed-out upstreams are asked a second
  time while the overall deadline allows; upstreams that answered badly are not.
* When every upstream failed or the deadline passed, the answer is SERVFAIL (RFC 8767
  and docs/dns-rules.md R27: never silence, never NXDOMAIN for a timeout), with an
  Extended DNS Error saying why (RFC 8914): No Reachable Authority when no upstream
  answered in time, Network Error when they answered badly or could not be reached, and
  the upstreams and their failures in its text.

Loops: an upstream equal to one of kdns's own listening addresses is refused when the
Forwarder is built (`ForwardingLoop`). A loop through another resolver (kdns → resolver →
kdns) is found at runtime by `check_loop()`, CoreDNS's `loop` plugin: it asks for a
random name and watches whether that name comes back to this Forwarder. Any other loop
ends at the deadline, because the looping copy of a question coalesces with the
original and waits for it instead of being sent again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from kdns import codec
from kdns.config import ConfigError
from kdns.hostport import join_host_port, split_host_port
from kdns.message import (
    EDNS_PAYLOAD,
    FORMERR,
    NOTIMP,
    QTYPE,
    REFUSED,
    SERVFAIL,
    Answer,
    EdeCode,
    ExtendedError,
    Query,
    rcode_text,
    type_text,
)


class UpstreamError(ConfigError):
    """An upstream must be ADDR or ADDR:PORT, IPv6 as [ADDR]:PORT, ADDR an IP address."""


class ForwardingLoop(ConfigError):
    """An upstream is kdns itself: forwarding to it would loop."""


class _Failed(Exception):
    """One try at one upstream did not give an answer (private: never leaves this module)."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


log = logging.getLogger(__name__)

# The answer to our own loop probe when it comes back (see `check_loop`).
LOOPED = Answer(
    rcode=SERVFAIL,
    recursion_available=True,
    errors=(ExtendedError(EdeCode.OTHER, "forwarding loop: this question came back to kdns"),),
)
# An upstream answering these failed this question; the next upstream is asked.
FAILED_RCODES = frozenset({SERVFAIL, REFUSED, NOTIMP, FORMERR})
# CoreDNS's loop plugin asks HINFO: a type nobody caches or synthesizes specially.
PROBE_TYPE = QTYPE.HINFO


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream resolver: an IP address and a port."""

    address: str
    port: int = 53

    def __post_init__(self) -> None:
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            raise UpstreamError(f"upstream {self.address!r}: not an IP address") from None
        if not (1 <= self.port <= 65535):
            raise UpstreamError(f"upstream {self}: port must be between 1 and 65535")
        # One spelling per address, so that equality and the loop check are exact.
        object.__setattr__(self, "address", str(ip))

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """`10.0.0.1`, `10.0.0.1:5353`, `fd00::1`, `[fd00::1]:5353` -> Upstream."""
        text = text.strip()
        try:
            address, port = split_host_port(text)
        except ValueError:
            raise UpstreamError(f"upstream {text!r}: expected [ADDR]:PORT") from None
        if port is None:
            return cls(address)
        try:
            number = int(port)
        except ValueError:
            raise UpstreamError(f"upstream {text!r}: port {port!r} is not a number") from None
        return cls(address, number)

    def __str__(self) -> str:
        return join_host_port(self.address, self.port)


def is_own_address(upstream: Upstream, own_addresses: Iterable[tuple[str, int]]) -> bool:
    """Whether `upstream` is one of kdns's listening (address, port) pairs.

    A listener on 0.0.0.0 or :: receives on every local address; of those, only the
    loopback ones are known here without asking the kernel, so a wildcard listener
    matches loopback and wildcard upstreams on its port. `check_loop()` finds the rest.
    """
    ip = ipaddress.ip_address(upstream.address)
    for address, port in own_addresses:
        if port != upstream.port:
            continue
        own = ipaddress.ip_address(address)
        if own == ip or (own.is_unspecified and (ip.is_loopback or ip.is_unspecified)):
            return True
    return False


def host_nameservers(
    resolv_conf_path: str | Path = "/etc/resolv.conf",
    exclude: Iterable[tuple[str, int]] = (),
) -> tuple[str, ...]:
    """The `nameserver` lines of the host's resolv.conf, as upstream strings, kdns excluded.

    resolv.conf has no port: every nameserver is on 53 (resolv.conf(5)). Lines that are
    not IP addresses are skipped, as the C library skips them; a missing file means none.
    """
    own = tuple(exclude)
    try:
        text = Path(resolv_conf_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    found: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            upstream = Upstream(fields[1])
        except UpstreamError:
            continue
        if is_own_address(upstream, own):
            log.info("resolv.conf nameserver %s is kdns itself: not forwarding to it", upstream)
            continue
        if upstream.address not in found:
            found.append(upstream.address)
    return tuple(found)


def failed(failures: list[tuple[Upstream, str, bool]]) -> Answer:
    """SERVFAIL after every try failed, with an Extended DNS Error saying how (RFC 8914).

    `failures` holds (upstream, reason, timed out) per try. No try at all (the deadline
    passed first) counts as nothing reachable.
    """
    timeouts = all(timed_out for _, _, timed_out in failures)
    code = EdeCode.NO_REACHABLE_AUTHORITY if timeouts else EdeCode.NETWORK_ERROR
    reasons = dict.fromkeys(f"{upstream} {reason}" for upstream, reason, _ in failures)
    text = "; ".join(reasons) or "no time left to ask an upstream"
    return Answer(
        rcode=SERVFAIL, recursion_available=True, errors=(ExtendedError(code, text),), source="upstream"
    )


class Forwarder:
    """An async handler that answers every query by asking upstream resolvers.

    Use it as an async context manager (or call `aclose()`): leaving cancels the
    upstream exchanges still in flight. The counters are plain attributes for metrics.
    """

    def __init__(
        self,
        upstreams: Iterable[str | Upstream],
        *,
        own_addresses: Iterable[tuple[str, int]] = (),
        try_timeout: float = 1.0,
        deadline: float = 2.0,
        backoff: float = 30.0,
        max_fails: int = 2,
        payload: int = EDNS_PAYLOAD,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstreams: tuple[Upstream, ...] = tuple(
            u if isinstance(u, Upstream) else Upstream.parse(u) for u in upstreams
        )
        if not self.upstreams:
            raise UpstreamError("forwarding needs at least one upstream")
        if len(set(self.upstreams)) != len(self.upstreams):
            raise UpstreamError(f"upstreams {', '.join(map(str, self.upstreams))}: listed twice")
        own = tuple(own_addresses)
        for upstream in self.upstreams:
            if is_own_address(upstream, own):
                raise ForwardingLoop(
                    f"upstream {upstream} is kdns's own listening address: forwarding to "
                    "it would loop; name the resolver kdns should ask instead"
                )
        if not (try_timeout > 0 and deadline > 0):
            raise ConfigError(f"forward timeouts {try_timeout}/{deadline}: must be positive")
        if backoff < 0 or max_fails < 1:
            raise ConfigError(f"forward backoff {backoff}/{max_fails}: need >= 0 and >= 1")
        if not (512 <= payload <= 65535):
            raise ConfigError(f"forward EDNS payload {payload}: must be 512-65535")
        self.try_timeout = try_timeout
        self.deadline = deadline
        self.backoff = backoff
        self.max_fails = max_fails
        self.payload = payload
        self._timer = timer
        self._fails: dict[Upstream, int] = {}
        self._set_aside_until: dict[Upstream, float] = {}
        self._inflight: dict[tuple[str, int, int, bool, bool], asyncio.Task[Answer]] = {}
        self._probes: dict[str, int] = {}
        # Counters, read by metrics (kdns_forward_*_total).
        self.queries = 0  # questions handed to this Forwarder
        self.coalesced = 0  # of those, answered by another question's exchange
        self.requests = 0  # messages sent upstream, UDP and TCP
        self.tcp_retries = 0  # UDP replies with TC, asked again over TCP
        self.failures = 0  # tries that gave no usable answer (timeouts included)
        self.timeouts = 0  # of those, tries that timed out
        self.servfails = 0  # questions answered SERVFAIL: every upstream failed
        self.loops = 0  # loop probes that came back to this Forwarder

    def counts(self) -> dict[str, int]:
        """The counters, by the names /metrics exports them under (kdns_forward_*_total)."""
        return {
            "queries": self.queries,
            "coalesced": self.coalesced,
            "requests": self.requests,
            "tcp_retries": self.tcp_retries,
            "failures": self.failures,
            "timeouts": self.timeouts,
            "servfails": self.servfails,
            "loops": self.loops,
        }

    async def __aenter__(self) -> Forwarder:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the upstream exchanges in flight and wait for them to end."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def set_aside(self) -> tuple[Upstream, ...]:
        """The upstreams currently set aside after failing, for logs and /readyz."""
        now = self._timer()
        return tuple(u for u in self.upstreams if self._set_aside_until.get(u, 0.0) > now)

    async def __call__(self, query: Query) -> Answer:
        self.queries += 1
        name = query.name
        if name in self._probes:
            # Our own loop probe came back: some upstream forwards to us. Answering at
            # once (not forwarding again) is what stops the loop.
            self._probes[name] += 1
            self.loops += 1
            return LOOPED
        key = (name, query.qtype, query.qclass, query.do, query.cd)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._resolve(query), name=f"forward {name} {type_text(query.qtype)}"
            )
            self._inflight[key] = task
            task.add_done_callback(partial(self._forget, key))
        else:
            self.coalesced += 1
        # shield: one asker going away (its own timeout) must not cancel the exchange
        # the other askers share.
        return await asyncio.shield(task)

    def _forget(self, key: tuple[str, int, int, bool, bool], task: asyncio.Task[Answer]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    async def check_loop(self) -> None:
        """Raise ForwardingLoop if a query sent upstream comes back to this Forwarder.

        Call it once the DNS listeners are up (CoreDNS's `loop` plugin does the same at
        start): a random name nobody else asks is sent through the upstreams; if an
        upstream forwards it back to kdns, `__call__` sees it and answers SERVFAIL.
        """
        probe = f"{secrets.randbelow(10**10):010d}.{secrets.randbelow(10**10):010d}."
        self._probes[probe] = 0
        try:
            await self._resolve(Query(id=0, qname=probe, qtype=PROBE_TYPE))
            seen = self._probes[probe]
        finally:
            del self._probes[probe]
        if seen:
            raise ForwardingLoop(
                f"forwarding loop: the probe {probe} HINFO sent to "
                f"{', '.join(map(str, self.upstreams))} came back to kdns {seen} time(s); "
                "an upstream forwards to kdns (is kdns in the upstream's resolv.conf?)"
            )

    def _order(self) -> list[Upstream]:
        """Healthy upstreams in configured order, then the set-aside ones, soonest back first."""
        now = self._timer()
        healthy = [u for u in self.upstreams if self._set_aside_until.get(u, 0.0) <= now]
        aside = sorted(
            (u for u in self.upstreams if self._set_aside_until.get(u, 0.0) > now),
            key=lambda u: self._set_aside_until[u],
        )
        return healthy + aside

    def _failed(self, upstream: Upstream, failure: _Failed) -> None:
        self.failures += 1
        if failure.timed_out:
            self.timeouts += 1
        fails = self._fails.get(upstream, 0) + 1
        self._fails[upstream] = fails
        if fails >= self.max_fails:
            if self._set_aside_until.get(upstream, 0.0) <= self._timer():
                log.warning(
                    "upstream %s failed %d times (%s): set aside for %gs",
                    upstream,
                    fails,
                    failure,
                    self.backoff,
                )
            self._set_aside_until[upstream] = self._timer() + self.backoff

    def _answered(self, upstream: Upstream) -> None:
        self._fails.pop(upstream, None)
        if self._set_aside_until.pop(upstream, None) is not None:
            log.info("upstream %s answers again", upstream)

    async def _resolve(self, query: Query) -> Answer:
        """Ask upstreams until one answers, every one failed, or the deadline passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline
        # RD=1 always (codec.request): kdns is the pods' recursive resolver, and one
        # exchange serves every coalesced asker. The lower-cased name is asked; the cache
        # re-spells the answer.
        asked = replace(query, qname=query.name)
        timed_out: list[Upstream] = []
        failures: list[tuple[Upstream, str, bool]] = []
        for attempt, upstreams in enumerate((self._order(), timed_out)):
            for upstream in list(upstreams):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    answer = await self._exchange(upstream, asked, remaining, deadline)
                except _Failed as failure:
                    self._failed(upstream, failure)
                    failures.append((upstream, str(failure), failure.timed_out))
                    if failure.timed_out and attempt == 0:
                        timed_out.append(upstream)
                    log.debug("upstream %s: %s %s: %s", upstream, query.name, type_text(query.qtype), failure)
                    continue
                except Exception:  # R27: a bug here is a failed try, and SERVFAIL, not silence
                    log.exception("upstream %s: %s %s", upstream, query.name, type_text(query.qtype))
                    self._failed(upstream, _Failed("internal error"))
                    failures.append((upstream, "internal error", False))
                    continue
                self._answered(upstream)
                return answer
        self.servfails += 1
        return failed(failures)

    async def _exchange(self, upstream: Upstream, query: Query, remaining: float, deadline: float) -> Answer:
        """One try: UDP, then TCP if the reply was truncated; raises _Failed.

        The reply's bytes are read once, by kdns.codec, into kdns's message model.
        """
        loop = asyncio.get_running_loop()
        # A fresh id for every try, with a fresh random source port per socket: the 32
        # bits an off-path spoofer has to guess (RFC 5452 section 9.2).
        wire = codec.request(query, secrets.randbelow(0x10000), self.payload)
        where = (upstream.address, upstream.port)
        try:
            self.requests += 1
            async with asyncio.timeout(min(self.try_timeout, remaining)):
                reply = await _udp_exchange(where, wire)
            if reply is None:
                # RFC 7766 section 5: a truncated UDP reply is asked again over TCP.
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise _Failed("truncated over UDP, no time left for TCP", timed_out=True)
                self.tcp_retries += 1
                self.requests += 1
                async with asyncio.timeout(min(self.try_timeout, remaining)):
                    reply = await _tcp_exchange(where, wire)
        except TimeoutError:
            raise _Failed("timed out", timed_out=True) from None
        except (OSError, EOFError, codec.Malformed) as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from None
        if reply.rcode in FAILED_RCODES:
            raise _Failed(f"answered {rcode_text(reply.rcode)}")
        return reply


class _Replies(asyncio.DatagramProtocol):
    """Datagrams from the upstream's address, until one is the reply to `request`: its
    Answer, or None if it was truncated (asked again over TCP, so not read)."""

    def __init__(self, request: bytes, where: tuple[str, int]) -> None:
        self.request = request
        self.where = where
        self.reply: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.reply.done() or (addr[0], addr[1]) != self.where or not codec.is_reply_to(self.request, data):
            return
        if codec.truncated(data):
            self.reply.set_result(None)
            return
        try:
            answer = codec.read_reply(data)
        except codec.Malformed:
            return  # unreadable: as good as lost, and the wait goes on
        self.reply.set_result(answer)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)  # ICMP unreachable: this upstream failed


async def _udp_exchange(where: tuple[str, int], request: bytes) -> Answer | None:
    """Send `request` from a fresh socket and wait (the caller bounds it) for its reply:
    its Answer, or None if it was truncated."""
    loop = asyncio.get_running_loop()
    any_address = "::" if ":" in where[0] else "0.0.0.0"  # noqa: S104  (a client socket: the port is random)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Replies(request, where), local_addr=(any_address, 0)
    )
    try:
        transport.sendto(request, where)
        return await protocol.reply
    finally:
        transport.close()


async def _tcp_exchange(where: tuple[str, int], request: bytes) -> Answer:
    """The request over TCP (RFC 1035 section 4.2.2 framing); its reply, read once."""
    reader, writer = await asyncio.open_connection(*where)
    try:
        writer.write(len(request).to_bytes(2, "big") + request)
        await writer.drain()
        length = int.from_bytes(await reader.readexactly(2), "big")
        data = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise EOFError("the upstream closed the connection") from exc
    finally:
        writer.close()
    if not codec.is_reply_to(request, data):
        raise codec.Malformed("the TCP reply does not answer the question")
    return codec.read_reply(data)
