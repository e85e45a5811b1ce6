"""The kdns-only parts: start-up at scale, forwarding, --workers, and the registry change
to visible answer latency."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import gen
import startup
from common import (
    CHANGE_LOAD,
    CLIENTS,
    LOOPBACK,
    OUTSTANDING_RATE,
    SPLIT_CLIENTS,
    UPSTREAM_ADDRESS,
    WORKER_SOCKETS,
    WORKERS_SPLIT,
    Mode,
    say,
)
from cpu import warm_up
from measure import (
    RetryBudget,
    Target,
    dnsperf,
    measure_latency,
    measure_throughput,
    percentile,
    quiet,
    slim,
    summarize,
)
from procs import Child, child_pids, cpu_seconds, free_port, memory_kib, pin_threads
from servers import (
    ask_all,
    knot_conf,
    query,
    start_kdns,
    start_knot,
    wait_answer,
    wait_settled,
    worker_sync,
)


def scale_test(workdir: Path, mode: Mode, server_cpu: str, client_cpu: str, with_knot: bool,
               budget: RetryBudget) -> dict[str, Any]:
    """10,000 services and 100,000 pods: seconds from exec to the first answer, peak RSS,
    then whether the throughput holds at that size: closed-loop dnsperf with the scale
    cluster's own query mix against kdns, then (`with_knot`) Knot serving the same
    cluster as zone files, CPU per answer beside answers per second."""
    spec = gen.PRESETS["scale"]
    t = time.monotonic()
    summary = gen.generate(workdir / "scale", spec, zones=with_knot)
    gen_s = time.monotonic() - t
    size = sum(Path(p).stat().st_size for p in summary["manifests"])
    say(f"scale: generated {summary['services_clusterip'] + summary['services_headless']:,} services, "
        f"{summary['pods']:,} pods ({size / 2**20:.0f} MiB of YAML) in {gen_s:.1f} s; starting kdns")
    port = free_port()
    child = start_kdns(workdir / "scale" / "manifests", port, server_cpu, workdir / "kdns-scale.log")
    # the last object of the generator: the answer shows the whole cluster was loaded
    last = next(s for s in reversed(gen.build(spec).services) if s.headless)
    name = f"{last.pods[-1].endpoint_name}.{last.fqdn}"
    queries = Path(summary["queries"])
    throughput: dict[str, Any] = {}
    try:
        seconds, detail = wait_answer(child, port, name, "A", mode.scale_timeout_s, watch_rss_kib=4 * 2**20)
        cpu = cpu_seconds(child.pid) if child.alive() else None
        settled = wait_settled(child) if seconds is not None else None  # start-up's leftover packing
        if settled is not None:
            say(f"scale: start-up's packing done {settled:.1f} s after the first answer")
            throughput["kdns"] = _closed_loop(child, port, queries, mode, server_cpu, client_cpu, workdir, budget)
        memory = memory_kib(child.pid) if child.alive() else {}  # VmHWM: the load and the load test
    finally:
        child.stop()
    # The same cluster from the durable store: the journal holding it, no manifests.
    store: dict[str, Any] | None = None
    if seconds is not None:
        startup.save_registry(workdir / "scale" / "manifests", workdir / "scale-data")
        (workdir / "no-manifests").mkdir(exist_ok=True)
        store = startup.first_answer(workdir / "no-manifests", workdir / "scale-data", name, server_cpu,
                                     workdir / "kdns-scale-store.log")
        say(f"scale: from the durable store, first answer after {store['seconds']:.2f} s, {store['cpu_s']:.2f} s CPU")
    if seconds is not None and with_knot:
        knot_port = free_port()
        zones = {zone: Path(path) for zone, path in summary["zones"].items()}
        knot = start_knot(knot_conf(workdir / "knot-scale", LOOPBACK, knot_port, zones), server_cpu,
                          workdir / "knot-scale.log")
        try:
            sample = summary["sample"][0]
            if wait_answer(knot, knot_port, sample["name"], sample["type"], 120, ok=lambda r: True)[0] is not None:
                throughput["knot"] = _closed_loop(knot, knot_port, queries, mode, server_cpu, client_cpu, workdir, budget)
        finally:
            knot.stop()
    result = {
        "services": summary["services_clusterip"] + summary["services_headless"],
        "pods": summary["pods"],
        "namespaces": summary["namespaces"],
        "yaml_mib": round(size / 2**20, 1),
        "load_s": seconds,
        "load_cpu_s": cpu,
        "store_load_s": store["seconds"] if store else None,
        "store_load_cpu_s": store["cpu_s"] if store else None,
        "peak_rss_mib": round(memory["VmHWM"] / 1024, 1) if memory else None,
        "probe": f"{name} A",
        "note": None if seconds is not None else str(detail),
        "throughput": throughput,
        "query_count": summary["query_count"],
    }
    k, n = throughput.get("kdns"), throughput.get("knot")
    if k and n and n["qps"]:
        result["qps_ratio"] = k["qps"] / n["qps"]
        if k["cpu_us_per_query"] and n["cpu_us_per_query"]:
            result["cpu_ratio"] = n["cpu_us_per_query"] / k["cpu_us_per_query"]  # answers per CPU-second
        say(f"scale: closed loop, kdns {k['qps']:,.0f} vs Knot {n['qps']:,.0f} answers/s "
            f"({result['qps_ratio']:.2f}); CPU per answer {k['cpu_us_per_query']:.2f} vs {n['cpu_us_per_query']:.2f} µs")
    say(f"scale: first answer after {seconds if seconds is not None else 'n/a'} s, peak RSS "
        f"{result['peak_rss_mib']} MiB" + (f" ({detail})" if seconds is None else ""))
    return result


def _closed_loop(child: Child, port: int, queries: Path, mode: Mode, server_cpu: str, client_cpu: str,
                 workdir: Path, budget: RetryBudget) -> dict[str, Any]:
    """Unlimited-rate dnsperf (closed loop), median of the mode's repeats, after every query
    of the file was asked once (kdns makes its ready replies then: a first run that makes
    them costs 10.5 against 8.0-8.6 µs per answer at this size, and so moved the median)."""
    pin_threads(child.pid, server_cpu)
    warm_up(port, queries, client_cpu)
    runs = [quiet(partial(dnsperf, port, queries, mode.unlimited_s, client_cpu, child.pid, workdir,
                          server_cpu=server_cpu), budget) for _ in range(mode.repeats)]
    summary = summarize(runs)
    say(f"  scale, {child.name}: {summary['qps']:,.0f} answers/s closed loop, loss {summary['loss_pct']:.3f} %, "
        f"{summary['cpu_us_per_query'] or 0:.2f} µs CPU/answer")
    return {"qps": summary["qps"], "loss_pct": summary["loss_pct"], "cpu_us_per_query": summary["cpu_us_per_query"],
            "client_bound": (summary["server_core_busy"] or 0) < 0.85, "runs": [slim(r) for r in runs]}


def forward_test(workdir: Path, cluster: Path, model: dict, mode: Mode, server_cpu: str, client_cpu: str,
                 cluster_max: int | None, budget: RetryBudget) -> dict[str, Any]:
    """kdns --upstream -> Knot serving ext.example. (TTL 3600): warm the cache, then the
    max throughput of forwarded names, compared with kdns's cluster answers."""
    up_port = free_port(UPSTREAM_ADDRESS)
    up_dir = workdir / "knot-upstream"
    conf = knot_conf(up_dir, UPSTREAM_ADDRESS, up_port, {gen.FORWARD_ZONE: Path(model["forward"]["file"])})
    upstream = start_knot(conf, client_cpu, workdir / "knot-upstream.log")  # the outside world: off the server's core
    first = f"host-0000.{gen.FORWARD_ZONE}"
    kdns = None
    try:
        if wait_answer(upstream, up_port, first, "A", 30, address=UPSTREAM_ADDRESS)[0] is None:
            return {"skipped": f"the upstream Knot did not start: {upstream.log_tail(5)}"}
        pin_threads(upstream.pid, client_cpu)
        port = free_port()
        kdns = start_kdns(cluster, port, server_cpu, workdir / "kdns-forward.log",
                          extra=["--upstream", f"{UPSTREAM_ADDRESS}:{up_port}"])
        started, _ = wait_answer(kdns, port, model["sample"][0]["name"], model["sample"][0]["type"], 120,
                                 ok=lambda r: True)
        if started is None:
            return {"skipped": f"kdns with --upstream did not start: {kdns.log_tail(5)}"}
        pin_threads(kdns.pid, server_cpu)
        import dns.rcode

        response = query(port, first, "A", timeout=2.0)
        if response is None or response.rcode() != dns.rcode.NOERROR or not response.answer:
            rcode = "no answer" if response is None else dns.rcode.to_text(response.rcode())
            return {"skipped": f"kdns does not forward yet (a forwarded name got {rcode}; kdns says: "
                               f"{_grep(kdns.log_path, 'forward')})"}
        queries = Path(model["forward"]["queries"])
        # warm: every name once, at a gentle rate
        warm = dnsperf(port, queries, 10, client_cpu, kdns.pid, workdir, rate=2000)
        up_cpu_before = cpu_seconds(upstream.pid)
        t = Target("kdns-forward", port, kdns.pid, queries, server_cpu)
        throughput = measure_throughput(t, mode, client_cpu, workdir, budget)
        latency = measure_latency(t, mode, client_cpu, workdir, budget, loads=(CHANGE_LOAD,))
        up_cpu = cpu_seconds(upstream.pid) - up_cpu_before
        maxrate = throughput["max_rate"]
        return {
            "names": len(queries.read_text().splitlines()),
            "warm_loss_pct": warm["loss_pct"],
            "upstream_cpu_s_during_measurement": up_cpu,
            "throughput": throughput,
            "latency": latency,
            "ratio_to_cluster": (maxrate / cluster_max) if cluster_max else None,
            "peak_rss_mib": round(memory_kib(kdns.pid)["VmHWM"] / 1024, 1),
        }
    finally:
        if kdns is not None:
            kdns.stop()
        upstream.stop()


