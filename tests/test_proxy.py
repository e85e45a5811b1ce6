"""The service proxy on loopback: ClusterIPs in 127.1.0.0/24 that are routable already
(interface=None), real TCP and UDP backends on 127.0.0.2 and 127.0.0.3 as the pods."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kdns.proxy import ProxyError, ServiceProxy, backends_of, frontends_of
from kdns.registry.objects import ENDPOINT_SLICE, SERVICE
from kdns.registry.store import Store

PODS = {"web-1": "127.0.0.2", "web-2": "127.0.0.3"}
CLUSTER_IP = "127.1.0.10"
NODE = "127.0.0.1"


def free_port(address: str) -> int:
    """A port free for both TCP and UDP on `address` (bound, read, released)."""
    for _ in range(20):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind((address, 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind((address, port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


def service(port: int, node_port: int | None = None) -> dict[str, Any]:
    ports = [{"name": "http", "protocol": "TCP", "port": port, "targetPort": "http"},
             {"name": "dns", "protocol": "UDP", "port": port, "targetPort": "dns"}]
    spec: dict[str, Any] = {"clusterIP": CLUSTER_IP, "selector": {"app": "web"}, "ports": ports}
    if node_port is not None:
        spec["type"] = "NodePort"
        ports[0]["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def pod(name: str, tcp_port: int, udp_port: int, ready: bool = True) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "ports": [
                {"name": "http", "containerPort": tcp_port, "protocol": "TCP"},
                {"name": "dns", "containerPort": udp_port, "protocol": "UDP"}]}]},
            "status": {"phase": "Running", "podIP": PODS[name],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def write(store: Store, *documents: dict[str, Any]) -> None:
    with store.transaction() as txn:
        for document in documents:
            txn.apply(document)


class Cluster:
    """Two pods with a TCP and a UDP server each, named by the pod; the Service in the store."""

    def __init__(self) -> None:
        self.store = Store(service_cidrs=["127.1.0.0/24"], node_port_range=(1024, 65535))
        self.ports: dict[str, tuple[int, int]] = {}
        self.servers: list[Any] = []
        self.port = free_port(CLUSTER_IP)

    async def start(self, node_port: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        for name, address in PODS.items():
            tcp = await asyncio.start_server(_echo_name(name), address, 0)
            udp, _ = await loop.create_datagram_endpoint(lambda n=name: _UdpName(n), local_addr=(address, 0))
            self.servers += [tcp, udp]
            self.ports[name] = (tcp.sockets[0].getsockname()[1], udp.get_extra_info("sockname")[1])
        write(self.store, service(self.port, node_port), *(pod(n, *self.ports[n]) for n in PODS))

    def set_ready(self, name: str, ready: bool) -> None:
        write(self.store, pod(name, *self.ports[name], ready=ready))

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            if isinstance(server, asyncio.Server):
                await server.wait_closed()


def _echo_name(name: str) -> Callable[..., Any]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with_data = await reader.read(65536)
        writer.write(name.encode() + b":" + with_data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    return handle


class _UdpName(asyncio.DatagramProtocol):
    def __init__(self, name: str) -> None:
        self.name = name

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(self.name.encode() + b":" + data, addr)


@contextlib.asynccontextmanager
async def pods(node_port: int | None = None) -> AsyncIterator[Cluster]:
    """The two pods' servers, up, and the store that names them."""
    built = Cluster()
    await built.start(node_port=node_port)
    try:
        yield built
    finally:
        await built.stop()


def run(test: Callable[[Cluster], Awaitable[None]], node_port: int | None = None) -> None:
    """Run `test` with the pods up, on uvloop where kdns would use it, within 60 s."""
    async def body() -> None:
        async with pods(node_port) as cluster:
            await asyncio.wait_for(test(cluster), 60)

    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(body())


