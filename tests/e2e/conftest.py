"""The root fixtures, made hermetic for end-to-end tests.

Every kdns the e2e tests start keeps its registry in memory, forwards nothing (names
outside its zones are REFUSED whatever the host's resolv.conf says) and puts its HTTP API
on a free port, so tests never share state or ports with each other or with a kdns the
developer runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.dnscheck import HERMETIC_FLAGS


@pytest.fixture
def kdns_process(kdns_process: Callable[..., Any]) -> Callable[..., Any]:
    """The root `kdns_process`, with HERMETIC_FLAGS before the test's own flags, except
    those the test sets itself (a forwarding test names its --upstream)."""

    def start(*args: str, **kwargs: Any) -> Any:
        given = {arg.split("=")[0] for arg in args if arg.startswith("--")}
        if "--data-dir" in given:  # a test that keeps its registry on disk
            given.add("--ephemeral")
        return kdns_process(*_without(HERMETIC_FLAGS, given), *args, **kwargs)

    return start


def _without(flags: tuple[str, ...], given: set[str]) -> list[str]:
    """`flags` (`--flag [value]` ...) less the flags in `given`, each with its value."""
    kept: list[str] = []
    skipping = False
    for word in flags:
        if word.startswith("--"):
            skipping = word in given
        if not skipping:
            kept.append(word)
    return kept


@pytest.fixture
def kdns_server(kdns_server: Callable[..., Any]) -> Callable[..., Any]:
    """The root `kdns_server`, with its HTTP API on a free port unless the test says otherwise."""

    def start(*sources: Any, **overrides: Any) -> Any:
        overrides.setdefault("api_port", 0)
        return kdns_server(*sources, **overrides)

    return start
