"""DNS latency while the registry is written: what the journal's fsync costs the answers.

    python bench/writes.py                       # this tree: 20,000 qps, 0 and 100 writes/s
    python bench/writes.py --src /tmp/old --src .   # A/B: two kdns trees, runs alternated
    python bench/writes.py --storage journal --storage ephemeral   # A/B: journal or not

kdns serves the bench cluster (bench/gen.py, seed 1) from one core with its journal on
(`--data-dir` in a fresh directory on disk, SQLite with synchronous=FULL), and dnsperf
offers a fixed rate (`-Q`, default 20,000 qps) from the other core with a latency per
answer (`-v`). Meanwhile a writer thread flips headless pods' Ready condition through the
API at a fixed rate (`--writes`, paced, bounded by count): one merge PATCH of
`/api/v1/namespaces/NS/pods/NAME/status` per write, as a kubelet reports readiness; each
write commits the pod and its Service's EndpointSlice, and the API answers only once the
commit is journaled. A run with `--writes 0` first gives the same load without writes.

Per run: DNS latency p50/p99/p99.9/max and loss (dnsperf), kdns's CPU per answer, the
writes acknowledged and their HTTP reply time p50/p99. With `--sched`, the scheduler's
events are recorded meanwhile (bench/schedtrace.py) and the table says how long the event
loop's thread waited for its core, in milliseconds a second, and who held the core: the
journal's writer thread, another kdns thread, other processes. Each (tree, storage, write rate)
is run `--repeats` times, trees and storages alternated, and the medians are printed,
with the exact command line, as a Markdown table (and JSON with `--json FILE`). Nothing
here is a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import selectors
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import gen
import schedtrace
from common import LOOPBACK
from measure import NOISY, RetryBudget, dnsperf, percentile, quiet
from procs import Child, core_ticks, cpus, free_port, pin_threads
from servers import wait_answer

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def start(src: Path, manifests: Path, data_dir: Path | None, port: int, api_port: int, cpu: str, log: Path,
          env: dict[str, str] | None = None) -> Child:
    """kdns from the tree `src`, pinned to `cpu`, journal in `data_dir` (None: --ephemeral);
    `env` is added to its environment (a PYTHONPATH there goes before `src`)."""
    extra = env or {}
    path = os.pathsep.join(p for p in (extra.get("PYTHONPATH"), str(src)) if p)
    env = {**os.environ, **extra, "PYTHONPATH": path}
    storage = ["--data-dir", str(data_dir)] if data_dir is not None else ["--ephemeral"]
    argv = ["taskset", "-c", cpu, sys.executable, "-m", "kdns", "serve", "--manifests", str(manifests),
            "--dns-address", LOOPBACK, "--dns-port", str(port), "--api-address", LOOPBACK,
            "--api-port", str(api_port), "--upstream", "none", "--zones-dir", "none", "--workers", "1", *storage]
    return Child("kdns", argv, log, cwd=src, env=env)


def wait_api(api: str, kdns: Child, deadline_s: float = 60.0) -> None:
    """Return once kdns's API answers /readyz (SystemExit after `deadline_s`). kdns
    answers DNS before its API listens (kdns/app.py `_serve_api` imports aiohttp on a
    thread meanwhile): a write sent as soon as DNS answers can find the port closed."""
    limit = time.monotonic() + deadline_s
    while time.monotonic() < limit and kdns.alive():
        try:
            with urllib.request.urlopen(f"{api}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{Path(sys.argv[0]).stem}: the API at {api} did not answer /readyz\n{kdns.log_tail()}")


class Flips(threading.Thread):
    """What every bench writer is: a thread that flips pods' Ready condition through the
    API (`flip`), `rate` a second and `count` at most, and what it counts.

    `first`: how many flips earlier writers sent to the same kdns (their `sent`), so that
    this one goes on from there and every write is a change (a PATCH that changes
    nothing commits nothing). `stop` ends it early."""

    def __init__(self, name: str, pods: list[gen.Pod], rate: float, count: int, first: int) -> None:
        super().__init__(name=name, daemon=True)
        self.pods, self.rate, self.count, self.first = pods, rate, count, first
        self.acknowledged: list[float] = []  # seconds from send to the 2xx reply
        self.replied: list[float] = []  # time.monotonic() at each 2xx reply
        self.errors: list[str] = []
        self.sent = 0
        self.stop = threading.Event()


class Writer(Flips):
    """The flips from one client that waits for each reply before sending the next."""

    def __init__(self, api: str, pods: list[gen.Pod], rate: float, count: int, first: int = 0,
                 keep_alive: bool = False) -> None:
        super().__init__("bench writer", pods, rate, count, first)
        self.api = api
        # False: a new connection per write, as kubectl makes; True: one connection kept
        # open for every write, as the kubelet and controllers (client-go) keep theirs.
        self.keep_alive = keep_alive
        self._connection: http.client.HTTPConnection | None = None

    def run(self) -> None:
        begin = time.monotonic()
        try:
            for n in range(self.count):
                due = begin + n / self.rate
                if self.stop.wait(max(0.0, due - time.monotonic())):
                    return
                i = self.first + n
                self.sent += 1
                path, body = flip(self.pods, i)
                headers = {"Content-Type": "application/merge-patch+json", "Accept": "application/json"}
                sent = time.monotonic()
                try:
                    if self.keep_alive:
                        self._patch_on_kept_connection(path, body, headers)
                    else:
                        request = urllib.request.Request(f"{self.api}{path}", data=body, method="PATCH", headers=headers)
                        with urllib.request.urlopen(request, timeout=5) as response:
                            response.read()
                    now = time.monotonic()
                    self.acknowledged.append(now - sent)
                    self.replied.append(now)
                except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                    self.errors.append(str(exc))
                    if self._connection is not None:  # a broken connection: the next write opens another
                        self._connection.close()
                        self._connection = None
        finally:
            if self._connection is not None:
                self._connection.close()

    def _patch_on_kept_connection(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        if self._connection is None:
            url = urllib.parse.urlsplit(self.api)
            self._connection = http.client.HTTPConnection(url.hostname or LOOPBACK, url.port, timeout=5)
        self._connection.request("PATCH", path, body=body, headers=headers)
        response = self._connection.getresponse()
        response.read()
        if response.status >= 300:
            raise http.client.HTTPException(f"HTTP {response.status} {response.reason} for {path}")


def flip(pods: list[gen.Pod], i: int) -> tuple[str, bytes]:
    """The `i`th readiness flip over `pods` (the pods in turn; each round of them sets
    Ready to False, the next to True, and so on): the path and the merge-patch body."""
    pod = pods[i % len(pods)]
    ready = "False" if (i // len(pods)) % 2 == 0 else "True"
    body = json.dumps({"status": {"conditions": [{"type": "Ready", "status": ready}]}}).encode()
    return f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/status", body


def flip_request(api_port: int, pods: list[gen.Pod], i: int, *, close: bool = True) -> bytes:
    """The bytes of the `i`th flip (`flip`), the merge PATCH `Writer` sends, on a
    connection the server closes after replying (`close`) or keeps open."""
    path, body = flip(pods, i)
    closing = "Connection: close\r\n" if close else ""
    return (f"PATCH {path} HTTP/1.1\r\nHost: {LOOPBACK}:{api_port}\r\nContent-Type: application/merge-patch+json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n{closing}\r\n").encode() + body


class ConcurrentWriter(Flips):
    """`Writer`'s flips, `rate` a second and `count` at most, each on a connection of its
    own and sent when due, whether or not the replies to the ones before came: as many
    independent clients (kubelets reporting readiness) write.

    One thread and non-blocking sockets (selectors): a flip costs the client core a
    connect, a send and a read, not a urllib request, and the thread wakes only when a
    flip is due or a reply comes. An API that takes new connections in rounds under DNS
    load (kdns/api/rounds.py) answers a flip a round later; a client that waited for each
    reply (`Writer`) could then not send 100 a second."""

    def __init__(self, api_port: int, pods: list[gen.Pod], rate: float, count: int, first: int = 0) -> None:
        super().__init__("bench concurrent writer", pods, rate, count, first)
        self.api_port = api_port

    def run(self) -> None:
        with selectors.DefaultSelector() as selector:
            # Per open connection: what is left to send, what came back, when it was sent.
            open_: dict[socket.socket, tuple[list[bytes], bytearray, float]] = {}
            begin = time.monotonic()
            try:
                while not self.stop.is_set() and (self.sent < self.count or open_):
                    now = time.monotonic()
                    while self.sent < self.count and begin + self.sent / self.rate <= now:
                        self._open(selector, open_)
                    due = begin + self.sent / self.rate - time.monotonic() if self.sent < self.count else 0.1
                    for key, events in selector.select(min(max(due, 0.0), 0.1)):
                        self._step(selector, open_, key.fileobj, events)  # type: ignore[arg-type]
            finally:
                for sock in open_:
                    sock.close()

    def _open(self, selector: selectors.BaseSelector, open_: dict[socket.socket, tuple[list[bytes], bytearray, float]]) -> None:
        i = self.first + self.sent
        self.sent += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect((LOOPBACK, self.api_port))
        except BlockingIOError:
            pass
        except OSError as exc:
            self.errors.append(str(exc))
            sock.close()
            return
        open_[sock] = ([flip_request(self.api_port, self.pods, i)], bytearray(), time.monotonic())
        selector.register(sock, selectors.EVENT_WRITE)

    def _step(self, selector: selectors.BaseSelector, open_: dict[socket.socket, tuple[list[bytes], bytearray, float]],
              sock: socket.socket, events: int) -> None:
        pending, received, sent = open_[sock]
        try:
            if events & selectors.EVENT_WRITE and pending:
                done = sock.send(pending[0])
                pending[0] = pending[0][done:]
                if not pending[0]:
                    pending.clear()
                    selector.modify(sock, selectors.EVENT_READ)
                return
            data = sock.recv(65536)
            if data:
                received += data
                return
        except OSError as exc:
            self.errors.append(str(exc))
        selector.unregister(sock)
        sock.close()
        del open_[sock]
        if received.startswith(b"HTTP/1.1 2"):
            now = time.monotonic()
            self.acknowledged.append(now - sent)
            self.replied.append(now)
        elif received:
            self.errors.append(bytes(received.split(b"\r\n", 1)[0]).decode(errors="replace"))


JOURNAL, EPHEMERAL = "journal", "ephemeral"
START_ATTEMPTS = 3  # the machine is shared: a free port may be taken before kdns binds it


class KeptWriter(Flips):
    """`Writer`'s flips, `rate` a second and `count` at most, dealt in turn among
    `connections` clients that each keep one HTTP/1.1 connection open and send their next
    flip once it is due and the reply to their last has come (one request in flight each):
    as kubelets report readiness, each on its kept connection. A connection that fails is
    counted and opened again for the next flip."""

    def __init__(self, api_port: int, pods: list[gen.Pod], rate: float, count: int, first: int = 0,
                 connections: int = 4) -> None:
        super().__init__("bench kept writer", pods, rate, count, first)
        self.api_port = api_port
        self.connections = connections

    def run(self) -> None:
        clients = [_KeptClient() for _ in range(self.connections)]
        with selectors.DefaultSelector() as selector:
            begin = time.monotonic()
            try:
                # (until every flip dealt is answered or failed: a client's queued ones too)
                while not self.stop.is_set() and (self.sent < self.count or any(c.due or c.since for c in clients)):
                    while self.sent < self.count and begin + self.sent / self.rate <= time.monotonic():
                        clients[self.sent % len(clients)].due.append(self.first + self.sent)
                        self.sent += 1
                    for client in clients:
                        if client.due and not client.since:
                            self._send(selector, client)
                    due = begin + self.sent / self.rate - time.monotonic() if self.sent < self.count else 0.1
                    for key, _ in selector.select(min(max(due, 0.0), 0.1)):
                        self._read(selector, key.data)
            finally:
                for client in clients:
                    client.close(selector)

    def _send(self, selector: selectors.BaseSelector, client: _KeptClient) -> None:
        request = flip_request(self.api_port, self.pods, client.due.pop(0), close=False)
        try:
            if client.sock is None:
                client.sock = socket.create_connection((LOOPBACK, self.api_port), timeout=5)
                selector.register(client.sock, selectors.EVENT_READ, client)
            client.sock.sendall(request)  # (a flip's request fits the socket's buffer)
            client.since = time.monotonic()
        except OSError as exc:
            self.errors.append(str(exc))
            client.close(selector)

    def _read(self, selector: selectors.BaseSelector, client: _KeptClient) -> None:
        assert client.sock is not None
        try:
            data = client.sock.recv(65536)
        except OSError as exc:
            data, error = b"", str(exc)
        else:
            error = "the server closed the connection"
        if not data:
            self.errors.append(error)
            client.close(selector)
            return
        client.received += data
        head_end = client.received.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(client.received[:head_end]).decode(errors="replace")
        length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                       if line.lower().startswith("content-length:")), 0)
        if len(client.received) < head_end + 4 + length:
            return
        del client.received[: head_end + 4 + length]
        now = time.monotonic()
        if head.startswith("HTTP/1.1 2"):
            self.acknowledged.append(now - client.since)
            self.replied.append(now)
        else:
            self.errors.append(head.split("\r\n", 1)[0])
        client.since = 0.0


class _KeptClient:
    """One of `KeptWriter`'s clients: its connection (None until the first flip, or after
    one failed), the flips due to it, when its request in flight was sent (0: none) and
    what came back of the reply so far."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.due: list[int] = []
        self.since = 0.0
        self.received = bytearray()

    def close(self, selector: selectors.BaseSelector) -> None:
        if self.sock is not None:
            selector.unregister(self.sock)
            self.sock.close()
        self.sock, self.since, self.received = None, 0.0, bytearray()


