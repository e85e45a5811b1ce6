"""The followed API, as far as the follower speaks it: list pages and watch streams.

JSON over aiohttp (already kdns's HTTP library), with the TLS, token and client
certificate of the kubeconfig (`kubeconfig.Access`). Refusals come back as `ApiStatus`
carrying the API server's Status; 410 (an expired version or continue token, as an HTTP
status or as a watch's ERROR event) as its subclass `Gone`, which means: list again.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Self

import aiohttp

from kdns.errors import KdnsError
from kdns.follow.kubeconfig import Access

__all__ = ["WATCH_TIMEOUT", "ApiStatus", "Client", "Gone", "ListPage"]

# A list page has this long to arrive; a watch this long between two lines (the API
# server sends a bookmark every minute to a watch that allows them, so silence for
# longer means the connection is dead even if no RST came).
REQUEST_TIMEOUT = 60.0
WATCH_SILENCE = 150.0
# client-go's reflector asks for a random watch length in [5, 10) minutes, so that the
# watches of many clients do not all end together.
WATCH_TIMEOUT = (300, 600)


class ApiStatus(KdnsError):
    """The followed API refused a request."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}" if message else f"{code} {reason}")
        self.code = code
        self.reason = reason


class Gone(ApiStatus):
    """410: the version asked for is older than the API can serve; list again."""


def status_error(code: int, body: Any) -> ApiStatus:
    """The error for a refusal with HTTP status `code` and (maybe) a Status body."""
    reason, message = "", ""
    if isinstance(body, dict) and body.get("kind") == "Status":
        code = body.get("code") or code
        reason, message = str(body.get("reason", "")), str(body.get("message", ""))
    return (Gone if code == 410 else ApiStatus)(code, reason or "Failure", message)


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[Any]
    resource_version: str
    continue_token: str | None


class Client:
    """`async with Client(access) as client:` an HTTP session to the followed API."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(ssl=self.access.ssl if self.access.ssl is not None else False)
        self._session = aiohttp.ClientSession(self.access.server, connector=connector)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection, the watches' in the middle of their streams included,
        and wait until each is closed (over TLS: close_notify sent and answered).

        Call it before cancelling the tasks that watch: a watch cancelled first hands its
        connection back to aiohttp closed but not yet shut down, and nothing waits for
        that shutdown, so the event loop may end with the transport open (a
        ResourceWarning: unclosed resource). The watches then end with a connection error
        while `closed` is true."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            # uvloop closes the TCP transport beneath a TLS connection a turn of the loop
            # after the TLS protocol reports it lost; give it that turn.
            await asyncio.sleep(0)

    @property
    def closed(self) -> bool:
        return self._session is None

    def _get(self, path: str, params: dict[str, str], timeout: aiohttp.ClientTimeout) -> Any:
        assert self._session is not None, "use the client in an async with block"
        return self._session.get(
            path, params=params, headers=self.access.headers(), timeout=timeout,
            server_hostname=self.access.server_hostname,
        )

    async def list(self, path: str, limit: int | None, continue_token: str | None) -> ListPage:
        """One page of the list at `path` (a consistent read: no resourceVersion)."""
        params: dict[str, str] = {}
        if limit is not None:
            params["limit"] = str(limit)
        if continue_token:
            params["continue"] = continue_token
        async with self._get(path, params, aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as response:
            body = await _json_body(response)
            if response.status != 200:
                raise status_error(response.status, body)
        metadata = body.get("metadata") if isinstance(body, dict) else None
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(metadata, dict) or not isinstance(items, list):
            raise ApiStatus(response.status, "BadResponse", f"the list at {path} is not a Kubernetes list")
        return ListPage(items, str(metadata.get("resourceVersion", "")), metadata.get("continue") or None)

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[tuple[str, Any]]:
        """The (type, object) events of a watch from `resource_version`, with bookmarks,
        until the API server ends it. An ERROR event raises its Status."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(random.randrange(*WATCH_TIMEOUT)),  # noqa: S311  (spread, not a secret)
        }
        timeout = aiohttp.ClientTimeout(total=None, connect=REQUEST_TIMEOUT, sock_read=WATCH_SILENCE)
        async with self._get(path, params, timeout) as response:
            if response.status != 200:
                raise status_error(response.status, await _json_body(response))
            buffered = b""
            # Lines, however large: an object may exceed aiohttp's readline limit.
            async for chunk in response.content.iter_any():
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                        kind, obj = event["type"], event["object"]
                    except (ValueError, KeyError, TypeError):
                        raise ApiStatus(200, "BadResponse", f"the watch of {path} sent a line that is not an event") from None
                    if kind == "ERROR":
                        raise status_error(500, obj)
                    yield kind, obj


async def _json_body(response: aiohttp.ClientResponse) -> Any:
    data = await response.read()
    try:
        return json.loads(data)
    except ValueError:
        if response.status == 200:
            raise ApiStatus(200, "BadResponse", f"{response.url.path} did not answer JSON") from None
        return None
