"""The layer contracts of pyproject.toml hold (import-linter)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_layers_are_kept() -> None:
    """Pure layers import no I/O and no layer imports one above it."""
    command = shutil.which("lint-imports")
    if command is None:
        pytest.skip("import-linter is not installed (pip install '.[test]')")
    result = subprocess.run(
        [command], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# Imported only when needed: the API and /debug/explain's module (on a thread once DNS is
# bound), etcd's client (--store etcd), dnspython and the zone parser (zone files), the
# worker pool (--workers), the service proxy (--proxy).
_NOT_BEFORE_DNS = ("kdns.api", "kdns.etcd", "kdns.pipeline.explain", "kdns.authority.zone", "kdns.replication",
                   "kdns.proxy")


def test_dns_starts_without_the_api_modules() -> None:
    """What `kdns serve` runs before DNS answers imports neither aiohttp nor the API,
    nor dnspython when there are no zone files, nor what only some options use: more than
    half of a start's imports stay off the way to the first answer."""
    script = ("import sys, kdns.cli, kdns.app; print(sorted(m for m in sys.modules"
              f" if m.split('.')[0] in ('aiohttp', 'dns') or m.startswith({_NOT_BEFORE_DNS!r})))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "[]"
