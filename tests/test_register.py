"""`kdns register`: flags into a Pod, and the real command against a real API on loopback.

The command runs as a subprocess (`python -c` calling kdns.register.main, what `kdns register`
runs), against an API server from tests/api/conftest.py on 127.0.0.1 port 0. The example app
(examples/flask-app/app.py) is the registered child, on its own 127.0.0.x address.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kdns.prober import Prober
from kdns.register import FlagError, add_parser, pod_manifest, registration_from
from kdns.registry.backend import LocalBackend
from kdns.registry.objects import POD
from tests.api.conftest import Api, api_server  # noqa: F401 (the fixture)

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "examples" / "flask-app" / "app.py"
STOP_TIMEOUT = 10.0


def parse(*argv: str, environ: dict[str, str] | None = None) -> Any:
    parser = argparse.ArgumentParser(prog="kdns")
    add_parser(parser.add_subparsers(dest="command_name"))
    return registration_from(parser.parse_args(["register", *argv]), environ or {})


# --- flags into a Pod -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "probe"),
    [
        (("--probe-http", ":5000/healthz"), {"httpGet": {"path": "/healthz", "port": 5000}}),
        (("--probe-http", "5000"), {"httpGet": {"path": "/", "port": 5000}}),
        (("--probe-http", "https://:8443/ready"), {"httpGet": {"path": "/ready", "port": 8443, "scheme": "HTTPS"}}),
        (("--probe-http", "[::1]:http/x/y", "--container-port", "http:80"), {"httpGet": {"path": "/x/y", "port": "http", "host": "::1"}}),
        (("--probe-tcp", "5000"), {"tcpSocket": {"port": 5000}}),
        (("--probe-tcp", "127.0.0.1:5000"), {"tcpSocket": {"port": 5000, "host": "127.0.0.1"}}),
    ],
)
def test_probe_flags_become_a_readiness_probe(flag: tuple[str, ...], probe: dict[str, Any]) -> None:
    """--probe-http and --probe-tcp are written as the Kubernetes readinessProbe they mean."""
    assert parse(*flag).probe == probe


def test_timing_flags_and_environment_twins() -> None:
    """Timing flags fill the probe's fields; KDNS_* variables stand in for flags, which win."""
    registration = parse(
        "--probe-http", ":5000/healthz", "--probe-period", "1", "--probe-failure-threshold", "3",
        "--label", "tier=web", "--", "python", "app.py",
        environ={"KDNS_LABEL": "app.kubernetes.io/name=flask-app,tier=db", "KDNS_PROBE_TIMEOUT": "2",
                 "KDNS_POD_NAME": "flask-app-1", "KDNS_SERVER": "http://172.28.0.2:8080/",
                 "KDNS_CONTAINER_PORT": "http:5000"},
    )
    assert registration.probe == {"httpGet": {"path": "/healthz", "port": 5000}, "periodSeconds": 1,
                                  "failureThreshold": 3, "timeoutSeconds": 2}
    assert registration.labels == {"tier": "web"}  # the flag wins over KDNS_LABEL
    assert (registration.name, registration.server) == ("flask-app-1", "http://172.28.0.2:8080")
    assert registration.ports == (("http", 5000),)
    assert registration.command == ("python", "app.py")


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (("--probe-http", ":80", "--probe-tcp", "80"), {}, "--probe-http and --probe-tcp exclude each other"),
        (("--probe-tcp", "80"), {"KDNS_PROBE_HTTP": ":80"}, "KDNS_PROBE_HTTP and --probe-tcp exclude each other"),
        (("--probe-period", "1"), {}, "--probe-period needs --probe-http or --probe-tcp"),
        (("--probe-tcp", "80", "--probe-period", "0"), {}, "--probe-period '0': must be at least 1"),
        (("--probe-tcp", "80"), {"KDNS_PROBE_PERIOD": "0"}, "KDNS_PROBE_PERIOD '0': must be at least 1"),
        (("--probe-tcp", "80"), {"KDNS_PROBE_TIMEOUT": "soon"}, "KDNS_PROBE_TIMEOUT 'soon': not an integer"),
        (("--probe-tcp", "99999"), {}, "--probe-tcp '99999': port 99999 must be between 1 and 65535"),
        (("--probe-http", "host:"), {}, "--probe-http 'host:': a port is required"),
        (("--probe-http", "foo"), {}, "--probe-http 'foo': expected [HOST]:PORT[/PATH], e.g. :5000/healthz"),
        (("--probe-http", ":web/healthz"), {},
         "--probe-http ':web/healthz': no --container-port is named 'web' (named: none)"),
        (("--probe-tcp", "htp", "--container-port", "http:80"), {},
         "--probe-tcp 'htp': no --container-port is named 'htp' (named: http)"),
        (("--probe-http", ":Bad_Name"), {}, "--probe-http ':Bad_Name': 'Bad_Name' is neither a port number nor a port name"),
        (("--label", "no-equals"), {}, "--label 'no-equals': expected KEY=VALUE, e.g. app.kubernetes.io/name=web"),
        ((), {"KDNS_LABEL": "a=b,no-equals"}, "KDNS_LABEL 'no-equals': expected KEY=VALUE, e.g. app.kubernetes.io/name=web"),
        (("--container-port", "http:web"), {}, "--container-port 'http:web': expected [NAME:]PORT, e.g. http:5000"),
        (("--pod-ip", "10.0.0.300"), {}, "--pod-ip '10.0.0.300': not an IP address"),
        ((), {"KDNS_POD_IP": "x"}, "KDNS_POD_IP 'x': not an IP address"),
        (("--server", "172.28.0.2:8080"), {}, "--server '172.28.0.2:8080': expected http://HOST:PORT or https://HOST:PORT"),
        (("--wait", "-1"), {}, "--wait '-1': must be at least 0"),
    ],
)
def test_bad_flags_are_refused_with_the_flag_named(argv: tuple[str, ...], environ: dict[str, str], message: str) -> None:
    """Each bad flag or variable is a FlagError that names it, with the exact problem."""
    with pytest.raises(FlagError) as caught:
        parse(*argv, environ=environ)
    assert str(caught.value) == message


