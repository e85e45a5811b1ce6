"""The `twin` fixture: compose.yaml's cluster built with network namespaces, running.

Skipped, with the reason, where network namespaces cannot be made (not root, no iproute2,
no privilege), and while kdns lacks what the twin needs (the `register` command, the
prober). Teardown removes every namespace, process and /etc/netns entry, also on failure.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.netns import Twin, can_make_namespaces
from tests.cluster.topology import load

REPO = Path(__file__).resolve().parent.parent.parent
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"


def _pending() -> str | None:
    """Why kdns cannot run the twin yet, or None."""
    result = subprocess.run([sys.executable, "-m", "kdns", "register", "--help"], cwd=REPO, capture_output=True,
                            timeout=30, check=False)
    if result.returncode != 0:
        return "pending: `kdns register` is not a kdns command yet (kdns/cli.py)"
    import kdns.app

    if not hasattr(kdns.app, "Prober"):
        return "pending: kdns/app.py does not start the readiness Prober yet"
    return None


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Twin]:
    """The cluster, up: kdns healthy, then the app pods and the client started."""
    reason = can_make_namespaces() or _pending()
    if reason:
        pytest.skip(reason)
    built = Twin(load(COMPOSE, DOCKERFILE), tmp_path, REPO)
    try:
        built.up()
        for container in built.topology.containers:
            for dependency in container.depends_on:
                built.wait_healthy(dependency)
            built.start(container.name)
        yield built
    finally:
        problems = built.down()
        assert not problems, "the twin was not cleaned up: " + "; ".join(problems)
