"""What a registry write costs kdns in instructions, whatever else the machine does: the write, and the answers it makes stale.

    python bench/gen.py --out /tmp/cluster && python bench/writeir.py /tmp/cluster
    python bench/writeir.py /tmp/cluster --src /tmp/old --src .     # an A/B of two kdns trees
    python bench/writeir.py /tmp/cluster --only flip                 # the write alone (about 15 s a tree)

bench/churn.py shows what writes cost the answers per second, but on a shared machine its
windows move 5-10 % from run to run, more than a change to the write path does. This
counts instructions under callgrind (valgrind), which repeat to 0.1 %:

* **flip**: kdns (the cluster's manifests, `--ephemeral`, API on) under callgrind with
  collection off; after 100 readiness flips through the API to warm it (bench/writes.py's
  `Writer`: a merge PATCH of `pods/NAME/status`, a new connection each, as kubectl
  makes), collection is switched on (`callgrind_control -i on`) around `--flips` more:
  their instructions per flip, everything the process does for one (HTTP, the patch,
  admission, the EndpointSlice controller, the DNS index, the reply), the kernel's work
  for its system calls excepted.
* **answer**: what a question costs when no ready reply is kept for it (the slow path,
  `codec.from_wire`, the Router and the authority's answer, `codec.to_wire`): every
  distinct question of the cluster's mix answered once in one process, as kdns loads and
  indexes the manifests, then `--passes` times more; the difference from a run with no
  further pass, per question. A readiness flip in a headless Service makes about three
  replies stale (its Service's A and SRV, the endpoint's name, its PTR: bench/kept.py),
  each answered again this way by the next question for it.

Under DNS load both cost more CPU per instruction (their code and data are cold between
writes); the counts are what a change to them moves. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import gen
from common import LOOPBACK, REPO, say
from procs import Child, free_port, stop_all
from servers import installed, wait_answer
from writes import Writer, wait_api

START_DEADLINE = 600.0  # a start under callgrind takes a while
WARM_FLIPS = 100
BACK_TO_BACK = 1e9  # writes a second: the Writer's pacing never waits
DEFAULT_FLIPS = 200
DEFAULT_PASSES = 1
KINDS = ("flip", "answer")


def _collected(log: Path) -> int:
    found = re.search(r"Collected : (\d+)", log.read_text(errors="replace"))
    if found is None:
        raise SystemExit(f"writeir: no instruction count in {log}")
    return int(found.group(1))


def flip_instructions(tree: Path, cluster: Path, flips: int, workdir: Path) -> int:
    """Instructions per readiness flip of a kdns from `tree`, counted around `flips` flips."""
    model = json.loads((cluster / "model.json").read_text())
    pods = [p for p in gen.build(gen.Spec(**model["spec"])).pods if p.hostname]
    probe = next(s for s in model["sample"] if s["rcode"] == "NOERROR" and s["answer"])
    port, api_port = free_port(), free_port()
    log = workdir / f"kdns-flip-{port}.log"
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={workdir / 'flip.out'}",
            sys.executable, "-m", "kdns", "serve", "--manifests", str(cluster / "manifests"),
            "--dns-address", LOOPBACK, "--dns-port", str(port), "--api-address", LOOPBACK, "--api-port", str(api_port),
            "--upstream", "none", "--zones-dir", "none", "--workers", "1", "--ephemeral"]
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    child = Child("kdns", argv, log, cwd=installed(tree), env=env)
    api = f"http://{LOOPBACK}:{api_port}"
    try:
        took, why = wait_answer(child, port, probe["name"], probe["type"], START_DEADLINE)
        if took is None:
            raise SystemExit(f"writeir: kdns from {tree} did not answer: {why}\n{child.log_tail()}")
        wait_api(api, child, START_DEADLINE)
        _flips(api, pods, WARM_FLIPS, 0)
        _collecting(child.pid, True)
        _flips(api, pods, flips, WARM_FLIPS)
        _collecting(child.pid, False)
    finally:
        child.stop(timeout=120)
    return _collected(log) // flips


def _flips(api: str, pods: list[gen.Pod], count: int, first: int) -> None:
    writer = Writer(api, pods, BACK_TO_BACK, count, first)
    writer.run()
    if writer.errors or len(writer.replied) != count:
        raise SystemExit(f"writeir: {count - len(writer.replied)} flips failed: {writer.errors[:3]}")


def _collecting(pid: int, on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)], check=True, capture_output=True,
                   timeout=120)


def answer_instructions(tree: Path, cluster: Path, passes: int, workdir: Path) -> tuple[int, int]:
    """(instructions per slow-path answer, questions): the difference of `passes` passes
    over the cluster's distinct questions and none, each in a process of its own."""
    counts = []
    for n in (0, passes):
        log = workdir / f"answer-{n}.log"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir / f'answer-{n}.out'}",
                sys.executable, str(Path(__file__).resolve()), "--slow-pass", str(tree), str(cluster), str(n)]
        with open(log, "wb") as out:
            subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=3600,
                           cwd=installed(tree), env={**os.environ, "PYTHONHASHSEED": "0"})
        counts.append(_collected(log))
    questions = int(re.findall(r"questions: (\d+)", (workdir / f"answer-{passes}.log").read_text())[-1])
    return (counts[1] - counts[0]) // (passes * questions), questions


