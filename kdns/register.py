"""`kdns register`: this container, registered as a Pod through the kdns API, for as long as it runs.

    kdns register --label app.kubernetes.io/name=flask-app --container-port http:5000 \\
        --probe-http :5000/healthz --probe-period 1 -- python app.py

With a command after `--`, the command runs as a child process: the pod is registered once
it started, deregistered as soon as kdns register is asked to stop (SIGTERM, SIGINT), before
the signal is passed on to the child, so that DNS drops the pod while the app still answers;
and deregistered when the child exits by itself. The exit code is then the child's. Without
a command, kdns register registers, waits for SIGTERM or SIGINT, deregisters and exits 0.

The Pod is what a kubelet would report: phase Running, the IP, labels, container ports, and
the readinessProbe. With a probe its Ready condition starts "False" and kdns's prober turns it
"True" once the probe passes; without one it is Ready at once. A pod of the same name left
by an earlier run (a container that was killed) is replaced. The child gets POD_NAME,
POD_NAMESPACE and POD_IP in its environment, as the downward API would give them.

Every flag has a KDNS_* environment twin (`--pod-name` <-> KDNS_POD_NAME; repeatable flags
take a comma-separated list); the flag wins, and an error names the one that was used.
While the API does not answer (kdns is starting), registering is tried again with a
growing pause, for at most --wait seconds. Exit codes: the child's, or 0; 1 when the pod
cannot be registered (the API refuses it, does not answer in time, or the command ends
before it could be registered); 2 for a bad flag.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import re
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from kdns.config import Given, Option, gather
from kdns.errors import KdnsError
from kdns.hostport import split_host_port

if TYPE_CHECKING:  # aiohttp is imported when a registration runs, not when the CLI starts
    import aiohttp

__all__ = ["Registration", "add_parser", "main", "pod_manifest", "registration_from", "run"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
DEFAULT_SERVER = "http://127.0.0.1:8080"
# Pauses between attempts to reach the API while it starts: 0.1 s, doubling, at most 2 s.
FIRST_RETRY, MAX_RETRY = 0.1, 2.0
REQUEST_TIMEOUT = 5.0
PREFIX = "kdns register"
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_ParserT = TypeVar("_ParserT", bound=argparse.ArgumentParser)  # kdns.cli's own parser class


class RegisterError(KdnsError):
    """The pod cannot be registered."""


class FlagError(KdnsError):
    """A flag or its environment twin is invalid."""


@dataclass(frozen=True, slots=True)
class Registration:
    """What to register, and where: read from the flags and the environment."""

    server: str
    token: str | None
    namespace: str
    name: str | None  # None: the host name
    ip: str | None  # None: the address this host reaches the server from
    labels: Mapping[str, str] = field(default_factory=dict)
    container: str = "app"
    ports: tuple[tuple[str, int], ...] = ()
    probe: Mapping[str, Any] | None = None
    wait: float = 30.0
    command: tuple[str, ...] = ()


OPTIONS: tuple[Option, ...] = (
    Option("--server", f"the kdns API (default {DEFAULT_SERVER})", "URL"),
    Option("--api-token", "bearer token of the API", "TOKEN", secret=True),
    Option("--namespace", "the pod's namespace (default `default`)", "NS"),
    Option("--pod-name", "the pod's name (default: the host name)", "NAME"),
    Option("--pod-ip", "the pod's IP (default: this host's address towards the API)", "IP"),
    Option("--label", "a label of the pod; repeatable", "KEY=VALUE", repeatable=True, separator=","),
    Option("--container-name", "the name of the pod's container (default `app`)", "NAME"),
    Option("--container-port", "a port of the container; repeatable", "[NAME:]PORT", repeatable=True, separator=","),
    Option("--probe-http", "readinessProbe httpGet, e.g. :5000/healthz or https://:8443/ready (PORT may be "
           "the name of a --container-port)", "[HOST]:PORT[/PATH]"),
    Option("--probe-tcp", "readinessProbe tcpSocket, e.g. 5000", "[HOST:]PORT"),
    Option("--probe-initial-delay", "initialDelaySeconds (default 0)", "SECONDS"),
    Option("--probe-period", "periodSeconds (default 10)", "SECONDS"),
    Option("--probe-timeout", "timeoutSeconds (default 1)", "SECONDS"),
    Option("--probe-success-threshold", "successThreshold (default 1)", "N"),
    Option("--probe-failure-threshold", "failureThreshold (default 3)", "N"),
    Option("--wait", "how long to keep trying to reach the API at start (default 30)", "SECONDS"),
)
# The probe's timing flags: (option name, the probe's field, its least value).
_TIMINGS = (
    ("probe_initial_delay", "initialDelaySeconds", 0),
    ("probe_period", "periodSeconds", 1),
    ("probe_timeout", "timeoutSeconds", 1),
    ("probe_success_threshold", "successThreshold", 1),
    ("probe_failure_threshold", "failureThreshold", 1),
)


def add_parser(commands: argparse._SubParsersAction[_ParserT]) -> _ParserT:
    """Add `register` to `kdns`'s subcommands (an argparse subparsers object)."""
    parser = commands.add_parser(
        "register",
        help="register this container as a Pod while it (or a command) runs",
        description="Register this container as a Pod through the kdns API, deregister it when "
        "stopped. Every flag has a KDNS_* environment twin (--pod-name: KDNS_POD_NAME).",
    )
    for option in OPTIONS:
        option.add_to(parser)
    # dest "argv", not "command": kdns.cli keeps the subcommand's name in args.command.
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                        help="run this, registered while it runs")
    return parser


