"""docs/architecture.md's picture of the data flow names code that exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


def _picture() -> str:
    text = DOC.read_text()
    start = text.index("```mermaid")
    return text[start : text.index("```", start + 3)]


def test_every_module_and_function_in_the_picture_exists() -> None:
    """Each dotted name in the mermaid picture resolves: `kdns.a.b.f` by import, and
    `Class.method` / `module.function` to a definition in kdns."""
    sources = "\n".join(path.read_text() for path in (ROOT / "kdns").rglob("*.py"))
    names = set(re.findall(r"\b(?:kdns\.)?[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", _picture()))
    assert len(names) > 20
    missing = []
    for name in sorted(names):
        if name.startswith("kdns."):
            parts = name.split(".")
            for cut in range(len(parts), 1, -1):
                try:
                    target: object = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                for attribute in parts[cut:]:
                    target = getattr(target, attribute, None)
                if target is None:
                    missing.append(name)
                break
            else:
                missing.append(name)
            continue
        last = name.rsplit(".", 1)[1]
        if not re.search(rf"^\s*(?:async def|def|class) {re.escape(last)}\b", sources, re.MULTILINE):
            missing.append(name)
    assert missing == []
