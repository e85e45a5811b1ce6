"""The API's listening socket (kdns.api.rounds): new connections, and the requests of kept
ones, in rounds while DNS keeps the event loop busy, at once otherwise; what goes out (a
watch) never held back; TLS through it; a stop with connections waiting; and the load
measure that decides.

The API servers here are real (aiohttp on a loopback port, kdns's app) and told whether the
loop is busy (`busy`, start_api's seam); tests/e2e/test_api_rounds.py makes a real kdns
busy with real DNS load instead.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from kdns.api.http import start_api
from kdns.api.rounds import (
    BUSY_QUERY_RATE,
    BUSY_SHARE,
    OPEN_S,
    SAMPLE_S,
    LoopLoad,
    stolen_ticks,
)
from kdns.cli import _parser, settings_from
from kdns.config import ConfigError, Settings
from tests.api.conftest import Api

ROUND = 0.5  # long enough that "waited for the round" and "answered at once" never meet


def _livez(api: Api) -> tuple[int, float]:
    """GET /livez on a connection of its own: the status and the seconds it took."""
    began = time.monotonic()
    reply = api.request("GET", "/livez")
    return reply.status, time.monotonic() - began


def test_a_new_connection_waits_for_the_round_while_busy(api_server: Callable[..., Api]) -> None:
    api = api_server(accept_round=ROUND, busy=lambda: True)
    status, took = _livez(api)
    assert status == 200
    assert took >= ROUND * 0.9


def test_connections_that_come_during_a_round_are_taken_together(api_server: Callable[..., Api]) -> None:
    """Three clients 0.1 s apart: the first starts the round, and all three are answered
    when it ends, together."""
    api = api_server(accept_round=ROUND, busy=lambda: True)
    done: list[float] = []
    statuses: list[int] = []

    def client() -> None:
        status, _ = _livez(api)
        statuses.append(status)
        done.append(time.monotonic())

    began = time.monotonic()
    threads = []
    for _ in range(3):
        thread = threading.Thread(target=client)
        thread.start()
        threads.append(thread)
        time.sleep(0.1)
    for thread in threads:
        thread.join(10)
    assert statuses == [200, 200, 200]
    assert min(done) - began >= ROUND * 0.9
    assert max(done) - min(done) < ROUND / 2


def test_not_busy_a_connection_is_taken_at_once(api_server: Callable[..., Api]) -> None:
    api = api_server(accept_round=ROUND, busy=lambda: False)
    status, took = _livez(api)
    assert status == 200
    assert took < ROUND / 2


def test_no_round_takes_connections_at_once_however_busy(api_server: Callable[..., Api]) -> None:
    api = api_server(accept_round=0.0, busy=lambda: True)
    status, took = _livez(api)
    assert status == 200
    assert took < ROUND / 2


def _timed_livez(connection: http.client.HTTPConnection) -> float:
    """GET /livez on `connection` (kept open): the seconds it took."""
    began = time.monotonic()
    connection.request("GET", "/livez")
    response = connection.getresponse()
    assert response.status == 200
    assert response.read() == b"ok"
    return time.monotonic() - began


def test_a_kept_connection_waits_for_the_round_while_busy(api_server: Callable[..., Api]) -> None:
    """A kubelet's or client-go's kept connection: its first request goes on with the
    round that took the connection (one round, not two); each later one waits for a
    round of its own."""
    api = api_server(accept_round=ROUND, busy=lambda: True)
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        assert ROUND * 0.9 <= _timed_livez(connection) < ROUND * 1.5
        for pause in (OPEN_S * 10, ROUND * 1.2):  # (within OPEN_S of the reply it would go on at once)
            time.sleep(pause)
            assert ROUND * 0.9 <= _timed_livez(connection) < ROUND * 1.5
    finally:
        connection.close()


def test_not_busy_a_kept_connection_is_read_at_once(api_server: Callable[..., Api]) -> None:
    busy = [True]
    api = api_server(accept_round=ROUND, busy=lambda: busy[0])
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        _timed_livez(connection)
        busy[0] = False
        time.sleep(ROUND * 1.2)
        assert _timed_livez(connection) < ROUND / 2
    finally:
        connection.close()


def test_kept_connections_and_new_ones_go_on_together_when_the_round_ends(api_server: Callable[..., Api]) -> None:
    """Three kept connections and a new one, 0.1 s apart while busy: the first request
    starts a round and all four are answered when it ends."""
    api = api_server(accept_round=ROUND, busy=lambda: True)
    kept = [http.client.HTTPConnection("127.0.0.1", api.port, timeout=10) for _ in range(3)]
    try:
        for connection in kept:
            connection.connect()
        time.sleep(ROUND * 2.5)  # taken by the round the connections started, and a round past it
        done: list[float] = []

        def on(connection: http.client.HTTPConnection | None) -> None:
            if connection is None:
                _livez(api)
            else:
                _timed_livez(connection)
            done.append(time.monotonic())

        began = time.monotonic()
        threads = []
        for connection in (*kept, None):
            thread = threading.Thread(target=on, args=(connection,))
            thread.start()
            threads.append(thread)
            time.sleep(0.1)
        for thread in threads:
            thread.join(10)
        assert len(done) == 4
        assert min(done) - began >= ROUND * 0.9
        assert max(done) - min(done) < ROUND / 2
    finally:
        for connection in kept:
            connection.close()


def test_a_kept_connection_over_tls_waits_for_the_round(api_server: Callable[..., Api]) -> None:
    api = api_server(tls=True, accept_round=ROUND, busy=lambda: True)
    assert api.ca_file is not None
    context = ssl.create_default_context(cafile=str(api.ca_file))
    connection = http.client.HTTPSConnection("127.0.0.1", api.port, timeout=10, context=context)
    try:
        _timed_livez(connection)
        time.sleep(ROUND * 1.2)
        assert _timed_livez(connection) >= ROUND * 0.9
    finally:
        connection.close()


def test_a_client_that_leaves_while_its_request_waits(api_server: Callable[..., Api],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """It costs only itself: its connection's reading is paused, so the server learns it
    is gone only when the round lets the request through and the reply finds nobody;
    nothing is logged as an error, and the next client is served."""
    caplog.set_level(logging.WARNING)
    api = api_server(accept_round=ROUND, busy=lambda: True)
    client = socket.create_connection(("127.0.0.1", api.port), timeout=10)
    try:
        client.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        client.settimeout(10)
        assert client.recv(100).startswith(b"HTTP/1.1 200")
        time.sleep(ROUND * 1.2)
        client.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")  # held...
    finally:
        client.close()  # ... and gone before the round ends
    status, _ = _livez(api)  # (taken when that round ends)
    assert status == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_watch_is_not_held_back(api_server: Callable[..., Api]) -> None:
    """Only what comes in waits: a watch's events go out as the commits happen."""
    api = api_server(accept_round=ROUND, busy=lambda: True)
    with api.watch("/api/v1/namespaces?watch=1&resourceVersion=0") as stream:
        while (event := stream.next()) is not None and event["object"]["metadata"]["name"] != "kube-system":
            pass  # the namespaces there already
        reply = api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": "watched"}})
        created = time.monotonic()
        assert reply.status == 201, reply.body
        event = stream.next()
        assert event is not None and event["type"] == "ADDED"
        assert event["object"]["metadata"]["name"] == "watched"
        assert time.monotonic() - created < ROUND / 2