async def ask(address: str, port: int, data: bytes = b"hi") -> str:
    """One TCP connection: send, read the backend's answer ("web-1:hi")."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
    try:
        writer.write(data)
        return (await asyncio.wait_for(reader.read(65536), 5)).decode()
    finally:
        writer.close()
        await writer.wait_closed()


async def ask_udp(address: str, port: int, data: bytes = b"hi", wait: float = 2.0) -> str | None:
    """One datagram from a new client socket; the reply, or None if none came in `wait` seconds."""
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, reply: bytes, addr: Any) -> None:
            replies.put_nowait(reply)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(address, port))
    try:
        transport.sendto(data)
        try:
            return (await asyncio.wait_for(replies.get(), wait)).decode()
        except TimeoutError:
            return None
    finally:
        transport.close()


def chi_square(counts: list[int]) -> tuple[float, float]:
    """The statistic against equal shares, and its p-value (scipy), or the 0.1% critical value."""
    expected = sum(counts) / len(counts)
    statistic = sum((c - expected) ** 2 / expected for c in counts)
    try:
        from scipy.stats import chi2
    except ImportError:
        return statistic, 1.0 if statistic < 10.828 else 0.0  # chi2(1 dof) at p = 0.001
    return statistic, float(chi2.sf(statistic, len(counts) - 1))


# --- the pure tables ------------------------------------------------------------------------------


def test_frontends_and_backends_follow_the_service_and_its_slices() -> None:
    """A ClusterIP Service listens on its ClusterIP per port and protocol; backends are each pod's named port."""

    async def body(cluster: Cluster) -> None:
        svc = cluster.store.get(SERVICE, "default", "web")
        assert {(f.address, f.port, f.protocol) for f in frontends_of(svc, NODE)} == {
            (CLUSTER_IP, cluster.port, "TCP"), (CLUSTER_IP, cluster.port, "UDP")}
        slices = cluster.store.list(ENDPOINT_SLICE, "default")
        backends = backends_of(s for s in slices if s.service_name == "web")
        assert backends[("http", "TCP")] == tuple(sorted((PODS[n], cluster.ports[n][0]) for n in PODS))
        assert backends[("dns", "UDP")] == tuple(sorted((PODS[n], cluster.ports[n][1]) for n in PODS))

    run(body)


# --- forwarding -------------------------------------------------------------------------------------


def test_tcp_connections_are_spread_fairly_over_the_ready_pods() -> None:
    """1,000 connections to the ClusterIP reach both pods in shares a chi-square test cannot tell from equal."""

    async def body(cluster: Cluster) -> None:
        async with ServiceProxy(cluster.store, interface=None, node_address=None, max_connections_per_service=100):
            seen: Counter[str] = Counter()
            for _ in range(10):  # 10 rounds of 100 concurrent connections
                answers = await asyncio.gather(*(ask(CLUSTER_IP, cluster.port) for _ in range(100)))
                seen.update(answer.split(":")[0] for answer in answers)
            assert set(seen) == set(PODS) and sum(seen.values()) == 1000
            statistic, p_value = chi_square(list(seen.values()))
            assert p_value > 0.001, (seen, statistic)

    run(body)


def test_a_seeded_rng_makes_the_choice_reproducible() -> None:
    """The backend is drawn from the injected rng: the same seed gives the same sequence."""

    async def body(cluster: Cluster) -> None:
        runs = []
        for _ in range(2):
            async with ServiceProxy(cluster.store, interface=None, node_address=None, rng=random.Random(7)):
                runs.append([(await ask(CLUSTER_IP, cluster.port)).split(":")[0] for _ in range(20)])
        assert runs[0] == runs[1] and set(runs[0]) == set(PODS)

    run(body)


def test_a_pod_that_turns_not_ready_gets_no_new_connection_but_open_ones_drain() -> None:
    """After web-1 turns not ready every new connection goes to web-2; a connection open to web-1 goes on."""

    async def body(cluster: Cluster) -> None:
        async with ServiceProxy(cluster.store, interface=None, node_address=None, rng=random.Random(1)) as proxy:
            # An open connection to web-1 (drawn until one lands there: bounded).
            for _ in range(50):
                reader, writer = await asyncio.open_connection(CLUSTER_IP, cluster.port)
                await asyncio.sleep(0)
                await asyncio.sleep(0.01)
                front = next(iter(c for c in proxy._open[("default", "web")] if hasattr(c, "backend")
                                  and c.backend is not None and c.backend[0] == PODS["web-1"]), None)
                if front is not None:
                    break
                writer.close()
                await writer.wait_closed()
            assert front is not None
            cluster.set_ready("web-1", False)
            answers = {(await ask(CLUSTER_IP, cluster.port)).split(":")[0] for _ in range(100)}
            assert answers == {"web-2"}
            writer.write(b"still")
            assert (await asyncio.wait_for(reader.read(100), 5)) == b"web-1:still"
            writer.close()
            await writer.wait_closed()

    run(body)


