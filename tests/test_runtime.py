"""kdns.runtime: what a long-lived build gives back to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from kdns import runtime

# In a process of its own, so that its heap holds only what it makes: 128 MiB of blocks
# big enough to come from malloc (over CPython's 512-byte small-object limit), all freed
# but every 64th, which holds the heap's pages in place as a load's live objects do.
_FREED_BETWEEN_LIVE_BLOCKS = textwrap.dedent("""
    from kdns.runtime import give_back_memory

    def rss_kib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    blocks = [bytes(1024) + bytes([i % 256]) for i in range(128 * 1024)]
    kept = blocks[::64]
    del blocks
    before = rss_kib()
    print(give_back_memory(), before, rss_kib(), len(kept))
""")


@pytest.mark.skipif(runtime._MALLOC_TRIM is None, reason="no malloc_trim in this C library (not glibc)")
def test_give_back_memory_returns_the_pages_freed_between_live_blocks() -> None:
    out = subprocess.run([sys.executable, "-c", _FREED_BETWEEN_LIVE_BLOCKS], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    called, before, after = out[0], int(out[1]), int(out[2])
    assert called == "True"
    # About 126 MiB were freed; glibc kept them resident until the call.
    assert before - after > 64 * 1024, (before, after)



# In a process of its own: an 8 MiB block mapped and freed raises glibc's moving threshold
# to 8 MiB, as a load's first freed table does; then a 1 MiB block comes from the heap,
# unless map_big_blocks fixed the threshold first. mallinfo2's hblkhd: bytes mapped on their own.
_MAPPED_AFTER_A_BIG_FREE = textwrap.dedent("""
    import ctypes, sys
    from kdns.runtime import map_big_blocks

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
            "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    big = bytearray(8 * 1024 * 1024)
    del big
    fixed = map_big_blocks() if sys.argv[1] == "fixed" else None
    before = libc.mallinfo2().hblkhd
    block = bytearray(1024 * 1024)
    print(fixed, libc.mallinfo2().hblkhd - before, len(block))
""")


def _mallinfo2() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(runtime._MALLOPT is None or not _mallinfo2(), reason="no mallopt/mallinfo2 (not glibc 2.33+)")
def test_map_big_blocks_maps_them_even_after_a_big_block_was_freed() -> None:
    def mapped(how: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _MAPPED_AFTER_A_BIG_FREE, how], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
        return out[0], int(out[1])

    assert mapped("moving") == ("None", 0)  # glibc's default: from the heap
    called, grown = mapped("fixed")
    assert called == "True"
    assert grown >= 1024 * 1024 > runtime.MAP_BLOCKS_FROM