def _integer(given: Given, minimum: int) -> int:
    try:
        number = int(given.text)
    except ValueError:
        raise FlagError(f"{given.source} {given.text!r}: not an integer") from None
    if number < minimum:
        raise FlagError(f"{given.source} {given.text!r}: must be at least {minimum}")
    return number


def _port(text: str, given: Given) -> int | str:
    """A port number, or a port's name (as in a Kubernetes probe)."""
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= 65535:
            raise FlagError(f"{given.source} {given.text!r}: port {text} must be between 1 and 65535")
        return number
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text) or len(text) > 15:
        raise FlagError(f"{given.source} {given.text!r}: {text!r} is neither a port number nor a port name")
    return text


def _host_port(text: str, given: Given) -> tuple[str, int | str]:
    """`[HOST]:PORT`, `HOST:PORT`, `:PORT` or `PORT` -> (host or "", port)."""
    host, port = "", text  # a bare text is the port
    if text.startswith("[") or ":" in text:
        try:
            host, port_text = split_host_port(text)
        except ValueError as exc:
            raise FlagError(f"{given.source} {exc}") from None
        port = port_text or ""
    if not port:
        raise FlagError(f"{given.source} {given.text!r}: a port is required")
    return host, _port(port, given)


def parse_probe(given: Mapping[str, Given], port_names: Sequence[str]) -> dict[str, Any] | None:
    """The readinessProbe the probe flags describe, or None. A port given by name must be
    the name of a container port (`port_names`), as the kubelet needs it to be."""
    http, tcp = given.get("probe_http"), given.get("probe_tcp")
    if http and tcp:
        raise FlagError(f"{http.source} and {tcp.source} exclude each other")
    probe: dict[str, Any]
    if http:
        scheme, text = "HTTP", http.text
        for prefix in ("http://", "https://"):
            if text.lower().startswith(prefix):
                scheme, text = prefix[:-3].upper(), text[len(prefix):]
        hostport, slash, path = text.partition("/")
        if ":" not in hostport and not hostport.isdigit():
            raise FlagError(f"{http.source} {http.text!r}: expected [HOST]:PORT[/PATH], e.g. :5000/healthz")
        host, port = _host_port(hostport, http)
        action: dict[str, Any] = {"path": "/" + path if slash else "/", "port": port}
        if scheme != "HTTP":
            action["scheme"] = scheme
        if host:
            action["host"] = host
        probe, used = {"httpGet": action}, http
    elif tcp:
        host, port = _host_port(tcp.text, tcp)
        probe, used = {"tcpSocket": {"port": port, **({"host": host} if host else {})}}, tcp
    else:
        for name, _, _ in _TIMINGS:
            if name in given:
                raise FlagError(f"{given[name].source} needs --probe-http or --probe-tcp")
        return None
    if isinstance(port, str) and port not in port_names:
        declared = ", ".join(port_names) or "none"
        raise FlagError(f"{used.source} {used.text!r}: no --container-port is named {port!r} (named: {declared})")
    for name, key, minimum in _TIMINGS:
        if name in given:
            probe[key] = _integer(given[name], minimum)
    return probe


