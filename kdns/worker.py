"""A worker of `kdns serve --workers N`: `python -m kdns.worker FD`, started by the primary.

FD is this process's end of a socket pair to the primary (kdns/replication.py). The
worker receives its Settings and a snapshot of the registry, builds its own ClusterIndex
and answers DNS with the primary's own builder (kdns/app.py `serve_dns`: static zones,
Router, forwarding cache, UDP and TCP) on the primary's address and port with
SO_REUSEPORT, says it is ready, and from then on applies every commit the primary sends.
It has no store, journal, API, prober or proxy: those belong to the primary alone.

It stops when the primary closes the socket (or dies), or on SIGTERM / SIGINT; SIGHUP is
the primary's to handle, which then tells every worker to reload its static zones.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kdns.app import load_static, reload_static, serve_dns
from kdns.authority.index import ClusterIndex
from kdns.authority.static import ZoneError
from kdns.errors import KdnsError
from kdns.metrics import Metrics
from kdns.pipeline.chain import Router
from kdns.replication import (
    STATS_INTERVAL,
    Channel,
    Commit,
    Failed,
    Ready,
    Reload,
    Stats,
    ToPrimary,
    ToWorker,
    receive_snapshot,
)
from kdns.runtime import collect_rarely, long_lived, loop_factory, setup_logging

log = logging.getLogger("kdns.worker")

# Sync times kept between two reports at most: a burst of commits is sampled, not hoarded.
MAX_SYNC_SAMPLES = 10_000

WorkerChannel = Channel[ToPrimary, ToWorker]


async def run(sock: socket.socket) -> None:
    """Serve as a worker over `sock` until the primary closes it or a signal stops us."""
    channel = await WorkerChannel.open(sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the primary relays reloads
    with long_lived():  # the snapshot, like the primary's load, lives on
        try:
            snapshot = await receive_snapshot(channel)
        except EOFError:
            return  # the primary stopped before we started
        settings = snapshot.settings
        setup_logging(snapshot.log_level, prefix=f"kdns: worker {snapshot.number}")
        index = ClusterIndex(settings)
        index.rebuild(snapshot.objects, snapshot.resource_version)
        del snapshot
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(gc.unfreeze)
        stack.callback(collect_rarely())
        try:
            dns = await stack.enter_async_context(
                serve_dns(settings, index, load_static(settings), Metrics(), reuse_port=True)
            )
        except (KdnsError, ZoneError, OSError) as exc:
            channel.send(Failed(str(exc)))
            await channel.drain()
            raise SystemExit(1) from None
        channel.send(Ready())
        synced: list[float] = []  # seconds from each commit to its application here
        reporting = loop.create_task(_report(channel, dns.udp.stats.totals, dns.udp.drops, synced))
        stack.callback(reporting.cancel)
        following = loop.create_task(_follow(channel, index, dns.router, settings.zones_dir, synced))
        stopping = loop.create_task(stop.wait())
        await asyncio.wait((following, stopping), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if following.done():
            following.result()  # a failure to follow the registry ends the worker, loudly
        following.cancel()
        await asyncio.gather(following, stopping, return_exceptions=True)
    await channel.aclose()


async def _follow(
    channel: WorkerChannel, index: ClusterIndex, router: Router, zones_dir: Path | None, synced: list[float]
) -> None:
    """Apply the primary's commits as they come, until it closes the channel; how long
    after each commit it was applied goes to `synced`."""
    while True:
        try:
            message = await channel.receive()
        except (EOFError, ConnectionError):
            log.info("the primary has stopped: stopping")
            return
        match message:
            case Commit():
                index.apply(message.received())
                if len(synced) < MAX_SYNC_SAMPLES:
                    synced.append(time.monotonic() - message.sent_at)
            case Reload():
                if zones_dir is not None:
                    await reload_static(router, zones_dir)
            case other:
                raise KdnsError(f"the primary sent {type(other).__name__} after the snapshot")


async def _report(
    channel: WorkerChannel,
    totals: Callable[[], dict[tuple[int, int], int]],
    drops: Callable[[], dict[str, int]],
    synced: list[float],
) -> None:
    """Send the answer and drop counts and the sync times to the primary once a second,
    when they changed."""
    last: tuple[dict[tuple[int, int], int], dict[str, int]] = ({}, {})
    while True:
        await asyncio.sleep(STATS_INTERVAL)
        now = totals(), drops()
        if now != last or synced:
            channel.send(Stats(now[0], synced[:], now[1]))
            synced.clear()
            last = now


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m kdns.worker FD  (started by `kdns serve --workers N`)", file=sys.stderr)
        return 2
    setup_logging("INFO", prefix="kdns: worker")
    sock = socket.socket(fileno=int(args[0]))
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run(sock))
    except KeyboardInterrupt:
        pass
    except Exception:
        # The primary starts a new worker from a fresh snapshot; this says why.
        log.exception("stopped by an error")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
