"""Real DNS servers for tests to forward to, on loopback addresses 127.0.0.2x.

* `UpstreamServer`: a small dnspython server (UDP and TCP on one port, threads) that
  answers from a zone and records every query it receives, so a test can say "the
  upstream saw one query". Its `mode` makes it misbehave on purpose: go silent, answer
  SERVFAIL or REFUSED, truncate every UDP reply, answer with the wrong id, send a reply
  whose last record is cut short (garbled), or relay to another server (to build a
  forwarding loop).
* `KnotServer`: Debian's knotd with a generated configuration, started and stopped by
  PID: a real authoritative server written by other people.
* `HandlerFrontend`: serves an async kdns handler over UDP, a minimal stand-in for
  `kdns/wire/udp.py` used to close a forwarding loop back into a Forwarder.

Linux routes all of 127.0.0.0/8 to the loopback interface, so each server can have its
own address; 127.0.0.53 is left alone (systemd-resolved). Ports are chosen by the
kernel (port 0) where the server allows it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import socketserver
import struct
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from dnslib import RR, DNSRecord

from kdns.message import Answer, Query

MODES = ("answer", "silent", "servfail", "refused", "truncate", "mismatch", "garbled", "relay")
# Every blocking wait in this module is bounded by this, in seconds.
WAIT = 5.0

ZONE = """\
$TTL 300
@       IN SOA  ns1 hostmaster 2024010101 3600 600 86400 60
@       IN NS   ns1
ns1     IN A    127.0.0.21
www     IN A    192.0.2.1
www     IN AAAA 2001:db8::1
short   30 IN A 192.0.2.30
alias   IN CNAME www
"""


@dataclass(frozen=True, slots=True)
class Received:
    """One query a server received."""

    transport: str
    qname: str
    qtype: str


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same (host, port); port 0 picks one free for both."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            return udp, tcp
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
    raise OSError(f"no port free for both UDP and TCP on {host}")


def free_port(host: str) -> int:
    """A port free for UDP and TCP on `host` now, for servers that cannot bind port 0."""
    udp, tcp = _bind_pair(host, 0)
    port = udp.getsockname()[1]
    udp.close()
    tcp.close()
    return port


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.upstream._reply(data, "udp")  # type: ignore[attr-defined]
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TCPHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.connection.settimeout(WAIT)
        for _ in range(1000):  # RFC 7766 pipelining: several queries per connection
            try:
                header = self.rfile.read(2)
                if len(header) < 2:
                    return
                (length,) = struct.unpack("!H", header)
                data = self.rfile.read(length)
            except OSError:
                return
            reply = self.server.upstream._reply(data, "tcp")  # type: ignore[attr-defined]
            if reply is not None:
                self.wfile.write(struct.pack("!H", len(reply)) + reply)


class _UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = False
    block_on_close = True


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True


class UpstreamServer:
    """A real DNS server on `host` (UDP and TCP), answering from one zone, counting queries.

    Use as a context manager; `stop()` may also be called early (to take the upstream
    away) and is idempotent. `mode` may be changed while it runs.
    """

    def __init__(
        self,
        zone_text: str = ZONE,
        origin: str = "example.test.",
        *,
        host: str = "127.0.0.21",
        port: int = 0,
        mode: str = "answer",
        delay: float = 0.0,
        relay_to: tuple[str, int] | None = None,
    ) -> None:
        self.zone = dns.zone.from_text(zone_text, origin=origin, relativize=False)
        self.host = host
        self.port = port
        self.mode = mode
        self.delay = delay
        self.relay_to = relay_to
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
        self._mode = mode

    @property
    def where(self) -> str:
        """The server as a kdns upstream string, `ADDR:PORT`."""
        return f"{self.host}:{self.port}"

    def __enter__(self) -> UpstreamServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        udp, tcp = _bind_pair(self.host, self.port)
        self.port = udp.getsockname()[1]
        udp_server = _UDPServer((self.host, self.port), _UDPHandler, bind_and_activate=False)
        udp_server.socket.close()
        udp_server.socket = udp
        tcp_server = _TCPServer((self.host, self.port), _TCPHandler, bind_and_activate=False)
        tcp_server.socket.close()
        tcp_server.socket = tcp
        tcp.listen(16)
        servers: tuple[socketserver.BaseServer, ...] = (udp_server, tcp_server)
        for server in servers:
            server.upstream = self  # type: ignore[attr-defined]
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving and close both sockets; queries sent afterwards go unanswered."""
        servers, self._servers = self._servers, []
        threads, self._threads = self._threads, []
        for server in servers:
            server.shutdown()
            server.server_close()  # joins the handler threads
        for thread in threads:
            thread.join(WAIT)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def count(
        self, qname: str | None = None, qtype: str | None = None, transport: str | None = None
    ) -> int:
        """How many queries arrived, optionally only those for `qname`, `qtype`, `transport`."""
        return sum(
            1
            for r in self.received
            if (qname is None or r.qname == qname.lower())
            and (qtype is None or r.qtype == qtype)
            and (transport is None or r.transport == transport)
        )

    def _reply(self, wire: bytes, transport: str) -> bytes | None:
        """The reply to one query message, or None to send nothing."""
        try:
            query = dns.message.from_wire(wire)
            question = query.question[0]
        except (dns.exception.DNSException, IndexError):  # a server drops what it cannot read
            return None
        with self._lock:
            self._received.append(
                Received(
                    transport,
                    question.name.to_text().lower(),
                    dns.rdatatype.to_text(question.rdtype),
                )
            )
        if self.delay:
            time.sleep(self.delay)
        mode = self.mode
        if mode == "silent":
            return None
        if mode == "relay":
            assert self.relay_to is not None
            host, port = self.relay_to
            try:
                return dns.query.udp(query, host, port=port, timeout=WAIT).to_wire()
            except (dns.exception.DNSException, OSError):  # what a forwarding server would say
                response = dns.message.make_response(query)
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
        response = dns.message.make_response(query)
        if mode in ("servfail", "refused"):
            response.set_rcode(dns.rcode.SERVFAIL if mode == "servfail" else dns.rcode.REFUSED)
            return response.to_wire()
        self._answer(question.name, question.rdtype, response)
        if mode == "mismatch":
            response.id = (query.id + 1) & 0xFFFF
        if mode == "garbled":
            return response.to_wire()[:-2]  # the right ID and question; the last RDATA cut short
        if transport == "udp":
            # RFC 1035 4.2.1 / RFC 6891 6.2.3: a reply larger than the asker takes is
            # truncated, TC set; mode "truncate" does that to every UDP reply.
            limit = max(512, query.payload) if query.edns >= 0 else 512
            wire_out = response.to_wire()
            if mode == "truncate" or len(wire_out) > limit:
                response.answer.clear()
                response.authority.clear()
                response.additional.clear()
                response.flags |= dns.flags.TC
            else:
                return wire_out
        return response.to_wire()

    def _answer(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, response: dns.message.Message
    ) -> None:
        """Authoritative data from the zone: records, CNAME, NODATA or NXDOMAIN with the SOA."""
        origin = self.zone.origin
        assert origin is not None
        if not qname.is_subdomain(origin):
            response.set_rcode(dns.rcode.REFUSED)
            return
        response.flags |= dns.flags.AA
        node = self.zone.get_node(qname)
        if node is not None:
            for wanted in (rdtype, dns.rdatatype.RdataType.CNAME):
                rdataset = node.get_rdataset(dns.rdataclass.IN, wanted)
                if rdataset is not None:
                    rrset = dns.rrset.RRset(qname, dns.rdataclass.IN, wanted)
                    rrset.update(rdataset)
                    response.answer.append(rrset)
                    return
        elif not any(name.is_subdomain(qname) for name in self.zone.nodes):
            response.set_rcode(dns.rcode.NXDOMAIN)
        soa = self.zone.get_rdataset(origin, dns.rdatatype.SOA)
        assert soa is not None
        rrset = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.SOA)
        rrset.update(soa)
        rrset.ttl = min(soa.ttl, soa[0].minimum)  # RFC 2308 section 3
        response.authority.append(rrset)


