"""Followers and their primaries: real `kdns serve` processes on loopback.

`kubeconfig(server, ...)` writes a kubeconfig for a follower; `relay(port)` puts a TCP
relay (tests/follow/relay.py) in front of a primary's API; `answers(process, name)` is
what a kdns answers for a name, as a sorted list of record texts.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import pytest
import yaml

from tests.follow.relay import Relay

WAIT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(process: Any, name: str, rdtype: str = "A") -> list[str] | None:
    """The answer's record texts, sorted; None for NXDOMAIN."""
    reply = process.resolve(name, rdtype)
    if reply.rcode() == dns.rcode.NXDOMAIN:
        return None
    assert reply.rcode() == dns.rcode.NOERROR, reply
    return sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """check()'s first truthy result, polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `kubeconfig(server, cluster={...}, user={...}, context="follow")` -> its path."""
    count = [0]

    def write(server: str, *, cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None,
              context: str = "follow") -> Path:
        count[0] += 1
        path = tmp_path / f"kubeconfig-{count[0]}"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "primary", "cluster": {"server": server, **(cluster or {})}}],
            "users": [{"name": "reader", "user": user or {}}],
            "contexts": [{"name": context, "context": {"cluster": "primary", "user": "reader"}}],
            "current-context": context,
        }))
        return path

    return write


@pytest.fixture
def relay() -> Iterator[Callable[[int], Relay]]:
    relays: list[Relay] = []

    def start(port: int) -> Relay:
        relays.append(Relay(port))
        return relays[-1]

    yield start
    for each in relays:
        each.close()
