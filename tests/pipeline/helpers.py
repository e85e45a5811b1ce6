"""Helpers for the pipeline tests: an injected clock, a bounded runner, Query and record text."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from dnslib import QTYPE

from kdns.message import Query

T = TypeVar("T")


class Clock:
    """A timer that only moves when a test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run one test's coroutine on a fresh event loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def query(qname: str, qtype: str = "A", **fields: Any) -> Query:
    """A Query as the codec would build it."""
    return Query(id=1, qname=qname, qtype=getattr(QTYPE, qtype), **fields)


def texts(records: Any) -> list[str]:
    """Records as one-line zone text with single spaces, for comparing with a table."""
    return [" ".join(str(rr).split()) for rr in records]
