"""How a kdns process runs: its log lines and its event loop (`kdns serve` and its workers)."""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["long_lived", "loop_factory", "setup_logging"]


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


@contextlib.contextmanager
def long_lived() -> Iterator[None]:
    """Build, inside the block, what lives as long as the process (a registry load, an index).

    A big cluster makes millions of objects that all live on; the collector would walk them
    again and again for nothing (a third of a 100,000-pod load), so it is paused while they
    are built, and what was built is then moved out of its sight (gc.freeze). Records hold
    no cycles, so reference counting still frees those that are replaced later. An
    exception leaves nothing frozen. `gc.unfreeze` at stop hands them back.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
    gc.freeze()
