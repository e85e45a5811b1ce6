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


def test_dns_starts_without_the_api_modules() -> None:
    """What `kdns serve` runs before DNS answers imports neither aiohttp nor the API
    (kdns/app.py imports the API on a thread once DNS is bound, etcd's client only with
    --store etcd): more than half of a start's imports stay off the way to the first answer."""
    script = ("import sys, kdns.cli, kdns.app; print(sorted(m for m in sys.modules"
              " if m.split('.')[0] == 'aiohttp' or m.startswith(('kdns.api', 'kdns.etcd'))))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "[]"
