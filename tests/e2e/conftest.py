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
    """The root `kdns_process`, with HERMETIC_FLAGS before the test's own flags."""

    def start(*args: str, **kwargs: Any) -> Any:
        return kdns_process(*HERMETIC_FLAGS, *args, **kwargs)

    return start


@pytest.fixture
def kdns_server(kdns_server: Callable[..., Any]) -> Callable[..., Any]:
    """The root `kdns_server`, with its HTTP API on a free port unless the test says otherwise."""

    def start(*sources: Any, **overrides: Any) -> Any:
        overrides.setdefault("api_port", 0)
        return kdns_server(*sources, **overrides)

    return start