def registration_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Registration:
    """The registration the flags and KDNS_* variables ask for; FlagError if they are bad."""
    given = gather(OPTIONS, args, environ)

    def text(name: str, default: str = "") -> str:
        value = given.get(name)
        return value.text if value is not None and value.text else default

    server = text("server", DEFAULT_SERVER).rstrip("/")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        source = given["server"].source if "server" in given else "--server"
        raise FlagError(f"{source} {server!r}: expected http://HOST:PORT or https://HOST:PORT")
    labels: dict[str, str] = {}
    if (label := given.get("label")) is not None:
        for item in _items(label):
            key, equals, value = item.partition("=")
            if not equals or not _LABEL_KEY.match(key) or len(value) > 63:
                raise FlagError(f"{label.source} {item!r}: expected KEY=VALUE, e.g. app.kubernetes.io/name=web")
            labels[key] = value
    ports = []
    if (container_port := given.get("container_port")) is not None:
        for item in _items(container_port):
            name, _, number = item.rpartition(":")
            port = _port(number, container_port)
            if not isinstance(port, int) or (name and not isinstance(_port(name, container_port), str)):
                raise FlagError(f"{container_port.source} {item!r}: expected [NAME:]PORT, e.g. http:5000")
            ports.append((name, port))
    ip = text("pod_ip")
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise FlagError(f"{given['pod_ip'].source} {ip!r}: not an IP address") from None
    command = list(args.argv or ())
    if command[:1] == ["--"]:
        command = command[1:]
    return Registration(
        server=server,
        token=text("api_token") or None,
        namespace=text("namespace", "default"),
        name=text("pod_name") or None,
        ip=ip or None,
        labels=labels,
        container=text("container_name", "app"),
        ports=tuple(ports),
        probe=parse_probe(given, [name for name, _ in ports if name]),
        wait=float(_integer(given["wait"], 0)) if "wait" in given else 30.0,
        command=tuple(command),
    )


def _items(given: Given) -> list[str]:
    """The comma-separated items of a repeatable flag's values."""
    return [part.strip() for value in given.values for part in value.split(",") if part.strip()]


def pod_manifest(registration: Registration, name: str, ip: str) -> dict[str, Any]:
    """The Pod a kubelet would report for this container, running at `ip`."""
    container: dict[str, Any] = {"name": registration.container, "image": "kdns-register"}
    if registration.ports:
        container["ports"] = [
            {**({"name": port_name} if port_name else {}), "containerPort": number, "protocol": "TCP"}
            for port_name, number in registration.ports
        ]
    if registration.probe is not None:
        container["readinessProbe"] = dict(registration.probe)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": registration.namespace, "labels": dict(registration.labels)},
        "spec": {"containers": [container]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            # With a probe the pod is not ready until kdns's prober has seen it pass.
            "conditions": [{"type": "Ready", "status": "False" if registration.probe is not None else "True"}],
        },
    }


# --- talking to the API ---------------------------------------------------------------------


class _Unavailable(Exception):
    """The API could not be reached, or answered 5xx: worth another try."""


class _Api:
    def __init__(self, session: aiohttp.ClientSession, registration: Registration) -> None:
        self._session = session
        self._server = registration.server
        self._headers = {"Accept": "application/json", "User-Agent": "kdns-register"}
        if registration.token:
            self._headers["Authorization"] = f"Bearer {registration.token}"

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        import aiohttp

        try:
            async with self._session.request(
                method, self._server + path, json=body, headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            ) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _Unavailable(f"{self._server}: {str(exc) or type(exc).__name__}") from None
        try:
            reply = json.loads(text) if text else {}
        except ValueError:
            reply = {"message": text[:200]}
        if response.status >= 500:
            raise _Unavailable(f"{self._server}: HTTP {response.status}: {reply.get('message', '')}")
        return response.status, reply if isinstance(reply, dict) else {}


def _pods(namespace: str, name: str = "") -> str:
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods"
    return f"{path}/{quote(name, safe='')}" if name else path


async def _source_address(server: str) -> str:
    """The address this host sends from towards the server: the container's own address on
    the network it shares with kdns. (A UDP connect only picks the route: nothing is sent.)"""
    parts = urlsplit(server)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_DGRAM)
    family, kind, _, _, address = infos[0]
    with socket.socket(family, kind) as sock:
        sock.connect(address)
        return str(sock.getsockname()[0])


async def _register(api: _Api, registration: Registration, pod: dict[str, Any]) -> str:
    """Create the pod (replacing a stale one of the same name); its uid."""
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    for _ in range(3):  # create; on a conflict delete the leftover and create again
        status, reply = await api.call("POST", _pods(namespace), pod)
        if status == 201:
            return str(reply.get("metadata", {}).get("uid", ""))
        if status != 409:
            raise RegisterError(f"HTTP {status}: {reply.get('message', reply)}")
        status, reply = await api.call("DELETE", _pods(namespace, name))
        if status not in (200, 202, 404):
            raise RegisterError(f"cannot replace the pod left by an earlier run: HTTP {status}: "
                                f"{reply.get('message', reply)}")
    raise RegisterError("the pod kept being created by someone else")


