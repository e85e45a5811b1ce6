"""How a kdns process runs: its log lines and its event loop (`kdns serve` and its workers)."""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["loop_factory", "setup_logging"]


class _Formatter(logging.Formatter):
    """`kdns: message` for information, `kdns: warning: message` for the rest."""

    def __init__(self, prefix: str) -> None:
        super().__init__("%(message)s")
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno == logging.INFO:
            return f"{self.prefix}: {text}"
        return f"{self.prefix}: {record.levelname.lower()}: {text}"


def setup_logging(level: str | int, prefix: str = "kdns") -> None:
    """Log to stderr from `level` up, each line starting with `prefix`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(prefix))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)


def loop_factory() -> Any:
    """uvloop's loop where the kdns[speed] extra installed it; asyncio's otherwise (None)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
