"""A small etcd v3 client over etcd's JSON gateway (grpc-gateway), on aiohttp.

Why the gateway and not a gRPC client: kdns already depends on aiohttp and runs on
asyncio; the gateway is served by every etcd v3.4+ member on its client URL (Debian's
etcd-server 3.4 serves /v3/kv/range, /v3/kv/txn, /v3/watch, /v3/lease/*), speaks TLS with
client certificates through the same `ssl.SSLContext` the API uses, and needs no
compiled extension (grpcio) nor a second event-loop integration. kdns needs six calls:
range, txn, watch, lease grant, keepalive and revoke.

JSON conventions of the gateway: keys and values are base64, 64-bit integers are decimal
strings, and fields at their default value (0, false, the PUT event type) are left out.

Endpoints are tried in order; a member that does not answer (connection refused, reset,
timeout) makes the client move on to the next, so one member down is invisible to the
caller. `EtcdUnavailable` means no member answered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

import aiohttp

from kdns.errors import KdnsError

# One call's bound: a member that takes longer is treated as gone and the next is tried.
REQUEST_TIMEOUT = 2.0
# One watch reply carries a whole revision: a large write (a manifest load) is one line of
# several megabytes; aiohttp's default line limit is 64 KiB.
MAX_WATCH_MESSAGE = 256 * 2**20


class EtcdError(KdnsError):
    """etcd refused a request (a bad request, or an error it reports)."""


class EtcdUnavailable(EtcdError):
    """No etcd member answered."""


class Compacted(EtcdError):
    """A watch asked for a revision etcd has compacted away."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"etcd has compacted revisions up to {compact_revision}")
        self.compact_revision = compact_revision


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that covers every key starting with `prefix` (etcd's clientv3.GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class WatchEvent:
    deleted: bool
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store's revision after the txn (its own, when it succeeded)


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=unb64(raw["key"]),
        value=unb64(raw.get("value", "")),
        mod_revision=int(raw.get("mod_revision", 0)),
        create_revision=int(raw.get("create_revision", 0)),
        lease=int(raw.get("lease", 0)),
    )


class Compare:
    """One condition of a txn, in the gateway's JSON."""

    @staticmethod
    def mod_revision(key: bytes, revision: int) -> dict[str, Any]:
        """The key was last written at `revision` (0: the key does not exist)."""
        return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}

    @staticmethod
    def create_revision(key: bytes, revision: int) -> dict[str, Any]:
        """The key was created at `revision` (0: the key does not exist)."""
        return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": str(revision)}