def workers_test(workdir: Path, cluster: Path, queries: Path, model: dict, mode: Mode, server_cpu: str,
                 client_cpu: str, help_text: str, budget: RetryBudget) -> dict[str, Any]:
    """What `--workers` costs and how the kernel shares the load, on the one server core:
    closed-loop dnsperf from SPLIT_CLIENTS source ports against kdns --workers 1, then
    --workers WORKERS_SPLIT (every process pinned to that core), in turn. Answers per
    second and CPU per answer side by side, and each process's share of the CPU. (On this
    2-core machine the second core is dnsperf's, so the workers cannot be given a core
    each: this measures what sharing one costs, not what a core per worker gains.)"""
    if "--workers" not in help_text:
        return {"skipped": "kdns serve has no --workers flag"}
    result: dict[str, Any] = {"clients": SPLIT_CLIENTS, "workers": WORKERS_SPLIT}
    for workers in (1, WORKERS_SPLIT):
        port = free_port()
        kdns = start_kdns(cluster, port, server_cpu, workdir / f"kdns-workers-{workers}.log",
                          extra=["--upstream", "none", "--workers", str(workers)])
        try:
            sample = model["sample"][0]
            if wait_answer(kdns, port, sample["name"], sample["type"], 120, ok=lambda r: True)[0] is None:
                return {"skipped": f"kdns --workers {workers} did not start: {kdns.log_tail(5)}"}
            deadline = time.monotonic() + 120
            while len(child_pids(kdns.pid)) < workers - 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            pids = [kdns.pid, *child_pids(kdns.pid)]
            for pid in pids:
                pin_threads(pid, server_cpu)
            time.sleep(1.5)  # every worker has reported ready and synced
            def once(pids: list[int], port: int) -> dict[str, Any]:
                before = {pid: cpu_seconds(pid) for pid in pids}
                run = dnsperf(port, queries, mode.unlimited_s, client_cpu, None, workdir,
                              server_cpu=server_cpu, clients=SPLIT_CLIENTS)
                spent = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
                total = sum(spent.values())
                run["server_cpu_s"] = total
                run["cpu_us_per_query"] = 1e6 * total / run["completed"] if run.get("completed") else None
                run["cpu_share_pct"] = sorted((100 * spent[pid] / total if total else 0.0 for pid in pids), reverse=True)
                return run

            runs = [quiet(partial(once, pids, port), budget) for _ in range(mode.repeats)]
            summary = summarize(runs)
            split = [round(statistics.median(r["cpu_share_pct"][i] for r in runs), 1) for i in range(len(pids))]
            say(f"  --workers {workers}: {summary['qps']:,.0f} answers/s, "
                f"{summary['cpu_us_per_query'] or 0:.2f} us CPU/answer, CPU share by process {split} %")
            result[f"workers_{workers}"] = {"qps": summary["qps"], "cpu_us_per_query": summary["cpu_us_per_query"],
                                           "loss_pct": summary["loss_pct"], "cpu_share_pct": split,
                                           "runs": [slim(r) for r in runs]}
        finally:
            kdns.stop()
    one, many = result["workers_1"], result[f"workers_{WORKERS_SPLIT}"]
    if one["qps"] and many["qps"]:
        result["qps_ratio"] = many["qps"] / one["qps"]
    if one["cpu_us_per_query"] and many["cpu_us_per_query"]:
        result["cpu_ratio"] = many["cpu_us_per_query"] / one["cpu_us_per_query"]
    return result


