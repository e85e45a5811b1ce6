"""`kdns explain NAME [TYPE]`: why kdns answers NAME what it answers.

    kdns explain db-0.db.default.svc.cluster.local
    kdns explain _http._tcp.web.default.svc.cluster.local SRV --server http://10.0.0.2:8080 --api-token T
    kdns explain web.default.svc.cluster.local --manifests zones/ --json

By default it asks a running kdns (`GET /debug/explain` on its API, `--server`, with
`--api-token` off loopback), which reads its live registry, static zones and cache. With
`--manifests` it needs no server: it loads the manifests (and `--zones-dir`) as `kdns
serve` would, without forwarding, and explains from that. The output is text, or with
`--json` the API's JSON. See kdns.pipeline.explain for what an explanation holds.

Every flag has a KDNS_* environment twin (`--server`: KDNS_SERVER, `--api-token`:
KDNS_API_TOKEN, ...); the flag wins. Exit codes: 0 explained, 1 the server or the
manifests could not be read, 2 a bad flag, name or type.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from kdns.errors import KdnsError

__all__ = ["add_parser", "run"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
DEFAULT_SERVER = "http://127.0.0.1:8080"
REQUEST_TIMEOUT = 10.0
PATH = "/debug/explain"


class ExplainError(KdnsError):
    """The explanation could not be had: the server or the manifests."""


_ParserT = TypeVar("_ParserT", bound=argparse.ArgumentParser)  # kdns.cli's own parser class


def add_parser(commands: argparse._SubParsersAction[_ParserT]) -> _ParserT:
    """Add `explain` to `kdns`'s subcommands (an argparse subparsers object)."""
    parser = commands.add_parser(
        "explain",
        help="explain why kdns answers a name what it answers",
        description="Explain the answer to NAME TYPE: the rule, the objects it came from, the endpoints "
        "left out and why, the TTL and the source. Asks a running kdns's API, or with --manifests "
        "explains offline. Every flag has a KDNS_* environment twin.",
    )
    add = parser.add_argument
    add("name", metavar="NAME", help="the name asked, e.g. web.default.svc.cluster.local")
    add("type", metavar="TYPE", nargs="?", default="A", help="the record type (default A)")
    add("--server", metavar="URL", help=f"the kdns API (default {DEFAULT_SERVER})")
    add("--api-token", metavar="TOKEN", help="bearer token of the API")
    add("--manifests", action="append", metavar="PATH",
        help="explain offline from these manifests (files or directories; repeatable) instead of a server")
    add("--zones-dir", metavar="DIR", help="offline: static zone files to load too (default none)")
    add("--zone", metavar="ZONE", help="offline: the cluster zone (default cluster.local)")
    add("--pods", metavar="MODE", help="offline: pod records, disabled|insecure|verified (default verified)")
    add("--client", metavar="IP", help="explain the answer this client gets (the recursion ACL and "
        "autopath depend on it; default 127.0.0.1)")
    add("--json", action="store_true", help="print the explanation as JSON")
    return parser


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """`kdns explain` with parsed flags and the environment; returns the exit code."""
    from kdns.config import ConfigError, flag_or_env
    from kdns.pipeline.explain import CLIENT, Explanation, qtype_number

    client = args.client or CLIENT
    try:
        qtype = qtype_number(args.type)
        manifests = flag_or_env(args, environ, "manifests")[0]
        if manifests:
            paths = manifests.split(":") if isinstance(manifests, str) else manifests
            explanation = asyncio.run(_offline(args, environ, [Path(p) for p in paths if p], qtype, client))
        else:
            server = (flag_or_env(args, environ, "server")[0] or DEFAULT_SERVER).rstrip("/")
            token = flag_or_env(args, environ, "api_token")[0]
            explanation = Explanation.from_dict(asyncio.run(_online(server, token, args.name, args.type, client)))
    except (ValueError, ConfigError) as exc:
        print(f"kdns explain: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KdnsError as exc:
        print(f"kdns explain: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(explanation.to_dict(), indent=2))
    else:
        sys.stdout.write(explanation.render())
    return EXIT_OK


async def _online(server: str, token: str | None, name: str, qtype: str, client: str) -> dict[str, Any]:
    """The JSON of `GET /debug/explain` on `server`."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{server}{PATH}?{urlencode({'name': name, 'type': qtype, 'client': client})}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as session,
            session.get(url, headers=headers) as response,
        ):
            body = await response.text()
            if response.status == 400:
                raise ValueError(_message(body))
            if response.status != 200:
                raise ExplainError(f"{url}: {response.status} {_message(body)}")
            data: dict[str, Any] = json.loads(body)
            return data
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ExplainError(f"cannot reach the kdns API at {server}: {str(exc) or type(exc).__name__}") from None


def _message(body: str) -> str:
    """A Kubernetes Status's message, else the body."""
    try:
        return str(json.loads(body).get("message", body))
    except (ValueError, AttributeError):
        return body.strip()


async def _offline(
    args: argparse.Namespace, environ: Mapping[str, str], paths: list[Path], qtype: int, client: str
) -> Any:
    """Explain from the manifests alone: the registry, index and zones `kdns serve` would load."""
    from kdns.app import load_registry, load_static
    from kdns.authority.index import ClusterIndex
    from kdns.authority.static import ZoneError
    from kdns.config import Settings, flag_or_env
    from kdns.pipeline.chain import Router
    from kdns.pipeline.explain import explain
    from kdns.registry.errors import RegistryError

    fields: dict[str, Any] = {"manifests": tuple(paths), "zones_dir": None, "data_dir": None}
    for name in ("zone", "pods"):
        value = flag_or_env(args, environ, name)[0]
        if value:
            fields[name] = value
    zones_dir = flag_or_env(args, environ, "zones_dir")[0]
    if zones_dir and zones_dir.strip().lower() != "none":
        fields["zones_dir"] = Path(zones_dir)
    settings = Settings(**fields)
    try:
        store, warnings = load_registry(settings)
        static = load_static(settings)
    except (RegistryError, ZoneError, OSError) as exc:
        raise ExplainError(str(exc)) from None
    for warning in warnings:
        print(f"kdns explain: {warning}", file=sys.stderr)
    index = ClusterIndex(settings)
    index.rebuild(store.objects(), store.resource_version)
    router = Router(index, settings, static=static)
    return await explain(
        args.name,
        qtype,
        router=router,
        index=index,
        static=static,
        objects=store.list,
        settings=settings,
        client=client,
    )
