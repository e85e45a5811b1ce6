"""Memory: what each registry object costs kdns, and the resident size of the scale cluster.

    python bench/memory.py                    # bytes per object, then RSS of the scale cluster
    python bench/memory.py --skip-scale       # bytes per object only (about a minute)

Bytes per object. Four clusters are written as manifests (100 ClusterIP Services per
namespace, each with three named ports and a selector; running, ready pods with an
address): the base (`--services` Services of `--pods` pods each), twice the Services,
twice the pods per Service, and the base plus as many pods again that no Service
selects. Each is loaded in a fresh process as `kdns serve` loads it
(`kdns.app.load_registry`, then `ClusterIndex.rebuild`, under `runtime.long_lived`) with
tracemalloc on; what is still allocated after the load, less what was before it, is the
live set. The differences between the clusters give, per object, everything kdns holds
for it (the object, its packed document, the store's and the DNS index's entries):

* a pod no Service selects (in workloads of `--pods` pods with equal labels, as the
  others): (loose - base) / pods;
* an endpoint (a pod's entry in its Service's EndpointSlice and the index's records of
  it): (twice the pods - base) / pods - a pod;
* a Service (with its EndpointSlice, its pods and endpoints not counted):
  (twice the Services - base) / Services - pods per Service x (a pod + an endpoint).

RSS grows by more than the live set: what a load frees (the documents it read) is
reused only in part. The per-object figures are the live set; the second part measures
the process as it runs.

Resident size. `bench/gen.py`'s scale preset (10,000 Services, 100,000 pods) is
generated (or `--cluster DIR` reused), and `kdns serve --workers 1` started on it three
times: `--ephemeral`, then with a new `--data-dir` (the first start saves everything),
then again on that saved state. VmRSS is read once the last pod's name answers (and the
process has been left a second), with VmHWM, the peak; again once the documents a load
from manifests leaves Deferred are packed (`kdns.app.pack_deferred`, after the first
answer: it makes their packed bytes while it frees what held them, so the start's peak
may come then); then, serving, after dnsperf has sent queries from the cluster's query
file (`queries.txt`) for `--serve-seconds`: what the replies kdns keeps ready and the
tables it makes on a name's first query add. CoreDNS's published sizing for the same cluster: (pods + services) /
1000 + 54 MB, 164 MB.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gen
from common import LOOPBACK, REPO, say
from measure import dnsperf
from procs import Child, cpus, free_port, memory_kib
from servers import wait_answer, wait_settled

PER_NAMESPACE = 100  # Services per namespace
# The tree this script is in, for the processes it starts.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def write_cluster(directory: Path, services: int, pods: int, loose: int) -> None:
    """`services` Services of `pods` ready pods each, and `loose` pods no Service selects."""
    directory.mkdir(parents=True, exist_ok=True)
    first = int(ipaddress.IPv4Address("10.128.0.10"))
    namespaces = max(1, -(-services // PER_NAMESPACE))
    texts: list[list[str]] = [[f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{n:03d}\n"]
                              for n in range(namespaces)]
    address = 0

    def pod(namespace: str, name: str, app: str) -> str:
        nonlocal address
        ip = ipaddress.IPv4Address(first + address)
        address += 1
        return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
                f"  labels:\n    app: {app}\nspec:\n  containers:\n    - name: main\n"
                f"      image: registry.example/app:1.0\nstatus:\n  phase: Running\n  podIP: {ip}\n"
                f"  podIPs:\n    - ip: {ip}\n  conditions:\n    - type: Ready\n      status: \"True\"\n")

    for s in range(services):
        namespace, name = f"ns-{s // PER_NAMESPACE:03d}", f"svc-{s:05d}"
        out = texts[s // PER_NAMESPACE]
        out.append(f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
                   f"  labels:\n    app: {name}\nspec:\n  selector:\n    app: {name}\n  ports:\n"
                   "    - name: http\n      port: 80\n    - name: metrics\n      port: 9090\n"
                   "    - name: dns\n      protocol: UDP\n      port: 53\n")
        out.extend(pod(namespace, f"{name}-{p}", name) for p in range(pods))
    for p in range(loose):  # in workloads of `pods` pods with equal labels, as the others
        n = p % namespaces
        texts[n].append(pod(f"ns-{n:03d}", f"loose-{p:06d}", f"loose-{p // max(pods, 1):05d}"))
    for n, documents in enumerate(texts):
        (directory / f"ns-{n:03d}.yaml").write_text("---\n".join(documents))


def measure(directory: Path) -> dict[str, float]:
    """In this process: load `directory` as kdns serve does; the live bytes and RSS growth."""
    import gc
    import tracemalloc

    from kdns.app import load_registry
    from kdns.authority.index import ClusterIndex
    from kdns.config import Settings
    from kdns.runtime import long_lived

    settings = Settings(manifests=(directory,), data_dir=None)
    gc.collect()
    rss_before = memory_kib_self()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    with long_lived():
        store, _ = load_registry(settings)
        index = ClusterIndex(settings)
        index.rebuild(store.objects(), store.resource_version)
    gc.collect()
    live = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"live_bytes": live, "rss_kib": memory_kib_self() - rss_before,
            "objects": sum(store.count(kind) for kind in ("Namespace", "Service", "Pod", "EndpointSlice"))}


def memory_kib_self() -> int:
    return memory_kib(os.getpid())["VmRSS"]


def per_object(workdir: Path, services: int, pods: int) -> dict[str, float]:
    """The four clusters, each measured in a fresh process; bytes per object."""
    variants = {"base": (services, pods, 0), "services": (2 * services, pods, 0),
                "pods": (services, 2 * pods, 0), "loose": (services, pods, services * pods)}
    live = {}
    for label, shape in variants.items():
        directory = workdir / label
        write_cluster(directory, *shape)
        result = subprocess.run([sys.executable, __file__, "--measure", str(directory)], capture_output=True,
                                text=True, cwd=REPO, env=ENV, timeout=900, check=True)
        live[label] = json.loads(result.stdout)
        say(f"{label}: {shape[0]:,} services x {shape[1]} pods + {shape[2]:,} loose pods: "
            f"{live[label]['live_bytes'] / 2**20:.1f} MiB live, RSS +{live[label]['rss_kib'] / 1024:.0f} MiB")
    count = services * pods
    pod = (live["loose"]["live_bytes"] - live["base"]["live_bytes"]) / count
    endpoint = (live["pods"]["live_bytes"] - live["base"]["live_bytes"]) / count - pod
    service = (live["services"]["live_bytes"] - live["base"]["live_bytes"]) / services - pods * (pod + endpoint)
    return {"service": service, "pod": pod, "endpoint": endpoint}


def scale_rss(cluster: Path, workdir: Path, serve_seconds: float) -> list[dict[str, object]]:
    """RSS of `kdns serve --workers 1` on the scale cluster: ephemeral, first durable start,
    restart; each after its first answer, and after `serve_seconds` of dnsperf."""
    spec = gen.PRESETS["scale"]
    last = next(s for s in reversed(gen.build(spec).services) if s.headless)
    name = f"{last.pods[-1].endpoint_name}.{last.fqdn}"
    data = workdir / "data"
    runs = [("--ephemeral", ["--ephemeral"]), ("--data-dir (new)", ["--data-dir", str(data)]),
            ("--data-dir (restart)", ["--data-dir", str(data)])]
    rows = []
    for label, flags in runs:
        port = free_port()
        argv = [sys.executable, "-m", "kdns", "serve", "--manifests", str(cluster / "manifests"),
                "--dns-address", LOOPBACK, "--dns-port", str(port), "--api-port", "0", "--workers", "1",
                "--upstream", "none", "--zones-dir", "none", *flags]
        child = Child("kdns", argv, workdir / "kdns.log", cwd=REPO, env=ENV)
        try:
            seconds, detail = wait_answer(child, port, name, "A", 300)
            if seconds is None:
                raise RuntimeError(f"kdns {label}: {detail}")
            time.sleep(1)
            memory = memory_kib(child.pid)
            if wait_settled(child, 300) is None:
                raise RuntimeError(f"kdns {label}: its documents were not packed within 300 s")
            packed = memory_kib(child.pid)
            served = None
            if serve_seconds > 0:
                run = dnsperf(port, cluster / "queries.txt", serve_seconds, cpus()[1], child.pid, workdir)
                served = memory_kib(child.pid)
                say(f"scale, {label}: served {run.get('completed') or 0:,.0f} queries")
        finally:
            child.stop()
        rows.append({"run": label, "answering_s": round(seconds, 1), "rss_mib": round(memory["VmRSS"] / 1024),
                     "peak_mib": round(memory["VmHWM"] / 1024),
                     "packed_rss_mib": round(packed["VmRSS"] / 1024), "packed_peak_mib": round(packed["VmHWM"] / 1024),
                     "served_rss_mib": round(served["VmRSS"] / 1024) if served else None,
                     "served_peak_mib": round(served["VmHWM"] / 1024) if served else None})
        say(f"scale, {label}: answering after {seconds:.1f} s, VmRSS {rows[-1]['rss_mib']} MiB, "
            f"VmHWM {rows[-1]['peak_mib']} MiB; packed: VmRSS {rows[-1]['packed_rss_mib']} MiB, VmHWM "
            f"{rows[-1]['packed_peak_mib']} MiB; serving: VmRSS {rows[-1]['served_rss_mib']} MiB, "
            f"VmHWM {rows[-1]['served_peak_mib']} MiB")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000, help="Services of the base cluster (default 1000)")
    parser.add_argument("--pods", type=int, default=10, help="pods per Service (default 10)")
    parser.add_argument("--skip-scale", action="store_true", help="no resident-size runs on the scale cluster")
    parser.add_argument("--cluster", type=Path, help="a `bench/gen.py --preset scale` directory to reuse")
    parser.add_argument("--serve-seconds", type=float, default=5,
                        help="dnsperf over the scale cluster's queries before the serving reading (default 5; 0: none)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # one variant, in its own process
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure)))
        return
    if args.serve_seconds > 0 and shutil.which("dnsperf") is None:
        parser.error("--serve-seconds needs dnsperf (or pass --serve-seconds 0)")
    workdir = Path(tempfile.mkdtemp(prefix="kdns-memory-"))
    try:
        costs = per_object(workdir, args.services, args.pods)
        rows = []
        if not args.skip_scale:
            cluster = args.cluster
            if cluster is None:
                cluster = workdir / "scale"
                say("generating the scale cluster")
                gen.generate(cluster, gen.PRESETS["scale"], zones=False)
            rows = scale_rss(cluster, workdir, args.serve_seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n`python bench/memory.py {' '.join(sys.argv[1:])}`".rstrip() + "\n")
    print("| object | bytes (live, tracemalloc) |\n| --- | --- |")
    for kind, value in costs.items():
        print(f"| {kind} | {value:,.0f} |")
    if rows:
        print("\n| kdns serve --workers 1, scale cluster | first answer | VmRSS | VmHWM (peak) "
              "| VmRSS, VmHWM once its documents are packed "
              f"| VmRSS, VmHWM after {args.serve_seconds:g} s of dnsperf |\n| --- | --- | --- | --- | --- | --- |")
        for row in rows:
            served = f"{row['served_rss_mib']} MiB, {row['served_peak_mib']} MiB" if row["served_rss_mib"] else "-"
            print(f"| {row['run']} | {row['answering_s']} s | {row['rss_mib']} MiB | {row['peak_mib']} MiB "
                  f"| {row['packed_rss_mib']} MiB, {row['packed_peak_mib']} MiB | {served} |")


if __name__ == "__main__":
    main()