async def _deregister(api: _Api, namespace: str, name: str, uid: str) -> None:
    # Only this registration's pod: a newer container of the same name may have replaced it.
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}} if uid else None
    try:
        status, reply = await api.call("DELETE", _pods(namespace, name), options)
    except _Unavailable as exc:
        _say(f"cannot deregister pod {namespace}/{name}: {exc}")
        return
    if status in (200, 202):
        _say(f"pod {namespace}/{name} deregistered")
    elif status not in (404, 409):
        _say(f"cannot deregister pod {namespace}/{name}: HTTP {status}: {reply.get('message', reply)}")


def _say(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


async def _serve(registration: Registration, environ: Mapping[str, str]) -> int:
    import aiohttp

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    child: asyncio.subprocess.Process | None = None
    try:
        name = registration.name or socket.gethostname().lower()
        ip = registration.ip or await _source_address(registration.server)
        pod = pod_manifest(registration, name, ip)
        if registration.command:
            env = {**environ, "POD_NAME": name, "POD_NAMESPACE": registration.namespace, "POD_IP": ip}
            try:
                child = await asyncio.create_subprocess_exec(*registration.command, env=env)
            except OSError as exc:
                raise RegisterError(f"cannot run {registration.command[0]}: {exc.strerror or exc}") from None
        exited = asyncio.ensure_future(child.wait()) if child is not None else loop.create_future()
        stopped = asyncio.ensure_future(stop.wait())
        async with aiohttp.ClientSession() as session:
            api = _Api(session, registration)
            uid = await _until_registered(api, registration, pod, stopped, exited)
            if uid is None:
                _say(f"stopped before pod {registration.namespace}/{name} could be registered")
            else:
                _say(f"pod {registration.namespace}/{name} ({ip}) registered at {registration.server}")
                await asyncio.wait([stopped, exited], return_when=asyncio.FIRST_COMPLETED)
                # Out of DNS first, then stop the app: no client is sent to a closing server.
                await _deregister(api, registration.namespace, name, uid)
        stopped.cancel()
        if child is None:
            exited.cancel()
            return EXIT_OK if uid is not None else EXIT_FAILED
        if child.returncode is None:
            child.send_signal(received[0] if received else signal.SIGTERM)
        code = await exited
        return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
    except BaseException:
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()
        raise
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _until_registered(
    api: _Api, registration: Registration, pod: dict[str, Any], stopped: asyncio.Future[Any],
    exited: asyncio.Future[Any],
) -> str | None:
    """Register, trying again while the API is unreachable (kdns may be starting), with a
    pause from FIRST_RETRY doubling to MAX_RETRY, for at most `wait` seconds; the uid, or
    None if asked to stop first. RegisterError if refused, if the API did not answer in
    time, or if the command ended before the pod could be registered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + registration.wait
    pause = FIRST_RETRY
    problem: _Unavailable | None = None
    while True:
        if stopped.done():
            return None
        if exited.done():
            code = exited.result()
            reason = f": {problem}" if problem is not None else ""
            raise RegisterError(f"the command exited (code {code}) before the pod could be registered{reason}")
        try:
            return await _register(api, registration, pod)
        except _Unavailable as exc:
            if problem is None:
                _say(f"waiting for the kdns API ({exc}); trying again for up to {registration.wait:g} s")
            problem = exc
        left = deadline - loop.time()
        if left <= 0:
            raise RegisterError(f"the kdns API did not answer within {registration.wait:g} s: {problem}")
        await asyncio.wait([stopped, exited], timeout=min(pause, left))
        pause = min(pause * 2, MAX_RETRY)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """`kdns register` with parsed flags and the environment; returns the exit code."""
    try:
        registration = registration_from(args, environ)
    except FlagError as exc:
        _say(f"error: {exc}")
        return EXIT_CONFIG
    try:
        return asyncio.run(_serve(registration, environ))
    except RegisterError as exc:
        _say(f"error: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """`kdns register ARGV...` on its own: the same as through kdns.cli."""
    parser = argparse.ArgumentParser(prog="kdns")
    add_parser(parser.add_subparsers(dest="command_name"))
    return run(parser.parse_args(["register", *argv]), environ)
