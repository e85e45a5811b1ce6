"""compose.yaml's cluster, built with network namespaces, run through the issue's scenario.

The client resolves my-service by its short name with glibc (the pod search path and
ndots:5 of its resolv.conf), and reaches both app pods through the headless twin service;
a replica killed with SIGKILL leaves DNS within failureThreshold x periodSeconds of its
readinessProbe, and comes back once it runs again and its probe passes. The first tests
read compose.yaml and the Dockerfile only, and run everywhere.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kdns.cli import _parser, settings_from
from kdns.register import add_parser, registration_from
from tests.api.conftest import _self_signed
from tests.cluster.conftest import COMPOSE, DOCKERFILE
from tests.cluster.netns import Twin
from tests.cluster.topology import Container, load, read_dockerfile

CLIENT = str(Path(__file__).resolve().parent / "client.py")
SERVICE_CIDR = ipaddress.ip_network("172.28.0.128/25")  # compose.yaml: KDNS_SERVICE_CIDR
APPS = ("flask-app-1", "flask-app-2")
SLACK = 0.5  # glibc sampling every 20 ms, process start, a busy CI machine


def registration(container: Container) -> Any:
    """What the container's `kdns register ...` command asks for, read by kdns's own parser."""
    argv = list(container.argv)
    parser = argparse.ArgumentParser(prog="kdns")
    add_parser(parser.add_subparsers(dest="command_name"))
    return registration_from(parser.parse_args(argv[argv.index("register"):]), container.environment)


# --- compose.yaml, read ---------------------------------------------------------------------


def test_compose_builds_one_subnet_with_fixed_addresses() -> None:
    """kdns, both app pods and the client have fixed addresses on 172.28.0.0/24; kdns starts first."""
    topology = load(COMPOSE, DOCKERFILE)
    assert str(topology.subnet) == "172.28.0.0/24"
    addresses = {c.name: c.address for c in topology.containers}
    assert addresses == {"kdns": "172.28.0.2", "flask-app-1": "172.28.0.11", "flask-app-2": "172.28.0.12",
                         "client": "172.28.0.20"}
    assert topology.containers[0].name == "kdns"


def test_every_container_but_kdns_resolves_like_a_pod() -> None:
    """App pods and the client use kdns as DNS, with the pod search path and ndots:5."""
    topology = load(COMPOSE, DOCKERFILE)
    for container in topology.containers:
        if container.name == "kdns":
            continue
        assert container.resolv_conf().splitlines()[1:] == [
            "nameserver 172.28.0.2",
            "search default.svc.cluster.local svc.cluster.local cluster.local",
            "options ndots:5",
        ]


def test_the_images_configuration_is_a_valid_kdns_configuration() -> None:
    """The Dockerfile's ENV under compose's environment makes Settings kdns accepts: DNS on 53."""
    kdns = load(COMPOSE, DOCKERFILE)["kdns"]
    assert kdns.argv[-2:] == ("kdns", "serve")
    args = _parser().parse_args(["serve"])
    settings, _ = settings_from(args, {**kdns.environment, "KDNS_UPSTREAM": "none"})
    assert (settings.dns_address, settings.dns_port, settings.api_port) == ("0.0.0.0", 53, 8080)
    assert settings.api_token == "compose-test-token"
    assert [p.name for p in settings.manifests] == ["services.yaml", "flask-app.yaml", "node.yaml"]


def test_app_pods_register_with_labels_and_a_readiness_probe() -> None:
    """Each app pod registers labelled for my-service, probed on :5000/healthz every second."""
    for name in APPS:
        wanted = registration(load(COMPOSE, DOCKERFILE)[name])
        assert wanted.labels == {"app.kubernetes.io/name": "flask-app"}
        assert wanted.server == "http://172.28.0.2:8080"
        assert wanted.probe == {"httpGet": {"path": "/healthz", "port": 5000}, "periodSeconds": 1,
                                "failureThreshold": 2}
        assert wanted.command[-3:] == ("/app/app.py", "--port", "5000")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_images_healthcheck_asks_the_api_over_http_and_over_tls(kdns_process: Any, tmp_path: Path) -> None:
    """The Dockerfile's HEALTHCHECK passes against a real kdns API in plain HTTP and, with
    KDNS_TLS_CERT set as for `kdns serve`, over TLS; it fails where nothing answers."""
    check = read_dockerfile(DOCKERFILE)[""].healthcheck
    assert check[:2] == ("python", "-c")
    _, cert = _self_signed(tmp_path)
    plain = kdns_process()
    tls = kdns_process("--tls-cert", str(cert), "--tls-key", str(tmp_path / "tls.key"))

    def health(port: int, **env: str) -> int:
        environment = {**os.environ, "KDNS_API_ADDRESS": "0.0.0.0", "KDNS_API_PORT": str(port), **env}
        return subprocess.run([sys.executable, *check[1:]], env=environment, capture_output=True, timeout=30,
                              check=False).returncode

    assert health(plain.api_port) == 0
    assert health(tls.api_port, KDNS_TLS_CERT=str(cert)) == 0
    assert health(tls.api_port) != 0  # plain HTTP to a TLS port is no answer
    tls.stop()
    assert health(tls.api_port, KDNS_TLS_CERT=str(cert)) != 0


# --- the twin, running --------------------------------------------------------------------


def client(twin: Twin, *args: str, timeout: float = 30.0) -> Any:
    result = twin.exec("client", ["python", CLIENT, *args], timeout=timeout)
    assert result.returncode == 0, f"client.py {' '.join(args)}: {result.stdout}{result.stderr}"
    return json.loads(result.stdout)


@pytest.mark.netns
def test_the_compose_scenario(twin: Twin, record_property: Any) -> None:
    """Short names resolve by the search path; a killed replica leaves DNS within the bound and returns."""
    first, second = (twin.topology[name].address for name in APPS)
    try:
        client(twin, "wait", "my-service-headless", "--with", first, "--with", second, "--limit", "30", timeout=40)
    except AssertionError:
        raise AssertionError("\n".join(f"--- {name}\n{twin.log(name)}" for name in ("kdns", *APPS))) from None

    # my-service by its short name: glibc tries my-service.default.svc.cluster.local first.
    (cluster_ip,) = client(twin, "resolve", "my-service")
    assert ipaddress.ip_address(cluster_ip) in SERVICE_CIDR
    if shutil.which("dig"):
        dig = twin.exec("client", ["dig", "+search", "+short", "my-service"])
        assert dig.stdout.split() == [cluster_ip], dig.stdout + dig.stderr
    assert client(twin, "answers", "my-service-headless", "5000") == {
        first: "hello from flask-app-1\n",
        second: "hello from flask-app-2\n",
    }

    probe = registration(twin.topology["flask-app-1"]).probe
    bound = probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10)
    killed = twin.kill("flask-app-1")
    gone = client(twin, "wait", "my-service-headless", "--without", first, "--limit", str(bound + 10),
                  timeout=bound + 20)
    left_after = gone["at"] - killed
    assert gone["addresses"] == [second]

    restarted = time.time()
    twin.start("flask-app-1")
    back = client(twin, "wait", "my-service-headless", "--with", first, "--limit", "30", timeout=40)
    back_after = back["at"] - restarted
    assert client(twin, "answers", "my-service-headless", "5000")[first] == "hello from flask-app-1\n"

    record_property("killed_replica_left_dns_after_s", round(left_after, 3))
    record_property("restarted_replica_back_in_dns_after_s", round(back_after, 3))
    print(f"\nkilled replica left DNS after {left_after:.3f} s (bound {bound} s); "
          f"restarted replica back after {back_after:.3f} s (process start, registration, first probe)")
    assert left_after <= bound + SLACK
    # Back at its first passing probe: the app must start, register, and answer; a probe that
    # comes before the app listens fails and the next one is a period later.
    assert back_after <= 10 + probe.get("periodSeconds", 10)
