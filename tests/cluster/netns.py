"""The twin's machinery: one network namespace per compose container, joined by a bridge.

The bridge lives in a namespace of its own, so the twin adds no interface, address or
route to the host: its addresses exist only inside namespaces this test made, and no
namespace has a default route, so nothing the cluster sends can leave it. Each container
namespace gets `eth0` (one end of a veth pair whose other end is on the bridge) with the
compose address, and /etc/netns/<namespace>/resolv.conf, which `ip netns exec` mounts over
/etc/resolv.conf for every command run there. Commands run in a UTS namespace of their own
too, with the compose hostname (what `kdns register` names the pod after).

`Twin.down()` removes everything `up()` made, also after a failure half-way: processes
(SIGTERM, then SIGKILL, each by its process group id), namespaces, /etc/netns/<namespace>.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.cluster.topology import Container, Topology

COMMAND_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
NETNS_ETC = Path("/etc/netns")
# How the twin runs what the image runs: the image's interpreters are this one.
PYTHONS = {"python", "python3", "/usr/local/bin/python", "/usr/local/bin/python3", "/usr/local/bin/kdns-python"}


class TwinError(Exception):
    """The twin could not be built or a command in it failed."""


def run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded); TwinError with its stderr if it fails."""
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise TwinError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def can_make_namespaces() -> str | None:
    """None if this machine lets the test make network namespaces; else why not."""
    if sys.platform != "linux":
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "making network namespaces needs root (CI runs as root)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (iproute2, util-linux)"
    name = f"kdnstwin-check-{os.getpid()}"
    try:
        run(["ip", "netns", "add", name])
    except (TwinError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a network namespace here: {exc}"
    try:
        run(["ip", "-n", name, "link", "add", "br0", "type", "bridge"])
    except TwinError as exc:
        return f"cannot make a bridge in a network namespace here: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
    return None


@dataclass
class Process:
    container: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]


