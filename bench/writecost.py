"""kdns CPU per write: what one readiness flip costs the server's process.

    python bench/writecost.py                          # this tree: 2,000 flips, 5 runs
    python bench/writecost.py --src /tmp/old --src .   # A/B: two kdns trees, runs alternated
    python bench/writecost.py --profile /tmp/flips     # also py-spy's stacks of one run (/tmp/flips.<tree>.txt)
    python bench/writecost.py --registry --src /tmp/old --src .   # the registry's share alone, in-process
    python bench/writecost.py --rate 100 --flips 500   # flips 10 ms apart instead of back to back

kdns serves the bench cluster (bench/gen.py, seed 1) with its registry in memory
(`--ephemeral`; `--data-dir` to journal to a fresh directory instead), no DNS load. After
a warm-up of `--warmup` flips, one client sends `--flips` readiness flips back to back,
each the merge PATCH of `/api/v1/namespaces/NS/pods/NAME/status` that bench/writes.py's
Writer sends (a kubelet reporting Ready), each on its own connection as that Writer does,
and waits for each reply. The figure is the kdns process's CPU time (utime + stime from
/proc, all threads) over those flips divided by their count: the request's parsing, patch,
validation, admission, commit, EndpointSlice update, watch fan-out, reply, journal and
DNS index update. `--rate` paces the flips (100: one every 10 ms, as bench/churn.py's
100 writes a second) instead: each then finds the process's code and data cold again
(the loop slept, or answered DNS, in between), and costs more than twice as much as
back to back (1.76 against 0.73 ms, bench/README.md "What one write costs"). Per tree the median of `--repeats` runs is printed, and the same split
by thread (/proc/PID/task: the event loop's thread, the main one, and the others, the
journal's writer among them), user and system time apart; nothing here is a test.

`--registry` measures the registry's share of a flip alone, in a process of its own per
tree and run (PYTHONPATH the tree, trees alternated): the same PATCH's merge applied to
the stored pod and committed (`store.transaction()`: admission, the EndpointSlice
controller, the commit) with the DNS index subscribed, no HTTP, no other load; CPU time
(`time.process_time`) per flip, for the bench cluster's pods (`--flips`) and for the pods
of one 1,000-pod headless Service (10 EndpointSlices, 900 flips).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gen
from common import LOOPBACK
from procs import cpu_seconds, free_port, thread_cpu
from servers import wait_answer, wait_settled
from writes import Writer, start, wait_api

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BACK_TO_BACK = 1e9  # writes a second: the Writer's pacing never waits


def flips(api: str, pods: list[gen.Pod], count: int, first: int, rate: float = BACK_TO_BACK) -> None:
    writer = Writer(api, pods, rate, count, first)
    writer.run()
    if writer.errors or len(writer.acknowledged) != count:
        raise SystemExit(f"writecost: {count - len(writer.acknowledged)} flips failed: {writer.errors[:3]}")


def one_run(src: Path, args: argparse.Namespace, work: Path, pods: list[gen.Pod], probe: dict,
            profile: Path | None) -> dict[str, float]:
    """kdns CPU milliseconds per flip, one fresh kdns from `src`: in all (`total`), and
    user and system time of the event loop's thread (the main one) and of the others."""
    port, api_port = free_port(), free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="kdns-writecost-", dir=args.data_parent)) if args.data_dir else None
    kdns = start(src, work / "cluster" / "manifests", data_dir, port, api_port, args.cpu, work / "kdns.log")
    try:
        started, detail = wait_answer(kdns, port, probe["name"], probe["type"], 120)
        if started is None:
            raise SystemExit(f"writecost: kdns did not answer: {detail}\n{kdns.log_tail()}")
        # The registry steady (start-up's deferred packing done, which would run between
        # the flips: DNS is quiet here) and the API listening (DNS may answer first).
        if wait_settled(kdns) is None:
            raise SystemExit(f"writecost: kdns's start-up packing did not end\n{kdns.log_tail()}")
        api = f"http://{LOOPBACK}:{api_port}"
        wait_api(api, kdns)
        flips(api, pods, args.warmup, 0)
        spy = None
        if profile is not None:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(kdns.pid), "--rate", "500", "--format", "raw",
                                    "--output", str(profile)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        before, threads_before = cpu_seconds(kdns.pid), thread_cpu(kdns.pid)
        flips(api, pods, args.flips, args.warmup, args.rate)
        spent, threads = cpu_seconds(kdns.pid) - before, thread_cpu(kdns.pid)
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes its stacks and exits
            spy.wait(30)
        per_flip = 1000 / args.flips
        result = {"total": spent * per_flip, "loop_user": 0.0, "loop_system": 0.0,
                  "others_user": 0.0, "others_system": 0.0}
        for tid, (user, system) in threads.items():
            old_user, old_system = threads_before.get(tid, (0.0, 0.0))
            which = "loop" if tid == kdns.pid else "others"
            result[f"{which}_user"] += (user - old_user) * per_flip
            result[f"{which}_system"] += (system - old_system) * per_flip
        return result
    finally:
        kdns.stop()
        if data_dir is not None:
            shutil.rmtree(data_dir)


