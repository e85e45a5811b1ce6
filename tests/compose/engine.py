"""The Docker Engine API that the compose scenario reads, and the compose command it runs.

The scenario changes the cluster only with compose commands, as a person would, and reads
the engine's own record of it (container state and health, networks, volumes) through the
Docker Engine API on DOCKER_HOST's unix socket: Docker's, or podman's compatible service
(tests/compose/run.sh starts one). Standard library only.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent.parent
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


class EngineError(Exception):
    """The engine or compose answered something the scenario cannot go on with."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("engine", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Engine:
    """Reads of one compose project's objects through the Engine API."""

    def __init__(self, project: str, docker_host: str | None = None) -> None:
        host = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if not host.startswith("unix://"):
            raise EngineError(f"DOCKER_HOST={host}: only a unix:// socket is supported")
        self._socket = host.removeprefix("unix://")
        self.project = project

    def get(self, path: str) -> Any:
        return json.loads(self._request("GET", path, 200))

    def _request(self, method: str, path: str, status: int) -> bytes:
        connection = _UnixConnection(self._socket, timeout=60)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            body = response.read()
        except OSError as exc:
            raise EngineError(f"the engine at {self._socket}: {method} {path}: {exc}") from None
        finally:
            connection.close()
        if response.status != status:
            raise EngineError(f"{method} {path}: HTTP {response.status}: {body[:300]!r}")
        return body

    def _labelled(self, what: str, *labels: str) -> Any:
        filters = quote(json.dumps({"label": [f"{PROJECT_LABEL}={self.project}", *labels]}))
        return self.get(f"/{what}?all=1&filters={filters}")

    def containers(self) -> list[dict[str, Any]]:
        """The project's containers, running or not (the list's summaries)."""
        return list(self._labelled("containers/json"))

    def container(self, service: str) -> dict[str, Any]:
        """The one container of `service`, inspected (State, Config, ...)."""
        found = self._labelled("containers/json", f"{SERVICE_LABEL}={service}")
        if len(found) != 1:
            raise EngineError(f"service {service}: {len(found)} containers, expected 1")
        return dict(self.get(f"/containers/{found[0]['Id']}/json"))

    def stop(self, service: str, timeout: int) -> float:
        """Stop `service`'s container as `compose stop` does (SIGTERM, SIGKILL after `timeout`
        s); how long the engine took. Asked directly, so that compose's own start-up is not
        counted."""
        container = self.container(service)["Id"]
        began = time.monotonic()
        self._request("POST", f"/containers/{container}/stop?t={timeout}", 204)
        return time.monotonic() - began

    def networks(self) -> list[str]:
        """Names of the project's networks: labelled by compose, or named after the project."""
        return sorted(n["Name"] for n in self.get("/networks")
                      if (n.get("Labels") or {}).get(PROJECT_LABEL) == self.project
                      or n["Name"].startswith(f"{self.project}_"))

    def volumes(self) -> list[str]:
        """Names of every volume the engine has (anonymous ones carry no project label)."""
        return sorted(v["Name"] for v in self.get("/volumes").get("Volumes") or ())


def health(inspected: dict[str, Any]) -> str:
    """"healthy", "unhealthy", "starting", or the state ("running", "exited") of a container
    without a health check."""
    state = inspected["State"]
    checked = state.get("Health") or {}
    return str(checked.get("Status") or state["Status"]) if state["Status"] == "running" else str(state["Status"])


def timestamp(text: str) -> float:
    """An engine's RFC 3339 time (nanoseconds, Z or an offset) as seconds since the epoch."""
    match = _RFC3339.match(text)
    if match is None:
        raise EngineError(f"not an RFC 3339 time: {text!r}")
    whole = datetime.fromisoformat(match[1] + match[3].replace("Z", "+00:00")).timestamp()
    return whole + float(match[2] or 0)


def compose_command() -> list[str]:
    """docker-compose (Compose 1, Debian's), else `docker compose` (Compose 2)."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        return ["docker", "compose"]
    raise EngineError("neither docker-compose nor docker is installed")


def compose(project: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`docker compose -p PROJECT ARGS...` on compose.yaml; EngineError unless it exits 0."""
    argv = [*compose_command(), "-f", str(REPO / "compose.yaml"), "-p", project, *args]
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise EngineError(f"{' '.join(argv[len(compose_command()):])}: exit {result.returncode}\n"
                          f"{result.stdout}{result.stderr}")
    return result