def knotd_path() -> str | None:
    """Where knotd is, or None (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("knotd") or shutil.which("knotd", path="/usr/sbin:/usr/local/sbin")


class KnotServer:
    """Debian's knotd serving `zones` ({origin: zone text}) on host@port, run as this user.

    Everything it writes (config, zone files, run directory, database) is under
    `directory`. Started as a child process and stopped by its PID, nothing else.
    """

    def __init__(
        self, directory: Path, zones: Mapping[str, str], *, host: str = "127.0.0.23"
    ) -> None:
        self.directory = directory
        self.zones = dict(zones)
        self.host = host
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: object = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> KnotServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _config(self) -> Path:
        run, db, zones = (self.directory / d for d in ("run", "db", "zones"))
        for d in (run, db, zones):
            d.mkdir(parents=True, exist_ok=True)
        entries = []
        for origin, text in self.zones.items():
            (zones / f"{origin.rstrip('.')}.zone").write_text(text)
            entries.append(f"  - domain: {origin}\n    file: {origin.rstrip('.')}.zone\n")
        config = self.directory / "knot.conf"
        config.write_text(
            "server:\n"
            f'    rundir: "{run}"\n'
            f"    listen: {self.host}@{self.port}\n"
            "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
            f'database:\n    storage: "{db}"\n'
            f'control:\n    listen: "{run}/knot.sock"\n'
            "log:\n  - target: stderr\n    any: info\n"
            "template:\n  - id: default\n"
            f'    storage: "{zones}"\n'
            "    zonefile-sync: -1\n    journal-content: none\n"
            "zone:\n" + "".join(entries)
        )
        return config

    def start(self) -> None:
        knotd = knotd_path()
        if knotd is None:
            raise FileNotFoundError("knotd is not installed (Debian package knot)")
        self.port = free_port(self.host)
        config = self._config()
        log = open(self.directory / "knotd.log", "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.process = subprocess.Popen(
            [knotd, "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        """Until every zone answers its SOA: at most WAIT seconds, in 0.05 s steps."""
        assert self.process is not None
        pending = list(self.zones)
        deadline = time.monotonic() + WAIT
        while pending and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"knotd exited {self.process.returncode}: {self.log_text()}")
            query = dns.message.make_query(pending[0], dns.rdatatype.SOA)
            try:
                reply = dns.query.udp(query, self.host, port=self.port, timeout=0.05)
                if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                    pending.pop(0)
                    continue
            except (dns.exception.Timeout, OSError):
                pass
            time.sleep(0.05)
        if pending:
            raise RuntimeError(f"knotd did not serve {pending} within {WAIT}s: {self.log_text()}")

    def log_text(self) -> str:
        path = self.directory / "knotd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM the knotd this object started (by its PID), SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(WAIT)
        log, self._log = self._log, None
        if log is not None:
            log.close()  # type: ignore[attr-defined]


Handler = Callable[[Query], Awaitable[Answer]]


class HandlerFrontend(asyncio.DatagramProtocol):
    """Serves a kdns handler over UDP on host:port 0: dnslib in, Answer out.

    A stand-in for kdns's own listener, just enough to point a resolver at a Forwarder.
    Use `async with HandlerFrontend(handler) as frontend:`; `frontend.port` is bound.
    """

    def __init__(self, handler: Handler, host: str = "127.0.0.24") -> None:
        self.handler = handler
        self.host = host
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> HandlerFrontend:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._respond(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respond(self, data: bytes, addr: tuple[str, int]) -> None:
        request = DNSRecord.parse(data)
        query = Query(
            id=request.header.id,
            qname=str(request.q.qname),
            qtype=request.q.qtype,
            qclass=request.q.qclass,
            rd=bool(request.header.rd),
        )
        answer = await self.handler(query)
        reply = request.reply(ra=int(answer.recursion_available), aa=int(answer.authoritative))
        reply.header.rcode = answer.rcode
        for section, records in (
            (reply.add_answer, answer.answer),
            (reply.add_auth, answer.authority),
            (reply.add_ar, answer.additional),
        ):
            for rr in records:
                section(RR(rr.rname, rr.rtype, rr.rclass, rr.ttl, rr.rdata))
        if self._transport is not None:
            self._transport.sendto(reply.pack(), addr)
