"""The benchmark's constants, its two modes (default and --quick) and its log line."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kdns.config import Settings
    from kdns.pipeline.chain import Router
    from kdns.registry.store import Store
    from kdns.wire.fastpath import AnswerCache

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOOPBACK = "127.0.0.1"
UPSTREAM_ADDRESS = "127.0.0.2"  # the outside world's server, for kdns --upstream
LOSS_LIMIT_PCT = 0.1
SENT_RATIO_MIN = 0.97  # a rate "holds" only when dnsperf managed to send 97 % of it
QUERY_TIMEOUT = 1.0  # dnsperf -t: an answer later than this counts as lost
CLIENTS = 4  # dnsperf -c: UDP sockets (source ports)


# dnsperf -q for rate-limited runs. dnsperf shares its core between its sender and
# receiver threads; when the sender gets the CPU back it catches up with a burst of up to
# -q queries, and a burst larger than the server's socket receive buffer (Linux default
# 208 KiB: about 270 small datagrams) is dropped there however idle the server is (seen
# with Knot: -q 2000 lost ~1 % at 60,000 qps, -q 200 none up to 180,000 qps). 200 in
# flight also means a rate holds only while latency stays under 200 / rate.
OUTSTANDING_RATE = 200
OUTSTANDING_UNLIMITED = 100  # dnsperf's default, closed loop
FIXED_LOADS = (2000, 10000, 20000)
CHANGE_LOAD = 20000


# --workers for the change test run with workers, and the sockets (source ports) that
# ask, so that every process of the SO_REUSEPORT group is asked.
CHANGE_WORKERS = 2


# The --workers cost and load-share test: processes, and dnsperf sockets (source ports)
# enough for SO_REUSEPORT's hash of the 4-tuple to spread them evenly.
WORKERS_SPLIT = 2
SPLIT_CLIENTS = 32
WORKER_SOCKETS = 16
TARGETS = {
    "throughput_ratio": 1.0,  # issue 19: at least Knot's, by qps or by CPU per answer
    "p99_ms_at_20k": 1.0,
    "change_p99_ms": 10.0,
    "scale_load_s": 3.0,  # issue 19: from manifests and from the durable store
    "scale_rss_mib": 300.0,  # issue 19: 10,000 services + 100,000 pods
    "forward_ratio": 0.8,
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Mode:
    name: str
    repeats: int
    unlimited_s: float
    search_s: float
    search_steps: int
    search_tol: float
    confirm_s: float
    latency_s: float
    change_count: int
    scale_timeout_s: float
    retries: int  # disturbed runs repeated, at most, in the whole benchmark
QUICK = Mode("quick", repeats=3, unlimited_s=3, search_s=3, search_steps=6, search_tol=0.10, confirm_s=3,
             latency_s=3, change_count=40, scale_timeout_s=120, retries=6)
DEFAULT = Mode("default", repeats=3, unlimited_s=5, search_s=4, search_steps=8, search_tol=0.04, confirm_s=6,
               latency_s=6, change_count=200, scale_timeout_s=180, retries=10)
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def answer_path(settings: Settings) -> tuple[Store, Router, AnswerCache]:
    """The answer path without sockets, wired as kdns wires it: the registry of `settings`'
    manifests loaded, the DNS index built and following the store, a Router, and an
    AnswerCache following the index. The modules are imported when this is called, so a
    harness that put another kdns tree first on sys.path (bench/fastloop.py --against)
    gets that tree's."""
    from kdns.app import load_registry
    from kdns.authority.index import ClusterIndex
    from kdns.pipeline.chain import Router
    from kdns.wire.fastpath import AnswerCache

    store, _ = load_registry(settings)
    index = ClusterIndex(settings)
    index.rebuild(store.objects(), store.resource_version)
    store.subscribe(index.apply)
    router = Router(index, settings)
    cache = AnswerCache(router)
    cache.follow()
    return store, router, cache
