"""Clients for the HTTP API of a real `kdns serve` process: plain HTTP requests and the real kubectl.

`Client(url, home)` talks to the API at `url` (from the process's log line), with no
kubeconfig: kubectl gets `--server`, and `--token` / `--certificate-authority` when set.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.api.conftest import KUBECTL, Reply


@dataclass
class Client:
    """The API at `url`; `home` is kubectl's HOME (its discovery cache goes there)."""

    url: str
    home: Path
    token: str | None = None
    ca_file: Path | None = None

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        parts = urllib.parse.urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                content_type: str = "application/json", timeout: float = 10.0) -> Reply:
        """One request; `token` overrides the client's ("" sends none). Dict bodies go as JSON."""
        token = self.token if token is None else token
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            body = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = content_type
        connection = self.connection(timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            connection.close()

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

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this API, with no kubeconfig."""
        self.home.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            self.kubectl_argv(*args), input=input, capture_output=True, text=True, env=self.kubectl_env(), check=False,
            timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result