def test_a_service_with_no_ready_endpoint_refuses_tcp_at_once_and_drops_udp() -> None:
    """With both pods not ready a TCP connect is refused at once and a UDP question gets no reply."""

    async def body(cluster: Cluster) -> None:
        async with ServiceProxy(cluster.store, interface=None, node_address=None) as proxy:
            for name in PODS:
                cluster.set_ready(name, False)
            await proxy.settled()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.wait_for(asyncio.open_connection(CLUSTER_IP, cluster.port), 1)
            assert await ask_udp(CLUSTER_IP, cluster.port, wait=0.3) is None
            cluster.set_ready("web-2", True)
            await proxy.settled()
            assert await ask(CLUSTER_IP, cluster.port) == "web-2:hi"
            assert await ask_udp(CLUSTER_IP, cluster.port) == "web-2:hi"

    run(body)


def test_a_deleted_service_stops_listening() -> None:
    """Deleting the Service closes its listeners."""

    async def body(cluster: Cluster) -> None:
        async with ServiceProxy(cluster.store, interface=None, node_address=None) as proxy:
            assert len(proxy.frontends) == 2
            with cluster.store.transaction() as txn:
                txn.delete(SERVICE, "default", "web")
            await proxy.settled()
            assert proxy.frontends == ()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.wait_for(asyncio.open_connection(CLUSTER_IP, cluster.port), 1)

    run(body)


def test_udp_flows_reach_a_pod_and_end_when_idle() -> None:
    """A UDP client gets its pod's reply through the ClusterIP; its flow ends after the idle timeout."""

    async def body(cluster: Cluster) -> None:
        async with ServiceProxy(cluster.store, interface=None, node_address=None, udp_idle_timeout=0.2) as proxy:
            answer = await ask_udp(CLUSTER_IP, cluster.port, b"q")
            assert answer in ("web-1:q", "web-2:q")
            assert proxy.open_count("default", "web") == 1
            for _ in range(100):  # up to 2 s, for a 0.2 s timeout
                if proxy.open_count("default", "web") == 0:
                    break
                await asyncio.sleep(0.02)
            assert proxy.open_count("default", "web") == 0

    run(body)


def test_connections_beyond_the_bound_are_refused() -> None:
    """With a bound of 2 per service, a third open connection is reset; one closing makes room."""

    async def body(cluster: Cluster) -> None:
        async with ServiceProxy(cluster.store, interface=None, node_address=None, max_connections_per_service=2) as proxy:
            held = [await asyncio.open_connection(CLUSTER_IP, cluster.port) for _ in range(2)]
            for _ in range(50):
                if proxy.open_count("default", "web") == 2:
                    break
                await asyncio.sleep(0.01)

            async def ask_the_third() -> None:
                if not await ask(CLUSTER_IP, cluster.port):
                    raise ConnectionResetError("closed without a reply")

            with pytest.raises((ConnectionResetError, ConnectionAbortedError, asyncio.IncompleteReadError)):
                await ask_the_third()
            _, writer = held.pop()
            writer.close()
            await writer.wait_closed()
            for _ in range(50):
                if proxy.open_count("default", "web") < 2:
                    break
                await asyncio.sleep(0.01)
            assert (await ask(CLUSTER_IP, cluster.port)).startswith("web-")
            for _, writer in held:
                writer.close()
                await writer.wait_closed()

    run(body)


