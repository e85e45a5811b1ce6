"""What a ready reply costs the UDP fast path: the memory a hit reads, and its instructions.

    python bench/gen.py --out /tmp/cluster && python bench/fastloop.py /tmp/cluster
    python bench/fastloop.py /tmp/cluster --against main      # also kdns at main: an A/B

Figures a busy machine does not change, for the steady-registry target of issue 19. In
one process: the cluster's manifests loaded as kdns loads them, then every distinct
question of its mix (queries.txt) asked once, as `dnsperf -e` asks it (EDNS, 4,096-byte
payload), and its reply made ready (kdns/wire/fastpath.py). Printed: how many objects the
ready replies' hits read and how many 4 KiB pages and 2 MiB regions those lie in (at
scale they are spread through a large heap, where each one is a likely cache and TLB
miss).

Then the requests and their replies are written to a file, and a child replays them
under cachegrind (valgrind), which counts instructions whoever else runs: a ready-reply
cache filled from the file, and the mix in file order through `mmsg.Batch.queue_ready`
in batches of --batch, each datagram written into its slot as recvmmsg would. The
instructions per datagram are those of 3 passes less those of 1, less the same for
writing the datagrams alone. With --against REV, the same for that revision (git
archive into a temporary directory). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import answer_path

CLIENT = "127.0.0.1"
PAYLOAD = 4096  # dnsperf's EDNS buffer size
PASSES = (1, 4)


def load(cluster: Path) -> tuple[list[bytes], list[tuple[bytes, bytes, bool]], Any]:
    """(the mix's requests in file order; per distinct question its request, reply and
    whether it shows the zone's serial; the cache holding their ready replies)."""
    import dns.message

    from kdns.codec import from_wire, to_wire
    from kdns.config import Settings
    from kdns.message import Answer, Query
    from kdns.reuse import Shared

    settings = Settings(manifests=(cluster / "manifests",), zones_dir=None, dns_address=CLIENT)
    _, router, cache = answer_path(settings)
    gc.collect()
    gc.freeze()  # as kdns does after loading
    lines = [line.split()[:2] for line in (cluster / "queries.txt").read_text().splitlines() if line.strip()]
    wires = [dns.message.make_query(name, qtype, id=n & 0xFFFF, use_edns=0, payload=PAYLOAD).to_wire()
             for n, (name, qtype) in enumerate(lines)]
    replies = []
    for wire in {wire[2:]: wire for wire in wires}.values():
        query = from_wire(wire, CLIENT)
        assert isinstance(query, Query)
        epoch = cache.epoch
        result = router(query)
        assert isinstance(result, Answer) and isinstance(result.reuse, Shared), result
        reply = to_wire(query, result, query.payload)
        cache.store(wire, query, result, reply, epoch)
        replies.append((wire, reply, result.reuse.shows_serial))
    return wires, replies, cache


def read_by_hits(cache: Any) -> list[object]:
    """The objects the hits on `cache`'s ready replies read (its keys and entries, and what
    an entry holds; the counters, which few entries share, left out)."""
    if hasattr(cache, "plain"):
        found: list[object] = [o for key, body in cache.plain.items() for o in (key, body)]
        return found + [o for key, entry in cache._kept.items() for o in (key, entry, entry[0])]
    return [o for key, entry in cache._entries.items() for o in (key, entry, entry[0])]  # (before 6d2d1ca)


def replay(data: Path, passes: int, batch_size: int, write_only: bool) -> None:
    """The child: a cache filled from `data`, and `passes` passes of the mix through the batch loop."""
    from kdns.codec import from_wire
    from kdns.message import Answer, Query
    from kdns.reuse import Shared
    from kdns.wire import mmsg, udp
    from kdns.wire.fastpath import AnswerCache

    class Handler:
        """A `Reusable` that is never asked: every reply comes from the file."""

        serial = 1

        def on_change(self, listener: object) -> Callable[[], None]:
            return lambda: None

        def recursion_allowed(self, client: str | None) -> bool:
            return False

        def __call__(self, query: Query) -> Answer:
            raise AssertionError(query)

    wires, replies = pickle.loads(data.read_bytes())  # noqa: S301  (written by the parent)
    cache = AnswerCache(Handler())
    for wire, reply, shows_serial in replies:
        query = from_wire(wire, CLIENT)
        assert isinstance(query, Query)
        answer = Answer(rcode=reply[3] & 0x0F, reuse=Shared(frozenset(), shows_serial))
        assert cache.store(wire, query, answer, reply, cache.epoch)
    # The loop makes no cycles: without the collector, a pass costs the same each time.
    gc.collect()
    gc.disable()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        batch = mmsg.Batch(sock.fileno(), udp.BATCH, udp.RECEIVE_SIZE)
        buffer, offsets, lengths = batch._buffer, batch._offsets, batch._lengths
        batches = [wires[i : i + batch_size] for i in range(0, len(wires) - batch_size + 1, batch_size)]
        plain = hasattr(cache, "plain")
        missed = 0
        for _ in range(passes):
            for datagrams in batches:
                for i, wire in enumerate(datagrams):
                    buffer[offsets[i] : offsets[i] + len(wire)] = wire
                    lengths[i] = len(wire)
                if write_only:
                    continue
                batch._queued = 0
                if plain:
                    others = batch.queue_ready(len(datagrams), cache.plain, cache.stats.counts, cache.kept)
                else:  # before 6d2d1ca
                    others = batch.queue_ready(len(datagrams), cache.ready)
                missed += len(others)
    print(f"{len(batches) * batch_size} datagrams per pass, {missed} without a ready reply")


def instructions(src: Path, data: Path, passes: int, write_only: bool, batch_size: int, workdir: Path) -> int:
    """Instructions (cachegrind's Ir) of a child replaying `data` with kdns from `src`."""
    workdir.mkdir(exist_ok=True)
    out = workdir / f"cachegrind.{passes}.{int(write_only)}"
    argv = ["valgrind", "--tool=cachegrind", f"--cachegrind-out-file={out}", sys.executable, __file__,
            "--replay", str(data), "--src", str(src), "--passes", str(passes), "--batch", str(batch_size)]
    subprocess.run([*argv, *(["--write-only"] if write_only else [])], check=True, capture_output=True, timeout=1800,
                   env={"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"})
    summary = next(line for line in out.read_text().splitlines() if line.startswith("summary:"))
    return int(summary.split()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cluster", type=Path, nargs="?", help="a directory bench/gen.py wrote")
    parser.add_argument("--against", metavar="REV", help="also kdns at this git revision (e.g. main)")
    parser.add_argument("--batch", type=int, default=32, help="datagrams per batch (default 32)")
    parser.add_argument("--replay", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay is not None:
        sys.path.insert(0, str(args.src))
        replay(args.replay, args.passes, args.batch, args.write_only)
        return 0
    if args.cluster is None:
        parser.error("the cluster directory is required")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="kdns-fastloop-") as tmp:
        workdir = Path(tmp)
        trees = {"kdns": repo}
        if args.against:
            from cpu import (
                export,  # (here: the replaying child imports kdns from --src only)
            )

            trees[f"kdns@{args.against}"] = export(args.against, workdir / "against")
        wires, replies, cache = load(args.cluster)
        objects = read_by_hits(cache)
        print(f"{args.cluster.name}: {len(cache)} ready replies; their hits read {len(objects):,} objects in "
              f"{len({id(o) >> 12 for o in objects}):,} pages of 4 KiB, {len({id(o) >> 21 for o in objects})} "
              "regions of 2 MiB (this tree)")
        data = workdir / "mix.pickle"
        data.write_bytes(pickle.dumps((wires, replies)))
        datagrams = len(wires) // args.batch * args.batch
        for name, src in trees.items():
            runs = [(passes, write_only) for passes in PASSES for write_only in (False, True)]
            with ThreadPoolExecutor(2) as pool:  # (the machine's two cores)
                futures = {run: pool.submit(instructions, src, data, *run, args.batch, workdir / name) for run in runs}
                counts = {run: future.result() for run, future in futures.items()}
            loop = (counts[PASSES[1], False] - counts[PASSES[0], False]) - (counts[PASSES[1], True] - counts[PASSES[0], True])
            print(f"  {name}: {loop / ((PASSES[1] - PASSES[0]) * datagrams):,.0f} instructions per datagram "
                  f"in the batch loop (batches of {args.batch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