def test_writes_go_through_a_round(api_server: Callable[..., Api]) -> None:
    api = api_server(accept_round=ROUND, busy=lambda: True)
    reply = api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": "rounds"}})
    assert reply.status == 201, reply.body
    assert api.request("GET", "/api/v1/namespaces/rounds").status == 200


def test_tls_through_a_round(api_server: Callable[..., Api]) -> None:
    api = api_server(tls=True, accept_round=ROUND, busy=lambda: True)
    status, took = _livez(api)
    assert status == 200
    assert took >= ROUND * 0.9


def test_a_failed_handshake_costs_only_its_own_connection(api_server: Callable[..., Api]) -> None:
    """A client that speaks plain HTTP to the TLS port, or hangs up mid-handshake, is
    dropped; the next client is served."""
    api = api_server(tls=True)
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as plain:
        plain.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        plain.settimeout(5)
        try:
            data = plain.recv(100)
        except (ConnectionResetError, TimeoutError):
            data = b""
        assert not data.startswith(b"HTTP/1.1 200")
    status, _ = _livez(api)
    assert status == 200


def test_stopping_with_connections_waiting_for_the_round(api_server: Callable[..., Api]) -> None:
    """The server stops (the fixture checks its thread ends) with a connection in the
    backlog: that client sees the connection closed, not a hang."""
    api = api_server(accept_round=5.0, busy=lambda: True)
    client = socket.create_connection(("127.0.0.1", api.port), timeout=10)
    try:
        client.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        api._stop()
        client.settimeout(10)
        try:
            data = client.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b""
    finally:
        client.close()