# How a bench sends its writes (churn.py's and writepairs.py's `--writer`): each on a
# connection of its own, when due, as independent clients send them (`ConcurrentWriter`,
# the default); four clients each on a kept connection, as kubelets (`KeptWriter`); one
# client that waits for each reply before the next, a connection each, as a script of
# kubectl calls (`Writer`); or that client on one kept connection (`Writer`, keep_alive).
WRITERS = ("concurrent", "kubelets", "sequential", "keep-alive")


def new_writer(kind: str, api_port: int, pods: list[gen.Pod], rate: float, count: int,
               first: int = 0) -> Flips:
    """A writer of the `kind` WRITERS names (not started)."""
    if kind == "concurrent":
        return ConcurrentWriter(api_port, pods, rate, count, first)
    if kind == "kubelets":
        return KeptWriter(api_port, pods, rate, count, first)
    if kind not in WRITERS:
        raise ValueError(f"no such writer: {kind}")
    return Writer(f"http://{LOOPBACK}:{api_port}", pods, rate, count, first, keep_alive=kind == "keep-alive")


def one_run(*args: Any) -> dict[str, Any]:
    """`_one_run`, started again (on other ports) when kdns could not start."""
    for attempt in range(START_ATTEMPTS):
        try:
            return _one_run(*args)
        except StartError as exc:
            if attempt + 1 == START_ATTEMPTS:
                raise
            print(f"writes: {exc}; again", file=sys.stderr)
    raise AssertionError("unreachable")


