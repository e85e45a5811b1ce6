"""How many ready replies one EndpointSlice readiness flip drops: a count, not a timing.

    python bench/gen.py --out /tmp/cluster && python bench/kept.py /tmp/cluster [--pod NS/NAME | --namespace NAME]
    python bench/kept.py /tmp/cluster --mix storm      # the search-path storm's questions instead

Loads the generated cluster's manifests into a registry and an index as kdns does, fills
a ready-reply cache (kdns/wire/fastpath.py) with every distinct question of the bench
mix (`--mix storm`: of the search-path storm, queries-storm.txt) plus search-path misses
of two outside names (what ndots:5 pods send), reports a
pod's readiness going false in one commit (as a kubelet does), and prints how many
replies the cache still holds: what the next queries get without the slow path. The pod
is `--pod`, or the middle one of the ready pods (in the bench cluster, a headless
Service's; `gen.py --preset scale` also has pods behind ClusterIP Services). With
`--namespace`, the commit creates that Namespace instead.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import dns.message
from common import answer_path

from kdns.codec import from_wire, to_wire
from kdns.config import Settings
from kdns.message import Answer, Query

CLIENT = "127.0.0.1"
OUTSIDE = ("www.example.com", "api.github.com")
QUERIES = {"bench": "queries.txt", "storm": "queries-storm.txt"}  # by --mix (bench/gen.py writes both)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cluster", type=Path, help="a directory bench/gen.py wrote")
    parser.add_argument("--mix", choices=("bench", "storm"), default="bench", help="whose questions fill the cache")
    change = parser.add_mutually_exclusive_group()
    change.add_argument("--pod", metavar="NS/NAME", help="the pod that goes unready (default: the middle ready one)")
    change.add_argument("--namespace", metavar="NAME", help="create this Namespace instead")
    args = parser.parse_args(argv)
    settings = Settings(manifests=(args.cluster / "manifests",), zones_dir=None, dns_address=CLIENT)
    store, router, cache = answer_path(settings)
    lines = (args.cluster / QUERIES[args.mix]).read_text().splitlines()
    questions = sorted({(line.split()[0], line.split()[1]) for line in lines if line.strip()})
    namespace = next(ns.meta.name for ns in store.list("Namespace") if ns.meta.name.startswith("ns-"))
    suffixes = (f"{namespace}.svc.{settings.zone}", f"svc.{settings.zone}", settings.zone)
    questions += [(f"{name}.{suffix}", "A") for name in OUTSIDE for suffix in suffixes]
    for name, qtype in questions:
        wire = dns.message.make_query(name, qtype, use_edns=0).to_wire()
        query = from_wire(wire, CLIENT)
        assert isinstance(query, Query)
        epoch = cache.epoch
        result = router(query)  # the cluster zone answers at once: no forwarder here
        assert isinstance(result, Answer)
        cache.store(wire, query, result, to_wire(query, result, query.payload), epoch)
    kept = len(cache)
    if args.namespace:
        with store.transaction() as txn:
            txn.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": args.namespace}})
        print(f"{len(questions)} distinct questions, {kept} ready replies; after Namespace {args.namespace} "
              f"was created: {len(cache)} kept ({len(cache) / kept:.1%})")
        return 0
    pods = [pod for pod in store.list("Pod") if pod.ready]
    if args.pod:
        pods = [pod for pod in pods if f"{pod.meta.namespace}/{pod.meta.name}" == args.pod]
        if not pods:
            parser.error(f"no ready pod {args.pod}")
    pod = pods[len(pods) // 2]
    document = copy.deepcopy(pod.manifest)
    for condition in document["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition["status"] = "False"
    with store.transaction() as txn:
        txn.apply(document)
    print(
        f"{len(questions)} distinct questions, {kept} ready replies; after pod "
        f"{pod.meta.namespace}/{pod.meta.name} went unready: {len(cache)} kept ({len(cache) / kept:.1%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
