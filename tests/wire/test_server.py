"""The UDP and TCP servers over real loopback sockets, and the `kdns` command around them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from dnslib import QTYPE, RR, A

from kdns.cli import main
from kdns.message import Answer, Query
from kdns.metrics import Metrics
from kdns.wire import mmsg
from kdns.wire.tcp import TcpServer
from kdns.wire.udp import UdpServer

TIMEOUT = 3.0


async def _slow(query: Query) -> Answer:
    await asyncio.sleep(0.2)
    return _records(query, 1)


async def _never(query: Query) -> Answer:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _broken(query: Query) -> Answer:
    await asyncio.sleep(0)
    raise RuntimeError("the upstream exploded")


def _records(query: Query, count: int) -> Answer:
    records = tuple(RR(query.qname, QTYPE.A, rdata=A(f"10.0.{i // 256}.{i % 256}"), ttl=5) for i in range(count))
    return Answer(answer=records, authoritative=True)


def handler(query: Query) -> Answer | Any:
    """A tiny handler: most names answer at once; a few await, fail, or misbehave on purpose."""
    name = query.name
    if name == "slow.test.":
        return _slow(query)
    if name == "never.test.":
        return _never(query)
    if name == "broken.test.":
        return _broken(query)
    if name == "boom.test.":
        raise RuntimeError("the handler exploded")
    if name == "junk.test.":
        return "not an answer"
    if name == "big.test.":
        return _records(query, 100)  # ~1650 bytes: over 1232, under 65535
    if name == "nx.test.":
        return Answer(rcode=3, authoritative=True)
    return _records(query, 1)


class Servers:
    """A UDP and a TCP server on one loopback port, on an event loop in a background thread."""

    def __init__(self, host: str = "127.0.0.1", loop_factory: Callable[[], Any] | None = None, **options: Any) -> None:
        self.host = host
        self.options = options
        self.port = 0
        self.udp: UdpServer | None = None
        self.tcp: TcpServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._loop_factory = loop_factory
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=self._loop_factory) as runner:
            runner.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        udp_options = {k: v for k, v in self.options.items() if k in ("timeout", "max_in_flight")}
        tcp_options = {k: v for k, v in self.options.items() if k not in udp_options}
        tcp_options.setdefault("query_timeout", udp_options.get("timeout", 4.0))
        # The port UDP got may be held for TCP (by some client's ephemeral port): try again.
        for attempt in range(8):
            try:
                async with (
                    UdpServer(handler, self.host, 0, **udp_options) as udp,
                    TcpServer(handler, self.host, udp.port, **tcp_options) as tcp,
                ):
                    self.udp, self.tcp, self.port = udp, tcp, udp.port
                    self._started.set_result(None)
                    await self._stop.wait()
                    return
            except OSError as exc:
                if attempt < 7:
                    continue
                self._started.set_exception(exc)
                return

    def start(self) -> Servers:
        self._thread.start()
        self._started.result(TIMEOUT)
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """fn() on the servers' loop thread, for reading their state."""

        async def run() -> Any:
            return fn()

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(TIMEOUT)

    def stop(self) -> float:
        """Stop both servers; how long that took."""
        began = time.monotonic()
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()
        return time.monotonic() - began


def _loop_factories() -> list[Any]:
    """(loop factory, whether UDP uses recvmmsg/sendmmsg where it can, or recvfrom/sendto)."""
    factories: list[Any] = [
        pytest.param((None, True), id="asyncio"),
        pytest.param((None, False), id="asyncio-recvfrom"),
    ]
    try:
        import uvloop
    except ImportError:
        return factories
    return [*factories, pytest.param((uvloop.new_event_loop, True), id="uvloop")]


@pytest.fixture(params=_loop_factories())
def servers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Servers]]:
    """Factory for Servers on asyncio's loop and on uvloop's (what `kdns serve` uses), stopped at teardown."""
    loop_factory, batched = request.param
    if not batched:
        monkeypatch.setattr(mmsg, "CALLS", None)
    started: list[Servers] = []

    def start(**options: Any) -> Servers:
        server = Servers(loop_factory=loop_factory, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def udp(server: Servers, name: str, rdtype: str = "A", **make: Any) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype, **make), server.host, port=server.port, timeout=TIMEOUT)


def tcp(server: Servers, name: str, rdtype: str = "A", **make: Any) -> dns.message.Message:
    return dns.query.tcp(dns.message.make_query(name, rdtype, **make), server.host, port=server.port, timeout=TIMEOUT)


def frame(message: dns.message.Message) -> bytes:
    data = message.to_wire()
    return struct.pack("!H", len(data)) + data