def test_a_bad_flag_is_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Through `kdns`: exit code 2 and one line on stderr."""
    from kdns.cli import main

    assert main(["register", "--probe-http", "foo"], {}) == 2
    assert capsys.readouterr().err == (
        "kdns register: error: --probe-http 'foo': expected [HOST]:PORT[/PATH], e.g. :5000/healthz\n"
    )


def test_the_pod_is_what_a_kubelet_would_report() -> None:
    """Running, with IP, labels, ports and probe; Ready "False" until probed, "True" without a probe."""
    probed = parse("--label", "app=web", "--container-port", "http:5000", "--probe-tcp", "http")
    pod = pod_manifest(probed, "web-1", "10.1.2.3")
    assert pod["metadata"] == {"name": "web-1", "namespace": "default", "labels": {"app": "web"}}
    assert pod["spec"]["containers"] == [{
        "name": "app", "image": "kdns-register",
        "ports": [{"name": "http", "containerPort": 5000, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "http"}},
    }]
    assert pod["status"] == {"phase": "Running", "podIP": "10.1.2.3", "podIPs": [{"ip": "10.1.2.3"}],
                             "conditions": [{"type": "Ready", "status": "False"}]}
    plain = pod_manifest(parse(), "web-2", "10.1.2.4")
    assert plain["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


# --- the command, for real ------------------------------------------------------------------


class Register:
    """A running `kdns register` subprocess."""

    def __init__(self, api: Api, *argv: str, env: dict[str, str] | None = None) -> None:
        code = "import os, sys; from kdns.register import main; sys.exit(main(sys.argv[1:], os.environ))"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
        environment["PYTHONPATH"] = str(REPO)
        environment.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "--server", f"http://127.0.0.1:{api.port}", *argv],
            cwd=REPO, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Signal it, wait (bounded); exit code, stdout, stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.wait()

    def wait(self) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate(timeout=STOP_TIMEOUT)
            raise AssertionError(f"kdns register did not stop:\n{err}") from None
        return self.proc.returncode, out, err


@pytest.fixture
def register(api_server: Callable[..., Api]) -> Iterator[Callable[..., Register]]:  # noqa: F811
    """Factory: `register(*flags, env=...)` -> a running kdns register against a fresh API."""
    started: list[Register] = []
    api = api_server()

    def start(*argv: str, env: dict[str, str] | None = None) -> Register:
        process = Register(api, *argv, env=env)
        started.append(process)
        return process

    start.api = api  # type: ignore[attr-defined]
    yield start
    for process in started:
        if process.proc.poll() is None:
            process.stop(signal.SIGKILL)


def pod(api: Api, name: str = "web-1") -> Any:
    return api.call(lambda store: store.get(POD, "default", name))


def wait_for(predicate: Callable[[], Any], limit: float = 10.0) -> Any:
    """Check `predicate` every 20 ms until it is truthy (bounded); its value."""
    for _ in range(int(limit / 0.02)):
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {limit} s")


def test_registers_while_the_app_runs_and_deregisters_on_sigterm(register: Callable[..., Register]) -> None:
    """The app runs as a child with POD_NAME; the pod exists while it runs and goes on SIGTERM, exit 0."""
    api = register.api  # type: ignore[attr-defined]
    process = register(
        "--pod-name", "web-1", "--pod-ip", "127.0.0.7", "--label", "app=web", "--container-port", "http:5057",
        "--probe-http", ":5057/healthz", "--probe-period", "1",
        "--", sys.executable, str(APP), "--address", "127.0.0.7", "--port", "5057",
    )
    registered = wait_for(lambda: pod(api))
    assert registered.pod_ips == ("127.0.0.7",) and registered.meta.labels == {"app": "web"}
    assert registered.manifest["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] == 5057
    assert not registered.ready
    answer = wait_for(lambda: _get("http://127.0.0.7:5057/"))
    assert answer == "hello from web-1\n"  # POD_NAME reached the child
    code, _, err = process.stop()
    assert code == 0, err
    assert pod(api) is None
    assert "pod default/web-1 (127.0.0.7) registered" in err and "pod default/web-1 deregistered" in err


def test_a_probed_registration_turns_ready(register: Callable[..., Register]) -> None:
    """With kdns's prober running, the registered app's probe passes and its pod turns Ready."""
    api = register.api  # type: ignore[attr-defined]
    prober = Prober(LocalBackend(api.store))
    asyncio.run_coroutine_threadsafe(prober.__aenter__(), api.loop).result(5)
    try:
        process = register(
            "--pod-name", "web-1", "--pod-ip", "127.0.0.8", "--label", "app=web",
            "--probe-http", ":5058/healthz", "--probe-period", "1",
            "--", sys.executable, str(APP), "--address", "127.0.0.8", "--port", "5058",
        )
        assert wait_for(lambda: (p := pod(api)) is not None and p.ready)
        assert process.stop()[0] == 0
    finally:
        asyncio.run_coroutine_threadsafe(prober.__aexit__(None, None, None), api.loop).result(5)


def test_a_child_that_exits_is_deregistered_and_its_code_returned(register: Callable[..., Register]) -> None:
    """When the command exits by itself the pod is deleted and kdns register exits with its code."""
    api = register.api  # type: ignore[attr-defined]
    child = "import time, sys; time.sleep(1); sys.exit(3)"
    process = register("--pod-name", "web-1", "--pod-ip", "127.0.0.9", "--", sys.executable, "-c", child)
    wait_for(lambda: pod(api))
    code, _, err = process.wait()
    assert code == 3, err
    assert pod(api) is None


def test_a_pod_left_by_a_killed_container_is_replaced(register: Callable[..., Register]) -> None:
    """A pod of the same name from an earlier, killed run is replaced by a new one (a new uid)."""
    api = register.api  # type: ignore[attr-defined]
    first = register("--pod-name", "web-1", "--pod-ip", "127.0.0.10")
    old_uid = wait_for(lambda: pod(api)).meta.uid
    first.stop(signal.SIGKILL)
    second = register("--pod-name", "web-1", "--pod-ip", "127.0.0.11")
    new = wait_for(lambda: (p := pod(api)) is not None and p.meta.uid != old_uid and p)
    assert new.pod_ips == ("127.0.0.11",)
    assert second.stop()[0] == 0
    assert pod(api) is None


def test_without_a_command_it_waits_for_a_signal_and_finds_its_own_address(register: Callable[..., Register]) -> None:
    """No command: the pod's IP is this host's address towards the API; SIGINT deregisters, exit 0."""
    api = register.api  # type: ignore[attr-defined]
    process = register("--pod-name", "web-1", "--namespace", "default")
    assert wait_for(lambda: pod(api)).pod_ips == ("127.0.0.1",)
    assert process.stop(signal.SIGINT)[0] == 0
    assert pod(api) is None


def test_an_unreachable_api_fails_after_the_wait(register: Callable[..., Register], unused_port: int) -> None:
    """With no API to answer, kdns register gives up after --wait seconds with exit code 1."""
    process = register("--server", f"http://127.0.0.1:{unused_port}", "--wait", "1", "--pod-name", "web-1",
                       "--pod-ip", "127.0.0.12")
    began = time.monotonic()
    code, _, err = process.wait()
    assert code == 1 and time.monotonic() - began < 5
    assert "the kdns API did not answer within 1 s" in err


def test_a_refused_registration_says_why(register: Callable[..., Register]) -> None:
    """A pod the API refuses (a bad name) fails at once with the API's message, exit code 1."""
    process = register("--pod-name", "Not_A_Name", "--pod-ip", "127.0.0.13")
    code, _, err = process.wait()
    assert code == 1
    assert "HTTP 422" in err and "Not_A_Name" in err


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def test_child_environment_is_not_leaked_into_json() -> None:
    """The Pod manifest is plain JSON: what the API is sent can be dumped and read back."""
    registration = parse("--label", "app=web", "--probe-tcp", "80")
    doc = pod_manifest(registration, "web-1", "10.0.0.1")
    assert json.loads(json.dumps(doc)) == doc


