"""What a wake-up of kdns's UDP server costs in instructions, whatever else the machine does.

    python bench/gen.py --out /tmp/cluster && python bench/wakeup.py /tmp/cluster
    python bench/wakeup.py /tmp/cluster --against main      # also kdns at main: an A/B

About 3 minutes a tree on a free core (valgrind runs kdns some 50 times slower).

Below the closed loop (bench/cpu.py's run at 20,000 queries/s) most wake-ups find one or
two datagrams, so what a wake-up costs beyond its answers (the event loop's callback,
recvmmsg and sendmmsg through ctypes, the batch's set-up) is most of the CPU kdns spends
in user space per answer. Here kdns (the cluster's manifests, `--upstream none`) runs
under callgrind (valgrind), which counts instructions, not seconds; every distinct
question of the mix (queries.txt) is asked once, so that its reply is made ready, then
--queries of them are asked one at a time, each answered before the next is sent: one
datagram a wake-up. A second start does the same with three times as many. The
difference, over the questions the second asked more, is the user-space instructions of
one wake-up with one ready reply (the system calls' own work in the kernel is not
counted); what a start costs, and anything it does once, is in both and cancels out.
bench/fastloop.py counts the batch loop's per-datagram part alone. Nothing here is a
test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from common import LOOPBACK, REPO, say
from procs import Child, free_port, stop_all
from servers import installed, kdns_common_flags, kdns_help, wait_answer

DEFAULT_QUERIES = 5_000
START_DEADLINE = 600.0  # a start under callgrind takes minutes
REPLY_TIMEOUT = 30.0


def requests(cluster: Path) -> list[bytes]:
    """Every distinct question of the cluster's mix, as a request without EDNS."""
    import dns.message

    questions = dict.fromkeys(tuple(line.split()[:2]) for line in (cluster / "queries.txt").read_text().splitlines()
                              if line.strip())
    return [dns.message.make_query(name, qtype, id=n & 0xFFFF, use_edns=False).to_wire()
            for n, (name, qtype) in enumerate(questions)]


def ask(port: int, wires: list[bytes], count: int) -> float:
    """Ask `count` of `wires` in turn, one at a time; the seconds it took."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(REPLY_TIMEOUT)
        began = time.monotonic()
        for n in range(count):
            sock.sendto(wires[n % len(wires)], (LOOPBACK, port))
            sock.recv(65535)
        return time.monotonic() - began


def instructions(tree: Path, cluster: Path, wires: list[bytes], queries: int, workdir: Path) -> int:
    """Instructions of a kdns from `tree` under callgrind, asked every question of `wires`
    once, then `queries` of them one at a time."""
    port = free_port()
    log = workdir / f"kdns-{os.getpid()}-{port}.log"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir / 'callgrind.out'}", sys.executable,
            "-m", "kdns", "serve", "--manifests", str(cluster / "manifests"), "--dns-address", LOOPBACK,
            "--dns-port", str(port), "--api-port", "0", "--upstream", "none", *kdns_common_flags(kdns_help())]
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    child = Child("kdns", argv, log, cwd=installed(tree), env=env)
    try:
        probe = next(line.split()[0] for line in (cluster / "queries.txt").read_text().splitlines()
                     if line.endswith(" A"))
        took, why = wait_answer(child, port, probe, "A", START_DEADLINE)
        if took is None:
            raise SystemExit(f"wakeup: kdns from {tree} did not answer: {why}")
        ask(port, wires, len(wires))  # every reply made ready
        time.sleep(1.0)
        ask(port, wires, queries)
        time.sleep(1.0)
    finally:
        child.stop(timeout=120)
    found = re.search(r"Collected : (\d+)", log.read_text(errors="replace"))
    if found is None:
        raise SystemExit(f"wakeup: no instruction count in {log}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cluster", type=Path, help="a directory bench/gen.py wrote")
    parser.add_argument("--against", metavar="REV", help="also kdns at this git revision (e.g. main)")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES,
                        help=f"questions asked one at a time (default {DEFAULT_QUERIES:,})")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    wires = requests(args.cluster)
    with tempfile.TemporaryDirectory(prefix="kdns-wakeup-") as tmp:
        workdir = Path(tmp)
        trees = {"kdns": REPO}
        if args.against:
            from cpu import export

            trees[f"kdns@{args.against}"] = export(args.against, workdir / "against")
        try:
            for label, tree in trees.items():
                fewer = instructions(tree, args.cluster, wires, args.queries, workdir)
                more = instructions(tree, args.cluster, wires, 3 * args.queries, workdir)
                say(f"wakeup, {label}: {(more - fewer) / (2 * args.queries):,.0f} instructions a wake-up with one "
                    f"ready reply ({fewer:,} with {args.queries:,} questions asked one at a time, {more:,} with "
                    f"{3 * args.queries:,})")
        finally:
            stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