def test_a_taken_port_is_refused(api_server: Callable[..., Api]) -> None:
    """Binding where another server listens fails as asyncio's server would (OSError:
    kdns/app.py turns it into its BindError)."""
    first = api_server()

    async def bind() -> None:
        await start_api(web.Application(), "127.0.0.1", first.port)

    with pytest.raises(OSError, match="in use"):
        asyncio.run(bind())


class Sampled:
    """The three readings LoopLoad takes, set by the test: wall clock, the loop thread's
    CPU time, queries answered."""

    def __init__(self) -> None:
        self.now = 0.0  # (binary fractions below: the sums are exact)
        self.cpu = 0.0
        self.answered = 0
        self.stolen = 0  # the CPUs' ticks taken by the hypervisor, of `ticks`
        self.ticks = 0

    def load(self) -> LoopLoad:
        return LoopLoad(lambda: self.answered, clock=lambda: self.now, cpu=lambda: self.cpu,
                        steal=lambda: (self.stolen, self.ticks))

    def run(self, seconds: float, *, share: float, rate: float, steal: float = 0.0) -> None:
        self.now += seconds
        self.cpu += share * seconds
        self.answered += int(rate * seconds)
        self.ticks += int(100 * seconds)
        self.stolen += int(100 * seconds * steal)


def test_busy_needs_the_loop_busy_and_mostly_dns() -> None:
    readings = Sampled()
    load = readings.load()
    assert not load.busy()
    verdicts = []
    for share, rate in (
        (0.95, 50_000),  # a DNS server at work
        (0.95, 100),  # busy with something else (the API itself)
        (0.5, 50_000),  # much DNS, cheap: time to spare
        (BUSY_SHARE + 0.01, BUSY_QUERY_RATE + 10),  # just over both
        (BUSY_SHARE - 0.01, BUSY_QUERY_RATE + 10),
        (1.0, BUSY_QUERY_RATE - 10),
    ):
        readings.run(0.25, share=share, rate=rate)
        load.sample()
        verdicts.append(load.busy())
    assert verdicts == [True, False, False, True, False, False]


def test_time_the_hypervisor_took_is_not_counted_against_the_loop() -> None:
    """On a virtual machine whose CPUs lose 40 % to steal, a loop saturated by DNS spends
    about 60 % of the wall time on the CPU: busy. The same share with nothing stolen is
    a loop with time to spare."""
    readings = Sampled()
    load = readings.load()
    readings.run(0.25, share=0.56, rate=50_000, steal=0.4)
    load.sample()
    assert load.busy()
    readings.run(0.25, share=0.56, rate=50_000)
    load.sample()
    assert not load.busy()