def test_a_command_that_ends_before_registering_is_a_failure(register: Callable[..., Register], unused_port: int) -> None:
    """The API cannot be reached and the command ends first: exit 1, saying so (not 0, silently)."""
    process = register("--server", f"http://127.0.0.1:{unused_port}", "--pod-name", "web-1", "--pod-ip",
                       "127.0.0.12", "--", sys.executable, "-c", "pass")
    code, _, err = process.wait()
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith(f"kdns register: waiting for the kdns API (http://127.0.0.1:{unused_port}: ")
    assert lines[-1].startswith(
        "kdns register: error: the command exited (code 0) before the pod could be registered: "
        f"http://127.0.0.1:{unused_port}: "
    )


def test_it_registers_once_the_api_starts(kdns_process: Callable[..., Any], unused_port: int, tmp_path: Path) -> None:
    """Started before kdns, it keeps trying (with a growing pause) and registers once the API answers."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    environment["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kdns", "register", "--server", f"http://127.0.0.1:{unused_port}", "--pod-name",
         "late-1", "--pod-ip", "127.0.0.14", "--wait", "30"],
        cwd=REPO, env=environment, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(0.5)  # a few failed attempts first
        kdns = kdns_process("--api-port", str(unused_port))
        reply = wait_for(lambda: kdns.resolve("127-0-0-14.default.pod.cluster.local.", "A").answer, limit=15)
        assert reply[0][0].address == "127.0.0.14"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=STOP_TIMEOUT)
    assert proc.returncode == 0, err
    assert err.splitlines()[0].startswith(f"kdns register: waiting for the kdns API (http://127.0.0.1:{unused_port}: ")
    assert f"kdns register: pod default/late-1 (127.0.0.14) registered at http://127.0.0.1:{unused_port}" in err