def _grep(path: Path, word: str) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if word in line.lower()]
    except OSError:
        return ""
    return lines[0].strip() if lines else "(nothing in its log)"


def change_test(workdir: Path, cluster: Path, model: dict, mode: Mode, server_cpu: str, client_cpu: str,
                help_text: str, workers: int = 1) -> dict[str, Any]:
    """Registry change -> visible answer while dnsperf offers 20,000 qps: flip a headless
    pod's Ready condition with a PUT of the whole pod (GET, edit, PUT, as kubectl does),
    then ask its DNS name until the answer shows the change (NXDOMAIN when not ready, its
    address when ready again). Time from just before the PUT to that answer.

    With `workers` > 1 (`kdns serve --workers N`, every process on the server's core) the
    name is asked from WORKER_SOCKETS sockets, each its own source port, which the kernel
    spreads over the processes: the time is until the last of them shows the change, so
    every worker's copy of the registry has it."""
    if "--api-port" not in help_text:
        return {"skipped": "kdns serve has no --api-port flag yet (the HTTP API is not wired into the CLI)"}
    if workers > 1 and "--workers" not in help_text:
        return {"skipped": "kdns serve has no --workers flag"}
    api_port = free_port()
    port = free_port()
    extra = ["--upstream", "none", "--api-port", str(api_port)]
    if workers > 1:
        extra += ["--workers", str(workers)]  # after KDNS_COMMON's `--workers 1`: the last one counts
    if "--api-address" in help_text:
        extra += ["--api-address", LOOPBACK]
    token = None
    if "--api-token" in help_text:
        token = "bench-token"
        extra += ["--api-token", token]
    log_name = "kdns-change.log" if workers == 1 else f"kdns-change-workers-{workers}.log"
    kdns = start_kdns(cluster, port, server_cpu, workdir / log_name, extra=extra)
    load: subprocess.Popen | None = None
    sockets: list[socket.socket] = []
    try:
        if wait_answer(kdns, port, model["sample"][0]["name"], model["sample"][0]["type"], 120, ok=lambda r: True)[0] is None:
            return {"skipped": f"kdns with --api-port did not start: {kdns.log_tail(5)}"}
        pin_threads(kdns.pid, server_cpu)
        if workers > 1:
            deadline = time.monotonic() + 120
            while len(child_pids(kdns.pid)) < workers - 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid in child_pids(kdns.pid):
                pin_threads(pid, server_cpu)
            sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(WORKER_SOCKETS)]
            for sock in sockets:
                sock.bind((LOOPBACK, 0))
                sock.setblocking(False)
        cluster_model = gen.build(gen.Spec(**model["spec"]))
        pods = [p for p in cluster_model.pods if p.hostname]
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        base = f"http://{LOOPBACK}:{api_port}"

        def http(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status, json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode(errors="replace")[:300]
            except (urllib.error.URLError, OSError, ValueError) as exc:
                return 0, str(exc)

        # kdns may accept --api-port before it serves the API: wait for it, bounded.
        api_deadline = time.monotonic() + 15
        code, reply = 0, ""
        while time.monotonic() < api_deadline:
            code, reply = http("GET", "/version")
            if code == 200:
                break
            time.sleep(0.2)
        if code != 200:
            return {"skipped": f"kdns serve accepts --api-port, but nothing answered HTTP on {LOOPBACK}:{api_port} "
                               f"within 15 s ({reply}): the API is not served by `kdns serve` yet"}

        import dns.rcode

        duration = max(5.0, mode.change_count * 0.06 + 5)
        with open(workdir / "dnsperf-change.out", "wb") as perf_out:
            load = subprocess.Popen(
                ["taskset", "-c", client_cpu, "dnsperf", "-s", LOOPBACK, "-p", str(port), "-d", model["queries"],
                 "-l", f"{duration:g}", "-c", str(CLIENTS), "-T", "1", "-t", "1", "-e", "-q", str(OUTSTANDING_RATE),
                 "-Q", str(CHANGE_LOAD)],
                stdin=subprocess.DEVNULL, stdout=perf_out, stderr=subprocess.STDOUT)
        time.sleep(1.0)
        latencies, after_commit, errors = [], [], []
        end = time.monotonic() + duration - 1.5
        for i in range(mode.change_count):
            if time.monotonic() > end:
                break
            pod = pods[i % len(pods)]
            path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"
            code, obj = http("GET", path)
            if code != 200 or not isinstance(obj, dict):
                errors.append(f"GET {path}: {code} {obj}")
                continue
            ready = not any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in obj.get("status", {}).get("conditions", []))
            obj.setdefault("status", {})["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
            name = f"{pod.endpoint_name}.{pod.service}.{pod.namespace}.svc.{gen.ZONE}"
            t0 = time.monotonic()
            code, reply = http("PUT", path, obj)
            committed = time.monotonic()  # kdns replies once the change is committed
            if code not in (200, 201):
                errors.append(f"PUT {path}: {code} {reply}")
                continue

            def visible(response: Any, ready: bool = ready, ip: str = pod.ip) -> bool:
                if response is None:
                    return False
                if ready:
                    return response.rcode() == dns.rcode.NOERROR and any(ip in rr.to_text() for rr in response.answer)
                return response.rcode() == dns.rcode.NXDOMAIN

            seen = None
            if sockets:
                pending = list(sockets)
                while pending and time.monotonic() - t0 < 2.0:
                    pending = [sock for sock, response in ask_all(pending, port, name) if not visible(response)]
                if not pending:
                    seen = time.monotonic() - t0
            while seen is None and time.monotonic() - t0 < 2.0:
                if visible(query(port, name, "A", timeout=0.5)):
                    seen = time.monotonic() - t0
            if seen is None:
                errors.append(f"{name}: change not visible within 2 s")
            else:
                latencies.append(seen * 1000)
                after_commit.append((seen - (committed - t0)) * 1000)
        load.wait(duration + 30)
        latencies.sort()
        after_commit.sort()
        sync = worker_sync(base, headers) if workers > 1 else None
        perf = (workdir / "dnsperf-change.out").read_text(errors="replace")
        m = re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", perf)
        return {
            "workers": workers,
            "changes": len(latencies),
            "errors": errors[:10],
            "error_count": len(errors),
            "background_load_qps": CHANGE_LOAD,
            "background_loss_pct": float(m.group(1)) if m else None,
            "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                           "max": latencies[-1] if latencies else None},
            # From the PUT's reply (the commit is done) to the answer: the API's own time left out.
            "after_commit_ms": {"p50": percentile(after_commit, 50), "p99": percentile(after_commit, 99),
                                "max": after_commit[-1] if after_commit else None},
            "worker_sync": sync,
        }
    finally:
        if load is not None and load.poll() is None:
            os.kill(load.pid, signal.SIGTERM)
            load.wait(10)
        for sock in sockets:
            sock.close()
        kdns.stop()