def put(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
    request: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        request["lease"] = str(lease)
    return {"request_put": request}


def delete(key: bytes) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


class EtcdClient:
    """`async with EtcdClient(["http://127.0.0.1:2379"], ssl=ctx) as etcd:`."""

    def __init__(self, endpoints: Sequence[str], *, ssl_context: ssl.SSLContext | None = None) -> None:
        if not endpoints:
            raise EtcdError("no etcd endpoint")
        self.endpoints = list(endpoints)
        self._ssl = ssl_context
        self._current = 0  # the member that answered last: tried first
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False, limit=64)
        self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _order(self) -> list[str]:
        n = len(self.endpoints)
        return [self.endpoints[(self._current + i) % n] for i in range(n)]

    async def call(self, path: str, body: dict[str, Any], *, seconds: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        """POST `body` to `path` on the first member that answers within `seconds`; its JSON reply."""
        session = self._session
        if session is None:
            raise EtcdError("the etcd client is closed")
        reasons = []
        for endpoint in self._order():
            try:
                async with asyncio.timeout(seconds):
                    async with session.post(endpoint + path, json=body) as response:
                        text = await response.text()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reasons.append(f"{endpoint}: {str(exc) or type(exc).__name__}")
                continue
            self._current = self.endpoints.index(endpoint)
            try:
                reply = json.loads(text) if text else {}
            except ValueError:
                raise EtcdError(f"{endpoint}{path}: not JSON: {text[:200]!r}") from None
            if response.status != 200 or ("error" in reply and "header" not in reply):
                message = reply.get("message") or reply.get("error") or text[:200]
                if response.status == 503 or "no leader" in str(message) or "timed out" in str(message):
                    # A member cut off from its cluster: another may do better.
                    reasons.append(f"{endpoint}: {message}")
                    continue
                raise EtcdError(f"{endpoint}{path}: {message}")
            return reply
        raise EtcdUnavailable("etcd is unreachable (" + "; ".join(reasons) + ")")

    # --- KV ------------------------------------------------------------------------------

    async def range_prefix(self, prefix: bytes, *, revision: int = 0, limit: int = 0) -> tuple[list[KeyValue], int, bool]:
        """Keys under `prefix` at `revision` (0: now), from the key after any before:
        (kvs, the revision read, more left)."""
        body: dict[str, Any] = {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        reply = await self.call("/v3/kv/range", body, seconds=REQUEST_TIMEOUT * 5)
        kvs = [_kv(raw) for raw in reply.get("kvs", [])]
        return kvs, int(reply["header"]["revision"]), bool(reply.get("more"))

    async def range_all(self, prefix: bytes, *, page: int = 5000) -> tuple[list[KeyValue], int]:
        """Every key under `prefix`, read at one revision, a page at a time."""
        kvs, revision, more = await self.range_prefix(prefix, limit=page)
        while more:
            start = kvs[-1].key + b"\0"
            body = {"key": b64(start), "range_end": b64(prefix_end(prefix)), "revision": str(revision), "limit": str(page)}
            reply = await self.call("/v3/kv/range", body, seconds=REQUEST_TIMEOUT * 5)
            kvs.extend(_kv(raw) for raw in reply.get("kvs", []))
            more = bool(reply.get("more"))
        return kvs, revision

    async def get(self, key: bytes) -> KeyValue | None:
        reply = await self.call("/v3/kv/range", {"key": b64(key)})
        kvs = reply.get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    async def txn(
        self, compare: list[dict[str, Any]], success: list[dict[str, Any]], failure: Sequence[dict[str, Any]] = ()
    ) -> TxnResult:
        # A large txn (a manifest load) takes etcd longer: a second more per 1,000 operations.
        seconds = REQUEST_TIMEOUT + len(success) / 1000
        body = {"compare": compare, "success": success, "failure": list(failure)}
        reply = await self.call("/v3/kv/txn", body, seconds=seconds)
        return TxnResult(bool(reply.get("succeeded")), int(reply["header"].get("revision", 0)))

    async def revision(self) -> int:
        """The cluster's current revision (a quorum read: a member cut off fails it)."""
        reply = await self.call("/v3/kv/range", {"key": b64(b"\0"), "limit": "1"})
        return int(reply["header"]["revision"])

    # --- leases ---------------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        reply = await self.call("/v3/lease/grant", {"TTL": str(ttl)})
        return int(reply["ID"])

    async def keepalive(self, lease: int) -> int:
        """Renew `lease`; its TTL in seconds left, 0 when it has expired."""
        reply = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(reply.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self.call("/v3/lease/revoke", {"ID": str(lease)})

    # --- watch ----------------------------------------------------------------------------

    async def watch(self, prefix: bytes, start_revision: int) -> AsyncIterator[tuple[int, list[WatchEvent]]]:
        """(revision, events) for every change under `prefix` from `start_revision` on,
        one etcd revision at a time; (0, []) once the watch is open, and (revision, [])
        for a progress notification (every change up to `revision` has been given).

        Raises Compacted when `start_revision` is gone, EtcdUnavailable when no member
        answers; ends when the member closes the stream (the caller watches again from
        the revision after the last one it was given)."""
        session = self._session
        if session is None:
            raise EtcdError("the etcd client is closed")
        body = {
            "create_request": {
                "key": b64(prefix),
                "range_end": b64(prefix_end(prefix)),
                "start_revision": str(start_revision),
                "progress_notify": True,
            }
        }
        reasons = []
        for endpoint in self._order():
            try:
                response = await session.post(
                    endpoint + "/v3/watch", json=body, timeout=aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT)
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reasons.append(f"{endpoint}: {str(exc) or type(exc).__name__}")
                continue
            self._current = self.endpoints.index(endpoint)
            async with response:
                if response.status != 200:
                    raise EtcdError(f"{endpoint}/v3/watch: HTTP {response.status}")
                content = response.content
                try:
                    # The member says the watch is created at once; one whose gateway lost its
                    # way to the member's own gRPC server may say nothing at all: try again.
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        line = await content.readuntil(b"\n", max_size=MAX_WATCH_MESSAGE)
                    while line:
                        for item in self._watch_message(endpoint, line):
                            yield item
                        line = await content.readuntil(b"\n", max_size=MAX_WATCH_MESSAGE)
                except TimeoutError:
                    raise EtcdUnavailable(f"{endpoint}/v3/watch: not created within {REQUEST_TIMEOUT:g} s") from None
                except (aiohttp.ClientError, OSError) as exc:  # the member went away mid-stream
                    raise EtcdUnavailable(f"{endpoint}/v3/watch: {str(exc) or type(exc).__name__}") from None
            return
        raise EtcdUnavailable("etcd is unreachable (" + "; ".join(reasons) + ")")

    @staticmethod
    def _watch_message(endpoint: str, line: bytes) -> list[tuple[int, list[WatchEvent]]]:
        """What one line of a watch stream gives `watch` to yield."""
        if not line.strip():
            return []
        message = json.loads(line)
        if "error" in message:
            raise EtcdUnavailable(f"{endpoint}/v3/watch: {message['error'].get('message', message)}")
        result = message.get("result", {})
        if result.get("compact_revision") and result.get("canceled"):
            raise Compacted(int(result["compact_revision"]))
        if result.get("canceled"):
            raise EtcdError(f"{endpoint}/v3/watch: canceled: {result.get('cancel_reason', '')}")
        if result.get("created"):
            return [(0, [])]  # open: what follows is every change from start_revision on
        events = [WatchEvent(raw.get("type") == "DELETE", _kv(raw["kv"])) for raw in result.get("events", [])]
        if not events:
            return [(int(result.get("header", {}).get("revision", 0)), [])]
        # One reply may carry several revisions: hand them over one by one.
        batches = []
        start = 0
        for i in range(1, len(events) + 1):
            if i == len(events) or events[i].kv.mod_revision != events[start].kv.mod_revision:
                batches.append((events[start].kv.mod_revision, events[start:i]))
                start = i
        return batches
