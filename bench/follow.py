"""How long after a write to the primary a `kdns serve --follow` follower answers it.

    python bench/follow.py [--writes 200] [--out bench/out/follow.json]

Starts a primary (`kdns serve`, the example cluster, in memory) and a follower of its
API (`kdns serve --follow`, a kubeconfig written here), both on loopback, and adds an
ExternalName service. Then, `--writes` times: change its externalName through the
primary's API (a merge patch), and ask the follower for its CNAME, again and again,
until it answers the new target. Each write gives three samples: from sending the
write to the follower's answer (change-to-answer), from the primary's acknowledgement
to that answer (what following adds: the primary's own DNS answers the new target once
it has acknowledged), and the write's own round trip. Prints and writes the median,
p90, p99 and max of each. Every process it starts is stopped by its PID.

Nothing here is a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 30.0
ANSWER_TIMEOUT = 5.0
_SERVING = re.compile(r"serving DNS on 127\.0\.0\.1:(\d+)")
_API = re.compile(r"serving the API on http://127\.0\.0\.1:(\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def start(argv: list[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A kdns process and its DNS port, once it logs that it serves its API."""
    handle = log.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "kdns", "serve", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=handle, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text()
        port = _SERVING.search(text)
        if port and _API.search(text):
            return process, int(port[1])
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"kdns did not start:\n{log.read_text()}")


def cname(port: int, name: str) -> str | None:
    reply = dns.query.udp(dns.message.make_query(name, "CNAME"), LOOPBACK, port=port, timeout=1.0)
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.CNAME:
            return rrset[0].target.to_text()
    return None


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"median_ms": statistics.median(ordered) * 1000, "p90_ms": at(0.90) * 1000,
            "p99_ms": at(0.99) * 1000, "max_ms": ordered[-1] * 1000}


def measure(api: http.client.HTTPConnection, dns_port: int, writes: int, label: str) -> dict[str, list[float]]:
    """`writes` writes, each timed until the DNS server on `dns_port` answers it."""
    name = "bench-target.default.svc.cluster.local."
    samples: dict[str, list[float]] = {"change_to_answer": [], "after_ack": [], "write": []}
    for number in range(writes):
        target = f"{label}-{number}.example.com."
        body = json.dumps({"spec": {"externalName": target.rstrip(".")}})
        sent = time.perf_counter()
        api.request("PATCH", "/api/v1/namespaces/default/services/bench-target", body=body,
                    headers={"Content-Type": "application/merge-patch+json"})
        reply = api.getresponse()
        reply.read()
        acknowledged = time.perf_counter()
        if reply.status != 200:
            raise SystemExit(f"the write was refused: {reply.status}")
        while cname(dns_port, name) != target:
            if time.perf_counter() - sent > ANSWER_TIMEOUT:
                raise SystemExit(f"{label}: no answer with {target} after {ANSWER_TIMEOUT} s")
        answered = time.perf_counter()
        samples["change_to_answer"].append(answered - sent)
        samples["after_ack"].append(answered - acknowledged)
        samples["write"].append(acknowledged - sent)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "follow.json")
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="kdns-bench-follow-") as work:
        directory = Path(work)
        api_port = free_port()
        common = ["--dns-address", LOOPBACK, "--dns-port", "0", "--upstream", "none", "--ephemeral"]
        try:
            primary, _ = start([*common, "--api-port", str(api_port), "--manifests", str(REPO / "zones")],
                                         directory / "primary.log")
            processes.append(primary)
            kubeconfig = directory / "kubeconfig"
            kubeconfig.write_text(json.dumps({
                "apiVersion": "v1", "kind": "Config", "current-context": "primary",
                "clusters": [{"name": "primary", "cluster": {"server": f"http://{LOOPBACK}:{api_port}"}}],
                "contexts": [{"name": "primary", "context": {"cluster": "primary"}}],
            }))
            follower, follower_dns = start([*common, "--api-port", "0", "--follow", str(kubeconfig)],
                                           directory / "follower.log")
            processes.append(follower)
            api = http.client.HTTPConnection(LOOPBACK, api_port, timeout=10)
            api.request("POST", "/api/v1/namespaces/default/services", body=json.dumps({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench-target"},
                "spec": {"type": "ExternalName", "externalName": "start.example.com"},
            }), headers={"Content-Type": "application/json"})
            api.getresponse().read()
            measure(api, follower_dns, 10, "warm")
            samples = measure(api, follower_dns, args.writes, "follower")
            results: dict[str, object] = {"writes": args.writes, **{k: percentiles(v) for k, v in samples.items()}}
        finally:
            for process in reversed(processes):
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{args.writes} writes through the primary, answered by the follower:")
    for key, what in (("change_to_answer", "change to answer"), ("after_ack", "after the primary's ack"),
                      ("write", "the write itself")):
        figures = results[key]
        assert isinstance(figures, dict)
        print(f"  {what:24} median {figures['median_ms']:.2f} ms, p90 {figures['p90_ms']:.2f} ms, "
              f"p99 {figures['p99_ms']:.2f} ms, max {figures['max_ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
