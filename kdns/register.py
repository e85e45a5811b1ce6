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
take a comma-separated list); the flag wins. Exit codes: the child's, or 0; 1 when the
pod cannot be registered; 2 for a bad flag.
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
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from kdns.config import flag_or_env
from kdns.errors import KdnsError
from kdns.hostport import split_host_port

__all__ = ["Registration", "add_parser", "main", "pod_manifest", "registration_from", "run"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
DEFAULT_SERVER = "http://127.0.0.1:8080"
RETRY_INTERVAL = 0.5  # between attempts to reach the API while it starts
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


def add_parser(commands: argparse._SubParsersAction[_ParserT]) -> _ParserT:
    """Add `register` to `kdns`'s subcommands (an argparse subparsers object)."""
    parser = commands.add_parser(
        "register",
        help="register this container as a Pod while it (or a command) runs",
        description="Register this container as a Pod through the kdns API, deregister it when "
        "stopped. Every flag has a KDNS_* environment twin (--pod-name: KDNS_POD_NAME).",
    )
    add = parser.add_argument
    add("--server", metavar="URL", help=f"the kdns API (default {DEFAULT_SERVER})")
    add("--api-token", metavar="TOKEN", help="bearer token of the API")
    add("--namespace", metavar="NS", help="the pod's namespace (default `default`)")
    add("--pod-name", metavar="NAME", help="the pod's name (default: the host name)")
    add("--pod-ip", metavar="IP", help="the pod's IP (default: this host's address towards the API)")
    add("--label", action="append", metavar="KEY=VALUE", help="a label of the pod; repeatable")
    add("--container-name", metavar="NAME", help="the name of the pod's container (default `app`)")
    add("--container-port", action="append", metavar="[NAME:]PORT", help="a port of the container; repeatable")
    add("--probe-http", metavar="[HOST]:PORT[/PATH]",
        help="readinessProbe httpGet, e.g. :5000/healthz or https://:8443/ready (PORT may be a port's name)")
    add("--probe-tcp", metavar="[HOST:]PORT", help="readinessProbe tcpSocket, e.g. 5000")
    add("--probe-initial-delay", metavar="SECONDS", help="initialDelaySeconds (default 0)")
    add("--probe-period", metavar="SECONDS", help="periodSeconds (default 10)")
    add("--probe-timeout", metavar="SECONDS", help="timeoutSeconds (default 1)")
    add("--probe-success-threshold", metavar="N", help="successThreshold (default 1)")
    add("--probe-failure-threshold", metavar="N", help="failureThreshold (default 3)")
    add("--wait", metavar="SECONDS", help="how long to keep trying to reach the API at start (default 30)")
    # dest "argv", not "command": kdns.cli keeps the subcommand's name in args.command.
    add("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...", help="run this, registered while it runs")
    return parser


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    return [part.strip() for item in values for part in item.split(",") if part.strip()]


def _integer(value: Any, flag: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FlagError(f"--{flag} {value!r}: not an integer") from None
    if number < minimum:
        raise FlagError(f"--{flag} {value}: must be at least {minimum}")
    return number


def _port(text: str, flag: str) -> int | str:
    """A port number, or a port's name (as in a Kubernetes probe)."""
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= 65535:
            raise FlagError(f"--{flag}: port {text} must be between 1 and 65535")
        return number
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text) or len(text) > 15:
        raise FlagError(f"--{flag}: {text!r} is neither a port number nor a port name")
    return text


def _probe_address(text: str, flag: str) -> tuple[str, int | str]:
    """`[HOST]:PORT`, `HOST:PORT`, `:PORT` or `PORT` -> (host or "", port)."""
    host, port = "", text  # a bare text is the port
    if text.startswith("[") or ":" in text:
        try:
            host, port_text = split_host_port(text)
        except ValueError as exc:
            raise FlagError(f"--{flag} {exc}") from None
        port = port_text or ""
    if not port:
        raise FlagError(f"--{flag} {text!r}: a port is required")
    return host, _port(port, flag)


def parse_probe(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The readinessProbe the probe flags describe, or None."""
    http, tcp = flag_or_env(args, environ, "probe_http")[0], flag_or_env(args, environ, "probe_tcp")[0]
    if http and tcp:
        raise FlagError("--probe-http and --probe-tcp exclude each other")
    probe: dict[str, Any]
    if http:
        scheme, text = "HTTP", http
        for prefix in ("http://", "https://"):
            if text.lower().startswith(prefix):
                scheme, text = prefix[:-3].upper(), text[len(prefix):]
        hostport, slash, path = text.partition("/")
        host, port = _probe_address(hostport, "probe-http")
        action: dict[str, Any] = {"path": "/" + path if slash else "/", "port": port}
        if scheme != "HTTP":
            action["scheme"] = scheme
        if host:
            action["host"] = host
        probe = {"httpGet": action}
    elif tcp:
        host, port = _probe_address(tcp, "probe-tcp")
        probe = {"tcpSocket": {"port": port, **({"host": host} if host else {})}}
    else:
        for name in ("initial_delay", "period", "timeout", "success_threshold", "failure_threshold"):
            if flag_or_env(args, environ, f"probe_{name}")[0] is not None:
                raise FlagError(f"--probe-{name.replace('_', '-')} needs --probe-http or --probe-tcp")
        return None
    for name, key, minimum in (
        ("initial_delay", "initialDelaySeconds", 0),
        ("period", "periodSeconds", 1),
        ("timeout", "timeoutSeconds", 1),
        ("success_threshold", "successThreshold", 1),
        ("failure_threshold", "failureThreshold", 1),
    ):
        value = flag_or_env(args, environ, f"probe_{name}")[0]
        if value is not None:
            probe[key] = _integer(value, f"probe-{name.replace('_', '-')}", minimum)
    return probe


def registration_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Registration:
    """The registration the flags and KDNS_* variables ask for; FlagError if they are bad."""
    server = (flag_or_env(args, environ, "server")[0] or DEFAULT_SERVER).rstrip("/")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FlagError(f"--server {server!r}: expected http://HOST:PORT or https://HOST:PORT")
    labels: dict[str, str] = {}
    for item in _list(flag_or_env(args, environ, "label")[0]):
        key, equals, value = item.partition("=")
        if not equals or not _LABEL_KEY.match(key) or len(value) > 63:
            raise FlagError(f"--label {item!r}: expected KEY=VALUE, e.g. app.kubernetes.io/name=web")
        labels[key] = value
    ports = []
    for item in _list(flag_or_env(args, environ, "container_port")[0]):
        name, _, number = item.rpartition(":")
        port = _port(number, "container-port")
        if not isinstance(port, int):
            raise FlagError(f"--container-port {item!r}: expected [NAME:]PORT, e.g. http:5000")
        if name:
            _port(name, "container-port")
        ports.append((name, port))
    ip = flag_or_env(args, environ, "pod_ip")[0]
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise FlagError(f"--pod-ip {ip!r}: not an IP address") from None
    wait = flag_or_env(args, environ, "wait")[0]
    command = list(args.argv or ())
    if command[:1] == ["--"]:
        command = command[1:]
    return Registration(
        server=server,
        token=flag_or_env(args, environ, "api_token")[0] or None,
        namespace=flag_or_env(args, environ, "namespace")[0] or "default",
        name=flag_or_env(args, environ, "pod_name")[0] or None,
        ip=ip or None,
        labels=labels,
        container=flag_or_env(args, environ, "container_name")[0] or "app",
        ports=tuple(ports),
        probe=parse_probe(args, environ),
        wait=float(_integer(wait, "wait", 0)) if wait is not None else 30.0,
        command=tuple(command),
    )


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
    def __init__(self, session: Any, registration: Registration) -> None:
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
            if uid is not None:
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
    """Register, trying again while the API is unreachable (at most `wait` seconds); the uid,
    or None if asked to stop or the child exited first. RegisterError if refused."""
    attempts = int(registration.wait / RETRY_INTERVAL) + 1
    for attempt in range(attempts):
        if stopped.done() or exited.done():
            return None
        try:
            return await _register(api, registration, pod)
        except _Unavailable as exc:
            if attempt + 1 == attempts:
                raise RegisterError(f"the kdns API did not answer within {registration.wait:g} s: {exc}") from None
        await asyncio.wait([stopped, exited], timeout=RETRY_INTERVAL)
    return None


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
