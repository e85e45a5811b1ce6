"""The service proxy's cost: connections per second and MB/s through it, against direct.

    python bench/proxy.py [--runs 3] [--seconds 3] [--megabytes 512] [--readme]

Three processes on loopback, each on uvloop: a backend (the "pod": 127.0.0.2 and
127.0.0.3, one port), kdns's ServiceProxy in front of it (ClusterIP 127.1.0.10, with
interface=None: loopback routes 127.0.0.0/8 already), and this one, the client. Every
process started here is stopped by its PID, also on Ctrl-C. Prints a Markdown table of
medians over --runs runs; --readme also writes it into bench/README.md between the
`<!-- proxy:start -->` and `<!-- proxy:end -->` markers.

* connections/s: 64 concurrent clients for --seconds, each connecting, sending 1 byte,
  reading the 1-byte reply and the close, then connecting again.
* MB/s: one connection (and 4 in parallel) reading --megabytes MB from the backend.

The client is Python too, so the direct figures are the client's limit as much as the
backend's: read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PODS = ("127.0.0.2", "127.0.0.3")
CLUSTER_IP = "127.1.0.10"
CHUNK = 256 * 1024
CONCURRENCY = 64
START_TIMEOUT = 15.0


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _loop_run(coro: object) -> None:
    import uvloop

    uvloop.run(coro)  # type: ignore[arg-type]


# --- the backend and the proxy, each a process of its own --------------------------------------


async def _backend(port: int) -> None:
    zeros = bytes(CHUNK)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readexactly(1)
            if request == b"s":  # stream: 8 bytes of length, then that many zero bytes
                size = int.from_bytes(await reader.readexactly(8), "big")
                for _ in range(size // CHUNK):
                    writer.write(zeros)
                    await writer.drain()
            else:
                writer.write(b"k")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    servers = [await asyncio.start_server(handle, address, port, backlog=4096) for address in PODS]
    print("ready", flush=True)
    await asyncio.Event().wait()  # until SIGTERM
    del servers


async def _proxy(backend_port: int, service_port: int) -> None:
    sys.path.insert(0, str(REPO))
    from kdns.proxy import ServiceProxy
    from kdns.registry.store import Store

    store = Store(service_cidrs=["127.1.0.0/24"])
    with store.transaction() as txn:
        txn.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench", "namespace": "default"},
                   "spec": {"clusterIP": CLUSTER_IP, "selector": {"app": "bench"},
                            "ports": [{"name": "tcp", "port": service_port, "targetPort": backend_port}]}})
        for number, address in enumerate(PODS):
            txn.apply({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": f"bench-{number}", "namespace": "default", "labels": {"app": "bench"}},
                       "status": {"phase": "Running", "podIP": address,
                                  "conditions": [{"type": "Ready", "status": "True"}]}})
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with ServiceProxy(store, interface=None, node_address=None, max_connections_per_service=10_000):
        print("ready", flush=True)
        await stop.wait()


# --- the client ---------------------------------------------------------------------------------


async def connections_per_second(address: str, port: int, seconds: float) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            reader, writer = await asyncio.open_connection(address, port)
            writer.write(b"c")
            await reader.read(1)
            await reader.read(1)  # the close
            writer.close()
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.monotonic() - start)


async def megabytes_per_second(address: str, port: int, megabytes: int, streams: int) -> float:
    size = megabytes * 1024 * 1024 // streams

    async def one() -> int:
        reader, writer = await asyncio.open_connection(address, port, limit=4 * CHUNK)
        writer.write(b"s" + (size // CHUNK * CHUNK).to_bytes(8, "big"))
        received = 0
        for _ in range(size // 1024 + 10):  # bounded: at least 1 KiB per read until EOF
            data = await reader.read(4 * CHUNK)
            if not data:
                break
            received += len(data)
        writer.close()
        return received

    start = time.monotonic()
    total = sum(await asyncio.gather(*(one() for _ in range(streams))))
    return total / (1024 * 1024) / (time.monotonic() - start)


def start(args: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ready", or "" if it died
    if line.strip() != "ready":
        stop(proc)
        raise SystemExit(f"bench/proxy.py {' '.join(args)} did not start")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def measure(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    backend_port = free_port(PODS[0])
    service_port = free_port(CLUSTER_IP)
    procs = []
    try:
        procs.append(start(["--serve-backend", str(backend_port)]))
        procs.append(start(["--serve-proxy", str(backend_port), str(service_port)]))
        rows: dict[str, dict[str, list[float]]] = {}
        tests = [
            ("connections/s (64 concurrent, 1-byte exchange)",
             lambda a, p: connections_per_second(a, p, args.seconds)),
            ("MB/s, 1 stream", lambda a, p: megabytes_per_second(a, p, args.megabytes, 1)),
            ("MB/s, 4 streams", lambda a, p: megabytes_per_second(a, p, args.megabytes, 4)),
        ]
        for _ in range(args.runs):
            for name, test in tests:
                for where, address, port in (("direct", PODS[0], backend_port), ("proxy", CLUSTER_IP, service_port)):
                    value = _client(test(address, port))
                    rows.setdefault(name, {}).setdefault(where, []).append(value)
        return [(name, statistics.median(r["direct"]), statistics.median(r["proxy"])) for name, r in rows.items()]
    finally:
        for proc in reversed(procs):
            stop(proc)


def _client(coro: object) -> float:
    """One measurement on a fresh uvloop loop, bounded to two minutes."""
    import uvloop

    return uvloop.run(asyncio.wait_for(coro, 120))  # type: ignore[arg-type]


def table(rows: list[tuple[str, float, float]], args: argparse.Namespace) -> str:
    lines = [(f"_`python bench/proxy.py --runs {args.runs} --seconds {args.seconds} --megabytes {args.megabytes}`, "
              f"medians of {args.runs} runs, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, uvloop._"),
             "", "| measure | direct | through the proxy | proxy / direct |", "| --- | ---: | ---: | ---: |"]
    for name, direct, proxied in rows:
        lines.append(f"| {name} | {direct:,.0f} | {proxied:,.0f} | {proxied / direct:.2f} |")
    return "\n".join(lines) + "\n"


def write_readme(text: str) -> None:
    readme = HERE / "README.md"
    content = readme.read_text()
    begin, end = "<!-- proxy:start -->", "<!-- proxy:end -->"
    if begin not in content or end not in content:
        raise SystemExit(f"{readme}: no {begin} ... {end} section")
    head, rest = content.split(begin, 1)
    readme.write_text(f"{head}{begin}\n{text}{end}{rest.split(end, 1)[1]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--readme", action="store_true")
    parser.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-proxy", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backend:
        _loop_run(_backend(args.serve_backend))
        return 0
    if args.serve_proxy:
        _loop_run(_proxy(*args.serve_proxy))
        return 0
    text = table(measure(args), args)
    print(text)
    if args.readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
