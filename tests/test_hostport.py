"""`HOST:PORT` texts: one reader and one writer for upstreams, probes, listeners and logs."""

from __future__ import annotations

import re

import pytest

from kdns.hostport import join_host_port, split_host_port


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("10.0.0.1:53", ("10.0.0.1", "53")),
        ("10.0.0.1", ("10.0.0.1", None)),
        ("10.0.0.1:", ("10.0.0.1", "")),
        (":8080", ("", "8080")),
        ("localhost:http", ("localhost", "http")),
        ("fd00::1", ("fd00::1", None)),
        ("[fd00::1]:5353", ("fd00::1", "5353")),
        ("[fd00::1]", ("fd00::1", None)),
        ("[fd00::1]:", ("fd00::1", "")),
        ("[]:53", ("", "53")),
    ],
)
def test_split(text: str, parts: tuple[str, str | None]) -> None:
    """A port after the last colon, or after `]`; more than one bare colon is IPv6 alone."""
    assert split_host_port(text) == parts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fd00::1", "'[fd00::1': expected [HOST]:PORT"),
        ("[fd00::1]53", "'[fd00::1]53': expected [HOST]:PORT"),
        ("[fd00::1]x:53", "'[fd00::1]x:53': expected [HOST]:PORT"),
    ],
)
def test_broken_brackets(text: str, message: str) -> None:
    """A `[` without its `]`, or anything but `:PORT` after it, is refused."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        split_host_port(text)


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [("10.0.0.1", 53, "10.0.0.1:53"), ("fd00::1", 53, "[fd00::1]:53"), ("localhost", "http", "localhost:http")],
)
def test_join_round_trips(host: str, port: int | str, text: str) -> None:
    """IPv6 hosts go in brackets, so that splitting the text gives the parts back."""
    assert join_host_port(host, port) == text
    assert split_host_port(text) == (host, str(port))
