"""compose.yaml and the Dockerfile, read into what the network-namespace twin builds.

Pure: reads files, runs nothing. Each compose service becomes a `Container`: its address on
the compose network, its DNS settings (dns, dns_search, dns_opt), its hostname, and the
command it runs (the image's ENTRYPOINT and CMD from the Dockerfile stage it is built from,
unless compose overrides them) with the image's ENV under compose's `environment`. Only
what compose.yaml uses is understood; anything else raises TopologyError, so the twin
never quietly builds a different cluster from the one compose would.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TopologyError(Exception):
    """compose.yaml or the Dockerfile says something the twin cannot build."""


@dataclass(frozen=True)
class Image:
    """What a Dockerfile stage gives a container: ENV, ENTRYPOINT, CMD, HEALTHCHECK."""

    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    healthcheck: tuple[str, ...] = ()


@dataclass(frozen=True)
class Container:
    name: str  # the compose service
    hostname: str
    address: str
    dns: tuple[str, ...]
    dns_search: tuple[str, ...]
    dns_options: tuple[str, ...]
    argv: tuple[str, ...]  # as the container runs it: container paths, the image's programs
    environment: Mapping[str, str]
    mounts: tuple[tuple[str, Path], ...]  # (path in the container, path on the host), bind mounts
    depends_on: tuple[str, ...]  # services that must be healthy before this one starts
    healthcheck: tuple[str, ...]

    def resolv_conf(self) -> str:
        """The resolv.conf Docker writes for this container, with kdns in place of Docker's
        embedded DNS server (which only forwards to the `dns` servers anyway)."""
        lines = [f"# the twin of compose service {self.name}"]
        lines += [f"nameserver {server}" for server in self.dns]
        if self.dns_search:
            lines.append("search " + " ".join(self.dns_search))
        if self.dns_options:
            lines.append("options " + " ".join(self.dns_options))
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Topology:
    network: str
    subnet: ipaddress.IPv4Network
    containers: tuple[Container, ...]  # in start order: what one depends on comes first

    def __getitem__(self, name: str) -> Container:
        for container in self.containers:
            if container.name == name:
                return container
        raise KeyError(name)


def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _exec_form(text: str, where: str) -> tuple[str, ...]:
    if not text.startswith("["):
        raise TopologyError(f"{where}: only the exec form [\"...\"] is understood")
    value = json.loads(text)
    return tuple(str(item) for item in value)


def read_dockerfile(path: Path) -> dict[str, Image]:
    """Each stage's Image, by stage name; the last stage also under ""."""
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"#{len(stages)}"
            current = stages[name] = {"env": {}, "entrypoint": (), "cmd": (), "healthcheck": ()}
            stages[""] = current
        elif current is None:
            continue
        elif keyword == "ENV":
            for word in shlex.split(rest):
                key, equals, value = word.partition("=")
                if not equals:
                    raise TopologyError(f"{path}: ENV {rest!r}: only KEY=VALUE is understood")
                current["env"][key] = value
        elif keyword in ("ENTRYPOINT", "CMD"):
            current[keyword.lower()] = _exec_form(rest, f"{path}: {keyword}")
        elif keyword == "HEALTHCHECK":
            command = rest.partition("CMD ")[2]
            current["healthcheck"] = _exec_form(command.strip(), f"{path}: HEALTHCHECK")
    return {name: Image(**stage) for name, stage in stages.items()}


def _words(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(shlex.split(value))
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    raise TopologyError(f"{where}: expected a string or a list")


def _environment(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, list):
        return dict(str(item).partition("=")[::2] for item in value)
    raise TopologyError(f"{where}: expected a mapping or a list")


_VOLUME = re.compile(r"^(\.{1,2}/[^:]*|/[^:]*):(/[^:]*)(:ro|:rw)?$")


def load(compose_file: Path, dockerfile: Path) -> Topology:
    """The twin's topology from compose.yaml and the Dockerfile its services build."""
    base = compose_file.parent
    doc = yaml.safe_load(compose_file.read_text())
    stages = read_dockerfile(dockerfile)
    networks = doc.get("networks") or {}
    if len(networks) != 1:
        raise TopologyError("compose.yaml: the twin builds exactly one network")
    (network, spec), = networks.items()
    configs = ((spec or {}).get("ipam") or {}).get("config") or []
    if len(configs) != 1 or "subnet" not in configs[0]:
        raise TopologyError(f"compose.yaml: network {network} needs one ipam subnet")
    subnet = ipaddress.IPv4Network(configs[0]["subnet"])
    containers = {}
    for name, service in (doc.get("services") or {}).items():
        if service.get("profiles"):
            continue  # opt-in (`--profile ...`): `docker compose up` does not start it either
        where = f"compose.yaml: services.{name}"
        build = service.get("build") or {}
        image = stages.get(build.get("target", "") if isinstance(build, Mapping) else "")
        if image is None:
            raise TopologyError(f"{where}: build target {build.get('target')!r} is not a stage of {dockerfile}")
        attached = (service.get("networks") or {}).get(network) or {}
        address = attached.get("ipv4_address")
        if not address or ipaddress.IPv4Address(address) not in subnet:
            raise TopologyError(f"{where}: needs networks.{network}.ipv4_address inside {subnet}")
        entrypoint = _words(service["entrypoint"], f"{where}.entrypoint") if "entrypoint" in service else image.entrypoint
        command = _words(service["command"], f"{where}.command") if "command" in service else (
            image.cmd if "entrypoint" not in service else ())
        mounts = []
        for volume in service.get("volumes") or ():
            match = _VOLUME.match(str(volume))
            if not match:
                raise TopologyError(f"{where}.volumes: {volume!r}: only ./host/path:/container/path[:ro] is understood")
            mounts.append((match[2], (base / match[1]).resolve()))
        depends = service.get("depends_on") or {}
        containers[name] = Container(
            name=name,
            hostname=str(service.get("hostname") or name),
            address=str(address),
            dns=_words(service.get("dns"), f"{where}.dns"),
            dns_search=_words(service.get("dns_search"), f"{where}.dns_search"),
            dns_options=_words(service.get("dns_opt"), f"{where}.dns_opt"),
            argv=(*entrypoint, *command),
            environment={**image.env, **_environment(service.get("environment"), f"{where}.environment")},
            mounts=tuple(mounts),
            depends_on=tuple(depends),
            healthcheck=image.healthcheck,
        )
    ordered: list[Container] = []
    for _ in range(len(containers)):  # dependencies first; at most one pass per service
        for container in containers.values():
            if container not in ordered and all(containers[d] in ordered for d in container.depends_on):
                ordered.append(container)
    if len(ordered) != len(containers):
        raise TopologyError("compose.yaml: depends_on has a cycle")
    return Topology(network, subnet, tuple(ordered))