def wait_quiet(cores: list[str], limit: float, busy: float = 0.1) -> float:
    """Wait (at most `limit` seconds) until each of `cores` was under `busy` busy for one
    second: on a shared machine, a run started then is less likely to be disturbed. The
    seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        before = [core_ticks(core) for core in cores]
        time.sleep(1.0)
        after = [core_ticks(core) for core in cores]
        if all((a[0] - b[0]) < busy * max(1, a[1] - b[1]) for b, a in zip(before, after, strict=True)):
            break
    return time.monotonic() - began


class StartError(RuntimeError):
    """kdns did not start."""


def _one_run(src: Path, storage: str, loop_slice_us: int, writes: int, args: argparse.Namespace, work: Path,
             queries: Path, manifests: Path, pods: list[gen.Pod], probe: dict[str, Any], server_cpu: str,
             client_cpu: str) -> dict[str, Any]:
    port, api_port = free_port(), free_port()
    data_dir = None if storage == EPHEMERAL else Path(tempfile.mkdtemp(prefix="kdns-journal-", dir=args.data_parent))
    kdns = start(src, manifests, data_dir, port, api_port, server_cpu, work / "kdns.log")
    try:
        started, detail = wait_answer(kdns, port, probe["name"], probe["type"], 120)
        if started is None:
            raise StartError(f"kdns did not answer: {detail}")
        wait_api(f"http://{LOOPBACK}:{api_port}", kdns)
        pin_threads(kdns.pid, server_cpu)
        if loop_slice_us:
            schedtrace.set_slice(kdns.pid, 1000 * loop_slice_us)
        if args.warmup > 0:
            # The same questions once before measuring, as bench/run.py's latency steps are
            # preceded by its throughput ones: a fresh kdns builds each distinct question's
            # reply on first sight, and that transient (what bench/churn.py's first windows
            # show) is not what the journal's effect on steady answers is about.
            dnsperf(port, queries, args.warmup, client_cpu, kdns.pid, work, rate=args.rate or None,
                    server_cpu=server_cpu)
        if args.wait_quiet:  # (after the warm-up: a quiet second just before the measured run)
            run_wait = wait_quiet([server_cpu, client_cpu], args.wait_quiet)
        writer = (Writer(f"http://{LOOPBACK}:{api_port}", pods, writes, int(writes * args.seconds), keep_alive=args.keep_alive)
                  if writes else None)
        if writer is not None:
            writer.start()
        # The recording starts with dnsperf and ends a second before it (perf stops its own
        # clock; its last events are written while dnsperf still runs).
        recording = (schedtrace.record(max(1.0, args.seconds - 1), work / "sched.data", client_cpu)
                     if args.sched else None)
        run = dnsperf(port, queries, args.seconds, client_cpu, kdns.pid, work, rate=args.rate or None,
                      verbose=bool(args.rate), server_cpu=server_cpu)
        if recording is not None:
            _, error = recording.communicate(timeout=60)
            if recording.returncode != 0:
                raise RuntimeError(f"perf record failed: {error.decode(errors='replace')[-500:]}")
            run["sched"] = schedtrace.analyse(work / "sched.data", kdns.pid, server_cpu)
            if args.keep_sched is not None:  # to read again: schedtrace.py DATA --pid PID --cpu CPU --threads ...
                args.keep_sched.mkdir(parents=True, exist_ok=True)
                kept = args.keep_sched / f"{src.name}-{storage}-{loop_slice_us}-{writes}-{kdns.pid}.data"
                shutil.move(work / "sched.data", kept)
                run["sched"]["kept"] = {"data": str(kept), "threads": sorted(int(t.name) for t in Path(f"/proc/{kdns.pid}/task").iterdir())}
            else:
                (work / "sched.data").unlink()
        if args.wait_quiet:
            run["waited_s"] = run_wait
        if writer is not None:
            writer.stop.set()
            writer.join(10)
            acked = sorted(writer.acknowledged)
            run["writes"] = {"rate": writes, "acknowledged": len(acked), "errors": writer.errors[:3],
                             "reply_ms": {"p50": 1000 * (percentile(acked, 50) or 0),
                                          "p99": 1000 * (percentile(acked, 99) or 0)}}
        return run
    finally:
        kdns.stop()
        if data_dir is not None:
            shutil.rmtree(data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", type=Path, help="a kdns source tree (repeat for A/B; default this one)")
    parser.add_argument("--rate", type=int, default=20000, help="dnsperf -Q (0: closed loop, throughput)")
    parser.add_argument("--writes", type=int, action="append", help="writes a second (repeatable; default 0 and 100)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of the same load before each measured run (0: none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storage", action="append", choices=(JOURNAL, EPHEMERAL),
                        help="kdns with --data-dir (journal) or --ephemeral (repeat for A/B; default journal)")
    parser.add_argument("--ephemeral", action="store_true", help="the same as --storage ephemeral: the control")
    parser.add_argument("--data-parent", default=str(REPO / "bench" / "out"), help="where journal directories go (on disk, not tmpfs)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--loop-slice-us", type=int, action="append",
                        help="give kdns's event loop thread this EEVDF slice (sched_setattr; 0: the kernel's; "
                             "repeat for A/B)")
    parser.add_argument("--keep-sched", type=Path, help="keep each run's scheduler recording (--sched) in this directory")
    parser.add_argument("--wait-quiet", type=float, default=0.0,
                        help="before each run, wait up to this many seconds for both cores to be idle for a second")
    parser.add_argument("--retries", type=int, default=0,
                        help=f"runs that may be made again when other processes took over {100 * NOISY:.0f} %% of a core "
                             "(measure.quiet: the less disturbed of the two is kept)")
    parser.add_argument("--sched", action="store_true",
                        help="record the scheduler's events during each run (perf; bench/schedtrace.py)")
    parser.add_argument("--keep-alive", action="store_true",
                        help="the writer keeps one HTTP connection open, as the kubelet does (default: one a write)")
    args = parser.parse_args(argv)
    sources = [s.resolve() for s in (args.src or [REPO])]
    rates = args.writes if args.writes is not None else [0, 100]
    slices = args.loop_slice_us or [0]
    storages = args.storage or [EPHEMERAL if args.ephemeral else JOURNAL]
    if args.ephemeral and EPHEMERAL not in storages:
        parser.error("--ephemeral with --storage journal: give --storage ephemeral instead")
    server_cpu, client_cpu, note = cpus()
    # This harness and its writer thread off kdns's core: unpinned, the writer's HTTP
    # client took kdns's core when the scheduler put it there.
    os.sched_setaffinity(0, {int(client_cpu)})
    Path(args.data_parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kdns-writes-") as tmp:
        work = Path(tmp)
        spec = gen.PRESETS["bench"]
        model = gen.generate(work / "cluster", spec, zones=False)
        pods = [p for p in gen.build(spec).pods if p.hostname]
        probe = next(s for s in model["sample"] if s["rcode"] == "NOERROR" and s["answer"])
        runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        budget = RetryBudget(args.retries)
        for repeat in range(args.repeats):
            for writes in rates:
                # Each A/B pair in the other order every other repeat: what a run leaves
                # behind (the disk's writeback, the caches) falls on both sides alike.
                pairs = [(src, storage, us) for src in sources for storage in storages for us in slices]
                for src, storage, us in pairs if repeat % 2 == 0 else reversed(pairs):
                    def run_once(src: Path = src, storage: str = storage, us: int = us,
                                 writes: int = writes) -> dict[str, Any]:
                        return one_run(src, storage, us, writes, args, work, Path(model["queries"]),
                                       work / "cluster" / "manifests", pods, probe, server_cpu, client_cpu)
                    run = quiet(run_once, budget)
                    label = f"{storage}, loop slice {us} µs" if us else storage
                    runs.setdefault((str(src), label, writes), []).append(run)
                    lat = run.get("latency_ms", {})
                    sched = run.get("sched")
                    print(f"writes: {src.name} {label} {writes}/s run {repeat + 1}: {run['qps']:.0f} qps, "
                          f"p99 {lat.get('p99') or 0:.2f} ms, {run.get('cpu_us_per_query') or 0:.2f} us CPU/answer, "
                          f"loss {run['loss_pct']:.2f} %, others {100 * (run.get('server_core_others') or 0):.0f} %"
                          + (f"; loop waited {sched['loop_wait_ms_s']:.1f} ms/s {sched['loop_wait_ms_s_by']}, "
                             f"the writer in {sched['writer_holds_s']:.0f}/s of its waits (p99 "
                             f"{sched['writer_hold_p99_us']:.0f} us, max {sched['writer_hold_max_us']:.0f} us), "
                             f"by others {sched['loop_wait_others']}, preempted {sched['loop_preempted_s']}/s, "
                             f"on CPU {sched['on_cpu_ms_s']} ms/s" if sched else ""),
                          file=sys.stderr)
    print(f"`python bench/writes.py {' '.join(argv if argv is not None else sys.argv[1:])}` ({note}; medians of "
          f"{args.repeats}, dnsperf {'-Q ' + str(args.rate) if args.rate else 'closed loop'}, {args.seconds:g} s)\n")
    sched_heads = (" loop's wait for its core ms/s | of it the writer | other kdns threads | other processes "
                   "| loop's wait p99 µs | loop preempted by the writer /s |") if args.sched else ""
    print("| tree | storage | writes/s | answers/s | DNS p50 ms | DNS p99 ms | DNS p99.9 ms | DNS max ms | loss % "
          "| CPU µs/answer | writes acked | write p99 ms | others on kdns's core |" + sched_heads)
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
          + " ---: |" * sched_heads.count("|"))
    summary = {}
    for (src, storage, writes), group in runs.items():
        def med(get: Any, group: list[dict[str, Any]] = group) -> float:
            values = [v for v in map(get, group) if v is not None]
            return statistics.median(values) if values else float("nan")
        row = {
            "qps": med(lambda r: r["qps"]),
            "p50": med(lambda r: r.get("latency_ms", {}).get("p50")),
            "p99": med(lambda r: r.get("latency_ms", {}).get("p99")),
            "p99.9": med(lambda r: r.get("latency_ms", {}).get("p99.9")),
            "max": med(lambda r: r.get("latency_ms", {}).get("max")),
            "loss": med(lambda r: r["loss_pct"]),
            "cpu_us": med(lambda r: r.get("cpu_us_per_query")),
            "acked": med(lambda r: r.get("writes", {}).get("acknowledged")),
            "write_p99": med(lambda r: r.get("writes", {}).get("reply_ms", {}).get("p99")),
            "others": med(lambda r: r.get("server_core_others")),
        }
        if args.sched:
            row.update({
                "loop_wait": med(lambda r: r["sched"]["loop_wait_ms_s"]),
                "by_writer": med(lambda r: r["sched"]["loop_wait_ms_s_by"].get("writer", 0.0)),
                "by_kdns": med(lambda r: r["sched"]["loop_wait_ms_s_by"].get("kdns", 0.0)),
                "by_others": med(lambda r: r["sched"]["loop_wait_ms_s_by"].get("others", 0.0)),
                "wait_p99": med(lambda r: r["sched"]["loop_wait_p99_us"]),
                "preempted": med(lambda r: r["sched"]["loop_preempted_s"].get("writer", 0.0)),
            })
        summary[f"{src}@{storage}@{writes}"] = {"runs": group, "median": row}
        print(f"| {Path(src).name} | {storage} | {writes} | {row['qps']:.0f} | {row['p50']:.2f} | {row['p99']:.2f} | "
              f"{row['p99.9']:.2f} | {row['max']:.1f} | {row['loss']:.2f} | {row['cpu_us']:.2f} | {row['acked']:.0f} "
              f"| {row['write_p99']:.1f} | {100 * row['others']:.0f} % |"
              + (f" {row['loop_wait']:.1f} | {row['by_writer']:.2f} | {row['by_kdns']:.2f} | {row['by_others']:.1f} "
                 f"| {row['wait_p99']:.0f} | {row['preempted']:.1f} |" if args.sched else ""))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