def test_a_node_port_listens_on_the_node_address() -> None:
    """A NodePort Service is reachable on the node address at its nodePort, as on its ClusterIP."""

    node_port = free_port(NODE)

    async def body(cluster: Cluster) -> None:
        async with ServiceProxy(cluster.store, interface=None, node_address=NODE) as proxy:
            assert any(f.address == NODE and f.port == node_port for f in proxy.frontends)
            assert (await ask(NODE, node_port)).startswith("web-")
            assert (await ask(CLUSTER_IP, cluster.port)).startswith("web-")

    run(body, node_port=node_port)


def test_stopping_closes_listeners_and_open_connections() -> None:
    """Leaving the block closes the listeners and, after the drain timeout, the connections left open."""

    async def body(cluster: Cluster) -> None:
        async with ServiceProxy(cluster.store, interface=None, node_address=None, drain_timeout=0.1):
            reader, writer = await asyncio.open_connection(CLUSTER_IP, cluster.port)
        assert await asyncio.wait_for(reader.read(100), 5) == b""
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(asyncio.open_connection(CLUSTER_IP, cluster.port), 1)

    run(body)


# --- ClusterIPs on an interface, with a stand-in for `ip` -------------------------------------------


FAKE_IP = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls"
if [ -e "$(dirname "$0")/deny" ]; then echo "RTNETLINK answers: Operation not permitted" >&2; exit 2; fi
"""


def fake_ip(directory: Any, monkeypatch: pytest.MonkeyPatch, deny: bool) -> Any:
    script = directory / "kdns-ip"
    script.write_text(FAKE_IP)
    script.chmod(0o755)
    if deny:
        (directory / "deny").touch()
    monkeypatch.setenv("PATH", f"{directory}:{os.environ.get('PATH', '')}")
    return directory / "calls"


def test_cluster_ips_are_added_to_the_interface_and_removed_on_stop(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an interface, each ClusterIP is added as a /32 before listening and deleted when the proxy stops."""
    calls = fake_ip(tmp_path, monkeypatch, deny=False)

    async def body(cluster: Cluster) -> None:
        async with ServiceProxy(cluster.store, interface="eth9", node_address=None):
            assert calls.read_text().splitlines() == [f"address add {CLUSTER_IP}/32 dev eth9"]
            assert (await ask(CLUSTER_IP, cluster.port)).startswith("web-")

    run(body)
    assert calls.read_text().splitlines() == [f"address add {CLUSTER_IP}/32 dev eth9",
                                              f"address del {CLUSTER_IP}/32 dev eth9"]


def test_a_missing_net_admin_stops_the_proxy_with_a_clear_error(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """When `ip` is not permitted to add the ClusterIP, starting the proxy fails naming CAP_NET_ADMIN."""
    fake_ip(tmp_path, monkeypatch, deny=True)

    async def body(cluster: Cluster) -> None:
        with pytest.raises(ProxyError, match="CAP_NET_ADMIN"):
            async with ServiceProxy(cluster.store, interface="eth9", node_address=None):
                pass

    run(body)


def test_the_proxy_flags_and_their_environment_twins_make_settings() -> None:
    """--proxy, --proxy-interface, --node-address and --proxy-max-connections, or KDNS_*, set the proxy's settings."""
    from kdns.cli import _parser, settings_from
    from kdns.config import ConfigError

    args = _parser().parse_args(["serve", "--proxy", "--proxy-interface", "eth0", "--node-address", "172.28.0.2",
                                 "--proxy-max-connections", "7", "--upstream", "none", "--ephemeral"])
    settings, _ = settings_from(args, {})
    assert (settings.proxy, settings.proxy_interface, settings.node_address, settings.proxy_max_connections) == (
        True, "eth0", "172.28.0.2", 7)
    args = _parser().parse_args(["serve", "--upstream", "none", "--ephemeral"])
    settings, _ = settings_from(args, {"KDNS_PROXY": "1", "KDNS_PROXY_INTERFACE": "none", "KDNS_NODE_ADDRESS": "10.0.0.1"})
    assert (settings.proxy, settings.proxy_interface, settings.node_address) == (True, None, "10.0.0.1")
    with pytest.raises(ConfigError, match=r"^KDNS_NODE_ADDRESS 'node-1': not an IP address$"):
        settings_from(args, {"KDNS_NODE_ADDRESS": "node-1"})
