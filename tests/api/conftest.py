"""A real API server for each test: `build_app` over a real Store, on 127.0.0.1 port 0.

The server runs on its own event loop in a background thread, so that blocking clients
(kubectl in a subprocess, http.client, the `kubernetes` package) can talk to it from the
test. The store belongs to that loop: touch it only through `Api.call`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kdns.api.http import build_app, start_api
from kdns.metrics import Metrics
from kdns.registry.backend import LocalBackend
from kdns.registry.store import Store

START_TIMEOUT = 10.0
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WatchStream:
    response: http.client.HTTPResponse

    def next(self) -> dict[str, Any] | None:
        """The next event, or None when the server ended the stream."""
        line = self.response.readline()
        return json.loads(line) if line else None


class Kubectl:
    """The real kubectl against an API at `self.url`, with no kubeconfig; needs `url`,
    `home` (kubectl's HOME, where its discovery cache goes), `token` and `ca_file`."""

    url: str
    home: Path
    token: str | None
    ca_file: Path | None

    def kubectl_argv(self, *args: str) -> list[str]:
        assert KUBECTL is not None
        argv = [KUBECTL, "--server", self.url, "--cache-dir", str(self.home / "cache")]
        if self.ca_file is not None:
            argv += ["--certificate-authority", str(self.ca_file)]
        if self.token is not None:
            argv += ["--token", self.token]
        return [*argv, *args]

    def kubectl_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update(KUBECONFIG=os.devnull, HOME=str(self.home))
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this API."""
        self.home.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            self.kubectl_argv(*args), input=input, capture_output=True, text=True, env=self.kubectl_env(),
            check=False, timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result


@dataclass
class Api(Kubectl):
    """A running API server and the clients tests use on it."""

    port: int
    loop: asyncio.AbstractEventLoop
    store: Store
    metrics: Metrics
    home: Path
    token: str | None = None
    ca_file: Path | None = None  # set when the server speaks TLS
    _stop: Callable[[], None] = field(default=lambda: None, repr=False)

    @property
    def url(self) -> str:
        scheme = "https" if self.ca_file is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def call(self, fn: Callable[[Store], Any], timeout: float = 5.0) -> Any:
        """fn(store) on the server's loop thread; its result."""

        async def run() -> Any:
            return fn(self.store)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """One HTTP request; dict and list bodies are sent as JSON."""
        if self.ca_file is not None:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            all_headers = {"Accept": "application/json"}
            if self.token is not None:
                all_headers["Authorization"] = f"Bearer {self.token}"
            if body is not None:
                if not isinstance(body, (bytes, str)):
                    body = json.dumps(body)
                all_headers["Content-Type"] = content_type
            all_headers.update(headers or {})
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            connection.close()

    @contextlib.contextmanager
    def watch(self, path: str, *, headers: dict[str, str] | None = None, timeout: float = 10.0) -> Iterator[WatchStream]:
        """Open a watch stream (`path` carries ?watch=1...); read events with `.next()`."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path, headers={"Accept": "application/json", **(headers or {})})
            response = connection.getresponse()
            assert response.status == 200, response.read()
            yield WatchStream(response)
        finally:
            connection.close()


def _self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A certificate and key for 127.0.0.1 made by the openssl command, and a server context."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Factory: `api_server(token=None, ready=lambda: True, **build_app keywords)` -> Api."""
    servers: list[tuple[Api, threading.Thread]] = []

    def start(*, token: str | None = None, ready: Callable[[], bool] = lambda: True, tls: bool = False,
              store_options: dict[str, Any] | None = None, prepare: Callable[[Store], Any] | None = None,
              accept_round: float = 0.0, busy: Callable[[], bool] = lambda: False, **options: Any) -> Api:
        """A server; `tls=True` serves HTTPS with a fresh self-signed certificate for 127.0.0.1;
        `prepare(store)` runs on the server's thread before the API starts; `accept_round` and
        `busy` are start_api's (kdns.api.rounds)."""
        started: concurrent.futures.Future[Api] = concurrent.futures.Future()
        home = tmp_path / f"home-{len(servers)}"
        home.mkdir()
        context, ca_file = (_self_signed(home) if tls else (None, None))

        async def main() -> None:
            stop = asyncio.Event()
            try:
                store = Store(**(store_options or {}))
                if prepare is not None:
                    prepare(store)
                metrics = Metrics(CollectorRegistry())
                store.subscribe(metrics.on_events)
                app = build_app(LocalBackend(store), metrics=metrics, token=token, ready=ready, **options)
                runner, port = await start_api(app, "127.0.0.1", 0, ssl_context=context, accept_round=accept_round,
                                               busy=busy)
            except BaseException as exc:  # noqa: BLE001  (raised again in the test's thread)
                started.set_exception(exc)
                return
            loop = asyncio.get_running_loop()

            def stop_serving() -> None:  # (once more after a test stopped it: nothing)
                with contextlib.suppress(RuntimeError):  # the loop closed already
                    loop.call_soon_threadsafe(stop.set)

            started.set_result(Api(port, loop, store, metrics, home, token, ca_file, stop_serving))
            try:
                await stop.wait()
            finally:
                await runner.cleanup()

        thread = threading.Thread(target=asyncio.run, args=(main(),), name="kdns-api", daemon=True)
        thread.start()
        api = started.result(START_TIMEOUT)
        servers.append((api, thread))
        return api

    yield start
    for api, thread in reversed(servers):
        api._stop()
        thread.join(START_TIMEOUT)
        assert not thread.is_alive(), "the API server did not stop"


@pytest.fixture
def api(api_server: Callable[..., Api]) -> Api:
    """An API server over an empty cluster (namespaces default and kube-system)."""
    return api_server()


SERVICE_AND_PODS = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
    - name: http
      port: 80
      targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: default
  labels: {app: web}
spec:
  nodeName: node-1
  containers:
    - name: app
      image: nginx
      ports: [{name: http, containerPort: 8080}]
status:
  phase: Running
  podIP: 10.244.0.5
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Pod
metadata:
  name: web-2
  namespace: default
  labels: {app: web}
spec:
  containers:
    - name: app
      image: nginx
      ports: [{name: http, containerPort: 8080}]
status:
  phase: Running
  podIP: 10.244.0.6
  conditions: [{type: Ready, status: "True"}]
"""


def service(name: str = "web", **spec: Any) -> dict[str, Any]:
    """A Service document for POST bodies."""
    body = {"ports": [{"name": "http", "port": 80, "targetPort": 8080}], "selector": {"app": name}}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": name}}, "spec": body}
