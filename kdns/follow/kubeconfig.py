"""Reading a kubeconfig file: which API server, and how to reach it and prove who we are.

kdns reads the file itself with PyYAML rather than through the `kubernetes` package's
loader: that package (with google-auth, requests, urllib3, websocket-client) would be a
heavy dependency for a synchronous loader of a dozen fields, and kdns talks to the API
with aiohttp anyway. What is supported is what `kind`, `minikube`, k3s and a service
account kubeconfig use:

* the context (`current-context`, or the one named), its cluster and its user;
* `server` (https or http), `certificate-authority` / `certificate-authority-data`,
  `insecure-skip-tls-verify`, `tls-server-name`;
* `token`, `tokenFile` (read again for each request, as a projected token rotates),
  `client-certificate` / `client-certificate-data` with `client-key` / `client-key-data`.

Relative file paths are relative to the kubeconfig's directory, as client-go reads them.
Credential plugins (`exec`, `auth-provider`), basic auth and `proxy-url` are refused with
a message naming them rather than ignored: kdns would otherwise connect without them.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from kdns.config import ConfigError

__all__ = ["Access", "KubeconfigError", "load"]


class KubeconfigError(ConfigError):
    """The kubeconfig cannot be used to follow its cluster."""


@dataclass(frozen=True)
class Access:
    """How to reach the followed API server."""

    server: str  # scheme://host:port, no trailing slash
    context: str
    ssl: ssl.SSLContext | None  # None for http
    server_hostname: str | None  # tls-server-name
    token: str | None
    token_file: Path | None

    def headers(self) -> dict[str, str]:
        """The request headers that authenticate us (a token file is read each time)."""
        token = self.token
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except OSError as exc:
                raise KubeconfigError(f"tokenFile {self.token_file}: {exc.strerror}") from None
        headers = {"Accept": "application/json", "User-Agent": "kdns-follow"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers


def _named(entries: Any, name: str, what: str, path: Path) -> dict[str, Any]:
    """The `cluster` / `user` / `context` body of the entry called `name`."""
    for entry in entries or ():
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(what)
            if not isinstance(body, dict):
                raise KubeconfigError(f"kubeconfig {path}: {what} {name!r} has no {what} settings")
            return body
    raise KubeconfigError(f"kubeconfig {path}: no {what} named {name!r}")


def _file(value: Any, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise KubeconfigError(f"{key} must be a file path")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _data(value: Any, key: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigError(f"{key}: not valid base64") from None


def _pem(section: dict[str, Any], key: str, base: Path) -> bytes | None:
    """The PEM text of `key` or `key-data`, or None when neither is set."""
    if section.get(f"{key}-data"):
        return _data(section[f"{key}-data"], f"{key}-data")
    if section.get(key):
        path = _file(section[key], key, base)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise KubeconfigError(f"{key} {path}: {exc.strerror}") from None
    return None


def _ssl_context(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify") is True:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        ca = _pem(cluster, "certificate-authority", base)
        if ca is not None:
            context = ssl.create_default_context(cadata=_text(ca, "certificate-authority"))
    certificate = _pem(user, "client-certificate", base)
    key = _pem(user, "client-key", base)
    if (certificate is None) != (key is None):
        raise KubeconfigError("client-certificate and client-key go together")
    if certificate is not None and key is not None:
        # The ssl module loads a certificate chain only from files: a private directory,
        # gone once loaded.
        with tempfile.TemporaryDirectory(prefix="kdns-follow-") as directory:
            cert_path, key_path = Path(directory, "client.crt"), Path(directory, "client.key")
            for path, data in ((cert_path, certificate), (key_path, key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            try:
                context.load_cert_chain(cert_path, key_path)
            except ssl.SSLError as exc:
                raise KubeconfigError(f"client-certificate / client-key: {exc.reason or exc}") from None
    return context


def _text(pem: bytes, key: str) -> str:
    try:
        return pem.decode("ascii")
    except UnicodeDecodeError:
        raise KubeconfigError(f"{key}: not PEM text") from None


def load(path: Path, context_name: str | None = None) -> Access:
    """The Access of `context_name` (default: current-context) in the kubeconfig at `path`."""
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"kubeconfig {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"kubeconfig {path}: not YAML: {exc}") from None
    if not isinstance(config, dict):
        raise KubeconfigError(f"kubeconfig {path}: not a kubeconfig (expected a mapping)")
    name = context_name or config.get("current-context")
    if not name:
        raise KubeconfigError(f"kubeconfig {path}: no current-context; name one with --follow-context")
    context = _named(config.get("contexts"), name, "context", path)
    cluster = _named(config.get("clusters"), context.get("cluster", ""), "cluster", path)
    user: dict[str, Any] = {}
    if context.get("user"):
        user = _named(config.get("users"), context["user"], "user", path)
    for unsupported in ("exec", "auth-provider", "username", "password"):
        if user.get(unsupported):
            raise KubeconfigError(
                f"kubeconfig {path}: user {context['user']!r} uses {unsupported}, which kdns does not "
                "support: use a token, a token file or a client certificate"
            )
    if cluster.get("proxy-url"):
        raise KubeconfigError(f"kubeconfig {path}: proxy-url is not supported")
    server = cluster.get("server")
    if not isinstance(server, str) or (parts := urlsplit(server)).scheme not in ("https", "http") or not parts.hostname:
        raise KubeconfigError(f"kubeconfig {path}: cluster server {server!r} is not an http(s) URL")
    base = path.resolve().parent
    try:
        context_ssl = _ssl_context(cluster, user, base) if parts.scheme == "https" else None
    except KubeconfigError as exc:
        raise KubeconfigError(f"kubeconfig {path}: {exc}") from None
    token_file = _file(user["tokenFile"], "tokenFile", base) if user.get("tokenFile") else None
    token = user.get("token") if isinstance(user.get("token"), str) else None
    return Access(
        server=server.rstrip("/"),
        context=name,
        ssl=context_ssl,
        server_hostname=cluster.get("tls-server-name") or None,
        token=token,
        token_file=token_file,
    )
