"""Shared fixtures for the pipeline tests: real upstream servers and an injected clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipeline.helpers import Clock
from tests.upstream import UpstreamServer


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer(host="127.0.0.21") as server:
        yield server


@pytest.fixture
def second() -> Iterator[UpstreamServer]:
    with UpstreamServer(host="127.0.0.22") as server:
        yield server


@pytest.fixture
def third() -> Iterator[UpstreamServer]:
    with UpstreamServer(host="127.0.0.25") as server:
        yield server
