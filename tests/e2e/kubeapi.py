"""Clients for the HTTP API of a real `kdns serve` process: plain HTTP requests and the real kubectl.

`Client(url, home)` talks to the API at `url` (from the process's log line), with no
kubeconfig: kubectl gets `--server`, and `--token` / `--certificate-authority` when set.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.api.conftest import Kubectl, Reply


@dataclass
class Client(Kubectl):
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
