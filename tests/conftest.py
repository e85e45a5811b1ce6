"""Fixtures that start real kdns servers on loopback port 0.

`kdns_server(...)` runs an `App` in this process, on its own event loop in a background
thread: fast, and the test can write to its store. `kdns_process(...)` runs the real
`python -m kdns serve` command: what a user runs, signals and exit code included.
Both read the port they were given, and both are stopped at teardown within a timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
QUERY_TIMEOUT = 3.0
_SERVING = re.compile(r"serving DNS on \[?([0-9a-fA-F.:]+)\]?:(\d+) \(udp, tcp\)")
_SERVING_API = re.compile(r"serving the API on (https?://\[?[0-9a-fA-F.:]+\]?:(\d+))$")

Source = str | Path


def _manifest_paths(sources: Sequence[Source], directory: Path) -> tuple[Path, ...]:
    """Paths as given; YAML text (a str that is not an existing path) written to a file."""
    paths = []
    for number, source in enumerate(sources):
        if isinstance(source, Path) or ("\n" not in source and Path(source).exists()):
            paths.append(Path(source))
            continue
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"manifest-{number}.yaml"
        path.write_text(source)
        paths.append(path)
    return tuple(paths)


def _resolve(address: str, port: int, name: str, rdtype: str | int, tcp: bool, **make: Any) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **make)
    if tcp:
        return dns.query.tcp(query, address, port=port, timeout=QUERY_TIMEOUT)
    return dns.query.udp(query, address, port=port, timeout=QUERY_TIMEOUT)


@dataclass
class InProcessServer:
    """An App on a background thread's event loop. Touch `.app` only through `write`."""

    address: str
    port: int
    app: Any
    loop: asyncio.AbstractEventLoop
    _stop: asyncio.Event = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def settings(self) -> Any:
        return self.app.settings

    @property
    def api_port(self) -> int:
        """The port the HTTP API got."""
        return self.app.api_port

    @property
    def api_url(self) -> str:
        return self.app.api_url

    def write(self, fn: Callable[[Any], Any], timeout: float = 5.0) -> Any:
        """Run fn(store) on the server's loop thread (the store is not thread-safe); its result."""

        async def run() -> Any:
            return fn(self.app.store)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def resolve(self, name: str, rdtype: str | int = "A", *, tcp: bool = False, **make: Any) -> dns.message.Message:
        """Ask this server one question with dnspython (make_query keywords: use_edns=, want_dnssec=...)."""
        return _resolve(self.address, self.port, name, rdtype, tcp, **make)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(STOP_TIMEOUT)
            assert not self._thread.is_alive(), "kdns did not stop in time"


@pytest.fixture(autouse=True)
def _private_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kdns a test runs without --data-dir or --ephemeral keeps its registry under this
    test's own XDG_STATE_HOME, never in the user's ~/.local/state/kdns."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture
def kdns_server(tmp_path: Path) -> Iterator[Callable[..., InProcessServer]]:
    """Factory: `kdns_server(*manifests, **settings)`; manifests are paths or YAML text.

    Without manifests the server loads none (an empty cluster); pass
    `manifests=Settings().manifests` for the example cluster. Settings default to
    127.0.0.1 port 0, the API on port 0 and the registry in memory (data_dir None).
    """
    from kdns.app import start as start_app
    from kdns.config import Settings

    servers: list[InProcessServer] = []

    def start(*sources: Source, **overrides: Any) -> InProcessServer:
        overrides.setdefault("dns_address", "127.0.0.1")
        overrides.setdefault("dns_port", 0)
        overrides.setdefault("api_port", 0)
        overrides.setdefault("manifests", _manifest_paths(sources, tmp_path / f"server-{len(servers)}"))
        settings = Settings(**overrides)
        started: concurrent.futures.Future[InProcessServer] = concurrent.futures.Future()

        async def main() -> None:
            stop = asyncio.Event()
            running = start_app(settings)
            try:
                app = await running.__aenter__()
            except BaseException as exc:  # noqa: BLE001  (raised again in the test's thread)
                started.set_exception(exc)
                return
            try:
                started.set_result(
                    InProcessServer(
                        address=app.dns_address,
                        port=app.dns_port,
                        app=app,
                        loop=asyncio.get_running_loop(),
                        _stop=stop,
                        _thread=threading.current_thread(),
                    )
                )
                await stop.wait()
            finally:
                await running.__aexit__(None, None, None)

        thread = threading.Thread(target=asyncio.run, args=(main(),), name="kdns-server", daemon=True)
        thread.start()
        try:
            server = started.result(START_TIMEOUT)
        except BaseException:
            thread.join(STOP_TIMEOUT)
            raise
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()