def read_frame(sock: socket.socket) -> dns.message.Message:
    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    (length,) = struct.unpack("!H", exactly(2))
    return dns.message.from_wire(exactly(length))


# --- UDP ---------------------------------------------------------------------------------


def test_udp_answers_at_once(servers: Callable[..., Servers]) -> None:
    """A handler that returns an Answer is answered over UDP with the query's ID and spelling."""
    server = servers()
    query = dns.message.make_query("Web.TEST.", "A")
    reply = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=TIMEOUT)
    assert reply.id == query.id
    assert reply.rcode() == dns.rcode.NOERROR
    assert str(reply.answer[0].name) == "Web.TEST."
    assert reply.flags & dns.flags.AA


def test_udp_answers_a_burst_from_many_clients(servers: Callable[..., Servers]) -> None:
    """Datagrams from several clients, more than one batch of them at a time, each get their own answer."""
    server = servers()
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
    try:
        for sock in clients:
            sock.settimeout(TIMEOUT)
        # Rounds of 96 datagrams: over one batch (64), well under what the socket buffers hold.
        for round_ in range(4):
            sent: list[dict[int, str]] = [{} for _ in clients]
            for n in range(round_ * 12, round_ * 12 + 12):
                for c, sock in enumerate(clients):
                    name = f"n{n % 5}.c{c}.test." if n % 3 else ("nx.test." if n % 2 else "SLOW.test.")
                    query = dns.message.make_query(name, "A", id=c * 1000 + n)
                    sent[c][query.id] = name
                    sock.sendto(query.to_wire(), ("127.0.0.1", server.port))
            for c, sock in enumerate(clients):
                replies = [dns.message.from_wire(sock.recv(65535)) for _ in sent[c]]
                assert {reply.id: reply.question[0].name.to_text() for reply in replies} == sent[c]
    finally:
        for sock in clients:
            sock.close()


def test_udp_batches_where_it_can() -> None:
    """On 64-bit little-endian Linux, UDP reads and writes with recvmmsg/sendmmsg."""
    import sys

    if sys.platform != "linux" or sys.byteorder != "little" or sys.maxsize < 2**32:
        pytest.skip("recvfrom/sendto here")
    assert mmsg.CALLS is not None


@pytest.mark.skipif(mmsg.CALLS is None, reason="recvfrom/sendto here")
def test_a_reply_sendmmsg_refuses_is_skipped_and_the_rest_still_go() -> None:
    """sendmmsg stops at a reply it cannot send: that one is skipped (logged) and the
    replies after it go in the next call, from the header after it."""
    with (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
          socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client):
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        client.settimeout(TIMEOUT)
        batch = mmsg.Batch(server.fileno(), 8, 512)
        for n in range(4):  # (loopback queues each before sendto returns)
            client.sendto(b"request %d" % n, server.getsockname())
        assert batch.receive() == 4
        # The second asker's port made 0: Linux refuses to send there (EINVAL).
        name = batch._names  # (the senders' sockaddrs, as recvmmsg wrote them)
        name[mmsg._NAME_SIZE + 2 : mmsg._NAME_SIZE + 4] = b"\x00\x00"
        for n in range(4):
            batch.queue(n, b"reply %d" % n)
        assert batch.flush() == 0
        assert {client.recv(512) for _ in range(3)} == {b"reply 0", b"reply 2", b"reply 3"}


def test_udp_awaits_async_answers(servers: Callable[..., Servers]) -> None:
    """A handler that returns an awaitable is awaited in a tracked task, then answered."""
    server = servers()
    reply = udp(server, "slow.test.")
    assert reply.rcode() == dns.rcode.NOERROR and len(reply.answer) == 1
    assert server.call(lambda: server.udp.in_flight) == 0


@pytest.mark.parametrize("name", ["boom.test.", "broken.test.", "junk.test."])
def test_udp_failures_are_servfail(servers: Callable[..., Servers], name: str) -> None:
    """A handler that raises, fails later or returns no Answer gives SERVFAIL, and the server carries on."""
    server = servers()
    assert udp(server, name).rcode() == dns.rcode.SERVFAIL
    assert udp(server, "ok.test.").rcode() == dns.rcode.NOERROR


def test_udp_timeout_is_servfail(servers: Callable[..., Servers]) -> None:
    """A handler that never answers gets SERVFAIL after the query timeout, not silence."""
    server = servers(timeout=0.2)
    began = time.monotonic()
    assert udp(server, "never.test.").rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - began < 2


