"""The layer contracts of pyproject.toml hold (import-linter)."""

import shutil
import subprocess
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
