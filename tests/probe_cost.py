"""Probe servers for the prober's tests, and the measurement of what probing costs kdns.

`Backend`: one TCP/HTTP server on a loopback address, which tests stop, restart, slow
down or make fail. `measure(pods, seconds, kind)`: N pods, each with its own 127.1.x.y
address served by a separate process (so that its CPU is not counted), probed every
second by a real Prober; returns kdns's CPU time per probe. Run it larger by hand:

    python -m tests.probe_cost --pods 5000 --seconds 10 --kind httpGet [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


class Backend:
    """A server on (host, port 0): answers each HTTP request with `status` (or never, if
    `hang`), and counts connections in `hits` (a tcpSocket probe is a connection)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.hits = 0
        self.status = 200
        self.hang = False
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stop_after: concurrent.futures.Future[float] | None = None

    @classmethod
    async def start(cls, host: str) -> Backend:
        backend = cls(host)
        await backend.restart()
        return backend

    async def restart(self) -> None:
        """Listen (again, on the same port once it has one)."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening: connections are refused from now on."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def close(self) -> None:
        await self.stop()
        for writer in list(self._writers):
            writer.close()

    # Called from another thread than the backend's loop (the tests' thread):

    def stop_after_next_answer(self) -> concurrent.futures.Future[float]:
        """Stop listening right after the next answer; the future gets the monotonic time of it."""
        self._stop_after = concurrent.futures.Future()
        return self._stop_after

    def restart_now(self) -> float:
        """Listen again at once; the monotonic time it was listening."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.restart(), self._loop).result(5)
        return time.monotonic()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        self._writers.add(writer)
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await reader.readuntil(b"\r\n\r\n")  # a tcpSocket probe sends nothing and resets
            if reader.at_eof() and not self.hang:
                return
            if self.hang:
                await asyncio.sleep(3600)
            body = b"ok\n"
            head = f"HTTP/1.1 {self.status} Status\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
            if self._stop_after is not None and not self._stop_after.done():
                await self.stop()
                self._stop_after.set_result(time.monotonic())
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


# --- the cost of probing --------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    kind: str
    pods: int
    seconds: float
    probes: int
    failures: int
    cpu: float  # kdns's process CPU seconds in the window (user + system)
    loop: str

    @property
    def cpu_per_probe(self) -> float:
        return self.cpu / max(self.probes, 1)

    def __str__(self) -> str:
        return (
            f"{self.kind} probes of {self.pods} pods every 1 s for {self.seconds:.1f} s ({self.loop}): "
            f"{self.probes} probes, {self.failures} failed; kdns CPU {self.cpu:.3f} s = "
            f"{self.cpu_per_probe * 1e6:.0f} us per probe, {100 * self.cpu / self.seconds:.1f}% of one core"
        )


def addresses(count: int) -> list[str]:
    return [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]


class _Answer(asyncio.Protocol):
    """The targets' side of a probe, as cheap as asyncio allows: a tcpSocket probe connects
    and resets; an httpGet probe gets a 200 as soon as its request head is in."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += data
        if b"\r\n\r\n" in self.received and self.transport is not None:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
            self.transport.close()


async def _serve_many(count: int) -> None:
    """The probe targets' process: one listener per address; prints them; serves until stdin closes."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(_Answer, host, 0, backlog=1024) for host in addresses(count)]
    print(json.dumps([s.sockets[0].getsockname()[:2] for s in servers]), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


def measure(pods: int, seconds: float, kind: str, *, uvloop: bool = False) -> Cost:
    """Probe `pods` pods every second and return kdns's CPU cost over `seconds` of steady state."""
    from kdns.prober import Prober
    from kdns.registry.backend import LocalBackend
    from kdns.registry.store import Store

    targets = subprocess.Popen(
        [sys.executable, "-m", "tests.probe_cost", "--serve", str(pods)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert targets.stdout is not None
        listening = json.loads(targets.stdout.readline())
        store = Store()
        with store.transaction() as txn:
            for number, (ip, port) in enumerate(listening):
                action = {"httpGet": {"path": "/healthz", "port": port}} if kind == "httpGet" else {
                    "tcpSocket": {"port": port}}
                txn.create({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": f"web-{number}", "namespace": "default", "labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "web:1",
                                             "readinessProbe": {**action, "periodSeconds": 1}}]},
                    "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "False"}]},
                })

        async def run() -> Cost:
            async with Prober(LocalBackend(store)) as prober:
                async with asyncio.timeout(START_TIMEOUT):  # every pod ready: the writes are done
                    # Polled: the prober's writes have no event to wait on.
                    while sum(p.ready for p in store.list("Pod")) < pods:  # type: ignore[attr-defined]  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)
                probes, failures = prober.stats.probes, prober.stats.failures
                cpu, began = time.process_time(), time.monotonic()
                await asyncio.sleep(seconds)
                cpu, wall = time.process_time() - cpu, time.monotonic() - began
                loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
                return Cost(kind, pods, wall, prober.stats.probes - probes, prober.stats.failures - failures, cpu,
                            loop_name)

        if uvloop:
            import uvloop as _uvloop

            with asyncio.Runner(loop_factory=_uvloop.new_event_loop) as runner:
                return runner.run(run())
        return asyncio.run(run())
    finally:
        if targets.stdin is not None:
            targets.stdin.close()
        try:
            targets.wait(10)
        except subprocess.TimeoutExpired:
            targets.kill()
            targets.wait(10)
        if targets.stdout is not None:
            targets.stdout.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kind", choices=("tcpSocket", "httpGet"), default="httpGet")
    parser.add_argument("--uvloop", action="store_true", help="run kdns's side on uvloop, as `kdns serve` does")
    parser.add_argument("--serve", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve_many(args.serve))
        return 0
    print(measure(args.pods, args.seconds, args.kind, uvloop=args.uvloop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
