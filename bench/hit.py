"""CPU per reply the fast path sends from its ready replies: a positive answer, and a
negative one, which gets the zone's current serial written in (kdns/wire/fastpath.py).

    python bench/hit.py [--count N] [--rounds R]

In one process, no sockets: a registry with one Service, a ready-reply cache that follows
the index, one request of each kind filed, then `AnswerCache.lookup` called N times per
round, between commits that touch neither answer (so both stay ready). Prints the median
over the rounds of process CPU time per lookup. A figure for A/B comparisons on the same
machine (run it on two trees in turn), not an absolute one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dns.message
from common import answer_path

from kdns.codec import from_wire, to_wire
from kdns.config import Settings
from kdns.message import Answer, Query

CLIENT = "127.0.0.1"
MANIFEST = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}
"""
QUESTIONS = {"positive": ("web.default.svc.cluster.local.", "A"), "negative": ("nope.default.svc.cluster.local.", "A")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="lookups per round (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating the kinds (default 5)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "web.yaml"
        path.write_text(MANIFEST)
        settings = Settings(manifests=(path,), zones_dir=None, dns_address=CLIENT)
        store, router, cache = answer_path(settings)
    wires = {}
    for kind, (name, qtype) in QUESTIONS.items():
        wire = dns.message.make_query(name, qtype, use_edns=0).to_wire()
        query = from_wire(wire, CLIENT)
        assert isinstance(query, Query)
        result = router(query)
        assert isinstance(result, Answer)
        assert cache.store(wire, query, result, to_wire(query, result, query.payload), cache.epoch), kind
        wires[kind] = wire
    lookup = cache.lookup
    per_answer: dict[str, list[float]] = {kind: [] for kind in wires}
    for round_ in range(args.rounds):
        node = {  # a commit that touches neither answer: the serial moves
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{round_}"},
            "status": {"addresses": [{"type": "InternalIP", "address": f"10.1.0.{round_ + 1}"}]},
        }
        with store.transaction() as txn:
            txn.apply(node)
        for kind, wire in wires.items():
            start = time.process_time()
            for _ in range(args.count):
                lookup(wire, CLIENT)
            per_answer[kind].append((time.process_time() - start) / args.count)
            assert lookup(wire, CLIENT) is not None, f"the {kind} answer is no longer ready"
    for kind, figures in per_answer.items():
        print(f"{kind}: {statistics.median(figures) * 1e9:.0f} ns CPU per ready reply (median of {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