def test_steal_is_read_from_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 2 30 400 5 6 7 80 0 0\ncpu0 50 1 15 200 2 3 3 40 0 0\nintr 1\n")
    assert stolen_ticks(str(stat)) == (80, 630)
    stat.write_text("cpu  100 2 30 400\n")  # a kernel that says nothing of steal
    assert stolen_ticks(str(stat)) == (0, 0)
    assert stolen_ticks(str(tmp_path / "missing")) == (0, 0)


def test_each_verdict_is_on_the_last_span_only() -> None:
    """A busy span after a quiet hour is busy; a quiet span after a busy one is quiet."""
    readings = Sampled()
    load = readings.load()
    readings.run(3600, share=0.0, rate=0)
    load.sample()
    assert not load.busy()
    readings.run(0.25, share=1.0, rate=100_000)
    load.sample()
    assert load.busy()
    readings.run(0.25, share=0.0, rate=0)
    load.sample()
    assert not load.busy()


def test_sampling_runs_on_the_loop_until_stopped() -> None:
    """start() samples every SAMPLE_S on the running loop; stop() ends it, and says quiet."""
    answered = [0]
    load = LoopLoad(lambda: answered[0], cpu=time.monotonic)  # (a CPU clock that always runs: busy)

    async def run() -> tuple[bool, bool]:
        load.start()
        for _ in range(int(2 * SAMPLE_S / 0.01)):
            answered[0] += 1000
            await asyncio.sleep(0.01)
        during = load.busy()
        load.stop()
        return during, load.busy()

    assert asyncio.run(run()) == (True, False)


def test_sampling_rests_while_no_query_is_answered_and_a_connection_wakes_it() -> None:
    """A span with no query answered stops the timer (an idle kdns is not woken); the next
    `busy()` (a connection) restarts it, judged not busy until a span has been measured."""
    readings = Sampled()
    reads = [0]

    def clock() -> float:
        reads[0] += 1
        return readings.now

    load = LoopLoad(lambda: readings.answered, clock=clock, cpu=lambda: readings.cpu)

    async def run() -> tuple[int, int, bool, bool, bool]:
        load.start()
        readings.run(SAMPLE_S, share=1.0, rate=50_000)  # DNS at work: the timer goes on
        await asyncio.sleep(SAMPLE_S * 1.5)
        busy_at_work = load.busy()
        await asyncio.sleep(SAMPLE_S * 3)  # nothing answered: one more sample, then rest
        resting = reads[0]
        await asyncio.sleep(SAMPLE_S * 3)
        still = reads[0]
        readings.run(60, share=1.0, rate=50_000)  # DNS busy again while it rested: not judged
        woken = load.busy()
        readings.run(SAMPLE_S, share=1.0, rate=50_000)
        await asyncio.sleep(SAMPLE_S * 1.5)
        after = load.busy()
        load.stop()
        return resting, still, busy_at_work, woken, after

    resting, still, busy_at_work, woken, after = asyncio.run(run())
    assert busy_at_work
    assert still == resting  # no sample while resting
    assert not woken  # the waking connection is taken at once
    assert after  # and the quarter-second after it is judged


def _settings(*flags: str, **environ: str) -> Settings:
    return settings_from(_parser().parse_args(["serve", "--upstream", "none", *flags]), environ)[0]


def test_accept_round_flag_and_its_environment_twin() -> None:
    assert _settings().api_accept_round == 0.05
    assert _settings("--api-accept-round", "0").api_accept_round == 0.0
    assert _settings(KDNS_API_ACCEPT_ROUND="0.2").api_accept_round == 0.2


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("soon", "--api-accept-round 'soon': not a number"),
        ("-0.1", "--api-accept-round '-0.1': must be between 0 and 1 seconds"),
        ("2", "--api-accept-round '2': must be between 0 and 1 seconds"),
        ("nan", "--api-accept-round 'nan': must be between 0 and 1 seconds"),
    ],
)
def test_a_bad_accept_round_is_refused_with_the_reason(given: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _settings("--api-accept-round", given)
    assert str(info.value) == message
