"""`HOST:PORT` texts, IPv6 hosts in brackets (`[fd00::1]:53`), read and written in one place.

The form URLs (RFC 3986 section 3.2.2) and resolvers use: a host with a colon in it is an
IPv6 address and goes in brackets, so that the port's colon is the last one outside them.
"""

from __future__ import annotations

__all__ = ["Peer", "join_host_port", "split_host_port"]

# A UDP peer as recvfrom and asyncio give it: (host, port) for IPv4, (host, port, flowinfo,
# scope_id) for IPv6.
Peer = tuple[str, int] | tuple[str, int, int, int]


def join_host_port(host: str, port: int | str) -> str:
    """`10.0.0.1:53`, `[fd00::1]:53`, `localhost:8080`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(text: str) -> tuple[str, str | None]:
    """`HOST:PORT`, `[HOST]:PORT`, `[HOST]` or `HOST` -> (host, port text or None if none).

    A text with more than one colon and no brackets is an IPv6 address without a port
    (`fd00::1`). The port is returned as written (`"53"`, `""` for `HOST:`, `"http"`):
    what a port may be is the caller's to say. ValueError for a `[` without its `]`, or
    anything but `:PORT` after the `]`.
    """
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [HOST]:PORT")
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port
    return text, None