def test_udp_drops_beyond_the_in_flight_cap(servers: Callable[..., Servers]) -> None:
    """With the cap reached, a further awaited query is dropped while immediate answers still flow."""
    server = servers(max_in_flight=1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        first, second = dns.message.make_query("slow.test.", "A"), dns.message.make_query("slow.test.", "A")
        sock.sendto(first.to_wire(), ("127.0.0.1", server.port))
        sock.sendto(second.to_wire(), ("127.0.0.1", server.port))
        assert udp(server, "ok.test.").rcode() == dns.rcode.NOERROR
        reply = dns.message.from_wire(sock.recv(65535))
        assert reply.id == first.id
    assert server.call(lambda: server.udp.dropped) == 1
    # /metrics counts it, by reason.
    metrics = Metrics()
    metrics.add_udp_drops(lambda: server.call(server.udp.drops))
    text = metrics.render()[0].decode()
    assert 'kdns_dns_udp_dropped_total{reason="in_flight"} 1.0' in text
    assert 'kdns_dns_udp_dropped_total{reason="send_buffer"} 0.0' in text


def test_udp_malformed_packets_do_not_stall_others(servers: Callable[..., Servers]) -> None:
    """Garbage, responses and truncated packets get FORMERR or nothing, and the next client is answered."""
    server = servers()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        for junk in (
            b"\x00",
            b"\xff" * 11,
            b"\x12\x34\x81\x00" + b"\x00" * 8,
            b"\xab\xcd\x01\x00\x00\x01" + b"\x00" * 6 + b"\x3fab",
        ):
            sock.sendto(junk, ("127.0.0.1", server.port))
        reply = dns.message.from_wire(sock.recv(65535))  # only the last one is worth a reply
        assert (reply.id, reply.rcode()) == (0xABCD, dns.rcode.FORMERR)
        assert udp(server, "ok.test.").rcode() == dns.rcode.NOERROR


def test_truncated_over_udp_then_complete_over_tcp(servers: Callable[..., Servers]) -> None:
    """An answer too big for UDP comes back with TC; the client's retry over TCP gets all of it."""
    server = servers()
    assert udp(server, "big.test.", use_edns=0, payload=4096).flags & dns.flags.TC
    query = dns.message.make_query("big.test.", "A", use_edns=0, payload=4096)
    reply, used_tcp = dns.query.udp_with_fallback(query, "127.0.0.1", port=server.port, timeout=TIMEOUT)
    assert used_tcp
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 100


def test_udp_over_ipv6(servers: Callable[..., Servers]) -> None:
    """The servers bind and answer on ::1 too."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = servers(host="::1")
    except OSError:
        pytest.skip("::1 cannot be bound here")
    assert udp(server, "ok.test.").rcode() == dns.rcode.NOERROR
    assert tcp(server, "ok.test.").rcode() == dns.rcode.NOERROR


def test_stop_cancels_queries_in_flight(servers: Callable[..., Servers]) -> None:
    """Stopping with awaited queries open cancels them at once and leaves no task or socket behind."""
    server = servers()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(dns.message.make_query("never.test.", "A").to_wire(), ("127.0.0.1", server.port))
        deadline = time.monotonic() + TIMEOUT
        while server.call(lambda: server.udp.in_flight) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.stop() < 1


def test_reuse_port_lets_two_servers_share_a_port() -> None:
    """With reuse_port, a second UDP (and TCP) server binds the port the first has; without, it cannot."""
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT here")

    async def scenario() -> None:
        async with UdpServer(handler, "127.0.0.1", 0, reuse_port=True) as first:
            async with UdpServer(handler, "127.0.0.1", first.port, reuse_port=True) as second:
                assert second.port == first.port
                query = dns.message.make_query("ok.test.", "A")
                reply = await dns.asyncquery.udp(query, "127.0.0.1", port=first.port, timeout=TIMEOUT)
                assert reply.rcode() == dns.rcode.NOERROR
            with pytest.raises(OSError, match=r"(?i)address already in use"):
                async with UdpServer(handler, "127.0.0.1", first.port):
                    pass
        # TCP on a port of its own: the UDP port's number may be some TCP client's port.
        async with TcpServer(handler, "127.0.0.1", 0, reuse_port=True) as tcp_first:
            async with TcpServer(handler, "127.0.0.1", tcp_first.port, reuse_port=True) as tcp_second:
                assert tcp_second.port == tcp_first.port
            with pytest.raises(OSError, match=r"(?i)address already in use"):
                async with TcpServer(handler, "127.0.0.1", tcp_first.port):
                    pass

    asyncio.run(scenario())


# --- TCP ---------------------------------------------------------------------------------


def test_tcp_answers(servers: Callable[..., Servers]) -> None:
    """A query over TCP is answered with the same ID."""
    server = servers()
    reply = tcp(server, "ok.test.")
    assert reply.rcode() == dns.rcode.NOERROR and len(reply.answer) == 1


def test_tcp_pipelining_answers_out_of_order(servers: Callable[..., Servers]) -> None:
    """Queries sent back to back on one connection are all answered; an immediate one overtakes an awaited one."""
    server = servers()
    slow = dns.message.make_query("slow.test.", "A")
    fast = [dns.message.make_query(f"n{i}.test.", "A") for i in range(3)]
    nx = dns.message.make_query("nx.test.", "A")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(frame(m) for m in (slow, *fast, nx)))
        replies = [read_frame(sock) for _ in range(5)]
    assert [r.id for r in replies] == [*(m.id for m in fast), nx.id, slow.id]
    assert replies[3].rcode() == dns.rcode.NXDOMAIN
    assert replies[4].rcode() == dns.rcode.NOERROR


def test_tcp_answers_after_client_half_close(servers: Callable[..., Servers]) -> None:
    """A client that sends its queries and shuts down its side still gets every answer."""
    server = servers()
    queries = [dns.message.make_query("slow.test.", "A"), dns.message.make_query("ok.test.", "A")]
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(frame(m) for m in queries))
        sock.shutdown(socket.SHUT_WR)
        replies = {read_frame(sock).id for _ in queries}
        assert sock.recv(1) == b""
    assert replies == {m.id for m in queries}


@pytest.mark.parametrize("prefix", [b"\x00\x00", b"\x00\x05hello"], ids=["zero length", "shorter than a header"])
def test_tcp_malformed_length_closes(servers: Callable[..., Servers], prefix: bytes) -> None:
    """A length too short to hold a DNS header closes the connection; other clients are unaffected."""
    server = servers()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(prefix)
        assert sock.recv(1) == b""
    assert tcp(server, "ok.test.").rcode() == dns.rcode.NOERROR


def test_tcp_formerr_keeps_the_connection(servers: Callable[..., Servers]) -> None:
    """A well-framed but malformed message gets FORMERR and the connection stays usable."""
    server = servers()
    bad = b"\xab\xcd\x01\x00\x00\x01" + b"\x00" * 6 + b"\x3fab"
    good = dns.message.make_query("ok.test.", "A")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(struct.pack("!H", len(bad)) + bad + frame(good))
        first, second = read_frame(sock), read_frame(sock)
    assert (first.id, first.rcode()) == (0xABCD, dns.rcode.FORMERR)
    assert (second.id, second.rcode()) == (good.id, dns.rcode.NOERROR)


def test_tcp_idle_connections_are_closed(servers: Callable[..., Servers]) -> None:
    """A connection that sends nothing is closed after the idle timeout."""
    server = servers(idle_timeout=0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        began = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - began < 2


def test_tcp_connections_beyond_the_cap_are_closed(servers: Callable[..., Servers]) -> None:
    """Past max_connections a new connection is closed at once; the open one keeps working."""
    server = servers(max_connections=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as first:
        first.sendall(frame(dns.message.make_query("ok.test.", "A")))
        read_frame(first)
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as second:
            assert second.recv(1) == b""
        first.sendall(frame(dns.message.make_query("ok.test.", "A")))
        assert read_frame(first).rcode() == dns.rcode.NOERROR


def test_tcp_timeout_is_servfail(servers: Callable[..., Servers]) -> None:
    """An awaited answer that never comes is SERVFAIL over TCP too."""
    server = servers(timeout=0.2)
    assert tcp(server, "never.test.").rcode() == dns.rcode.SERVFAIL


def test_stop_closes_open_tcp_connections(servers: Callable[..., Servers]) -> None:
    """Stopping closes connections that are still open, promptly."""
    server = servers()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(frame(dns.message.make_query("ok.test.", "A")))
        read_frame(sock)
        assert server.stop() < 1
        assert sock.recv(1) == b""


# --- the kdns command ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["serve", "--dns-port", "x"], {}, "--dns-port 'x': not an integer"),
        (["serve", "--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
        (["serve", "--pods", "sometimes"], {}, "invalid choice: 'sometimes'"),
        (["serve", "--ttl", "9999"], {}, "--ttl '9999': must be between 0 and 3600"),
        (["serve"], {"KDNS_DNS_PORT": "70000"}, "KDNS_DNS_PORT '70000': must be between 0 and 65535"),
        (["serve"], {"KDNS_SERVICE_CIDR": "10.0.0.0/33"},
         "KDNS_SERVICE_CIDR: service CIDR '10.0.0.0/33': '10.0.0.0/33' does not appear to be an IPv4 or IPv6 network"),
        (["serve", "--upstream", "resolver.example"], {}, "not an IP address"),
        (["serve", "--upstream", "none", "--upstream", "10.0.0.2"], {}, "`none` cannot be combined"),
        ([], {}, "a command is required"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad flag or KDNS_* value is exit code 2 and a line on stderr naming it, without a traceback."""
    assert main(argv, environ) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("kdns: error: ")


def test_flag_wins_over_environment(capsys: pytest.CaptureFixture[str]) -> None:
    """The flag's value is used when both the flag and its KDNS_* twin are set."""
    assert main(["serve", "--dns-port", "x"], {"KDNS_DNS_PORT": "y"}) == 2
    assert "--dns-port 'x'" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`kdns --version` prints the version and exits 0."""
    from kdns import __version__

    assert main(["--version"], {}) == 0
    assert capsys.readouterr().out.strip() == f"kdns {__version__}"


def test_sigterm_stops_the_process_with_exit_0(kdns_process: Callable[..., Any]) -> None:
    """The real `python -m kdns serve` answers on the port it logged, and SIGTERM stops it with exit code 0."""
    process = kdns_process()
    reply = process.resolve("example.org.", "A")
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.RA
    assert process.stop() == 0


def test_bad_manifest_exits_1_with_one_line(kdns_process: Callable[..., Any], tmp_path: Any) -> None:
    """A manifest that does not load is exit code 1 and one line naming the file, before any port is bound."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: nope\n")
    done = subprocess.run(  # noqa: PLW1510 (the exit code is what is tested)
        [sys.executable, "-m", "kdns", "serve", "--dns-port", "0", "--ephemeral", "--manifests", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[2])},
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [(f'kdns: error: {bad}: document 1: Service "web" is invalid: spec.ports[0].port: '
                      'Invalid value: "nope": must be an integer')]
    assert "serving DNS" not in done.stderr


