"""Benchmark: kdns replicas on etcd (`--store etcd://...`), the four targets of issue 18.

    python bench/etcd.py [--repeats 3] [--out bench/out/etcd.json]

Starts a three-member etcd cluster (Debian's etcd-server) on loopback ports and kdns
replicas on it, every process stopped by its PID at the end, and measures:

1. visibility: services created through replica A at 100 writes/s; for each, the time
   from sending the write until replica B's DNS answers the name (p50, p99; B is asked
   every millisecond), and until A acknowledged it;
2. handover: kill -9 the replica holding the controller lease, then close the port a
   pod's readiness probe connects to; the time until the pod leaves the survivor's DNS,
   against the lease duration plus the probe's bound (period x failureThreshold + timeout);
3. durability: 200 pod creations through two replicas with one etcd member killed
   (SIGKILL) after 50; how many acknowledged creations each replica then serves;
4. throughput: dnsperf against one kdns on etcd and one on SQLite (the same cluster),
   alternately, each pinned to core 1 with dnsperf on core 0; the ratio of the medians.

Figures are medians over --repeats runs. The machine may be shared: read the ratios.
Nothing here is a test; nothing asserts a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.kubeapi import Client  # noqa: E402
from tests.etcd.conftest import EtcdCluster, Member, free_port  # noqa: E402
from tests.etcd.test_replicas import pod, service  # noqa: E402

LEASE = 3  # --leader-elect-lease-duration for the handover runs
PROBE_BOUND = 1 * 1 + 1  # periodSeconds x failureThreshold + timeoutSeconds of the probe
_SERVING = re.compile(r"serving DNS on 127\.0\.0\.1:(\d+) .*")
_API = re.compile(r"serving the API on (http://127\.0\.0\.1:\d+)")


class Replica:
    """One `kdns serve` process, stopped by its PID."""

    def __init__(self, workdir: Path, name: str, *args: str, cpu: str | None = None) -> None:
        self.log = workdir / f"{name}.log"
        argv = [sys.executable, "-m", "kdns", "serve", "--dns-port", "0", "--api-port", "0", "--upstream", "none",
                "--zones-dir", "none", *args]
        if cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        self.port, self.api = 0, ""
        while time.monotonic() < deadline and not (self.port and self.api):
            text = self.log.read_text()
            if (match := _SERVING.search(text)) is not None:
                self.port = int(match[1])
            if (match := _API.search(text)) is not None:
                self.api = match[1]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not (self.port and self.api):
            self.stop()
            raise RuntimeError(f"kdns {name} did not start:\n{self.log.read_text()[-2000:]}")
        self.client = Client(self.api, workdir)

    def answers(self, name: str) -> set[str]:
        reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=self.port, timeout=1)
        if reply.rcode() != dns.rcode.NOERROR:
            return set()
        return {item.address for rrset in reply.answer for item in rrset if rrset.rdtype == 1}

    def leads(self) -> bool:
        return "controller lease taken" in self.log.read_text()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_cluster(workdir: Path, *extra: str) -> EtcdCluster:
    """Three members on free loopback ports; `extra`: more etcd flags."""
    workdir.mkdir(parents=True, exist_ok=True)
    members = [Member(f"m{i}", free_port(), free_port(), workdir / f"m{i}", workdir / f"m{i}.log") for i in range(3)]
    cluster = EtcdCluster(members, ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in members), extra)
    for index in range(3):
        cluster.start(index)
    cluster.wait_healthy()
    return cluster


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def visibility(workdir: Path, writes: int = 300, rate: float = 100.0) -> dict[str, float]:
    """Target 1 (see the module's docstring)."""
    cluster = start_cluster(workdir / "vis")
    workdir.mkdir(parents=True, exist_ok=True)
    a = Replica(workdir, "vis-a", "--store", cluster.store_flag)
    b = Replica(workdir, "vis-b", "--store", cluster.store_flag)
    try:
        begin = time.monotonic() + 0.5

        def one(number: int) -> float:
            time.sleep(max(0.0, begin + number / rate - time.monotonic()))
            sent = time.monotonic()
            reply = a.client.request("POST", "/api/v1/namespaces/default/services", service(f"v{number}"))
            if reply.status != 201:
                raise RuntimeError(f"write {number}: {reply.status} {reply.body[:200]!r}")
            acknowledged = time.monotonic()
            name = f"v{number}.default.svc.cluster.local"
            while not b.answers(name):
                if time.monotonic() - sent > 10:
                    raise RuntimeError(f"{name} not in B's DNS after 10 s")
                time.sleep(0.001)
            return acknowledged - sent, time.monotonic() - sent

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(writes)))
        achieved = writes / (time.monotonic() - begin)
        acks, latencies = [r[0] for r in results], [r[1] for r in results]
    finally:
        a.stop(), b.stop(), cluster.stop_all()
    return {"writes": writes, "rate": rate, "achieved_rate": round(achieved, 1),
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1), "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "ack_p50_ms": round(percentile(acks, 0.5) * 1000, 1), "ack_p99_ms": round(percentile(acks, 0.99) * 1000, 1)}