def registry_flips(manifests: Path, flips: int) -> dict[str, float]:
    """In this process (kdns from PYTHONPATH): µs of CPU per flip committed to the registry
    loaded from `manifests` with the DNS index subscribed, and per flip of a pod of a
    1,000-pod headless Service added to it."""
    import gc

    from kdns.api.patch import merge_patch
    from kdns.app import load_registry
    from kdns.authority.index import ClusterIndex
    from kdns.config import Settings
    from kdns.registry.manifests import to_manifest

    settings = Settings(manifests=(manifests,))
    store, _ = load_registry(settings)
    big: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "big"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "big"},
         "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}},
    ]
    for i in range(1000):
        ip = f"10.250.{i // 250}.{i % 250 + 1}"
        big.append({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": f"web-{i}", "namespace": "big", "labels": {"app": "web"}},
                    "spec": {"hostname": f"web-{i}", "subdomain": "web", "containers": [{"name": "main", "image": "x"}]},
                    "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                               "conditions": [{"type": "Ready", "status": "True"}]}})
    with store.transaction() as txn:
        for doc in big:
            txn.create(doc)
    index = ClusterIndex(settings)
    index.rebuild(store.objects(), store.resource_version)
    store.subscribe(index.apply)
    gc.freeze()  # as kdns.runtime.long_lived leaves a loaded registry
    bench_pods = [(p.namespace, p.name) for p in gen.build(gen.PRESETS["bench"]).pods if p.hostname]
    big_pods = [("big", f"web-{i}") for i in range(300)]

    def flip(pods: list[tuple[str, str]], n: int) -> None:
        namespace, name = pods[n % len(pods)]
        ready = "False" if (n // len(pods)) % 2 == 0 else "True"
        live = to_manifest(store.get("Pod", namespace, name))
        with store.transaction() as txn:
            txn.update(merge_patch(live, {"status": {"conditions": [{"type": "Ready", "status": ready}]}}))

    result = {}
    for label, pods, count in (("bench", bench_pods, flips), ("big", big_pods, 900)):
        for n in range(200):  # warm-up: every flip after it is a change
            flip(pods, n)
        begin = time.process_time()
        for n in range(200, 200 + count):
            flip(pods, n)
        result[label] = 1e6 * (time.process_time() - begin) / count
    return result


def registry_runs(sources: list[Path], args: argparse.Namespace, manifests: Path) -> int:
    runs: dict[Path, list[dict[str, float]]] = {src: [] for src in sources}
    for repeat in range(args.repeats):
        for src in sources:
            child = subprocess.run(
                ["taskset", "-c", args.cpu, sys.executable, str(HERE / "writecost.py"), "--registry-child",
                 str(manifests), "--flips", str(args.flips)],
                env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True, check=True)
            runs[src].append(json.loads(child.stdout))
            print(f"writecost: {src} run {repeat + 1}: {runs[src][-1]}", file=sys.stderr)
    print(f"`python bench/writecost.py {' '.join(sys.argv[1:])}` (in-process, CPU {args.cpu}; median of {args.repeats})\n")
    print("| tree | registry µs per flip, bench cluster | runs | 1,000-pod Service | runs |")
    print("| --- | ---: | --- | ---: | --- |")
    for src, values in runs.items():
        cells = []
        for label in ("bench", "big"):
            series = [v[label] for v in values]
            cells += [f"{statistics.median(series):.0f}", ", ".join(f"{v:.0f}" for v in series)]
        print(f"| {src} | {' | '.join(cells)} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", type=Path, help="a kdns source tree (repeat for A/B; default this one)")
    parser.add_argument("--flips", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rate", type=float, default=BACK_TO_BACK,
                        help="flips a second, paced (default: back to back); see above")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu", default=str(max(os.sched_getaffinity(0))), help="the CPU kdns is pinned to")
    parser.add_argument("--data-dir", action="store_true", help="journal to disk (--data-dir) instead of --ephemeral")
    parser.add_argument("--data-parent", default=str(REPO / "bench" / "out"), help="where journal directories go")
    parser.add_argument("--profile", type=Path, help="py-spy stacks of each tree's first run to PROFILE.<tree>.txt")
    parser.add_argument("--registry", action="store_true", help="the registry's share alone, in-process (see above)")
    parser.add_argument("--registry-child", type=Path, help=argparse.SUPPRESS)  # one --registry run: MANIFESTS
    args = parser.parse_args(argv)
    if args.registry_child is not None:
        print(json.dumps(registry_flips(args.registry_child, args.flips)))
        return 0
    sources = [s.resolve() for s in (args.src or [REPO])]
    Path(args.data_parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kdns-writecost-") as tmp:
        work = Path(tmp)
        spec = gen.PRESETS["bench"]
        model = gen.generate(work / "cluster", spec, zones=False)
        pods = [p for p in gen.build(spec).pods if p.hostname]
        probe = next(s for s in model["sample"] if s["rcode"] == "NOERROR" and s["answer"])
        if args.registry:
            return registry_runs(sources, args, work / "cluster" / "manifests")
        runs: dict[Path, list[dict[str, float]]] = {src: [] for src in sources}
        for repeat in range(args.repeats):
            for n, src in enumerate(sources):
                profile = None
                if args.profile is not None and repeat == 0:
                    profile = args.profile.with_name(f"{args.profile.name}.{n}-{src.name or 'root'}.txt")
                run = one_run(src, args, work, pods, probe, profile)
                runs[src].append(run)
                print(f"writecost: {src} run {repeat + 1}: {run['total']:.3f} ms CPU per flip", file=sys.stderr)
    pace = "back to back" if args.rate == BACK_TO_BACK else f"{args.rate:g} a second"
    print(f"`python bench/writecost.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
          f"({args.flips} flips after {args.warmup}, {pace}, kdns on CPU {args.cpu}, "
          f"{'journal on disk' if args.data_dir else '--ephemeral'}; median of {args.repeats})\n")
    print("| tree | kdns CPU ms per flip (median) | runs | loop thread: user | system | other threads: user | system |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for src, group in runs.items():
        totals = [run["total"] for run in group]
        parts = [statistics.median(run[part] for run in group)
                 for part in ("loop_user", "loop_system", "others_user", "others_system")]
        print(f"| {src} | {statistics.median(totals):.3f} | {', '.join(f'{v:.2f}' for v in totals)} | "
              + " | ".join(f"{v:.3f}" for v in parts) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