# --- the fixtures other tests use -------------------------------------------------------

CLUSTER = """
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.80
  ports: [{name: http, port: 80}]
"""


def test_in_process_server_answers_and_sees_writes(kdns_server: Callable[..., Any]) -> None:
    """kdns_server serves the given manifests, and a write through `.write` is answered at once."""
    server = kdns_server(CLUSTER)
    reply = server.resolve("Web.default.svc.cluster.local.", "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [r.address for r in reply.answer[0]] == ["10.96.0.80"]
    assert str(reply.answer[0].name) == "Web.default.svc.cluster.local."

    def add_service(store: Any) -> None:
        with store.transaction() as txn:
            txn.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "api", "namespace": "default"},
                    "spec": {"clusterIP": "10.96.0.81", "ports": [{"port": 443}]},
                }
            )

    server.write(add_service)
    reply = server.resolve("api.default.svc.cluster.local.", "A", tcp=True)
    assert [r.address for r in reply.answer[0]] == ["10.96.0.81"]
    assert server.resolve("example.org.", "A").rcode() == dns.rcode.REFUSED


def test_in_process_server_refuses_a_bad_manifest(kdns_server: Callable[..., Any]) -> None:
    """A manifest that does not load stops kdns_server from starting, with the file and document named."""
    from kdns.errors import KdnsError

    with pytest.raises(KdnsError, match=r"manifest-0\.yaml: document 2: .*spec\.ports\[0\]\.port"):
        kdns_server(CLUSTER.replace("port: 80", "port: eighty"))


def test_tcp_port_taken_is_retried_on_another_port(
    kdns_server: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With port 0, if TCP cannot have the port UDP got, kdns binds both again on a new port."""
    import errno

    refused: list[int] = []
    enter = TcpServer.__aenter__

    async def busy_once(self: TcpServer) -> TcpServer:
        if not refused:
            refused.append(self.requested_port)
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return await enter(self)

    monkeypatch.setattr(TcpServer, "__aenter__", busy_once)
    server = kdns_server(CLUSTER)
    assert refused and server.port
    assert server.resolve("web.default.svc.cluster.local.", "A", tcp=True).rcode() == dns.rcode.NOERROR
    assert server.resolve("web.default.svc.cluster.local.", "A").rcode() == dns.rcode.NOERROR


def test_process_serves_the_example_cluster(kdns_process: Callable[..., Any]) -> None:
    """`kdns serve` with no manifests flag serves the example cluster in zones/."""
    from kdns.config import Settings

    if not Settings().manifests:
        pytest.skip("no example cluster in this checkout")
    process = kdns_process(manifests=None)
    reply = process.resolve("cluster.local.", "SOA", tcp=True)
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