def handover(workdir: Path, run: int) -> float:
    cluster = start_cluster(workdir / f"ho{run}")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    flags = ("--store", cluster.store_flag, "--leader-elect-lease-duration", str(LEASE))
    a = Replica(workdir, f"ho{run}-a", *flags)
    try:
        deadline = time.monotonic() + 10
        while not a.leads() and time.monotonic() < deadline:
            time.sleep(0.05)
        b = Replica(workdir, f"ho{run}-b", *flags)
        try:
            b.client.request("POST", "/api/v1/namespaces/default/services", service("web", clusterIP="None"))
            b.client.request("POST", "/api/v1/namespaces/default/pods", pod("web-0", "127.0.0.1", {"app": "web"}, port))
            deadline = time.monotonic() + 10
            while b.answers("web.default.svc.cluster.local") != {"127.0.0.1"} and time.monotonic() < deadline:
                time.sleep(0.01)
            a.stop(signal.SIGKILL)
            killed = time.monotonic()
            listener.close()
            while b.answers("web.default.svc.cluster.local"):
                if time.monotonic() - killed > 60:
                    raise RuntimeError("the pod did not leave DNS within 60 s")
                time.sleep(0.01)
            return time.monotonic() - killed
        finally:
            b.stop()
    finally:
        a.stop(), cluster.stop_all()


def durability(workdir: Path, run: int) -> dict[str, Any]:
    cluster = start_cluster(workdir / f"du{run}")
    replicas = [Replica(workdir, f"du{run}-{n}", "--store", cluster.store_flag) for n in range(2)]
    try:
        acknowledged, refused = [], 0
        number = 0
        while len(acknowledged) < 200 and number < 400:
            if number == 50:
                cluster.kill(0)
            body = pod(f"p{number}", f"127.0.1.{number % 250 + 1}", {"app": "load"})
            reply = replicas[number % 2].client.request("POST", "/api/v1/namespaces/default/pods", body)
            if reply.status == 201:
                acknowledged.append(f"p{number}")
            else:
                refused += 1
            number += 1
        time.sleep(1)
        present = []
        for replica in replicas:
            items = replica.client.request("GET", "/api/v1/namespaces/default/pods").json["items"]
            names = {item["metadata"]["name"] for item in items}
            present.append(sum(1 for name in acknowledged if name in names))
    finally:
        for replica in replicas:
            replica.stop()
        cluster.stop_all()
    return {"acknowledged": len(acknowledged), "refused": refused, "present_per_replica": present}


def throughput(workdir: Path, repeats: int, seconds: float) -> dict[str, Any]:
    gen = workdir / "gen"
    subprocess.run([sys.executable, str(REPO / "bench" / "gen.py"), "--out", str(gen), "--no-zones"], check=True,
                   cwd=REPO, stdout=subprocess.DEVNULL)
    # The bench cluster is one write of ~15,000 keys: etcd's per-request limits raised for it.
    cluster = start_cluster(workdir / "tp", "--max-txn-ops", "100000", "--max-request-bytes", str(64 * 2**20))
    manifests = str(gen / "manifests")
    servers = {
        "etcd": Replica(workdir, "tp-etcd", "--store", cluster.store_flag, "--manifests", manifests, cpu="1"),
        "sqlite": Replica(workdir, "tp-sqlite", "--data-dir", str(workdir / "sqlite"), "--manifests", manifests,
                          cpu="1"),
    }
    qps: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for _ in range(repeats):
            for name, server in servers.items():
                # One server at a time on core 1: stop the other so they do not share it.
                other = next(s for n, s in servers.items() if n != name)
                os.kill(other.proc.pid, signal.SIGSTOP)
                try:
                    out = subprocess.run(
                        ["taskset", "-c", "0", "dnsperf", "-s", "127.0.0.1", "-p", str(server.port),
                         "-d", str(gen / "queries.txt"), "-l", f"{seconds:g}", "-c", "4", "-q", "200", "-t", "1"],
                        capture_output=True, text=True, timeout=seconds + 60, check=True,
                    ).stdout
                finally:
                    os.kill(other.proc.pid, signal.SIGCONT)
                match = re.search(r"Queries per second:\s+([\d.]+)", out)
                assert match is not None, out
                qps[name].append(float(match[1]))
    finally:
        for server in servers.values():
            server.stop()
        cluster.stop_all()
    medians = {name: statistics.median(values) for name, values in qps.items()}
    return {"qps": qps, "median_qps": medians, "ratio_etcd_to_sqlite": round(medians["etcd"] / medians["sqlite"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="each dnsperf run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "etcd.json")
    parser.add_argument("--only", choices=("visibility", "handover", "durability", "throughput"))
    args = parser.parse_args()
    if shutil.which("etcd") is None:
        sys.exit("bench/etcd.py needs etcd: apt-get install etcd-server")
    results: dict[str, Any] = {"command": " ".join(["python", "bench/etcd.py", *sys.argv[1:]]),
                               "repeats": args.repeats}
    with tempfile.TemporaryDirectory(prefix="kdns-etcd-bench-") as tmp:
        workdir = Path(tmp)
        if args.only in (None, "visibility"):
            runs = [visibility(workdir / f"v{run}") for run in range(args.repeats)]
            results["visibility"] = {"runs": runs, "median_p50_ms": statistics.median(r["p50_ms"] for r in runs),
                                     "median_p99_ms": statistics.median(r["p99_ms"] for r in runs)}
            print("visibility", json.dumps(results["visibility"]), flush=True)
        if args.only in (None, "handover"):
            times = [handover(workdir, run) for run in range(args.repeats)]
            results["handover"] = {"lease_s": LEASE, "probe_bound_s": PROBE_BOUND, "seconds": [round(t, 2) for t in times],
                                   "median_s": round(statistics.median(times), 2)}
            print("handover", json.dumps(results["handover"]), flush=True)
        if args.only in (None, "durability"):
            results["durability"] = [durability(workdir, run) for run in range(args.repeats)]
            print("durability", json.dumps(results["durability"]), flush=True)
        if args.only in (None, "throughput"):
            results["throughput"] = throughput(workdir, args.repeats, args.seconds)
            print("throughput", json.dumps(results["throughput"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