@dataclass
class Process:
    """A `python -m kdns serve` child process; `.output` holds its stderr lines so far."""

    proc: subprocess.Popen[str]
    address: str = ""
    port: int = 0
    api_url: str = ""  # http://127.0.0.1:PORT, or https with --tls-cert
    api_port: int = 0
    output: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def resolve(self, name: str, rdtype: str | int = "A", *, tcp: bool = False, **make: Any) -> dns.message.Message:
        """Ask this server one question with dnspython."""
        return _resolve(self.address, self.port, name, rdtype, tcp, **make)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the process (SIGTERM by default), wait for it, return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
            raise AssertionError(f"kdns (pid {self.pid}) ignored signal {signum}:\n" + "".join(self.output)) from None
        finally:
            if self._reader is not None:
                self._reader.join(STOP_TIMEOUT)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        return code


@pytest.fixture
def kdns_process(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Factory: `kdns_process(*args, manifests=(...), env={...})` -> a started kdns command.

    `args` are extra `kdns serve` flags; `manifests` are paths or YAML text (default: none
    at all, an empty cluster; None: kdns's own default, the example cluster). Forwarding
    is off (`--upstream none`) unless `args` or `env` name upstreams: a test never reaches
    the host's resolvers by accident. The registry is in memory (`--ephemeral`) and the API
    on a free port (`--api-port 0`, read back as `.api_port`) unless `args` or `env` set
    --data-dir, --ephemeral or --api-port. The start is over once kdns logs its API line.
    At teardown each process still running gets SIGTERM and must exit 0.
    """
    processes: list[Process] = []

    def start(*args: str, manifests: Sequence[Source] | None = (), env: dict[str, str] | None = None) -> Process:
        argv = [sys.executable, "-m", "kdns", "serve", "--dns-address", "127.0.0.1", "--dns-port", "0", *args]
        if not any(arg.split("=")[0] == "--upstream" for arg in args) and "KDNS_UPSTREAM" not in (env or {}):
            argv += ["--upstream", "none"]
        given = {arg.split("=")[0] for arg in args if arg.startswith("--")}
        given |= {"--" + name[5:].lower().replace("_", "-") for name in (env or {}) if name.startswith("KDNS_")}
        if not given & {"--data-dir", "--ephemeral"}:
            argv.append("--ephemeral")
        if "--api-port" not in given:
            argv += ["--api-port", "0"]
        paths = _manifest_paths(manifests or (), tmp_path / f"process-{len(processes)}")
        if paths:
            for path in paths:
                argv += ["--manifests", str(path)]
        elif manifests is not None and "--manifests" not in args:
            empty = tmp_path / f"process-{len(processes)}-empty"
            empty.mkdir(exist_ok=True)
            argv += ["--manifests", str(empty)]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
        environment.update(env or {})
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        process = Process(proc)
        processes.append(process)
        found = threading.Event()

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                process.output.append(line)
                match = _SERVING.search(line)
                if match and not process.port:
                    process.address, process.port = match[1], int(match[2])
                match = _SERVING_API.search(line)
                if match and not found.is_set():
                    process.api_url, process.api_port = match[1], int(match[2])
                    found.set()
            found.set()  # EOF: the process is gone

        process._reader = threading.Thread(target=read, name=f"kdns-{proc.pid}-stderr", daemon=True)
        process._reader.start()
        if not found.wait(START_TIMEOUT) or not process.port or not process.api_port:
            code = process.stop(signal.SIGKILL) if proc.poll() is None else process.stop()
            processes.remove(process)
            raise AssertionError(f"kdns did not start (exit {code}):\n" + "".join(process.output))
        return process

    yield start
    for process in reversed(processes):
        running = process.proc.poll() is None
        code = process.stop()
        if running:
            assert code == 0, f"kdns exited {code} after SIGTERM:\n" + "".join(process.output)
