"""Where start-up's CPU goes, step by step: the CPU seconds (utime+stime) of each step of a
start at scale, in one process per start, as `kdns serve` runs them (kdns/app.py `_load`
and the index build): the imports, reading the manifests, restoring the journal, applying
the manifests, building the index.

    python bench/startphases.py                       # this tree, 3 starts of each source
    python bench/startphases.py --src /tmp/base --src . --runs 5
    python bench/startphases.py --readers             # PyYAML and the block reader, per document

The sources are those of bench/startup.py: the scale preset's manifests (`--ephemeral`),
and the durable store (the journal holding the same cluster, no manifests), each tree's
journal saved with its own code. Starts alternate between the trees; each is pinned to
the server core (bench/procs.py) and prints its steps; the medians come last.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gen
import startup
from common import REPO, say
from procs import cpus
from servers import installed

STEPS = ("import", "read", "restore", "apply", "index")


def steps(manifests: Path, data_dir: Path | None, until: str | None = None) -> dict[str, float]:
    """One start's steps, in this process (whose sys.path finds the kdns to measure), up
    to `until` (one of STEPS; default all: bench/startir.py stops at each in turn). A
    tree from before kdns.registry.declared (89fd920, the issue's reference) has its steps
    as its app.py ran them: load_paths, then restore and apply_documents, the collector
    paused throughout."""
    began = time.process_time()
    import kdns.app  # noqa: F401  (what a start imports: the API, the wire, ...)
    from kdns.authority.index import ClusterIndex
    from kdns.config import Settings
    from kdns.registry import manifests as manifests_module
    from kdns.registry import sqlite
    from kdns.registry.store import Store

    try:
        from kdns.registry import declared
    except ImportError:
        declared = None  # type: ignore[assignment]  # an older tree: see above
    mark = time.process_time()
    took = {"import": mark - began}
    if until == "import":
        return took

    def step(name: str) -> None:
        nonlocal mark
        now = time.process_time()
        took[name], mark = now - mark, now

    settings = Settings(manifests=(manifests,), data_dir=data_dir)
    with _long_lived():
        if declared is not None:
            documents = manifests_module.read_paths(settings.manifests, declared.packer()).documents
        else:
            documents, _ = manifests_module.load_paths(settings.manifests)
        step("read")
        if until == "read":
            return took
        store = Store(service_cidrs=settings.service_cidrs, node_port_range=settings.node_port_range)
        if data_dir is not None:
            with sqlite.SqliteJournal(data_dir / sqlite.FILE_NAME) as journal:
                saved = sqlite.load(journal.path)
                if isinstance(saved, tuple):  # an older tree: (documents, version)
                    store.restore(saved[0], saved[1], owned=True)
                else:
                    store.restore(saved.documents, saved.version, owned=True, typed=saved.objects, derived=saved.derived)
        step("restore")
        if until == "restore":
            return took
        with store.transaction() as txn:
            if declared is not None:
                declared.apply(txn, documents, owned=True)
            else:
                txn.apply_documents(documents, owned=True)
        step("apply")
        if until == "apply":
            return took
        ClusterIndex(settings).rebuild(store.objects(), store.resource_version)
        step("index")
    return took


def _long_lived() -> contextlib.AbstractContextManager[None]:
    """kdns.runtime.long_lived, or for a tree without it what its app did: the collector
    paused, then what was built frozen."""
    try:
        from kdns.runtime import long_lived
    except ImportError:
        return _paused_collector()
    return long_lived()  # type: ignore[no-any-return]


@contextlib.contextmanager
def _paused_collector() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
    gc.freeze()


def readers(manifests: Path, files: int, runs: int) -> dict[str, float]:
    """The CPU microseconds a document of the first `files` manifest files takes to read:
    PyYAML on libyaml with kdns's loader, and kdns's block reader building every document
    or leaving those its plans build unbuilt (as a start-up reads them); medians of
    `runs`, each with a new reader (its shapes learnt anew, as in a new process)."""
    import yaml

    from kdns.registry import blockyaml
    from kdns.registry.manifests import _Loader

    texts = [path.read_text(encoding="utf-8") for path in sorted(manifests.glob("*.yaml"))[:files]]
    count = sum(text.count("\n---\n") + 1 for text in texts)
    found: dict[str, list[float]] = {"pyyaml": [], "block reader": [], "block reader, unbuilt": []}
    for _ in range(runs):
        began = time.process_time()
        for text in texts:
            list(yaml.load_all(text, Loader=_Loader))
        found["pyyaml"].append(time.process_time() - began)
        for name, build in (("block reader", True), ("block reader, unbuilt", False)):
            reader = blockyaml.Reader(_Loader)
            began = time.process_time()
            for text in texts:
                reader.load_all(text, [], build=build)
            found[name].append(time.process_time() - began)
    return {name: round(statistics.median(times) / count * 1e6, 1) for name, times in found.items()}


def one(tree: Path, manifests: Path, data_dir: Path | None, server_cpu: str) -> dict[str, float]:
    """A start of `tree`'s kdns in a process of its own, pinned to `server_cpu`."""
    argv = ["taskset", "-c", server_cpu, sys.executable, __file__, "--one", str(installed(tree)), str(manifests)]
    done = subprocess.run(argv + ([str(data_dir)] if data_dir is not None else []),
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kdns start-up at scale, step by step (CPU seconds)")
    parser.add_argument("--runs", type=int, default=3, help="starts of each tree from each source (default 3)")
    parser.add_argument("--src", type=Path, action="append", help="a kdns tree (repeat to compare; default this one)")
    parser.add_argument("--one", nargs="+", type=Path, help=argparse.SUPPRESS)  # TREE MANIFESTS [DATA_DIR]
    parser.add_argument("--readers", action="store_true",
                        help="only the YAML reading: PyYAML and the block reader, in microseconds of CPU a "
                             "document, on 10 of the scale preset's files (this tree)")
    args = parser.parse_args(argv)
    if args.readers:
        with tempfile.TemporaryDirectory(prefix="kdns-startphases-") as name:
            gen.generate(Path(name) / "scale", gen.PRESETS["scale"], zones=False)
            found = readers(Path(name) / "scale" / "manifests", 10, args.runs)
        say("startphases, readers, us of CPU a document: " + ", ".join(f"{k} {v}" for k, v in found.items()))
        return 0
    if args.one:
        tree, manifests, *data_dir = args.one
        sys.path.insert(0, str(tree))
        print(json.dumps(steps(manifests, data_dir[0] if data_dir else None)))
        return 0
    trees = [tree.resolve() for tree in args.src or [REPO]]
    for tree in trees:  # (`--src .` from bench/ would measure whatever kdns the venv imports)
        if not (tree / "kdns" / "__init__.py").is_file():
            parser.error(f"--src {tree}: not a kdns tree (no kdns/__init__.py)")
    server_cpu, client_cpu, _ = cpus()
    os.sched_setaffinity(0, {int(client_cpu)})
    found: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="kdns-startphases-") as name:
        workdir = Path(name)
        gen.generate(workdir / "scale", gen.PRESETS["scale"], zones=False)
        manifests, empty = workdir / "scale" / "manifests", workdir / "no-manifests"
        empty.mkdir()
        for number, tree in enumerate(trees):
            startup.save_registry(manifests, workdir / f"data-{number}", tree)
        for _ in range(args.runs):
            for number, tree in enumerate(trees):
                for source, where, data_dir in (("manifests", manifests, None),
                                                ("store", empty, workdir / f"data-{number}")):
                    took = one(tree, where, data_dir, server_cpu)
                    found.setdefault((str(tree), source), []).append(took)
                    say(f"startphases, {tree}, from {source}: " + " ".join(f"{s} {took[s]:.2f}" for s in STEPS))
    for (tree, source), runs in found.items():
        medians: dict[str, Any] = {s: round(statistics.median(r[s] for r in runs), 2) for s in STEPS}
        say(f"startphases, {tree}, from {source}, medians of {len(runs)}: "
            + " ".join(f"{s} {medians[s]:.2f}" for s in STEPS) + f" (s CPU; total {sum(medians.values()):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
