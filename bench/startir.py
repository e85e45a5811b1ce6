"""Start-up's steps in instructions, which a busy host does not change (callgrind).

    python bench/gen.py --preset scale --out /tmp/scale --no-zones
    mkdir /tmp/tenth && cp /tmp/scale/manifests/ns-0[0-9].yaml /tmp/tenth/   # a tenth of it
    python bench/startir.py /tmp/tenth --src /tmp/base --src .               # ~75 s a tree

bench/startphases.py times the same steps in CPU seconds, which move by 15-30 % from run
to run on a shared host; instructions repeat to 0.01 %. For each tree, four processes
under valgrind's callgrind, each going one step further through a start from the
manifests as `kdns serve --ephemeral` makes it (kdns/app.py `_load`, then the index):
imports (kdns.app), reading the manifests, applying them in one transaction (with its
commit), building the DNS index. A step's instructions are the difference between two of
them, so each includes freeing what it made when the process exits (a real start keeps
it). PYTHONHASHSEED is fixed and the tree compiled first, so runs compare. At the full
scale cluster a run takes about ten times as long, and the steps' shares differ (the
index's is larger). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import startphases
from common import REPO, say
from servers import installed

# (restore is startphases' step of a start from the durable store: nothing here)
STEPS = ("import", "read", "apply", "index")


def child(tree: Path, manifests: Path, until: str) -> None:
    """The start's steps up to `until`, in this process (under callgrind), as
    bench/startphases.py runs them."""
    sys.path.insert(0, str(tree))
    startphases.steps(manifests, None, until)


def instructions(tree: Path, manifests: Path, until: str) -> int:
    """Instructions of a process going through the steps up to `until` (callgrind's count)."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
            "--child", str(tree), str(manifests), until]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True, timeout=3600)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"startir: no instruction count from valgrind: {done.stderr[-500:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifests", type=Path, nargs="?",
                        help="a directory of manifests (e.g. a tenth of the scale preset's)")
    parser.add_argument("--src", type=Path, action="append", help="a kdns tree (repeat to compare; default this one)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # TREE MANIFESTS UNTIL
    args = parser.parse_args(argv)
    if args.child:
        tree, manifests, until = args.child
        child(Path(tree), Path(manifests), until)
        return 0
    if args.manifests is None:
        parser.error("the manifests directory is required")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    trees = [tree.resolve() for tree in args.src or [REPO]]
    for tree in trees:
        if not (tree / "kdns" / "__init__.py").is_file():
            parser.error(f"--src {tree}: not a kdns tree (no kdns/__init__.py)")
    for tree in trees:
        counts = [instructions(installed(tree), args.manifests.resolve(), until) for until in STEPS]
        steps = [counts[0], *(after - before for before, after in itertools.pairwise(counts))]
        say(f"startir, {tree}: " + ", ".join(f"{name} {count / 1e6:,.1f} M" for name, count in zip(STEPS, steps, strict=True))
            + f" instructions (all {counts[-1] / 1e6:,.1f} M)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