def slow_pass(tree: Path, cluster: Path, passes: int) -> None:
    """(Run under callgrind by answer_instructions.) Load the cluster as kdns does, answer
    every distinct question once, then `passes` more times, all through the slow path."""
    sys.path.insert(0, str(tree))
    import dns.message
    from common import answer_path

    from kdns.codec import from_wire, to_wire
    from kdns.config import Settings
    from kdns.message import Answer, Query

    settings = Settings(manifests=(cluster / "manifests",), zones_dir=None, dns_address=LOOPBACK)
    _store, router, _cache = answer_path(settings)
    questions = dict.fromkeys(tuple(line.split()[:2]) for line in (cluster / "queries.txt").read_text().splitlines()
                              if line.strip())
    wires = [dns.message.make_query(name, qtype, use_edns=0).to_wire() for name, qtype in questions]

    def one_pass() -> None:
        for wire in wires:
            query = from_wire(wire, LOOPBACK)
            assert isinstance(query, Query)
            answer = router(query)  # the cluster zone answers at once: no forwarder here
            assert isinstance(answer, Answer)
            to_wire(query, answer, query.payload)

    for _ in range(1 + passes):
        one_pass()
    print(f"questions: {len(wires)}")


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--slow-pass"]:
        slow_pass(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cluster", type=Path, help="a directory bench/gen.py wrote")
    parser.add_argument("--src", action="append", type=Path, help="a kdns source tree (repeat for A/B; default this one)")
    parser.add_argument("--only", choices=KINDS, help="one of the two counts")
    parser.add_argument("--flips", type=int, default=DEFAULT_FLIPS, help=f"flips counted (default {DEFAULT_FLIPS})")
    parser.add_argument("--passes", type=int, default=DEFAULT_PASSES,
                        help=f"slow-path passes over the questions (default {DEFAULT_PASSES})")
    args = parser.parse_args(argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (apt-get install valgrind)")
    kinds = (args.only,) if args.only else KINDS
    rows = []
    try:
        for tree in (s.resolve() for s in args.src or [REPO]):
            with tempfile.TemporaryDirectory(prefix="kdns-writeir-") as tmp:
                row = {"tree": str(tree)}
                if "flip" in kinds:
                    row["flip"] = f"{flip_instructions(tree, args.cluster, args.flips, Path(tmp)):,}"
                    say(f"writeir: {tree}: {row['flip']} instructions a readiness flip ({args.flips} flips)")
                if "answer" in kinds:
                    per, questions = answer_instructions(tree, args.cluster, args.passes, Path(tmp))
                    row["answer"] = f"{per:,}"
                    say(f"writeir: {tree}: {per:,} instructions a slow-path answer ({questions:,} questions)")
                rows.append(row)
    finally:
        stop_all()
    print(f"`python bench/writeir.py {' '.join(argv if argv is not None else sys.argv[1:])}` (callgrind instructions)\n")
    print("| tree | " + " | ".join(f"{k} (instructions)" for k in kinds) + " |")
    print("| --- | " + " | ".join("---:" for _ in kinds) + " |")
    for row in rows:
        print(f"| {row['tree']} | " + " | ".join(row[k] for k in kinds) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
