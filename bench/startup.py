"""Start-up at scale, alone: from exec to the first answer with 10,000 services and 100,000
pods, from manifests and from the durable store, in alternate runs.

    python bench/startup.py                 # 3 runs of each, medians; about 2 minutes
    python bench/startup.py --runs 5 --out /tmp/startup
    python bench/startup.py --src /tmp/base --src .   # two trees, their starts alternated
    python bench/startup.py --from manifests --src /tmp/old --src .   # only from manifests (no journal saved)

* from manifests: `kdns serve --manifests DIR --ephemeral` reads, checks and admits every
  document (what `bench/run.py`'s scale row measures);
* from the durable store: `kdns serve --data-dir DIR` with an empty `--manifests`
  directory, the SQLite journal already holding the same cluster as objects made through
  the API (written once, before the runs, by this kdns's own registry code; a cluster
  applied from manifests would be pruned by a start without them: kdns.registry.declared).

kdns is pinned to one core (the harness to the other); each run gives the seconds from
exec to the first answer for the generator's last pod, and the CPU seconds kdns had used
by then, which a shared machine disturbs less, and its VmRSS then. With several --src
trees (before and after a change), each saves the journal with its own code and their
starts alternate, so that they share the machine's moods. Results go to
OUT/startup.json, by tree and source.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gen
from common import REPO, say
from procs import cpu_seconds, cpus, free_port, memory_kib
from servers import start_kdns, wait_answer

TIMEOUT_S = 180
SOURCES = ("manifests", "store")


def save_registry(manifests: Path, data_dir: Path, repo: Path = REPO) -> int:
    """Write the cluster of `manifests` into a journal in `data_dir` as kdns would have saved
    it had its objects been made through the API (no manifest-source annotation); returns
    how many objects it holds. With another `repo`, that tree's kdns writes it (in a
    process of its own: a journal is in the format of the kdns that wrote it)."""
    if repo.resolve() != REPO.resolve():
        done = subprocess.run([sys.executable, __file__, "--save-registry", str(manifests), str(data_dir), str(repo)],
                              check=True, capture_output=True, text=True)
        return int(done.stdout.split()[-1])
    return _save(manifests, data_dir, REPO)


def _save(manifests: Path, data_dir: Path, repo: Path) -> int:
    """save_registry with the kdns of `repo` (imported from there)."""
    sys.path.insert(0, str(repo))
    from kdns.config import Settings
    from kdns.registry import manifests as manifests_module
    from kdns.registry.sqlite import FILE_NAME, SqliteJournal
    from kdns.registry.store import Store

    if hasattr(manifests_module, "read_paths"):
        loaded = manifests_module.read_paths([manifests])
        if loaded.errors:
            raise SystemExit(f"startup: {loaded.errors[0]}")
        documents = loaded.documents
    else:  # a tree from before read_paths (89fd920): load_paths raises its first error
        documents, _ = manifests_module.load_paths([manifests])
    settings = Settings()
    store = Store(service_cidrs=settings.service_cidrs, node_port_range=settings.node_port_range)
    with store.transaction() as txn:
        txn.apply_documents(documents, owned=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    with SqliteJournal(data_dir / FILE_NAME) as journal:
        journal.replace_all(store.objects(), store.resource_version)
    return sum(1 for _ in store.objects())


def first_answer(manifests: Path, data_dir: Path | None, probe: str, cpu: str, log: Path,
                 repo: Path = REPO) -> dict[str, Any]:
    """One start of `repo`'s kdns: seconds to the first answer for `probe`, CPU seconds by
    then, RSS then."""
    port = free_port()
    # --api-port 0: the API on a free port, not on 8080, which another process may hold.
    extra = ["--upstream", "none", "--api-port", "0"] + (["--data-dir", str(data_dir)] if data_dir is not None else [])
    child = start_kdns(manifests, port, cpu, log, extra, durable=data_dir is not None, repo=repo)
    try:
        seconds, detail = wait_answer(child, port, probe, "A", TIMEOUT_S, watch_rss_kib=4 * 2**20)
        cpu_s = cpu_seconds(child.pid) if seconds is not None else None
        rss = memory_kib(child.pid).get("VmRSS") if seconds is not None else None
    finally:
        child.stop()
    if seconds is None:
        raise SystemExit(f"startup: {detail}")
    return {"seconds": round(seconds, 3), "cpu_s": cpu_s, "rss_mib": round(rss / 1024, 1) if rss else None}


def measure(workdir: Path, runs: int, server_cpu: str, trees: list[Path],
            sources: tuple[str, ...] = SOURCES) -> dict[str, Any]:
    """Generate the scale cluster under `workdir`, save it as a journal (with each tree's
    code), then `runs` starts of each tree from each source, alternating; the runs and
    their medians, by tree and source."""
    spec = gen.PRESETS["scale"]
    summary = gen.generate(workdir / "scale", spec, zones=False)
    manifests = workdir / "scale" / "manifests"
    last = next(s for s in reversed(gen.build(spec).services) if s.headless)
    probe = f"{last.pods[-1].endpoint_name}.{last.fqdn}"
    objects = 0
    for number, tree in enumerate(trees if "store" in sources else []):
        say(f"startup: saving the cluster as a journal in {workdir / f'data-{number}'} ({tree})")
        objects = save_registry(manifests, workdir / f"data-{number}", tree)
    empty = workdir / "no-manifests"
    empty.mkdir(exist_ok=True)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {str(tree): {source: [] for source in sources} for tree in trees}
    for run in range(runs):
        for number, tree in enumerate(trees):
            for source in sources:
                log = workdir / f"kdns-{number}-{source}-{run}.log"
                if source == "manifests":
                    one = first_answer(manifests, None, probe, server_cpu, log, tree)
                else:
                    one = first_answer(empty, workdir / f"data-{number}", probe, server_cpu, log, tree)
                say(f"startup, {tree}, from {source}: first answer after {one['seconds']:.2f} s, "
                    f"{one['cpu_s']:.2f} s CPU, {one['rss_mib']} MiB")
                results[str(tree)][source].append(one)
    medians = {
        tree: {source: {key: statistics.median(r[key] for r in found) for key in ("seconds", "cpu_s", "rss_mib")}
               for source, found in by_source.items()}
        for tree, by_source in results.items()
    }
    return {
        "services": summary["services_clusterip"] + summary["services_headless"],
        "pods": summary["pods"],
        "objects": objects,
        "probe": f"{probe} A",
        "runs": results,
        "median": medians,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kdns start-up at scale, from manifests and from the durable store")
    parser.add_argument("--runs", type=int, default=3, help="starts from each source (default 3)")
    parser.add_argument("--src", type=Path, action="append",
                        help="a kdns tree to start (repeat it to compare trees; default this one)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="where startup.json goes (default bench/out)")
    parser.add_argument("--from", dest="sources", choices=SOURCES, action="append",
                        help="start only from this source (repeatable; default both). --from manifests "
                             "compares trees whose journal formats differ: no journal is saved")
    parser.add_argument("--save-registry", nargs=3, type=Path, metavar=("MANIFESTS", "DATA_DIR", "TREE"),
                        help=argparse.SUPPRESS)  # save_registry for another tree, in its own process
    args = parser.parse_args(argv)
    if args.save_registry:
        print(_save(*args.save_registry))
        return 0
    trees = [tree.resolve() for tree in args.src or [REPO]]
    for tree in trees:  # (`--src .` from bench/ would measure whatever kdns the venv imports)
        if not (tree / "kdns" / "__init__.py").is_file():
            parser.error(f"--src {tree}: not a kdns tree (no kdns/__init__.py)")
    server_cpu, client_cpu, _ = cpus()
    os.sched_setaffinity(0, {int(client_cpu)})
    with tempfile.TemporaryDirectory(prefix="kdns-startup-") as workdir:
        result = measure(Path(workdir), args.runs, server_cpu, trees, tuple(args.sources or SOURCES))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.json").write_text(json.dumps(result, indent=1) + "\n")
    for tree, by_source in result["median"].items():
        for source, median in by_source.items():
            say(f"startup, {tree}, from {source}: median {median['seconds']:.2f} s to the first answer, "
                f"{median['cpu_s']:.2f} s CPU, {median['rss_mib']} MiB ({args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