@dataclass
class Twin:
    """The compose cluster as network namespaces. `up()`, `start(name)`, `down()`."""

    topology: Topology
    workdir: Path
    repo: Path
    prefix: str = field(default_factory=lambda: f"kdnstwin{os.getpid()}")
    processes: dict[str, Process] = field(default_factory=dict)
    _made: list[str] = field(default_factory=list)  # namespaces, in the order they were made

    def namespace(self, container: str) -> str:
        return f"{self.prefix}-{container}"

    @property
    def bridge_namespace(self) -> str:
        return f"{self.prefix}-bridge"

    # --- the network ----------------------------------------------------------------------

    def up(self) -> None:
        bridge = self.bridge_namespace
        self._add_namespace(bridge)
        run(["ip", "-n", bridge, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", bridge, "link", "set", "br0", "up"])
        prefix_length = self.topology.subnet.prefixlen
        for number, container in enumerate(self.topology.containers):
            namespace = self.namespace(container.name)
            self._add_namespace(namespace)
            directory = NETNS_ETC / namespace
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "resolv.conf").write_text(container.resolv_conf())
            port = f"v{number}"
            run(["ip", "-n", bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace])
            run(["ip", "-n", bridge, "link", "set", port, "master", "br0", "up"])
            run(["ip", "-n", namespace, "addr", "add", f"{container.address}/{prefix_length}", "dev", "eth0"])
            run(["ip", "-n", namespace, "link", "set", "eth0", "up"])
            run(["ip", "-n", namespace, "link", "set", "lo", "up"])

    def _add_namespace(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        self._made.append(name)

    def down(self) -> list[str]:
        """Stop every process and remove every namespace and file; the problems met, if any."""
        problems = []
        for name in list(self.processes):
            try:
                self.stop(name)
            except Exception as exc:  # noqa: BLE001 (go on: the rest must be cleaned up too)
                problems.append(f"stopping {name}: {exc}")
        for namespace in reversed(self._made):
            result = subprocess.run(["ip", "netns", "del", namespace], capture_output=True, text=True,
                                    timeout=COMMAND_TIMEOUT, check=False)
            if result.returncode != 0:
                problems.append(f"ip netns del {namespace}: {result.stderr.strip()}")
            shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)
        self._made.clear()
        return problems

    # --- processes --------------------------------------------------------------------------

    def translate(self, container: Container, words: Sequence[str]) -> list[str]:
        """Container paths to host paths (bind mounts), the image's Python to this one."""
        result = []
        for word in words:
            if word in PYTHONS:
                result.append(sys.executable)
            else:
                result.append(os.pathsep.join(self._host_path(container, part) for part in word.split(os.pathsep)))
        return result

    @staticmethod
    def _host_path(container: Container, text: str) -> str:
        for inside, outside in container.mounts:
            if text == inside or text.startswith(inside.rstrip("/") + "/"):
                return str(outside) + text[len(inside):]
        return text

    def environment(self, container: Container) -> dict[str, str]:
        """The container's environment, paths translated, plus what the twin changes:
        its own data directory, no upstream (the twin has no outside network), this checkout."""
        home = self.workdir / container.name
        home.mkdir(parents=True, exist_ok=True)
        env = {key: self.translate(container, [value])[0] for key, value in container.environment.items()}
        if "KDNS_DATA_DIR" in env:
            env["KDNS_DATA_DIR"] = str(home / "data")
        env.update(
            KDNS_UPSTREAM="none",
            PATH=os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            PYTHONPATH=str(self.repo),
            HOME=str(home),
            LANG="C.UTF-8",
        )
        return env

    def _in_namespace(self, container: Container, argv: Sequence[str]) -> list[str]:
        # unshare --uts: a host name of its own, as a container has (`hostname:` in compose).
        set_hostname = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.namespace(container.name),
                "unshare", "--uts", "--", "sh", "-c", set_hostname, container.hostname, *argv]

    def start(self, name: str) -> Process:
        """Start the container's command in its namespace, output to <workdir>/<name>.log."""
        container = self.topology[name]
        if name in self.processes:
            if self.processes[name].proc.poll() is None:
                raise TwinError(f"{name} is running already")
            self.stop(name)  # the killed run: its log file and any process left in its group
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            self._in_namespace(container, self.translate(container, container.argv)),
            cwd=self.workdir, env=self.environment(container), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        process = self.processes[name] = Process(name, proc, log)
        return process

    def kill(self, name: str) -> float:
        """SIGKILL the container's processes (its process group); the time.time() it was done."""
        process = self.processes[name]
        os.killpg(process.proc.pid, signal.SIGKILL)
        killed = time.time()
        process.proc.wait(STOP_TIMEOUT)
        return killed

    def stop(self, name: str) -> int | None:
        """SIGTERM the container's process group, SIGKILL it after STOP_TIMEOUT; its exit code."""
        process = self.processes.pop(name)
        try:
            if process.proc.poll() is None:
                with _suppress_missing():
                    os.killpg(process.proc.pid, signal.SIGTERM)
                try:
                    process.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    with _suppress_missing():
                        os.killpg(process.proc.pid, signal.SIGKILL)
                    process.proc.wait(STOP_TIMEOUT)
            # Children left behind in the group (an app whose parent was killed) go too.
            with _suppress_missing():
                os.killpg(process.proc.pid, signal.SIGKILL)
        finally:
            process.log.close()
        return process.proc.returncode

    def exec(self, name: str, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a command in the container's namespace with its environment, to completion."""
        container = self.topology[name]
        return subprocess.run(
            self._in_namespace(container, self.translate(container, argv)), capture_output=True, text=True,
            timeout=timeout, env=self.environment(container), cwd=self.workdir, stdin=subprocess.DEVNULL, check=False,
        )

    def wait_healthy(self, name: str, limit: float = 30.0) -> None:
        """Run the image's HEALTHCHECK in the container until it passes (bounded), as
        `depends_on: condition: service_healthy` waits."""
        container = self.topology[name]
        if not container.healthcheck:
            return
        deadline = time.monotonic() + limit
        result = None
        for _ in range(int(limit / 0.2) + 1):
            process = self.processes.get(name)
            if process is not None and process.proc.poll() is not None:
                raise TwinError(f"{name} exited ({process.proc.returncode}):\n{self.log(name)}")
            result = self.exec(name, container.healthcheck, timeout=10)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if result is None or result.returncode != 0:
            raise TwinError(f"{name} is not healthy after {limit} s:\n{self.log(name)}")

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


class _suppress_missing:
    """Ignore ProcessLookupError: the group is gone already."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, tb: object) -> bool:
        return kind is ProcessLookupError or kind is PermissionError
