"""How a kdns process runs: its log lines and its event loop (`kdns serve` and its workers)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "MAP_BLOCKS_FROM", "SERVING_THRESHOLDS", "collect_rarely", "give_back_memory", "long_lived", "loop_factory",
    "map_big_blocks", "setup_logging",
]


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

    What the build made and dropped (the documents it read, the rows it restored) is
    then given back to the system (`give_back_memory`): else the process would stay as
    big as the build's peak for as long as it runs. Its big blocks are mapped on their
    own from the start (`map_big_blocks`), which lowers that peak.
    """
    map_big_blocks()
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
    gc.freeze()
    give_back_memory()


def _libc_function(name: str, *argtypes: type[ctypes._SimpleCData[Any]]) -> Callable[..., int] | None:
    """The C library's function `name` (returning an int), None where it has none (glibc's
    malloc_trim and mallopt: not musl's or macOS's).

    Found among the symbols the process has loaded (dlopen(NULL)), the C library's with
    them: ctypes.util.find_library would run `ldconfig -p` in a child process to find its
    file, at each call, and its import costs a start 5 ms."""
    try:
        function = ctypes.CDLL(None)[name]
    except (OSError, AttributeError, TypeError):  # (TypeError: no dlopen(NULL) on Windows)
        return None
    function.argtypes, function.restype = list(argtypes), ctypes.c_int
    return function


_MALLOC_TRIM = _libc_function("malloc_trim", ctypes.c_size_t)

# mallopt's parameter for the size from which glibc maps a block of its own (malloc.h).
_M_MMAP_THRESHOLD = -3
# Blocks from this size on are mapped on their own. Not glibc's initial 128 KiB: each
# mapped block's pages are new, zeroed by the kernel as first touched, and from 128 KiB a
# load at scale took 40,000 more page faults than with the moving threshold (0.09 s of
# its 2.8 s of CPU); from 512 KiB 15,000 (within noise), for the same peak.
MAP_BLOCKS_FROM = 512 * 1024


_MALLOPT = _libc_function("mallopt", ctypes.c_int, ctypes.c_int)


def map_big_blocks() -> bool:
    """Have glibc map every block of MAP_BLOCKS_FROM bytes or more on its own, for good
    (mallopt M_MMAP_THRESHOLD); whether there was such a call to make.

    Why: by default the threshold moves. Once a mapped block is freed, glibc raises it to
    that block's size (up to 32 MiB), so the next big blocks come from the heap instead.
    A load's big blocks are mostly dict and list tables that grow by doubling: each new
    table leaves the one before it free in the heap, too small for the next, and the heap
    grows by their sum (the index rebuild's 12 MiB of heap at scale). Mapped, a table
    that is let go is handed back at once. A fixed threshold turns the moving one off
    (mallopt(3)). The scale cluster's load and index in one process (`app._load`, then
    `ClusterIndex.rebuild`, pinned to a core, peak ru_maxrss): 270 -> 267 MiB, CPU the same
    within noise (2.81 against 2.82 s, medians of 6 alternate runs).
    """
    if _MALLOPT is None:
        return False
    return bool(_MALLOPT(_M_MMAP_THRESHOLD, MAP_BLOCKS_FROM))


def give_back_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc `malloc_trim(0)`); whether
    there was such a call to make.

    Why it is needed: CPython takes objects over 512 bytes (a packed document, a row read
    from the journal, a big dict's table) from malloc, and glibc returns free memory to
    the system by itself only from the top of its heap, above the last block in use. A
    load frees most of what it read between blocks that live on, so those pages stay
    resident, unused, for the life of the process. malloc_trim (since glibc 2.8) also
    releases every whole free page inside the heap (madvise MADV_DONTNEED), which is what
    gives them back; the addresses stay reserved and are reused as the heap grows again.
    CPython's own arenas for small objects are not malloc's: they go back to the system
    only when wholly empty, which this does not change.
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


# The collector's thresholds while kdns serves: CPython's (700, 10, 10) with its oldest
# generation collected after 100 collections of the middle one instead of 10. What is
# made after start-up and lives on (the event log's old objects, the ready replies) ends
# in the oldest generation, so a full collection walks all of it: 33-105 ms of the event
# loop's CPU under writes, for almost nothing (567 objects in the 4 full collections since
# start, where the young ones reclaimed 37,000). A tenth as many of them hold DNS up a
# tenth as often; the few cycles that reach the oldest generation wait longer. The young
# thresholds stay: a first one of 3,000 made each young collection walk more (the longest
# 14 and 45 ms against 3 and 19). Figures, command: bench/README.md ("... the collector").
SERVING_THRESHOLDS = (700, 10, 100)


def collect_rarely() -> Callable[[], None]:
    """Set the collector's thresholds to SERVING_THRESHOLDS; returns the call that puts
    back those it had (when kdns stops)."""
    before = gc.get_threshold()
    gc.set_threshold(*SERVING_THRESHOLDS)
    return lambda: gc.set_threshold(*before)
